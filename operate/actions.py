"""Every operator action as a plain function over rule files: the CLI calls these, and so does the
proxy's automatic rollback (`set_percent`). Each one reads the rules, checks the move, edits the
capability's file round-trip, validates the result, then writes it with compare-and-swap and
records who/when/why/diff in the history. A refused action changes nothing anywhere.

    change = set_percent("routing_rules/demo.yaml", "catalog", 0, who="proxy:web1:4242",
                         why="gate p99 ratio 2.3 > 1.5 on 412 requests",
                         expected_version="1a2b3c4d5e6f")
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from operate import history
from operate.rule_diff import Difference, diff_tables
from operate.rule_edit import (RuleSet, RulesChanged, RulesInvalid, compile_rules, edit_yaml,
                               read_rules, replace_atomically, require_unchanged,
                               sha256, version_of)
from operate.transitions import (check_percent, check_stage, check_writes, more_service_reads,
                                 rollback_plan)
from proxy.rules.moves import unsafe_moves
from proxy.rules import CompiledCapability, CompiledTable
from strangler.errors import OperatorError, did_you_mean


@dataclass(frozen=True, slots=True)
class Actor:
    who: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class Change:
    """What an action did (or, with dry_run, would do)."""
    command: str
    capability: str | None
    summary: str                          # one line: what changed
    changed: bool                         # False: already in that state, nothing written
    before: str                           # rules version before
    after: str                            # rules version after (== before when unchanged)
    dry_run: bool = False
    entry_id: int | None = None           # history entry, when written
    differences: tuple[Difference, ...] = ()
    text_diff: str = ""
    notes: tuple[str, ...] = ()             # what the operator should know or do next

    def line(self) -> str:
        if not self.changed:
            return f"{self.summary} (rules {self.before})"
        where = "dry run, nothing written" if self.dry_run else f"change #{self.entry_id}"
        return f"{self.summary} (rules {self.before} -> {self.after}, {where})"

    def as_dict(self) -> dict[str, Any]:
        return {"command": self.command, "capability": self.capability, "summary": self.summary,
                "changed": self.changed, "dry_run": self.dry_run, "before": self.before,
                "after": self.after, "entry_id": self.entry_id,
                "differences": [d.as_dict() for d in self.differences],
                "diff": self.text_diff, "notes": list(self.notes)}


# ---- the commands -----------------------------------------------------------------------------

def rollout(path: str | Path, capability: str, percent: float, actor: Actor,
            dry_run: bool = False, expected_version: str | None = None) -> Change:
    """Set the share of reads the service answers in canary."""
    def mutate(m: CommentedMap, cap: CompiledCapability) -> str:
        _set(_sub(m, "rollout", after=("writes", "stage")), "percent", _number(percent), ())
        return f"{cap.name}: rollout percent {cap.percent:g} -> {percent:g}"

    def notes(cap: CompiledCapability) -> tuple[str, ...]:
        if cap.stage == "canary":
            return ()
        return (f"{capability} is in stage {cap.stage}: the percent takes effect in canary "
                f"(`strangler stage {capability} canary`)",)
    return _edit(path, capability, f"rollout {capability} {percent:g}", actor, dry_run,
                 lambda cap: check_percent(cap, percent), mutate, expected_version, notes=notes,
                 same=lambda cap: f"{capability}: rollout percent is already {percent:g}")


def set_percent(rules_path: str | Path, capability: str, percent: float, who: str, why: str,
                expected_version: str | None = None) -> Change:
    """`rollout` for programs (the proxy's automatic rollback). With `expected_version` (the
    rules the caller was serving) it is a compare-and-swap: if the percent is already there
    (another proxy got there first) nothing is written and `changed` is False; if the rules
    moved on otherwise, RulesChanged is raised and the caller should reload and re-judge."""
    actor = Actor(who, why)
    try:
        return rollout(rules_path, capability, percent, actor, expected_version=expected_version)
    except RulesChanged:
        if expected_version is None:
            raise
        # Lost the race at write time: one more look decides between "done already" and "moved".
        return rollout(rules_path, capability, percent, actor, expected_version=expected_version)


def shadow(path: str | Path, capability: str, on: bool, actor: Actor,
           percent: float | None = None, dry_run: bool = False) -> Change:
    """Turn shadow traffic on (at PERCENT, default 100) or off (percent 0)."""
    target = (100.0 if percent is None else percent) if on else 0.0
    if not 0 <= target <= 100:
        raise OperatorError(f"--percent {target:g} is outside 0..100; give e.g. --percent 10")

    def mutate(m: CommentedMap, cap: CompiledCapability) -> str:
        _set(_sub(m, "shadow", after=("rollout", "writes", "stage")), "percent", _number(target),
             ())
        state = "on" if target else "off"
        return f"{cap.name}: shadow {state}, percent {cap.shadow.percent:g} -> {target:g}"
    word = f"on --percent {target:g}" if on else "off"
    return _edit(path, capability, f"shadow {capability} {word}", actor, dry_run, _no_check, mutate,
                 same=lambda cap: f"{capability}: shadow percent is already {target:g}")


def writes(path: str | Path, capability: str, owner: str, actor: Actor,
           dry_run: bool = False) -> Change:
    """Move the write owner (canary only)."""
    def mutate(m: CommentedMap, cap: CompiledCapability) -> str:
        _set(m, "writes", owner, after=("stage",))
        return f"{cap.name}: writes {cap.writes} -> {owner}"

    def notes(cap: CompiledCapability) -> tuple[str, ...]:
        old, flow = ("to_service", "service -> legacy") if owner == "service" \
            else ("to_legacy", "legacy -> service")
        return (f"drain what {cap.writes} wrote (`strangler cdc drain {cap.name} --direction "
                f"{old}`); from now on CDC carries {flow}: check `strangler cdc status "
                f"{cap.name}`",)
    return _edit(path, capability, f"writes {capability} {owner}", actor, dry_run,
                 lambda cap: check_writes(cap, owner), mutate, notes=notes,
                 same=lambda cap: f"{capability}: writes already go to {owner}")


def stage(path: str | Path, capability: str, target: str, actor: Actor,
          dry_run: bool = False, command: str | None = None) -> Change:
    """Move a capability to another stage (forward one at a time; back as writes allow)."""
    def mutate(m: CommentedMap, cap: CompiledCapability) -> str:
        written = (m.get("rollout") or {}).get("percent")
        _set_stage(m, cap, target)
        now = (m.get("rollout") or {}).get("percent")
        moved = f", rollout percent {written} -> {now}" if now != written else ""
        return f"{cap.name}: stage {cap.stage} -> {target}{moved}"

    def notes(cap: CompiledCapability) -> tuple[str, ...]:
        if target == "canary" and cap.service_percent == 0:
            if cap.percent == 0:
                return (f"legacy still answers every read: raise the share with "
                        f"`strangler rollout {capability} 1`",)
            return (f"the service now answers {cap.percent:g} % of reads (rollout.percent); "
                    f"`strangler rollback {capability}` sets it to 0",)
        if target == "retired":
            return ("no fallback to legacy any more; `strangler rollback "
                    f"{capability}` still sends reads back to legacy",)
        return ()
    return _edit(path, capability, command or f"stage {capability} {target}", actor, dry_run,
                 lambda cap: check_stage(cap, target), mutate, notes=notes,
                 same=lambda cap: f"{capability}: already in stage {target}")


def cutover(path: str | Path, capability: str, actor: Actor, dry_run: bool = False) -> Change:
    """The service answers every read (writes must already be with the service)."""
    return stage(path, capability, "cutover", actor, dry_run, command=f"cutover {capability}")


def retire(path: str | Path, capability: str, actor: Actor, dry_run: bool = False) -> Change:
    """The service only; no fallback to legacy (after cutover)."""
    return stage(path, capability, "retired", actor, dry_run, command=f"retire {capability}")


def rollback(path: str | Path, capability: str, actor: Actor, dry_run: bool = False) -> Change:
    """Legacy answers every read again, from any stage; writes stay where they are (see
    operate.transitions for why)."""
    def mutate(m: CommentedMap, cap: CompiledCapability) -> str | None:
        plan = rollback_plan(cap)
        if plan is None:
            return None
        _set_stage(m, cap, plan.stage)
        _set(_sub(m, "rollout", after=("writes", "stage")), "percent", _number(plan.percent), ())
        moved = f"stage {cap.stage} -> {plan.stage}, " if cap.stage != plan.stage else ""
        return (f"{cap.name}: rolled back ({moved}percent {cap.percent:g} -> {plan.percent:g}); "
                "legacy answers every read")

    def notes(cap: CompiledCapability) -> tuple[str, ...]:
        plan = rollback_plan(cap)
        return (plan.note,) if plan and plan.note else ()
    try:
        return _edit(path, capability, f"rollback {capability}", actor, dry_run, _no_check,
                     mutate, notes=notes,
                     same=lambda cap: f"{capability}: nothing to roll back (stage {cap.stage}, "
                                      f"legacy answers every read)")
    except RulesInvalid as exc:       # an emergency must not wait for someone's typo
        way_back = history.last_recorded(path)
        if way_back is None:
            raise
        raise RulesInvalid(f"{exc}; or, to roll back before fixing it, put back the rules of "
                           f"change #{way_back[0]} (`strangler rules apply {way_back[1]} --rules "
                           f"{path}`), then run `strangler rollback {capability}` again") from None


def apply(path: str | Path, new_file: str | Path, actor: Actor, dry_run: bool = False,
          force: bool = False) -> Change:
    """Replace the rule file with NEW_FILE after validating it (a rules directory: the file of
    the same name in it). Refused, unless FORCE, when it moves a write owner outside canary,
    removes a capability whose writes go to the service, or skips a stage."""
    rules = read_rules(path)
    new_path = Path(new_file)
    try:
        new = new_path.read_bytes()
    except OSError as exc:
        raise OperatorError(f"cannot read {new_path}: {exc.strerror or exc}") from None
    if rules.path.is_dir():
        target = next((f for f in rules.files if Path(f).name == new_path.name), None)
        if target is None:
            raise OperatorError(f"{rules.path} has no file named {new_path.name}; name the new "
                                "file after the one it replaces")
    else:
        target = next(iter(rules.files))
    try:
        before: CompiledTable | None = compile_rules(rules)
    except OperatorError:
        before = None                     # applying a good file is how a broken one is fixed
    if rules.files[target] == new:
        return Change(f"rules apply {new_path}", None, f"{target} already has this content",
                      False, rules.version, rules.version)
    command = f"rules apply {new_path}"
    after = compile_rules(rules, {target: new}, what=command)
    if before is None:      # diff against what was last recorded (what proxies most likely serve)
        recorded = history.last_recorded_table(rules.path)
        before = recorded[1] if recorded else None
    elif not force:
        _refuse(command, unsafe_moves(before, after))
    return _commit(rules, {target: new}, before, after, command=command,
                   capability=_changed_capabilities(before, after), summary=None, actor=actor,
                   dry_run=dry_run)


def undo(path: str | Path, actor: Actor, dry_run: bool = False, force: bool = False) -> Change:
    """Restore the rules as they were before the newest change not yet undone. Refused, unless
    FORCE, when that sends more reads to the service (undoing a rollback, the proxy's automatic
    one included, would skip the gates that caused it) or moves writes as `apply` may not."""
    rules = read_rules(path)
    hdir = history.history_dir(rules.path)
    entry = history.undo_target(history.entries(hdir))
    if entry is None:
        raise OperatorError(f"nothing to undo: no change to {rules.path} is recorded in {hdir}")
    moved = changed_since(rules, entry)
    if moved:
        raise OperatorError(f"{', '.join(moved)} changed since change #{entry['id']} "
                            f"({entry['command']}) wrote it, so undo cannot tell what to "
                            "restore; look at `strangler history` and edit by hand or use "
                            "`strangler rules apply`")
    replace = {_file_named(rules, name): history.load_object(hdir, before_sha)
               for name, (before_sha, _) in entry["files"].items()}
    command = f"undo #{entry['id']}"
    before, after = compile_rules(rules), compile_rules(rules, replace, what=command)
    if not force:
        raised = more_service_reads(before, after)
        _refuse(command, unsafe_moves(before, after) + (
            [f"it sends more reads to the service ({', '.join(raised)}) without the gates: use "
             "`strangler promote` or `strangler rollout`"] if raised else []))
    return _commit(rules, replace, before, after, command=command,
                   capability=entry.get("capability"),
                   summary=f"undid change #{entry['id']}: {entry['summary']}", actor=actor,
                   dry_run=dry_run, undoes=entry["id"])


def _refuse(command: str, reasons: list[str]) -> None:
    if reasons:
        raise OperatorError(f"{command} refused: {'; '.join(reasons)}. If you mean it, add "
                            "--force --reason TEXT (recorded)")


def _changed_capabilities(before: CompiledTable | None, after: CompiledTable) -> str | None:
    """The capability a whole-file change is about, when it touches exactly one, so that
    `history CAP` and `report CAP` list it."""
    if before is None:
        return None
    subjects = {d.subject for d in diff_tables(before, after)}
    names = {s.split(" ", 1)[1] for s in subjects if s.startswith("capability ")}
    return names.pop() if len(names) == 1 and len(subjects) == 1 else None


def changed_since(rules: RuleSet, entry: dict[str, Any]) -> list[str]:
    """The files that are no longer what history ENTRY wrote (edited by hand since)."""
    moved = []
    for name, (_, after_sha) in entry["files"].items():
        file = _file_named(rules, name)
        if file is None or sha256(rules.files[file]) != after_sha:
            moved.append(file or name)
    return moved


def diff_files(old: str | Path, new: str | Path) -> list[Difference]:
    """The routing differences between two rule files (or directories)."""
    return diff_tables(compile_rules(read_rules(old)), compile_rules(read_rules(new)))


# ---- the machinery ----------------------------------------------------------------------------

def _no_check(cap: CompiledCapability) -> None:
    return None


def _edit(path: str | Path, name: str, command: str, actor: Actor, dry_run: bool,
          check: Callable[[CompiledCapability], None],
          mutate: Callable[[CommentedMap, CompiledCapability], str | None],
          expected_version: str | None = None, *,
          same: Callable[[CompiledCapability], str],
          notes: Callable[[CompiledCapability], tuple[str, ...]] = lambda cap: ()) -> Change:
    """Check, edit CAP's mapping with MUTATE (returns the summary, or None: nothing to do),
    validate, refuse edits that reach other capabilities, then commit."""
    rules = read_rules(path)
    table = compile_rules(rules)
    cap = find_capability(table, name)
    check(cap)
    summary: list[str | None] = []

    def edit_doc(doc: Any) -> None:
        summary.append(mutate(_capability_map(doc, name, cap), cap))
    text = edit_yaml(rules.text(cap.file), edit_doc).encode("utf-8")
    if summary[0] is None:
        return Change(command, name, same(cap), False, rules.version, rules.version)
    after = compile_rules(rules, {cap.file: text}, what=command) \
        if text != rules.files[cap.file] else table
    differences = diff_tables(table, after)
    if not differences:                     # same routing (e.g. a default made explicit)
        return Change(command, name, same(cap), False, rules.version, rules.version)
    stray = sorted({d.subject for d in differences} - {f"capability {name}"})
    if stray:                               # e.g. a YAML anchor shared with another capability
        raise OperatorError(f"{command} would also change {', '.join(stray)} (shared YAML anchor "
                            f"or alias in {cap.file}?); edit the file by hand and use "
                            "`strangler rules apply`")
    if expected_version is not None and rules.version != expected_version:
        raise RulesChanged(f"the rules are at version {rules.version}, not {expected_version} "
                           "as expected (someone changed them); reload and decide again")
    return _commit(rules, {cap.file: text}, table, after, command=command, capability=name,
                   summary=summary[0], actor=actor, dry_run=dry_run, notes=notes(cap))


def find_capability(table: CompiledTable, name: str) -> CompiledCapability:
    cap = table.capability(name)
    if cap is not None:
        return cap
    hint = did_you_mean(name, [c.name for c in table.capabilities])
    raise OperatorError(f"unknown capability {name!r} in {', '.join(table.files)}; {hint}")


def _commit(rules: RuleSet, replace: dict[str, bytes], before_table: CompiledTable | None,
            after_table: CompiledTable | None = None, *, command: str, capability: str | None,
            summary: str | None, actor: Actor, dry_run: bool, notes: tuple[str, ...] = (),
            undoes: int | None = None) -> Change:
    if after_table is None:
        after_table = compile_rules(rules, replace, what=command)
    differences = tuple(diff_tables(before_table, after_table)) if before_table else ()
    after_version = version_of([replace.get(f, raw) for f, raw in rules.files.items()])
    text = "".join(_unified(f, rules.files[f], new) for f, new in replace.items())
    notes += _new_warnings(before_table, after_table)
    if summary is None:
        subjects = ", ".join(dict.fromkeys(d.subject for d in differences))
        summary = (f"{command}: {len(differences)} routing change(s) ({subjects})"
                   if differences else f"{command}: no routing change (text only)")
    change = Change(command, capability, summary, True, rules.version, after_version, dry_run,
                    None, differences, text, notes)
    if dry_run:
        return change
    entry = {"who": actor.who, "why": actor.why, "command": command, "capability": capability,
             "summary": summary, "before": rules.version, "after": after_version,
             "undoes": undoes, "rule_diff": [str(d) for d in differences], "diff": text}
    entry_id = _write(rules, replace, entry)
    return Change(command, capability, summary, True, rules.version, after_version, False,
                  entry_id, differences, text, notes)


def _new_warnings(before: CompiledTable | None, after: CompiledTable) -> tuple[str, ...]:
    """Validation warnings the change brings (e.g. a percent that its new stage ignores)."""
    known = {(p.rule, p.message) for p in before.warnings} if before else set()
    return tuple(str(p) for p in after.warnings if (p.rule, p.message) not in known)


def _write(rules: RuleSet, replace: dict[str, bytes], entry: dict[str, Any]) -> int:
    """Compare-and-swap under the lock: keep both contents, replace the files, log the entry."""
    hdir = history.history_dir(rules.path)
    like = next(iter(replace))              # history files are shared as this rule file is
    written = False
    try:
        with history.lock(hdir, like):
            require_unchanged(rules)
            files = {}
            for f, new in replace.items():
                old_sha, new_sha = sha256(rules.files[f]), sha256(new)
                history.store_object(hdir, old_sha, rules.files[f], like)
                history.store_object(hdir, new_sha, new, like)
                files[history.file_key(f)] = [old_sha, new_sha]
            for f, new in replace.items():
                replace_atomically(f, new)
                written = True
            return history.append(hdir, {"at": history.now_utc(), **entry, "files": files},
                                  like)
    except OSError as exc:
        where = exc.filename or hdir
        if written:
            raise OperatorError(f"the rules were written but the history was not ({where}: "
                                f"{exc.strerror or exc}); `undo` will refuse until it is fixed") \
                from None
        raise OperatorError(f"cannot write {where}: {exc.strerror or exc}; nothing was changed "
                            "(check permissions and free space)") from None


def _unified(file: str, old: bytes, new: bytes) -> str:
    name = Path(file).name
    return "".join(difflib.unified_diff(old.decode("utf-8").splitlines(True),
                                        new.decode("utf-8").splitlines(True),
                                        f"a/{name}", f"b/{name}"))


def _file_named(rules: RuleSet, name: str) -> str | None:
    """The rule file a history entry names (by its real name; older entries: as spelled)."""
    return next((f for f in rules.files if history.file_key(f) == name), None) \
        or next((f for f in rules.files if Path(f).name == name), None)


def _capability_map(doc: Any, name: str, cap: CompiledCapability) -> CommentedMap:
    for item in doc.get("capabilities") or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise OperatorError(f"capability {name!r} is not in {cap.file} as written "
                        "(anchors or merge keys?); edit it by hand")


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _set(m: CommentedMap, key: str, value: Any, after: tuple[str, ...]) -> None:
    """Set KEY in place, or insert it after the first of AFTER that exists (else at the end)."""
    if key in m:
        old = m[key]
        if isinstance(old, str) and isinstance(value, (int, float)) and old.endswith("%"):
            value = f"{value:g}%"             # 5% -> 25%, the operator's notation
        if isinstance(old, (SingleQuotedScalarString, DoubleQuotedScalarString)) \
                and isinstance(value, str):
            value = type(old)(value)          # 'shadow' -> 'canary', quotes kept
        m[key] = value
        return
    keys = list(m.keys())
    anchor = next((k for k in after if k in m), None)
    m.insert(keys.index(anchor) + 1 if anchor else len(keys), key, value)


def _sub(m: CommentedMap, key: str, after: tuple[str, ...]) -> CommentedMap:
    """The mapping under KEY, created (block style) when missing."""
    if not isinstance(m.get(key), dict):
        _set(m, key, CommentedMap(), after)
    return m[key]


def _set_stage(m: CommentedMap, cap: CompiledCapability, target: str) -> None:
    """Set the stage; entering canary writes the owner and the percent explicitly, since canary
    does not imply them. Entering cutover or retired sets a written percent to 100, which is
    what the service then answers: the file stays true (no "percent is ignored" warning), and a
    step back to canary changes no client's side until the percent is lowered."""
    _set(m, "stage", target, after=())
    if target == "canary":
        _set(m, "writes", m.get("writes") or cap.writes, after=("stage",))
        rollout = _sub(m, "rollout", after=("writes", "stage"))
        if "percent" not in rollout:
            rollout["percent"] = _number(cap.percent)
    elif target in ("cutover", "retired") and isinstance(m.get("rollout"), dict) \
            and "percent" in m["rollout"]:
        _set(m["rollout"], "percent", 100, ())
