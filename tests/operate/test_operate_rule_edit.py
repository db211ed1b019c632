"""Rule edits keep the operator's file, refuse stale reads and invalid results, and are atomic."""
from __future__ import annotations

import difflib
import os
import stat
import threading
from pathlib import Path

import pytest

from operate import actions, history
from operate.actions import Actor
from operate.rule_edit import RulesChanged, compile_rules, read_rules, replace_atomically
from strangler.errors import OperatorError

ME = Actor("tester", "test")

# Odd but valid formatting: 4-space mappings, unindented sequences, flow maps, quotes, comments
# in odd places, a blank line, a document marker.
ODD = """\
---
# top comment
version: 1
backends:
    old: {url: "http://127.0.0.1:9001"}   # flow map, quoted
    new:
        url: 'http://127.0.0.1:9002'
        dry_run: yes

capabilities:
- name: search
  match:
  - {path_prefix: /search}    # flow
  legacy: old
  service: new
  stage: canary
  writes: legacy      # keep me
  rollout: {percent: 5, sticky: [header:X-User-Id], steps: [5, 50, 100]}
  # trailing comment in the capability
- name: legacy_only
  match:
  - path: /only
  legacy: old
  stage: legacy
default: old
"""


def changed_lines(old: str, new: str) -> list[str]:
    return [ln for ln in difflib.ndiff(old.splitlines(), new.splitlines())
            if ln.startswith(("- ", "+ "))]


def test_an_edit_changes_only_the_edited_value_and_keeps_its_comment(demo: Path):
    before = demo.read_text()
    actions.rollout(demo, "catalog", 25, ME)
    after = demo.read_text()
    assert changed_lines(before, after) == [
        "-       percent: 0               # share of reads the service answers once in canary",
        "+       percent: 25              # share of reads the service answers once in canary"]


def test_odd_formatting_survives_byte_for_byte_outside_the_edit(tmp_path: Path):
    path = tmp_path / "odd.yaml"
    path.write_text(ODD)
    actions.rollout(path, "search", 50, ME)
    assert changed_lines(ODD, path.read_text()) == [
        "-   rollout: {percent: 5, sticky: [header:X-User-Id], steps: [5, 50, 100]}",
        "+   rollout: {percent: 50, sticky: [header:X-User-Id], steps: [5, 50, 100]}"]
    actions.writes(path, "search", "service", ME)
    assert "  writes: service     # keep me\n" in path.read_text()   # comment column kept


def test_missing_keys_are_inserted_in_place_and_nothing_else_moves(tmp_path: Path):
    """Rollback from cutover writes an explicit owner and percent, after `stage`."""
    path = tmp_path / "r.yaml"
    text = ODD.replace("  stage: canary\n  writes: legacy      # keep me\n"
                       "  rollout: {percent: 5, sticky: [header:X-User-Id], steps: [5, 50, 100]}\n",
                       "  stage: cutover\n")
    path.write_text(text)
    change = actions.rollback(path, "search", ME)
    assert change.changed
    assert changed_lines(text, path.read_text()) == [
        "-   stage: cutover", "+   stage: canary", "+   writes: service", "+   rollout:",
        "+       percent: 0"]                     # the file's mapping indent (backends:) is 4


def test_a_file_changed_between_read_and_write_is_refused(demo: Path):
    rules = read_rules(demo)
    table = compile_rules(rules)
    edited = demo.read_bytes().replace(b"percent: 100 ", b"percent: 50  ")
    demo.write_bytes(edited)                               # another operator, meanwhile
    new = rules.files[str(demo)].replace(b"stage: shadow", b"stage: legacy")
    with pytest.raises(RulesChanged, match=r"demo\.yaml changed since it was read .*re-run"):
        actions._commit(rules, {str(demo): new}, table, command="stage catalog legacy",
                        capability="catalog", summary="x", actor=ME, dry_run=False)
    assert demo.read_bytes() == edited
    assert history.entries(history.history_dir(demo)) == []


def test_an_edit_that_would_break_the_rules_writes_nothing(tmp_path: Path, snapshot):
    path = tmp_path / "r.yaml"
    path.write_text(ODD)
    before = snapshot(path)
    # legacy_only has no service: the compiler refuses stage shadow for it.
    with pytest.raises(OperatorError, match=r"would make the rules invalid: .*r\.yaml:\d+: "
                                            r"\[rule legacy_only\] error: stage shadow needs a "
                                            r"service backend.*nothing was written"):
        actions.stage(path, "legacy_only", "shadow", ME)
    assert snapshot(path) == before


def test_readers_never_see_a_partial_file_during_200_rewrites(demo: Path):
    contents = [demo.read_bytes(), demo.read_bytes().replace(b"percent: 100 ", b"percent: 7   ")
                + b"# " + b"x" * 50_000 + b"\n"]          # a big one: many write() calls
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(demo.read_bytes())
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            replace_atomically(demo, contents[i % 2])
    finally:
        stop.set()
        thread.join()
    assert seen and seen <= set(contents)
    assert not [p for p in demo.parent.iterdir() if p.suffix == ".tmp"]


def test_the_file_mode_is_kept(demo: Path):
    demo.chmod(0o640)
    actions.rollout(demo, "catalog", 5, ME)
    assert stat.S_IMODE(os.stat(demo).st_mode) == 0o640


def test_a_rules_directory_edits_the_file_that_holds_the_capability(tmp_path: Path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(ODD.replace("  - name: legacy_only", "  - name: legacy_only")
                                  .split("capabilities:")[0] + "default: old\n")
    (rules / "b.yaml").write_text("version: 1\ncapabilities:\n" + ODD.split("capabilities:\n")[1]
                                  .split("default:")[0])
    a_before = (rules / "a.yaml").read_bytes()
    change = actions.rollout(rules, "search", 25, ME)
    assert (rules / "a.yaml").read_bytes() == a_before
    assert "rollout: {percent: 25," in (rules / "b.yaml").read_text()
    assert change.after == read_rules(rules).version == compile_rules(read_rules(rules)).version
    assert history.entries(rules / ".history" / "all")[0]["files"].keys() == {"b.yaml"}


def test_an_edit_that_changes_no_routing_writes_nothing(tmp_path: Path, snapshot):
    """`writes legacy_only legacy` would only make the stage's default explicit."""
    path = tmp_path / "r.yaml"
    path.write_text(ODD)
    before = snapshot(path)
    change = actions.writes(path, "legacy_only", "legacy", ME)
    assert not change.changed and change.summary == "legacy_only: writes already go to legacy"
    assert snapshot(path) == before


def test_an_edit_that_would_reach_another_capability_through_an_anchor_is_refused(
        tmp_path: Path, snapshot):
    path = tmp_path / "r.yaml"
    path.write_text(ODD.replace("  rollout: {percent: 5,", "  rollout: &shared {percent: 5,")
                    .replace("  stage: legacy\n",
                             "  service: new\n  stage: canary\n  writes: legacy\n"
                             "  rollout: *shared\n"))
    before = snapshot(path)
    with pytest.raises(OperatorError, match=r"rollout search 50 would also change capability "
                                            r"legacy_only \(shared YAML anchor"):
        actions.rollout(path, "search", 50, ME)
    assert snapshot(path) == before


def test_windows_line_ends_are_kept(tmp_path: Path):
    path = tmp_path / "crlf.yaml"
    path.write_bytes(ODD.replace("\n", "\r\n").encode())
    actions.rollout(path, "search", 50, ME)
    assert path.read_bytes() == ODD.replace("percent: 5,", "percent: 50,") \
        .replace("\n", "\r\n").encode()


def test_quoted_values_keep_their_quotes(tmp_path: Path):
    path = tmp_path / "q.yaml"
    path.write_text(ODD.replace("stage: canary", "stage: 'canary'")
                    .replace("writes: legacy  ", 'writes: "legacy"'))
    actions.writes(path, "search", "service", ME)
    actions.cutover(path, "search", ME)
    text = path.read_text()
    assert "  stage: 'cutover'\n" in text and '  writes: "service"   # keep me\n' in text


def test_a_percent_written_with_a_percent_sign_keeps_it(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text(ODD.replace("{percent: 5,", "{percent: '5%',"))
    actions.rollout(path, "search", 0.5, ME)
    assert "rollout: {percent: '0.5%', sticky:" in path.read_text()
