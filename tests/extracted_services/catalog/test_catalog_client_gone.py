"""A client that hangs up mid-upload is not a server error for the catalog service either:
one log line, no traceback, no 500 (as for the legacy shop, tests/legacy_monolith)."""
from __future__ import annotations

from extracted_services.catalog.app import create_app
from strangler.db import sqlite_url
from tests.client_gone import assert_one_quiet_line, hang_up_mid_upload


async def test_a_client_gone_mid_upload_is_one_line_without_traceback(tmp_path, caplog):
    app = create_app(sqlite_url(tmp_path / "catalog.db"), seed_products=5)
    records, access = await hang_up_mid_upload(app, caplog)
    assert_one_quiet_line(records, access, "extracted_services")
    assert "Traceback" not in caplog.text
