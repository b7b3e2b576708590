"""Builds the rule evaluator the collector and replay use: a rule set plus the statistical detectors.

Detector rules name a chart kind (`detector: {kind: ewma, metric: ..., direction: down, params: {...}}`):
`ewma` (EWMA chart: `lambda` 0.2, `L` 2.86), `cusum` (tabular CUSUM: `k` 0.5, `h` 5.0) or
`western_electric` (Shewhart chart with the four zone rules); all take `warmup_points`. See `spc` for each
chart's false-alarm rate and detection delay. Each (rule, series) gets its own chart, fed one completed
baseline period (5 minutes) at a time.
"""

from __future__ import annotations

from typing import Final

from otel_llm_collector.alerts import ChartDetector, Detector, DetectorFactory, RuleEvaluator
from otel_llm_collector.rules import DetectorSpec, RuleSet
from otel_llm_collector.spc import make_chart

CHART_KINDS: Final = ("ewma", "cusum", "western_electric")


def _detector(spec: DetectorSpec) -> Detector:
    # Rule files carry numbers as floats; counts are integers to the charts.
    settings = {k: int(v) if k == "warmup_points" else v for k, v in spec.params.items()}
    return ChartDetector(make_chart(spec.kind, settings), spec.direction)


DETECTORS: Final[dict[str, DetectorFactory]] = dict.fromkeys(CHART_KINDS, _detector)


def build_evaluator(rules: RuleSet) -> RuleEvaluator:
    return RuleEvaluator(rules, detectors=DETECTORS)
