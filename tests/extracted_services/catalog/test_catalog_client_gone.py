"""A client that hangs up mid-upload is not a server error for the catalog service either:
one log line, no traceback, no 500 (as for the legacy shop, tests/legacy_monolith)."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from extracted_services.catalog.app import create_app
from strangler.db import sqlite_url


async def _until(what: str, done) -> None:
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} did not happen")


async def test_a_client_gone_mid_upload_is_one_line_without_traceback(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    app = create_app(sqlite_url(tmp_path / "catalog.db"), seed_products=5)
    # Served as `strangler catalog serve` serves it (run_app: handlers are not cancelled when
    # the client goes; aiohttp's TestServer cancels them), plus the access log to see the status.
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        caplog.clear()                          # start-up's migration and seeding lines
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Expect: 100-continue makes the service say when the request has reached its handler, so
        # the hang-up below lands while the body is being read, not before the request is parsed.
        writer.write(b"POST /api/products HTTP/1.1\r\nHost: shop\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 10000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 100")
        writer.write(b'{"sku": "UPLOAD-1", "name": "')
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await _until("the service's access log line",
                     lambda: any(r.name == "aiohttp.access" for r in caplog.records))
    finally:
        await runner.cleanup()
    [mine] = [r for r in caplog.records if r.name.startswith("extracted_services")]
    assert mine.getMessage().startswith("client went away: POST /api/products ")
    assert mine.levelno == logging.INFO and "\n" not in mine.getMessage()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    [access] = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert '"POST /api/products HTTP/1.1" 499 ' in access, access
