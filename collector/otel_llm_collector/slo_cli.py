"""``otel-llm slo ...``: SLO files from a terminal or a CI job.

    otel-llm slo check --slo-file slos.yaml
    otel-llm slo render-rules --slo-file slos.yaml [--format grafana] [--output slo-rules.yaml]

``check`` validates the file as the collector loads it (`slo.load_slos`) and prints one line per SLO.
``render-rules`` writes the SLOs (`slo_rules`) to ``--output``, or to stdout: with ``--format prometheus``
(the default) as Prometheus recording and alerting rules, with ``--format grafana`` as a Grafana alerting
provisioning file holding the same alerts with their expressions inline. The file's header names the SLO
file and the command, so keep the paths relative to where the command is run (the repository root for
``grafana/alerts/``).

Exit codes: 0 done; 1 the rules could not be written; 2 bad input (unreadable file, invalid YAML, an
invalid SLO: every problem is printed, one line each, naming the file and the field) or a bad flag.

Wiring: `add_parser(subparsers)` registers ``slo`` on the main parser's subparsers and sets ``run`` on
the namespace (returns the exit code); `main(argv)` runs the command on its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from otel_llm_collector.slo import SloError, SloSet, load_slos
from otel_llm_collector.slo_rules import render_grafana_rules, render_prometheus_rules, scope_selector

__all__ = ["add_parser", "check", "main", "render_rules"]

OK = 0
FAILED = 1
USAGE_ERROR = 2

RuleFormat = Literal["prometheus", "grafana"]
FORMATS: Final[tuple[RuleFormat, ...]] = ("prometheus", "grafana")
_RENDERERS: Final = {"prometheus": render_prometheus_rules, "grafana": render_grafana_rules}


def _load(prefix: str, path: Path, err: TextIO) -> SloSet | None:
    try:
        return load_slos(path)
    except SloError as exc:
        for line in str(exc).splitlines():
            print(f"{prefix}: {line}", file=err)
    except UnicodeDecodeError as exc:  # load_slos reports OS and YAML errors; a binary file fails earlier
        print(f"{prefix}: {path}: not UTF-8 text ({exc.reason} at byte {exc.start})", file=err)
    return None


def check(path: Path, *, out: TextIO, err: TextIO) -> int:
    """Validate an SLO file; print ``FILE: N SLOs OK`` and one line per SLO; return the exit code."""
    slos = _load("otel-llm slo check", path, err)
    if slos is None:
        return USAGE_ERROR
    print(f"{path}: {len(slos.slos)} SLOs OK", file=out)
    for spec in slos.slos:
        scope = scope_selector(spec)
        print(
            f"  {spec.name}: {spec.kind}, objective {spec.objective:g} over {spec.period}, "
            f"scope {scope if scope != '{}' else 'every series'}",
            file=out,
        )
    return OK


def render_rules(
    path: Path,
    *,
    output: Path | None,
    out: TextIO,
    err: TextIO,
    rule_format: RuleFormat = "prometheus",
) -> int:
    """Render the SLO file as Prometheus rules or Grafana alerting provisioning (`rule_format`) to `output`
    (stdout when None); return the exit code."""
    prefix = "otel-llm slo render-rules"
    slos = _load(prefix, path, err)
    if slos is None:
        return USAGE_ERROR
    render = _RENDERERS[rule_format]
    text = render(slos, source=str(path), output=None if output is None else str(output))
    if output is None:
        out.write(text)
        return OK
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{prefix}: cannot write {output}: {exc.strerror or exc}", file=err)
        return FAILED
    print(f"{output}: rules for {len(slos.slos)} SLOs written", file=err)
    return OK


def _run_check(args: argparse.Namespace) -> int:
    return check(args.slo_file, out=sys.stdout, err=sys.stderr)


def _run_render(args: argparse.Namespace) -> int:
    return render_rules(
        args.slo_file, output=args.output, out=sys.stdout, err=sys.stderr, rule_format=args.format
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``slo`` (with ``check`` and ``render-rules``) on an argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "slo",
        help="work with SLO files",
        description="Validate SLO files and render them as Prometheus rules or Grafana alerting.",
    )
    commands = parser.add_subparsers(dest="slo_command", metavar="COMMAND", required=True)
    check_parser = commands.add_parser(
        "check", help="validate an SLO file", description="Validate an SLO file as the collector loads it."
    )
    check_parser.add_argument("--slo-file", type=Path, required=True, metavar="FILE", help="SLO file (YAML)")
    check_parser.set_defaults(run=_run_check)
    render = commands.add_parser(
        "render-rules",
        help="render an SLO file as Prometheus rules or Grafana alerting",
        description=(
            "Render the SLOs as Prometheus recording and alerting rules (slo:sli_error:ratio_rate*), or "
            "with --format grafana as Grafana alerting provisioning with the same alerts inline."
        ),
    )
    render.add_argument("--slo-file", type=Path, required=True, metavar="FILE", help="SLO file (YAML)")
    render.add_argument(
        "--format",
        choices=FORMATS,
        default="prometheus",
        help="prometheus: a rule file (default); grafana: an alerting provisioning file",
    )
    render.add_argument("--output", type=Path, metavar="OUT", help="rule file to write (default: stdout)")
    render.set_defaults(run=_run_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``slo ...`` on its own, e.g. ``main(["check", "--slo-file", "slos.yaml"])``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="otel-llm")
    add_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["slo", *(argv if argv is not None else sys.argv[1:])])
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else USAGE_ERROR
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
