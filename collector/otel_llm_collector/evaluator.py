"""Builds the rule evaluator the collector and replay use: a rule set plus the statistical detectors.

Detector rules name a kind (`detector: {kind: ewma, metric: ..., direction: down, params: {...}}`):

| kind | detector | params (defaults) |
|---|---|---|
| `ewma` | EWMA chart (`spc.EwmaChart`) | `lambda` 0.2, `L` 2.86, `warmup_points` |
| `cusum` | tabular CUSUM (`spc.CusumChart`) | `k` 0.5, `h` 5.0, `warmup_points` |
| `western_electric` | Shewhart chart, four zone rules (`spc.WesternElectricChart`) | `warmup_points` |

Each (rule, series) gets its own chart, fed one completed baseline period (5 minutes) at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from otel_llm_collector.alerts import ChartDetector, Detector, DetectorFactory, RuleEvaluator
from otel_llm_collector.rules import DetectorSpec, RuleSet
from otel_llm_collector.spc import CusumChart, EwmaChart, WesternElectricChart

_RENAMES: Final = {"lambda": "lam", "L": "limit"}


def _params(spec: DetectorSpec, allowed: frozenset[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in spec.params.items():
        name = _RENAMES.get(key, key)
        if name not in allowed:
            raise ValueError(f"detector {spec.kind}: unknown parameter {key!r}")
        params[name] = int(value) if name == "warmup_points" else value
    return params


def _ewma(spec: DetectorSpec) -> Detector:
    return ChartDetector(
        EwmaChart(**_params(spec, frozenset({"lam", "limit", "warmup_points"}))), spec.direction
    )


def _cusum(spec: DetectorSpec) -> Detector:
    return ChartDetector(CusumChart(**_params(spec, frozenset({"k", "h", "warmup_points"}))), spec.direction)


def _western_electric(spec: DetectorSpec) -> Detector:
    chart = WesternElectricChart(**_params(spec, frozenset({"warmup_points"})))
    return ChartDetector(chart, spec.direction)


DETECTORS: Final[Mapping[str, DetectorFactory]] = {
    "ewma": _ewma,
    "cusum": _cusum,
    "western_electric": _western_electric,
}


def build_evaluator(rules: RuleSet) -> RuleEvaluator:
    return RuleEvaluator(rules, detectors=DETECTORS)
