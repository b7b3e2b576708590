"""Synthetic GenAI traffic with known incidents, as OTLP export requests: for tests, benchmarks and replays.

    scenario = blind_spot()                       # the reference incident
    for request in scenario.requests():           # ExportTraceServiceRequest, in event-time order
        ...
    write_jsonl(scenario, "incident.jsonl")       # OTLP JSON lines, as the Collector's file exporter writes

A `Scenario` is a list of `Phase`s over simulated time: call rate, share of calls evaluated, the
distributions of faithfulness, latency, errors and tokens, and the service and prompt version serving. A
phase may split its calls into `Segment`s of one segment label (`otel_llm.segment.<segment_name>`), each
with its share of the calls and, if it differs, its own faithfulness. A phase with a `json_share` also
labels each evaluated answer's `output_format` (`json` or `invalid_json`).
Calls are spread evenly over each second with seeded noise, batched into one request per `batch_seconds`
of event time (a span's evaluation scores ride on it as `gen_ai.evaluation.result` span events). Same
seed, same bytes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

from otel_llm import attributes as A
from otel_llm_collector.otlp_json import message_to_json

SECOND_NS: Final = 1_000_000_000
DAY_START_NS: Final = 1_767_225_600 * SECOND_NS
"""2026-01-01T00:00:00Z."""


def at(hour: int, minute: int = 0, second: int = 0, *, day: int = 0) -> int:
    """Event time of a wall-clock time on the scenario's day `day` (UTC)."""
    return DAY_START_NS + ((day * 24 + hour) * 3600 + minute * 60 + second) * SECOND_NS


Curve = Callable[[int], float]
"""A value as a function of event time (ns), e.g. faithfulness drifting down."""


def constant(value: float) -> Curve:
    return lambda _t: value


_FAITHFULNESS = constant(0.88)
_LATENCY_S = constant(0.9)
_ERROR_RATE = constant(0.005)
_OUTPUT_TOKENS = constant(180.0)
_NO_REFUSALS = constant(0.0)
_INPUT_TOKENS = constant(1200.0)


@dataclass(frozen=True)
class Segment:
    """One value of a phase's segment label: its share of the calls, and its faithfulness if it differs."""

    value: str
    share: float
    faithfulness: Curve | None = None
    """None: the phase's."""


@dataclass(frozen=True)
class Phase:
    """Traffic from `start_ns` until the next phase (or the scenario's end)."""

    start_ns: int
    calls_per_second: float = 1.0
    evaluated_share: float = 0.1
    faithfulness: Curve = _FAITHFULNESS
    faithfulness_sd: float = 0.06
    latency_s: Curve = _LATENCY_S
    latency_sd_share: float = 0.2
    error_rate: Curve = _ERROR_RATE
    output_tokens: Curve = _OUTPUT_TOKENS
    cost_per_token_usd: float = 0.6e-6
    service_version: str = "1.0.0"
    prompt_version: str = "v1"
    model: str = "gpt-4o-mini"
    refusal_rate: Curve = _NO_REFUSALS
    input_tokens: Curve = _INPUT_TOKENS
    segment_name: str = ""
    segments: tuple[Segment, ...] = ()
    """Shares should add up to 1; calls past the last share go to the last segment."""
    json_share: Curve | None = None
    """Share of evaluated answers that are valid JSON, as `output_format` evaluations (`json` or
    `invalid_json`). None: no such evaluation, and no random draw (the other scenarios keep their bytes)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    phases: tuple[Phase, ...]
    end_ns: int
    service: str = "support-bot"
    feature: str = "support-answer"
    prompt_name: str = "answer"
    seed: int = 7
    batch_seconds: int = 10
    expectations: dict[str, object] = field(default_factory=dict)
    """What a correct pipeline does with it (used by tests and the detection benchmark)."""

    def requests(self, *, offset_ns: int = 0) -> Iterator[ExportTraceServiceRequest]:
        """The traffic in event-time order; `offset_ns` shifts every timestamp (e.g. to end "now")."""
        return _generate(self, offset_ns)


def _kv(key: str, value: str | int | float | bool | tuple[str, ...]) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, tuple):
        kv = KeyValue(key=key)
        for item in value:
            kv.value.array_value.values.append(AnyValue(string_value=item))
        return kv
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _phase_at(scenario: Scenario, t_ns: int) -> Phase | None:
    current = None
    for phase in scenario.phases:
        if phase.start_ns <= t_ns:
            current = phase
    return current


def _generate(s: Scenario, offset_ns: int = 0) -> Iterator[ExportTraceServiceRequest]:
    rng = random.Random(s.seed)
    serial = 0
    batch_ns = s.batch_seconds * SECOND_NS
    t = s.phases[0].start_ns
    carry = 0.0
    while t < s.end_ns:
        request = ExportTraceServiceRequest()
        by_version: dict[str, object] = {}
        batch_end = min(t + batch_ns, s.end_ns)
        second = t
        while second < batch_end:
            phase = _phase_at(s, second)
            if phase is None:
                second += SECOND_NS
                continue
            carry += phase.calls_per_second
            count = int(carry)
            carry -= count
            for i in range(count):
                serial += 1
                end_ns = second + int((i + rng.random()) / max(count, 1) * SECOND_NS)
                scope = by_version.get(phase.service_version)
                if scope is None:
                    rs = request.resource_spans.add()
                    rs.resource.attributes.extend(
                        [_kv("service.name", s.service), _kv("service.version", phase.service_version)]
                    )
                    scope = rs.scope_spans.add()
                    scope.scope.name = "otel_llm"
                    by_version[phase.service_version] = scope
                _add_span(scope.spans.add(), s, phase, end_ns, serial, rng, offset_ns)  # type: ignore[attr-defined]
            second += SECOND_NS
        if request.resource_spans:
            yield request
        t = batch_end


def _add_span(
    span: PbSpan, s: Scenario, phase: Phase, end_ns: int, serial: int, rng: random.Random, offset_ns: int = 0
) -> None:
    latency = max(0.05, rng.gauss(phase.latency_s(end_ns), phase.latency_s(end_ns) * phase.latency_sd_share))
    faithfulness = phase.faithfulness
    segment: Segment | None = None
    if phase.segments:  # only then: scenarios without segments draw the same numbers as before
        segment = _pick(phase.segments, rng.random())
        if segment.faithfulness is not None:
            faithfulness = segment.faithfulness
    failed = rng.random() < phase.error_rate(end_ns)
    output_tokens = max(1, int(rng.gauss(phase.output_tokens(end_ns), phase.output_tokens(end_ns) * 0.1)))
    input_tokens = max(1, int(rng.gauss(phase.input_tokens(end_ns), phase.input_tokens(end_ns) * 0.05)))
    span.trace_id = (s.seed * 10_000_019 + serial).to_bytes(16, "big")
    span.span_id = serial.to_bytes(8, "big")
    span.name = f"chat {phase.model}"
    span.kind = PbSpan.SPAN_KIND_CLIENT
    span.start_time_unix_nano = end_ns + offset_ns - int(latency * SECOND_NS)
    span.end_time_unix_nano = end_ns + offset_ns
    response_id = f"chatcmpl-{s.seed}-{serial}"
    attrs: list[KeyValue] = [
        _kv(A.GEN_AI_OPERATION_NAME, "chat"),
        _kv(A.GEN_AI_PROVIDER_NAME, "openai"),
        _kv(A.GEN_AI_REQUEST_MODEL, phase.model),
        _kv(A.GEN_AI_RESPONSE_MODEL, phase.model),
        _kv(A.GEN_AI_PROMPT_NAME, s.prompt_name),
        _kv(A.GEN_AI_PROMPT_VERSION, phase.prompt_version),
        _kv(A.FEATURE, s.feature),
        _kv(A.SERVER_ADDRESS, "api.openai.com"),
    ]
    if segment is not None:
        attrs.append(_kv(A.SEGMENT_PREFIX + phase.segment_name, segment.value))
    if failed:
        attrs.append(_kv(A.ERROR_TYPE, "500"))
        span.status.code = PbStatus.STATUS_CODE_ERROR
    else:
        attrs += [
            _kv(A.GEN_AI_RESPONSE_ID, response_id),
            _kv(A.GEN_AI_RESPONSE_FINISH_REASONS, ("stop",)),
            _kv(A.GEN_AI_USAGE_INPUT_TOKENS, input_tokens),
            _kv(A.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens),
            _kv(A.COST_USD, round((input_tokens + output_tokens) * phase.cost_per_token_usd, 9)),
        ]
    span.attributes.extend(attrs)
    if not failed and rng.random() < phase.evaluated_share:
        score = min(1.0, max(0.0, rng.gauss(faithfulness(end_ns), phase.faithfulness_sd)))
        t_ns = end_ns + offset_ns
        _evaluation(span, t_ns, "faithfulness", score, "pass" if score >= 0.7 else "fail", response_id)
        refused = rng.random() < phase.refusal_rate(end_ns)
        _evaluation(
            span, t_ns, "refusal", 1.0 if refused else 0.0, "fail" if refused else "pass", response_id
        )
        if phase.json_share is not None:
            valid = rng.random() < phase.json_share(end_ns)
            label = "json" if valid else "invalid_json"
            _evaluation(span, t_ns, "output_format", 1.0 if valid else 0.0, label, response_id)


def _pick(segments: tuple[Segment, ...], draw: float) -> Segment:
    for segment in segments:
        draw -= segment.share
        if draw < 0:
            return segment
    return segments[-1]


def _evaluation(span: PbSpan, t_ns: int, name: str, score: float, label: str, response_id: str) -> None:
    event = span.events.add()
    event.name = A.GEN_AI_EVALUATION_RESULT_EVENT
    event.time_unix_nano = t_ns
    event.attributes.extend(
        [
            _kv(A.GEN_AI_EVALUATION_NAME, name),
            _kv(A.GEN_AI_EVALUATION_SCORE_VALUE, round(score, 4)),
            _kv(A.GEN_AI_EVALUATION_SCORE_LABEL, label),
            _kv(A.GEN_AI_RESPONSE_ID, response_id),
        ]
    )


def write_jsonl(scenario: Scenario, path: str | Path) -> int:
    """Write the scenario as OTLP JSON lines (one export request per line); returns the line count."""
    lines = 0
    with Path(path).open("w", encoding="utf-8") as out:
        for request in scenario.requests():
            out.write(message_to_json(request))
            out.write("\n")
            lines += 1
    return lines


def write_delimited(scenario: Scenario, path: str | Path) -> int:
    """Write the scenario as OTLP protobuf requests, each preceded by its varint length; returns the count."""
    count = 0
    with Path(path).open("wb") as out:
        for request in scenario.requests():
            data = request.SerializeToString()
            size = len(data)
            prefix = bytearray()
            while True:
                byte = size & 0x7F
                size >>= 7
                prefix.append(byte | (0x80 if size else 0))
                if not size:
                    break
            out.write(bytes(prefix))
            out.write(data)
            count += 1
    return count


# --- the scenario suite ---------------------------------------------------------------------------------
def blind_spot(*, seed: int = 7) -> Scenario:
    """Steady traffic (1 call/s, 10% evaluated, faithfulness ~0.88); at 10:12 service 1.1.0 ships and
    faithfulness drops to ~0.55 while latency and errors stay normal."""
    base = Phase(start_ns=at(8, 0))
    return Scenario(
        name="blind_spot",
        phases=(
            base,
            replace(base, start_ns=at(10, 12), faithfulness=constant(0.55), service_version="1.1.0"),
        ),
        end_ns=at(12, 0),
        seed=seed,
        expectations={"deployment_ns": at(10, 12), "fire_by_ns": at(10, 22), "pages": 1},
    )


def normal_week(*, seed: int = 11, days: int = 7) -> Scenario:
    """A week of daily seasonality (busy afternoons) and noise, with no incident: nothing should page."""

    def rate(hour_of_day: float) -> float:
        return 0.6 + 0.5 * math.sin((hour_of_day - 9) / 24 * 2 * math.pi)

    phases = tuple(
        Phase(start_ns=at(h, day=d), calls_per_second=max(0.15, rate(h)), evaluated_share=0.1)
        for d in range(days)
        for h in range(24)
    )
    return Scenario(
        name="normal_week",
        phases=phases,
        end_ns=at(0, day=days),
        seed=seed,
        batch_seconds=60,
        expectations={"pages": 0},
    )


def evaluation_outage(*, seed: int = 13) -> Scenario:
    """The evaluation pipeline breaks: two scored calls an hour. No alert; an insufficient-data state."""
    base = Phase(start_ns=at(8, 0))
    return Scenario(
        name="evaluation_outage",
        phases=(base, replace(base, start_ns=at(9, 0), evaluated_share=2 / 3600, faithfulness=constant(0.3))),
        end_ns=at(13, 0),
        seed=seed,
        expectations={"pages": 0},
    )


def slow_drift(*, seed: int = 17) -> Scenario:
    """Faithfulness falls 0.02 per hour from 0.88: no threshold is crossed for hours; trends should see it."""
    start = at(6, 0)

    def drifting(t_ns: int) -> float:
        return 0.88 - 0.02 * max(0.0, (t_ns - at(8, 0)) / (3600 * SECOND_NS))

    base = Phase(start_ns=start, evaluated_share=0.3)
    return Scenario(
        name="slow_drift",
        phases=(base, replace(base, start_ns=at(8, 0), faithfulness=drifting)),
        end_ns=at(16, 0),
        seed=seed,
        expectations={"trend_by_ns": at(16, 0)},
    )


def latency_regression(*, seed: int = 19) -> Scenario:
    """At 10:00 version 2.0.0 doubles latency and quintuples output tokens (cost); quality is unchanged."""
    base = Phase(start_ns=at(6, 0))
    bad = replace(
        base,
        start_ns=at(10, 0),
        latency_s=constant(2.4),
        output_tokens=constant(5700.0),
        service_version="2.0.0",
    )
    return Scenario(name="latency_regression", phases=(base, bad), end_ns=at(11, 0), seed=seed)


def two_deployments(*, seed: int = 23) -> Scenario:
    """Two deployments 20 minutes apart; only the second (10:20, 1.2.0) hurts faithfulness."""
    base = Phase(start_ns=at(8, 0))
    first = replace(base, start_ns=at(10, 0), service_version="1.1.0")
    second = replace(base, start_ns=at(10, 20), service_version="1.2.0", faithfulness=constant(0.5))
    return Scenario(
        name="two_deployments",
        phases=(base, first, second),
        end_ns=at(11, 0),
        seed=seed,
        expectations={"deployment": "1.2.0"},
    )


def refusal_spike(*, seed: int = 29) -> Scenario:
    """At 10:00 a prompt change makes the model refuse a third of the questions."""
    base = Phase(start_ns=at(8, 0), evaluated_share=0.2)
    bad = replace(base, start_ns=at(10, 0), prompt_version="v2", refusal_rate=constant(0.35))
    return Scenario(name="refusal_spike", phases=(base, bad), end_ns=at(11, 0), seed=seed)


def input_drift(*, seed: int = 31) -> Scenario:
    """From 12:00 the retrieval step stuffs three times more context into every prompt; quality holds."""
    base = Phase(start_ns=at(6, 0))
    bigger = replace(base, start_ns=at(12, 0), input_tokens=constant(3600.0))
    return Scenario(name="input_drift", phases=(base, bigger), end_ns=at(14, 0), seed=seed, batch_seconds=30)


def segment_disparity(*, seed: int = 37) -> Scenario:
    """Four locales share one feature (2 calls/s, 30% evaluated). From 10:00 German answers lose their
    grounding (faithfulness ~0.55, a broken German document index) while the others stay at ~0.88. The
    feature's mean stays near 0.81, above every series threshold: only a comparison by segment names it."""
    locales = (Segment("en", 0.5), Segment("de", 0.2), Segment("fr", 0.2), Segment("es", 0.1))
    broken = tuple(replace(s, faithfulness=constant(0.55)) if s.value == "de" else s for s in locales)
    base = Phase(
        start_ns=at(8, 0), calls_per_second=2.0, evaluated_share=0.3, segment_name="locale", segments=locales
    )
    return Scenario(
        name="segment_disparity",
        phases=(base, replace(base, start_ns=at(10, 0), segments=broken)),
        end_ns=at(11, 30),
        seed=seed,
        expectations={
            "segment": ("locale", "de"),
            "from_ns": at(10, 0),
            "fire_by_ns": at(10, 30),
            "pages": 0,
        },
    )


def output_drift(*, seed: int = 41) -> Scenario:
    """A feature that returns JSON (1 call/s, 20% evaluated, 97% of answers valid JSON). At 12:00 prompt v3
    ships and 40% of its answers stop parsing; latency, tokens, refusals and faithfulness hold. Seen by the
    output drift check on the `output_format` mix at the first hour boundary after it (13:00), no page."""
    base = Phase(start_ns=at(6, 0), evaluated_share=0.2, json_share=constant(0.97))
    broken = replace(base, start_ns=at(12, 0), prompt_version="v3", json_share=constant(0.6))
    return Scenario(
        name="output_drift",
        phases=(base, broken),
        end_ns=at(14, 0),
        feature="order-extract",
        prompt_name="extract",
        seed=seed,
        batch_seconds=30,
        expectations={"signal": "output_format_mix", "fire_at_ns": at(13, 0), "pages": 0},
    )


SUITE: Final = {
    "blind_spot": blind_spot,
    "normal_week": normal_week,
    "evaluation_outage": evaluation_outage,
    "slow_drift": slow_drift,
    "latency_regression": latency_regression,
    "two_deployments": two_deployments,
    "refusal_spike": refusal_spike,
    "input_drift": input_drift,
    "segment_disparity": segment_disparity,
    "output_drift": output_drift,
}
