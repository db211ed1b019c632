"""Structured access log: one JSON object per line, written by a background thread.

The event loop only puts the entry dict on a `queue.SimpleQueue` (well under 1 µs; a
`logging.Logger` call with a QueueHandler cost ~5 µs per request in record building alone).
One thread formats what has queued up (orjson, already a dependency: ~5x json's speed) and
writes it with one `write` per batch, so a slow disk never stalls forwarding and a busy proxy
does not pay a syscall per line.
Never logged: Authorization, cookies, the override secret (no headers are logged at all),
query values whose names look secret, and card-like numbers in path or query (proxy.sensitive).
"""
from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from datetime import datetime, timezone
from typing import Any, BinaryIO

import orjson

from proxy.sensitive import redact_cards, redact_query

REDACTED = "***"


log = logging.getLogger("strangler.proxy")
BATCH = 1024                     # lines per write at most
_STOP = object()


def format_entry(entry: dict[str, Any]) -> bytes:
    """One JSON line; the ISO timestamp and the redaction of path and query are done here (on
    the writer thread), not on the loop."""
    ts = entry.get("ts")
    if isinstance(ts, float):
        entry["ts"] = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")
    if "path" in entry:
        entry["path"] = redact_cards(entry["path"], REDACTED)
    if "query" in entry:
        entry["query"] = redact_query(entry["query"], REDACTED)
    return orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE)


class AccessLog:
    """`target` is a file path or "-" for stdout. Call `close()` to flush on shutdown."""

    def __init__(self, target: str) -> None:
        # 0600 when created: the log names clients' requests; umask's 0644 would share them.
        self._out: BinaryIO = (sys.stdout.buffer if target == "-" else
                               os.fdopen(os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                                 0o600), "ab"))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_batches, name="strangler-access-log",
                                        daemon=True)
        self._thread.start()

    def write(self, entry: dict[str, Any]) -> None:
        self._queue.put(entry)

    def _write_batches(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            batch = [get()]
            while len(batch) < BATCH:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP        # close() queues it last: nothing follows it
            if stop:
                batch.pop()
            if batch:
                try:
                    self._out.write(b"".join(map(format_entry, batch)))
                    self._out.flush()
                except OSError as exc:          # a full disk loses lines, never the proxy
                    log.error("access log: %d lines not written: %s", len(batch), exc)
            if stop:
                return

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        if self._out is not sys.stdout.buffer:
            self._out.close()
