"""Decode trace export requests straight from their protobuf bytes, natively when the extension is built.

`decode.decode_traces` is the reference: it reads a parsed protobuf request in Python, about 20 µs per
GenAI span, which caps one collector process near 30,000 spans/s. The C extension `_native_decode` walks
the wire format once, with the same attribute table (`mapping.ATTRIBUTE_TABLE`) and the same value rules,
and builds the same `CallRecord` values, several times faster (docs/performance.md has the figures).

`decode_trace_bytes(payload)` returns the `DecodeResult`, or None when the request should take the
reference path (parse, then `decode_traces`): the extension is not built, or it declined the request.
It declines anything malformed (so the client gets the reference path's exact INVALID_ARGUMENT message)
and the rare shapes it leaves to the reference on purpose (evaluation events on spans, duplicated
singular messages that protobuf merges, several members of one `AnyValue` oneof, string-table indexes).

The extension is optional: `pip install` builds it where a C compiler and the Python headers exist and
installs without it otherwise. `OTEL_LLM_NATIVE_DECODE=0` turns it off at run time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Final

from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME, SERVICE_VERSION

from otel_llm import attributes as A
from otel_llm_collector import decode as D
from otel_llm_collector import mapping as M
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.records import CallRecord

__all__ = [
    "NATIVE_DECODE_ENV",
    "NativeTraceDecoder",
    "native_available",
    "native_built",
    "native_trace_decoder",
]

_logger = logging.getLogger(__name__)

NATIVE_DECODE_ENV: Final = "OTEL_LLM_NATIVE_DECODE"

try:
    from otel_llm_collector import _native_decode  # type: ignore[attr-defined]
except ImportError:  # not built (no compiler at install time): the reference decoder does all the work
    _native_decode = None


def native_built() -> bool:
    """Whether the install built the extension."""
    return _native_decode is not None


def native_available() -> bool:
    """Whether the extension is built and not switched off by `OTEL_LLM_NATIVE_DECODE=0` (or false/no/off)."""
    if _native_decode is None:
        return False
    raw = os.environ.get(NATIVE_DECODE_ENV, "")
    value = raw.strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value not in ("", "1", "true", "yes", "on"):
        _logger.warning("%s=%r is not a boolean; the native decoder stays on", NATIVE_DECODE_ENV, raw)
    return True


_INTERNED_SLOTS: Final = (
    M.OPERATION,
    M.PROVIDER,
    M.REQUEST_MODEL,
    M.RESPONSE_MODEL,
    M.OI_MODEL,
    M.ERROR_TYPE,
    M.PROMPT_NAME,
    M.PROMPT_VERSION,
    M.FEATURE,
    M.OPENINFERENCE_KIND,
    M.LLM_REQUEST_TYPE,
    M.APPLICATION_NAME,
    M.ENVIRONMENT,
)
"""Slots with few distinct values (series labels and the like): their strings are shared, not rebuilt.
Response ids and hashes differ on every call and are left out."""


def _config() -> dict[str, Any]:
    return {
        "table": dict(M.ATTRIBUTE_TABLE),
        "record_type": CallRecord,
        "record_fields": tuple(f.name for f in dataclasses.fields(CallRecord)),
        "series_key": D._series_key,
        "series_cache": D._series_cache,
        "instrumentation": D._instrumentation,
        "model_operations": frozenset(M.MODEL_CALL_OPERATIONS),
        "request_type_operations": dict(M.LLM_REQUEST_TYPE_OPERATIONS),
        "openinference_operations": dict(M.OPENINFERENCE_KIND_OPERATIONS),
        "evaluation_event": A.GEN_AI_EVALUATION_RESULT_EVENT.encode(),
        "own_marker": M.MARK_OTEL_LLM,
        "own_prefix": M.OTEL_LLM_PREFIX,
        "segment_prefix": A.SEGMENT_PREFIX,
        "tenant_key": A.TENANT,
        "tenant_name": "tenant",
        "service_name_key": SERVICE_NAME,
        "service_version_key": SERVICE_VERSION,
        "other_error": D._ERROR_TYPE_OTHER,
        "unknown_service": D._UNKNOWN_SERVICE_PREFIX,
        "environment": "environment",
        "intern_slots": _INTERNED_SLOTS,
    }


class NativeTraceDecoder:
    """One extension decoder (it keeps a bounded cache of attribute keys); safe to share between threads,
    since the extension holds the GIL for the whole of one request."""

    def __init__(self, max_attributes_per_span: int = D.DEFAULT_MAX_ATTRIBUTES_PER_SPAN) -> None:
        if _native_decode is None:
            raise RuntimeError("the native decoder extension is not built")
        self._decoder = _native_decode.TraceDecoder(_config())
        self._max_attributes = max_attributes_per_span

    def __call__(self, payload: bytes) -> DecodeResult | None:
        try:
            out = self._decoder.decode(payload, self._max_attributes)
        except Exception:  # a bug here must not cost the request: the reference path still decodes it
            _logger.debug("native decode failed; using the reference decoder", exc_info=True)
            out = None
        if out is None:
            return None
        calls, seen, skipped, _truncated, bad_trace, bad_span, end_before_start = out
        reasons: dict[str, int] = {}
        for reason, count in (
            (D.REJECT_TRACE_ID, bad_trace),
            (D.REJECT_SPAN_ID, bad_span),
            (D.REJECT_END_BEFORE_START, end_before_start),
        ):
            if count:
                reasons[reason] = count
        rejected = bad_trace + bad_span + end_before_start
        return DecodeResult(
            calls=tuple(calls),
            spans_seen=seen,
            rejected=rejected,
            error_message=D._summary(reasons) if rejected else "",
            skipped=skipped,
            reject_reasons=reasons,
        )


def native_trace_decoder(
    max_attributes_per_span: int = D.DEFAULT_MAX_ATTRIBUTES_PER_SPAN,
) -> NativeTraceDecoder | None:
    """A native decoder, or None when the extension is not built or is switched off."""
    if not native_available():
        return None
    return NativeTraceDecoder(max_attributes_per_span)
