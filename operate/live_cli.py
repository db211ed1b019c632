"""`strangler status`, `strangler promote CAP`, `strangler report CAP`: the operator's commands
that read running proxies (their admin APIs, with the admin token) beside the rule file.

Proxies: `--proxy URL` (repeatable), else $STRANGLER_PROXIES (comma separated). Token: the
file `--token-file`, else the token itself in $STRANGLER_ADMIN_TOKEN, else the file
var/admin.token. Without proxies, `status`
and `report` show the rule file alone. Exit codes: 0 ok, 1 gates fail, 2 operator error
(nothing changed), 3 promote is waiting for traffic.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys

from operate import promote as promotion
from operate import report as handover
from operate import status as live_status
from operate.admin_client import AdminClient, proxy_urls, read_token
from operate.cli import rules_path
from operate.history import default_who
from operate.render import paint, table
from proxy.shadow.formats import FORMATS, parse_window
from proxy.shadow.store import STORE_ENV, default_store_url
from strangler.errors import OperatorError
from strangler.output import write_document

STATE_COLOURS = {"pass": "green", "wait": "yellow", "fail": "red"}


def _common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--rules", metavar="PATH",
                   help="rule file or directory (default $STRANGLER_RULES, else "
                        "routing_rules/demo.yaml)")
    p.add_argument("--proxy", action="append", metavar="URL",
                   help="a proxy's admin API, e.g. http://127.0.0.1:8081 (repeatable; default "
                        "$STRANGLER_PROXIES)")
    p.add_argument("--token-file", metavar="PATH",
                   help="file holding the admin token (default: the token itself from "
                        "$STRANGLER_ADMIN_TOKEN, else the file var/admin.token)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON document")


def _add(subparsers, name: str, func, json_flag: bool = True) -> argparse.ArgumentParser:
    doc = func.__doc__
    p = subparsers.add_parser(name, help=doc.splitlines()[0].rstrip("."),
                              description=inspect.cleandoc(doc),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p, json_flag)
    p.set_defaults(func=func)
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    _add(subparsers, "status", run_status)
    p = _add(subparsers, "promote", run_promote)
    p.add_argument("capability", metavar="CAP")
    p.add_argument("--force", action="store_true",
                   help="move to the next step whatever the gates say (needs --reason)")
    p.add_argument("--reason", default="", metavar="TEXT", help="why, for the history")
    p.add_argument("--who", metavar="NAME",
                   help="who, for the history (default $STRANGLER_OPERATOR, else user@host)")
    p.add_argument("--dry-run", action="store_true",
                   help="judge the gates and show the step it would take; write nothing")
    p = _add(subparsers, "report", run_report, json_flag=False)
    p.add_argument("capability", metavar="CAP")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("--output", "-o", metavar="FILE", help="write the document here, not stdout")
    p.add_argument("--store", help="shadow results store URL (default: ask the first --proxy; "
                                   f"without proxies ${STORE_ENV} or {default_store_url()})")
    p.add_argument("--since", help="shadow results from this window only, e.g. 15m, 1h, 7d")


def _client(args: argparse.Namespace) -> AdminClient | None:
    urls = proxy_urls(args.proxy)
    return AdminClient(urls, read_token(args.token_file)) if urls else None


def run_status(args: argparse.Namespace) -> int:
    """Show every capability of the rules with the live figures of the running proxies.

    Per capability: stage, writes, and percent (in canary "10 -> 50": now, then the next
    step). Live columns (legacy | service), summed over every proxy given and counted since the
    capability's last rollout change (at most 5 minutes): requests per minute, error rate, p99;
    then the shadow match rate, CDC lag, breaker state, and GATES, the gate verdict in canary
    (pass, fail or wait; `strangler report CAP` gives the reasons). Each proxy's rules version
    is listed; one serving other rules than the file is marked "OLD RULES" (it missed a
    reload). A last row shows what no capability matches, on the default backend. Without
    proxies, the live columns show "-". A rule file that does not compile is shown as an error
    above the newest recorded rules, with the live figures.
    """
    client = _client(args)
    try:
        doc = live_status.gather(rules_path(args), client)
    finally:
        if client is not None:
            client.close()
    # Exit 2 when a proxy did not answer: what is shown leaves it out.
    code = 2 if doc["unreachable"] else 0
    if args.json:
        print(json.dumps(doc, indent=2))
        return code
    if doc["rules"].get("error"):
        print(paint(f"the rule file does not compile, so no proxy can load it; showing "
                    f"{doc['rules']['shown']}, what they most likely serve:\n"
                    f"{doc['rules']['error']}\n", "red"))
    headers, rows = live_status.rows(doc)
    lines = table(headers, rows, width=120).splitlines()
    for i, line in enumerate(lines[1:], 1):      # colour after layout: codes have no width
        head, _, verdict = line.rpartition("  ")
        if verdict in STATE_COLOURS:
            lines[i] = f"{head}  {paint(verdict, STATE_COLOURS[verdict])}"
    print("\n".join(lines))
    print(f"\nrules {doc['rules']['path']} version {doc['rules']['version']}")
    if not doc["proxies"] and not doc["unreachable"]:
        print("no proxy given: live columns are empty (pass --proxy URL or set "
              "STRANGLER_PROXIES)")
    for p in doc["proxies"]:
        mark = paint("  OLD RULES: reload it or check its log", "red") if p["stale"] else ""
        print(f"proxy {p['url']} serves rules {p['version']}{mark}")
        for w in p["workers_on_other_rules"]:
            print(paint(f"  worker {w['pid']} serves rules {w['rules_version']}", "red"))
    for a in doc["autorollbacks"]:
        print(paint(f"automatic rollback of {a['capability']} by {a['who']} "
                    f"(history #{a['history_id']}): {'; '.join(a['reasons'])}", "red"))
    for p in doc["unreachable"]:
        print(f"strangler: error: {p['error']} (the live columns leave it out)", file=sys.stderr)
    return code


def run_promote(args: argparse.Namespace) -> int:
    """Move CAP to its next rollout step, only when its gates pass on enough traffic.

    Reads the live figures of every proxy (--proxy), sums them, and judges the rules' gates:
    pass moves the percent one step (recorded in the history with the figures as why);
    too little traffic or an unmeasured gate waits (exit 3, nothing changed); a broken gate
    refuses (exit 1, with the reasons). `--force --reason TEXT` moves anyway and is recorded
    as forced.
    """
    client = _client(args)
    try:
        result = promotion.promote(rules_path(args), args.capability, client,
                                   who=args.who or default_who(), force=args.force,
                                   reason=args.reason, dry_run=args.dry_run)
    finally:
        if client is not None:
            client.close()
    if args.json:
        print(json.dumps({"capability": result.capability, "forced": result.forced,
                          "verdict": result.verdict.as_dict() if result.verdict else None,
                          "change": result.change.as_dict() if result.change else None,
                          "message": result.message, "exit_code": result.exit_code}, indent=2))
        return result.exit_code
    if result.message:
        print(result.message)
    if result.verdict is not None:
        v = result.verdict
        print(f"gates: {paint(v.state, STATE_COLOURS[v.state])}")
        for check in v.checks:
            print(f"  {check.gate}: {check.state}: {check.detail}")
    if result.change is not None:
        print(("forced: " if result.forced else "") + result.change.line())
    elif result.verdict is not None:
        what = "waiting" if result.verdict.state == "wait" else "refused"
        waiting = [c.gate for c in result.verdict.checks if c.state == "wait"]
        advice = ("fix the service or `strangler rollback` it" if what == "refused" else
                  "try again once more traffic has passed" if waiting == ["traffic"] else
                  f"waiting on {', '.join(waiting)} (reasons above)")
        print(f"{what}: {args.capability} stays at its current step; {advice}", file=sys.stderr)
    return result.exit_code


def run_report(args: argparse.Namespace) -> int:
    """Write the hand-over document for CAP: rollout, gates, history, CDC and shadow results.

    One document an operator can hand over: rollout state and gates, the live figures of the
    proxies given, the newest history entries, the CDC write direction's figures, and the
    shadow report (from the first proxy's /admin/shadow, or --store), as text, markdown, html
    or json.
    """
    try:
        since_s = parse_window(args.since) if args.since else None
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    client = _client(args)
    try:
        doc = handover.build(rules_path(args), args.capability, args.store,
                             client, since_s)
    finally:
        if client is not None:
            client.close()
    text = handover.render(doc, args.format)
    if write_document(text, args.output):
        print(f"report written to {args.output}")
    return 0
