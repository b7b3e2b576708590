"""Says which deployment an alert most plausibly comes from, when the alert starts firing.

For the alert's metric (the first metric of its rule's condition), the per-minute history is read under the
series' merged scope (across prompt versions and models, so a new version has a "before") and judged
against every deployment concerning the series in the last hours (`correlation.correlate`). The result
goes into the alert's annotations: `deployment`, `deployment_confidence`, `deployment_step` and a sentence
in `correlation`, and is kept for `/api/v1/alerts`.

A statistical verdict needs a few minutes of history after the deployment (`correlation.DEFAULT_MIN_POINTS`).
A new prompt version or model that is bad from its first minute alerts sooner than that, on a series that did
not exist before. Then the alert names the deployment that introduced the series' version or model, with
`deployment_confidence: introduced`: not a measured step but a fact of the series key (every call the alert
judged was served by what that deployment brought in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from otel_llm_collector.correlation import Confidence, Deployment, DeploymentTracker, correlate
from otel_llm_collector.history import QUALITY_DOWN_IS_BAD, MetricHistory, merged_scope
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.rules import Rule
from otel_llm_collector.spc import Direction

INTRODUCED: Final = "introduced"
"""`deployment_confidence` when the alerting series is the version or model a deployment introduced."""
INTRODUCED_LOOKBACK_NS: Final = 6 * 3600 * 1_000_000_000
POSTED_PREFERENCE_NS: Final = 15 * 60 * 1_000_000_000


def introducing_deployment(
    deployments: Sequence[Deployment], series: SeriesKey, at_ns: int
) -> Deployment | None:
    """The latest deployment before `at_ns` (within 6 hours) that brought in the series' prompt version or
    model; None when the series' version and model predate every deployment in view.

    A posted deployment (the prompt registry's deploy, `POST /api/v1/deployments`) is preferred to the one
    the telemetry revealed when it came at most 15 minutes before it: it says who deployed and why."""
    matches = [
        d
        for d in deployments
        if d.time_ns <= at_ns
        and at_ns - d.time_ns <= INTRODUCED_LOOKBACK_NS
        and (
            d.components.get("prompt_version") == series.prompt_version
            or d.components.get("model") == series.model
        )
    ]
    if not matches:
        return None
    latest = max(matches, key=lambda d: d.time_ns)
    posted = [d for d in matches if not d.automatic and latest.time_ns - d.time_ns <= POSTED_PREFERENCE_NS]
    return max(posted, key=lambda d: d.time_ns) if posted else latest


def adverse_direction(metric: str) -> Direction:
    """Which way is bad: quality scores and success going down; everything else going up."""
    if metric == "success_rate":
        return Direction.DOWN
    if metric.startswith("eval_mean{") and metric[len("eval_mean{") : -1] in QUALITY_DOWN_IS_BAD:
        return Direction.DOWN
    return Direction.UP


def rule_metric(rule: Rule) -> str:
    """The metric a rule is about: its quality metric if it reads one, else the first by name."""
    # Confidence bounds of a rate correlate through the rate itself.
    names = sorted(str(ref).replace("_lower{", "{").replace("_upper{", "{") for ref in rule.metrics)
    quality = [n for n in names if n.startswith("eval_")]
    return (quality or names or [""])[0]


class DeploymentAnnotator:
    """The `Annotator` the rule evaluator calls for an alert that starts firing."""

    def __init__(self, deployments: DeploymentTracker, history: MetricHistory) -> None:
        self.deployments = deployments
        self.history = history

    def annotate(self, rule: Rule, series: SeriesKey, at_ns: int) -> Mapping[str, str]:
        metric = rule_metric(rule)
        if not metric:
            return {}
        points = self.history.points(merged_scope(series), metric)
        deployments = self.deployments.deployments(series=series)
        found = correlate(deployments, points, adverse=adverse_direction(metric), at_ns=at_ns, metric=metric)
        if found is None or found.confidence is Confidence.NONE:
            introduced = introducing_deployment(deployments, series, at_ns)
            if introduced is not None:
                return {
                    "deployment": introduced.id,
                    "deployment_confidence": INTRODUCED,
                    "correlation": f"every call in the alert was served by what {introduced.describe()} "
                    "introduced",
                }
        if found is None:
            return {"deployment": "", "deployment_confidence": str(Confidence.NONE)}
        if found.confidence is Confidence.NONE:
            return {
                "deployment": "",
                "deployment_confidence": str(Confidence.NONE),
                "correlation": found.explanation,
            }
        return {
            "deployment": found.deployment_id,
            "deployment_confidence": str(found.confidence),
            "deployment_step": "" if found.step is None else f"{found.step:+.4g}",
            "correlation": found.explanation,
        }
