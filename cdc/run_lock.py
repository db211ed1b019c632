"""One running copy of each half of a CDC route: a second `strangler cdc run` is refused.

Two captures of one SQLite change table would both publish and delete its rows, two applies
would split or repeat one stream, and a second PostgreSQL capture only waits on the busy slot
while it looks alive. So each half takes a lock in the database it works on, named after the
route and the half, and holds it for its life: PostgreSQL's session advisory lock (freed by
the server when the process dies, wherever it ran) or, for a SQLite file, an flock on a file
beside it. A lock lost with a dropped PostgreSQL connection is not taken again: it guards
against a second start by mistake, not against a determined race.
"""
from __future__ import annotations

from pathlib import Path

from strangler import file_lock
from strangler.db import sqlite_path
from strangler.errors import OperatorError


class RunLock:
    """Held from `acquire` to `release` (or the process's end)."""

    def __init__(self, url: str, name: str):
        self.url = url
        self.name = name            # e.g. "catalog_to_service capture"
        self._held = None

    def acquire(self) -> None:
        path = sqlite_path(self.url)
        self._held = self._flock(path) if path is not None else self._advisory()

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def _flock(self, database: Path):
        lock_path = database.with_name(f"{database.name}.{self.name.replace(' ', '-')}.lock")
        try:
            return file_lock.hold(lock_path)
        except file_lock.Held as held:
            raise self._refusal(f"{held} holds {lock_path}") from None

    def _advisory(self):
        from cdc.snapshot import connect
        conn = connect(self.url, connect_timeout=10,
                       application_name=f"strangler cdc run {self.name}"[:63])
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (self._key(),))
            if cur.fetchone()[0]:
                return conn
            cur.execute("SELECT a.pid, coalesce(host(a.client_addr), 'local socket'), a.backend_start"
                        " FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                        " WHERE l.locktype = 'advisory' AND l.granted"
                        " AND a.application_name = %s LIMIT 1",
                        (f"strangler cdc run {self.name}"[:63],))
            row = cur.fetchone()
        conn.close()
        holder = (f"PostgreSQL backend {row[0]} (from {row[1]}, since {row[2]:%Y-%m-%d %H:%M:%S %Z})"
                  if row else "another session")
        raise self._refusal(f"{holder} holds its lock")

    def _key(self) -> str:
        return f"strangler cdc {self.name}"

    def _refusal(self, holder: str) -> OperatorError:
        return OperatorError(f"CDC {self.name} is already running: {holder}; stop that "
                             "`strangler cdc run` first (one copy of each half at a time)")
