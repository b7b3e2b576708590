"""`otel-llm replay`: recorded traffic through the collector's own pipeline, in event time, at full speed.

    otel-llm replay [--config FILE] [--rules FILE] INPUT... > alerts.jsonl

Inputs: OTLP JSON lines (one export request per line, as the OpenTelemetry Collector's file exporter writes
them: trace and log requests; metric lines are skipped) or, for files ending in `.pb`/`.binpb`, OTLP
protobuf export requests, each preceded by its length as a varint (protobuf's delimited format). Each
request goes through the same decode and `Pipeline` as live traffic. Alert events are printed as JSON lines
(the Alertmanager webhook alert shape plus `eventTime`), then a summary goes to stderr: alerts per rule,
pages per simulated week, and the first firing after each deployment. A bad line is reported with its file
and line number and skipped; it never stops the replay. Same input, same output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm_collector.alerts import AlertEvent, RuleEvaluator, format_time
from otel_llm_collector.config import ConfigError, load_settings
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_logs, decode_traces
from otel_llm_collector.disparity import DisparityTracker
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.otlp_json import OtlpJsonError, parse_json
from otel_llm_collector.pipeline import Pipeline
from otel_llm_collector.rules import RulesError, load_default_rules, load_rules
from otel_llm_collector.windows import WindowEngine

WEEK_NS = 7 * 24 * 3600 * 1_000_000_000
PAGE_SEVERITIES = frozenset({"P0", "P1"})


@dataclass
class Summary:
    events: int = 0
    requests: int = 0
    bad_lines: int = 0
    firing_by_rule: Counter[str] = field(default_factory=Counter)
    pages: int = 0
    first_ns: int = 0
    last_ns: int = 0
    first_fire_after_deployment: dict[str, str] = field(default_factory=dict)
    deployment_delay_minutes: dict[str, float] = field(default_factory=dict)
    """Per deployment named by an alert: minutes from the deployment to its first firing alert."""

    def pages_per_week(self) -> float:
        span = self.last_ns - self.first_ns
        return self.pages / (span / WEEK_NS) if span > 0 else float(self.pages)


def read_requests(path: Path, errors: IO[str]) -> Iterator[DecodeResult]:
    """Decoded requests of one input file, in file order; bad entries are reported and skipped."""
    if path.suffix in (".pb", ".binpb"):
        yield from _read_delimited(path, errors)
        return
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
                if not isinstance(document, dict):
                    raise OtlpJsonError("expected a JSON object")
                if "resourceSpans" in document or "resource_spans" in document:
                    yield decode_traces(parse_json(document, ExportTraceServiceRequest))
                elif "resourceLogs" in document or "resource_logs" in document:
                    yield decode_logs(parse_json(document, ExportLogsServiceRequest))
            except (ValueError, OtlpJsonError) as exc:
                print(f"{path}:{number}: skipped: {exc}", file=errors)
                yield DecodeResult(rejected=1, error_message=str(exc))


def _read_delimited(path: Path, errors: IO[str]) -> Iterator[DecodeResult]:
    data = path.read_bytes()
    position = 0
    index = 0
    while position < len(data):
        index += 1
        size, shift = 0, 0
        while True:
            if position >= len(data):
                print(f"{path}: message {index}: truncated length", file=errors)
                return
            byte = data[position]
            position += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        chunk = data[position : position + size]
        position += size
        try:
            yield decode_traces(ExportTraceServiceRequest.FromString(chunk))
        except DecodeError as exc:
            print(f"{path}: message {index}: skipped: {exc}", file=errors)
            yield DecodeResult(rejected=1, error_message=str(exc))


def replay(
    inputs: Sequence[Path],
    *,
    evaluator: RuleEvaluator,
    max_series: int = 10_000,
    allowed_lateness_seconds: float = 300.0,
    out: IO[str],
    errors: IO[str],
    progress: bool = False,
) -> Summary:
    """Run the inputs through a fresh pipeline; alert events go to `out` as JSON lines."""
    summary = Summary()
    engine = WindowEngine(max_series=max_series, allowed_lateness_seconds=allowed_lateness_seconds)

    def emit(events: list[AlertEvent]) -> None:
        for event in events:
            summary.events += 1
            out.write(json.dumps(event.to_dict(), separators=(",", ":"), sort_keys=True))
            out.write("\n")
            if event.status == "firing":
                summary.firing_by_rule[event.rule] += 1
                if event.severity in PAGE_SEVERITIES and not event.inhibited:
                    summary.pages += 1
                deployment = event.annotations.get("deployment", "")
                if deployment and deployment not in summary.first_fire_after_deployment:
                    summary.first_fire_after_deployment[deployment] = format_time(event.at_ns)
                    known = {d.id: d for d in pipeline.deployments.deployments()}
                    if deployment in known:
                        delay_ns = event.at_ns - known[deployment].time_ns
                        summary.deployment_delay_minutes[deployment] = delay_ns / 60e9

    # What the live collector evaluates besides the rules and drift, with its default settings.
    disparity = DisparityTracker(join=engine.join)
    pipeline = Pipeline(engine, evaluator, on_events=emit, disparity=disparity)
    total = len(inputs)
    for number, path in enumerate(inputs, 1):
        for result in read_requests(path, errors):
            summary.requests += 1
            if result.rejected and not result.calls and not result.evaluations:
                summary.bad_lines += 1
                continue
            pipeline.apply(result)
            if result.calls:
                first = min(c.end_time_ns for c in result.calls)
                summary.first_ns = first if not summary.first_ns else min(summary.first_ns, first)
                summary.last_ns = max(summary.last_ns, engine.now_ns)
            if progress and summary.requests % 200 == 0:
                errors.write(f"\rreplaying {path.name} ({number}/{total}): {summary.requests} requests")
                errors.flush()
    if progress:
        errors.write("\n")
    return summary


def print_summary(summary: Summary, errors: IO[str]) -> None:
    days = (summary.last_ns - summary.first_ns) / (WEEK_NS / 7) if summary.last_ns else 0.0
    print(f"replayed {summary.requests} requests over {days:.2f} simulated days", file=errors)
    if summary.bad_lines:
        print(f"skipped {summary.bad_lines} bad entries", file=errors)
    print(f"alert events: {summary.events}; pages (P0/P1 firing): {summary.pages}", file=errors)
    print(f"pages per simulated week: {summary.pages_per_week():.2f}", file=errors)
    for rule, count in sorted(summary.firing_by_rule.items()):
        print(f"  {rule}: fired {count}x", file=errors)
    for deployment, when in summary.first_fire_after_deployment.items():
        delay = summary.deployment_delay_minutes.get(deployment)
        after = "" if delay is None else f" ({delay:.0f} min after the deployment)"
        print(f"  first firing naming {deployment}: {when}{after}", file=errors)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay recorded OTLP traffic through the rules, in event time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    parser.add_argument("--config", type=Path, help="collector settings file (rules_file, max_series, ...)")
    parser.add_argument("--rules", type=Path, help="rules file (overrides the config's rules_file)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        rules_path = args.rules or settings.rules_file
        rules = load_rules(rules_path) if rules_path else load_default_rules()
    except (ConfigError, RulesError) as exc:
        print(f"otel-llm replay: {exc}", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.inputs if not p.is_file()]
    if missing:
        print(f"otel-llm replay: no such input file: {', '.join(missing)}", file=sys.stderr)
        return 2
    summary = replay(
        args.inputs,
        evaluator=build_evaluator(rules),
        max_series=settings.max_series,
        allowed_lateness_seconds=settings.allowed_lateness_seconds,
        out=sys.stdout,
        errors=sys.stderr,
        progress=sys.stderr.isatty(),
    )
    print_summary(summary, sys.stderr)
    return 0
