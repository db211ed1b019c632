"""`strangler shadow report`: the shadow comparison results, for people and for CI gates."""
from __future__ import annotations

import argparse
import sys

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from proxy.shadow.formats import FORMATS, parse_window, render
from proxy.shadow.report import build_report, gate
from proxy.shadow.store import STORE_ENV, ShadowStore, check_store_url, default_store_url
from strangler.db import normalise_url, sqlite_path
from strangler.errors import OperatorError, did_you_mean
from strangler.help_text import help_line
from strangler.output import write_document


def register(subparsers) -> None:
    shadow = subparsers.add_parser("shadow", help="shadow traffic",
                                   description="Shadow traffic: copies, comparisons, reports.")
    commands = shadow.add_subparsers(dest="shadow_command", metavar="COMMAND", required=True)
    report = commands.add_parser("report", help=help_line(run_report),
                                 description=run_report.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("--store", default=None,
                        help=f"results store URL (default: ${STORE_ENV} or {default_store_url()})")
    report.add_argument("--capability", help="only this capability")
    report.add_argument("--since", help="only results from this window, e.g. 15m, 1h, 7d")
    report.add_argument("--format", choices=FORMATS, default="text")
    report.add_argument("--fail-under", type=_percent, metavar="PERCENT",
                        help="exit 1 when a capability's match rate, or that of a route with "
                             "enough comparisons, is below PERCENT (e.g. 99.5), or when there "
                             "is no comparison at all")
    report.add_argument("--output", "-o", help="write the report to this file instead of stdout")
    report.set_defaults(func=run_report)


def _percent(text: str) -> float:
    """99.5 or 99.5% (as the rule files write their gates)."""
    try:
        return float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage; write e.g. 99.5") from None


def run_report(args: argparse.Namespace) -> int:
    """Report shadow match rates per capability and route, differing fields, samples, latency.

    Exit codes: 0 ok, 1 a match rate is below --fail-under, 2 operator error.
    """
    url = args.store or default_store_url()
    require_store(url)
    try:
        since_s = parse_window(args.since) if args.since else None
    except ValueError as exc:
        raise OperatorError(str(exc)) from None
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:
        raise OperatorError(f"--fail-under {args.fail_under:g} is not a percentage; use 0..100")
    store = ShadowStore(url)
    try:
        known = store.capabilities()
        if args.capability is not None and known and args.capability not in known:
            raise OperatorError(f"no shadow results for capability {args.capability!r} in "
                                f"{_safe(url)}; {did_you_mean(args.capability, known)}")
        report = build_report(store, capability=args.capability, since_s=since_s)
    except SQLAlchemyError as exc:
        raise OperatorError(f"cannot read the shadow store {_safe(url)}: "
                            f"{type(exc).__name__}; check --store and that the database is up") \
            from None
    finally:
        store.engine.dispose()
    failures = gate(report, args.fail_under) if args.fail_under is not None else []
    if args.fail_under is not None:
        report["gate"] = {"fail_under": args.fail_under, "passed": not failures,
                          "failures": failures}
    write_document(render(report, args.format, args.fail_under), args.output)
    for line in failures:
        print(f"strangler: shadow gate failed: {line}", file=sys.stderr)
    return 1 if failures else 0


def require_store(url: str) -> None:
    check_store_url(url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise OperatorError(f"no shadow store at {path}; pass --store or set "
                            f"{STORE_ENV} to where the proxy writes its shadow results")


def _safe(url: str) -> str:
    return make_url(normalise_url(url)).render_as_string(hide_password=True)


