"""Canary analysis: two versions serving at the same time, compared metric by metric.

    canary = CanaryCollector(dimension="prompt_version")     # or "model", "service_version"
    canary.observe_call(call)                                 # every CallRecord (with its evaluations)
    canary.observe_evaluation(evaluation, series=key)         # evaluations that arrive on their own
    report = canary.compare("answer", baseline="v1", candidate="v2")   # None: unknown name or version
    report.verdict, report.score, report.to_dict()

Groups and versions. With `prompt_version` (the default) or `model` the group is the prompt name and the
version is the prompt version or the model; with `service_version` the group is the service.

Metrics. `latency_seconds` (successful calls; lower is better) and every evaluation score seen, named
`score:<evaluation>` (higher is better), are compared with the Mann-Whitney U rank test (normal
approximation with tie correction and continuity correction, two-sided). `error_rate` (calls with an
error.type) and `fail_rate:<evaluation>` (evaluations labelled `fail`) are compared with the two-proportion
test of `proportions` and Newcombe's interval of the difference. Confidence is 98% (alpha 0.02) for both.

Per metric verdict:

- `inconclusive`: fewer than `min_samples` (default 30) in either version; never `pass`.
- `fail`: the candidate is significantly worse (rank test p < 0.02 with the candidate on the bad side, or
  the whole 98% interval of the rate difference on the bad side of 0).
- `pass`: otherwise (no significant difference, or significantly better).

Overall: with C conclusive metrics out of M and P of them passing, score = 100 * P / C. The report is
`inconclusive` when C = 0 or C < M / 2 (too little is known to judge), else `pass` at score >= 95,
`marginal` at >= 75, `fail` below. With three metrics one failure gives 66.7: fail; with four, 75: marginal.

Bounded: each (group, version) keeps a reservoir (Algorithm R, seeded) of at most `reservoir_size`
(default 2,000) values per continuous metric and exact counts for rates; at most `max_keys` (default 1,000)
(group, version) pairs and `max_evaluations` (default 16) evaluation names per pair; what does not fit is
counted in `dropped`. Samples accumulate since the pair was first seen; `forget(group)` starts over (call
it when a canary ends). Not thread-safe: one caller at a time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist, median
from typing import Any, Final, Literal

from otel_llm_collector.proportions import two_proportion_test
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey

__all__ = [
    "CANARY_CONFIDENCE",
    "CanaryCollector",
    "CanaryReport",
    "MetricVerdict",
    "RankTestResult",
    "compare_proportions",
    "compare_samples",
    "mann_whitney_u",
    "overall_verdict",
]

CANARY_CONFIDENCE: Final = 0.98
DEFAULT_MIN_SAMPLES: Final = 30
_NORMAL: Final = NormalDist()

Verdict = Literal["pass", "fail", "inconclusive"]
Overall = Literal["pass", "marginal", "fail", "inconclusive"]
Better = Literal["higher", "lower"]
Dimension = Literal["prompt_version", "model", "service_version"]


@dataclass(frozen=True, slots=True)
class RankTestResult:
    """Mann-Whitney U of sample B against sample A."""

    u: float
    """U of B: the number of (a, b) pairs with b > a, ties counting one half."""
    z: float
    """Positive when B tends to be larger."""
    p_value: float
    """Two-sided."""
    effect: float
    """U / (n_a n_b): the probability that a random B exceeds a random A (0.5: no difference)."""
    n_a: int
    n_b: int


def _ranks(values: Sequence[float]) -> tuple[list[float], float]:
    """Average ranks (1-based) and the tie term sum(t^3 - t) over groups of equal values."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        average = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = average
        t = j - i + 1
        ties += t * t * t - t
        i = j + 1
    return ranks, ties


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> RankTestResult:
    """Two-sided Mann-Whitney U test, normal approximation with tie and continuity corrections.

    sigma^2 = n_a n_b / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))). Sound from about 8 per sample; the
    canary asks for 30. An empty sample, or all values equal, gives z = 0 and p = 1.
    """
    n_a, n_b = len(a), len(b)
    if not n_a or not n_b:
        return RankTestResult(0.0, 0.0, 1.0, 0.5, n_a, n_b)
    ranks, ties = _ranks([*a, *b])
    n = n_a + n_b
    u_b = sum(ranks[n_a:]) - n_b * (n_b + 1) / 2.0
    mean = n_a * n_b / 2.0
    variance = n_a * n_b / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    z = 0.0
    if variance > 0.0:
        delta = u_b - mean
        delta = math.copysign(max(0.0, abs(delta) - 0.5), delta)
        z = delta / math.sqrt(variance)
    p_value = min(1.0, 2.0 * (1.0 - _NORMAL.cdf(abs(z))))
    return RankTestResult(u_b, z, p_value, u_b / (n_a * n_b), n_a, n_b)


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    name: str
    verdict: Verdict
    test: Literal["mann_whitney", "two_proportion"]
    better: Better
    n_baseline: int
    n_candidate: int
    baseline: float | None
    """Median (continuous) or rate (proportion) of the baseline; None without samples."""
    candidate: float | None
    p_value: float | None
    low: float | None = None
    """Proportions: the 98% interval of candidate - baseline."""
    high: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "test": self.test,
            "better": self.better,
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "p_value": self.p_value,
            "difference_low": self.low,
            "difference_high": self.high,
            "reason": self.reason,
        }


def compare_samples(
    name: str,
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    better: Better,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    confidence: float = CANARY_CONFIDENCE,
) -> MetricVerdict:
    """Rank-test verdict of a continuous metric (see the module docstring)."""
    n_a, n_b = len(baseline), len(candidate)
    med_a = median(baseline) if baseline else None
    med_b = median(candidate) if candidate else None
    if n_a < min_samples or n_b < min_samples:
        reason = f"fewer than {min_samples} samples"
        return MetricVerdict(
            name, "inconclusive", "mann_whitney", better, n_a, n_b, med_a, med_b, None, None, None, reason
        )
    result = mann_whitney_u(baseline, candidate)
    worse = result.z < 0 if better == "higher" else result.z > 0
    significant = result.p_value < 1.0 - confidence
    verdict: Verdict = "fail" if significant and worse else "pass"
    reason = "candidate significantly worse" if verdict == "fail" else "no significant degradation"
    return MetricVerdict(
        name, verdict, "mann_whitney", better, n_a, n_b, med_a, med_b, result.p_value, reason=reason
    )


def compare_proportions(
    name: str,
    baseline: tuple[int, int],
    candidate: tuple[int, int],
    *,
    better: Better,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    confidence: float = CANARY_CONFIDENCE,
) -> MetricVerdict:
    """Verdict of a rate from (events, n) per version: fails when the whole interval of candidate - baseline
    lies on the bad side of 0."""
    (x_a, n_a), (x_b, n_b) = baseline, candidate
    rate_a = x_a / n_a if n_a else None
    rate_b = x_b / n_b if n_b else None
    if n_a < min_samples or n_b < min_samples:
        reason = f"fewer than {min_samples} samples"
        return MetricVerdict(
            name, "inconclusive", "two_proportion", better, n_a, n_b, rate_a, rate_b, None, reason=reason
        )
    result = two_proportion_test(x_a, n_a, x_b, n_b, confidence=confidence)
    worse = result.high < 0.0 if better == "higher" else result.low > 0.0
    verdict: Verdict = "fail" if worse else "pass"
    reason = "candidate significantly worse" if worse else "no significant degradation"
    return MetricVerdict(
        name,
        verdict,
        "two_proportion",
        better,
        n_a,
        n_b,
        rate_a,
        rate_b,
        result.p_value,
        result.low,
        result.high,
        reason,
    )


def overall_verdict(verdicts: Sequence[MetricVerdict]) -> tuple[Overall, float | None]:
    """(verdict, score): score = 100 * passing / conclusive; inconclusive below half conclusive."""
    conclusive = [v for v in verdicts if v.verdict != "inconclusive"]
    if not conclusive or 2 * len(conclusive) < len(verdicts):
        return "inconclusive", None
    score = 100.0 * sum(v.verdict == "pass" for v in conclusive) / len(conclusive)
    if score >= 95.0:
        return "pass", score
    if score >= 75.0:
        return "marginal", score
    return "fail", score


@dataclass(frozen=True, slots=True)
class CanaryReport:
    group: str
    baseline: str
    candidate: str
    verdict: Overall
    score: float | None
    metrics: tuple[MetricVerdict, ...]
    confidence: float = CANARY_CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.group,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "verdict": self.verdict,
            "score": self.score,
            "confidence": self.confidence,
            "metrics": [m.to_dict() for m in self.metrics],
        }


class _Reservoir:
    """Algorithm R: a uniform sample of at most `size` of all values offered."""

    __slots__ = ("rng", "seen", "size", "values")

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.rng = rng
        self.seen = 0
        self.values: list[float] = []

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = int(self.rng.random() * self.seen)  # randrange's uniformity at a tenth of its cost
        if slot < self.size:
            self.values[slot] = value

    def add_many(self, values: list[float]) -> None:
        """`add` each, in order (the same sample from the same random stream), in one loop."""
        kept, size, random = self.values, self.size, self.rng.random
        seen = self.seen
        for value in values:
            seen += 1
            if len(kept) < size:
                kept.append(value)
                continue
            slot = int(random() * seen)
            if slot < size:
                kept[slot] = value
        self.seen = seen


@dataclass(slots=True)
class _Samples:
    latency: _Reservoir
    calls: int = 0
    errors: int = 0
    scores: dict[str, _Reservoir] = field(default_factory=dict)
    labels: dict[str, list[int]] = field(default_factory=dict)
    """evaluation -> [failed, labelled]"""


class CanaryCollector:
    """Per (group, version) samples fed from records; `compare` judges two versions of a group."""

    def __init__(
        self,
        *,
        dimension: Dimension = "prompt_version",
        reservoir_size: int = 2000,
        max_keys: int = 1000,
        max_evaluations: int = 16,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        confidence: float = CANARY_CONFIDENCE,
        seed: int = 0,
    ) -> None:
        if dimension not in ("prompt_version", "model", "service_version"):
            raise ValueError(
                f"dimension: expected prompt_version, model or service_version, got {dimension!r}"
            )
        self.dimension = dimension
        self.reservoir_size = reservoir_size
        self.max_keys = max_keys
        self.max_evaluations = max_evaluations
        self.min_samples = min_samples
        self.confidence = confidence
        self._rng = random.Random(seed)
        self._samples: dict[tuple[str, str], _Samples] = {}
        self.dropped = 0

    def _key(self, series: SeriesKey, service_version: str) -> tuple[str, str]:
        if self.dimension == "service_version":
            return series.service, service_version
        return (
            series.prompt_name,
            series.prompt_version if self.dimension == "prompt_version" else series.model,
        )

    def _slot(self, key: tuple[str, str]) -> _Samples | None:
        found = self._samples.get(key)
        if found is None:
            if not key[0] or not key[1] or len(self._samples) >= self.max_keys:
                self.dropped += 1
                return None
            found = self._samples[key] = _Samples(_Reservoir(self.reservoir_size, self._rng))
        return found

    def observe_call(self, call: CallRecord) -> None:
        slot = self._slot(self._key(call.series, call.service_version))
        if slot is None:
            return
        slot.calls += 1
        if call.ok:
            slot.latency.add(call.duration_s)
        else:
            slot.errors += 1
        for evaluation in call.evaluations:
            self._evaluation(slot, evaluation)

    def observe_calls(self, calls: Iterable[CallRecord]) -> None:
        """`observe_call` for each, with the slot looked up once per (series, service version)."""
        slots: dict[tuple[SeriesKey, str], _Samples | None] = {}
        last: dict[SeriesKey, tuple[str, _Samples | None]] = {}  # most calls: no tuple, one lookup
        latencies: dict[int, tuple[_Reservoir, list[float]]] = {}
        for call in calls:
            series, version = call.series, call.service_version
            known = last.get(series)
            if known is not None and known[0] == version:
                slot = known[1]
                if slot is None:
                    self.dropped += 1
            else:
                marker = (series, version)
                if marker not in slots:
                    slot = slots[marker] = self._slot(self._key(*marker))  # counts its own drop
                else:
                    slot = slots[marker]
                    if slot is None:
                        self.dropped += 1
                last[series] = (version, slot)
            if slot is None:
                continue
            slot.calls += 1
            if call.error_type:
                slot.errors += 1
            else:
                reservoir = slot.latency
                pending = latencies.get(id(reservoir))
                if pending is None:
                    latencies[id(reservoir)] = (reservoir, [call.duration_s])
                else:
                    pending[1].append(call.duration_s)
            for evaluation in call.evaluations:
                self._evaluation(slot, evaluation)
        for reservoir, values in latencies.values():
            reservoir.add_many(values)

    def observe_evaluation(
        self, evaluation: EvaluationRecord, *, series: SeriesKey | None = None, service_version: str = ""
    ) -> None:
        """An evaluation on its own; skipped without a series (its own or `series`)."""
        key = series or evaluation.series
        if key is None:
            return
        slot = self._slot(self._key(key, service_version))
        if slot is not None:
            self._evaluation(slot, evaluation)

    def _evaluation(self, slot: _Samples, evaluation: EvaluationRecord) -> None:
        name = evaluation.name
        if (
            name not in slot.scores
            and name not in slot.labels
            and len(slot.scores) + len(slot.labels) >= (self.max_evaluations)
        ):
            self.dropped += 1
            return
        if evaluation.score is not None and math.isfinite(evaluation.score):
            slot.scores.setdefault(name, _Reservoir(self.reservoir_size, self._rng)).add(evaluation.score)
        if evaluation.label:
            counts = slot.labels.setdefault(name, [0, 0])
            counts[0] += int(evaluation.failed)
            counts[1] += 1

    def versions(self, group: str) -> list[str]:
        return sorted(v for g, v in self._samples if g == group)

    def groups(self) -> list[str]:
        return sorted({g for g, _ in self._samples})

    def forget(self, group: str) -> None:
        for key in [k for k in self._samples if k[0] == group]:
            del self._samples[key]

    def compare(self, group: str, *, baseline: str, candidate: str) -> CanaryReport | None:
        """Judge `candidate` against `baseline` in `group`; None when either version is unknown."""
        a = self._samples.get((group, baseline))
        b = self._samples.get((group, candidate))
        if a is None or b is None:
            return None
        options: dict[str, Any] = {"min_samples": self.min_samples, "confidence": self.confidence}
        metrics = [
            compare_samples("latency_seconds", a.latency.values, b.latency.values, better="lower", **options),
            compare_proportions(
                "error_rate", (a.errors, a.calls), (b.errors, b.calls), better="lower", **options
            ),
        ]
        for name in sorted(set(a.scores) | set(b.scores)):
            values_a = a.scores[name].values if name in a.scores else []
            values_b = b.scores[name].values if name in b.scores else []
            metrics.append(compare_samples(f"score:{name}", values_a, values_b, better="higher", **options))
        for name in sorted(set(a.labels) | set(b.labels)):
            counts_a = _pair(a.labels.get(name))
            counts_b = _pair(b.labels.get(name))
            metrics.append(
                compare_proportions(f"fail_rate:{name}", counts_a, counts_b, better="lower", **options)
            )
        verdict, score = overall_verdict(metrics)
        return CanaryReport(group, baseline, candidate, verdict, score, tuple(metrics), self.confidence)


def _pair(counts: list[int] | None) -> tuple[int, int]:
    if not counts:
        return 0, 0
    return counts[0], counts[1]
