"""Says which deployment an alert most plausibly comes from, when the alert starts firing.

For the alert's metric (the first metric of its rule's condition), the per-minute history is read under the
series' merged scope (across prompt versions and models, so a new version has a "before") and judged
against every deployment concerning the series in the last hours (`correlation.correlate`). The result
goes into the alert's annotations: `deployment`, `deployment_confidence`, `deployment_step` and a sentence
in `correlation`, and is kept for `/api/v1/alerts`.
"""

from __future__ import annotations

from collections.abc import Mapping

from otel_llm_collector.correlation import Confidence, DeploymentTracker, correlate
from otel_llm_collector.history import QUALITY_DOWN_IS_BAD, MetricHistory, merged_scope, series_scope
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.rules import Rule
from otel_llm_collector.spc import Direction


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
        points = self.history.points(merged_scope(series), metric) or self.history.points(
            series_scope(series), metric
        )
        found = correlate(
            self.deployments.deployments(series=series),
            points,
            adverse=adverse_direction(metric),
            at_ns=at_ns,
            metric=metric,
        )
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
