"""One running copy of each half of a CDC route, on SQLite (a file lock) and on a real
PostgreSQL (a session advisory lock, freed when its holder dies)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from cdc.run_lock import RunLock
from strangler.db import sqlite_url
from strangler.errors import OperatorError


def test_a_second_holder_of_a_sqlite_route_half_is_refused_naming_the_first(tmp_path):
    (tmp_path / "legacy.db").touch()
    url = sqlite_url(tmp_path / "legacy.db")
    first = RunLock(url, "catalog_to_service capture")
    first.acquire()
    with pytest.raises(OperatorError) as refused:
        RunLock(url, "catalog_to_service capture").acquire()
    assert str(refused.value).startswith("CDC catalog_to_service capture is already running: process ")
    assert "legacy.db.catalog_to_service-capture.lock" in str(refused.value)
    other_half = RunLock(url, "catalog_to_service apply")     # another half is not refused
    other_half.acquire()
    first.release()
    again = RunLock(url, "catalog_to_service capture")
    again.acquire()
    again.release()
    other_half.release()


def test_a_second_holder_on_postgresql_is_refused_until_the_first_process_dies(pg_url):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from cdc.run_lock import RunLock; "
         f"lock = RunLock({pg_url!r}, 'catalog_to_legacy apply'); lock.acquire(); print('held', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OperatorError) as refused:
            RunLock(pg_url, "catalog_to_legacy apply").acquire()
        message = str(refused.value)
        assert message.startswith("CDC catalog_to_legacy apply is already running: PostgreSQL backend ")
        assert "(from 127.0.0.1, since " in message and message.endswith(
            "stop that `strangler cdc run` first (one copy of each half at a time)")
        RunLock(pg_url, "catalog_to_service apply").acquire()   # another route is free
    finally:
        holder.kill()
        holder.wait(10)
    lock = RunLock(pg_url, "catalog_to_legacy apply")
    for _ in range(50):                 # the server notices the dead client's closed socket
        try:
            lock.acquire()
            break
        except OperatorError:
            time.sleep(0.1)
    else:
        pytest.fail("the lock of a killed holder was never freed")
    lock.release()
