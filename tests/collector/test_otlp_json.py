"""OTLP/JSON: hex ids, integer enums, int64 as strings or numbers, both name styles, round trips."""

from __future__ import annotations

import base64
import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otel_llm_collector.otlp_json import OtlpJsonError, message_to_dict, message_to_json, parse_json
from otel_llm_collector.testing import genai_request

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
PARENT_ID = "eee19b7ec3c1b173"
BLOB = base64.b64encode(b"\x00\x01").decode()

# The example from the OTLP specification's repository (examples/trace.json), trimmed.
SPEC_EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "my.library", "version": "1.0.0"},
                    "spans": [
                        {
                            "traceId": TRACE_ID,
                            "spanId": SPAN_ID,
                            "parentSpanId": PARENT_ID,
                            "name": "I'm a server span",
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": 1544712661000000000,
                            "kind": 2,
                            "attributes": [
                                {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                                {"key": "count", "value": {"intValue": "42"}},
                                {
                                    "key": "blob",
                                    "value": {"bytesValue": base64.b64encode(b"\x00\x01").decode()},
                                },
                            ],
                            "links": [{"traceId": TRACE_ID, "spanId": PARENT_ID}],
                            "status": {"code": 2, "message": "boom"},
                            "someFutureField": {"ignored": True},
                        }
                    ],
                }
            ],
        }
    ]
}


def _first_span(request: ExportTraceServiceRequest) -> Span:
    return request.resource_spans[0].scope_spans[0].spans[0]


def test_spec_example_parses_with_hex_ids_and_integer_enums() -> None:
    request = parse_json(json.dumps(SPEC_EXAMPLE).encode(), ExportTraceServiceRequest)
    span = _first_span(request)
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)
    assert span.links[0].trace_id == bytes.fromhex(TRACE_ID)
    assert span.kind == Span.SPAN_KIND_SERVER
    assert span.status.code == 2
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.end_time_unix_nano == 1544712661000000000
    assert span.attributes[1].value.int_value == 42
    assert span.attributes[2].value.bytes_value == b"\x00\x01"  # bytesValue stays base64


def test_snake_case_names_and_enum_names_are_accepted() -> None:
    document = {
        "resource_spans": [
            {
                "scope_spans": [
                    {"spans": [{"trace_id": TRACE_ID, "span_id": SPAN_ID, "kind": "SPAN_KIND_CLIENT"}]}
                ]
            }
        ]
    }
    span = _first_span(parse_json(document, ExportTraceServiceRequest))
    assert span.trace_id.hex() == TRACE_ID
    assert span.kind == Span.SPAN_KIND_CLIENT


def test_short_hex_id_passes_through_for_decode_to_reject() -> None:
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "010203"}]}]}]}
    assert _first_span(parse_json(document, ExportTraceServiceRequest)).trace_id == b"\x01\x02\x03"


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        b"[1, 2]",
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
        b'{"resourceSpans": "not a list"}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
    ids=["syntax", "array", "non-hex-id", "bad-int64", "wrong-type", "not-utf8", "deep"],
)
def test_malformed_documents_raise_otlp_json_error(body: bytes) -> None:
    with pytest.raises(OtlpJsonError):
        parse_json(body, ExportTraceServiceRequest)


def test_round_trip_keeps_the_request_and_writes_hex_ids() -> None:
    request = genai_request(spans=5)
    document = message_to_dict(request)
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == (1).to_bytes(16, "big").hex()
    assert span["spanId"] == (1).to_bytes(8, "big").hex()
    assert span["kind"] == 3
    assert parse_json(message_to_json(request), ExportTraceServiceRequest) == request


def test_log_record_ids_are_hex_too() -> None:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.trace_id = bytes.fromhex(TRACE_ID)
    record.span_id = bytes.fromhex(SPAN_ID)
    line = message_to_json(request)
    assert TRACE_ID in line
    assert "\n" not in line
    assert parse_json(line, ExportLogsServiceRequest) == request
