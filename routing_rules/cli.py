"""`strangler rules validate|explain|diff|apply`: check rule files before they reach a proxy, ask
them where a request would go, and change them safely (diff/apply live in operate.cli)."""
from __future__ import annotations

import argparse
import json

from operate.cli import add_rules_commands
from proxy.rules import RulesError, RulesUnreadable, check_rules, load_table
from strangler.errors import OperatorError
from strangler.help_text import help_line


def register(subparsers: argparse._SubParsersAction) -> None:
    rules = subparsers.add_parser("rules", help="work with routing rule files",
                                  description="Work with routing rule files.")
    sub = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)
    validate = sub.add_parser("validate", help=help_line(run_validate),
                              description=run_validate.__doc__)
    validate.add_argument("path", metavar="PATH",
                          help="a rule file, or a directory of *.yaml files read in sorted order")
    validate.add_argument("--json", action="store_true",
                          help="print one JSON document (problems, summary) instead of text")
    validate.set_defaults(func=run_validate)
    explain = sub.add_parser("explain", help=help_line(run_explain),
                             description=run_explain.__doc__)
    explain.add_argument("path", metavar="PATH", help="a rule file or directory")
    explain.add_argument("method", metavar="METHOD", help="e.g. GET")
    explain.add_argument("target", metavar="TARGET", help="path and query, e.g. /api/products/7?x=1")
    explain.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                         help="a request header (repeatable), e.g. -H 'X-User-Id: 42'")
    explain.add_argument("--json", action="store_true", help="print one JSON document")
    explain.set_defaults(func=run_explain)
    add_rules_commands(sub)


def run_validate(args: argparse.Namespace) -> int:
    """Check rule files: syntax (the published schema) and meaning (names resolve, regexes
    compile, stage and write owner agree, overlapping matchers). Prints each problem as
    FILE:LINE: [rule NAME] error|warning: message. Exit 0 when there is no error (warnings
    allowed), 1 when there is any error, 2 when the files cannot be read."""
    try:
        report = check_rules(args.path)
    except RulesUnreadable as exc:
        problems, files, version, code = exc.problems, [], None, 2
    else:
        problems, files = list(report.problems), list(report.files)
        version = report.table.version if report.table else None
        code = 1 if report.errors else 0
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if args.json:
        print(json.dumps({"ok": code == 0, "files": files, "version": version,
                          "errors": errors, "warnings": warnings,
                          "problems": [p.as_dict() for p in problems]}, indent=2))
        return code
    for problem in problems:
        print(problem)
    if code == 2:
        print(f"cannot read rules at {args.path}")
    elif code == 1:
        print(f"{errors} error(s), {warnings} warning(s) in {len(files)} file(s): rules rejected")
    else:
        print(f"ok: {len(files)} file(s), {warnings} warning(s), version {version}")
    return code


def run_explain(args: argparse.Namespace) -> int:
    """Show where one request would go under these rules: capability, route, side, backend,
    reason, fallback and shadow. The override secret is read from the environment, as the proxy
    does. A request without a sticky key gets a random bucket, as in the proxy."""
    try:
        table = load_table(args.path)
    except RulesError as exc:
        errors = sum(p.severity == "error" for p in exc.problems)
        raise OperatorError(f"the rules do not load ({errors} error(s)); "
                            f"run `strangler rules validate {args.path}`") from exc
    headers: dict[str, str] = {}
    for raw in args.header:
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            raise OperatorError(f"-H {raw!r}: write a header as 'Name: value'")
        headers.setdefault(name.strip().lower(), value.strip())
    path, _, query = args.target.partition("?")
    if not path.startswith("/"):
        raise OperatorError(f"TARGET {args.target!r} must start with / (a path, not a URL)")
    d = table.decide(args.method.upper(), path, query, headers)
    if args.json:
        shadow = d.shadow
        print(json.dumps({
            "capability": d.capability, "route": d.route, "side": d.side,
            "backend": d.backend.name, "url": d.backend.url, "reason": d.reason,
            "fallback": d.fallback.name if d.fallback else None,
            "shadow": {"side": shadow.target_side, "backend": shadow.target.name,
                       "dry_run": shadow.dry_run} if shadow else None,
            "shadow_skipped": d.shadow_skipped, "rules": table.version}, indent=2))
        return 0
    print(f"capability: {d.capability or '(none: default backend)'}")
    print(f"route:      {d.route}")
    print(f"side:       {d.side} -> {d.backend.name} ({d.backend.url})")
    print(f"reason:     {d.reason}")
    print(f"fallback:   {d.fallback.name if d.fallback else '-'}")
    if d.shadow is not None:
        dry = " (dry run)" if d.shadow.dry_run else ""
        print(f"shadow:     {d.shadow.target_side} -> {d.shadow.target.name}{dry}")
    else:
        print(f"shadow:     {'skipped: ' + d.shadow_skipped if d.shadow_skipped else '-'}")
    print(f"rules:      {table.version}")
    return 0
