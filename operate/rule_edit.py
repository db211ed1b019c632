"""Edit rule files safely: round-trip YAML, validate the result, compare-and-swap, atomic write.

    rules = read_rules(path)                      # bytes of every file + the rules version
    text = edit_yaml(rules.text(file), mutate)    # ruamel round trip: comments/order/style kept
    after = compile_rules(rules, {file: text})    # the rule set as it would become, or refuse
    with locked(lock_file):                       # one writer per host at a time
        require_unchanged(rules)                  # the files did not move since they were read
        replace_atomically(file, text)            # temp + fsync + os.replace + fsync(dir)

The version is the compiled table's version (sha256 of the files' bytes, 12 hex), the same one a
proxy shows in /admin/status, so "the version I was serving" can be checked against the file.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Callable, Iterator

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from proxy.rules import CompiledTable, RulesUnreadable, check_rules
from proxy.rules.source import rule_files, version_of
from strangler.errors import OperatorError


class RulesInvalid(OperatorError):
    """The rules on disk do not validate (the proxies keep serving their last valid ones)."""


class RulesChanged(OperatorError):
    """The rules on disk are not the ones the edit was computed from: re-run, never overwrite."""


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rule files under PATH as read at one moment."""
    path: Path
    files: dict[str, bytes]       # file name as rule_files spells it -> bytes, in load order
    version: str

    def text(self, file: str) -> str:
        return self.files[file].decode("utf-8")


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def read_rules(path: str | Path) -> RuleSet:
    """Read every rule file under PATH (one file or a directory of *.yaml)."""
    try:
        names = rule_files(path)
    except RulesUnreadable as exc:
        raise OperatorError(f"{exc.problems[0]}; pass --rules FILE|DIR or set STRANGLER_RULES") \
            from None
    files: dict[str, bytes] = {}
    for f in names:
        try:
            files[str(f)] = f.read_bytes()
        except OSError as exc:
            raise OperatorError(f"cannot read {f}: {exc.strerror or exc}") from None
    return RuleSet(Path(path), files, version_of(list(files.values())))


def compile_rules(rules: RuleSet, replace: dict[str, bytes] | None = None,
                  what: str = "") -> CompiledTable:
    """Compile the rule set (with `replace` standing in for some files) or refuse in one line."""
    texts = {**rules.files, **(replace or {})}
    report = check_rules(rules.path, texts=texts, environ={})
    if report.table is not None:
        return report.table
    first = report.errors[0]
    more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
    if replace:
        raise OperatorError(f"{what or 'the change'} would make the rules invalid: {first}{more}; "
                            "nothing was written")
    raise RulesInvalid(f"the rules at {rules.path} do not validate: {first}{more}; fix them first "
                       f"(`strangler rules validate {rules.path}`)")


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096                 # never re-wrap an operator's long lines
    return y


def edit_yaml(text: str, mutate: Callable[[Any], None]) -> str:
    """Load TEXT round-trip, let `mutate` change the document in place, dump it back.

    ruamel keeps comments, key order and flow/block style. Where its dump still differs from
    the file (comments before `---`, unusual indentation), only the lines the edit changed are
    spliced into the operator's own text, so everything else stays byte for byte."""
    if "\r\n" in text:                        # a file saved on Windows keeps its line ends
        return edit_yaml(text.replace("\r\n", "\n"), mutate).replace("\n", "\r\n")
    y = _yaml()
    try:
        doc, indent, block_seq_indent = load_yaml_guess_indent(text, yaml=y)
    except YAMLError as exc:
        raise OperatorError(f"the rule file is not valid YAML ({exc}); "
                            "run `strangler rules validate`") from None
    y.indent(mapping=_mapping_indent(text, indent, block_seq_indent), sequence=indent or 2,
             offset=block_seq_indent or 0)
    y.explicit_start = _EXPLICIT_START.match(text) is not None
    identity = _dump(y, doc)
    mutate(doc)
    edited = _dump(y, doc)
    return edited if identity == text else _splice(text, identity, edited)


def _dump(y: YAML, doc: Any) -> str:
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _splice(original: str, identity: str, edited: str) -> str:
    """Apply the identity -> edited line changes to ORIGINAL, through the lines ORIGINAL and
    IDENTITY share. When a change falls where they differ, ruamel's whole dump is used."""
    o, i, e = (t.splitlines(True) for t in (original, identity, edited))
    where: dict[int, int] = {}
    for tag, a1, a2, b1, b2 in SequenceMatcher(None, i, o, autojunk=False).get_opcodes():
        if tag == "equal" or (tag == "replace" and a2 - a1 == b2 - b1):   # line for line
            where.update((a1 + k, b1 + k) for k in range(a2 - a1))
    out = list(o)
    hunks = [h for h in SequenceMatcher(None, i, e, autojunk=False).get_opcodes() if h[0] != "equal"]
    for _, i1, i2, j1, j2 in reversed(hunks):
        if i1 < i2:
            span = [where.get(k) for k in range(i1, i2)]
            if None in span or span != list(range(span[0], span[0] + len(span))):
                return edited
            start, end = span[0], span[-1] + 1
        elif i1 - 1 in where:
            start = end = where[i1 - 1] + 1
        elif i1 in where:
            start = end = where[i1]
        else:
            return edited
        out[start:end] = e[j1:j2]
    return "".join(out)


_EXPLICIT_START = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*---(?:[ \t\n]|$)")


_BLOCK_KEY = re.compile(r"^( *)((?:- +)*)[^\s#\-'\"{\[][^#]*?:[ \t]*(?:#.*)?$")


def _mapping_indent(text: str, sequence: int | None = None, offset: int | None = None) -> int:
    """How far the file indents a mapping nested under a key (ruamel guesses the sequence
    indent only). Measured between a `key:` line opening a block and the first key below it,
    from the key's own column (after any `- `), so list items (`- name: x` with keys at +2,
    `-   name:`) and the order of top-level keys do not mislead it; inside `capabilities:`
    first, where the edits happen. With no nested mapping to measure, a list's dash offset under
    its key (else its item indent) is the file's step."""
    found: dict[bool, int] = {}
    in_capabilities = False
    opener: int | None = None              # column of the previous line's block key
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if indent == 0:
            in_capabilities = stripped.startswith("capabilities:")
        if opener is not None and indent > opener and not stripped.startswith("-"):
            found.setdefault(in_capabilities, indent - opener)
        key = _BLOCK_KEY.match(line)
        opener = indent + len(key.group(2)) if key else None
    return found.get(True) or found.get(False) or offset or sequence or 2


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """An advisory lock around check-and-replace: writers on one host take turns. Writers on
    other hosts are caught by the version check (the file is the single source of truth).
    A lock file this user may not write is still locked through a read-only open (flock needs
    no write access), so a lock created by another operator never blocks the edit."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        fd = os.open(lock_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)               # closing releases the lock


def require_unchanged(rules: RuleSet) -> None:
    """Refuse when any rule file differs from what was read (call while holding the lock)."""
    now = read_rules(rules.path)
    if now.files == rules.files:
        return
    moved = [f for f in {*rules.files, *now.files} if rules.files.get(f) != now.files.get(f)]
    raise RulesChanged(f"{', '.join(sorted(moved))} changed since it was read (by another "
                       "operator or a proxy's automatic rollback); re-run the command")


def replace_atomically(file: str | Path, data: bytes, mode: int | None = None,
                       gid: int | None = None) -> None:
    """Write DATA to FILE so readers see the old bytes or the new, never a mix.

    Temp file in the same directory (same filesystem), fsync, keep the mode, owner and group
    (the proxy may read the file as another user of its group), os.replace, fsync the directory
    so the rename survives a crash. A symlinked rule file has its target replaced; a new file
    gets MODE and GID when given, else the temp file's 0600 and the directory's group.
    """
    target = Path(os.path.realpath(file))
    uid = -1
    if target.exists():
        st = target.stat()
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        keep_owner(tmp, uid, gid)          # before chmod: chown may clear set-id bits
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def keep_owner(path: str | Path | int, uid: int, gid: int | None) -> None:
    """Give PATH (or an open fd) owner UID and group GID as far as this user may: root keeps
    both, a member of GID keeps the group, anyone else leaves them as created."""
    if gid is None or gid < 0:
        return
    chown = os.fchown if isinstance(path, int) else os.chown
    for owner in dict.fromkeys((uid, -1)):
        try:
            chown(path, owner, gid)
            return
        except PermissionError:
            continue
