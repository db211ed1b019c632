"""`operate.actions.set_percent`, the proxy's automatic rollback: compare-and-swap on the rules
version the proxy served, so two proxies rolling back at once record exactly one change."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from operate import actions, history
from operate.actions import Actor
from operate.rule_edit import RulesChanged, read_rules
from proxy.rules import load_table

ROOT = Path(__file__).resolve().parents[2]
WHY = "gate p99 ratio 2.3 > 1.5 on 412 requests"


@pytest.fixture
def canary(demo: Path) -> Path:
    """The demo in canary at 25 %."""
    actions.stage(demo, "catalog", "canary", Actor("op"))
    actions.rollout(demo, "catalog", 25, Actor("op"))
    return demo


def test_set_percent_records_the_proxy_as_who_and_the_gate_as_why(canary: Path):
    served = read_rules(canary).version
    change = actions.set_percent(canary, "catalog", 0, who="proxy:web1:4242", why=WHY,
                                 expected_version=served)
    assert change.changed and change.before == served
    assert load_table(canary, environ={}).capability("catalog").percent == 0
    last = history.entries(history.history_dir(canary))[-1]
    assert (last["who"], last["why"], last["command"]) == ("proxy:web1:4242", WHY,
                                                           "rollout catalog 0")


def test_a_second_proxy_finds_it_done_and_writes_nothing(canary: Path, snapshot):
    served = read_rules(canary).version
    actions.set_percent(canary, "catalog", 0, who="proxy:a:1", why=WHY, expected_version=served)
    before = snapshot(canary)
    change = actions.set_percent(canary, "catalog", 0, who="proxy:b:2", why=WHY,
                                 expected_version=served)
    assert not change.changed and "already 0" in change.summary
    assert snapshot(canary) == before


def test_rules_that_moved_on_otherwise_are_not_overwritten(canary: Path, snapshot):
    served = read_rules(canary).version
    actions.rollout(canary, "catalog", 50, Actor("operator"))     # after the proxy's figures
    before = snapshot(canary)
    with pytest.raises(RulesChanged, match="not .* as expected .*reload and decide again"):
        actions.set_percent(canary, "catalog", 0, who="proxy:a:1", why=WHY,
                            expected_version=served)
    assert snapshot(canary) == before


RACER = """
import json, sys, time
from pathlib import Path
from operate.actions import set_percent
rules, version, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
change = set_percent(rules, "catalog", 0, who=f"proxy:test:{sys.argv[4]}", why="race",
                     expected_version=version)
print(json.dumps(change.as_dict()))
"""


def test_two_proxy_processes_rolling_back_at_once_record_one_change(canary: Path, tmp_path: Path):
    served = read_rules(canary).version
    entries_before = len(history.entries(history.history_dir(canary)))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(canary), served, str(go), str(n)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(2)]
    try:
        go.touch()
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    changes = [json.loads(out) for out, _ in results]
    assert sorted(c["changed"] for c in changes) == [False, True]
    log = history.entries(history.history_dir(canary))
    assert len(log) == entries_before + 1 and log[-1]["why"] == "race"
    assert load_table(canary, environ={}).capability("catalog").percent == 0


def test_losing_the_race_at_write_time_turns_into_a_no_op(canary: Path, monkeypatch):
    """Proxy b read the rules before proxy a wrote; its compare-and-swap fails, it looks again
    and finds the rollback done."""
    served, stale = read_rules(canary).version, read_rules(canary)
    actions.set_percent(canary, "catalog", 0, who="proxy:a:1", why=WHY, expected_version=served)
    reads = []

    def first_read_is_stale(path):
        reads.append(path)
        return stale if len(reads) == 1 else read_rules(path)
    monkeypatch.setattr(actions, "read_rules", first_read_is_stale)
    change = actions.set_percent(canary, "catalog", 0, who="proxy:b:2", why=WHY,
                                 expected_version=served)
    assert len(reads) == 2 and not change.changed
    assert len(history.entries(history.history_dir(canary))) == 3


WRITER = """
import json, sys, time
from pathlib import Path
from operate.actions import Actor, rollout
from operate.rule_edit import RulesChanged
rules, go, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
done = refused = 0
for i in range(15):
    try:
        done += rollout(rules, "catalog", (n * 15 + i) % 99 + 1, Actor(f"w{n}", "load")).changed
    except RulesChanged:
        refused += 1
print(json.dumps([done, refused]))
"""


def test_concurrent_writers_leave_one_unbroken_chain_of_changes(canary: Path, tmp_path: Path):
    """Three processes editing at once: each edit either lands (and is logged, chained to the
    one before) or is refused cleanly; the history replays to the file on disk."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(canary), str(go), str(n)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(3)]
    try:
        go.touch()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in results]
    counts = [json.loads(out) for out, _ in results]
    assert sum(done + refused for done, refused in counts) == 45
    log = history.entries(history.history_dir(canary))
    landed = log[2:]                                   # after the fixture's two changes
    assert len(landed) == sum(done for done, _ in counts) > 0
    assert [e["id"] for e in log] == list(range(1, len(log) + 1))
    assert all(a["after"] == b["before"] for a, b in zip(log, log[1:]))
    assert log[-1]["after"] == read_rules(canary).version == load_table(canary, environ={}).version
