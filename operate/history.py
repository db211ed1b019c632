"""The audit log of rule changes: who, when, why, what command, and the diff; the basis of undo.

Beside the rules, never inside the loaded set:

    routing_rules/.history/demo.yaml/log.jsonl       one JSON object per change, append-only
    routing_rules/.history/demo.yaml/objects/<sha>   every file content before/after a change
    routing_rules/.history/demo.yaml/lock            flock: one writer at a time on this host

(a rules *directory* keeps its history in `<dir>/.history/all/`). Each entry names the files it
changed with their sha256 before and after, so `undo` can restore the exact previous bytes and
check that nobody changed the file since. Lines are appended with O_APPEND under flock and the
log is never rewritten; content objects are written before the rule file is replaced, the log
line after, so a crash leaves at worst an unlogged change that `undo` then refuses to guess about.
"""
from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from operate.rule_edit import replace_atomically
from strangler.errors import OperatorError


def history_dir(rules_path: str | Path) -> Path:
    """Where the lock, log and stored copies of these rules live, keyed on their real path: a
    symlink or another spelling of the same rules must share one lock (else two writers both
    pass the compare-and-swap and one change is lost) and one history (else `undo` misses)."""
    real = Path(os.path.realpath(rules_path))
    if real.is_dir():
        return real / ".history" / "all"
    return real.parent / ".history" / real.name


def file_key(file: str | Path) -> str:
    """The name an entry records a rule file under: the real file's, for the same reason."""
    return Path(os.path.realpath(file)).name


def default_who() -> str:
    """`$STRANGLER_OPERATOR`, else user@host."""
    who = os.environ.get("STRANGLER_OPERATOR", "").strip()
    if who:
        return who
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def store_object(hdir: Path, sha: str, raw: bytes) -> None:
    """Keep a file content by its sha256 (written once, atomically; identical content shared)."""
    objects = hdir / "objects"
    target = objects / sha
    if target.exists():
        return
    objects.mkdir(parents=True, exist_ok=True)
    replace_atomically(target, raw)


def load_object(hdir: Path, sha: str) -> bytes:
    try:
        return (hdir / "objects" / sha).read_bytes()
    except OSError:
        raise OperatorError(f"the history has no copy of content {sha[:12]} "
                            f"({hdir / 'objects'} was pruned?); restore the file by hand") from None


def append(hdir: Path, entry: dict[str, Any]) -> int:
    """Append ENTRY with the next id; returns the id."""
    hdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(hdir / "log.jsonl", os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = _last_line(fd)
        entry = {"id": json.loads(last)["id"] + 1 if last else 1, **entry}
        os.write(fd, (json.dumps(entry, sort_keys=False) + "\n").encode())
        os.fsync(fd)
        return entry["id"]
    finally:
        os.close(fd)


def _last_line(fd: int, chunk: int = 8192) -> bytes:
    """The log's last line, read backwards from the end (the log only grows)."""
    end = os.lseek(fd, 0, os.SEEK_END)
    tail = b""
    while end > 0:
        start = max(0, end - chunk)
        tail = os.pread(fd, end - start, start) + tail
        end = start
        lines = tail.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or end == 0:
            return lines[-1].strip()
    return b""


def entries(hdir: Path) -> list[dict[str, Any]]:
    """Every entry, oldest first (empty when nothing was ever changed through strangler)."""
    try:
        text = (hdir / "log.jsonl").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise OperatorError(f"{hdir / 'log.jsonl'} line {n} is not JSON (a torn write?); "
                                "move the line aside and re-run") from None
    return out


def undo_target(log: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest change that is not an undo and has not been undone: repeated `undo` walks
    back through history one change at a time."""
    undone = {e.get("undoes") for e in log}
    for entry in reversed(log):
        if entry.get("undoes") is None and entry["id"] not in undone:
            return entry
    return None
