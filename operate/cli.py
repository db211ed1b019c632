"""`strangler rollout|shadow on|off|writes|stage|cutover|rollback|retire|history|undo` and
`strangler rules diff|apply`: the operator's commands over rule files (no proxy needed).

Every edit validates the rules as they would become, writes atomically only if the file did
not change since it was read, and is recorded in the history. Exit codes: 0 done (or nothing
to do), 2 refused (nothing changed anywhere); `rules diff` exits 1 when the rules differ.
"""
from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path

from operate import actions, history
from operate.actions import Actor, Change
from operate.render import diff_colour, paint, table
from operate.rule_edit import read_rules
from operate.transitions import STAGES
from strangler.errors import OperatorError
from strangler.help_text import help_line

DEFAULT_RULES = "routing_rules/demo.yaml"


def rules_path(args: argparse.Namespace) -> Path:
    return Path(args.rules or os.environ.get("STRANGLER_RULES") or DEFAULT_RULES)


def _common(parser: argparse.ArgumentParser, edit: bool = True) -> None:
    parser.add_argument("--rules", metavar="PATH",
                        help=f"rule file or directory (default $STRANGLER_RULES, else {DEFAULT_RULES})")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    if edit:
        parser.add_argument("--reason", default="", metavar="TEXT",
                            help="why, for the history (e.g. a ticket or the gate that broke)")
        parser.add_argument("--who", metavar="NAME",
                            help="who, for the history (default $STRANGLER_OPERATOR, else user@host)")
        parser.add_argument("--dry-run", action="store_true",
                            help="show what would change in routing and in the file; write nothing")


def _add(subparsers: argparse._SubParsersAction, name: str, func, edit: bool = True,
         summary: str | None = None) -> argparse.ArgumentParser:
    doc = func.__doc__
    summary = summary.replace("%", "%%") if summary else help_line(func)
    p = subparsers.add_parser(name, help=summary, description=doc,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p, edit)
    p.set_defaults(func=func)
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    p = _add(subparsers, "rollout", run_rollout)
    p.add_argument("capability", metavar="CAP")
    p.add_argument("percent", metavar="PERCENT", help="0..100, e.g. 25 or 0.5")
    shadow = _shadow_group(subparsers)
    for state in ("on", "off"):
        p = _add(shadow, state, run_shadow,
                 summary=f"turn shadow traffic for a capability {state} (or: shadow CAP {state})")
        p.add_argument("capability", metavar="CAP")
        p.set_defaults(state=state)
        if state == "on":
            p.add_argument("--percent", metavar="N",
                           help="share of requests shadowed (default 100)")
    p = _add(subparsers, "writes", run_writes)
    p.add_argument("capability", metavar="CAP")
    p.add_argument("owner", metavar="legacy|service")
    p = _add(subparsers, "stage", run_stage)
    p.add_argument("capability", metavar="CAP")
    p.add_argument("stage", metavar="STAGE", help=" | ".join(STAGES))
    for name, func in (("cutover", run_cutover), ("rollback", run_rollback),
                       ("retire", run_retire)):
        _add(subparsers, name, func).add_argument("capability", metavar="CAP")
    p = _add(subparsers, "history", run_history, edit=False)
    p.add_argument("capability", metavar="CAP", nargs="?", help="only changes to this capability")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="newest N (default 20)")
    p.add_argument("--diff", action="store_true", help="show each change's rule and file diff")
    _force(_add(subparsers, "undo", run_undo))


def _shadow_group(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """`shadow on|off CAP` join the `shadow` group of proxy.shadow.cli (`shadow report`), which
    must be registered first; one `shadow` command, two owners."""
    parser = subparsers.choices.get("shadow")
    if parser is None:
        parser = subparsers.add_parser("shadow", help="shadow traffic")
        return parser.add_subparsers(dest="shadow_command", metavar="COMMAND", required=True)
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def add_rules_commands(sub: argparse._SubParsersAction) -> None:
    """`rules diff` and `rules apply`, added to the `rules` group of routing_rules.cli."""
    p = _add(sub, "diff", run_diff, edit=False)
    p.add_argument("old", metavar="OLD", help="rule file (or NEW when it is the only argument)")
    p.add_argument("new", metavar="NEW", nargs="?", help="rule file to compare with OLD")
    p = _add(sub, "apply", run_apply)
    p.add_argument("new", metavar="NEW", help="the rule file to put in place")
    _force(p)


def _force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true",
                   help="do it although it moves writes outside canary, removes a capability "
                        "writing to the service, skips a stage or (undo) sends more reads to the "
                        "service without the gates; needs --reason, recorded")


def _forced(args: argparse.Namespace) -> bool:
    if args.force and not (args.reason or "").strip():
        raise OperatorError("--force needs --reason TEXT: a forced change is recorded with why")
    return args.force


def _actor(args: argparse.Namespace) -> Actor:
    return Actor(args.who or history.default_who(), args.reason)


def _percent(text: str, what: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise OperatorError(f"{what} {text!r} is not a number; give 0..100, e.g. 25") from None
    if not 0 <= value <= 100:
        raise OperatorError(f"{what} {value:g} is outside 0..100; give e.g. 25")
    return value


def _report(change: Change, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(change.as_dict(), indent=2))
        return 0
    print(change.line())
    for note in change.notes:
        print(paint(f"note: {note}", "yellow"))
    if change.dry_run:
        _print_diff([str(d) for d in change.differences], change.text_diff)
    return 0


def _print_diff(rule_diff: list[str], text: str) -> None:
    print("routing changes:" if rule_diff else "routing changes: none")
    for line in rule_diff:
        print("  " + paint(line, diff_colour(line) or "bold"))
    for line in text.splitlines():
        colour = diff_colour(line)
        print(paint(line, colour) if colour else line)


def run_rollout(args: argparse.Namespace) -> int:
    """Set the share of reads the service answers in canary (sticky: raising it only adds
    clients, lowering it only removes them). Refused in cutover/retired: use rollback."""
    percent = _percent(args.percent, "percent")
    return _report(actions.rollout(rules_path(args), args.capability, percent, _actor(args),
                                   args.dry_run), args)


def run_shadow(args: argparse.Namespace) -> int:
    """Turn shadow traffic for a capability on (copies of --percent of requests, default 100,
    compared against the answering side) or off (shadow percent 0)."""
    percent = getattr(args, "percent", None)
    percent = _percent(percent, "--percent") if percent is not None else None
    return _report(actions.shadow(rules_path(args), args.capability, args.state == "on",
                                  _actor(args), percent, args.dry_run), args)


def run_writes(args: argparse.Namespace) -> int:
    """Move a capability's single write owner (only in stage canary). Check CDC first:
    `strangler cdc status` must show the new direction caught up."""
    return _report(actions.writes(rules_path(args), args.capability, args.owner, _actor(args),
                                  args.dry_run), args)


def run_stage(args: argparse.Namespace) -> int:
    """Move a capability to another stage: forward one at a time (legacy, shadow, canary,
    cutover, retired), back as far as the write owner allows."""
    return _report(actions.stage(rules_path(args), args.capability, args.stage, _actor(args),
                                 args.dry_run), args)


def run_cutover(args: argparse.Namespace) -> int:
    """Let the service answer every read (from canary, with writes already on the service);
    legacy stays the fallback."""
    return _report(actions.cutover(rules_path(args), args.capability, _actor(args), args.dry_run),
                   args)


def run_retire(args: argparse.Namespace) -> int:
    """Serve the capability from the service only, with no fallback (from cutover)."""
    return _report(actions.retire(rules_path(args), args.capability, _actor(args), args.dry_run),
                   args)


def run_rollback(args: argparse.Namespace) -> int:
    """Send every read back to legacy now, whatever the stage: stage canary at 0 %.

    Writes stay with their owner: moving them back safely needs CDC service -> legacy to have
    caught up, so the command tells you when to run `strangler writes CAP legacy`. Exit 0 also
    when there is nothing to roll back, so scripts can call it blindly."""
    return _report(actions.rollback(rules_path(args), args.capability, _actor(args), args.dry_run),
                   args)


def run_undo(args: argparse.Namespace) -> int:
    """Restore the rules as they were before the newest change not yet undone (run it again to
    step further back). Refused when the file changed since that change wrote it."""
    return _report(actions.undo(rules_path(args), _actor(args), args.dry_run, _forced(args)), args)


def run_apply(args: argparse.Namespace) -> int:
    """Put a new rule file in place: validate it, show what it changes in routing, replace the
    live file atomically (refused if it changed meanwhile), record it in the history."""
    change = actions.apply(rules_path(args), args.new, _actor(args), args.dry_run, _forced(args))
    code = _report(change, args)
    if not args.json and not args.dry_run and change.changed:
        for d in change.differences:
            print("  " + paint(str(d), diff_colour(str(d)) or "bold"))
    return code


def run_diff(args: argparse.Namespace) -> int:
    """Show what a rule file would change in routing: capabilities and matchers added or
    removed, order, stage, writes, percent, steps, shadow, gates, backends. With one file,
    compare the live rules (--rules) with it. Exit 0 when routing is the same, 1 when it
    differs (like diff(1)), 2 when a file does not validate."""
    old, new = (args.old, args.new) if args.new else (str(rules_path(args)), args.old)
    differences = actions.diff_files(old, new)
    if args.json:
        print(json.dumps({"old": old, "new": new, "same": not differences,
                          "differences": [d.as_dict() for d in differences]}, indent=2))
    else:
        print(f"{old} -> {new}: " + (f"{len(differences)} routing change(s)" if differences
                                     else "no routing change"))
        for d in differences:
            print("  " + paint(str(d), diff_colour(str(d)) or "bold"))
    return 1 if differences else 0


def run_history(args: argparse.Namespace) -> int:
    """Every recorded change to the rules, newest first: who, when (UTC), what and why."""
    path = rules_path(args)
    rules = read_rules(path)                          # a clear error for a wrong --rules
    log = history.entries(history.history_dir(path))
    moved = actions.changed_since(rules, log[-1]) if log else []
    last = log[-1]["id"] if log else None
    if args.capability:
        log = [e for e in log if e.get("capability") == args.capability]
    if args.limit < 1:
        raise OperatorError(f"--limit {args.limit}: give 1 or more")
    log = list(reversed(log))[: args.limit]
    if args.json:
        print(json.dumps(log, indent=2))
        return 0
    if not log:
        print(f"no recorded changes to {path}")
        return 0
    if args.diff:
        for e in log:
            print(paint(f"#{e['id']}  {e['at']}  {e['who']}  {e['command']}", "bold"))
            print(f"  {e['summary']}")
            print(f"  why: {e['why'] or '-'}   rules {e['before']} -> {e['after']}")
            _print_diff(e["rule_diff"], e["diff"])
            print()
    else:
        rows = [[str(e["id"]), _short_time(e["at"]), e["who"], e["summary"], e["why"] or "-"]
                for e in log]
        print(table(["#", "WHEN (UTC)", "WHO", "CHANGE", "WHY"], rows, cut_first=(4,)))
    if moved:
        print(paint(f"note: {', '.join(moved)} was edited outside strangler after change "
                    f"#{last}; undo will refuse", "yellow"))
    return 0


def _short_time(at: str) -> str:
    return datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").strftime("%m-%d %H:%M:%S")
