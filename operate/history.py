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

Operators who share the rules through a group share the history too: its directories and files
take the rules file's group and its group (and others') read/write bits, whatever the umask.
"""
from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from operate.rule_edit import compile_rules, keep_owner, locked, read_rules, replace_atomically
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


@dataclass(frozen=True, slots=True)
class Access:
    """The mode and group history files take from the rules file they record, so every operator
    who may edit the rules may also lock, log and read the stored copies."""
    mode: int                     # files: owner rw, plus the rules file's group/other r and w
    gid: int

    @property
    def dir_mode(self) -> int:
        """Directories: whoever may read may list (x), whoever may write may create (wx)."""
        m = self.mode | 0o700
        for r, w, x in ((0o040, 0o020, 0o010), (0o004, 0o002, 0o001)):
            m |= x if m & (r | w) else 0
        return m


def access_of(rules_file: str | Path | None) -> Access | None:
    """The Access for history files of RULES_FILE (None: no file to follow, keep the defaults)."""
    if rules_file is None:
        return None
    try:
        st = os.stat(rules_file)
    except OSError:
        return None
    return Access(0o600 | stat.S_IMODE(st.st_mode) & 0o066, st.st_gid)


def _share(path: Path | int, mode: int, access: Access | None) -> None:
    """Widen PATH's mode to MODE and give it the rules' group, as far as this user may (a file
    another operator created stays as it is: it was shared when it was made)."""
    if access is None:
        return
    try:
        now = os.fstat(path) if isinstance(path, int) else os.stat(path)
        if now.st_uid == os.geteuid() or os.geteuid() == 0:
            keep_owner(path, -1, access.gid)
            chmod = os.fchmod if isinstance(path, int) else os.chmod
            chmod(path, stat.S_IMODE(now.st_mode) | mode)
    except PermissionError:
        pass


def _make_dirs(path: Path, access: Access | None) -> None:
    """mkdir -p PATH, each directory it creates shared like the rules (see Access); PATH itself
    is widened when it exists (a history made before it was shared is repaired by its owner)."""
    missing = [path]
    while not missing[-1].parent.exists():
        missing.append(missing[-1].parent)
    for d in reversed(missing):
        try:
            d.mkdir(0o700 if access else 0o777)     # then widened to exactly dir_mode
        except FileExistsError:
            if d != path:
                continue               # another operator made it meanwhile
        _share(d, access.dir_mode if access else 0, access)


@contextmanager
def lock(hdir: Path, like: str | Path | None = None) -> Iterator[None]:
    """Hold the history's lock (one writer per host), creating it shared like LIKE's rules."""
    access = access_of(like)
    _make_dirs(hdir, access)
    _create(hdir / "lock", access)
    with locked(hdir / "lock"):
        yield


def _create(file: Path, access: Access | None) -> None:
    """Create FILE empty and shared like the rules (or share it, when it exists and is ours)."""
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if access else 0o644)
    except FileExistsError:
        _share(file, access.mode if access else 0, access)     # repaired by its owner
        return
    try:
        _share(fd, access.mode if access else 0, access)
    finally:
        os.close(fd)


def store_object(hdir: Path, sha: str, raw: bytes, like: str | Path | None = None) -> None:
    """Keep a file content by its sha256 (written once, atomically; identical content shared),
    readable by whoever may read LIKE's rules: it is what an emergency restores."""
    objects = hdir / "objects"
    target = objects / sha
    if target.exists():
        return
    access = access_of(like)
    _make_dirs(objects, access)
    replace_atomically(target, raw, *((access.mode, access.gid) if access else ()))


def load_object(hdir: Path, sha: str) -> bytes:
    try:
        return (hdir / "objects" / sha).read_bytes()
    except OSError:
        raise OperatorError(f"the history has no copy of content {sha[:12]} "
                            f"({hdir / 'objects'} was pruned?); restore the file by hand") from None


def append(hdir: Path, entry: dict[str, Any], like: str | Path | None = None) -> int:
    """Append ENTRY with the next id; returns the id. The log is shared like LIKE's rules."""
    access = access_of(like)
    _make_dirs(hdir, access)
    _create(hdir / "log.jsonl", access)
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


def last_recorded(path: str | Path) -> tuple[int, Path] | None:
    """The newest change in the history of a single rule file and its stored copy, if any
    (what the proxies most likely serve when the live file is broken)."""
    rules = read_rules(path)
    if len(rules.files) != 1:
        return None
    hdir = history_dir(rules.path)
    name = file_key(next(iter(rules.files)))
    for entry in reversed(entries(hdir)):
        shas = entry.get("files", {}).get(name)
        copy = hdir / "objects" / shas[1] if shas else None
        if copy is not None and copy.is_file():
            return entry["id"], copy
    return None


def last_recorded_table(path: str | Path):
    """(change id, compiled table) of `last_recorded`, or None when there is none or it does
    not compile either."""
    recorded = last_recorded(path)
    if recorded is None:
        return None
    try:
        return recorded[0], compile_rules(read_rules(recorded[1]))
    except OperatorError:
        return None
