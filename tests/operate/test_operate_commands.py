"""The operator commands through `strangler ...`: what they change, what they print, and that a
refusal is one line, exit 2, and no change anywhere (rule bytes and history untouched)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from operate import history
from proxy.rules import load_table
from strangler.cli import main

ROOT = Path(__file__).resolve().parents[2]


def cap(path: Path):
    return load_table(path, environ={}).capability("catalog")


def test_the_migration_walk_and_what_each_step_prints(demo: Path, cli):
    r = cli("stage", "catalog", "canary", "--reason", "shadow match 99.9% for a week")
    assert r.code == 0 and r.err == ""
    assert r.out.splitlines()[0].startswith("catalog: stage shadow -> canary (rules ")
    assert "change #1" in r.out and "strangler rollout catalog 1" in r.out
    assert cli("rollout", "catalog", "5").out.startswith("catalog: rollout percent 0 -> 5 ")
    r = cli("writes", "catalog", "service")
    assert r.code == 0 and ("note: drain what legacy wrote (`strangler cdc drain catalog "
                            "--direction to_service`); from now on CDC carries service -> legacy: "
                            "check `strangler cdc status catalog`") in r.out
    assert cli("cutover", "catalog").code == 0
    assert (cap(demo).stage, cap(demo).writes) == ("cutover", "service")
    r = cli("retire", "catalog")
    assert r.code == 0 and "warning" not in r.out + r.err     # the shadow block left is no fault
    assert cap(demo).stage == "retired"


def test_rollback_of_a_broken_file_names_the_way_back_to_the_last_recorded_rules(demo: Path, cli):
    """Someone's typo must not hold an emergency rollback: the refusal names the stored copy of
    the last recorded change (what the proxies still serve) and the command that restores it."""
    assert cli("stage", "catalog", "canary", "--reason", "go").code == 0
    assert cli("rollout", "catalog", "10").code == 0
    demo.write_text(demo.read_text().replace("stage: canary", "stage: canry"))
    refused = cli("rollback", "catalog")
    assert refused.code == 2 and "stage: 'canry' is not one of" in refused.err
    restore = re.search(r"put back the rules of change #2 \(`strangler (rules apply \S+ --rules "
                        r"\S+)`\), then run `strangler rollback catalog` again", refused.err)
    assert restore, refused.err
    assert cli(*restore.group(1).split()).code == 0
    assert (cap(demo).stage, cap(demo).percent) == ("canary", 10)
    assert cli("rollback", "catalog").code == 0
    assert (cap(demo).stage, cap(demo).percent) == ("canary", 0)


def test_shadow_on_and_off(demo: Path, cli):
    r = cli("shadow", "off", "catalog")
    assert r.code == 0 and r.out.startswith("catalog: shadow off, percent 100 -> 0 ")
    assert cap(demo).shadow.percent == 0
    assert cli("shadow", "on", "catalog", "--percent", "10").code == 0
    assert cap(demo).shadow.percent == 10
    assert "already" in cli("shadow", "on", "catalog", "--percent", "10").out
    # The order, capability first, does the same.
    assert cli("shadow", "catalog", "off").code == 0
    assert cap(demo).shadow.percent == 0
    assert cli("shadow", "catalog", "on", "--percent", "25").code == 0
    assert cap(demo).shadow.percent == 25


@pytest.mark.parametrize("args, message", [
    (["rollout", "catalog", "150"], "percent 150 is outside 0..100; give e.g. 25"),
    (["rollout", "catalog", "-1"], "percent -1 is outside 0..100"),
    (["rollout", "catalog", "lots"], "percent 'lots' is not a number"),
    (["rollout", "catlog", "5"], "unknown capability 'catlog' in "),
    (["shadow", "on", "catalog", "--percent", "101"], "--percent 101 is outside 0..100"),
    (["retire", "catalog"], "catalog is in stage shadow; retire needs stage cutover first "
                            "(stages move forward one at a time): run `strangler stage catalog "
                            "canary` next"),
    (["cutover", "catalog"], "catalog is in stage shadow; stage cutover needs stage canary first"),
    (["stage", "catalog", "retired"], "retire needs stage cutover first"),
    (["writes", "catalog", "service"], "catalog is in stage shadow, where writes stay with "
                                       "legacy; the write owner changes only in canary: move "
                                       "there first with `strangler stage catalog canary`"),
    (["undo"], "nothing to undo: no change to "),
    (["stage", "catalog", "retird"], "unknown stage 'retird'; did you mean 'retired'? stages are "
                                     "legacy, shadow, canary, cutover, retired"),
    (["writes", "catalog", "both"], "unknown write owner 'both'; use legacy or service"),
    (["rollout", "catalog", "5", "--rules", "/nonexistent/rules.yaml"],
     "no such file or directory; pass a rule file or a directory of them; pass --rules"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(demo: Path, cli, snapshot, args,
                                                          message):
    before = snapshot(demo)
    r = cli(*args)
    assert r.code == 2 and r.out == ""
    assert r.err.count("\n") == 1 and r.err.startswith("strangler: error: ")
    assert message in r.err
    assert snapshot(demo) == before


def test_unknown_capability_suggests_the_close_name(demo: Path, cli):
    assert "did you mean 'catalog'?" in cli("rollback", "catlog").err


def test_cutover_needs_writes_on_the_service(demo: Path, cli, snapshot):
    cli("stage", "catalog", "canary")
    before = snapshot(demo)
    r = cli("cutover", "catalog")
    assert r.code == 2 and "cutover needs writes: service first: run `strangler writes catalog " \
                           "service`" in r.err
    assert snapshot(demo) == before


def test_back_from_cutover_to_shadow_is_refused_with_the_steps(demo: Path, cli):
    for args in (["stage", "catalog", "canary"], ["writes", "catalog", "service"],
                 ["cutover", "catalog"]):
        assert cli(*args).code == 0
    r = cli("stage", "catalog", "shadow")
    assert r.code == 2
    assert ("move back in steps: `strangler stage catalog canary`, then `strangler writes "
            "catalog legacy` once CDC service -> legacy has caught up") in r.err


def test_an_invalid_rules_file_is_refused_before_any_edit(demo: Path, cli, snapshot):
    demo.write_text(demo.read_text().replace("service: catalog", "service: catalgo"))
    before = snapshot(demo)
    r = cli("rollout", "catalog", "5")
    assert r.code == 2 and "do not validate" in r.err and "strangler rules validate" in r.err
    assert "unknown backend" in r.err or "catalgo" in r.err
    assert snapshot(demo) == before


def test_dry_run_shows_the_diff_and_writes_nothing(demo: Path, cli, snapshot):
    before = snapshot(demo)
    r = cli("stage", "catalog", "canary", "--dry-run")
    assert r.code == 0 and "dry run, nothing written" in r.out
    assert "  ~ capability catalog: stage: shadow -> canary" in r.out
    assert "-    stage: shadow\n+    stage: canary\n" in r.out
    assert "\033[" not in r.out                       # not a terminal: no colour
    assert snapshot(demo) == before


def test_rollback_from_every_stage(demo: Path, cli):
    r = cli("rollback", "catalog")
    assert r.code == 0 and "nothing to roll back (stage shadow" in r.out
    for args in (["stage", "catalog", "canary"], ["rollout", "catalog", "25"]):
        cli(*args)
    r = cli("rollback", "catalog", "--reason", "5xx")
    assert r.code == 0 and "rolled back (percent 25 -> 0)" in r.out
    assert (cap(demo).stage, cap(demo).percent, cap(demo).writes) == ("canary", 0, "legacy")
    for args in (["rollout", "catalog", "50"], ["writes", "catalog", "service"]):
        assert cli(*args).code == 0
    r = cli("cutover", "catalog")      # the file then says what the proxy does: every read
    assert r.code == 0 and r.out.startswith("catalog: stage canary -> cutover, rollout percent "
                                            "50 -> 100 (rules "), r.out
    assert cli("retire", "catalog").code == 0
    r = cli("rollback", "catalog")
    assert "rolled back (stage retired -> canary, percent 100 -> 0)" in r.out
    assert "writes stay with service" in r.out and "strangler writes catalog legacy" in r.out
    c = cap(demo)
    assert (c.stage, c.service_percent, c.writes) == ("canary", 0, "service")


def test_history_records_who_when_why_and_the_diff(demo: Path, cli):
    cli("stage", "catalog", "canary", "--reason", "ticket MIG-7", "--who", "alice")
    cli("rollout", "catalog", "5")
    log = json.loads(cli("history", "--json").out)
    assert [e["id"] for e in log] == [2, 1]
    first = log[1]
    assert (first["who"], first["why"], first["command"], first["capability"]) == \
        ("alice", "ticket MIG-7", "stage catalog canary", "catalog")
    assert first["at"].endswith("Z") and first["after"] == log[0]["before"]
    assert first["rule_diff"] == ["~ capability catalog: stage: shadow -> canary"]
    assert "+    stage: canary" in first["diff"]
    assert log[0]["who"] == "tester"                  # $STRANGLER_OPERATOR
    text = cli("history").out.splitlines()
    assert text[0].split() == ["#", "WHEN", "(UTC)", "WHO", "CHANGE", "WHY"]
    assert all(len(line) <= 80 for line in text)
    assert "alice" in text[2] and "ticket MIG-7" in text[2]
    assert cli("history", "catalog", "--limit", "1", "--json").out.count('"id"') == 1
    assert json.loads(cli("history", "search", "--json").out) == []
    long = cli("history", "--diff").out
    assert "why: ticket MIG-7" in long and "~ capability catalog: stage: shadow -> canary" in long


def test_undo_walks_back_to_the_original_bytes(demo: Path, cli):
    original = demo.read_bytes()
    steps = [["stage", "catalog", "canary"], ["rollout", "catalog", "5"],
             ["writes", "catalog", "service"], ["cutover", "catalog"], ["rollback", "catalog"]]
    versions = [load_table(demo, environ={}).version]
    for args in steps:
        assert cli(*args).code == 0
        versions.append(load_table(demo, environ={}).version)
    refused = cli("undo", "--reason", "back")      # undoing the rollback skips the gates
    assert refused.code == 2 and refused.err.startswith(
        "strangler: error: undo #5 refused: it sends more reads to the service (catalog 0 -> "
        "100 %) without the gates: use `strangler promote` or `strangler rollout`. If you mean "
        "it, add --force --reason TEXT (recorded)")
    assert cli("undo", "--force").err.startswith("strangler: error: --force needs --reason")
    for n in range(len(steps), 0, -1):
        r = cli("undo", "--reason", "back", *(["--force"] if n == len(steps) else []))
        assert r.code == 0 and r.out.startswith(f"undid change #{n}: ")
        assert load_table(demo, environ={}).version == versions[n - 1]
    assert demo.read_bytes() == original
    assert "nothing to undo" in cli("undo").err
    log = history.entries(history.history_dir(demo))
    assert [e["undoes"] for e in log[-5:]] == [5, 4, 3, 2, 1]


def test_undo_refuses_when_the_file_changed_by_hand(demo: Path, cli, snapshot):
    cli("shadow", "off", "catalog")
    demo.write_text(demo.read_text() + "# edited by hand\n")
    before = snapshot(demo)
    r = cli("undo")
    assert r.code == 2 and "changed since change #1 (shadow catalog off) wrote it" in r.err
    assert snapshot(demo) == before
    assert f"note: {demo} was edited outside strangler after change #1; undo will refuse" \
        in cli("history").out


def test_edit_json_output(demo: Path, cli):
    out = json.loads(cli("rollout", "catalog", "1", "--json").out)
    assert out["changed"] and out["entry_id"] == 1 and out["capability"] == "catalog"
    assert out["differences"] == [{"change": "changed", "subject": "capability catalog",
                                   "field": "percent", "old": 0.0, "new": 1.0}]


def test_the_console_command_as_a_subprocess(demo: Path):
    env = {**os.environ, "STRANGLER_RULES": str(demo)}
    run = subprocess.run([sys.executable, "-m", "strangler", "rollout", "catalog", "500"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == "strangler: error: percent 500 is outside 0..100; give e.g. 25\n"
    run = subprocess.run([sys.executable, "-m", "strangler", "rollout", "--help"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "sticky" in run.stdout and "--dry-run" in run.stdout


def test_entering_canary_says_what_share_the_service_now_answers(demo: Path, cli):
    assert "takes effect in canary" in cli("rollout", "catalog", "25").out
    r = cli("stage", "catalog", "canary")
    assert "note: the service now answers 25 % of reads" in r.out
    assert "strangler rollback catalog" in r.out


def test_warnings_a_change_brings_are_shown(demo: Path, cli):
    cli("stage", "catalog", "canary")
    cli("rollout", "catalog", "10")
    r = cli("stage", "catalog", "shadow")
    assert r.code == 0
    assert "] warning: rollout.percent is ignored in stage shadow" in r.out
    assert "warning" not in cli("rollout", "catalog", "20").out     # not new: not repeated


@pytest.mark.parametrize("command", [
    ["rollout"], ["shadow", "on"], ["shadow", "off"], ["writes"], ["stage"], ["cutover"],
    ["rollback"], ["retire"], ["history"], ["undo"], ["rules", "diff"], ["rules", "apply"]])
def test_every_command_explains_itself(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "--rules" in out and "--json" in out
    description = out.split("\n\n")[1]                 # the command's docstring
    assert len(description) > 60, description


def test_apply_refuses_what_the_stage_and_writes_commands_would(demo: Path, cli, tmp_path):
    """A whole file may not move the write owner outside canary, drop a capability writing to
    the service, or skip a stage; --force --reason does, recorded."""
    for args in (["stage", "catalog", "canary"], ["writes", "catalog", "service"],
                 ["cutover", "catalog"]):
        assert cli(*args).code == 0
    back = tmp_path / "demo.yaml"
    back.write_text(demo.read_text().replace("stage: cutover", "stage: legacy")
                    .replace("writes: service", "writes: legacy"))
    r = cli("rules", "apply", str(back))
    assert r.code == 2 and ("catalog's writes move service -> legacy with stage cutover -> "
                            "legacy: the write owner moves only in canary") in r.err
    assert cap(demo).writes == "service"
    gone = tmp_path / "gone.yaml"
    text = demo.read_text()
    gone.write_text(text[:text.index("capabilities:")] + "capabilities: []\n"
                    + text[text.index("default: legacy"):])
    r = cli("rules", "apply", str(gone))
    assert r.code == 2 and "catalog is removed while its writes go to the service" in r.err
    r = cli("rules", "apply", str(back), "--force", "--reason", "restore drill")
    assert r.code == 0 and cap(demo).writes == "legacy"
    assert any(e["capability"] == "catalog" and e["why"] == "restore drill"
               for e in history.entries(history.history_dir(demo)))
