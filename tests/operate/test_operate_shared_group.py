"""Operators who share the rules through a group share the history: the rewritten rules file keeps
its mode, owner and group (the proxy may read it as another user of the group), and the lock,
log and stored copies take the rules file's group and group bits whatever the umask, so the
second operator can lock and log, and read the copy `rollback` names in an emergency."""
from __future__ import annotations

import grp
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from operate import actions, history
from operate.actions import Actor

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "routing_rules" / "demo.yaml"
GROUP = grp.getgrnam("daemon").gr_gid          # a group root is not in by default
OTHER_UID = 65534                              # nobody
ME = Actor("tester", "shared group")
# chown to another group needs root, as `make test` runs here: not skipped elsewhere, so a run
# without it fails loudly instead of passing on nothing.


@pytest.fixture
def umask() -> Iterator[callable]:
    """Set the process umask for one test."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A setgid directory of group daemon, 2775, that other users can reach, with demo.yaml
    (group daemon by inheritance, 0664) in it."""
    base = Path(tempfile.mkdtemp(prefix="strangler-shared-"))
    try:
        base.chmod(0o755)
        d = base / "rules"
        d.mkdir()
        os.chown(d, -1, GROUP)
        d.chmod(0o2775)
        rules = d / "demo.yaml"
        shutil.copy(DEMO, rules)
        rules.chmod(0o664)
        yield rules
    finally:
        shutil.rmtree(base)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def history_files(rules: Path) -> list[Path]:
    hdir = history.history_dir(rules)
    return [hdir / "lock", hdir / "log.jsonl", *sorted((hdir / "objects").iterdir())]


def test_an_edit_keeps_the_rules_files_group_and_mode(demo: Path):
    """root:daemon 0640, the proxy reading as a daemon user: it must stay root:daemon 0640."""
    os.chown(demo, -1, GROUP)
    demo.chmod(0o640)
    actions.rollout(demo, "catalog", 5, ME)
    assert (demo.stat().st_gid, mode(demo)) == (GROUP, 0o640)


def test_an_edit_keeps_the_owner_when_root_edits_another_users_file(demo: Path):
    os.chown(demo, OTHER_UID, GROUP)
    demo.chmod(0o600)
    actions.rollout(demo, "catalog", 5, ME)
    assert (demo.stat().st_uid, demo.stat().st_gid, mode(demo)) == (OTHER_UID, GROUP, 0o600)


@pytest.mark.parametrize("rules_mode, mask, file_mode, dir_mode", [
    (0o664, 0o002, 0o664, 0o775),       # the shared-group setup as reported
    (0o664, 0o077, 0o664, 0o775),       # a tight umask does not decide for the group
    (0o640, 0o022, 0o640, 0o750),       # group may read the rules: and the history
    (0o600, 0o000, 0o600, 0o700),       # private rules: a private history
])
def test_history_files_take_the_rules_files_group_and_group_bits(
        shared: Path, umask, rules_mode: int, mask: int, file_mode: int, dir_mode: int):
    shared.chmod(rules_mode)
    umask(mask)
    actions.rollout(shared, "catalog", 5, ME)
    actions.shadow(shared, "catalog", False, ME)       # appends to an existing log and lock
    files = history_files(shared)
    assert len(files) == 5                             # lock, log, three contents
    assert {f.name: (mode(f), f.stat().st_gid) for f in files} == \
        {f.name: (file_mode, GROUP) for f in files}
    hdir = history.history_dir(shared)
    for d in (hdir.parent, hdir, hdir / "objects"):
        assert (mode(d) & 0o777, d.stat().st_gid) == (dir_mode, GROUP), d
    assert (mode(shared), shared.stat().st_gid) == (rules_mode, GROUP)


def test_history_files_follow_a_rules_file_of_another_group_in_a_plain_directory(
        demo: Path, umask):
    """No setgid directory: the group comes from the rules file itself."""
    os.chown(demo, -1, GROUP)
    demo.chmod(0o660)
    umask(0o022)
    actions.rollout(demo, "catalog", 5, ME)
    assert {(mode(f), f.stat().st_gid) for f in history_files(demo)} == {(0o660, GROUP)}


def as_other_operator(fn: Callable[[], object]) -> str:
    """Run FN in a forked child as uid nobody in group daemon only (not root's), umask 002;
    returns "ok" or the error. Forked, not exec'd: the interpreter lives under /root, which
    nobody may read, so the code it needs is imported before the fork."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: never returns into pytest
        status = 0
        try:
            os.close(read_end)
            os.setgroups([GROUP])
            os.setgid(GROUP)
            os.setuid(OTHER_UID)
            os.umask(0o002)
            fn()
            os.write(write_end, b"ok")
        except BaseException as exc:               # noqa: BLE001 - reported to the parent
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        said = fh.read().decode()
    os.waitpid(pid, 0)
    return said


def test_a_second_operator_of_the_group_can_edit_undo_and_read_the_stored_copies(
        shared: Path, umask):
    umask(0o002)
    actions.rollout(shared, "catalog", 5, ME)                     # the first operator (root)
    second = Actor("second", "shared group")
    assert as_other_operator(lambda: actions.rollout(shared, "catalog", 10, second)) == "ok"
    assert [e["who"] for e in history.entries(history.history_dir(shared))] == \
        ["tester", "second"]
    assert as_other_operator(lambda: actions.undo(shared, second)) == "ok"
    for copy in history_files(shared)[2:]:                        # what an emergency restores
        assert as_other_operator(copy.read_bytes) == "ok", copy
    assert shared.stat().st_gid == GROUP and mode(shared) == 0o664
