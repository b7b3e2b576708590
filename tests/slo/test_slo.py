"""SLO tracker: burn-rate alert timing against the multiwindow table, budgets, release policy, exposition."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.records import CallRecord, EvaluationRecord, SeriesKey
from otel_llm_collector.slo import (
    MINUTE_NS,
    SloError,
    SloSpec,
    SloTracker,
    load_slos,
    parse_slos,
    release_policy,
)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SERIES = SeriesKey("support-bot", "answer", "answer", "v1", "gpt-4o-mini")
T0 = 1_800_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS
"""A minute-aligned event time."""


def _availability(objective: float = 0.99) -> SloSpec:
    return SloSpec(name="avail", kind="availability", objective=objective, service="support-bot")


def _minute(tracker: SloTracker, start_ns: int, *, calls: int, errors: int) -> None:
    for i in range(calls):
        at = start_ns + i * (MINUTE_NS // calls)
        tracker.observe_call(
            CallRecord(SERIES, at, 0.5, "t", f"s{i}", error_type="Timeout" if i < errors else "")
        )


def _run(
    tracker: SloTracker, start_minute: int, minutes: int, *, calls: int, errors: int, every: int = 1
) -> list[AlertEvent]:
    """Feed `minutes` minutes of traffic from T0 + start_minute, evaluating at each `every`-minute tick."""
    events: list[AlertEvent] = []
    for m in range(start_minute, start_minute + minutes):
        _minute(tracker, T0 + m * MINUTE_NS, calls=calls, errors=errors)
        if (m + 1) % every == 0:
            events += tracker.evaluate(T0 + (m + 1) * MINUTE_NS)
    return events


def _fired(events: list[AlertEvent], severity: str) -> list[int]:
    """Minutes after T0 at which an alert of `severity` started firing."""
    return [(e.at_ns - T0) // MINUTE_NS for e in events if e.status == "firing" and e.severity == severity]


def test_cold_start_at_14_4x_pages_at_the_first_tick() -> None:
    # No earlier traffic: every window holds only the 14.4% error minutes, so 1h and 5m both read 14.4x as
    # soon as one whole minute is in: the tick at T0 + 1m.
    tracker = SloTracker([_availability()])
    events = _run(tracker, 0, 10, calls=500, errors=72)
    assert _fired(events, "P1") == [1]
    page = next(e for e in events if e.severity == "P1")
    assert page.labels == {"alertname": "SLOBurnRate", "slo": "avail", "severity": "P1"}
    assert page.annotations["windows"] == "1h/5m"
    assert float(page.annotations["burn_rate_1h"]) == pytest.approx(14.4)


def test_14_4x_after_healthy_traffic_pages_when_the_1h_window_fills() -> None:
    # 6h of clean traffic, then 14.4x at the same volume: burn_1h(x) = 14.4 * x / 60 after x minutes, so
    # 14.4 at x = 60; the 5m window is at 14.4 from x = 5.
    # Expected: page at T0 + 6h + 60m, not a minute earlier.
    tracker = SloTracker([_availability()])
    assert _run(tracker, 0, 360, calls=125, errors=0, every=30) == []
    events = _run(tracker, 360, 70, calls=125, errors=18)
    assert _fired(events, "P1") == [360 + 60]


def test_full_outage_pages_within_nine_minutes() -> None:
    # 100% errors at 99%: 100x. burn_1h(x) = 100 * x / 60 >= 14.4 at x = 8.64, i.e. the tick at x = 9.
    tracker = SloTracker([_availability()])
    _run(tracker, 0, 360, calls=100, errors=0, every=30)
    events = _run(tracker, 360, 15, calls=100, errors=100)
    assert _fired(events, "P1") == [360 + 9]


def test_6x_pages_through_the_6h_30m_pair_and_not_the_1h_pair() -> None:
    # 7h of clean traffic, then 6x: the 1h pair never reaches 14.4; burn_6h(x) = 6 * x / 360 reaches 6 at
    # x = 360. Expected page at T0 + 7h + 6h, annotated with the 6h/30m pair.
    tracker = SloTracker([_availability()])
    _run(tracker, 0, 420, calls=100, errors=0, every=60)
    events = _run(tracker, 420, 370, calls=100, errors=6)
    assert _fired(events, "P1") == [420 + 360]
    page = next(e for e in events if e.severity == "P1")
    assert page.annotations["windows"] == "6h/30m"


def test_1x_burn_tickets_once_the_clean_hour_leaves_the_3d_window_and_never_pages() -> None:
    # 1h of clean traffic (minutes 0-59), then exactly 1x (1 error in 20 at 95%). The 6h window reads 1.0
    # from the tick at 60 + 360; the 3d window [tick - 4320, tick) holds a clean minute until the tick at
    # 60 + 4320 (73h), when it reaches 1.0: the ticket, and never a page.
    tracker = SloTracker([_availability(objective=0.95)])
    _run(tracker, 0, 60, calls=20, errors=0)
    events = _run(tracker, 60, 4320 + 10, calls=20, errors=1)
    assert _fired(events, "P3") == [60 + 4320]
    assert _fired(events, "P1") == []


def test_page_resolves_when_the_short_window_recovers() -> None:
    # Cold-start 100% outage in minutes 0-9, then clean. The 1h/5m pair lets go at the tick at 15 (5m
    # clean), but the 6h/30m pair holds while the 30m window keeps 6% bad: 2 bad minutes of 30 (6.7x) at the
    # tick at 38, 1 of 30 (3.3x) at 39. Expected: resolved at 39.
    tracker = SloTracker([_availability()])
    events = _run(tracker, 0, 10, calls=100, errors=100) + _run(tracker, 10, 35, calls=100, errors=0)
    resolved = [(e.at_ns - T0) // MINUTE_NS for e in events if e.status == "resolved" and e.severity == "P1"]
    assert resolved == [39]
    assert tracker.active_alerts() == [("avail", "P3", T0 + MINUTE_NS)]


@pytest.mark.parametrize(
    ("errors", "remaining", "policy"),
    [(0, 1.0, "normal"), (4, 0.6, "normal"), (5, 0.5, "caution"), (8, 0.2, "caution"), (9, 0.1, "freeze")],
)
def test_budget_remaining_and_release_policy_bands(errors: int, remaining: float, policy: str) -> None:
    # 1000 calls at 99%: the budget is 10 failed calls; `errors` of them spend errors / 10.
    tracker = SloTracker([_availability()])
    _minute(tracker, T0, calls=1000, errors=errors)
    status = tracker.status("avail", T0 + 2 * MINUTE_NS)
    assert status.total == 1000
    assert status.budget_remaining == pytest.approx(remaining)
    assert status.release_policy == policy


def test_release_policy_edges() -> None:
    assert release_policy(0.5000001) == "normal"
    assert release_policy(0.5) == "caution"
    assert release_policy(0.2) == "caution"
    assert release_policy(0.1999) == "freeze"
    assert release_policy(-0.5) == "freeze"


def test_period_counts_traffic_older_than_the_minute_ring() -> None:
    # 10 days back is beyond the 3-day minute ring but inside the 30-day period (hourly ring).
    tracker = SloTracker([_availability()])
    _minute(tracker, T0, calls=100, errors=100)
    _minute(tracker, T0 + 10 * 86400 * 1_000_000_000, calls=900, errors=0)
    status = tracker.status("avail", T0 + 10 * 86400 * 1_000_000_000 + MINUTE_NS)
    assert (status.good, status.total) == (900, 1000)
    assert status.burn_rates["3d"] == 0.0
    # 31 days later the first minute is out of the period.
    later = tracker.status("avail", T0 + 31 * 86400 * 1_000_000_000)
    assert (later.good, later.total) == (900, 900)


def test_latency_and_quality_slos_judge_their_events() -> None:
    slos = parse_slos(
        {
            "slos": [
                {"name": "lat", "kind": "latency", "objective": 0.9, "threshold_seconds": 1.0},
                {"name": "faith", "kind": "quality", "objective": 0.9, "evaluation": "faithfulness"},
            ]
        }
    )
    tracker = SloTracker(slos)
    for i, duration in enumerate([0.5, 1.0, 2.0]):
        tracker.observe_call(CallRecord(SERIES, T0 + i, duration, "t", "s"))
    tracker.observe_call(CallRecord(SERIES, T0, 9.0, "t", "s", error_type="Timeout"))  # not a latency event
    tracker.observe_evaluation(EvaluationRecord("faithfulness", T0, 0.9, series=SERIES))
    tracker.observe_evaluation(EvaluationRecord("faithfulness", T0, 0.2, series=SERIES))
    tracker.observe_evaluation(EvaluationRecord("faithfulness", T0, None, label="fail", series=SERIES))
    tracker.observe_evaluation(EvaluationRecord("relevance", T0, 0.1, series=SERIES))
    tracker.observe_evaluation(EvaluationRecord("faithfulness", T0, 0.1))  # no series: skipped
    at = T0 + MINUTE_NS
    assert (tracker.status("lat", at).good, tracker.status("lat", at).total) == (2, 3)
    assert (tracker.status("faith", at).good, tracker.status("faith", at).total) == (1, 3)


def test_scope_matches_exact_values() -> None:
    tracker = SloTracker([_availability()])
    tracker.observe_call(CallRecord(SERIES._replace(service="other"), T0, 0.1, "t", "s", error_type="X"))
    assert tracker.status("avail", T0 + MINUTE_NS).total == 0


def test_invalid_definitions_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(SloError, match="threshold_seconds"):
        parse_slos({"slos": [{"name": "x", "kind": "latency", "objective": 0.9}]})
    with pytest.raises(SloError, match="objective"):
        parse_slos({"slos": [{"name": "x", "kind": "availability", "objective": 1.5}]})
    with pytest.raises(SloError, match="duplicate"):
        parse_slos({"slos": [{"name": "x", "kind": "availability", "objective": 0.9}] * 2})
    path = tmp_path / "slos.yaml"
    path.write_text("slos:\n  - name: a\n    kind: availability\n    objective: 0.995\n    period: 7d\n")
    assert load_slos(path).slos[0].period_seconds == 7 * 86400


def test_snapshot_restore_keeps_counts_and_alerts() -> None:
    tracker = SloTracker([_availability()])
    _run(tracker, 0, 3, calls=100, errors=100)
    copy = SloTracker([_availability()])
    copy.restore(tracker.snapshot())
    at = T0 + 3 * MINUTE_NS
    assert copy.status("avail", at) == tracker.status("avail", at)
    assert copy.active_alerts() == tracker.active_alerts()
    assert copy.evaluate(at) == []  # already firing: no second firing event


def test_metrics_text_passes_promtool() -> None:
    tracker = SloTracker([_availability(), SloSpec(name="other.slo", kind="availability", objective=0.9)])
    _run(tracker, 0, 2, calls=100, errors=3)
    text = tracker.metrics_text()
    # 3% errors at 99%: 3x, the whole budget spent three times over.
    assert 'otel_llm_slo_release_policy{slo="avail",mode="freeze"} 1' in text
    assert 'otel_llm_slo_release_policy{slo="avail",mode="normal"} 0' in text
    burn = next(
        line
        for line in text.splitlines()
        if line.startswith('otel_llm_slo_burn_rate{slo="avail",window="5m"}')
    )
    assert float(burn.split()[-1]) == pytest.approx(3.0)
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
