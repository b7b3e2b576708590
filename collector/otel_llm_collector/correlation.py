"""Deployment correlation: which recent change most plausibly caused a metric's regression.

When an alert fires, `correlate` looks at every deployment in the preceding hours and compares the metric's
per-minute history just before it with just after it:

- before: up to `window_seconds` (60 min) ending at the deployment, cut at the previous deployment;
- after: up to `window_seconds` starting at the deployment, cut at the next deployment and at the alert.

Cutting at neighbours is what tells two deployments 20 minutes apart from each other: the step of the
second does not leak into the first one's "after". A point belongs to the side its timestamp falls on.

Each side's mean is weighted by the points' weights (sample counts, so a busy minute counts more); its
noise is the weighted standard deviation of the per-minute values, with the effective number of points
n_eff = (sum w)^2 / sum w^2. Two numbers judge a step, both signed so that positive is adverse (down for
quality, up for latency and cost):

- score d = adverse step / pooled standard deviation of per-minute values: how big the step is against
  the series' own minute-to-minute noise (an effect size, independent of how long the windows are);
- Welch t = adverse step / sqrt(s_before^2 / n_before + s_after^2 / n_after): how sure the data are,
  which needs points on both sides (at least `min_points`, 3 minutes, else no verdict).

=========  =============  ==============  =======================================================
           score d        Welch t         reading
=========  =============  ==============  =======================================================
strong     >= 3.0         >= 6.0          the step dwarfs the noise and is beyond doubt
moderate   >= 1.5         >= 4.0          clear step, or a clear one on few points
weak       >= 0.75        >= 2.5          a step worth a look (p ~ 0.01 for one candidate)
none       below          below           no evidence, or the move was not adverse
=========  =============  ==============  =======================================================

Both must hold: t alone calls a negligible step "certain" on long windows, d alone trusts two points. Pure
noise with six candidate deployments stays at "none" in more than 99% of cases (see the tests). The best
candidate is the one with the highest confidence, then the highest score.

Per-minute history of one series only changes with the series. A new prompt version or model starts a new
series (both are in the series key), so for those changes pass the history merged over prompt version and
model; for the new series alone there is no "before".

`DeploymentTracker` records deployments automatically when a service first shows a new `service.version`,
a prompt a new version or a feature a new model, and holds explicitly posted ones beside them.
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from otel_llm_collector.records import SeriesKey
from otel_llm_collector.spc import Direction

__all__ = [
    "Confidence",
    "Correlation",
    "Deployment",
    "DeploymentTracker",
    "MinutePoint",
    "candidates",
    "correlate",
]

NS_PER_SECOND: Final = 1_000_000_000
DEFAULT_WINDOW_SECONDS: Final = 3600
DEFAULT_LOOKBACK_SECONDS: Final = 6 * 3600
DEFAULT_MIN_POINTS: Final = 3
NOISE_FLOOR: Final = 1e-9
THRESHOLDS: Final = ((3.0, 6.0), (1.5, 4.0), (0.75, 2.5))
"""(score d, Welch t) minimums for strong, moderate and weak."""


class Confidence(enum.StrEnum):
    STRONG = "strong"
    MODERATE = "moderate"
    WEAK = "weak"
    NONE = "none"


_RANK: Final = {Confidence.STRONG: 3, Confidence.MODERATE: 2, Confidence.WEAK: 1, Confidence.NONE: 0}
_SCOPE_FIELDS: Final = ("service", "feature", "prompt_name")


@dataclass(frozen=True, slots=True)
class Deployment:
    """A change to what serves a series. `components` say what changed, e.g. `service_version`,
    `prompt_version`, `model`; `service`, `feature` and `prompt_name` in it limit which series it
    concerns (absent: all)."""

    id: str
    time_ns: int
    components: Mapping[str, str] = field(default_factory=dict)
    commit: str = ""
    author: str = ""
    automatic: bool = False
    """Recorded by `DeploymentTracker` from telemetry rather than posted."""

    def concerns(self, series: SeriesKey) -> bool:
        """Whether this deployment can have changed `series`."""
        for name in _SCOPE_FIELDS:
            value = self.components.get(name, "")
            if value and value != getattr(series, name):
                return False
        return True

    def describe(self) -> str:
        changed = ", ".join(f"{k}={v}" for k, v in self.components.items() if k not in _SCOPE_FIELDS)
        parts = [changed] if changed else []
        if self.commit:
            parts.append(f"commit {self.commit}")
        if self.author:
            parts.append(f"by {self.author}")
        return f"deployment {self.id!r} at {_format_time(self.time_ns)}" + (
            f" ({'; '.join(parts)})" if parts else ""
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time_ns": self.time_ns,
            "components": dict(self.components),
            "commit": self.commit,
            "author": self.author,
            "automatic": self.automatic,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        return cls(
            id=str(data["id"]),
            time_ns=int(data["time_ns"]),
            components={str(k): str(v) for k, v in dict(data.get("components") or {}).items()},
            commit=str(data.get("commit", "")),
            author=str(data.get("author", "")),
            automatic=bool(data.get("automatic", False)),
        )


class MinutePoint(NamedTuple):
    """One per-minute value of a metric: the minute's mean and how many samples it rests on."""

    time_ns: int
    value: float
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Correlation:
    """How a deployment lines up with a metric's step."""

    deployment_id: str
    time_ns: int
    before_mean: float | None
    after_mean: float | None
    step: float | None
    """after_mean - before_mean."""
    score: float
    """Adverse step over the pooled per-minute noise (positive: adverse); 0 without enough data."""
    t_statistic: float
    before_points: int
    after_points: int
    confidence: Confidence
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "time_ns": self.time_ns,
            "before_mean": self.before_mean,
            "after_mean": self.after_mean,
            "step": self.step,
            "score": self.score,
            "t_statistic": self.t_statistic,
            "before_points": self.before_points,
            "after_points": self.after_points,
            "confidence": self.confidence.value,
            "explanation": self.explanation,
        }


def _format_time(time_ns: int) -> str:
    moment = datetime.fromtimestamp(time_ns / NS_PER_SECOND, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Side(NamedTuple):
    mean: float
    variance: float
    n_eff: float
    points: int


def _side(points: Sequence[MinutePoint]) -> _Side | None:
    usable = [p for p in points if p.weight > 0 and math.isfinite(p.value)]
    if not usable:
        return None
    total = sum(p.weight for p in usable)
    squares = sum(p.weight * p.weight for p in usable)
    mean = sum(p.weight * p.value for p in usable) / total
    n_eff = total * total / squares
    spread = sum(p.weight * (p.value - mean) ** 2 for p in usable) / total
    variance = spread * n_eff / (n_eff - 1.0) if n_eff > 1.0 else 0.0
    return _Side(mean, variance, n_eff, len(usable))


def _confidence(score: float, t: float) -> Confidence:
    levels = (Confidence.STRONG, Confidence.MODERATE, Confidence.WEAK)
    for (min_score, min_t), level in zip(THRESHOLDS, levels):
        if score >= min_score and t >= min_t:
            return level
    return Confidence.NONE


def _judge(
    deployment: Deployment,
    before: Sequence[MinutePoint],
    after: Sequence[MinutePoint],
    *,
    adverse: Direction,
    metric: str,
    min_points: int,
) -> Correlation:
    b, a = _side(before), _side(after)
    if b is None or a is None or b.points < min_points or a.points < min_points:
        n_b, n_a = (b.points if b else 0), (a.points if a else 0)
        return Correlation(
            deployment.id,
            deployment.time_ns,
            b.mean if b else None,
            a.mean if a else None,
            (a.mean - b.mean) if a and b else None,
            0.0,
            0.0,
            n_b,
            n_a,
            Confidence.NONE,
            f"{metric}: too little data around {deployment.describe()}: {n_b} minute(s) before, "
            f"{n_a} after (need {min_points} each)",
        )
    step = a.mean - b.mean
    adverse_step = step if adverse is Direction.UP else -step
    dof = b.n_eff + a.n_eff - 2.0
    pooled_variance = ((b.n_eff - 1.0) * b.variance + (a.n_eff - 1.0) * a.variance) / dof if dof > 0 else 0.0
    pooled = math.sqrt(pooled_variance)
    score = adverse_step / max(pooled, NOISE_FLOOR)
    floor = NOISE_FLOOR * NOISE_FLOOR
    se = math.sqrt(max(b.variance, floor) / b.n_eff + max(a.variance, floor) / a.n_eff)
    t = adverse_step / se
    confidence = _confidence(score, t)
    verb = "rose" if step > 0 else "fell" if step < 0 else "stayed"
    explanation = (
        f"{metric} {verb} from {b.mean:.3g} to {a.mean:.3g} ({step:+.3g}; {abs(score):.3g}x the per-minute "
        f"noise, Welch t {abs(t):.3g}; {b.points} minutes before, {a.points} after) at "
        f"{deployment.describe()}: {confidence.value}"
    )
    if adverse_step <= 0 and step != 0:
        explanation += " (not the adverse direction)"
    return Correlation(
        deployment.id,
        deployment.time_ns,
        b.mean,
        a.mean,
        step,
        score,
        t,
        b.points,
        a.points,
        confidence,
        explanation,
    )


def candidates(
    deployments: Iterable[Deployment],
    history: Iterable[MinutePoint],
    *,
    adverse: Direction,
    at_ns: int,
    metric: str = "value",
    lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    min_points: int = DEFAULT_MIN_POINTS,
) -> list[Correlation]:
    """Every deployment in (`at_ns` - `lookback_seconds`, `at_ns`], judged, best first.

    `deployments` are those that concern the series (see `Deployment.concerns`), in any order; ones outside
    the lookback still cut their neighbours' windows. `history` is the series' per-minute points, any order,
    each stamped with its minute's start; points from `at_ns` on (an unfinished minute) are not used.
    """
    if min_points < 2:
        raise ValueError(f"min_points: need at least 2 per side to measure noise, got {min_points}")
    ordered = sorted(deployments, key=lambda d: d.time_ns)
    points = sorted((p for p in history if p.time_ns < at_ns), key=lambda p: p.time_ns)
    times = [p.time_ns for p in points]
    window_ns = int(window_seconds * NS_PER_SECOND)
    since_ns = at_ns - int(lookback_seconds * NS_PER_SECOND)
    results: list[Correlation] = []
    for deployment in ordered:
        t_ns = deployment.time_ns
        if not since_ns < t_ns <= at_ns:
            continue
        previous = max((d.time_ns for d in ordered if d.time_ns < t_ns), default=None)
        following = min((d.time_ns for d in ordered if d.time_ns > t_ns), default=None)
        start = t_ns - window_ns if previous is None else max(t_ns - window_ns, previous)
        end = t_ns + window_ns if following is None else min(t_ns + window_ns, following)
        before = points[bisect_left(times, start) : bisect_left(times, t_ns)]
        after = points[bisect_left(times, t_ns) : bisect_left(times, end)]
        results.append(
            _judge(deployment, before, after, adverse=adverse, metric=metric, min_points=min_points)
        )
    results.sort(key=lambda c: (-_RANK[c.confidence], -c.score, -c.time_ns))
    return results


def correlate(
    deployments: Iterable[Deployment],
    history: Iterable[MinutePoint],
    *,
    adverse: Direction,
    at_ns: int,
    metric: str = "value",
    lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    min_points: int = DEFAULT_MIN_POINTS,
) -> Correlation | None:
    """The deployment that best explains an adverse step at `at_ns`; None when no deployment lies in the
    lookback. A result may still carry `Confidence.NONE`: there were deployments, none explains it."""
    found = candidates(
        deployments,
        history,
        adverse=adverse,
        at_ns=at_ns,
        metric=metric,
        lookback_seconds=lookback_seconds,
        window_seconds=window_seconds,
        min_points=min_points,
    )
    return found[0] if found else None


class DeploymentTracker:
    """Deployments seen in telemetry, and posted ones. Pure and not thread-safe: one owner feeds it.

    `observe` is called per call record with its series and `service.version`. A deployment is recorded
    when a value is new for its scope:

    - `service_version` per service,
    - `prompt_version` per (service, prompt name),
    - `model` per (service, feature).

    The first value a scope ever shows is what was already running, not a deployment. Several new values in
    one observation (a release that changes both version and model) make one deployment. Its time is the
    earliest event time the new value was seen at, so a late, out-of-order record moves it back.

    Bounded: at most `max_versions_per_scope` values per scope (the least recently first-seen forgotten; a
    forgotten value seen again counts as new) and `max_deployments` deployments (the oldest dropped and
    counted in `dropped`).
    """

    def __init__(self, *, max_deployments: int = 1000, max_versions_per_scope: int = 100) -> None:
        if max_deployments < 1:
            raise ValueError(f"max_deployments: must be at least 1, got {max_deployments}")
        if max_versions_per_scope < 1:
            raise ValueError(f"max_versions_per_scope: must be at least 1, got {max_versions_per_scope}")
        self.max_deployments = max_deployments
        self.max_versions_per_scope = max_versions_per_scope
        self.dropped = 0
        self._deployments: dict[str, Deployment] = {}
        # (component, *scope) -> {value: (first seen ns, id of the deployment that introduced it)}
        self._seen: dict[tuple[str, ...], dict[str, tuple[int, str]]] = {}

    def observe(self, series: SeriesKey, service_version: str, time_ns: int) -> Deployment | None:
        """Note what served one call; returns the deployment this observation reveals, if any."""
        checks: tuple[tuple[tuple[str, ...], str], ...] = (
            (("service_version", series.service), service_version),
            (("prompt_version", series.service, series.prompt_name), series.prompt_version),
            (("model", series.service, series.feature), series.model),
        )
        changed: dict[str, str] = {}
        earlier: list[str] = []
        fresh_scopes: list[tuple[tuple[str, ...], str]] = []
        for scope, value in checks:
            if not value:
                continue
            known = self._seen.get(scope)
            if known is None:
                self._seen[scope] = {value: (time_ns, "")}
                continue
            if value in known:
                first_ns, deployment_id = known[value]
                if time_ns < first_ns:
                    known[value] = (time_ns, deployment_id)
                    if deployment_id:
                        earlier.append(deployment_id)
                continue
            changed[scope[0]] = value
            fresh_scopes.append((scope, value))
        for deployment_id in earlier:
            old = self._deployments.get(deployment_id)
            if old is not None and time_ns < old.time_ns:
                self._deployments[deployment_id] = _replace_time(old, time_ns)
        if not changed:
            return None
        components = {"service": series.service}
        if "prompt_version" in changed:
            components["prompt_name"] = series.prompt_name
        if "model" in changed:
            components["feature"] = series.feature
        components.update(changed)
        base = "auto:" + ",".join(f"{k}={v}" for k, v in components.items())
        deployment_id = base if base not in self._deployments else f"{base}@{time_ns}"
        for scope, value in fresh_scopes:
            known = self._seen[scope]
            known[value] = (time_ns, deployment_id)
            while len(known) > self.max_versions_per_scope:
                oldest = min(known, key=lambda v: known[v][0])
                del known[oldest]
        deployment = Deployment(deployment_id, time_ns, components, automatic=True)
        self.record(deployment)
        return deployment

    def record(self, deployment: Deployment) -> None:
        """Add (or replace, by id) a deployment, e.g. one posted to the API."""
        self._deployments[deployment.id] = deployment
        while len(self._deployments) > self.max_deployments:
            oldest = min(self._deployments.values(), key=lambda d: d.time_ns)
            del self._deployments[oldest.id]
            self.dropped += 1

    def deployments(
        self,
        *,
        series: SeriesKey | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[Deployment]:
        """Deployments in time order, optionally only those concerning `series` within [since, until]."""
        found = [
            d
            for d in self._deployments.values()
            if (series is None or d.concerns(series))
            and (since_ns is None or d.time_ns >= since_ns)
            and (until_ns is None or d.time_ns <= until_ns)
        ]
        return sorted(found, key=lambda d: (d.time_ns, d.id))

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_deployments": self.max_deployments,
            "max_versions_per_scope": self.max_versions_per_scope,
            "dropped": self.dropped,
            "deployments": [d.to_dict() for d in self.deployments()],
            "seen": [
                {"scope": list(scope), "values": {v: [ns, dep] for v, (ns, dep) in values.items()}}
                for scope, values in self._seen.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploymentTracker:
        tracker = cls(
            max_deployments=int(data["max_deployments"]),
            max_versions_per_scope=int(data["max_versions_per_scope"]),
        )
        tracker.dropped = int(data.get("dropped", 0))
        for item in data.get("deployments", []):
            deployment = Deployment.from_dict(item)
            tracker._deployments[deployment.id] = deployment
        for entry in data.get("seen", []):
            tracker._seen[tuple(str(s) for s in entry["scope"])] = {
                str(v): (int(ns), str(dep)) for v, (ns, dep) in dict(entry["values"]).items()
            }
        return tracker


def _replace_time(deployment: Deployment, time_ns: int) -> Deployment:
    return Deployment(
        deployment.id,
        time_ns,
        deployment.components,
        deployment.commit,
        deployment.author,
        deployment.automatic,
    )
