"""`python -m benchmarks BENCHMARK [options]`: every benchmark of the kit, one entry point.

`make bench` runs `proxy`. Each benchmark prints its figures as ratios against peers measured
in the same run; `python -m benchmarks BENCHMARK --help` says what it measures and its options.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Callable

Adder = Callable[[argparse._SubParsersAction], None]
RAW = argparse.RawDescriptionHelpFormatter


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def _summary(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]


def _add(sub: argparse._SubParsersAction, name: str, module: ModuleType) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=_summary(module), description=module.__doc__,
                          formatter_class=RAW)


def _proxy(sub: argparse._SubParsersAction) -> None:
    bench = _module("proxy_bench")
    parser = _add(sub, "proxy", bench)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of each peer's throughput run (default 10)")
    parser.add_argument("--connections", type=int, default=32,
                        help="wrk connections for the throughput run (default 32)")
    parser.set_defaults(run=lambda args: bench.main(args.connections, args.duration))


def _shadow(sub: argparse._SubParsersAction) -> None:
    bench = _module("shadow_bench")
    _add(sub, "shadow", bench).set_defaults(run=lambda args: bench.main())


def _cdc_capture(sub: argparse._SubParsersAction) -> None:
    bench = _module("cdc_capture")
    parser = _add(sub, "cdc-capture", bench)
    parser.add_argument("--changes", type=int, default=100_000,
                        help="changes written and captured (default 100000)")
    parser.set_defaults(run=lambda args: bench.main(args.changes))


def _gate_watch(sub: argparse._SubParsersAction) -> None:
    bench = _module("gate_watch")
    _add(sub, "gate-watch", bench).set_defaults(run=lambda args: bench.main() or 0)


# Benchmarks that parse their own command line: name -> (module, its main(argv)). They get the
# rest of the command line as is, --help included.
OWN_PARSER = {"rules": ("rule_table", "main"), "rule-edit": ("rule_edit", "main"),
              "shadow-cpu": ("shadow_cpu", "main"),
              "legacy-seed": ("legacy_seed", "main"), "cdc": ("cdc_bench", "cli")}


def _own(name: str) -> Adder:
    def add(sub: argparse._SubParsersAction) -> None:   # listed in --help only
        sub.add_parser(name, help=_summary(_module(OWN_PARSER[name][0])), add_help=False)
    return add


# Each benchmark's module is imported only when it runs (or for the list in --help), so one
# benchmark's missing dependency or work in progress cannot break the others.
COMMANDS: dict[str, Adder] = {"proxy": _proxy, "shadow": _shadow, "cdc-capture": _cdc_capture,
                              "gate-watch": _gate_watch, **{n: _own(n) for n in OWN_PARSER}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in OWN_PARSER:
        module, function = OWN_PARSER[argv[0]]
        return getattr(_module(module), function)(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=RAW)
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, add in COMMANDS.items():
        if not argv or argv[0] == name or argv[0] not in COMMANDS:
            add(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
