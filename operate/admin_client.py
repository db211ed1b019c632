"""The operator CLI's way to running proxies: their admin APIs, with the bearer token.

    proxies = proxy_urls(args.proxy)                 # --proxy URL..., else $STRANGLER_PROXIES
    client = AdminClient(proxies, read_token(args.token_file))
    for proxy in client.statuses(): ...             # one ProxyStatus per proxy, or OperatorError

Every failure becomes one OperatorError line naming the proxy and what to do: unreachable
(refused, timed out), a refused token, an answer that is not the expected JSON. Timeouts are
short: an operator waits seconds, not minutes, to learn a proxy is down.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from strangler.errors import OperatorError

PROXIES_ENV = "STRANGLER_PROXIES"
TOKEN_ENV = "STRANGLER_ADMIN_TOKEN"
TOKEN_FILE = Path("var/admin.token")
TIMEOUT = httpx.Timeout(3.0, connect=1.0)


def proxy_urls(given: list[str] | None) -> list[str]:
    """--proxy values, else $STRANGLER_PROXIES (comma or space separated); may be empty."""
    raw = list(given or []) or os.environ.get(PROXIES_ENV, "").replace(",", " ").split()
    urls = []
    for url in raw:
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            url = f"http://{url}"
        urls.append(url)
    return urls


def read_token(token_file: str | Path | None) -> str:
    """--token-file, else $STRANGLER_ADMIN_TOKEN, else var/admin.token (what `strangler proxy`
    writes when it generates one)."""
    if token_file is not None:
        path = Path(token_file)
    elif os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip()
    else:
        path = TOKEN_FILE
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise OperatorError(f"cannot read the admin token from {path}: "
                            f"{exc.strerror or exc}; pass --token-file or set {TOKEN_ENV}") \
            from None
    if not token:
        raise OperatorError(f"the admin token file {path} is empty; pass --token-file or set "
                            f"{TOKEN_ENV}")
    return token


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """One proxy's /admin/status, with the fields the operator commands rely on checked."""
    url: str
    version: str
    raw: dict[str, Any]

    @property
    def gates(self) -> dict[str, Any]:
        return self.raw.get("gates") or {}


class AdminClient:
    def __init__(self, urls: list[str], token: str, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.urls = urls
        self._client = httpx.Client(headers={"Authorization": f"Bearer {token}"},
                                    timeout=TIMEOUT, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self, url: str) -> ProxyStatus:
        doc = self.get_json(url, "/admin/status")
        rules = doc.get("rules") if isinstance(doc, dict) else None
        caps = doc.get("capabilities") if isinstance(doc, dict) else None
        if not isinstance(rules, dict) or not isinstance(rules.get("version"), str) \
                or not isinstance(caps, dict):
            raise OperatorError(f"proxy at {url} answered /admin/status without rules.version "
                                "and capabilities; is that address a strangler proxy's admin "
                                "port (same version as this CLI)?")
        return ProxyStatus(url, rules["version"], doc)

    def statuses(self) -> list[ProxyStatus]:
        return [self.status(url) for url in self.urls]

    def reachable_statuses(self) -> tuple[list[ProxyStatus], dict[str, str]]:
        """The proxies that answer, and why each other one did not (url -> message): for a
        view that is worth showing from the proxies still up (never for a decision)."""
        found, failed = [], {}
        for url in self.urls:
            try:
                found.append(self.status(url))
            except OperatorError as exc:
                failed[url] = str(exc)
        return found, failed

    def shadow(self, url: str, capability: str, since: str | None = None) -> dict[str, Any]:
        """The proxy's shadow report (GET /admin/shadow) for CAPABILITY, as JSON."""
        params = {"capability": capability, "format": "json"}
        if since:
            params["since"] = since
        doc = self.get_json(url, "/admin/shadow", params)
        if not isinstance(doc, dict) or not isinstance(doc.get("capabilities"), list):
            raise OperatorError(f"proxy at {url} answered /admin/shadow without a capabilities "
                                "list; is it a strangler proxy of the same version?")
        return doc

    def get_json(self, url: str, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            resp = self._client.get(url + path, params=params)
        except httpx.TimeoutException:
            raise OperatorError(f"proxy at {url} is unreachable (timed out after "
                                f"{TIMEOUT.read:g} s); is it running and is that its admin "
                                "port? pass --proxy") from None
        except httpx.ConnectError as exc:
            why = "connection refused" if "refused" in str(exc).lower() else "cannot connect"
            raise OperatorError(f"proxy at {url} is unreachable ({why}); is it running? start "
                                "it with `strangler proxy ...` or pass --proxy") from None
        except httpx.HTTPError as exc:
            raise OperatorError(f"proxy at {url} is unreachable ({type(exc).__name__}); check "
                                "--proxy") from None
        if resp.status_code == 401:
            raise OperatorError(f"the admin token was refused by {url}; pass --token-file with "
                                f"the proxy's token (or set {TOKEN_ENV})")
        if resp.status_code == 404:
            hint = (" and is shadowing on there (not --no-shadow)?" if path == "/admin/shadow"
                    else "?")
            raise OperatorError(f"proxy at {url} has no {path} (404); is that its admin port "
                                f"(not the one clients use){hint}")
        if resp.status_code != 200:
            first = resp.text.strip().splitlines()[:1]
            raise OperatorError(f"proxy at {url} answered {path} with HTTP {resp.status_code}"
                                f"{': ' + first[0] if first else ''}; check its log")
        try:
            return resp.json()
        except ValueError:
            raise OperatorError(f"proxy at {url} answered {path} with something that is not "
                                "JSON; is that address a strangler proxy's admin port?") from None
