"""The test-only broken release: STRANGLER_CATALOG_FAULT on the real catalog service."""
from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from extracted_services.catalog.app import create_app
from extracted_services.catalog.fault import FAULT_ENV, fault_middlewares
from strangler.db import sqlite_url
from tests.conftest import free_port


async def test_error_rate_one_fails_every_api_read_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "error-rate:1")
    runner = web.AppRunner(create_app(sqlite_url(tmp_path / "c.db"), seed_products=3))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.get(f"{base}/api/products/1") as resp:
                    assert resp.status == 500
                    assert FAULT_ENV in (await resp.json())["error"]["message"]
            async with session.get(f"{base}/healthz") as resp:
                assert resp.status == 200
            async with session.patch(f"{base}/api/products/1", json={"price": 1.5}) as resp:
                assert resp.status == 200 and (await resp.json())["price"] == 1.5
    finally:
        await runner.cleanup()


def test_unset_installs_nothing_and_a_malformed_setting_says_what_to_write():
    assert fault_middlewares("") == []
    for bad in ("error-rate:2", "error-rate:x", "slow:1"):
        with pytest.raises(ValueError, match="use error-rate:R with 0 < R <= 1"):
            fault_middlewares(bad)
