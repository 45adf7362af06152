"""The ``asktell`` command (a minimal entry point; the full CLI grows in asktell.cli)."""

from __future__ import annotations

import argparse
import sys

from asktell._version import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asktell", description="Evolution strategies that scale.")
    parser.add_argument("--version", action="version", version=f"asktell {__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="list registered strategies, evaluators and tasks")
    args = parser.parse_args(argv)
    if args.command == "list":
        from asktell.registry import EVALUATORS, STRATEGIES, TASKS

        for title, reg in (("strategies", STRATEGIES), ("evaluators", EVALUATORS), ("tasks", TASKS)):
            print(f"{title}:")
            for name, obj in reg.items():
                doc = (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else ""
                print(f"  {name:14s} {doc}")
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
