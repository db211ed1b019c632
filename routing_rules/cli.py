"""`strangler rules validate PATH`: check rule files before they reach a proxy."""
from __future__ import annotations

import argparse
import json

from proxy.rules import RulesUnreadable, check_rules


def register(subparsers: argparse._SubParsersAction) -> None:
    rules = subparsers.add_parser("rules", help="work with routing rule files",
                                  description="Work with routing rule files.")
    sub = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)
    validate = sub.add_parser("validate", help=run_validate.__doc__.splitlines()[0],
                              description=run_validate.__doc__)
    validate.add_argument("path", metavar="PATH",
                          help="a rule file, or a directory of *.yaml files read in sorted order")
    validate.add_argument("--json", action="store_true",
                          help="print one JSON document (problems, summary) instead of text")
    validate.set_defaults(func=run_validate)


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
