"""One time bucket of one series: what the windows add up, and the figures derived from a merged window.

A `Bucket` holds additive state only (counts, sums, quantile sketches), so that any set of buckets can be
merged into a window exactly; `WindowStats` holds the derived figures (rates, ratios, quantiles, means) that
exposition and rules read. Parts that most calls do not have (time to first chunk, errors, evaluations)
are created on first use, which keeps an idle-but-retained bucket small.

A bucket serialises as plain data (`to_dict` / `from_dict`) or, for the window snapshot, in a binary form
(`pack_into` / `unpack_from`): one fixed little-endian record (flags, count, the ten token figures, cost,
context and tool-call figures), the latency sketch, then the optional parts the flags announce. A bucket
whose figures do not fit 64 bits (a client reporting absurd token counts) is written as its `to_dict()`
JSON instead, so a snapshot never fails on, or rounds, what was received.
"""

from __future__ import annotations

import json
import struct
from array import array
from dataclasses import dataclass, field
from operator import add
from typing import Any, Final

from otel_llm_collector.records import CallRecord, EvaluationRecord
from otel_llm_collector.sketch import QuantileSketch

TOKEN_KINDS: Final = ("input", "output", "cache_read", "cache_creation", "reasoning")
"""The token kinds a window reports, in `CallRecord` field order."""
MAX_EVALUATION_NAMES: Final = 32
"""Per bucket; further names fold into `OTHER_EVALUATION` so a misbehaving evaluator cannot blow up labels."""
OTHER_EVALUATION: Final = "__other__"
MAX_ERROR_TYPES: Final = 32
OTHER_ERROR: Final = "__other__"

_I_SAMPLES, _I_SCORE_SUM, _I_SCORED, _I_FAILS = 0, 1, 2, 3
_QUANTILES: Final = (0.5, 0.95, 0.99)
_TOKENS_TYPECODE: Final = "q"

_PACKED: Final = struct.Struct("<Bq10qdqqqq")
"""flags, count, tokens, cost sum, cost count, context tokens, context count, tool calls."""
_HAS_TTFC, _HAS_ERRORS, _HAS_EVALUATIONS = 1, 2, 4
_PLAIN: Final = 128
"""Instead of the fixed record: the bucket's `to_dict()` as JSON text, for figures that overflow it."""
_LENGTH: Final = struct.Struct("<I")
_ERROR_COUNT: Final = struct.Struct("<q")
_EVALUATION: Final = struct.Struct("<4d")


class Bucket:
    """Additive aggregates of the calls and evaluations whose event time falls in one bucket."""

    __slots__ = (
        "context_count",
        "context_tokens",
        "cost_count",
        "cost_sum",
        "count",
        "errors",
        "evaluations",
        "latency",
        "tokens",
        "tool_calls",
        "ttfc",
    )

    def __init__(self) -> None:
        self.count = 0
        self.errors: dict[str, int] | None = None
        self.latency = QuantileSketch()
        self.ttfc: QuantileSketch | None = None
        self.tokens: list[int] | array[int] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        """Sums per kind in `TOKEN_KINDS` order, then how many calls reported each kind: a list while the
        bucket takes calls (the quickest to add to), an int64 array once `compact` closed it."""
        self.cost_sum = 0.0
        self.cost_count = 0
        self.context_tokens = 0
        self.context_count = 0
        self.tool_calls = 0
        self.evaluations: dict[str, list[float]] | None = None

    def add_call(self, call: CallRecord) -> None:
        self.add_calls([call])

    def add_calls(self, calls: list[CallRecord]) -> None:
        """Add calls in order, with the running figures kept in locals: one call at a time or many, every
        sum adds in the same order, so the figures are the same to the bit (the windows add a batch's
        on-time calls per bucket at once)."""
        compacted = type(self.tokens) is not list
        t0, t1, t2, t3, t4, n0, n1, n2, n3, n4 = self.tokens
        cost_sum, cost_count = self.cost_sum, self.cost_count
        context_tokens, context_count = self.context_tokens, self.context_count
        tool_calls = self.tool_calls
        durations: list[float] = []
        for call in calls:
            if call.error_type:
                errors = self.errors
                if errors is None:
                    errors = self.errors = {}
                error_type = call.error_type
                if error_type not in errors and len(errors) >= MAX_ERROR_TYPES:
                    error_type = OTHER_ERROR
                errors[error_type] = errors.get(error_type, 0) + 1
            durations.append(call.duration_s)
            if call.time_to_first_chunk_s is not None:
                if self.ttfc is None:
                    self.ttfc = QuantileSketch()
                self.ttfc.add(call.time_to_first_chunk_s)
            value = call.input_tokens
            if value is not None:
                t0 += value
                n0 += 1
            value = call.output_tokens
            if value is not None:
                t1 += value
                n1 += 1
            value = call.cache_read_tokens
            if value is not None:
                t2 += value
                n2 += 1
            value = call.cache_creation_tokens
            if value is not None:
                t3 += value
                n3 += 1
            value = call.reasoning_tokens
            if value is not None:
                t4 += value
                n4 += 1
            if call.cost_usd is not None:
                cost_sum += call.cost_usd
                cost_count += 1
            if call.context_tokens is not None:
                context_tokens += call.context_tokens
                context_count += 1
            tool_calls += call.tool_call_count
        self.count += len(calls)
        self.latency.add_many(durations)
        tokens = [t0, t1, t2, t3, t4, n0, n1, n2, n3, n4]
        # A closed bucket taking late calls stays compact: a list of ten large ints costs ~450 bytes
        # against an array's 144, and every closed bucket of a series sent late data would keep the list.
        self.tokens = _tokens_array(tokens) if compacted else tokens
        self.cost_sum, self.cost_count = cost_sum, cost_count
        self.context_tokens, self.context_count = context_tokens, context_count
        self.tool_calls = tool_calls

    def add_evaluation(self, evaluation: EvaluationRecord) -> None:
        evaluations = self.evaluations
        if evaluations is None:
            evaluations = self.evaluations = {}
        name = evaluation.name
        entry = evaluations.get(name)
        if entry is None:
            if len(evaluations) >= MAX_EVALUATION_NAMES:
                name = OTHER_EVALUATION
                entry = evaluations.get(name)
            if entry is None:
                entry = evaluations[name] = [0.0, 0.0, 0.0, 0.0]
        entry[_I_SAMPLES] += 1
        if evaluation.score is not None:
            entry[_I_SCORE_SUM] += evaluation.score
            entry[_I_SCORED] += 1
        if evaluation.failed:
            entry[_I_FAILS] += 1

    def merge(self, other: Bucket) -> None:
        self.count += other.count
        if other.errors:
            errors = self.errors if self.errors is not None else {}
            self.errors = errors
            for name, n in other.errors.items():
                errors[name] = errors.get(name, 0) + n
        self.latency.merge(other.latency)
        if other.ttfc is not None:
            if self.ttfc is None:
                self.ttfc = QuantileSketch()
            self.ttfc.merge(other.ttfc)
        theirs = other.tokens
        if theirs[5] or theirs[6] or theirs[7] or theirs[8] or theirs[9]:
            summed = list(map(add, self.tokens, theirs))
            self.tokens = summed if type(self.tokens) is list else _tokens_array(summed)
        self.cost_sum += other.cost_sum
        self.cost_count += other.cost_count
        self.context_tokens += other.context_tokens
        self.context_count += other.context_count
        self.tool_calls += other.tool_calls
        if other.evaluations:
            evaluations = self.evaluations if self.evaluations is not None else {}
            self.evaluations = evaluations
            for name, values in other.evaluations.items():
                mine = evaluations.get(name)
                if mine is None:
                    evaluations[name] = list(values)
                else:
                    for i, v in enumerate(values):
                        mine[i] += v

    def compact(self) -> None:
        """Keep the token figures unboxed from now on (about 100 bytes less per bucket than a list of ints).

        The windows call this when a bucket closes (its minute is rolled up); a later call still works.
        """
        if type(self.tokens) is list:
            self.tokens = _tokens_array(self.tokens)

    @property
    def empty(self) -> bool:
        return self.count == 0 and not self.evaluations

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"n": self.count, "lat": self.latency.to_dict()}
        if self.errors:
            data["err"] = dict(self.errors)
        if self.ttfc is not None:
            data["ttfc"] = self.ttfc.to_dict()
        if any(self.tokens[5:]):
            data["tok"] = [list(self.tokens[:5]), list(self.tokens[5:])]
        if self.cost_count:
            data["cost"] = [self.cost_sum, self.cost_count]
        if self.context_count:
            data["ctx"] = [self.context_tokens, self.context_count]
        if self.tool_calls:
            data["tools"] = self.tool_calls
        if self.evaluations:
            data["eval"] = {k: list(v) for k, v in self.evaluations.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bucket:
        bucket = cls()
        bucket.count = int(data["n"])
        bucket.latency = QuantileSketch.from_dict(data["lat"])
        if "err" in data:
            bucket.errors = {str(k): int(v) for k, v in data["err"].items()}
        if "ttfc" in data:
            bucket.ttfc = QuantileSketch.from_dict(data["ttfc"])
        if "tok" in data:
            bucket.tokens = [int(v) for v in (*data["tok"][0], *data["tok"][1])]
        if "cost" in data:
            bucket.cost_sum, bucket.cost_count = float(data["cost"][0]), int(data["cost"][1])
        if "ctx" in data:
            bucket.context_tokens, bucket.context_count = int(data["ctx"][0]), int(data["ctx"][1])
        bucket.tool_calls = int(data.get("tools", 0))
        if "eval" in data:
            bucket.evaluations = {str(k): [float(x) for x in v] for k, v in data["eval"].items()}
        return bucket

    def pack_into(self, out: bytearray) -> None:
        """Append the binary form (see the module docstring) to `out`."""
        errors, evaluations, ttfc = self.errors, self.evaluations, self.ttfc
        flags = (
            (_HAS_TTFC if ttfc is not None else 0)
            | (_HAS_ERRORS if errors else 0)
            | (_HAS_EVALUATIONS if evaluations else 0)
        )
        try:
            fixed = _PACKED.pack(
                flags,
                self.count,
                *self.tokens,
                self.cost_sum,
                self.cost_count,
                self.context_tokens,
                self.context_count,
                self.tool_calls,
            )
        except (struct.error, OverflowError):  # a figure beyond 64 bits (absurd token counts): kept exact
            out.append(_PLAIN)
            _pack_text(out, json.dumps(self.to_dict(), separators=(",", ":")))
            return
        out += fixed
        self.latency.pack_into(out)
        if ttfc is not None:
            ttfc.pack_into(out)
        if errors:
            out += _LENGTH.pack(len(errors))
            for name, n in errors.items():
                _pack_text(out, name)
                out += _ERROR_COUNT.pack(n)
        if evaluations:
            out += _LENGTH.pack(len(evaluations))
            for name, values in evaluations.items():
                _pack_text(out, name)
                out += _EVALUATION.pack(*values)

    @classmethod
    def unpack_from(cls, buffer: bytes | memoryview, offset: int) -> tuple[Bucket, int]:
        """The bucket packed at `offset` in `buffer`, and the offset just after it."""
        if buffer[offset] == _PLAIN:
            text, offset = _unpack_text(buffer, offset + 1)
            return cls.from_dict(json.loads(text)), offset
        fields = _PACKED.unpack_from(buffer, offset)
        offset += _PACKED.size
        bucket = cls()
        flags, bucket.count = fields[0], fields[1]
        bucket.tokens = array(_TOKENS_TYPECODE, fields[2:12])
        bucket.cost_sum, bucket.cost_count, bucket.context_tokens, bucket.context_count = fields[12:16]
        bucket.tool_calls = fields[16]
        bucket.latency, offset = QuantileSketch.unpack_from(buffer, offset)
        if flags & _HAS_TTFC:
            bucket.ttfc, offset = QuantileSketch.unpack_from(buffer, offset)
        if flags & _HAS_ERRORS:
            (n,) = _LENGTH.unpack_from(buffer, offset)
            offset += _LENGTH.size
            errors: dict[str, int] = {}
            bucket.errors = errors
            for _ in range(n):
                name, offset = _unpack_text(buffer, offset)
                (errors[name],) = _ERROR_COUNT.unpack_from(buffer, offset)
                offset += _ERROR_COUNT.size
        if flags & _HAS_EVALUATIONS:
            (n,) = _LENGTH.unpack_from(buffer, offset)
            offset += _LENGTH.size
            evaluations: dict[str, list[float]] = {}
            bucket.evaluations = evaluations
            for _ in range(n):
                name, offset = _unpack_text(buffer, offset)
                evaluations[name] = list(_EVALUATION.unpack_from(buffer, offset))
                offset += _EVALUATION.size
        return bucket, offset


def _tokens_array(values: list[int]) -> list[int] | array[int]:
    try:
        return array(_TOKENS_TYPECODE, values)
    except OverflowError:  # absurd token counts beyond 64 bits stay exact in the list
        return values


def _pack_text(out: bytearray, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    out += _LENGTH.pack(len(data))
    out += data


def _unpack_text(buffer: bytes | memoryview, offset: int) -> tuple[str, int]:
    (n,) = _LENGTH.unpack_from(buffer, offset)
    start = offset + _LENGTH.size
    if start + n > len(buffer):
        raise ValueError("truncated bucket")
    return bytes(buffer[start : start + n]).decode("utf-8", "surrogatepass"), start + n


@dataclass(frozen=True, slots=True)
class EvaluationStats:
    samples: int
    mean: float | None
    """Mean of the numeric scores; None when every sample only had a label."""
    fail_rate: float
    """Samples labelled `fail` over all samples."""


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Derived figures of one series over one window (`[start_ns, end_ns)`, event time)."""

    window: str
    start_ns: int
    end_ns: int
    count: int
    rate_per_s: float
    errors: int
    error_rate: float
    success_rate: float
    errors_by_type: dict[str, int] = field(default_factory=dict)
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    latency_mean_s: float | None = None
    latency_sum_s: float = 0.0
    ttfc_count: int = 0
    ttfc_sum_s: float = 0.0
    ttfc_p50_s: float | None = None
    ttfc_p95_s: float | None = None
    ttfc_p99_s: float | None = None
    tokens_total: dict[str, int] = field(default_factory=dict)
    """Per kind in `TOKEN_KINDS`, only kinds that some call reported."""
    tokens_mean: dict[str, float] = field(default_factory=dict)
    """Per kind: total over the calls that reported the kind."""
    cost_usd_total: float = 0.0
    cost_usd_mean: float | None = None
    context_tokens_mean: float | None = None
    tool_calls: int = 0
    evaluations: dict[str, EvaluationStats] = field(default_factory=dict)


def derive(bucket: Bucket, *, window: str, start_ns: int, end_ns: int, covered_s: float) -> WindowStats:
    """Figures of a merged bucket; `covered_s` is the event time the window actually spans so far."""
    count = bucket.count
    errors = sum(bucket.errors.values()) if bucket.errors else 0
    latency = bucket.latency
    ttfc = bucket.ttfc
    lat_q = latency.quantiles(_QUANTILES) or (None, None, None)
    ttfc_q = (ttfc.quantiles(_QUANTILES) if ttfc else ()) or (None, None, None)
    tokens = bucket.tokens
    tokens_total = {kind: tokens[i] for i, kind in enumerate(TOKEN_KINDS) if tokens[i + 5]}
    tokens_mean = {kind: tokens[i] / tokens[i + 5] for i, kind in enumerate(TOKEN_KINDS) if tokens[i + 5]}
    evaluations = {
        name: EvaluationStats(
            samples=int(v[_I_SAMPLES]),
            mean=v[_I_SCORE_SUM] / v[_I_SCORED] if v[_I_SCORED] else None,
            fail_rate=v[_I_FAILS] / v[_I_SAMPLES] if v[_I_SAMPLES] else 0.0,
        )
        for name, v in sorted((bucket.evaluations or {}).items())
    }
    return WindowStats(
        window=window,
        start_ns=start_ns,
        end_ns=end_ns,
        count=count,
        rate_per_s=count / covered_s if covered_s > 0 else 0.0,
        errors=errors,
        error_rate=errors / count if count else 0.0,
        success_rate=(count - errors) / count if count else 0.0,
        errors_by_type=dict(sorted((bucket.errors or {}).items())),
        latency_p50_s=lat_q[0],
        latency_p95_s=lat_q[1],
        latency_p99_s=lat_q[2],
        latency_mean_s=latency.mean,
        latency_sum_s=latency.sum,
        ttfc_count=int(ttfc.count) if ttfc else 0,
        ttfc_sum_s=ttfc.sum if ttfc else 0.0,
        ttfc_p50_s=ttfc_q[0],
        ttfc_p95_s=ttfc_q[1],
        ttfc_p99_s=ttfc_q[2],
        tokens_total=tokens_total,
        tokens_mean=tokens_mean,
        cost_usd_total=bucket.cost_sum,
        cost_usd_mean=bucket.cost_sum / bucket.cost_count if bucket.cost_count else None,
        context_tokens_mean=bucket.context_tokens / bucket.context_count if bucket.context_count else None,
        tool_calls=bucket.tool_calls,
        evaluations=evaluations,
    )


__all__ = ["TOKEN_KINDS", "Bucket", "EvaluationStats", "WindowStats", "derive"]
