"""`python -m benchmarks BENCHMARK [options]`: every benchmark of the kit, one entry point.

`make bench` runs `proxy`. Each benchmark prints its figures as ratios against peers measured
in the same run; `python -m benchmarks BENCHMARK --help` says what it measures and its options.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from benchmarks import (cdc_bench, cdc_capture, gate_watch, legacy_seed, proxy_bench,
                        rule_edit, rule_table, shadow_bench)


def _proxy(args: argparse.Namespace) -> int:
    return proxy_bench.main(args.connections, args.duration)


def _shadow(args: argparse.Namespace) -> int:
    return shadow_bench.main()


def _cdc_capture(args: argparse.Namespace) -> int:
    return cdc_capture.main(args.changes)


def _gate_watch(args: argparse.Namespace) -> int:
    gate_watch.main()
    return 0


# Benchmarks that parse their own command line: name -> (module, its main(argv)). They get the
# rest of the command line as is, --help included.
OWN_PARSER: dict[str, tuple[object, Callable[[list[str]], int]]] = {
    "rules": (rule_table, rule_table.main),
    "rule-edit": (rule_edit, rule_edit.main),
    "legacy-seed": (legacy_seed, legacy_seed.main),
    "cdc": (cdc_bench, cdc_bench.cli),
}


def summary(module: object) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    raw = argparse.RawDescriptionHelpFormatter

    proxy = sub.add_parser("proxy", help=summary(proxy_bench), description=proxy_bench.__doc__,
                           formatter_class=raw)
    proxy.add_argument("--duration", type=float, default=10.0,
                       help="seconds of each peer's throughput run (default 10)")
    proxy.add_argument("--connections", type=int, default=32,
                       help="wrk connections for the throughput run (default 32)")
    proxy.set_defaults(run=_proxy)

    sub.add_parser("shadow", help=summary(shadow_bench), description=shadow_bench.__doc__,
                   formatter_class=raw).set_defaults(run=_shadow)

    capture = sub.add_parser("cdc-capture", help=summary(cdc_capture),
                             description=cdc_capture.__doc__, formatter_class=raw)
    capture.add_argument("--changes", type=int, default=100_000,
                         help="changes written and captured (default 100000)")
    capture.set_defaults(run=_cdc_capture)

    sub.add_parser("gate-watch", help=summary(gate_watch), description=gate_watch.__doc__,
                   formatter_class=raw).set_defaults(run=_gate_watch)

    for name, (module, _) in OWN_PARSER.items():   # listed in --help; parsed by their own main
        sub.add_parser(name, help=summary(module), add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Benchmarks with their own parser get everything after their name, --help included.
    if argv and argv[0] in OWN_PARSER:
        return OWN_PARSER[argv[0]][1](argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
