"""How span attributes from each GenAI instrumentation map onto one `CallRecord`.

Several instrumentations describe the same model call with different attribute names. This module is the
one table that reconciles them; `decode` walks each span's attributes once and looks every key up here.
The names of our own instrumentation and of the GenAI semantic conventions come from `otel_llm.attributes`
(and from `opentelemetry-semantic-conventions` for deprecated names); the names that only third-party
instrumentations use are spelled in this module, once, because they are their contract, not ours.

When several names feed the same field, the first listed wins (semantic conventions first).

Field: source names in priority order (semconv = GenAI conventions v1.41, as emitted by our instrumentation
and the official openai-v2 instrumentation; OLM = OpenLLMetry; LIT = OpenLIT; OI = OpenInference;
ANT = the Anthropic SDK's own spans). `docs/attribute-mapping.md` has the same table by instrumentation.

- operation: `gen_ai.operation.name` (semconv, LIT, ANT); OLM `llm.request.type` (chat, completion,
  embedding); OI `openinference.span.kind` (LLM -> chat, EMBEDDING -> embeddings)
- provider: `gen_ai.provider.name`; deprecated `gen_ai.system` (openai-v2, OLM, LIT); OI `llm.provider`,
  `llm.system`
- request model: `gen_ai.request.model`; OI `llm.request.model_name`, then `llm.model_name`
- response model: `gen_ai.response.model`; OI `llm.response.model_name`, then `llm.model_name`
- input tokens: `gen_ai.usage.input_tokens`; deprecated `gen_ai.usage.prompt_tokens` (OLM); OI
  `llm.token_count.prompt`
- output tokens: `gen_ai.usage.output_tokens`; deprecated `gen_ai.usage.completion_tokens` (OLM); OI
  `llm.token_count.completion`
- total tokens (*): OLM `llm.usage.total_tokens`; LIT `gen_ai.usage.total_tokens`; OI `llm.token_count.total`
- cache read: `gen_ai.usage.cache_read.input_tokens` (semconv, ANT); OLM
  `gen_ai.usage.cache_read_input_tokens`; OI `llm.token_count.prompt_details.cache_read`
- cache creation: `gen_ai.usage.cache_creation.input_tokens`; `gen_ai.usage.cache_write.input_tokens`
  (ANT, semconv latest experimental); OLM `gen_ai.usage.cache_creation_input_tokens`; OI
  `llm.token_count.prompt_details.cache_write`
- reasoning tokens: `gen_ai.usage.reasoning.output_tokens` (semconv, ANT); LIT
  `gen_ai.usage.reasoning_tokens`; OI `llm.token_count.completion_details.reasoning`
- time to first chunk (s): `gen_ai.response.time_to_first_chunk`; LIT `gen_ai.server.time_to_first_token`
- cost (USD): `otel_llm.cost.usd`; LIT `gen_ai.usage.cost`; OI `llm.cost.total`
- finish reasons: `gen_ai.response.finish_reasons`; OI `llm.finish_reason`
- prompt name: `gen_ai.prompt.name`; OLM `traceloop.prompt.key`
- prompt version: `gen_ai.prompt.version`; OLM `traceloop.prompt.version`; OI `llm.prompt_template.version`
- feature: `otel_llm.feature`; OLM `traceloop.workflow.name`, then `traceloop.entity.name`
- service (**): resource `service.name`; LIT `gen_ai.application_name`
- environment segment: LIT `gen_ai.environment`

(*) Total tokens only fill in output tokens when the output count is missing and the input count is known.
(**) `gen_ai.application_name` is used only when the resource has no `service.name` (or the SDK default
`unknown_service...`). Response id, error type (`error.type`, else span status ERROR -> `_OTHER`), context
size, tool calls, hashes and segments (`otel_llm.segment.*`) come from the semconv / `otel_llm` names only.

Which mapping recognised the span is recorded in `CallRecord.instrumentation`: `otel_llm` (any `otel_llm.*`
attribute), `openinference`, `openlit`, `openllmetry` (their own names above, or their instrumentation
scope), `anthropic` (scope `com.anthropic.sdk.python`), `openai_v2` (scope
`opentelemetry.instrumentation.openai_v2`), else `semconv`.
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _semconv_gen_ai

from otel_llm import attributes as A

# --- Field slots: what `decode` collects per span ------------------------------------------------------
OPERATION: Final = 0
PROVIDER: Final = 1
REQUEST_MODEL: Final = 2
RESPONSE_MODEL: Final = 3
RESPONSE_ID: Final = 4
FINISH_REASONS: Final = 5
TTFC: Final = 6
INPUT_TOKENS: Final = 7
OUTPUT_TOKENS: Final = 8
TOTAL_TOKENS: Final = 9
CACHE_READ: Final = 10
CACHE_CREATION: Final = 11
REASONING: Final = 12
COST: Final = 13
CONTEXT_DOCUMENTS: Final = 14
CONTEXT_TOKENS: Final = 15
TOOL_CALL_COUNT: Final = 16
TOOL_CALL_NAMES: Final = 17
INPUT_HASH: Final = 18
OUTPUT_HASH: Final = 19
ERROR_TYPE: Final = 20
PROMPT_NAME: Final = 21
PROMPT_VERSION: Final = 22
FEATURE: Final = 23
OPENINFERENCE_KIND: Final = 24
LLM_REQUEST_TYPE: Final = 25
APPLICATION_NAME: Final = 26
ENVIRONMENT: Final = 27
OI_MODEL: Final = 28
"""OpenInference's single `llm.model_name`: request and response model when the specific names are absent."""

# --- Value kinds ----------------------------------------------------------------------------------------
STR: Final = 0
INT: Final = 1
FLOAT: Final = 2
STRS: Final = 3

# --- Instrumentation markers (bit flags) ----------------------------------------------------------------
MARK_OTEL_LLM: Final = 1
MARK_OPENLLMETRY: Final = 2
MARK_OPENLIT: Final = 4
MARK_OPENINFERENCE: Final = 8

# --- Third-party names (their contracts, spelled once here) ---------------------------------------------
# OpenLLMetry (traceloop/openllmetry, opentelemetry-semantic-conventions-ai)
LLM_REQUEST_TYPE_NAME: Final = "llm.request.type"
LLM_USAGE_TOTAL_TOKENS: Final = "llm.usage.total_tokens"
OPENLLMETRY_CACHE_READ: Final = "gen_ai.usage.cache_read_input_tokens"
OPENLLMETRY_CACHE_CREATION: Final = "gen_ai.usage.cache_creation_input_tokens"
TRACELOOP_WORKFLOW_NAME: Final = "traceloop.workflow.name"
TRACELOOP_ENTITY_NAME: Final = "traceloop.entity.name"
TRACELOOP_PROMPT_KEY: Final = "traceloop.prompt.key"
TRACELOOP_PROMPT_VERSION: Final = "traceloop.prompt.version"
# OpenLIT (openlit/openlit, sdk/python/src/openlit/semcov)
OPENLIT_COST: Final = "gen_ai.usage.cost"
OPENLIT_TOTAL_TOKENS: Final = "gen_ai.usage.total_tokens"
OPENLIT_REASONING: Final = "gen_ai.usage.reasoning_tokens"
OPENLIT_TTFT: Final = "gen_ai.server.time_to_first_token"
OPENLIT_APPLICATION_NAME: Final = "gen_ai.application_name"
OPENLIT_ENVIRONMENT: Final = "gen_ai.environment"
# OpenInference (Arize-ai/openinference, openinference-semantic-conventions)
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OI_MODEL_NAME: Final = "llm.model_name"
OI_REQUEST_MODEL_NAME: Final = "llm.request.model_name"
OI_RESPONSE_MODEL_NAME: Final = "llm.response.model_name"
OI_PROVIDER: Final = "llm.provider"
OI_SYSTEM: Final = "llm.system"
OI_PROMPT_TOKENS: Final = "llm.token_count.prompt"
OI_COMPLETION_TOKENS: Final = "llm.token_count.completion"
OI_TOTAL_TOKENS: Final = "llm.token_count.total"
OI_CACHE_READ: Final = "llm.token_count.prompt_details.cache_read"
OI_CACHE_WRITE: Final = "llm.token_count.prompt_details.cache_write"
OI_REASONING: Final = "llm.token_count.completion_details.reasoning"
OI_COST_TOTAL: Final = "llm.cost.total"
OI_FINISH_REASON: Final = "llm.finish_reason"
OI_PROMPT_TEMPLATE_VERSION: Final = "llm.prompt_template.version"
# Instrumentation scopes that identify a producer when its attributes do not.
OPENAI_V2_SCOPE: Final = "opentelemetry.instrumentation.openai_v2"
ANTHROPIC_SDK_SCOPE: Final = "com.anthropic.sdk.python"
GENAI_UTIL_SCOPE: Final = "opentelemetry.util.genai"
"""The official GenAI instrumentations (openai-v2 2.x and others) emit through util-genai's handler."""
ANTHROPIC_STOP_REASON: Final = "anthropic.message.stop_reason"
OPENLIT_SCOPE_PREFIX: Final = "openlit"
OPENINFERENCE_SCOPE_PREFIX: Final = "openinference"

# --- The table: attribute name -> (slot, priority, kind, marker) -----------------------------------------
_ROWS: Final[tuple[tuple[int, int, tuple[tuple[str, int], ...]], ...]] = (
    # slot, kind, ((name, marker), ...) in priority order
    (OPERATION, STR, ((A.GEN_AI_OPERATION_NAME, 0),)),
    (PROVIDER, STR, ((A.GEN_AI_PROVIDER_NAME, 0), (A.GEN_AI_SYSTEM, 0), (OI_PROVIDER, 0), (OI_SYSTEM, 0))),
    (REQUEST_MODEL, STR, ((A.GEN_AI_REQUEST_MODEL, 0), (OI_REQUEST_MODEL_NAME, MARK_OPENINFERENCE))),
    (RESPONSE_MODEL, STR, ((A.GEN_AI_RESPONSE_MODEL, 0), (OI_RESPONSE_MODEL_NAME, MARK_OPENINFERENCE))),
    (OI_MODEL, STR, ((OI_MODEL_NAME, MARK_OPENINFERENCE),)),
    (RESPONSE_ID, STR, ((A.GEN_AI_RESPONSE_ID, 0),)),
    (
        FINISH_REASONS,
        STRS,
        ((A.GEN_AI_RESPONSE_FINISH_REASONS, 0), (OI_FINISH_REASON, 0), (ANTHROPIC_STOP_REASON, 0)),
    ),
    (TTFC, FLOAT, ((A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, 0), (OPENLIT_TTFT, MARK_OPENLIT))),
    (
        INPUT_TOKENS,
        INT,
        (
            (A.GEN_AI_USAGE_INPUT_TOKENS, 0),
            (_semconv_gen_ai.GEN_AI_USAGE_PROMPT_TOKENS, 0),
            (OI_PROMPT_TOKENS, MARK_OPENINFERENCE),
        ),
    ),
    (
        OUTPUT_TOKENS,
        INT,
        (
            (A.GEN_AI_USAGE_OUTPUT_TOKENS, 0),
            (_semconv_gen_ai.GEN_AI_USAGE_COMPLETION_TOKENS, 0),
            (OI_COMPLETION_TOKENS, MARK_OPENINFERENCE),
        ),
    ),
    (
        TOTAL_TOKENS,
        INT,
        (
            (LLM_USAGE_TOTAL_TOKENS, MARK_OPENLLMETRY),
            (OPENLIT_TOTAL_TOKENS, 0),
            (OI_TOTAL_TOKENS, MARK_OPENINFERENCE),
        ),
    ),
    (
        CACHE_READ,
        INT,
        (
            (A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, 0),
            (OPENLLMETRY_CACHE_READ, MARK_OPENLLMETRY),
            (OI_CACHE_READ, MARK_OPENINFERENCE),
        ),
    ),
    (
        CACHE_CREATION,
        INT,
        (
            (A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, 0),
            (A.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, 0),
            (OPENLLMETRY_CACHE_CREATION, MARK_OPENLLMETRY),
            (OI_CACHE_WRITE, MARK_OPENINFERENCE),
        ),
    ),
    (
        REASONING,
        INT,
        (
            (A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, 0),
            (OPENLIT_REASONING, MARK_OPENLIT),
            (OI_REASONING, MARK_OPENINFERENCE),
        ),
    ),
    (
        COST,
        FLOAT,
        ((A.COST_USD, MARK_OTEL_LLM), (OPENLIT_COST, MARK_OPENLIT), (OI_COST_TOTAL, MARK_OPENINFERENCE)),
    ),
    (CONTEXT_DOCUMENTS, INT, ((A.CONTEXT_DOCUMENTS, MARK_OTEL_LLM),)),
    (CONTEXT_TOKENS, INT, ((A.CONTEXT_TOKENS, MARK_OTEL_LLM),)),
    (TOOL_CALL_COUNT, INT, ((A.TOOL_CALL_COUNT, MARK_OTEL_LLM),)),
    (TOOL_CALL_NAMES, STRS, ((A.TOOL_CALL_NAMES, MARK_OTEL_LLM),)),
    (INPUT_HASH, STR, ((A.INPUT_HASH, MARK_OTEL_LLM),)),
    (OUTPUT_HASH, STR, ((A.OUTPUT_HASH, MARK_OTEL_LLM),)),
    (ERROR_TYPE, STR, ((A.ERROR_TYPE, 0),)),
    (PROMPT_NAME, STR, ((A.GEN_AI_PROMPT_NAME, 0), (TRACELOOP_PROMPT_KEY, MARK_OPENLLMETRY))),
    (
        PROMPT_VERSION,
        STR,
        (
            (A.GEN_AI_PROMPT_VERSION, 0),
            (TRACELOOP_PROMPT_VERSION, MARK_OPENLLMETRY),
            (OI_PROMPT_TEMPLATE_VERSION, MARK_OPENINFERENCE),
        ),
    ),
    (
        FEATURE,
        STR,
        (
            (A.FEATURE, MARK_OTEL_LLM),
            (TRACELOOP_WORKFLOW_NAME, MARK_OPENLLMETRY),
            (TRACELOOP_ENTITY_NAME, MARK_OPENLLMETRY),
        ),
    ),
    (OPENINFERENCE_KIND, STR, ((OPENINFERENCE_SPAN_KIND, MARK_OPENINFERENCE),)),
    (LLM_REQUEST_TYPE, STR, ((LLM_REQUEST_TYPE_NAME, MARK_OPENLLMETRY),)),
    (APPLICATION_NAME, STR, ((OPENLIT_APPLICATION_NAME, MARK_OPENLIT),)),
    (ENVIRONMENT, STR, ((OPENLIT_ENVIRONMENT, MARK_OPENLIT),)),
)


def _build_table() -> dict[str, tuple[int, int, int, int]]:
    table: dict[str, tuple[int, int, int, int]] = {}
    for slot, kind, names in _ROWS:
        for priority, (name, marker) in enumerate(names):
            if name in table:
                raise ValueError(f"attribute {name!r} is mapped twice")
            table[name] = (slot, priority, kind, marker)
    return table


ATTRIBUTE_TABLE: Final = _build_table()
"""attribute name -> (slot, priority, kind, marker): one dict lookup per attribute on the hot path."""

# Markers that only our own attribute namespace sets, checked without a table entry per name.
OTEL_LLM_PREFIX: Final = A.FEATURE.split(".", 1)[0] + "."

# --- Operation normalisation ---------------------------------------------------------------------------
LLM_REQUEST_TYPE_OPERATIONS: Final = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
}
OPENINFERENCE_KIND_OPERATIONS: Final = {"LLM": "chat", "EMBEDDING": "embeddings"}
MODEL_CALL_OPERATIONS: Final = A.MODEL_CALL_OPERATIONS


def operation_of(found: dict[int, Any]) -> str:
    """The normalised GenAI operation of a span (`found`: slot -> value); "" when not a model call."""
    op = found.get(OPERATION)
    if op is not None:
        return op if op in MODEL_CALL_OPERATIONS else ""
    request_type = found.get(LLM_REQUEST_TYPE)
    if request_type is not None:
        return LLM_REQUEST_TYPE_OPERATIONS.get(request_type, "")
    kind = found.get(OPENINFERENCE_KIND)
    if kind is not None:
        return OPENINFERENCE_KIND_OPERATIONS.get(kind, "")
    return ""


def instrumentation_of(markers: int, scope_name: str) -> str:
    """Which producer a span came from, by its own attribute names first and its scope name second."""
    if markers & MARK_OTEL_LLM:
        return "otel_llm"
    if markers & MARK_OPENINFERENCE or scope_name.startswith(OPENINFERENCE_SCOPE_PREFIX):
        return "openinference"
    if markers & MARK_OPENLIT or scope_name.startswith(OPENLIT_SCOPE_PREFIX):
        return "openlit"
    if markers & MARK_OPENLLMETRY:
        return "openllmetry"
    if scope_name == ANTHROPIC_SDK_SCOPE:
        return "anthropic"
    if scope_name == OPENAI_V2_SCOPE or scope_name.startswith(GENAI_UTIL_SCOPE):
        return "openai_v2"
    return "semconv"


__all__ = [
    "ATTRIBUTE_TABLE",
    "MODEL_CALL_OPERATIONS",
    "instrumentation_of",
    "operation_of",
]
