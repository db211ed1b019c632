"""Fixtures the CDC apply tests share."""
from __future__ import annotations

import uuid

import pytest

from cdc.apply import Applier
from cdc.mapping import TO_SERVICE
from cdc.store import TargetStore
from cdc_apply_helpers import cleanup_cdc, create_service_schema, mapping


@pytest.fixture
def service(pg_url, pg_admin_url):
    create_service_schema(pg_url)
    store = TargetStore(pg_url)
    consumer = f"apply_{uuid.uuid4().hex[:8]}"        # its replication origin is unique too
    yield pg_url, Applier(store, mapping(), TO_SERVICE, consumer)
    store.close()
    cleanup_cdc(pg_admin_url, consumer, None)
