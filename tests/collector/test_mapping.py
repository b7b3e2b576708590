"""Mapping: spans shaped like each GenAI instrumentation's decode to the same call record.

Each fixture is the attribute set that instrumentation puts on a chat span (names from its own semantic
conventions module, spelled once in `mapping`), recorded with the real SDK and encoded as OTLP.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as semconv
from opentelemetry.util.types import AttributeValue
from otel_llm_collector import mapping as M
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.records import CallRecord
from otel_llm_collector.testing import SECOND_NS, T0_NS, SpanRecorder

from otel_llm import attributes as A

Attrs = dict[str, AttributeValue]

OPENAI_V2: Attrs = {
    A.GEN_AI_OPERATION_NAME: "chat",
    A.GEN_AI_SYSTEM: "openai",
    A.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    A.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
    A.GEN_AI_RESPONSE_ID: "chatcmpl-1",
    A.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
    A.GEN_AI_USAGE_INPUT_TOKENS: 120,
    A.GEN_AI_USAGE_OUTPUT_TOKENS: 30,
    A.SERVER_ADDRESS: "api.openai.com",
}
OPENLLMETRY: Attrs = {
    M.LLM_REQUEST_TYPE_NAME: "chat",
    A.GEN_AI_SYSTEM: "openai",
    A.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    A.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
    A.GEN_AI_RESPONSE_ID: "chatcmpl-1",
    semconv.GEN_AI_USAGE_PROMPT_TOKENS: 120,
    semconv.GEN_AI_USAGE_COMPLETION_TOKENS: 30,
    M.LLM_USAGE_TOTAL_TOKENS: 150,
    M.OPENLLMETRY_CACHE_READ: 100,
    M.TRACELOOP_WORKFLOW_NAME: "support-answer",
    M.TRACELOOP_PROMPT_KEY: "answer",
    M.TRACELOOP_PROMPT_VERSION: 3,
}
OPENLIT: Attrs = {
    A.GEN_AI_OPERATION_NAME: "chat",
    A.GEN_AI_SYSTEM: "openai",
    A.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
    A.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
    A.GEN_AI_RESPONSE_ID: "chatcmpl-1",
    A.GEN_AI_USAGE_INPUT_TOKENS: 120,
    A.GEN_AI_USAGE_OUTPUT_TOKENS: 30,
    M.OPENLIT_TOTAL_TOKENS: 150,
    M.OPENLIT_COST: 0.0012,
    M.OPENLIT_TTFT: 0.31,
    M.OPENLIT_APPLICATION_NAME: "support-bot",
    M.OPENLIT_ENVIRONMENT: "production",
}
OPENINFERENCE: Attrs = {
    M.OPENINFERENCE_SPAN_KIND: "LLM",
    M.OI_MODEL_NAME: "gpt-4o-mini-2024-07-18",
    M.OI_PROVIDER: "openai",
    M.OI_SYSTEM: "openai",
    M.OI_PROMPT_TOKENS: 120,
    M.OI_COMPLETION_TOKENS: 30,
    M.OI_TOTAL_TOKENS: 150,
    M.OI_CACHE_READ: 100,
    M.OI_REASONING: 8,
    M.OI_COST_TOTAL: 0.0012,
    M.OI_PROMPT_TEMPLATE_VERSION: "v3",
}
ANTHROPIC_SDK: Attrs = {
    A.GEN_AI_OPERATION_NAME: "chat",
    A.GEN_AI_PROVIDER_NAME: "anthropic",
    A.GEN_AI_REQUEST_MODEL: "claude-sonnet-4-5",
    A.GEN_AI_RESPONSE_MODEL: "claude-sonnet-4-5-20250929",
    A.GEN_AI_RESPONSE_ID: "msg_1",
    A.GEN_AI_USAGE_INPUT_TOKENS: 1500,
    A.GEN_AI_USAGE_OUTPUT_TOKENS: 30,
    A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1000,
    A.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: 400,
    A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 12,
}


def _decode_one(
    attributes: Mapping[str, AttributeValue], *, scope: str = "some.scope", service: str = "checkout"
) -> CallRecord:
    recorder = SpanRecorder(scope=scope, service=service)
    recorder.span("llm call", attributes, start_ns=T0_NS, end_ns=T0_NS + 2 * SECOND_NS)
    (call,) = decode_traces(recorder.request()).calls
    return call


def test_official_openai_v2_spans_with_deprecated_system_name() -> None:
    call = _decode_one(OPENAI_V2, scope=M.OPENAI_V2_SCOPE)
    assert call.instrumentation == "openai_v2"
    assert call.provider == "openai"
    assert call.series.model == "gpt-4o-mini-2024-07-18"
    assert (call.input_tokens, call.output_tokens) == (120, 30)
    assert call.finish_reasons == ("stop",)


def test_openllmetry_spans_map_prompt_tokens_workflow_and_managed_prompt() -> None:
    call = _decode_one(OPENLLMETRY)
    assert call.instrumentation == "openllmetry"
    assert call.operation == "chat"
    assert (call.input_tokens, call.output_tokens, call.cache_read_tokens) == (120, 30, 100)
    assert call.series.feature == "support-answer"
    assert (call.series.prompt_name, call.series.prompt_version) == ("answer", "3")


def test_openllmetry_total_tokens_fill_in_a_missing_output_count() -> None:
    attributes: Attrs = {k: v for k, v in OPENLLMETRY.items() if k != semconv.GEN_AI_USAGE_COMPLETION_TOKENS}
    assert _decode_one(attributes).output_tokens == 30


def test_openlit_spans_map_cost_ttft_application_and_environment() -> None:
    call = _decode_one(OPENLIT, service="unknown_service")
    assert call.instrumentation == "openlit"
    assert call.cost_usd == 0.0012
    assert call.time_to_first_chunk_s == 0.31
    assert call.series.service == "support-bot"
    assert call.segments == (("environment", "production"),)


def test_openlit_application_name_does_not_override_a_real_service_name() -> None:
    assert _decode_one(OPENLIT, service="checkout").series.service == "checkout"


def test_openinference_llm_spans_map_model_tokens_and_cost() -> None:
    call = _decode_one(OPENINFERENCE)
    assert call.instrumentation == "openinference"
    assert call.operation == "chat"
    assert call.request_model == call.response_model == "gpt-4o-mini-2024-07-18"
    assert call.provider == "openai"
    assert (call.input_tokens, call.output_tokens) == (120, 30)
    assert (call.cache_read_tokens, call.reasoning_tokens) == (100, 8)
    assert call.cost_usd == 0.0012
    assert call.series.prompt_version == "v3"


def test_openinference_chain_spans_are_not_calls() -> None:
    recorder = SpanRecorder()
    recorder.span("chain", {M.OPENINFERENCE_SPAN_KIND: "CHAIN"}, start_ns=T0_NS, end_ns=T0_NS + 1)
    result = decode_traces(recorder.request())
    assert (result.calls, result.skipped) == ((), 1)


def test_anthropic_sdk_native_spans_map_cache_write_tokens() -> None:
    call = _decode_one(ANTHROPIC_SDK, scope=M.ANTHROPIC_SDK_SCOPE)
    assert call.instrumentation == "anthropic"
    assert call.cache_creation_tokens == 400
    assert (call.input_tokens, call.cache_read_tokens, call.reasoning_tokens) == (1500, 1000, 12)


@pytest.mark.parametrize("fixture", [OPENAI_V2, OPENLLMETRY, OPENLIT, OPENINFERENCE])
def test_every_instrumentation_yields_the_same_core_record(fixture: Mapping[str, AttributeValue]) -> None:
    call = _decode_one(fixture, service="checkout")
    assert (call.series.service, call.series.model) == ("checkout", "gpt-4o-mini-2024-07-18")
    assert (call.provider, call.operation, call.input_tokens, call.output_tokens) == (
        "openai",
        "chat",
        120,
        30,
    )
    assert call.duration_s == 2.0


def test_primary_name_wins_over_alternatives_in_any_order() -> None:
    both: Attrs = {
        A.GEN_AI_OPERATION_NAME: "chat",
        semconv.GEN_AI_USAGE_PROMPT_TOKENS: 1,
        A.GEN_AI_USAGE_INPUT_TOKENS: 2,
        M.OI_PROMPT_TOKENS: 3,
    }
    assert _decode_one(both).input_tokens == 2
    reversed_order: Attrs = dict(reversed(list(both.items())))
    assert _decode_one(reversed_order).input_tokens == 2
    only_alternatives: Attrs = {
        A.GEN_AI_OPERATION_NAME: "chat",
        M.OI_PROMPT_TOKENS: 3,
        semconv.GEN_AI_USAGE_PROMPT_TOKENS: 1,
    }
    assert _decode_one(only_alternatives).input_tokens == 1


def test_values_of_an_unexpected_type_are_converted() -> None:
    attributes: Attrs = {
        A.GEN_AI_OPERATION_NAME: "chat",
        A.GEN_AI_PROMPT_VERSION: 7,
        A.GEN_AI_USAGE_INPUT_TOKENS: "42",
        A.COST_USD: 1,
        A.GEN_AI_RESPONSE_FINISH_REASONS: "stop",
    }
    call = _decode_one(attributes)
    assert call.series.prompt_version == "7"
    assert call.input_tokens == 42
    assert call.cost_usd == 1.0
    assert call.finish_reasons == ("stop",)


def test_segments_come_from_the_segment_prefix_and_the_tenant() -> None:
    attributes: Attrs = {A.GEN_AI_OPERATION_NAME: "chat", A.SEGMENT_PREFIX + "locale": "de", A.TENANT: "t1"}
    call = _decode_one(attributes)
    assert call.segments == (("locale", "de"), ("tenant", "t1"))
    assert call.instrumentation == "otel_llm"


def test_every_mapped_name_is_unique_and_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "attribute-mapping.md").read_text(encoding="utf-8")
    missing = [name for name in M.ATTRIBUTE_TABLE if f"`{name}`" not in doc]
    assert missing == []


def test_public_api_is_pinned() -> None:
    assert sorted(M.__all__) == [
        "ATTRIBUTE_TABLE",
        "MODEL_CALL_OPERATIONS",
        "instrumentation_of",
        "operation_of",
    ]
