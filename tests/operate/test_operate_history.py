"""The audit log: ids follow on however long the entries are; undo targets walk back; one lock
and one history per real rules file, whatever path names it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from operate import actions, history
from operate.actions import Actor
from operate.rule_edit import RulesChanged, compile_rules, read_rules

ROOT = Path(__file__).resolve().parents[2]
STRANGLER = [sys.executable, "-m", "strangler"]


def test_ids_follow_on_across_entries_longer_than_a_read_chunk(tmp_path: Path):
    sizes = [10, 20_000, 5, 9_000, 0, 70_000, 3]
    ids = [history.append(tmp_path, {"diff": "x" * n}) for n in sizes]
    assert ids == list(range(1, len(sizes) + 1))
    assert [len(e["diff"]) for e in history.entries(tmp_path)] == sizes


def test_undo_target_skips_undos_and_what_they_undid():
    log = [{"id": 1, "undoes": None}, {"id": 2, "undoes": None}, {"id": 3, "undoes": None},
           {"id": 4, "undoes": 3}, {"id": 5, "undoes": None}, {"id": 6, "undoes": 5}]
    assert history.undo_target(log)["id"] == 2
    assert history.undo_target(log[:5])["id"] == 5
    assert history.undo_target([{"id": 1, "undoes": None}, {"id": 2, "undoes": 1}]) is None


# ---- one history per real file, whatever path names it -----------------------------------------

def symlinked(demo: Path) -> Path:
    """racelink.yaml -> demo.yaml beside it: two names, one rules file."""
    link = demo.parent / "racelink.yaml"
    link.symlink_to(demo.name)
    return link


def test_edits_through_a_symlink_and_the_real_name_take_one_lock(
        demo: Path, monkeypatch: pytest.MonkeyPatch):
    """The second writer must wait for the first and then see its change, never overwrite it:
    the writer through the link edits while the other has checked the file and not yet written."""
    link = symlinked(demo)
    real_check = actions.require_unchanged
    other: dict[str, BaseException | None] = {}

    def rollout_through_link() -> None:
        try:
            actions.rollout(link, "catalog", 5, Actor("b", "race"))
            other["error"] = None
        except BaseException as exc:        # noqa: BLE001 - reported by the assertions below
            other["error"] = exc

    def check_then_let_the_other_in(rules):
        real_check(rules)
        if threading.current_thread() is threading.main_thread() and not other:
            thread = threading.Thread(target=rollout_through_link)
            thread.start()
            thread.join(timeout=1.5)        # with one lock it waits for us: we time out
            threads.append(thread)
    threads: list[threading.Thread] = []
    monkeypatch.setattr(actions, "require_unchanged", check_then_let_the_other_in)
    actions.shadow(demo, "catalog", True, Actor("a", "race"), percent=10)
    threads[0].join(timeout=10)
    assert isinstance(other["error"], RulesChanged) and "re-run" in str(other["error"])
    table = compile_rules(read_rules(demo))
    assert table.capability("catalog").shadow.percent == 10
    assert [e["command"] for e in history.entries(history.history_dir(link))] == \
        ["shadow catalog on --percent 10"]


def test_concurrent_cli_edits_through_both_names_never_lose_a_change(demo: Path):
    """As reported: `shadow on` through the file and `rollout` through the link, at once."""
    link = symlinked(demo)
    env = {**os.environ, "STRANGLER_OPERATOR": "racer"}
    for n in range(1, 5):
        procs = [subprocess.Popen([*STRANGLER, "shadow", "on", "catalog", "--percent", str(n),
                                   "--rules", str(demo)], env=env, cwd=ROOT, stderr=subprocess.PIPE),
                 subprocess.Popen([*STRANGLER, "rollout", "catalog", str(n), "--rules",
                                   str(link)], env=env, cwd=ROOT, stderr=subprocess.PIPE)]
        for proc in procs:
            err = proc.communicate(timeout=60)[1].decode()
            assert proc.returncode == 0 or (proc.returncode == 2 and "re-run" in err), err
    log = history.entries(history.history_dir(demo))
    assert log == history.entries(history.history_dir(link))
    assert [e["before"] for e in log[1:]] == [e["after"] for e in log[:-1]], \
        "two changes were made from the same rules version: one overwrote the other"
    assert log[-1]["after"] == read_rules(demo).version


def test_history_and_undo_through_either_name_see_every_change(demo: Path, cli):
    link = symlinked(demo)
    original = demo.read_bytes()
    assert cli("rollout", "catalog", "5", "--rules", str(demo)).code == 0
    assert cli("shadow", "off", "catalog", "--rules", str(link)).code == 0
    for name in (demo, link):
        log = json.loads(cli("history", "--json", "--rules", str(name)).out)
        assert [e["command"] for e in log] == ["shadow catalog off", "rollout catalog 5"]
    assert cli("undo", "--rules", str(demo)).code == 0       # undoes the change via the link
    assert cli("undo", "--rules", str(link)).code == 0       # and the one via the real name
    assert demo.read_bytes() == original and link.is_symlink()
    assert cli("rollback", "catalog", "--rules", str(link)).code == 0   # nothing to roll back
    assert not (demo.parent / ".history" / "racelink.yaml").exists()
