"""Attribute and event names: the telemetry contract between the instrumentation and the collector.

Names from the OpenTelemetry GenAI semantic conventions are re-exported from
`opentelemetry-semantic-conventions` where that package defines them; the two the package lacks
(`gen_ai.prompt.version`, a few newer usage names) are spelled here once. Everything the conventions do
not cover lives in the `otel_llm.` namespace, defined only in this module, which both `otel_llm` and the
collector import. Nothing here imports collector code.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import server_attributes as _server

# --- GenAI semantic conventions (v1.41 names) ---------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = _gen_ai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME: Final = _gen_ai.GEN_AI_PROVIDER_NAME
GEN_AI_SYSTEM: Final = _gen_ai.GEN_AI_SYSTEM  # deprecated name, still read by the collector
GEN_AI_REQUEST_MODEL: Final = _gen_ai.GEN_AI_REQUEST_MODEL
GEN_AI_REQUEST_MAX_TOKENS: Final = _gen_ai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_TEMPERATURE: Final = _gen_ai.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_REQUEST_TOP_P: Final = _gen_ai.GEN_AI_REQUEST_TOP_P
GEN_AI_REQUEST_TOP_K: Final = _gen_ai.GEN_AI_REQUEST_TOP_K
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = _gen_ai.GEN_AI_REQUEST_FREQUENCY_PENALTY
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = _gen_ai.GEN_AI_REQUEST_PRESENCE_PENALTY
GEN_AI_REQUEST_STOP_SEQUENCES: Final = _gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES
GEN_AI_REQUEST_SEED: Final = _gen_ai.GEN_AI_REQUEST_SEED
GEN_AI_REQUEST_CHOICE_COUNT: Final = _gen_ai.GEN_AI_REQUEST_CHOICE_COUNT
GEN_AI_REQUEST_STREAM: Final = _gen_ai.GEN_AI_REQUEST_STREAM
GEN_AI_REQUEST_ENCODING_FORMATS: Final = _gen_ai.GEN_AI_REQUEST_ENCODING_FORMATS
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = _gen_ai.GEN_AI_EMBEDDINGS_DIMENSION_COUNT
GEN_AI_OUTPUT_TYPE: Final = _gen_ai.GEN_AI_OUTPUT_TYPE
GEN_AI_RESPONSE_ID: Final = _gen_ai.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_MODEL: Final = _gen_ai.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_FINISH_REASONS: Final = _gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = _gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
GEN_AI_USAGE_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
GEN_AI_CONVERSATION_ID: Final = _gen_ai.GEN_AI_CONVERSATION_ID
GEN_AI_TOOL_NAME: Final = _gen_ai.GEN_AI_TOOL_NAME
GEN_AI_TOOL_CALL_ID: Final = _gen_ai.GEN_AI_TOOL_CALL_ID
GEN_AI_TOOL_TYPE: Final = _gen_ai.GEN_AI_TOOL_TYPE
GEN_AI_TOOL_DESCRIPTION: Final = _gen_ai.GEN_AI_TOOL_DESCRIPTION
GEN_AI_INPUT_MESSAGES: Final = _gen_ai.GEN_AI_INPUT_MESSAGES
GEN_AI_OUTPUT_MESSAGES: Final = _gen_ai.GEN_AI_OUTPUT_MESSAGES
GEN_AI_RETRIEVAL_DOCUMENTS: Final = _gen_ai.GEN_AI_RETRIEVAL_DOCUMENTS
"""With content capture on: `llm_context(retrieved_context=...)` as a JSON list (for the collector)."""
GEN_AI_SYSTEM_INSTRUCTIONS: Final = _gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS
GEN_AI_PROMPT_NAME: Final = _gen_ai.GEN_AI_PROMPT_NAME
# Defined by the GenAI conventions repository; not yet in the Python semconv package.
GEN_AI_PROMPT_VERSION: Final = "gen_ai.prompt.version"
# Newer spelling of the cache-creation counter (`gen_ai_latest_experimental`), also used by the Anthropic SDK.
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"

GEN_AI_EVALUATION_NAME: Final = _gen_ai.GEN_AI_EVALUATION_NAME
GEN_AI_EVALUATION_SCORE_VALUE: Final = _gen_ai.GEN_AI_EVALUATION_SCORE_VALUE
GEN_AI_EVALUATION_SCORE_LABEL: Final = _gen_ai.GEN_AI_EVALUATION_SCORE_LABEL
GEN_AI_EVALUATION_EXPLANATION: Final = _gen_ai.GEN_AI_EVALUATION_EXPLANATION
GEN_AI_EVALUATION_RESULT_EVENT: Final = "gen_ai.evaluation.result"
GEN_AI_INFERENCE_DETAILS_EVENT: Final = "gen_ai.client.inference.operation.details"

ERROR_TYPE: Final = _error.ERROR_TYPE
SERVER_ADDRESS: Final = _server.SERVER_ADDRESS
SERVER_PORT: Final = _server.SERVER_PORT

# --- What the conventions lack: the otel_llm namespace ------------------------------------------------
FEATURE: Final = "otel_llm.feature"
"""The product feature the call serves (e.g. `support-answer`); a series key in the collector."""
CONDITIONAL_PATH: Final = "otel_llm.path"
"""Which branch of the app's logic produced the call (e.g. `retrieval`, `fallback`)."""
CONTEXT_DOCUMENTS: Final = "otel_llm.context.documents"
CONTEXT_TOKENS: Final = "otel_llm.context.tokens"
CONTEXT_CHARS: Final = "otel_llm.context.chars"
CONTEXT_SOURCES: Final = "otel_llm.context.sources"
INPUT_HASH: Final = "otel_llm.input.hash"
"""SHA-256 (hex) of the canonical JSON of the request's input messages; always set, content or not."""
OUTPUT_HASH: Final = "otel_llm.output.hash"
"""SHA-256 (hex) of the response's output text (choices joined in order); always set when known."""
COST_USD: Final = "otel_llm.cost.usd"
USAGE_REPORTED: Final = "otel_llm.usage.reported"
"""False when the provider sent no usage (e.g. a stream without `include_usage`); token counts are absent."""
STREAM_CHUNKS: Final = "otel_llm.stream.chunks"
STREAM_ABORTED: Final = "otel_llm.stream.aborted"
TOOL_CALL_COUNT: Final = "otel_llm.tool_calls.count"
TOOL_CALL_NAMES: Final = "otel_llm.tool_calls.names"
API: Final = "otel_llm.api"
"""The wire API detected: `openai.chat`, `openai.responses`, `openai.embeddings`, `anthropic.messages`."""
SEGMENT_PREFIX: Final = "otel_llm.segment."
"""Prefix of app-chosen segment labels (e.g. `otel_llm.segment.locale`); bounded by the collector."""
TENANT: Final = "otel_llm.tenant"
KILL_SWITCH: Final = "otel_llm.kill_switch"
EVALUATION_SOURCE: Final = "otel_llm.evaluation.source"
"""Who produced a score: `local`, `judge`, `user`, `collector`."""
QUOTA_EXCEEDED: Final = "otel_llm.quota.exceeded"
"""On the app's current span when a quota stopped a call: the quota's name (e.g. `tokens_per_day`)."""
QUOTA_NAME: Final = "otel_llm.quota.name"
"""Metric attribute of `otel_llm.quota.refused`: which quota stopped the call."""

# The GenAI operation names the collector counts as model calls.
MODEL_CALL_OPERATIONS: Final = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "responses"}
)

__all__ = [name for name in dir() if name.isupper()]
