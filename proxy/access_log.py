"""Structured access log: one JSON object per line, written by a background thread.

The event loop only puts a small dict on a queue (`logging.handlers.QueueHandler`); a
`QueueListener` thread formats and writes it, so a slow disk never stalls forwarding.
Never logged: Authorization, cookies, the override secret (no headers are logged at all), and
query values whose names look sensitive.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import re
import sys
from datetime import datetime, timezone
from typing import Any

SENSITIVE_QUERY = re.compile(r"(?i)(pass|secret|token|key|auth|session|sig|card|cvv|code)")
REDACTED = "***"


def redact_query(query: str) -> str:
    """Keep query parameter names; blank the values of those that look like secrets."""
    if not query:
        return ""
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and SENSITIVE_QUERY.search(name) else item)
    return "&".join(parts)


class _JsonLines(logging.Formatter):
    """Runs on the listener thread: the ISO timestamp is made here, not on the event loop."""

    def format(self, record: logging.LogRecord) -> str:
        entry = record.msg
        ts = entry.get("ts")
        if isinstance(ts, float):
            entry["ts"] = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")
        return json.dumps(entry, separators=(",", ":"), default=str)


class _DictQueueHandler(logging.handlers.QueueHandler):
    """Queue the record as is: formatting happens on the listener thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class AccessLog:
    """`target` is a file path or "-" for stdout. Call `close()` to flush on shutdown."""

    def __init__(self, target: str) -> None:
        if target == "-":
            handler: logging.Handler = logging.StreamHandler(sys.stdout)
        else:
            handler = logging.FileHandler(target, encoding="utf-8")
        handler.setFormatter(_JsonLines())
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._handler = handler
        self._logger = logging.Logger("strangler.access", logging.INFO)
        self._logger.propagate = False
        self._logger.addHandler(_DictQueueHandler(self._queue))
        self._listener.start()

    def write(self, entry: dict[str, Any]) -> None:
        self._logger.info(entry)

    def close(self) -> None:
        self._listener.stop()
        self._handler.close()
