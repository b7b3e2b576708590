"""Binomial confidence bounds for pass/fail signals at low volume (toxicity, hallucination, thumbs).

A raw ratio over a handful of evaluations is mostly noise: 3 failures in 5 samples is a 60% fail rate,
and yet a true rate of 25% produces 3 or more failures in 5 about 10% of the time. Rules on these signals
therefore compare a confidence bound with the threshold: `exceeds` pages only when even the LOWER bound of
the fail rate is above it, `below` only when even the UPPER bound of a success rate is under it.

Bounds are Wilson score bounds (Wilson 1927): close to nominal coverage down to a few samples and never
outside [0, 1], unlike the textbook `p +- z * sqrt(p (1 - p) / n)`. Agresti-Coull is offered for
comparison; it is slightly wider at small n.

`confidence` is the level of the TWO-SIDED interval whose end is used (0.95: z = 1.96), the convention of
"the 95% Wilson interval". The bound alone is then a one-sided 97.5% bound. Worked numbers at 0.95 against
a 25% threshold:

=========  ===========  ============  ==========================================
failures   raw rate     lower bound   exceeds(fails, n, 0.25)
=========  ===========  ============  ==========================================
3 / 5      0.60         0.231         False: could well be 25% with bad luck
5 / 5      1.00         0.566         True
30 / 100   0.30         0.219         False: 1.2 standard errors above is no proof
40 / 100   0.40         0.309         True
300 / 1000 0.30         0.272         True
=========  ===========  ============  ==========================================

With a one-sided 95% bound (z = 1.645, `confidence=0.90` here) 3 / 5 would page at 25% (lower bound
0.273); that is why the two-sided convention is the default. `min_failures_to_exceed` gives the smallest
failure count that pages for a sample size, for documentation and rule reviews.

`two_proportion_test` compares two groups (before/after, canary/baseline): a pooled z test for the p-value
and Newcombe's hybrid score interval (method 10, built from the two Wilson intervals) for the difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Final, Literal, NamedTuple

__all__ = [
    "DEFAULT_CONFIDENCE",
    "Interval",
    "TwoProportionResult",
    "agresti_coull_interval",
    "below",
    "exceeds",
    "min_failures_to_exceed",
    "two_proportion_test",
    "wilson_interval",
    "z_for",
]

DEFAULT_CONFIDENCE: Final = 0.95
_NORMAL: Final = NormalDist()


class Interval(NamedTuple):
    """A confidence interval of a proportion, clipped to [0, 1]."""

    low: float
    high: float


def z_for(confidence: float) -> float:
    """The standard normal quantile of a two-sided interval at `confidence` (0.95 -> 1.96)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    return _NORMAL.inv_cdf(0.5 + confidence / 2.0)


def _check(successes: float, n: int) -> None:
    if n < 0:
        raise ValueError(f"n: must be non-negative, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"count: must be between 0 and n={n}, got {successes}")


def wilson_interval(successes: float, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Wilson score interval of `successes` out of `n` (counts may be fractional weights).

    No samples is no information: (0, 1).
    """
    _check(successes, n)
    z = z_for(confidence)
    if n == 0:
        return Interval(0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    # At p = 0 or 1 the bound is exactly 0 or 1; rounding must not move it inside.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


def agresti_coull_interval(successes: float, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Agresti-Coull ("add z^2/2 successes and failures") interval; a little wider than Wilson's."""
    _check(successes, n)
    z = z_for(confidence)
    if n == 0:
        return Interval(0.0, 1.0)
    n_tilde = n + z * z
    p_tilde = (successes + z * z / 2.0) / n_tilde
    half = z * math.sqrt(p_tilde * (1.0 - p_tilde) / n_tilde)
    return Interval(max(0.0, p_tilde - half), min(1.0, p_tilde + half))


def exceeds(fails: float, n: int, threshold: float, confidence: float = DEFAULT_CONFIDENCE) -> bool:
    """True when the fail rate is above `threshold` with confidence: the Wilson LOWER bound exceeds it.

    3 / 5 against 0.25 is False (lower bound 0.231); 40 / 100 is True (0.309). No samples: False.
    """
    return wilson_interval(fails, n, confidence).low > threshold


def below(successes: float, n: int, threshold: float, confidence: float = DEFAULT_CONFIDENCE) -> bool:
    """True when the success rate is under `threshold` with confidence: the Wilson UPPER bound is below it.

    For a thumbs-up rate rule (< 50%): 2 / 6 is False (upper bound 0.700); 30 / 100 is True (0.398).
    """
    return wilson_interval(successes, n, confidence).high < threshold


def min_failures_to_exceed(n: int, threshold: float, confidence: float = DEFAULT_CONFIDENCE) -> int | None:
    """The fewest failures out of `n` for which `exceeds` is True; None when even n / n is not enough."""
    for fails in range(n + 1):
        if exceeds(fails, n, threshold, confidence):
            return fails
    return None


@dataclass(frozen=True, slots=True)
class TwoProportionResult:
    """Group B against group A: difference `p_b - p_a`, its interval and the test's p-value."""

    p_a: float
    p_b: float
    difference: float
    low: float
    """Lower end of the Newcombe interval of `difference`."""
    high: float
    z: float
    """Pooled two-proportion z statistic, positive when B is higher."""
    p_value: float
    alternative: str
    n_a: int
    n_b: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_a": self.p_a,
            "p_b": self.p_b,
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "z": self.z,
            "p_value": self.p_value,
            "alternative": self.alternative,
            "n_a": self.n_a,
            "n_b": self.n_b,
        }


def two_proportion_test(
    successes_a: float,
    n_a: int,
    successes_b: float,
    n_b: int,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
) -> TwoProportionResult:
    """Is B's proportion different from (greater: above, less: below) A's?

    The z test pools both groups under "no difference"; its normal approximation wants about 5 successes
    and 5 failures per group, below which the p-value is rough (the interval is still sound). With an
    empty group, or when both groups are all-success or all-failure, nothing is learned: z = 0, p = 1.
    """
    _check(successes_a, n_a)
    _check(successes_b, n_b)
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative: expected two-sided, greater or less, got {alternative!r}")
    p_a = successes_a / n_a if n_a else 0.0
    p_b = successes_b / n_b if n_b else 0.0
    difference = p_b - p_a
    a = wilson_interval(successes_a, n_a, confidence)
    b = wilson_interval(successes_b, n_b, confidence)
    low = difference - math.sqrt((p_b - b.low) ** 2 + (a.high - p_a) ** 2)
    high = difference + math.sqrt((b.high - p_b) ** 2 + (p_a - a.low) ** 2)
    z = 0.0
    if n_a and n_b:
        pooled = (successes_a + successes_b) / (n_a + n_b)
        se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
        if se > 0.0:
            z = difference / se
    if alternative == "greater":
        p_value = 1.0 - _NORMAL.cdf(z)
    elif alternative == "less":
        p_value = _NORMAL.cdf(z)
    else:
        p_value = 2.0 * (1.0 - _NORMAL.cdf(abs(z)))
    return TwoProportionResult(
        p_a=p_a,
        p_b=p_b,
        difference=difference,
        low=max(-1.0, low),
        high=min(1.0, high),
        z=z,
        p_value=min(1.0, p_value),
        alternative=alternative,
        n_a=n_a,
        n_b=n_b,
    )
