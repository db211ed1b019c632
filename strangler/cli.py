"""The `strangler` command: one entry point, sub-commands contributed by each package.

Each module listed in COMMAND_MODULES exposes `register(subparsers)`, adding its
sub-commands with argparse. A sub-command is a plain function `run(args) -> int`
stored as the parser default `func`; its docstring is its help text.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from strangler.errors import OperatorError

# Wired in one explicit, ordered list (no discovery magic): add a module here to add commands.
COMMAND_MODULES = [
    "legacy_monolith.cli",
    "extracted_services.catalog.cli",
    "strangler.demo",
    "routing_rules.cli",
    "proxy.cli",
    "proxy.shadow.cli",
    "operate.cli",
    "operate.live_cli",
    "cdc.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strangler",
        description="Migrate a live monolith to new services one capability at a time.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def issue_order(argv: list[str]) -> list[str]:
    """`strangler shadow CAP on|off` as operators write it (like `rollout CAP PERCENT`) is
    `shadow on|off CAP` to argparse, whose `shadow` group also holds `report`: accept both."""
    if (len(argv) >= 3 and argv[0] == "shadow" and argv[2] in ("on", "off")
            and argv[1] not in ("on", "off", "report") and not argv[1].startswith("-")):
        return [argv[0], argv[2], argv[1], *argv[3:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(issue_order(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()          # inside the try: a closed pipe shows here, not at exit
        return code
    except OperatorError as exc:
        print(f"strangler: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:     # `strangler ... | head`: the reader left; stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
