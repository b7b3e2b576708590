"""``otel-llm rules check FILE...``: validate rule files before deploying them.

Prints ``FILE: N rules OK`` per valid file and exits 0; otherwise prints every error (one line each, naming
the file, the rule and the field) to stderr and exits 1. Never a traceback: an unreadable file or invalid
YAML is an error line like any other. ``otel-llm rules check --default`` checks the shipped default rules.

Wiring: `add_parser(subparsers)` registers ``rules`` on the main parser's subparsers and sets ``run`` on
the namespace (returns the exit code); `main(argv)` runs the command on its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from otel_llm_collector.rules import RulesError, check_rules_file, load_default_rules, load_rules

__all__ = ["add_parser", "check", "main"]

OK = 0
INVALID = 1
USAGE_ERROR = 2


def check(paths: Sequence[Path], *, default: bool = False, out: TextIO, err: TextIO) -> int:
    """Check each file (and the default rules if asked); return the exit code."""
    failed = False
    if default:
        try:
            count = len(load_default_rules())
        except RulesError as exc:  # pragma: no cover - the shipped file is tested
            for line in exc.errors:
                print(line, file=err)
            failed = True
        else:
            print(f"default rules: {count} rules OK", file=out)
    for path in paths:
        errors = check_rules_file(path)
        if errors:
            failed = True
            for line in errors:
                print(line, file=err)
            continue
        try:
            count = len(load_rules(path))
        except RulesError as exc:  # changed between the two reads
            failed = True
            for line in exc.errors:
                print(line, file=err)
            continue
        print(f"{path}: {count} rules OK", file=out)
    return INVALID if failed else OK


def _run(args: argparse.Namespace) -> int:
    if not args.files and not args.default:
        print("otel-llm rules check: give at least one FILE or --default", file=sys.stderr)
        return USAGE_ERROR
    return check(args.files, default=args.default, out=sys.stdout, err=sys.stderr)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``rules`` (with its ``check`` subcommand) on an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "rules", help="work with alert rule files", description="Work with alert rule files."
    )
    commands = parser.add_subparsers(dest="rules_command", metavar="COMMAND", required=True)
    check_parser = commands.add_parser(
        "check",
        help="validate rule files",
        description="Validate rule files; every error names the file, the rule and the field.",
    )
    check_parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="rule file (YAML)")
    check_parser.add_argument("--default", action="store_true", help="also check the shipped default rules")
    check_parser.set_defaults(run=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``rules ...`` on its own, e.g. ``main(["check", "rules.yaml"])``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="otel-llm")
    add_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["rules", *(argv if argv is not None else sys.argv[1:])])
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else USAGE_ERROR
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
