"""Shared by the legacy shop's and the catalog service's tests: a client that hangs up while
its request body is being read, against the app served as `strangler ... serve` serves it."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web


async def _until(what: str, done) -> None:
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} did not happen")


async def hang_up_mid_upload(app: web.Application, caplog) -> tuple[list[logging.LogRecord], str]:
    """POST /api/products, hang up mid-body; the records logged meanwhile and the access line.

    Served with run_app's runner (handlers are not cancelled when the client goes; aiohttp's
    TestServer cancels them), plus the access log to see the status. `Expect: 100-continue`
    makes the app say when the request has reached its handler, so the hang-up lands while the
    body is being read, not before the request is parsed."""
    caplog.set_level(logging.INFO)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        caplog.clear()                          # start-up's migration and seeding lines
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /api/products HTTP/1.1\r\nHost: shop\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 10000\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 100")
        writer.write(b'{"sku": "UPLOAD-1", "name": "')
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await _until("the access log line",
                     lambda: any(r.name == "aiohttp.access" for r in caplog.records))
    finally:
        await runner.cleanup()
    [access] = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    return list(caplog.records), access


def assert_one_quiet_line(records: list[logging.LogRecord], access: str, logger: str) -> None:
    [mine] = [r for r in records if r.name.startswith(logger)]
    assert mine.getMessage().startswith("client went away: POST /api/products ")
    assert mine.levelno == logging.INFO and "\n" not in mine.getMessage()
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert '"POST /api/products HTTP/1.1" 499 ' in access, access
