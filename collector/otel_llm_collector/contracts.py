"""The contracts between the collector's stages: receive -> decode -> windows -> expose.

Receive parses the wire format (gRPC or HTTP, protobuf or OTLP/JSON) into the OTLP protobuf request and
hands it to decode, which validates it and returns a `DecodeResult` of plain records; receive answers the
client from that result (partial success) and offers the records to the ingest queue; one worker applies
them to the windows. Only decode sees protobuf; everything after it sees the records in `records.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otel_llm_collector.records import CallRecord, EvaluationRecord


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What one export request decoded to."""

    calls: tuple[CallRecord, ...] = ()
    evaluations: tuple[EvaluationRecord, ...] = ()
    spans_seen: int = 0
    """All spans (or log records) in the request, GenAI or not."""
    rejected: int = 0
    """Items refused for defects (bad ids, end before start, ...); reported as partial success."""
    error_message: str = ""
    """Why items were rejected; empty when none were."""
    skipped: int = 0
    """Well-formed items that are not GenAI calls or evaluations (forwarded, not windowed)."""
    reject_reasons: dict[str, int] = field(default_factory=dict)
