"""Every edit command keeps the file's own indentation, whatever the order of the top-level keys
and the list-item style: a wrong guess indents an inserted key too deep, which makes YAML that
does not parse, so even `rollback` could not be written."""
from __future__ import annotations

from pathlib import Path

import pytest

from operate import actions
from operate.rule_edit import compile_rules, read_rules

BACKENDS = """\
backends:
{i}legacy:                   # the monolith
{i}{i}url: http://127.0.0.1:8001
{i}catalog:
{i}{i}url: http://127.0.0.1:8002
"""

# {d}: the dash's indent under `capabilities:`, {k}: the capability's keys, {s}: one more step.
CAPABILITIES = """\
capabilities:
{d}name: catalog             # the product catalog
{k}match:                    # one prefix
{k}{dd}path_prefix: /api/products
{k}legacy: legacy
{k}service: catalog
{k}stage: shadow             # keep me
{k}writes: legacy
{k}gates:
{k}{s}min_requests: 200      # gates comment
"""

STYLES = {        # name: (dash line prefix, key prefix, one mapping step, nested dash prefix)
    "two-space": ("  - ", "    ", "  ", "  - "),
    "four-space": ("    - ", "      ", "    ", "    - "),
    "dash-then-spaces": ("-   ", "    ", "    ", "-   "),
}


def capabilities(style: str, gates: bool = True) -> str:
    d, k, s, dd = STYLES[style]
    text = CAPABILITIES.format(d=d, k=k, s=s, dd=dd)
    return text if gates else text.split(f"{k}gates:")[0]


def backends(style: str) -> str:
    return BACKENDS.format(i=STYLES[style][2])


def layout(tmp_path: Path, name: str) -> Path:
    """Rule files laid out as operators do; returns the --rules path."""
    if name.startswith("dir-"):                       # README's directory layout
        style = name[4:]
        root = tmp_path / "rules"
        root.mkdir()
        (root / "00-backends.yaml").write_text(
            f"version: 1\n# shared upstreams\n{backends(style)}default: legacy\n")
        (root / "10-catalog.yaml").write_text(      # no nested mapping to measure the step by
            f"version: 1\n# the catalog\n{capabilities(style, gates=False)}")
        return root
    style = name.split("+")[0]
    path = tmp_path / "rules.yaml"
    path.write_text(f"version: 1\n# capabilities first\n{capabilities(style)}"
                    f"{backends(style)}default: legacy  # last\n")
    return path


def edited_file(rules: Path) -> Path:
    return rules / "10-catalog.yaml" if rules.is_dir() else rules


def comments(text: str) -> list[str]:
    return [line[line.index("#"):] for line in text.splitlines() if "#" in line]


STEPS = [
    ("stage canary", lambda p, me: actions.stage(p, "catalog", "canary", me)),
    ("rollout 10", lambda p, me: actions.rollout(p, "catalog", 10, me)),
    ("set_percent 3", lambda p, me: actions.set_percent(p, "catalog", 3, "proxy:test", "gate")),
    ("shadow on 5", lambda p, me: actions.shadow(p, "catalog", True, me, percent=5)),
    ("shadow off", lambda p, me: actions.shadow(p, "catalog", False, me)),
    ("writes service", lambda p, me: actions.writes(p, "catalog", "service", me)),
    ("stage cutover", lambda p, me: actions.stage(p, "catalog", "cutover", me)),
    ("rollback", lambda p, me: actions.rollback(p, "catalog", me)),
]


@pytest.mark.parametrize("name", ["two-space", "four-space", "dash-then-spaces",
                                  "dir-two-space", "dir-four-space", "dir-dash-then-spaces"])
def test_every_edit_command_keeps_the_files_indentation(tmp_path: Path, name: str):
    rules = layout(tmp_path, name)
    file = edited_file(rules)
    style = name.removeprefix("dir-")
    _, key, step, _ = STYLES[style]
    allowed = {len(key), len(key) + len(step)}        # capability keys, and one level below
    original = file.read_text()
    me = actions.Actor("tester", "layout test")
    for what, step_fn in STEPS:
        before = file.read_text()
        change = step_fn(rules, me)
        assert change.changed, what
        after = file.read_text()
        compile_rules(read_rules(rules))              # validates, or raises with the line
        assert comments(after) == comments(original), what
        added = [ln for ln in after.splitlines() if ln not in before.splitlines()]
        assert added and {len(ln) - len(ln.lstrip(" ")) for ln in added} <= allowed, \
            f"{what} indented {added} in a file whose steps are {sorted(allowed)}:\n{after}"
    assert f"{key}stage: canary" in file.read_text()
    assert f"{key}rollout:\n{key}{step}percent: 0\n" in file.read_text()


def test_rollback_of_a_capabilities_first_file_is_exactly_the_changed_lines(tmp_path: Path):
    """The operator's report: `capabilities:` before `backends:`, stage cutover, rollback."""
    rules = layout(tmp_path, "two-space")
    text = rules.read_text().replace("stage: shadow             # keep me\n    writes: legacy\n",
                                     "stage: cutover            # keep me\n    writes: service\n")
    rules.write_text(text)
    actions.rollback(rules, "catalog", actions.Actor("tester"))
    assert rules.read_text() == text.replace(
        "stage: cutover            # keep me\n    writes: service\n",
        "stage: canary             # keep me\n    writes: service\n"
        "    rollout:\n      percent: 0\n")


def test_rollback_inserting_a_percent_beside_written_rollout_keys_is_valid_yaml(tmp_path: Path):
    """The emergency case as reported: the inserted `percent` went 2 columns deeper than its
    sibling `sticky`, so `rollback` refused with "YAML syntax: did not find expected key"."""
    rules = layout(tmp_path, "two-space")
    text = rules.read_text().replace(
        "stage: shadow             # keep me\n    writes: legacy\n",
        "stage: cutover            # keep me\n    writes: service\n"
        "    rollout:\n      sticky: [header:X-User-Id]\n")
    rules.write_text(text)
    assert actions.rollback(rules, "catalog", actions.Actor("tester")).changed
    assert "    rollout:\n      sticky: [header:X-User-Id]\n      percent: 0\n" \
        in rules.read_text()
    assert compile_rules(read_rules(rules)).capability("catalog").percent == 0
