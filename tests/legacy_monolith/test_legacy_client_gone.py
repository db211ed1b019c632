"""A client that hangs up mid-upload is not a server error: one log line, no traceback, no 500.

After a slow-upload test the shop's log once held hundreds of `unhandled error ...
ConnectionResetError: Connection lost` tracebacks, each answered (to nobody) as a 500.
"""
from __future__ import annotations

from legacy_monolith.app import create_app
from strangler.db import sqlite_url
from tests.client_gone import assert_one_quiet_line, hang_up_mid_upload
from tests.legacy_monolith.legacy_shop import SEEDED_PRODUCTS


async def test_a_client_gone_mid_upload_is_one_line_without_traceback(tmp_path, caplog):
    app = create_app(sqlite_url(tmp_path / "legacy.db"), seed_products=SEEDED_PRODUCTS)
    records, access = await hang_up_mid_upload(app, caplog)
    assert_one_quiet_line(records, access, "legacy_monolith")
    assert "Traceback" not in caplog.text
