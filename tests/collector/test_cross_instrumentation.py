"""The same LLM calls, traced by different instrumentations, decode to the same `CallRecord`s.

The real `openai` and `anthropic` SDKs call a local `LLMServer` that gives every run identical scripted
answers; each run is traced by one instrumentation only: ours, the official openai-v2 instrumentation (OpenAI)
or the Anthropic SDK's own tracing (Anthropic). Their spans are exported with the real OpenTelemetry SDK,
encoded as OTLP by the SDK's own encoder (or sent over real gRPC) and decoded by the collector; the fields
every instrumentation reports must then agree. The `llm_context` values reach only spans that ours writes or
enriches, so the series' feature and prompt are compared only where ours is present.

Known divergences are pinned here, so that a change in any producer shows up:
- `error.type` vocabularies differ (ours: the HTTP status; openai-v2: the exception class, whose repr the
  collector turns back into its name; Anthropic: the API's error type) - pinned in `ERROR_TYPES`;
- openai-v2 2.4b0 writes its spans through `opentelemetry-util-genai` (scope
  `opentelemetry.util.genai.handler`), which the collector recognises as `openai_v2`;
- the Anthropic SDK reports the stop reason as `anthropic.message.stop_reason`, mapped onto
  `finish_reasons`.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from crossinst_support import (
    ANTHROPIC_MODEL,
    ANTHROPIC_SDK,
    ENRICHED,
    MESSAGES,
    OPENAI_MODEL,
    OPENAI_V2,
    OTEL_LLM,
    Run,
    capture,
    decode,
    only_record,
    uninstrument_all,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from otel_llm_collector.app import App
from otel_llm_collector.config import load_settings
from otel_llm_collector.records import CallRecord
from receive_support import receive_stack

import otel_llm
from otel_llm.testing.llm_server import ErrorReply, Reply, Usage

FEATURE = "capitals"
PROMPT_NAME = "capital-question"
PROMPT_VERSION = "2.1.0"

ERROR_TYPES = {
    (OTEL_LLM, "openai"): "429",
    (OPENAI_V2, "openai"): "openai.RateLimitError",
    (OTEL_LLM, "anthropic"): "429",
    (ANTHROPIC_SDK, "anthropic"): "rate_limit_error",
}
"""`error.type` of a 429 as each instrumentation's span decodes.

openai-v2 2.4b0 sets the exception *class* as the value; the SDK stores its str() (`<class '...'>`), which
decode turns back into the class name."""


@pytest.fixture(autouse=True)
def _nothing_left_instrumented() -> Iterator[None]:
    uninstrument_all()
    yield
    uninstrument_all()


@dataclass(frozen=True)
class Scenario:
    """One call, made the same way under every instrumentation, and the answer the server scripts for it."""

    id: str
    provider: str
    reply: Reply
    call: Callable[[Run], None]

    @property
    def model(self) -> str:
        return OPENAI_MODEL if self.provider == "openai" else ANTHROPIC_MODEL

    @property
    def fails(self) -> bool:
        return self.reply.error is not None


def _in_context(call: Callable[[Run], None]) -> Callable[[Run], None]:
    def run_in_context(run: Run) -> None:
        with otel_llm.llm_context(feature=FEATURE, prompt_name=PROMPT_NAME, prompt_version=PROMPT_VERSION):
            call(run)

    return run_in_context


@_in_context
def _openai_chat(run: Run) -> None:
    run.openai().chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)


@_in_context
def _openai_stream(run: Run) -> None:
    stream = run.openai().chat.completions.create(
        model=OPENAI_MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    for _ in stream:
        pass


@_in_context
def _openai_error(run: Run) -> None:
    with pytest.raises(openai.RateLimitError):
        run.openai().chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)


@_in_context
def _anthropic_messages(run: Run) -> None:
    run.anthropic().messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES)


@_in_context
def _anthropic_stream(run: Run) -> None:
    stream = run.anthropic().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=64,
        messages=MESSAGES,
        stream=True,
    )
    for _ in stream:
        pass


@_in_context
def _anthropic_error(run: Run) -> None:
    with pytest.raises(anthropic.RateLimitError):
        run.anthropic().messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES)


def _reply(response_id: str, input_tokens: int, output_tokens: int) -> Reply:
    return Reply(
        text="Paris is the capital of France.",
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        response_id=response_id,
    )


RATE_LIMITED = Reply(error=ErrorReply(429, message="slow down"))

OPENAI_SCENARIOS = [
    Scenario("chat", "openai", _reply("chatcmpl-crossinst-1", 11, 5), _openai_chat),
    Scenario("stream", "openai", _reply("chatcmpl-crossinst-2", 13, 7), _openai_stream),
    Scenario("error", "openai", RATE_LIMITED, _openai_error),
]
ANTHROPIC_SCENARIOS = [
    Scenario("messages", "anthropic", _reply("msg_crossinst_1", 17, 9), _anthropic_messages),
    Scenario("stream", "anthropic", _reply("msg_crossinst_2", 19, 8), _anthropic_stream),
    Scenario("error", "anthropic", RATE_LIMITED, _anthropic_error),
]
OTHER_INSTRUMENTATION = {"openai": OPENAI_V2, "anthropic": ANTHROPIC_SDK}


def _run(instrumentation: str, scenario: Scenario, *, service: str = "crossinst") -> Run:
    return capture(instrumentation, [scenario.reply], scenario.call, service=service)


def _shared(record: CallRecord) -> dict[str, Any]:
    """The fields every instrumentation reports, as the collector decoded them."""
    return {
        "service": record.series.service,
        "series_model": record.series.model,
        "provider": record.provider,
        "operation": record.operation,
        "request_model": record.request_model,
        "response_model": record.response_model,
        "response_id": record.response_id,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "ok": record.ok,
    }


def _expected_shared(scenario: Scenario) -> dict[str, Any]:
    reply = scenario.reply
    usage = reply.usage
    return {
        "service": "crossinst",
        "series_model": scenario.model,
        "provider": scenario.provider,
        "operation": "chat",
        "request_model": scenario.model,
        # A failed call has no response: the series falls back to the request model.
        "response_model": "" if scenario.fails else scenario.model,
        "response_id": reply.response_id or "",
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "ok": not scenario.fails,
    }


def _assert_timing(record: CallRecord) -> None:
    assert record.duration_s > 0
    assert record.end_time_ns > 0
    assert len(record.trace_id) == 32
    assert len(record.span_id) == 16


def _assert_agree(scenario: Scenario, ours: CallRecord, theirs: CallRecord, other: str) -> None:
    expected = _expected_shared(scenario)
    assert _shared(ours) == expected
    assert _shared(theirs) == expected
    _assert_timing(ours)
    _assert_timing(theirs)
    # The context reaches our span only; the other instrumentation's series has no feature or prompt.
    assert ours.series[1:4] == (FEATURE, PROMPT_NAME, PROMPT_VERSION)
    assert theirs.series[1:4] == ("", "", "")
    if scenario.fails:
        assert ours.error_type == ERROR_TYPES[(OTEL_LLM, scenario.provider)]
        assert theirs.error_type == ERROR_TYPES[(other, scenario.provider)]
    else:
        assert ours.error_type == theirs.error_type == ""


@pytest.mark.parametrize("scenario", OPENAI_SCENARIOS, ids=lambda s: s.id)
def test_openai_calls_decode_alike_from_ours_and_openai_v2(scenario: Scenario) -> None:
    ours = only_record(_run(OTEL_LLM, scenario))
    theirs = only_record(_run(OPENAI_V2, scenario))
    _assert_agree(scenario, ours, theirs, OPENAI_V2)
    if scenario.id == "chat":
        # openai-v2 reports finish reasons for a whole response only, not for a stream.
        assert ours.finish_reasons == theirs.finish_reasons == ("stop",)
    if scenario.id == "stream":
        assert ours.time_to_first_chunk_s is not None
        assert 0 < ours.time_to_first_chunk_s <= ours.duration_s
        assert theirs.time_to_first_chunk_s is None  # openai-v2 2.4b0 does not report it


@pytest.mark.parametrize("scenario", ANTHROPIC_SCENARIOS, ids=lambda s: s.id)
def test_anthropic_calls_decode_alike_from_ours_and_the_sdk_tracing(scenario: Scenario) -> None:
    ours = only_record(_run(OTEL_LLM, scenario))
    theirs = only_record(_run(ANTHROPIC_SDK, scenario))
    _assert_agree(scenario, ours, theirs, ANTHROPIC_SDK)
    if not scenario.fails:
        assert ours.finish_reasons == ("end_turn",)  # the SDK's tracing: see the xfail below
        # Both report the (zero) cache counts, under different names for cache creation.
        assert (ours.cache_read_tokens, ours.cache_creation_tokens) == (0, 0)
        assert (theirs.cache_read_tokens, theirs.cache_creation_tokens) == (0, 0)
    if scenario.id == "stream":
        for record in (ours, theirs):
            assert record.time_to_first_chunk_s is not None
            assert 0 < record.time_to_first_chunk_s <= record.duration_s


@pytest.mark.parametrize(
    ("instrumentation", "scenario"),
    [
        pytest.param(OTEL_LLM, OPENAI_SCENARIOS[0], id="otel_llm-openai"),
        pytest.param(OPENAI_V2, OPENAI_SCENARIOS[0], id="openai_v2"),
        pytest.param(OTEL_LLM, ANTHROPIC_SCENARIOS[0], id="otel_llm-anthropic"),
        pytest.param(ANTHROPIC_SDK, ANTHROPIC_SCENARIOS[0], id="anthropic"),
    ],
)
def test_each_producer_is_recognised(instrumentation: str, scenario: Scenario) -> None:
    run = _run(instrumentation, scenario)
    assert len(run.genai_spans()) == 1, [(s.name, s.instrumentation_scope) for s in run.spans]
    assert only_record(run).instrumentation == instrumentation


def test_openai_v2_scope_is_the_genai_util_handler() -> None:
    """What the collector sees from openai-v2 2.4b0: util-genai's scope, recognised as `openai_v2`."""
    run = _run(OPENAI_V2, OPENAI_SCENARIOS[0])
    (span,) = run.genai_spans()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "opentelemetry.util.genai.handler"
    assert only_record(run).instrumentation == "openai_v2"


@pytest.mark.parametrize("scenario", ANTHROPIC_SCENARIOS[:2], ids=lambda s: s.id)
def test_anthropic_sdk_stop_reason_becomes_finish_reasons(scenario: Scenario) -> None:
    run = _run(ANTHROPIC_SDK, scenario)
    (span,) = run.genai_spans()
    assert (span.attributes or {})["anthropic.message.stop_reason"] == "end_turn"
    assert only_record(run).finish_reasons == ("end_turn",)


@pytest.mark.parametrize("scenario", ANTHROPIC_SCENARIOS, ids=lambda s: s.id)
def test_anthropic_sdk_span_enriched_by_ours_keeps_its_fields_and_gains_the_context(
    scenario: Scenario,
) -> None:
    native = only_record(_run(ANTHROPIC_SDK, scenario))
    run = _run(ENRICHED, scenario)
    # One span for the call - the SDK's - not one from each instrumentation.
    (span,) = run.genai_spans()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "com.anthropic.sdk.python"
    enriched = only_record(run)
    assert _shared(enriched) == _shared(native) == _expected_shared(scenario)
    _assert_timing(enriched)
    assert enriched.error_type == native.error_type
    assert enriched.series[1:4] == (FEATURE, PROMPT_NAME, PROMPT_VERSION)
    assert len(enriched.input_hash) == 64
    # Our attributes on it make it ours for the collector.
    assert enriched.instrumentation == OTEL_LLM


# --- Over the wire ---------------------------------------------------------------------------------------


def _comparison_runs(service: Callable[[str, str], str] = lambda i, p: "crossinst") -> dict[str, Run]:
    """The first scenario of each provider under each instrumentation that reports it."""
    runs: dict[str, Run] = {}
    for scenarios in (OPENAI_SCENARIOS, ANTHROPIC_SCENARIOS):
        for instrumentation in (OTEL_LLM, OTHER_INSTRUMENTATION[scenarios[0].provider]):
            provider = scenarios[0].provider
            runs[f"{instrumentation}/{provider}"] = capture(
                instrumentation,
                [s.reply for s in scenarios],
                lambda run, scenarios=scenarios: [s.call(run) for s in scenarios] and None,
                service=service(instrumentation, provider),
            )
    return runs


def _export_grpc(endpoint: str, spans: list[ReadableSpan]) -> None:
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def test_records_received_over_grpc_match_and_agree() -> None:
    runs = _comparison_runs()
    with receive_stack() as stack:
        for run in runs.values():
            _export_grpc(stack.grpc_endpoint, list(run.spans))
        expected = sum(len(run.records) for run in runs.values())
        assert expected == 4 * len(OPENAI_SCENARIOS)
        assert stack.sink.wait_calls(expected)
        received = {call.span_id: call for result in stack.sink.results for call in result.calls}
    assert len(received) == expected
    # What came over gRPC is exactly what the local encode + decode made of the same spans.
    for run in runs.values():
        for record in run.records:
            assert received[record.span_id] == record
    for provider, scenarios in (("openai", OPENAI_SCENARIOS), ("anthropic", ANTHROPIC_SCENARIOS)):
        other = OTHER_INSTRUMENTATION[provider]
        ours = sorted(runs[f"{OTEL_LLM}/{provider}"].records, key=lambda r: r.end_time_ns)
        theirs = sorted(runs[f"{other}/{provider}"].records, key=lambda r: r.end_time_ns)
        for scenario, our_record, their_record in zip(scenarios, ours, theirs, strict=True):
            _assert_agree(scenario, received[our_record.span_id], received[their_record.span_id], other)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    running = App(
        load_settings(
            overrides={
                "otlp_grpc_endpoint": "127.0.0.1:0",
                "otlp_http_endpoint": "127.0.0.1:0",
                "http_endpoint": "127.0.0.1:0",
                "state_dir": tmp_path / "state",
                "snapshot_interval_seconds": 3600,
            }
        )
    )
    running.start()
    try:
        yield running
    finally:
        running.stop(1.0)


def test_series_api_counts_the_same_calls_alike(app: App) -> None:
    # One service per instrumentation, so each gets its own series in the live collector.
    runs = _comparison_runs(service=lambda instrumentation, provider: f"{instrumentation}-{provider}")
    addresses = app.addresses()
    for run in runs.values():
        _export_grpc(addresses["otlp_grpc"], list(run.spans))
    url = f"http://{addresses['http']}/api/v1/series?window=5m"
    deadline = time.monotonic() + 20
    while sum(item["count"] for item in _get_json(url)["series"]) < 4 * len(OPENAI_SCENARIOS):
        assert time.monotonic() < deadline, _get_json(url)
        time.sleep(0.05)
    items = {item["series"]["service"]: item for item in _get_json(url)["series"]}
    assert sorted(items) == sorted(f"{key.replace('/', '-')}" for key in runs)
    for provider, scenarios in (("openai", OPENAI_SCENARIOS), ("anthropic", ANTHROPIC_SCENARIOS)):
        tokens = {
            "input": sum(s.reply.usage.input_tokens or 0 for s in scenarios if s.reply.usage),
            "output": sum(s.reply.usage.output_tokens or 0 for s in scenarios if s.reply.usage),
        }
        for instrumentation in (OTEL_LLM, OTHER_INSTRUMENTATION[provider]):
            item = items[f"{instrumentation}-{provider}"]
            assert item["series"]["model"] == scenarios[0].model
            assert item["count"] == len(scenarios)
            assert item["errors"] == 1
            assert {kind: item["tokens_total"][kind] for kind in tokens} == tokens
            assert item["latency_s"]["p50"] > 0
            assert item["errors_by_type"] == {ERROR_TYPES[(instrumentation, provider)]: 1}
    # Only ours knows the context, so only our series carry the feature and prompt.
    for key, item in items.items():
        labels = (item["series"]["feature"], item["series"]["prompt_name"], item["series"]["prompt_version"])
        if key.startswith(f"{OTEL_LLM}-"):
            assert labels == (FEATURE, PROMPT_NAME, PROMPT_VERSION)
        else:
            assert labels == ("", "", "")


def test_decode_of_all_runs_at_once_equals_decode_of_each() -> None:
    runs = _comparison_runs()
    together = decode([span for run in runs.values() for span in run.spans])
    assert sorted(together, key=lambda r: r.span_id) == sorted(
        (record for run in runs.values() for record in run.records), key=lambda r: r.span_id
    )
