"""`python -m benchmarks proxy [--duration 10] [--connections 32]` (what `make bench` runs)."""
from __future__ import annotations

import argparse
import sys

from benchmarks import proxy_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    proxy = sub.add_parser("proxy", help=proxy_bench.__doc__.splitlines()[0])
    proxy.add_argument("--duration", type=float, default=10.0,
                       help="seconds of each peer's throughput run (default 10)")
    proxy.add_argument("--connections", type=int, default=32,
                       help="wrk connections for the throughput run (default 32)")
    args = parser.parse_args(argv)
    return proxy_bench.main(args.connections, args.duration)


if __name__ == "__main__":
    sys.exit(main())
