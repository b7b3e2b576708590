"""The native trace decoder gives exactly the reference decoder's results, or hands the request back.

`decode.decode_traces` (Python, on a parsed protobuf request) is the reference. For every request here the
native decoder (`native_decode.NativeTraceDecoder`, on the request's bytes) must either return a
`DecodeResult` equal to the reference's, or return None (take the reference path). It must never accept
bytes that protobuf refuses, and it must accept the ordinary shapes (else it would be slow for nothing).
"""

from __future__ import annotations

import os
import random
import shutil
import sysconfig
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otel_llm_collector import mapping as M
from otel_llm_collector import native_decode
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.receiver import Receiver, Signal, Verdict
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.testing import T0_NS, SpanRecorder, genai_request

from otel_llm import attributes as A


def _can_build_extensions() -> bool:
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return include.exists() and any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))


def test_the_extension_is_built_where_a_compiler_exists() -> None:
    """The install builds the extension where it can; a silent build failure would cost 4x throughput."""
    if not _can_build_extensions():
        pytest.skip("no C compiler or Python headers here: the install leaves the extension out")
    assert native_decode.native_built(), "pip install did not build _native_decode"


@pytest.fixture(scope="module")
def native() -> native_decode.NativeTraceDecoder:
    if not native_decode.native_built():
        pytest.skip("the native decoder extension is not built here")
    return native_decode.NativeTraceDecoder()


def _reference(payload: bytes) -> DecodeResult:
    return decode_traces(ExportTraceServiceRequest.FromString(payload))


def _agree(native: native_decode.NativeTraceDecoder, payload: bytes, *, must_accept: bool = True) -> None:
    got = native(payload)
    if got is None:
        assert not must_accept, "the native decoder declined an ordinary request"
        return
    assert got == _reference(payload)


# --- ordinary traffic ------------------------------------------------------------------------------------
@pytest.mark.parametrize("series", [1, 7, 300])
def test_generated_load_decodes_alike(native: native_decode.NativeTraceDecoder, series: int) -> None:
    payload = genai_request(spans=512, series=series, seed=series).SerializeToString()
    result = native(payload)
    assert result is not None
    assert len(result.calls) == 512
    assert result == _reference(payload)


def _recorded(**attributes: Any) -> bytes:
    recorder = SpanRecorder(service="checkout")
    recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + 1_500_000_000, **attributes)
    return bytes(recorder.request().SerializeToString())


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"ttfc_s": 0.35, "error_type": "TimeoutError"},
        {"error_type": "<class 'openai.APITimeoutError'>"},
        {"cache_read_tokens": None, "cost_usd": None, "response_model": "gpt-4o-mini-2024-07-18"},
        {"extra": {A.TENANT: "acme", A.SEGMENT_PREFIX + "plan": "gold", A.SEGMENT_PREFIX + "n": 3}},
        {"extra": {A.TOOL_CALL_NAMES: ("search", "lookup"), A.CONTEXT_DOCUMENTS: 4, A.CONTEXT_TOKENS: 900}},
        {"extra": {A.GEN_AI_RESPONSE_FINISH_REASONS: "length"}},
        {"feature": "x" * 1000, "prompt_version": "é" * 300},
    ],
)
def test_sdk_spans_decode_alike(
    native: native_decode.NativeTraceDecoder, attributes: dict[str, object]
) -> None:
    _agree(native, _recorded(**attributes))


def test_spans_of_every_mapped_instrumentation_decode_alike(native: native_decode.NativeTraceDecoder) -> None:
    """One span per mapping row and alternative name, with the values each instrumentation sends."""
    recorder = SpanRecorder(service="unknown_service:python", scope="openinference.instrumentation.openai")
    start = T0_NS
    for name, (slot, _priority, kind, _marker) in M.ATTRIBUTE_TABLE.items():
        value: Any = {M.STR: "chat", M.INT: 42, M.FLOAT: 0.5, M.STRS: ("stop",)}[kind]
        attributes: dict[str, Any] = {
            M.OPENINFERENCE_SPAN_KIND: "LLM",
            name: value,
            M.OPENLIT_APPLICATION_NAME: "app",
        }
        recorder.span(f"span {name}", attributes, start_ns=start, end_ns=start + 10, error=slot % 2 == 0)
        start += 1_000
    _agree(native, bytes(recorder.request().SerializeToString()))


# --- generated attribute sets: every mapped name, values of every type -------------------------------------
_KEYS = [
    *M.ATTRIBUTE_TABLE,
    A.TENANT,
    A.SEGMENT_PREFIX + "plan",
    A.FEATURE + ".extra",
    "service.name",
    "http.method",
    "",
]
_values = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        ["chat", "embeddings", "LLM", "EMBEDDING", "completion", "12", " 7 ", "1_000", "nan", "1e3"]
    ),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.one_of(st.text(max_size=20), st.integers(-5, 5), st.floats(), st.booleans()), max_size=70),
    st.none(),
    st.binary(max_size=8),
)


def _any_value(value: object) -> AnyValue | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    array = AnyValue()
    array.array_value.SetInParent()
    for item in value:  # type: ignore[attr-defined]
        converted = _any_value(item)
        assert converted is not None
        array.array_value.values.append(converted)
    return array


def _key_value(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    converted = _any_value(value)
    if converted is not None:
        kv.value.CopyFrom(converted)
    return kv


def _span(
    attributes: Sequence[tuple[str, object]],
    *,
    trace_id: bytes = b"\x01" * 16,
    span_id: bytes = b"\x02" * 8,
    start: int = T0_NS,
    end: int = T0_NS + 10**9,
    status: int = 0,
) -> Span:
    span = Span(
        trace_id=trace_id, span_id=span_id, name="chat", start_time_unix_nano=start, end_time_unix_nano=end
    )
    span.attributes.extend(_key_value(k, v) for k, v in attributes)
    if status:
        span.status.CopyFrom(Status(code=status))  # type: ignore[arg-type]
    return span


def _request(spans: Sequence[Span], resource: Mapping[str, object], scope: str) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(_key_value(k, v) for k, v in resource.items())
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = scope
    scope_spans.spans.extend(spans)
    return bytes(request.SerializeToString())


_span_strategy = st.builds(
    lambda attributes, ids, times, status: _span(
        [("gen_ai.operation.name", "chat"), *attributes] if ids[2] else attributes,
        trace_id=ids[0],
        span_id=ids[1],
        start=times[0],
        end=times[1],
        status=status,
    ),
    st.lists(st.tuples(st.sampled_from(_KEYS), _values), max_size=25),
    st.tuples(
        st.sampled_from([b"\x01" * 16, b"\x00" * 16, b"\x01" * 3, b""]),
        st.sampled_from([b"\x02" * 8, b"\x00" * 8, b"\x02" * 9]),
        st.booleans(),
    ),
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    st.sampled_from([0, 1, 2, 7]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spans=st.lists(_span_strategy, max_size=6),
    service=st.sampled_from(["", "checkout", "unknown_service:python", "x" * 300]),
    version=_values,
    scope=st.sampled_from(["", "otel_llm", "openlit.otel", "openinference.x", M.OPENAI_V2_SCOPE]),
)
def test_generated_spans_decode_alike(spans: list[Span], service: str, version: object, scope: str) -> None:
    if not native_decode.native_built():
        pytest.skip("the native decoder extension is not built here")
    native = native_decode.NativeTraceDecoder(max_attributes_per_span=20)
    payload = _request(spans, {"service.name": service, "service.version": version}, scope)
    got = native(payload)
    assert got is not None
    assert got == decode_traces(ExportTraceServiceRequest.FromString(payload), max_attributes_per_span=20)


# --- what it hands back ----------------------------------------------------------------------------------
def test_evaluation_events_take_the_reference_path(native: native_decode.NativeTraceDecoder) -> None:
    recorder = SpanRecorder()
    event = (A.GEN_AI_EVALUATION_RESULT_EVENT, {A.GEN_AI_EVALUATION_NAME: "faithfulness"}, T0_NS)
    recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + 10**9, events=[event])
    payload = bytes(recorder.request().SerializeToString())
    assert native(payload) is None
    assert _reference(payload).calls[0].evaluations[0].name == "faithfulness"


def test_other_span_events_stay_native(native: native_decode.NativeTraceDecoder) -> None:
    recorder = SpanRecorder()
    event = ("exception", {"exception.type": "TimeoutError"}, T0_NS)
    recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + 10**9, events=[event], error_type="TimeoutError")
    _agree(native, bytes(recorder.request().SerializeToString()))


def _mutations(payload: bytes, rng: random.Random) -> Iterator[bytes]:
    for _ in range(600):
        data = bytearray(payload)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(data))
            action = rng.random()
            if action < 0.5:
                data[position] = rng.randrange(256)
            elif action < 0.7:
                del data[position : position + rng.randint(1, 8)]
            elif action < 0.85:
                data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            else:
                data = data[:position]
            if not data:
                break
        yield bytes(data)


def test_mutated_bytes_are_never_accepted_when_protobuf_refuses_them(
    native: native_decode.NativeTraceDecoder,
) -> None:
    """Flip, cut and insert bytes in real requests: whatever the native decoder accepts, protobuf parses,
    and to the same result; whatever protobuf refuses, the native decoder hands back."""
    rng = random.Random(20261122)
    recorder = SpanRecorder()
    recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + 10**9, extra={A.TOOL_CALL_NAMES: ("a", "b")})
    recorder.span("GET", {"http.method": "GET", "n": 1.5}, start_ns=T0_NS, end_ns=T0_NS + 5, error=True)
    sources = [bytes(recorder.request().SerializeToString()), genai_request(spans=3).SerializeToString()]
    accepted = refused = 0
    for source in sources:
        for payload in _mutations(source, rng):
            got = native(payload)
            try:
                request = ExportTraceServiceRequest.FromString(payload)
            except Exception:
                assert got is None, f"accepted bytes protobuf refuses: {payload.hex()}"
                refused += 1
                continue
            if got is not None:
                accepted += 1
                assert got == decode_traces(request), payload.hex()
    assert accepted > 40  # the mutations exercise both sides
    assert refused > 400


def test_invalid_utf8_in_a_string_field_is_refused_as_protobuf_does(
    native: native_decode.NativeTraceDecoder,
) -> None:
    payload = _request([_span([("gen_ai.operation.name", "chat")])], {}, "otel_llm")
    broken = payload.replace(b"chat", b"ch\xffa")
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(broken)
    assert native(broken) is None


# --- through the receiver -------------------------------------------------------------------------------
def _receiver(
    native: native_decode.NativeTraceDecoder | None,
) -> tuple[Receiver, list[DecodeResult], Counters]:
    offered: list[DecodeResult] = []
    counters = Counters()

    def offer(result: DecodeResult, code: int, payload: bytes | None) -> bool:
        offered.append(result)
        return True

    receiver = Receiver(
        offer=offer,
        counters=counters,
        decode_traces=decode_traces,
        decode_logs=lambda request: DecodeResult(),
        decode_trace_bytes=native,
    )
    return receiver, offered, counters


def test_receiver_decodes_natively_and_falls_back_per_request(
    native: native_decode.NativeTraceDecoder,
) -> None:
    receiver, offered, counters = _receiver(native)
    plain = genai_request(spans=4).SerializeToString()
    recorder = SpanRecorder()
    event = (A.GEN_AI_EVALUATION_RESULT_EVENT, {A.GEN_AI_EVALUATION_NAME: "faithfulness"}, T0_NS)
    recorder.genai_span(start_ns=T0_NS, end_ns=T0_NS + 10**9, events=[event])
    with_evaluation = bytes(recorder.request().SerializeToString())
    assert receiver.export_protobuf(Signal.TRACES, plain).verdict is Verdict.ACCEPTED
    assert receiver.export_protobuf(Signal.TRACES, with_evaluation).verdict is Verdict.ACCEPTED
    assert [len(r.calls) for r in offered] == [4, 1]
    assert offered[1].calls[0].evaluations[0].name == "faithfulness"
    assert counters.get("traces_native_declined_total") == 1
    assert counters.get("spans_received_total") == 5


def test_malformed_bytes_answer_invalid_with_the_parser_message(
    native: native_decode.NativeTraceDecoder,
) -> None:
    receiver, offered, counters = _receiver(native)
    outcome = receiver.export_protobuf(Signal.TRACES, b"\x0a\xff\xff\xff")
    assert outcome.verdict is Verdict.INVALID
    assert outcome.message.startswith("malformed traces request:")
    assert offered == []
    assert counters.get("traces_requests_invalid_total") == 1


def test_rejected_spans_are_partial_success_natively(native: native_decode.NativeTraceDecoder) -> None:
    receiver, offered, _ = _receiver(native)
    spans = [
        _span([("gen_ai.operation.name", "chat")], trace_id=b"\x00" * 16),
        _span([("gen_ai.operation.name", "chat")], span_id=b"\x01" * 3),
        _span([("gen_ai.operation.name", "chat")], start=10, end=5),
        _span([("gen_ai.operation.name", "chat")]),
    ]
    outcome = receiver.export_protobuf(Signal.TRACES, _request(spans, {"service.name": "s"}, "otel_llm"))
    assert outcome.verdict is Verdict.ACCEPTED
    assert outcome.rejected == 3
    assert "1 rejected: end_before_start" in outcome.message
    assert len(offered[0].calls) == 1


def test_an_unreadable_switch_is_reported_and_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(native_decode.NATIVE_DECODE_ENV, "perhaps")
    assert native_decode.native_available() is native_decode.native_built()
    if native_decode.native_built():
        assert "OTEL_LLM_NATIVE_DECODE='perhaps' is not a boolean" in caplog.text
    monkeypatch.setenv(native_decode.NATIVE_DECODE_ENV, "off")
    assert native_decode.native_available() is False


def test_the_switch_turns_the_native_decoder_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native_decode.NATIVE_DECODE_ENV, "0")
    assert native_decode.native_trace_decoder() is None
    monkeypatch.delenv(native_decode.NATIVE_DECODE_ENV)
    expected = native_decode.native_built()
    assert (native_decode.native_trace_decoder() is not None) is expected
    assert os.environ.get(native_decode.NATIVE_DECODE_ENV) is None
