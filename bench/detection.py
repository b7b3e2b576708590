"""Detection delay and false pages: the default rules against a plain reference design, on the scenario suite.

    .venv/bin/python bench/detection.py [--quick]

The reference is what is commonly recommended as a first quality alert: a fixed threshold on a 1-hour
rolling mean, at least 20 samples, sustained 15 minutes (written as one rule of our own rule language, so
both designs run through the same pipeline). For each scenario the script replays the generated traffic
through each design and prints when the first page (P0/P1) and the first alert of any severity fired after
the incident started, how many pages went out, and (for the week without incident) pages per week.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from otel_llm_collector import scenarios
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.replay import replay
from otel_llm_collector.rules import RuleSet, load_default_rules, parse_rules

REFERENCE_RULES = {
    "rules": [
        {
            "name": "reference-faithfulness-1h",
            "condition": "eval_mean{faithfulness} < 0.65",
            "window": "1h",
            "min_samples": 20,
            "for": "15m",
            "severity": "P1",
            "summary": "faithfulness below 0.65 over the last hour",
        }
    ]
}

INCIDENT_START = {
    "blind_spot": scenarios.at(10, 12),
    "two_deployments": scenarios.at(10, 20),
    "slow_drift": scenarios.at(8, 0),
    "latency_regression": scenarios.at(10, 0),
    "refusal_spike": scenarios.at(10, 0),
    "input_drift": scenarios.at(12, 0),
    "segment_disparity": scenarios.at(10, 0),
    "output_drift": scenarios.at(12, 0),
    "evaluation_outage": None,
    "normal_week": None,
}


def reference_rules() -> RuleSet:
    rules, errors = parse_rules(REFERENCE_RULES, source="reference")
    if rules is None:
        raise SystemExit("\n".join(errors))
    return rules


def run(name: str, rules: RuleSet, path: Path) -> tuple[float | None, float | None, int, float, float]:
    """(minutes to first page, minutes to first alert, pages, pages per week, replay seconds)."""
    out = io.StringIO()
    started = time.perf_counter()
    summary = replay([path], evaluator=build_evaluator(rules), out=out, errors=io.StringIO())
    elapsed = time.perf_counter() - started
    start_ns = INCIDENT_START.get(name)  # a scenario without an entry is judged as noise only
    first_page = first_alert = None
    for line in out.getvalue().splitlines():
        event = json.loads(line)
        if event["status"] != "firing" or event["inhibited"]:
            continue
        at = event["eventTimeUnixNano"]
        if start_ns is not None and at >= start_ns:
            minutes = (at - start_ns) / 60e9
            first_alert = minutes if first_alert is None else min(first_alert, minutes)
            if event["labels"]["severity"] in ("P0", "P1"):
                first_page = minutes if first_page is None else min(first_page, minutes)
    return first_page, first_alert, summary.pages, summary.pages_per_week(), elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip the week-long scenario")
    args = parser.parse_args(argv)
    designs = {"default rules": load_default_rules(), "reference (1h mean, 15m)": reference_rules()}
    names = [n for n in scenarios.SUITE if not (args.quick and n == "normal_week")]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} min"

    print(
        f"{'scenario':<20} {'design':<26} {'first page':>11} {'first alert':>12} {'pages':>6} "
        f"{'pages/week':>11} {'replay':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = Path(tmp) / f"{name}.pb"
            scenarios.write_delimited(scenarios.SUITE[name](), path)
            for label, rules in designs.items():
                page, alert, pages, per_week, seconds = run(name, rules, path)
                print(
                    f"{name:<20} {label:<26} {fmt(page):>11} {fmt(alert):>12} {pages:>6} "
                    f"{per_week:>11.2f} {seconds:>7.1f}s"
                )
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
