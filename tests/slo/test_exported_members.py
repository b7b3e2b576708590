"""The public API of the SLO and canary modules, pinned."""

from __future__ import annotations

from otel_llm_collector import canary, slo, slo_api


def test_slo_exports() -> None:
    assert sorted(slo.__all__) == [
        "BURN_RATE_ALERTS",
        "BURN_WINDOWS",
        "BurnRateAlert",
        "RELEASE_POLICIES",
        "SLO_ALERTNAME",
        "SloError",
        "SloSet",
        "SloSpec",
        "SloStatus",
        "SloTracker",
        "load_slos",
        "parse_slos",
        "release_policy",
    ]
    assert all(hasattr(slo, name) for name in slo.__all__)


def test_canary_and_api_exports() -> None:
    assert sorted(canary.__all__) == [
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
    assert all(hasattr(canary, name) for name in canary.__all__)
    assert slo_api.__all__ == ["register"]
