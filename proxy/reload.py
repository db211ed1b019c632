"""The rules as the running proxy knows them: load off the event loop, keep the last good table.

A failed load never replaces the table that is serving; its problems (file:line [rule] message)
are kept as `last_error` for /admin/status and the log. `watch()` polls the rule files' inode,
mtime and size (1 s by default) and calls back on change; SIGHUP and POST /admin/reload call `load()`
directly. Loads are serialised so two triggers cannot race.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from proxy.rules import RulesError, load_table
from proxy.rules.moves import unsafe_moves

log = logging.getLogger("strangler.proxy.reload")


@dataclass(frozen=True, slots=True)
class LoadResult:
    ok: bool
    version: str
    problems: tuple[str, ...] = ()
    restarting: tuple[int, ...] = ()   # workers (by index) that load the rules as they start


def load_in_thread(path: Path) -> Awaitable[Any]:
    """Build a table on the default executor: parsing and compiling never block the loop."""
    return asyncio.get_running_loop().run_in_executor(None, load_table, path)


def problems_of(exc: Exception) -> tuple[str, ...]:
    if isinstance(exc, RulesError):
        return tuple(str(p) for p in exc.problems) or (str(exc),)
    return (f"{type(exc).__name__}: {exc}",)


def fingerprint(path: Path) -> tuple:
    """Inode, mtime and size of the rule file(s): cheap to poll, changes on every save. The
    inode catches an atomic replace (write a temp file, rename it over) that keeps the size and
    lands within the file system's mtime granularity."""
    files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((str(f), st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(f), None, None, None))
    return tuple(out)


class RulesSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.table: Any = None
        self.loaded_at = 0.0
        self.last_error: tuple[str, ...] = ()
        self.last_error_at = 0.0
        self.reloads = {"ok": 0, "error": 0}
        self._lock = asyncio.Lock()
        self._seen: tuple = ()

    async def load(self) -> tuple[LoadResult, Any]:
        """Load and validate; on success the new table becomes current. Never raises."""
        async with self._lock:
            seen = fingerprint(self.path)
            try:
                table = await load_in_thread(self.path)
            except Exception as exc:  # the old table keeps serving
                self._seen = seen
                self.last_error = problems_of(exc)
                self.last_error_at = time.time()
                self.reloads["error"] += 1
                log.error("rules not reloaded, still serving %s:\n  %s",
                          getattr(self.table, "version", "nothing"), "\n  ".join(self.last_error))
                return LoadResult(False, getattr(self.table, "version", ""), self.last_error), None
            self._seen = seen
            moves = unsafe_moves(self.table, table) if self.table is not None else []
            self.table = table
            self.loaded_at = time.time()
            self.last_error = ()
            self.reloads["ok"] += 1
            log.info("rules %s loaded from %s", table.version, self.path)
            for move in moves:      # served (the file is the operator's word), but not quietly
                log.warning("rules %s: %s (the stage and writes commands refuse this)",
                            table.version, move)
            return LoadResult(True, table.version), table

    async def watch(self, interval_s: float, on_change: Callable[[], Awaitable[Any]]) -> None:
        """Poll the files; call `on_change()` when their inode, mtime or size moved."""
        self._seen = self._seen or fingerprint(self.path)
        while True:
            await asyncio.sleep(interval_s)
            if fingerprint(self.path) != self._seen:
                await on_change()

    def status(self) -> dict[str, Any]:
        rules = self.table.status() if hasattr(self.table, "status") else {}
        return {
            "path": str(self.path),
            "version": getattr(self.table, "version", None),
            "loaded_at": self.loaded_at,
            "last_reload_error": list(self.last_error) or None,
            "last_reload_error_at": self.last_error_at or None,
            "reloads": dict(self.reloads),
            **{k: v for k, v in rules.items() if k not in ("version",)},
        }
