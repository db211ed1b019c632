"""A shop's client traffic through the proxy, recording every request's outcome.

Virtual users (a fixed pool, each with a sticky `X-User-Id`, so a canary keeps each user on
one side) browse (list, search, product page as HTML and JSON, categories), add to a cart and
check out, in a loop. A bounded number run at once; the load stops by itself after `duration_s`
or `max_requests`, or when `stop` is set.

A *failed* request is a connection error, a timeout, a 5xx or an unexpected 4xx. A 409 at
checkout (short stock) is the shop's business answer, not a failure.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

EXPECTED_4XX = {("POST", "checkout"): {409}}   # short stock is an answer, not a failure
SEARCH_WORDS = ("lamp", "desk", "chair", "oak", "mug", "a", "e")


@dataclass
class Failure:
    at: float                 # seconds since the load started
    method: str
    kind: str                 # the route kind: list, search, product, page, cart, checkout...
    path: str
    status: int | None        # None: no HTTP answer at all
    detail: str


@dataclass
class LoadReport:
    """Every request's outcome, counted by (method, kind, status)."""
    started: float = field(default_factory=time.monotonic)
    elapsed_s: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return len(self.failures)

    def count(self, kind: str, status: int) -> int:
        return sum(n for (_, k, s), n in self.outcomes.items() if k == kind and s == status)

    def summary(self) -> str:
        rate = self.requests / self.elapsed_s if self.elapsed_s else 0.0
        checkouts = self.count("checkout", 201)
        short = self.count("checkout", 409)
        return (f"{self.requests} requests in {self.elapsed_s:.1f} s ({rate:.0f}/s), "
                f"{checkouts} orders, {short} short-stock answers, {self.failed} failed")


class Load:
    """Run with `await load.run()`; read `load.report` at any time (it grows as it goes)."""

    def __init__(self, base_url: str, *, users: int = 200, concurrency: int = 8,
                 products: int = 50, duration_s: float = 300.0,
                 max_requests: int = 1_000_000) -> None:
        self.base_url = base_url.rstrip("/")
        self.users = [f"vu-{n:04d}" for n in range(users)]
        self.concurrency = concurrency
        self.products = products
        self.duration_s = duration_s
        self.max_requests = max_requests
        self.stop = asyncio.Event()
        self.report = LoadReport()
        self._next_user = 0
        self._carts: dict[str, int] = {}

    async def run(self) -> LoadReport:
        self.report = LoadReport()
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=self.concurrency * 2)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await asyncio.gather(*(self._worker(session) for _ in range(self.concurrency)))
        self.report.elapsed_s = time.monotonic() - self.report.started
        return self.report

    def _done(self) -> bool:
        return (self.stop.is_set() or self.report.requests >= self.max_requests
                or time.monotonic() - self.report.started >= self.duration_s)

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        while not self._done():
            user = self.users[self._next_user % len(self.users)]
            self._next_user += 1
            await self._visit(session, user, self._next_user)

    async def _visit(self, session: aiohttp.ClientSession, user: str, n: int) -> None:
        """One short visit: browse, then now and then fill a cart and check out."""
        product = 1 + (n * 7) % self.products
        word = SEARCH_WORDS[n % len(SEARCH_WORDS)]
        await self._call(session, user, "GET", "list",
                         f"/api/products?limit=10&offset={n % 5 * 10}")
        await self._call(session, user, "GET", "search", f"/api/products?q={word}")
        await self._call(session, user, "GET", "product", f"/api/products/{product}")
        await self._call(session, user, "GET", "page", f"/products/{product}")
        if n % 4 == 0:
            await self._call(session, user, "GET", "categories", "/api/categories")
        if n % 3 == 0:
            await self._shop(session, user, product)

    async def _shop(self, session: aiohttp.ClientSession, user: str, product: int) -> None:
        cart = self._carts.get(user)
        if cart is None:
            body = await self._call(session, user, "POST", "cart", "/api/carts", body={})
            if not body or "id" not in body:
                return
            cart = self._carts[user] = body["id"]
        added = await self._call(session, user, "POST", "add", f"/api/carts/{cart}/items",
                                 body={"product_id": product, "quantity": 1})
        if added is not None and len(added.get("items", ())) >= 2:
            await self._call(session, user, "POST", "checkout", f"/api/carts/{cart}/checkout")
            self._carts.pop(user, None)     # a checked-out cart is done; the next visit opens one

    async def _call(self, session: aiohttp.ClientSession, user: str, method: str, kind: str,
                    path: str, body: dict | None = None) -> dict | None:
        """One request; its outcome is recorded. Returns the JSON body of a 2xx, else None."""
        if self._done() and kind not in ("add", "checkout"):
            return None
        headers = {"X-User-Id": user}
        try:
            async with session.request(method, self.base_url + path, json=body,
                                       headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
                is_json = resp.content_type == "application/json"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self._record(method, kind, path, None, f"{type(exc).__name__}: {exc}")
            return None
        failed = status >= 500 or (400 <= status < 500
                                   and status not in EXPECTED_4XX.get((method, kind), ()))
        self._record(method, kind, path, status,
                     raw[:200].decode("utf-8", "replace") if failed else None)
        if 200 <= status < 300 and is_json and raw:
            return json.loads(raw)
        return None

    def _record(self, method: str, kind: str, path: str, status: int | None,
                failure: str | None) -> None:
        self.report.outcomes[(method, kind, status)] += 1
        if failure is not None:
            self.report.failures.append(Failure(time.monotonic() - self.report.started, method,
                                                kind, path, status, failure))
