"""Control charts: documented run lengths measured by simulation, the zone rules, learning, persistence."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable

import otel_llm_collector.spc
import pytest
from otel_llm_collector.spc import (
    CusumChart,
    Direction,
    EwmaChart,
    Rule,
    Signal,
    WesternElectricChart,
    chart_from_dict,
    make_chart,
)

ChartFactory = Callable[[], WesternElectricChart | EwmaChart | CusumChart]


def average_run_length(make: ChartFactory, *, shift: float, runs: int, seed: int) -> tuple[float, int]:
    """Mean points to the first signal over `runs` fresh charts fed N(shift, 1); and how many runs
    signalled in the direction of the shift."""
    rng = random.Random(seed)
    gauss = rng.gauss
    total = 0
    right_way = 0
    for _ in range(runs):
        update = make().update
        n = 0
        while True:
            n += 1
            signal = update(gauss(shift, 1.0))
            if signal is not None:
                right_way += signal.direction is (Direction.DOWN if shift < 0 else Direction.UP)
                break
        total += n
    return total / runs, right_way


# (chart, documented ARL0, documented ARL1 for a 1-sigma shift). 2,000 runs estimate an ARL0 to about
# +-2.2% (one standard error, run lengths being nearly geometric) and an ARL1 to about +-1.5%.
DOCUMENTED = [
    pytest.param(lambda: WesternElectricChart(mean=0.0, sigma=1.0), 91.75, 9.22, id="western_electric"),
    pytest.param(lambda: EwmaChart(mean=0.0, sigma=1.0), 368.0, 8.79, id="ewma"),
    pytest.param(lambda: CusumChart(mean=0.0, sigma=1.0), 467.0, 10.35, id="cusum"),
]


@pytest.mark.parametrize(("make", "arl0", "arl1"), DOCUMENTED)
def test_in_control_run_length_matches_documented_arl0(make: ChartFactory, arl0: float, arl1: float) -> None:
    measured, _ = average_run_length(make, shift=0.0, runs=2000, seed=20240501)
    assert measured == pytest.approx(arl0, rel=0.08)


@pytest.mark.parametrize(("make", "arl0", "arl1"), DOCUMENTED)
def test_one_sigma_drop_is_detected_within_documented_arl1(
    make: ChartFactory, arl0: float, arl1: float
) -> None:
    measured, downward = average_run_length(make, shift=-1.0, runs=2000, seed=7)
    assert measured == pytest.approx(arl1, rel=0.08)
    assert downward >= 0.97 * 2000


def test_documented_figures_are_the_tested_ones() -> None:
    for chart, arl0, arl1 in ((WesternElectricChart, "91.8", "9.22"), (EwmaChart, "368", "8.79")):
        assert chart.__doc__ is not None
        assert f"ARL0 {arl0}" in chart.__doc__
        assert f"ARL1 {arl1}" in chart.__doc__
    assert CusumChart.__doc__ is not None
    assert "ARL0 467, ARL1 10.35" in CusumChart.__doc__


@pytest.mark.parametrize(
    ("z_scores", "rule", "direction"),
    [
        ([0.0, 3.2], Rule.BEYOND_3_SIGMA, Direction.UP),
        ([0.0, -3.2], Rule.BEYOND_3_SIGMA, Direction.DOWN),
        ([2.5, 0.0, 2.5], Rule.TWO_OF_THREE_BEYOND_2_SIGMA, Direction.UP),
        ([-2.1, -2.1], Rule.TWO_OF_THREE_BEYOND_2_SIGMA, Direction.DOWN),
        ([1.5, 1.5, 0.5, 1.5, 1.5], Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA, Direction.UP),
        ([-1.2, -1.2, -1.2, 0.3, -1.2], Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA, Direction.DOWN),
        ([0.4] * 8, Rule.EIGHT_ON_ONE_SIDE, Direction.UP),
        ([-0.4] * 8, Rule.EIGHT_ON_ONE_SIDE, Direction.DOWN),
    ],
)
def test_western_electric_rule_fires_on_its_last_point(
    z_scores: list[float], rule: Rule, direction: Direction
) -> None:
    chart = WesternElectricChart(mean=0.88, sigma=0.02)
    signals = [chart.update(0.88 + z * 0.02) for z in z_scores]
    assert signals[:-1] == [None] * (len(z_scores) - 1)
    last = signals[-1]
    assert last is not None
    assert (last.rule, last.direction, last.index) == (rule, direction, len(z_scores))


@pytest.mark.parametrize(
    "z_scores",
    [
        [2.9, -2.9, 0.0],
        [2.5, -2.5, 1.0],
        [2.5, 0.0, 0.0, 2.5],
        [1.5, 1.5, 1.5, -0.5, 0.5, -1.5],
        [0.4] * 7 + [-0.1],
        [1.5, -1.5] * 10,
    ],
)
def test_western_electric_stays_quiet_on_mixed_points(z_scores: list[float]) -> None:
    chart = WesternElectricChart(mean=0.0, sigma=1.0)
    assert [chart.update(z) for z in z_scores] == [None] * len(z_scores)


def test_lowest_numbered_rule_is_reported() -> None:
    chart = WesternElectricChart(mean=0.0, sigma=1.0)
    for z in [0.5] * 7:
        assert chart.update(z) is None
    signal = chart.update(3.5)
    assert signal is not None
    assert signal.rule is Rule.BEYOND_3_SIGMA


def test_charts_learn_mean_and_sigma_from_warmup() -> None:
    rng = random.Random(3)
    chart = EwmaChart(warmup_points=50)
    values = [rng.gauss(0.88, 0.03) for _ in range(50)]
    assert [chart.update(v) for v in values] == [None] * 50
    assert chart.ready
    assert chart.mean == pytest.approx(0.88, abs=0.01)
    assert chart.sigma == pytest.approx(0.03, rel=0.25)
    drop = next(
        (s for _ in range(40) if (s := chart.update(rng.gauss(0.82, 0.03))) is not None),
        None,
    )
    assert drop is not None
    assert drop.direction is Direction.DOWN
    assert drop.rule is Rule.EWMA
    assert drop.index <= 10


def test_relearn_keeps_given_parameters_and_forgets_learned_ones() -> None:
    learned = CusumChart(warmup_points=5)
    given = CusumChart(mean=1.0, sigma=0.5)
    for v in [1.0, 2.0, 3.0, 4.0, 5.0]:
        learned.update(v)
        given.update(v)
    assert learned.mean == 3.0
    learned.relearn()
    given.relearn()
    assert not learned.ready
    assert (given.mean, given.sigma, given.ready) == (1.0, 0.5, True)


def test_constant_warmup_does_not_divide_by_zero() -> None:
    chart = WesternElectricChart(warmup_points=10)
    for _ in range(10):
        chart.update(1.0)
    assert chart.sigma is not None
    assert chart.sigma > 0
    assert chart.update(1.0) is None
    signal = chart.update(0.9)
    assert signal is not None
    assert signal.direction is Direction.DOWN


def test_cusum_restarts_after_a_signal() -> None:
    chart = CusumChart(mean=0.0, sigma=1.0, k=0.5, h=4.0)
    indexes = [i for i in range(1, 31) if chart.update(-2.0) is not None]
    # Each point adds 1.5 to the lower sum: > 4 on the third point, then again three points later.
    assert indexes == list(range(3, 31, 3))
    assert chart.upper == 0.0


def test_ewma_keeps_signalling_while_the_shift_lasts_and_recovers_after() -> None:
    chart = EwmaChart(mean=0.0, sigma=1.0)
    shifted = [chart.update(-2.0) for _ in range(20)]
    assert all(s is not None for s in shifted[5:])
    recovered = [chart.update(0.0) for _ in range(30)]
    assert recovered[-1] is None


def test_reset_forgets_recent_points() -> None:
    chart = WesternElectricChart(mean=0.0, sigma=1.0)
    for _ in range(7):
        chart.update(0.5)
    chart.reset()
    assert chart.update(0.5) is None
    assert chart.index == 1


def test_non_finite_values_are_ignored() -> None:
    chart = EwmaChart(mean=0.0, sigma=1.0)
    assert chart.update(math.nan) is None
    assert chart.update(math.inf) is None
    assert chart.index == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: WesternElectricChart(warmup_points=10),
        lambda: EwmaChart(lam=0.1, limit=2.7, warmup_points=10),
        lambda: CusumChart(mean=0.5, k=0.25, h=4.0, warmup_points=10),
    ],
)
def test_round_trip_through_json_continues_identically(make: ChartFactory) -> None:
    rng = random.Random(11)
    values = [rng.gauss(0.5, 0.1) for _ in range(15)] + [rng.gauss(0.4, 0.1) for _ in range(40)]
    original = make()
    for v in values[:20]:
        original.update(v)
    restored = chart_from_dict(json.loads(json.dumps(original.to_dict())))
    assert type(restored) is type(original)
    assert type(original).from_dict(original.to_dict()).to_dict() == original.to_dict()
    rest_a = [original.update(v) for v in values[20:]]
    rest_b = [restored.update(v) for v in values[20:]]
    assert rest_a == rest_b
    assert any(isinstance(s, Signal) for s in rest_a)


def test_from_dict_rejects_another_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        EwmaChart.from_dict(CusumChart().to_dict())
    with pytest.raises(ValueError, match="kind"):
        chart_from_dict({"kind": "shewhart"})


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: EwmaChart(lam=0.0), "lam"),
        (lambda: EwmaChart(limit=-1.0), "limit"),
        (lambda: CusumChart(h=0.0), "h"),
        (lambda: CusumChart(k=-0.1), "k"),
        (lambda: WesternElectricChart(sigma=0.0), "sigma"),
        (lambda: WesternElectricChart(mean=math.nan), "mean"),
        (lambda: WesternElectricChart(warmup_points=1), "warmup_points"),
    ],
)
def test_invalid_settings_name_the_setting(make: ChartFactory, setting: str) -> None:
    with pytest.raises(ValueError, match=f"^{setting}:"):
        make()


def test_signal_to_dict_is_plain_data() -> None:
    chart = WesternElectricChart(mean=0.0, sigma=1.0)
    signal = chart.update(-4.0)
    assert signal is not None
    assert json.loads(json.dumps(signal.to_dict())) == {
        "rule": "1_beyond_3_sigma",
        "direction": "down",
        "value": -4.0,
        "statistic": -4.0,
        "limit": -3.0,
        "index": 1,
    }


def test_public_api_is_pinned() -> None:
    assert sorted(otel_llm_collector.spc.__all__) == [
        "Chart",
        "CusumChart",
        "Direction",
        "EwmaChart",
        "Rule",
        "Signal",
        "WesternElectricChart",
        "chart_from_dict",
        "make_chart",
    ]
    for name in otel_llm_collector.spc.__all__:
        assert getattr(otel_llm_collector.spc, name) is not None


def test_make_chart_takes_rule_file_settings() -> None:
    ewma = make_chart("ewma", {"lambda": 0.1, "L": 2.7, "mean": 0.88, "sigma": 0.03})
    assert isinstance(ewma, EwmaChart)
    assert (ewma.lam, ewma.limit, ewma.mean) == (0.1, 2.7, 0.88)
    assert isinstance(make_chart("cusum", {"h": 4.0}), CusumChart)
    assert isinstance(make_chart("western_electric"), WesternElectricChart)
    with pytest.raises(ValueError, match=r"^kind:"):
        make_chart("shewhart")
    with pytest.raises(ValueError, match=r"^settings:.*gamma"):
        make_chart("ewma", {"gamma": 1})
    with pytest.raises(ValueError, match=r"^lam:"):
        make_chart("ewma", {"lambda": 2.0})
