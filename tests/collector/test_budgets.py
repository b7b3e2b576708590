"""Budgets on generated traffic with fixed timestamps: bands at their exact edges, pro-rating and projection,
UTC day and month rollover, cache hit ratio, cost spikes, files that fail validation, the API and /metrics."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from otel_llm_collector import budget_api, budgets
from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.budgets import (
    DAY_NS,
    MINUTE_NS,
    BudgetError,
    BudgetSpec,
    BudgetTracker,
    SpikeSettings,
    band_of,
    load_budgets,
    parse_budgets,
    spike_severity,
    tenant_of,
)
from otel_llm_collector.records import CallRecord, SeriesKey
from otel_llm_collector.router import Request, Router

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
EXAMPLE = Path(budgets.__file__).parent / "data" / "budgets.example.yaml"


def _ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1_000_000_000


def _call(
    end_ns: int,
    cost: float | None,
    *,
    service: str = "support-bot",
    feature: str = "answer",
    tenant: str = "",
    input_tokens: int | None = None,
    cache_read: int | None = None,
    index: int = 0,
) -> CallRecord:
    return CallRecord(
        SeriesKey(service, feature, "answer", "v1", "gpt-4o-mini"),
        end_ns,
        0.8,
        "0" * 31 + "1",
        f"{index:016x}",
        cost_usd=cost,
        input_tokens=input_tokens,
        cache_read_tokens=cache_read,
        segments=(("tenant", tenant),) if tenant else (),
    )


def _spend(tracker: BudgetTracker, start_ns: int, total_usd: float, calls: int) -> None:
    """`calls` calls costing `total_usd` together, one a second from `start_ns`."""
    for i in range(calls):
        tracker.observe_call(_call(start_ns + i * 1_000_000_000, total_usd / calls, index=i))


def _firing(events: list[AlertEvent]) -> list[tuple[str, str, str]]:
    return [(e.status, e.alertname, e.severity) for e in events]


# --- definitions --------------------------------------------------------------------------------------
def test_example_file_loads() -> None:
    loaded = load_budgets(EXAMPLE)
    assert [b.name for b in loaded.budgets] == ["support-bot", "support-answer", "tenant-acme"]
    assert [b.scope for b in loaded.budgets] == ["service", "feature", "tenant"]
    assert loaded.budgets[2].escalate_severity == "P1"
    assert loaded.spikes == SpikeSettings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("budgets: [{name: a, service: s}]", "budgets[0] (a): daily_usd or monthly_usd: at least one limit"),
        ("budgets: [{name: a, daily_usd: -1}]", "budgets[0] (a).daily_usd: Input should be greater than 0"),
        (
            "budgets: [{name: a, daily_usd: .inf}]",
            "budgets[0] (a).daily_usd: Input should be a finite number",
        ),
        ("budgets: [{name: a, dayly_usd: 5}]", "budgets[0] (a).dayly_usd: Extra inputs are not permitted"),
        ("budgets: [{name: a, daily_usd: 1, escalate_severity: P9}]", "budgets[0] (a).escalate_severity"),
        ("budgets: [{name: 'a b', daily_usd: 1}]", "budgets[0] (a b).name: String should match pattern"),
        ("budgets: [{daily_usd: 1}]", "budgets[0].name: Field required"),
        (
            "budgets: [{name: a, tenant: '', daily_usd: 1}]",
            "budgets[0] (a).tenant: String should have at least",
        ),
        (
            "budgets: [{name: a, daily_usd: 1}, {name: a, monthly_usd: 2}]",
            "name: duplicate budget name(s): a",
        ),
        ("spikes: {baseline_minutes: 10, min_baseline_minutes: 20}", "spikes: min_baseline_minutes: at most"),
        ("budget: []", "budget: Extra inputs are not permitted"),
        ("- name: a", "Input should be a valid dictionary"),
    ],
)
def test_bad_budget_files_name_the_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(text, "utf-8")
    with pytest.raises(BudgetError) as caught:
        load_budgets(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


def test_every_problem_is_listed_and_unreadable_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(BudgetError) as caught:
        parse_budgets({"budgets": [{"name": "a", "daily_usd": 0}, {"name": "b", "monthly_usd": "x"}]})
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("budgets: budgets[0] (a).daily_usd:")
    assert lines[1].startswith("budgets: budgets[1] (b).monthly_usd:")
    with pytest.raises(BudgetError, match="No such file"):
        load_budgets(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("budgets: [", "utf-8")
    with pytest.raises(BudgetError, match=r"broken\.yaml"):
        load_budgets(broken)
    assert parse_budgets(None).budgets == ()


def test_scope_is_the_narrowest_field_and_the_tenant_is_a_segment() -> None:
    spec = BudgetSpec(name="x", service="s", feature="f", daily_usd=1)
    assert (spec.scope, BudgetSpec(name="y", monthly_usd=1).scope) == ("feature", "all")
    assert spec.matches("s", "f", "")
    assert not spec.matches("s", "g", "")
    acme = BudgetSpec(name="acme", tenant="acme", daily_usd=1)
    assert acme.scope == "tenant"
    assert tenant_of(_call(0, 1.0, tenant="acme")) == "acme"
    assert tenant_of(_call(0, 1.0)) == ""
    tracker = BudgetTracker([acme, BudgetSpec(name="all", daily_usd=100)])
    t = _ns(2026, 3, 10, 9)
    tracker.observe_call(_call(t, 2.0, tenant="acme"))
    tracker.observe_call(_call(t, 3.0, tenant="other"))
    tracker.observe_call(_call(t, 4.0))
    at = t + MINUTE_NS
    assert tracker.status("acme", at).daily.spend_usd == 2.0
    assert tracker.status("all", at).daily.spend_usd == 9.0


# --- bands --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ratio", "band"),
    [(0.0, "fine"), (1.0999999, "fine"), (1.1, "investigate"), (110 / 100, "investigate"),
     (1.2, "investigate"), (1.2000001, "escalate"), (3.0, "escalate"), (None, None)],
)  # fmt: skip
def test_band_edges(ratio: float | None, band: str | None) -> None:
    assert band_of(ratio) == band


@pytest.mark.parametrize(
    ("spend", "calls", "band", "events"),
    [
        (109.99, 100, "fine", []),
        (110.0, 110, "investigate", [("firing", "BudgetOverrun", "P3")]),
        (110.0, 1100, "investigate", [("firing", "BudgetOverrun", "P3")]),  # 1100 x 0.1: float sum
        (120.0, 1200, "investigate", [("firing", "BudgetOverrun", "P3")]),
        (120.01, 100, "escalate", [("firing", "BudgetOverrun", "P2")]),
    ],
)
def test_daily_band_at_exact_boundaries(spend: float, calls: int, band: str, events: list[Any]) -> None:
    tracker = BudgetTracker([BudgetSpec(name="bot", service="support-bot", daily_usd=100)])
    start = _ns(2026, 3, 10, 8)
    _spend(tracker, start, spend, calls)
    at = _ns(2026, 3, 10, 12)
    out = tracker.evaluate(at)
    daily = tracker.status("bot").daily
    assert daily.limit_usd == daily.prorated_limit_usd == 100  # a day is never pro-rated
    assert daily.spend_usd == pytest.approx(spend)
    assert daily.band == band
    assert _firing(out) == events
    for event in out:
        assert event.labels["budget"] == "bot"
        assert (event.labels["scope"], event.labels["period"], event.labels["service"]) == (
            "service",
            "daily",
            "support-bot",
        )
        assert event.starts_at_ns == at


def test_band_escalation_resolves_the_lower_severity_and_recovery_resolves() -> None:
    tracker = BudgetTracker([BudgetSpec(name="bot", daily_usd=100)])
    day = _ns(2026, 3, 10)
    _spend(tracker, day + 3600 * 10**9, 115.0, 115)
    assert _firing(tracker.evaluate(day + 2 * 3600 * 10**9)) == [("firing", "BudgetOverrun", "P3")]
    assert tracker.evaluate(day + 2 * 3600 * 10**9 + MINUTE_NS) == []  # no change, no event
    _spend(tracker, day + 3 * 3600 * 10**9, 10.0, 10)
    assert _firing(tracker.evaluate(day + 4 * 3600 * 10**9)) == [
        ("resolved", "BudgetOverrun", "P3"),
        ("firing", "BudgetOverrun", "P2"),
    ]
    assert tracker.status("bot").firing == ("BudgetOverrun/P2",)
    assert tracker.evaluate(day + DAY_NS) == []  # the midnight tick still judges the day that ended
    out = tracker.evaluate(day + DAY_NS + MINUTE_NS)  # a new UTC day, nothing spent yet
    assert _firing(out) == [("resolved", "BudgetOverrun", "P2")]
    assert out[0].annotations["resolved_reason"] == "new_period"
    assert tracker.status("bot").firing == ()


def test_monthly_band_is_against_the_prorated_limit_and_matches_the_projection() -> None:
    # March 2026 has 31 days: after 10 days the pro-rated limit of 3,100 USD is 1,000 USD.
    spec = BudgetSpec(name="bot", monthly_usd=3100)
    at = _ns(2026, 3, 11)
    for spend, band in (
        (1099.0, "fine"),
        (1100.0, "investigate"),
        (1200.0, "investigate"),
        (1250.0, "escalate"),
    ):
        tracker = BudgetTracker([spec])
        for day in range(10):
            _spend(tracker, _ns(2026, 3, 1 + day, 9), spend / 10, 20)
        monthly = tracker.status("bot", at).monthly
        assert monthly.prorated_limit_usd == pytest.approx(1000.0)
        assert monthly.spend_usd == pytest.approx(spend)
        assert monthly.band == band
        status = tracker.status("bot", at)
        assert status.projected_month_end_usd == pytest.approx(spend * 31 / 10)
        assert status.projected_month_end_usd / 3100 == pytest.approx(monthly.ratio)
    # The first day is judged against one day's share (100 USD), not against a few hours' share.
    tracker = BudgetTracker([spec])
    _spend(tracker, _ns(2026, 3, 1, 1), 50.0, 50)
    early = tracker.status("bot", _ns(2026, 3, 1, 6))
    assert early.monthly.prorated_limit_usd == pytest.approx(100.0)
    assert early.monthly.ratio == pytest.approx(0.5)
    assert early.projected_month_end_usd == pytest.approx(50.0 * 31)
    # February 2026 has 28 days: the elapsed fraction follows the month's own length.
    tracker = BudgetTracker([BudgetSpec(name="feb", monthly_usd=2800)])
    _spend(tracker, _ns(2026, 2, 5, 9), 700.0, 70)
    feb = tracker.status("feb", _ns(2026, 2, 15))
    assert feb.monthly.prorated_limit_usd == pytest.approx(1400.0)
    assert feb.projected_month_end_usd == pytest.approx(700.0 * 28 / 14)


def test_day_and_month_roll_over_at_utc_midnight() -> None:
    tracker = BudgetTracker([BudgetSpec(name="bot", daily_usd=100, monthly_usd=3000)])
    last_march = _ns(2026, 3, 31, 23, 59, 30)  # 01:59:30 on April 1st in UTC+2: still March here
    first_april = _ns(2026, 4, 1, 0, 0, 30)
    tracker.observe_call(_call(last_march - 20 * DAY_NS, 200.0))
    tracker.observe_call(_call(last_march, 20.0))
    tracker.observe_call(_call(first_april, 1.5))  # arrives in the batch before the midnight tick
    tracker.evaluate(_ns(2026, 3, 31, 23, 59))
    before = tracker.status("bot")
    assert (before.daily.spend_usd, before.monthly.spend_usd) == (0.0, 200.0)
    tracker.evaluate(_ns(2026, 4, 1))
    midnight = tracker.status("bot")  # the midnight tick judges March 31st and March, whole
    assert (midnight.daily.start_ns, midnight.monthly.start_ns) == (_ns(2026, 3, 31), _ns(2026, 3, 1))
    assert (midnight.daily.spend_usd, midnight.monthly.spend_usd) == (20.0, 220.0)
    assert midnight.projected_month_end_usd == pytest.approx(220.0)  # the month is over: no extrapolation
    tracker.evaluate(_ns(2026, 4, 1, 0, 1))
    after = tracker.status("bot")
    assert after.daily.start_ns == after.monthly.start_ns == _ns(2026, 4, 1)
    assert after.monthly.end_ns == _ns(2026, 5, 1)
    assert (after.daily.spend_usd, after.monthly.spend_usd, after.daily.calls) == (1.5, 1.5, 1)


def test_a_last_minute_overrun_fires_at_midnight_and_resolves_with_the_new_day() -> None:
    tracker = BudgetTracker([BudgetSpec(name="bot", daily_usd=10)])
    tracker.observe_call(_call(_ns(2026, 3, 31, 23, 59, 30), 12.5))
    assert tracker.evaluate(_ns(2026, 3, 31, 23, 59)) == []
    assert _firing(tracker.evaluate(_ns(2026, 4, 1))) == [("firing", "BudgetOverrun", "P2")]
    out = tracker.evaluate(_ns(2026, 4, 1, 0, 1))
    assert _firing(out) == [("resolved", "BudgetOverrun", "P2")]
    assert out[0].annotations["resolved_reason"] == "new_period"
    assert out[0].ends_at_ns == _ns(2026, 4, 1, 0, 1)


def test_calls_after_the_tick_count_from_the_next_tick_and_old_ones_are_dropped() -> None:
    tracker = BudgetTracker([BudgetSpec(name="bot", daily_usd=10)])
    tick = _ns(2026, 3, 10, 12)
    tracker.observe_call(_call(tick - 1, 1.0))
    tracker.observe_call(_call(tick, 2.0))
    tracker.observe_call(_call(tick + 30 * 10**9, 4.0))
    tracker.evaluate(tick)
    assert tracker.status("bot").daily.spend_usd == 1.0
    tracker.evaluate(tick + MINUTE_NS)
    assert tracker.status("bot").daily.spend_usd == 7.0
    tracker.observe_call(_call(_ns(2026, 2, 27), 100.0))  # previous month: still counted where kept
    assert tracker.dropped_too_old == 0
    tracker.observe_call(_call(_ns(2026, 1, 31), 100.0))  # older than every kept day
    assert tracker.dropped_too_old == 1
    assert tracker.status("bot").monthly.spend_usd == 7.0


def test_timestamps_from_broken_clocks_cannot_grow_the_state() -> None:
    tracker = BudgetTracker([BudgetSpec(name="bot", daily_usd=10)])
    tracker.evaluate(_ns(2026, 3, 10, 12))
    for day in range(budgets.MAX_DAYS + 7):
        tracker.observe_call(_call(_ns(2030, 1, 1) + day * DAY_NS, 1.0))
    assert tracker.dropped_over_limit == 7
    assert tracker.dropped_too_old == 0
    assert 'otel_llm_budget_dropped_calls_total{reason="over_limit"} 7' in tracker.metrics_text().splitlines()
    assert tracker.status("bot").monthly.spend_usd == 0.0


def test_unpriced_calls_are_counted_apart() -> None:
    tracker = BudgetTracker([BudgetSpec(name="bot", daily_usd=10)])
    t = _ns(2026, 3, 10, 9)
    for i, cost in enumerate((0.5, None, float("nan"), 0.25)):
        tracker.observe_call(_call(t + i, cost))
    daily = tracker.status("bot", t + MINUTE_NS).daily
    assert (daily.spend_usd, daily.calls, daily.unpriced_calls) == (0.75, 4, 2)


def test_cache_hit_ratio_is_cache_reads_over_input_tokens() -> None:
    tracker = BudgetTracker([BudgetSpec(name="bot", monthly_usd=100)])
    t = _ns(2026, 3, 10, 9)
    tracker.observe_call(_call(t, 0.1, input_tokens=1000, cache_read=750))
    tracker.observe_call(_call(t + 1, 0.1, input_tokens=1000, cache_read=None))  # no cache figure: no hit
    tracker.observe_call(_call(t + 2, 0.1, input_tokens=None, cache_read=500))  # no input figure: ignored
    tracker.observe_call(_call(t - DAY_NS, 0.1, input_tokens=2000, cache_read=0))  # yesterday
    status = tracker.status("bot", t + MINUTE_NS)
    assert status.daily.cache_hit_ratio == pytest.approx(750 / 2000)
    assert status.monthly.cache_hit_ratio == pytest.approx(750 / 4000)
    assert 'otel_llm_cache_hit_ratio{budget="bot",scope="all",period="daily"} 0.375' in tracker.metrics_text(
        t + MINUTE_NS
    )
    assert BudgetTracker([BudgetSpec(name="bot", daily_usd=1)]).status("bot", t).daily.cache_hit_ratio is None


# --- cost spikes ----------------------------------------------------------------------------------------
SPIKES = SpikeSettings(baseline_minutes=60, min_baseline_minutes=30, min_calls=10, for_minutes=3)
START = _ns(2026, 3, 10, 9)


def _minute(tracker: BudgetTracker, minute: int, calls: int, cost_per_call: float) -> None:
    base = START + minute * MINUTE_NS
    for i in range(calls):
        tracker.observe_call(_call(base + i * 10**9, cost_per_call, index=i))


def _run(
    minutes: list[tuple[int, float]], *, rng: random.Random | None = None, jitter: float = 0.0
) -> tuple[BudgetTracker, list[list[AlertEvent]]]:
    """One minute per (calls, cost per call); evaluate at the tick closing each minute."""
    tracker = BudgetTracker([BudgetSpec(name="bot", monthly_usd=1e6)], spikes=SPIKES)
    ticks = []
    for m, (calls, cost) in enumerate(minutes):
        noisy = cost * (1 + rng.uniform(-jitter, jitter)) if rng is not None else cost
        _minute(tracker, m, calls, noisy)
        ticks.append(tracker.evaluate(START + (m + 1) * MINUTE_NS))
    return tracker, ticks


def test_cost_per_call_spike_at_2x_pends_then_fires_then_resolves() -> None:
    # 60 minutes of 20 calls at 1 cent; then 10 calls a minute at 2 cents: spend per minute unchanged.
    minutes = [(20, 0.01)] * 60 + [(10, 0.02)] * 4 + [(20, 0.01)] * 3
    tracker, ticks = _run(minutes)
    assert all(t == [] for t in ticks[:60])
    assert _firing(ticks[60]) == [("pending", "CostSpike", "P3")]
    assert ticks[61] == []
    assert _firing(ticks[62]) == [("firing", "CostSpike", "P3")]
    fired = ticks[62][0]
    assert fired.labels["kind"] == "per_call"
    assert fired.starts_at_ns == START + 61 * MINUTE_NS
    assert fired.value == pytest.approx(2.0)
    assert float(fired.annotations["baseline_usd"]) == pytest.approx(0.01)
    assert ticks[63] == []
    assert ticks[64:66] == [[], []]  # calm minutes: held for `for_minutes`
    assert _firing(ticks[66]) == [("resolved", "CostSpike", "P3")]
    # The spike minutes stayed out of the baseline: it is still one cent.
    per_call = next(s for s in tracker.status("bot").spikes if s.kind == "per_call")
    assert per_call.baseline == pytest.approx(0.01)
    assert per_call.state == "inactive"


def test_spend_per_minute_spike_from_a_call_loop() -> None:
    minutes = [(20, 0.01)] * 60 + [(50, 0.01)] * 3
    _, ticks = _run(minutes)
    assert _firing(ticks[62]) == [("firing", "CostSpike", "P3")]
    assert ticks[62][0].labels["kind"] == "per_minute"
    assert ticks[62][0].value == pytest.approx(2.5)


def test_one_and_a_half_times_the_baseline_stays_quiet() -> None:
    rng = random.Random(7)
    minutes = [(20, 0.01)] * 60 + [(20, 0.015)] * 30
    tracker, ticks = _run(minutes, rng=rng, jitter=0.05)
    assert [e for t in ticks for e in t] == []
    spikes = {s.kind: s for s in tracker.status("bot").spikes}
    assert spikes["per_call"].ratio == pytest.approx(1.5, rel=0.15)
    assert spikes["per_minute"].ratio == pytest.approx(1.5, rel=0.15)


def test_too_few_baseline_minutes_or_calls_is_insufficient_data() -> None:
    _, ticks = _run([(20, 0.01)] * 29 + [(20, 0.2)] * 2)  # 20x, but only 29 baseline minutes
    assert [e for t in ticks[:30] for e in t] == []
    # The unjudged minute joins the baseline: 30 minutes, whose median is still one cent.
    assert [(e.status, e.labels["kind"]) for e in ticks[30]] == [
        ("pending", "per_call"),
        ("pending", "per_minute"),
    ]
    tracker, ticks = _run([(20, 0.01)] * 60 + [(9, 0.2)] * 5)  # 20x per call, 9 calls a minute
    assert [e for t in ticks for e in t] == []
    per_call = next(s for s in tracker.status("bot").spikes if s.kind == "per_call")
    assert (per_call.value, per_call.ratio) == (None, None)
    assert per_call.baseline == pytest.approx(0.01)


def test_spike_severity_follows_the_highest_ratio_of_the_episode() -> None:
    assert [spike_severity(r) for r in (1.99, 2.0, 4.99, 5.0, 9.99, 10.0, 40.0)] == [
        None,
        "P3",
        "P3",
        "P2",
        "P2",
        "P1",
        "P1",
    ]
    # Cost per call 3x, then 6x: the P3 alert is resolved and a P2 one fires.
    minutes = [(20, 0.01)] * 60 + [(10, 0.03)] * 3 + [(10, 0.06)] * 2
    _, ticks = _run(minutes)
    per_call = [[e for e in t if e.labels["kind"] == "per_call"] for t in ticks]
    assert _firing(per_call[62]) == [("firing", "CostSpike", "P3")]
    assert _firing(per_call[63]) == [("resolved", "CostSpike", "P3"), ("firing", "CostSpike", "P2")]
    assert per_call[64] == []
    # 10x from the first minute: pending and firing at P1.
    _, ticks = _run([(20, 0.01)] * 60 + [(20, 0.1)] * 3)
    events = [e for t in ticks for e in t if e.labels["kind"] == "per_call"]
    assert [(e.status, e.severity) for e in events] == [("pending", "P1"), ("firing", "P1")]


def test_a_pending_spike_that_clears_goes_back_to_inactive() -> None:
    _, ticks = _run([(20, 0.01)] * 60 + [(10, 0.02), (20, 0.01)])
    assert _firing(ticks[60]) == [("pending", "CostSpike", "P3")]
    assert _firing(ticks[61]) == [("inactive", "CostSpike", "P3")]


# --- exposition, API, persistence ---------------------------------------------------------------------
def _busy_tracker() -> BudgetTracker:
    tracker = BudgetTracker(load_budgets(EXAMPLE))
    t = _ns(2026, 3, 10, 9)
    for i in range(30):
        tracker.observe_call(
            _call(t + i * 10**9, 2.0, tenant="acme", input_tokens=1000, cache_read=400, index=i)
        )
    tracker.evaluate(t + MINUTE_NS)
    return tracker


def test_metrics_text_passes_promtool_and_carries_the_figures() -> None:
    tracker = _busy_tracker()
    text = tracker.metrics_text()
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.stdout + result.stderr, result.returncode) == ("", 0)
    lines = set(text.splitlines())
    acme = 'budget="tenant-acme",scope="tenant"'
    assert f'otel_llm_budget_spend_usd{{{acme},period="daily"}} 60.0' in lines
    assert f'otel_llm_budget_limit_usd{{{acme},period="daily"}} 8.0' in lines
    assert f'otel_llm_budget_ratio{{{acme},period="daily"}} 7.5' in lines
    assert f'otel_llm_budget_band{{{acme},period="daily",band="escalate"}} 1' in lines
    assert f'otel_llm_budget_band{{{acme},period="daily",band="fine"}} 0' in lines
    elapsed_days = 9 + (9 * 60 + 1) / 1440  # March 10th, 09:01
    projected = next(
        line for line in lines if line.startswith(f"otel_llm_budget_projected_month_end_usd{{{acme}}}")
    )
    assert float(projected.rsplit(" ", 1)[1]) == pytest.approx(60.0 * 31 / elapsed_days)
    assert f'otel_llm_cache_hit_ratio{{{acme},period="monthly"}} 0.4' in lines
    # support-bot has no tenant segment requirement: it sees the same calls; support-answer does not.
    assert 'otel_llm_budget_spend_usd{budget="support-bot",scope="service",period="daily"} 60.0' in lines
    assert 'otel_llm_budget_spend_usd{budget="support-answer",scope="feature",period="daily"} 0.0' in lines
    assert not any(line.startswith('otel_llm_budget_limit_usd{budget="support-answer"') and "daily" in line
                   for line in lines)  # fmt: skip
    assert BudgetTracker([]).metrics_text() == ""


def test_api_lists_budgets_through_the_router() -> None:
    tracker = _busy_tracker()
    router = Router()
    budget_api.register(router, tracker, threading.Lock())
    response = router.dispatch(Request("GET", "/api/v1/budgets"))
    assert response.status == 200
    document = json.loads(response.body)
    assert document["at_ns"] == _ns(2026, 3, 10, 9, 1)
    acme = next(b for b in document["budgets"] if b["name"] == "tenant-acme")
    assert acme["match"] == {"tenant": "acme"}
    assert acme["daily"]["band"] == "escalate"
    assert acme["daily"]["spend_usd"] == 60.0
    assert acme["firing"] == ["BudgetOverrun/P1", "BudgetOverrun/P1"]  # daily and monthly, P1 per the file
    one = json.loads(router.dispatch(Request("GET", "/api/v1/budgets", query={"name": ["support-bot"]})).body)
    assert [b["name"] for b in one["budgets"]] == ["support-bot"]
    missing = router.dispatch(Request("GET", "/api/v1/budgets", query={"name": ["nope"]}))
    assert missing.status == 404
    assert "tenant-acme" in json.loads(missing.body)["error"]


def test_snapshot_restores_spend_and_alert_states() -> None:
    tracker = _busy_tracker()
    saved = json.loads(json.dumps(tracker.snapshot()))
    restored = BudgetTracker(load_budgets(EXAMPLE))
    restored.restore(saved)
    # Everything but the last spike judgement, which the next tick makes again.
    assert {**restored.status("tenant-acme").to_dict(), "spikes": []} == {
        **tracker.status("tenant-acme").to_dict(),
        "spikes": [],
    }
    assert restored.status("tenant-acme").monthly.spend_usd == 60.0
    assert restored.active_alerts() == tracker.active_alerts()
    # The restored alert resolves on the next day like the original would.
    out = restored.evaluate(_ns(2026, 3, 11, 0, 1))
    assert [(e.status, e.labels["budget"], e.labels["period"], e.severity) for e in out] == [
        ("resolved", "support-bot", "daily", "P2"),
        ("resolved", "tenant-acme", "daily", "P1"),
    ]
    with pytest.raises(ValueError, match="version"):
        restored.restore({"version": 99})


def test_event_time_must_not_go_backwards() -> None:
    tracker = BudgetTracker([BudgetSpec(name="bot", daily_usd=1)])
    tracker.evaluate(_ns(2026, 3, 10, 9))
    with pytest.raises(ValueError, match="backwards"):
        tracker.evaluate(_ns(2026, 3, 10, 8))
