"""The catalog routes of docs/catalog-api.md, served from the service's own store.

Database work is synchronous SQLAlchemy, run in the default executor so the event loop
never blocks. Writes honour the dry-run header: the transaction is rolled back and the
would-be response returned, which is what lets the proxy shadow unsafe methods.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import Connection

from extracted_services.catalog import store, validation
from extracted_services.catalog.keys import ENGINE, WROTE
from extracted_services.catalog.middleware import (DRY_RUN_HEADER, asks_dry_run, json_response,
                                                   no_content)
from extracted_services.catalog.problems import bad_request
from extracted_services.catalog.validation import path_id

T = TypeVar("T")
routes = web.RouteTableDef()


async def _read(request: web.Request, work: Callable[[Connection], T]) -> T:
    engine = request.app[ENGINE]

    def run() -> T:
        with engine.connect() as conn:
            return work(conn)

    return await asyncio.get_running_loop().run_in_executor(None, run)


def _dry_run(request: web.Request) -> bool:
    """`X-Strangler-Dry-Run: 1` asks for a rolled-back write; any other value is refused,
    so a misspelt header can never turn a rehearsal into a real write."""
    value = request.headers.get(DRY_RUN_HEADER)
    if value is None:
        return False
    if not asks_dry_run(request):
        raise bad_request(f"header X-Strangler-Dry-Run must be 1 when present, got {value!r}")
    return True


async def _write(request: web.Request, work: Callable[[Connection], T], dry_run: bool) -> T:
    """Run `work` in one transaction: committed, or rolled back on error or dry run. A real
    write marks the request before it starts, so its answer never says rolled-back."""
    engine = request.app[ENGINE]
    if not dry_run:
        request[WROTE] = True

    def run() -> T:
        with engine.connect() as conn, conn.begin() as transaction:
            result = work(conn)
            if dry_run:
                transaction.rollback()
            return result

    return await asyncio.get_running_loop().run_in_executor(None, run)


def _product_id(request: web.Request) -> int:
    return path_id(request.match_info["id"], "product")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness that includes the database: a service that cannot query is not healthy."""
    await _read(request, lambda conn: conn.execute(text("SELECT 1")))
    return json_response(request, {"status": "ok"})


@routes.get("/api/products")
async def list_products(request: web.Request) -> web.Response:
    query = validation.list_query(request.query)
    return json_response(request, await _read(request, partial(store.list_products, query=query)))


@routes.get("/api/products/{id}")
async def get_product(request: web.Request) -> web.Response:
    product_id = _product_id(request)
    return json_response(request, await _read(request, partial(store.get_product,
                                                               product_id=product_id)))


@routes.get("/api/categories")
async def list_categories(request: web.Request) -> web.Response:
    return json_response(request, await _read(request, store.list_categories))


@routes.get("/api/categories/{slug}")
async def get_category(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    return json_response(request, await _read(request, partial(store.get_category, slug=slug)))


@routes.post("/api/products")
async def create_product(request: web.Request) -> web.Response:
    dry_run = _dry_run(request)
    new = validation.new_product(await validation.json_body(request))
    body = await _write(request, partial(store.create_product, new=new), dry_run)
    return json_response(request, body, status=201)


@routes.patch("/api/products/{id}")
async def update_product(request: web.Request) -> web.Response:
    dry_run = _dry_run(request)
    product_id = _product_id(request)
    changes = validation.product_changes(await validation.json_body(request))
    body = await _write(request, partial(store.update_product, product_id=product_id,
                                         changes=changes), dry_run)
    return json_response(request, body)


@routes.delete("/api/products/{id}")
async def delete_product(request: web.Request) -> web.Response:
    dry_run = _dry_run(request)
    product_id = _product_id(request)
    await _write(request, partial(store.delete_product, product_id=product_id), dry_run)
    return no_content(request)
