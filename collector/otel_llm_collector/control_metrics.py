"""Kill switches, canary verdicts and rollback times as Prometheus text lines, for `/metrics`.

    lines = kill_switch_lines(switches.list())
    lines += canary_metric_lines(canary, engine, active_versions=lambda: {"answer": "1.0.0"})
    lines += rollback_lines(controller.decisions)

The families (listed in `docs/metrics.md`)::

    otel_llm_kill_switch_active{service, feature, switch}           1 enabled, 0 switched off
    otel_llm_canary_score{prompt_name, baseline, candidate}         0-100, omitted while inconclusive
    otel_llm_canary_verdict{prompt_name, baseline, candidate, verdict}  1 for the verdict, 0 for the others
    otel_llm_canary_pairs_omitted                                   pairs left out by the limit
    otel_llm_rollback_timestamp_seconds{prompt_name, from_version, to_version, outcome}
                                                                    event time of the latest such decision

A switch that was switched off keeps its row in the store, so it stays on the page with 0: a dashboard
shows when it went off, not only that it vanished. A family without samples is left out.

Which versions a canary compares. A prompt is a canary while two or more of its versions serve at the same
time, that is, have calls in the 1-hour window. The baseline is the prompt's active version in the registry
when that version is serving (the version `POST /api/v1/prompts/promote` compares against); otherwise the
version that served the most calls in the window (a canary takes the smaller share of traffic; a tie goes
to the lower version string). Every other serving version is a candidate, judged against the baseline by
`CanaryCollector.compare` on everything it has sampled of both. At most `MAX_CANARY_PAIRS` pairs per
scrape, in order of prompt name and candidate; the rest are counted in `otel_llm_canary_pairs_omitted`.

Rollback times. One sample per (prompt, from version, to version, outcome) of the automatic rollback
controller's decisions (`RollbackController.decisions`): the event time, in Unix seconds, of the latest
decision with those labels, so that a dashboard can place a marker at the moment of the rollback (Grafana's
"series value as timestamp"). Only the `MAX_ROLLBACK_SERIES` most recently decided label sets are kept.
`to_version` is empty when a refused decision had no rollback reference. A rollback made by hand
(`POST /api/v1/prompts/rollback`) is no decision of the controller and is not here: the registry's audit
log (`GET /api/v1/audit`) has it.

`kill_switch_lines`, `canary_pairs`, `canary_lines` and `rollback_lines` are pure; `canary_metric_lines`
reads the engine's 1-hour windows and the canary samples, so call it under the lock that guards them (the
ingest worker's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, NamedTuple

from otel_llm_collector.canary import CanaryCollector, CanaryReport
from otel_llm_collector.exposition import escape_label_value
from otel_llm_collector.rollback import Decision
from otel_llm_collector.switches import Switch
from otel_llm_collector.windows import WindowEngine

__all__ = [
    "CANARY_VERDICTS",
    "MAX_CANARY_PAIRS",
    "MAX_ROLLBACK_SERIES",
    "SERVING_WINDOW",
    "CanaryPair",
    "canary_lines",
    "canary_metric_lines",
    "canary_pairs",
    "kill_switch_lines",
    "rollback_lines",
    "serving_calls",
]

CANARY_VERDICTS: Final = ("pass", "marginal", "fail", "inconclusive")
MAX_CANARY_PAIRS: Final = 50
"""Each pair costs rank tests over up to a few thousand samples per metric, under the ingest lock."""
SERVING_WINDOW: Final = "1h"
MAX_ROLLBACK_SERIES: Final = 50
"""The controller keeps up to 500 decisions; the page shows the latest label sets only."""


class CanaryPair(NamedTuple):
    prompt_name: str
    baseline: str
    candidate: str


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels.items())


def _family(name: str, type_: str, help_text: str, samples: Sequence[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {type_}", *samples] if samples else []


def kill_switch_lines(switches: Iterable[Switch]) -> list[str]:
    """`otel_llm_kill_switch_active`: one sample per switch in the store, 1 when enabled, 0 when off."""
    samples = []
    for switch in switches:
        labels = _labels(service=switch.service, feature=switch.feature, switch=switch.kind)
        samples.append(f"otel_llm_kill_switch_active{{{labels}}} {1 if switch.enabled else 0}")
    return _family(
        "otel_llm_kill_switch_active",
        "gauge",
        "Kill switch state by service, feature (* for all) and switch kind: 1 enabled, 0 switched off.",
        samples,
    )


def _unix_seconds(at_ns: int) -> str:
    """Nanoseconds as exact decimal seconds: `1800000000.25`, `1800000000`."""
    whole, rest = divmod(abs(at_ns), 1_000_000_000)
    text = f"{whole}.{rest:09d}".rstrip("0").rstrip(".")
    return f"-{text}" if at_ns < 0 else text


def rollback_lines(decisions: Iterable[Decision], *, max_series: int = MAX_ROLLBACK_SERIES) -> list[str]:
    """`otel_llm_rollback_timestamp_seconds` from rollback decisions in the order they were taken: per
    label set, the event time of its latest decision; the `max_series` most recent label sets, oldest
    first."""
    latest: dict[tuple[str, str, str, str], int] = {}
    for decision in decisions:
        key = (decision.prompt, decision.from_version, decision.to_version, decision.outcome)
        latest.pop(key, None)  # re-inserted last: the dict stays in order of the latest decision
        latest[key] = decision.at_ns
    kept = list(latest.items())[-max_series:] if max_series > 0 else []
    samples = []
    for (prompt, from_version, to_version, outcome), at_ns in kept:
        labels = _labels(
            prompt_name=prompt, from_version=from_version, to_version=to_version, outcome=outcome
        )
        samples.append(f"otel_llm_rollback_timestamp_seconds{{{labels}}} {_unix_seconds(at_ns)}")
    return _family(
        "otel_llm_rollback_timestamp_seconds",
        "gauge",
        "Event time (Unix seconds) of the latest automatic rollback decision by prompt, versions and "
        "outcome.",
        samples,
    )


def canary_pairs(
    serving: Mapping[str, Mapping[str, int]],
    active: Mapping[str, str],
    *,
    max_pairs: int = MAX_CANARY_PAIRS,
) -> tuple[list[CanaryPair], int]:
    """(pairs to compare, pairs omitted by `max_pairs`) from the calls per version of each prompt in the
    serving window and the registry's active version per prompt (see the module docstring)."""
    pairs: list[CanaryPair] = []
    for prompt in sorted(serving):
        calls = {version: n for version, n in serving[prompt].items() if n > 0}
        if len(calls) < 2:
            continue
        baseline = active.get(prompt)
        if baseline not in calls:
            baseline = min(calls, key=lambda version: (-calls[version], version))
        pairs += [CanaryPair(prompt, baseline, version) for version in sorted(calls) if version != baseline]
    return pairs[:max_pairs], max(0, len(pairs) - max_pairs)


def canary_lines(reports: Iterable[CanaryReport], *, omitted: int = 0) -> list[str]:
    """`otel_llm_canary_score`, `otel_llm_canary_verdict` and `otel_llm_canary_pairs_omitted`."""
    scores: list[str] = []
    verdicts: list[str] = []
    for report in reports:
        pair = _labels(prompt_name=report.group, baseline=report.baseline, candidate=report.candidate)
        if report.score is not None:
            scores.append(f"otel_llm_canary_score{{{pair}}} {float(report.score)!r}")
        for verdict in CANARY_VERDICTS:
            current = 1 if verdict == report.verdict else 0
            verdicts.append(f'otel_llm_canary_verdict{{{pair},verdict="{verdict}"}} {current}')
    return [
        *_family(
            "otel_llm_canary_score",
            "gauge",
            "Canary score of the candidate against the baseline: 100 * passing / conclusive metrics.",
            scores,
        ),
        *_family(
            "otel_llm_canary_verdict",
            "gauge",
            "Canary verdict of the candidate against the baseline: 1 for the current verdict, 0 otherwise.",
            verdicts,
        ),
        *_family(
            "otel_llm_canary_pairs_omitted",
            "gauge",
            "Canary pairs not compared on this scrape because of the pair limit.",
            [f"otel_llm_canary_pairs_omitted {omitted}"],
        ),
    ]


def serving_calls(engine: WindowEngine, prompts: Iterable[str]) -> dict[str, dict[str, int]]:
    """Calls per version of each of `prompts` in the engine's serving window (`SERVING_WINDOW`)."""
    wanted = set(prompts)
    calls: dict[str, dict[str, int]] = {}
    for key in engine.series():
        if key.prompt_name not in wanted:
            continue
        stats = engine.window(key, SERVING_WINDOW)
        if stats is not None and stats.count:
            versions = calls.setdefault(key.prompt_name, {})
            versions[key.prompt_version] = versions.get(key.prompt_version, 0) + stats.count
    return calls


def canary_metric_lines(
    canary: CanaryCollector,
    engine: WindowEngine,
    *,
    active_versions: Callable[[], Mapping[str, str]],
) -> list[str]:
    """The canary families for a collector comparing prompt versions. `active_versions` (prompt -> the
    registry's active version) is called only when some prompt has two versions serving."""
    if canary.dimension != "prompt_version":
        raise ValueError(f"canary_metric_lines: prompt versions only, not {canary.dimension!r}")
    # Cheap filters first: prompts with several versions among the engine's series, then in the canary.
    seen: dict[str, set[str]] = {}
    for key in engine.series():
        seen.setdefault(key.prompt_name, set()).add(key.prompt_version)
    sampled: dict[str, set[str]] = {}
    for prompt, versions in seen.items():
        if len(versions) > 1 and len(known := versions & set(canary.versions(prompt))) > 1:
            sampled[prompt] = known
    serving = {
        prompt: {version: n for version, n in calls.items() if version in sampled[prompt]}
        for prompt, calls in (serving_calls(engine, sampled) if sampled else {}).items()
    }
    if not any(len(versions) > 1 for versions in serving.values()):
        return canary_lines([])
    pairs, omitted = canary_pairs(serving, active_versions())
    reports = [canary.compare(p.prompt_name, baseline=p.baseline, candidate=p.candidate) for p in pairs]
    return canary_lines([r for r in reports if r is not None], omitted=omitted)
