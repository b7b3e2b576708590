"""Distribution drift against a reference window: PSI, Kolmogorov-Smirnov and chi-square, bounded samples.

Quality can fall because the traffic changed, not the code: longer contexts, a new tool mix, a different
model serving a share of calls. These functions compare the current window's values (context size, token
counts) or mixes (model, tool calls, finish reasons) with a reference window.

Effect size: PSI. The population stability index over bins,

    PSI = sum_i (c_i - r_i) * ln(c_i / r_i)     r_i, c_i: reference and current share of bin i

with the usual reading: below 0.1 no drift, 0.1 to 0.25 moderate, above 0.25 significant
(`DriftLevel`). Numeric values are binned by the reference's deciles (`bins=10`), so each bin holds about a
tenth of the reference; categories are their own bins. Empty bins would make `ln` infinite, so every bin
gets `smoothing` = 0.5 pseudo-counts (Jeffreys) on both sides: negligible for hundreds of samples, a damper
on the noise of small ones.

Significance: a two-sample test. PSI from finite samples is biased upward by about
`(bins - 1) * (1/n_ref + 1/n_cur)`: 0.18 for two samples of 100 in 10 bins, "moderate" drift where there
is none. `numeric_drift` and `categorical_drift` therefore report the PSI level only when a test says the
samples differ (p < `alpha`, 0.01 by default), and `INSUFFICIENT_DATA` below `min_samples` (30) on
either side. The test is chosen by the data:

- continuous values: two-sample Kolmogorov-Smirnov, asymptotic p-value with Stephens' small-sample
  correction (used from `min_samples` values a side, where it is close to the exact test; ties make it
  conservative);
- categories, and numeric values with at most `max_discrete_values` (10) distinct reference values:
  chi-square on the 2 x K table. Categories expected fewer than 5 times on a side are pooled first, the
  usual validity condition of the chi-square approximation.

For very large samples every difference is "significant"; the PSI level is what keeps a negligible shift
at NONE. `DriftResult.method` says which test decided.

`Reservoir` keeps a uniform, bounded, seeded sample of an unbounded stream (Vitter's algorithm R) for the
reference and current windows.
"""

from __future__ import annotations

import bisect
import enum
import math
import random
import statistics
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

__all__ = [
    "DriftLevel",
    "DriftMethod",
    "DriftResult",
    "Reservoir",
    "categorical_drift",
    "categorical_psi",
    "chi_square_sf",
    "chi_square_test",
    "kolmogorov_sf",
    "ks_test",
    "numeric_drift",
    "psi",
    "psi_level",
    "quantile_edges",
]

_T = TypeVar("_T")
_K = TypeVar("_K", bound=Hashable)

MODERATE_PSI: Final = 0.1
SIGNIFICANT_PSI: Final = 0.25
DEFAULT_BINS: Final = 10
DEFAULT_SMOOTHING: Final = 0.5
DEFAULT_ALPHA: Final = 0.01
DEFAULT_MIN_SAMPLES: Final = 30
MAX_DISCRETE_VALUES: Final = 10
MIN_EXPECTED: Final = 5.0
OTHER: Final = "__other__"


class DriftLevel(enum.StrEnum):
    NONE = "none"
    MODERATE = "moderate"
    SIGNIFICANT = "significant"
    INSUFFICIENT_DATA = "insufficient_data"


class DriftMethod(enum.StrEnum):
    PSI = "psi"
    CATEGORICAL_PSI = "categorical_psi"
    KS = "ks"
    CHI_SQUARE = "chi_square"


@dataclass(frozen=True, slots=True)
class DriftResult:
    """One comparison of a current sample with its reference."""

    method: DriftMethod
    statistic: float | None
    """PSI, the KS distance D, or the chi-square statistic, by `method`; None without enough data."""
    p_value: float | None
    """The test's p-value; None for PSI alone."""
    level: DriftLevel
    reference_size: float
    current_size: float
    psi: float | None = None
    """The effect size behind `level`, also when a test made the decision."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.value,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "level": self.level.value,
            "reference_size": self.reference_size,
            "current_size": self.current_size,
            "psi": self.psi,
        }


def psi_level(value: float) -> DriftLevel:
    """The conventional reading of a PSI: < 0.1 none, 0.1 to 0.25 moderate, > 0.25 significant."""
    if value > SIGNIFICANT_PSI:
        return DriftLevel.SIGNIFICANT
    if value >= MODERATE_PSI:
        return DriftLevel.MODERATE
    return DriftLevel.NONE


def _psi_from_counts(reference: Sequence[float], current: Sequence[float], smoothing: float) -> float:
    if smoothing < 0:
        raise ValueError(f"smoothing: must be non-negative, got {smoothing}")
    k = len(reference)
    ref_total = sum(reference) + smoothing * k
    cur_total = sum(current) + smoothing * k
    total = 0.0
    for r_count, c_count in zip(reference, current, strict=True):
        r = (r_count + smoothing) / ref_total
        c = (c_count + smoothing) / cur_total
        if r > 0.0 and c > 0.0:
            total += (c - r) * math.log(c / r)
        elif r != c:
            return math.inf
    return total


def quantile_edges(reference: Sequence[float], bins: int = DEFAULT_BINS) -> list[float]:
    """Interior bin edges at the reference's quantiles, duplicates (from ties) removed.

    A value equal to an edge belongs to the bin above it.
    """
    if bins < 2:
        raise ValueError(f"bins: need at least 2, got {bins}")
    if len(reference) < 2:
        return []
    cuts = statistics.quantiles(reference, n=bins, method="inclusive")
    return sorted(set(cuts))


def _histogram(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bisect.bisect_right(edges, value)] += 1
    return counts


def psi(
    reference: Sequence[float],
    current: Sequence[float],
    *,
    bins: int = DEFAULT_BINS,
    smoothing: float = DEFAULT_SMOOTHING,
) -> DriftResult:
    """PSI of numeric values over the reference's quantile bins. Empty samples give PSI 0 and level NONE
    only if both are empty; one empty side is INSUFFICIENT_DATA."""
    edges = quantile_edges(reference, bins)
    value = _psi_from_counts(_histogram(reference, edges), _histogram(current, edges), smoothing)
    level = psi_level(value) if reference and current else DriftLevel.INSUFFICIENT_DATA
    return DriftResult(DriftMethod.PSI, value, None, level, len(reference), len(current), value)


def _aligned(reference: Mapping[_K, float], current: Mapping[_K, float]) -> list[_K]:
    keys = [k for k in reference if reference[k] > 0 or current.get(k, 0) > 0]
    keys += [k for k in current if k not in reference and current[k] > 0]
    return keys


def categorical_psi(
    reference: Mapping[_K, float],
    current: Mapping[_K, float],
    *,
    smoothing: float = DEFAULT_SMOOTHING,
) -> DriftResult:
    """PSI of a mix (counts per category; weights allowed). A category absent on one side is smoothed, so a
    new model taking over shows as a large but finite PSI."""
    keys = _aligned(reference, current)
    ref_counts = [float(reference.get(k, 0.0)) for k in keys]
    cur_counts = [float(current.get(k, 0.0)) for k in keys]
    value = _psi_from_counts(ref_counts, cur_counts, smoothing)
    n_ref, n_cur = sum(ref_counts), sum(cur_counts)
    level = psi_level(value) if n_ref > 0 and n_cur > 0 else DriftLevel.INSUFFICIENT_DATA
    return DriftResult(DriftMethod.CATEGORICAL_PSI, value, None, level, n_ref, n_cur, value)


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution: Q(x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)."""
    if x <= 0.0:
        return 1.0
    if x < 0.2:
        # The alternating series converges slowly here and the answer is 1 to 15 digits.
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < 1e-16:
            break
    return min(1.0, max(0.0, 2.0 * total))


def ks_test(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (D, asymptotic p-value).

    D is the largest gap between the two empirical CDFs. p = Q((sqrt(n_e) + 0.12 + 0.11 / sqrt(n_e)) * D)
    with n_e = n m / (n + m) (Stephens 1970, as in Numerical Recipes). Empty input: (0, 1).
    """
    n, m = len(reference), len(current)
    if n == 0 or m == 0:
        return 0.0, 1.0
    a, b = sorted(reference), sorted(current)
    i = j = 0
    d = 0.0
    while i < n and j < m:
        x = a[i] if a[i] <= b[j] else b[j]
        while i < n and a[i] <= x:
            i += 1
        while j < m and b[j] <= x:
            j += 1
        gap = abs(i / n - j / m)
        if gap > d:
            d = gap
    root = math.sqrt(n * m / (n + m))
    return d, kolmogorov_sf((root + 0.12 + 0.11 / root) * d)


def chi_square_sf(statistic: float, df: int) -> float:
    """P(X > statistic) for a chi-square distribution with `df` degrees of freedom (regularised upper
    incomplete gamma function Q(df/2, statistic/2), series or continued fraction as in Numerical Recipes)."""
    if df < 1:
        raise ValueError(f"df: must be at least 1, got {df}")
    if statistic <= 0.0:
        return 1.0
    a, x = df / 2.0, statistic / 2.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return min(1.0, max(0.0, 1.0 - total * math.exp(log_prefix)))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, max(0.0, math.exp(log_prefix) * h))


def chi_square_test(reference: Mapping[_K, float], current: Mapping[_K, float]) -> tuple[float, int, float]:
    """Chi-square test of homogeneity on the 2 x K table of counts: (statistic, df, p-value).

    Categories expected fewer than 5 times in either row are pooled into one; if fewer than two
    categories remain there is nothing to test: (0, 0, 1).
    """
    keys = _aligned(reference, current)
    n_ref = sum(float(reference.get(k, 0.0)) for k in keys)
    n_cur = sum(float(current.get(k, 0.0)) for k in keys)
    total = n_ref + n_cur
    if n_ref <= 0 or n_cur <= 0:
        return 0.0, 0, 1.0
    cells: list[tuple[float, float]] = []
    pooled_ref = pooled_cur = 0.0
    for k in keys:
        r, c = float(reference.get(k, 0.0)), float(current.get(k, 0.0))
        column = r + c
        if min(n_ref, n_cur) * column / total < MIN_EXPECTED:
            pooled_ref += r
            pooled_cur += c
        else:
            cells.append((r, c))
    if pooled_ref + pooled_cur > 0:
        cells.append((pooled_ref, pooled_cur))
    if len(cells) < 2:
        return 0.0, 0, 1.0
    statistic = 0.0
    for r, c in cells:
        column = r + c
        expected_r, expected_c = n_ref * column / total, n_cur * column / total
        statistic += (r - expected_r) ** 2 / expected_r + (c - expected_c) ** 2 / expected_c
    df = len(cells) - 1
    return statistic, df, chi_square_sf(statistic, df)


def _gated(level: DriftLevel, p_value: float, alpha: float) -> DriftLevel:
    return level if p_value < alpha else DriftLevel.NONE


def categorical_drift(
    reference: Mapping[_K, float],
    current: Mapping[_K, float],
    *,
    alpha: float = DEFAULT_ALPHA,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    smoothing: float = DEFAULT_SMOOTHING,
) -> DriftResult:
    """Has a mix (counts per category) drifted? Chi-square decides whether, categorical PSI how much."""
    effect = categorical_psi(reference, current, smoothing=smoothing)
    n_ref, n_cur = effect.reference_size, effect.current_size
    if n_ref < min_samples or n_cur < min_samples:
        return DriftResult(
            DriftMethod.CHI_SQUARE, None, None, DriftLevel.INSUFFICIENT_DATA, n_ref, n_cur, effect.psi
        )
    statistic, _, p_value = chi_square_test(reference, current)
    level = _gated(effect.level, p_value, alpha)
    return DriftResult(DriftMethod.CHI_SQUARE, statistic, p_value, level, n_ref, n_cur, effect.psi)


def _counts(values: Iterable[float]) -> dict[Hashable, float]:
    counts: dict[Hashable, float] = {}
    for value in values:
        counts[value] = counts.get(value, 0.0) + 1.0
    return counts


def numeric_drift(
    reference: Sequence[float],
    current: Sequence[float],
    *,
    bins: int = DEFAULT_BINS,
    alpha: float = DEFAULT_ALPHA,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    smoothing: float = DEFAULT_SMOOTHING,
    max_discrete_values: int = MAX_DISCRETE_VALUES,
) -> DriftResult:
    """Has a numeric distribution drifted? KS (or chi-square for few distinct values) decides whether,
    PSI over the reference's quantile bins how much."""
    n_ref, n_cur = len(reference), len(current)
    if n_ref < min_samples or n_cur < min_samples:
        return DriftResult(DriftMethod.KS, None, None, DriftLevel.INSUFFICIENT_DATA, n_ref, n_cur)
    if len(set(reference)) <= max_discrete_values:
        return categorical_drift(
            _counts(reference), _counts(current), alpha=alpha, min_samples=min_samples, smoothing=smoothing
        )
    effect = psi(reference, current, bins=bins, smoothing=smoothing)
    d, p_value = ks_test(reference, current)
    level = _gated(effect.level, p_value, alpha)
    return DriftResult(DriftMethod.KS, d, p_value, level, n_ref, n_cur, effect.psi)


class Reservoir(Generic[_T]):
    """A uniform random sample of at most `capacity` items from a stream of any length (algorithm R).

    Every item seen so far is in the sample with probability capacity / seen. Seeded, so a replay keeps
    the same sample. `to_dict` keeps the items and the generator's state; items must be JSON-compatible
    (numbers, strings) for the result to be.
    """

    def __init__(self, capacity: int, *, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be at least 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self._items: list[_T] = []
        self._rng = random.Random(seed)

    def add(self, item: _T) -> None:
        self.seen += 1
        if len(self._items) < self.capacity:
            self._items.append(item)
            return
        slot = int(self._rng.random() * self.seen)  # randrange's uniformity at a tenth of its cost
        if slot < self.capacity:
            self._items[slot] = item

    def extend(self, items: Iterable[_T]) -> None:
        for item in items:
            self.add(item)

    def values(self) -> list[_T]:
        """A copy of the sample, in no meaningful order."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Empty the sample (e.g. when the current window becomes the reference); the generator runs on."""
        self.seen = 0
        self._items = []

    def to_dict(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {
            "capacity": self.capacity,
            "seen": self.seen,
            "items": list(self._items),
            "rng": [version, list(internal), gauss],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservoir[Any]:
        reservoir: Reservoir[Any] = cls(int(data["capacity"]))
        reservoir.seen = int(data["seen"])
        reservoir._items = list(data["items"])
        version, internal, gauss = data["rng"]
        reservoir._rng.setstate((version, tuple(internal), gauss))
        return reservoir
