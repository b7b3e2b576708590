"""The calibration loop: each prompt version's predicted quality against the quality measured in production.

A version registered with `baselines.quality` (say 0.85, from the offline evaluation that justified it)
makes a prediction. Per series of that version, at every tick, the monitor reads the mean of one evaluation
(`faithfulness` by default) over one window (1 hour by default) and computes

    calibration delta = measured mean - predicted quality

(negative: production is worse than predicted). `|delta| >= threshold` (0.10) with at least `min_samples`
(50) evaluations in the window, sustained for `sustain_seconds` (30 minutes) of event time, raises
`CalibrationDrift` (P3, `flag_for_review`): the offline evaluation no longer predicts production, so the
version's numbers need review. It is not a page: a miscalibrated version may still be a good one.

Both directions count. An overestimate is the dangerous one (the offline set is easier than the traffic);
an underestimate also says the offline set stopped describing production.

Pure: the caller passes the predictions and the window engine; no I/O. Not thread-safe (one owner).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from otel_llm_collector.alerts import AlertEvent, review_flag
from otel_llm_collector.exposition import escape_label_value
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.windows import WindowEngine

__all__ = ["CALIBRATION_ALERT", "CalibrationMonitor", "CalibrationSettings"]

NS: Final = 1_000_000_000
CALIBRATION_ALERT: Final = "CalibrationDrift"


class CalibrationSettings(BaseModel):
    """The `calibration:` section of the collector's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    evaluation: str = Field(default="faithfulness", min_length=1)
    """The evaluation whose mean is compared with `baselines.quality`."""
    window: Literal["5m", "15m", "1h", "24h"] = "1h"
    threshold: float = Field(default=0.10, gt=0, le=1)
    """Absolute difference of scores in [0, 1] that counts as drift."""
    min_samples: int = Field(default=50, ge=1)
    sustain_seconds: float = Field(default=1800.0, ge=0)


@dataclass(slots=True)
class _State:
    since_ns: int
    firing: bool = False


class CalibrationMonitor:
    """Calibration deltas per series and the `CalibrationDrift` review flag."""

    def __init__(self, settings: CalibrationSettings | None = None) -> None:
        self.settings = settings or CalibrationSettings()
        self.deltas: dict[SeriesKey, tuple[float, float, float, int]] = {}
        """series -> (predicted, measured, delta, samples) at the last tick, for `/metrics` and the API."""
        self._states: dict[SeriesKey, _State] = {}

    def evaluate(
        self, at_ns: int, predicted: Mapping[tuple[str, str], float], engine: WindowEngine
    ) -> list[AlertEvent]:
        """One tick: recompute every delta, return the flag's transitions (firing, resolved)."""
        settings = self.settings
        if not settings.enabled:
            return []
        deltas: dict[SeriesKey, tuple[float, float, float, int]] = {}
        events: list[AlertEvent] = []
        drifting: set[SeriesKey] = set()
        for key in self._keys(engine.series(), predicted):
            stats = engine.window(key, settings.window)
            evaluation = None if stats is None else stats.evaluations.get(settings.evaluation)
            if evaluation is None or evaluation.mean is None:
                continue
            prediction = predicted[(key.prompt_name, key.prompt_version)]
            delta = evaluation.mean - prediction
            deltas[key] = (prediction, evaluation.mean, delta, evaluation.samples)
            if evaluation.samples >= settings.min_samples and abs(delta) >= settings.threshold:
                drifting.add(key)
        self.deltas = deltas  # replaced whole: `/metrics` reads it from another thread
        for key in drifting:
            state = self._states.setdefault(key, _State(since_ns=at_ns))
            if not state.firing and at_ns - state.since_ns >= settings.sustain_seconds * NS:
                state.firing = True
                events.append(self._event(key, "firing", state.since_ns, at_ns))
        for key in [k for k in self._states if k not in drifting]:
            state = self._states.pop(key)
            if state.firing:
                events.append(self._event(key, "resolved", state.since_ns, at_ns))
        return events

    @staticmethod
    def _keys(series: Iterable[SeriesKey], predicted: Mapping[tuple[str, str], float]) -> list[SeriesKey]:
        return [k for k in series if (k.prompt_name, k.prompt_version) in predicted]

    def _event(self, key: SeriesKey, status: str, since_ns: int, at_ns: int) -> AlertEvent:
        settings = self.settings
        found = self.deltas.get(key)
        predicted, measured, delta = (found[0], found[1], found[2]) if found else (None, None, None)
        if found:
            summary = (
                f"{key.prompt_name} {key.prompt_version}: measured {settings.evaluation} {measured:.2f}, "
                f"predicted {predicted:.2f} (delta {delta:+.2f})"
            )
        else:
            summary = f"{key.prompt_name} {key.prompt_version}: calibration back within bounds"
        annotations = {
            "summary": summary,
            "description": f"The {settings.window} mean of {settings.evaluation} has differed from the "
            f"registry's predicted quality (baselines.quality) by {settings.threshold:g} or more for "
            f"{settings.sustain_seconds / 60:g} minutes: the offline evaluation no longer predicts "
            "production. Flagged for review.",
            "value": "" if delta is None else f"{delta:+.4g}",
            "runbook_url": "docs/runbooks/faithfulness.md",
        }
        return review_flag(
            key,
            alertname=CALIBRATION_ALERT,
            rule="calibration-drift",
            status=status,  # type: ignore[arg-type]
            since_ns=since_ns,
            at_ns=at_ns,
            value=delta,
            annotations=annotations,
        )

    def metrics_lines(self) -> list[str]:
        """`otel_llm_calibration_*` for every series with a prediction and a measurement."""
        deltas = self.deltas
        if not deltas:
            return []
        evaluation = escape_label_value(self.settings.evaluation)
        window = escape_label_value(self.settings.window)
        lines = [
            "# HELP otel_llm_calibration_predicted_quality The prompt version's baselines.quality.",
            "# TYPE otel_llm_calibration_predicted_quality gauge",
            "# HELP otel_llm_calibration_measured_quality Mean of the calibration evaluation in its window.",
            "# TYPE otel_llm_calibration_measured_quality gauge",
            "# HELP otel_llm_calibration_delta Measured minus predicted quality (negative: worse).",
            "# TYPE otel_llm_calibration_delta gauge",
        ]
        for key, (predicted, measured, delta, _) in sorted(deltas.items()):
            labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in key._asdict().items())
            labels += f',evaluation="{evaluation}",window="{window}"'
            lines.append(f"otel_llm_calibration_predicted_quality{{{labels}}} {predicted:.6g}")
            lines.append(f"otel_llm_calibration_measured_quality{{{labels}}} {measured:.6g}")
            lines.append(f"otel_llm_calibration_delta{{{labels}}} {delta:.6g}")
        return lines
