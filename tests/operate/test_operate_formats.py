"""The same migration walk over the demo rules written in many YAML styles: every step leaves
every line it does not edit byte for byte, the file stays valid, and undo gets back the exact
original bytes."""
from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from operate import actions
from operate.actions import Actor
from proxy.rules import load_table

ME = Actor("tester", "formats")
DEMO = Path(__file__).resolve().parents[2] / "routing_rules" / "demo.yaml"
WALK = [("stage", "canary"), ("rollout", 25), ("writes", "service"), ("stage", "cutover"),
        ("rollback", None), ("shadow", 10)]
# Keys an edit may touch (the line holding them, or a flow mapping line containing them).
EDITED = ("stage:", "writes:", "percent:", "rollout:")


def with_comments(text: str) -> str:
    """A trailing comment on every block line that can carry one."""
    return "".join(line + "   # note\n" if line.strip() and not line.lstrip().startswith("#")
                   else line + "\n" for line in text.splitlines())


def variants() -> dict[str, str]:
    data = yaml.safe_load(DEMO.read_text())
    block = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return {
        "demo": DEMO.read_text(),
        "block": block,
        "indent4": yaml.safe_dump(data, sort_keys=False, default_flow_style=False, indent=4),
        "mixed-flow": yaml.safe_dump(data, sort_keys=False, default_flow_style=None),
        "sorted-keys": yaml.safe_dump(data, sort_keys=True, default_flow_style=False),
        "explicit-start": "# leading comment\n" + yaml.safe_dump(
            data, sort_keys=False, default_flow_style=False, explicit_start=True),
        "commented": with_comments(block),
        "crlf": DEMO.read_text().replace("\n", "\r\n"),
    }


def step(path: Path, command: str, arg) -> actions.Change:
    if command == "stage":
        return actions.stage(path, "catalog", arg, ME)
    if command == "rollout":
        return actions.rollout(path, "catalog", arg, ME)
    if command == "writes":
        return actions.writes(path, "catalog", arg, ME)
    if command == "rollback":
        return actions.rollback(path, "catalog", ME)
    return actions.shadow(path, "catalog", True, ME, percent=arg)


@pytest.mark.parametrize("style", sorted(variants()))
def test_each_step_edits_only_its_lines_and_undo_restores_the_bytes(tmp_path: Path, style: str):
    original = variants()[style]
    path = tmp_path / "rules.yaml"
    path.write_bytes(original.encode())
    load_table(path, environ={})
    for command, arg in WALK:
        before = path.read_bytes().decode()
        assert step(path, command, arg).changed
        after = path.read_bytes().decode()
        load_table(path, environ={})
        touched = [ln for ln in difflib.ndiff(before.splitlines(), after.splitlines())
                   if ln.startswith(("- ", "+ "))]
        assert touched and all(any(key in ln for key in EDITED) for ln in touched), touched
    for _ in WALK:
        assert actions.undo(path, ME, force=True).changed     # the walk back, gates aside
    assert path.read_bytes() == original.encode()
