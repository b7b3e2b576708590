"""Safe automatic rollback: the `auto_rollback` rule action, with its safeguards, in event time.

When an alert whose rule lists `auto_rollback` starts firing on a series with a prompt name, the controller
decides, then acts through the prompt registry:

1. the series must be the prompt's active version (a regression of an old version is not a reason to
   roll the current one back) and have a valid rollback reference (exists, content hash verified);
2. safeguards: at least `min_interval_seconds` (15 minutes) since the last automatic rollback of that
   prompt, at most `max_per_day` (3) in the trailing 24 hours; beyond that it is manual only, and the
   decision says so (it goes into the alert's annotations);
3. the canary comparison, when there is one: if the alerting version is judged no worse than the rollback
   reference on every metric compared (canary verdict `pass`), including a conclusive `pass` on the metric
   the alert is about, rolling back would not help (the regression is not the version's: a provider, data
   or traffic change hits both), so it is refused, manual only; `marginal`, `fail`, `inconclusive`, or a
   comparison that did not judge the alert's metric let the rule's verdict stand;
4. in `dry_run` mode it records what it would have done and changes nothing;
5. otherwise it snapshots the series' figures for the post-mortem, switches the active version
   (`registry.rollback(..., automatic=True)`, audited by the registry), and starts a recovery watch: after
   `recovery_seconds` of event time the alert's metric is read again and the rollback is reported as
   recovered or not.

"No rollback on insufficient data" holds by construction: a rule fires only on a verdict with enough
samples. Every decision is kept (bounded) for `/api/v1/rollbacks` and counted for `/metrics`.
Pure logic apart from the registry calls; time is the alert's event time. Not thread-safe: the pipeline's
one caller owns it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from otel_llm_collector.alerts import AlertEvent, format_time

NS: Final = 1_000_000_000


class RollbackTarget(Protocol):
    """What the controller needs of the prompt registry. Calls may block briefly (SQLite) and raise
    the registry's own errors, which the controller records as a failed decision."""

    def active_version(self, name: str) -> str | None: ...

    def rollback_reference(self, name: str) -> str | None:
        """The version a rollback would activate, verified; None when there is none."""
        ...

    def rollback(self, name: str, *, by: str, reason: str, automatic: bool) -> str:
        """Activate the rollback reference; returns the version now active."""
        ...


@dataclass(frozen=True)
class RollbackSettings:
    enabled: bool = True
    dry_run: bool = False
    min_interval_seconds: float = 15 * 60
    max_per_day: int = 3
    recovery_seconds: float = 15 * 60


@dataclass
class Decision:
    """One rollback decision, for the API, the alert and the post-mortem."""

    prompt: str
    at_ns: int
    alert: str
    from_version: str
    to_version: str = ""
    outcome: str = ""
    """`rolled_back`, `dry_run`, `refused` or `failed`."""
    reason: str = ""
    snapshot: dict[str, Any] = field(default_factory=dict)
    recovery: str = ""
    """`pending`, then `recovered` or `not_recovered` after the watch."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "time": format_time(self.at_ns),
            "alert": self.alert,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "outcome": self.outcome,
            "reason": self.reason,
            "snapshot": self.snapshot,
            "recovery": self.recovery,
        }


MetricReader = Callable[[AlertEvent], Any]
"""Reads the alerting series' figures now, for the post-mortem snapshot (JSON-compatible); None without."""

CanaryVerdict = Callable[[str, str, str, AlertEvent], tuple[str, float | None] | None]
"""`(prompt, baseline, candidate, alert) -> (verdict, score)` of the canary comparison on the alert's own
metric; None when there is none (no data, or the alert's metric was not compared conclusively)."""


class RollbackController:
    def __init__(
        self,
        target: RollbackTarget,
        settings: RollbackSettings | None = None,
        *,
        read_metric: MetricReader | None = None,
        canary: CanaryVerdict | None = None,
        max_decisions: int = 500,
    ) -> None:
        self.target = target
        self.settings = settings or RollbackSettings()
        self._read = read_metric
        self._canary = canary
        self.decisions: deque[Decision] = deque(maxlen=max_decisions)
        self._history: dict[str, list[int]] = {}
        self._watch: list[tuple[int, Decision, AlertEvent]] = []
        self.counts: dict[str, int] = {}

    def consider(self, event: AlertEvent) -> Decision | None:
        """Act on a firing alert whose rule asks for a rollback; None when it does not concern one."""
        if event.status != "firing" or "auto_rollback" not in event.actions or not self.settings.enabled:
            return None
        prompt = event.labels.get("prompt_name", "")
        version = event.labels.get("prompt_version", "")
        if not prompt:
            return None
        decision = Decision(prompt=prompt, at_ns=event.at_ns, alert=event.alertname, from_version=version)
        try:
            self._decide(decision, event)
        except Exception as exc:  # the registry's errors: the decision records them, nothing raises
            decision.outcome, decision.reason = "failed", f"{type(exc).__name__}: {exc}"
        self.decisions.append(decision)
        self.counts[decision.outcome] = self.counts.get(decision.outcome, 0) + 1
        return decision

    def _decide(self, decision: Decision, event: AlertEvent) -> None:
        settings = self.settings
        prompt = decision.prompt
        active = self.target.active_version(prompt)
        if active != decision.from_version:
            decision.outcome = "refused"
            decision.reason = f"version {decision.from_version} is not the active one ({active})"
            return
        reference = self.target.rollback_reference(prompt)
        if not reference:
            decision.outcome = "refused"
            decision.reason = "no valid rollback reference: manual action needed"
            return
        decision.to_version = reference
        recent = [t for t in self._history.get(prompt, []) if event.at_ns - t < 24 * 3600 * NS]
        if recent and event.at_ns - recent[-1] < settings.min_interval_seconds * NS:
            decision.outcome = "refused"
            decision.reason = (
                f"an automatic rollback of {prompt} ran {(event.at_ns - recent[-1]) / 60e9:.0f} min ago "
                f"(minimum {settings.min_interval_seconds / 60:.0f} min): manual action needed"
            )
            return
        if len(recent) >= settings.max_per_day:
            decision.outcome = "refused"
            decision.reason = (
                f"{len(recent)} automatic rollbacks of {prompt} in 24 hours (limit {settings.max_per_day}): "
                "automatic rollback is off for this prompt; manual action needed"
            )
            return
        canary = (
            self._canary(prompt, reference, decision.from_version, event)
            if self._canary is not None
            else None
        )
        if canary is not None and canary[0] == "pass":
            decision.outcome = "refused"
            decision.reason = (
                f"canary: {decision.from_version} is no worse than {reference} on every metric compared "
                f"(score {canary[1]:.0f}): rolling back would not help; manual action needed"
            )
            return
        figures = self._read(event) if self._read is not None else None
        decision.snapshot = {"figures": figures, "alert_value": event.value, **dict(event.annotations)}
        reason = f"{event.alertname} fired at {format_time(event.at_ns)} (value {event.value})"
        if settings.dry_run:
            decision.outcome, decision.reason = "dry_run", f"would roll back: {reason}"
            return
        decision.to_version = self.target.rollback(prompt, by="otel-llm", reason=reason, automatic=True)
        decision.outcome, decision.reason, decision.recovery = "rolled_back", reason, "pending"
        self._history[prompt] = [*recent, event.at_ns]
        self._watch.append((event.at_ns + int(settings.recovery_seconds * NS), decision, event))

    def check_recovery(self, at_ns: int, *, recovered: Callable[[AlertEvent], bool | None]) -> list[Decision]:
        """Close the recovery watches that are due; `recovered(alert)` tells whether the metric came back."""
        due = [w for w in self._watch if w[0] <= at_ns]
        self._watch = [w for w in self._watch if w[0] > at_ns]
        done = []
        for _, decision, event in due:
            verdict = recovered(event)
            decision.recovery = "recovered" if verdict else "not_recovered" if verdict is False else "unknown"
            done.append(decision)
        return done

    def annotations(self, decision: Decision) -> Mapping[str, str]:
        """What an alert says about the rollback it triggered (or why there was none)."""
        return {
            "rollback": decision.outcome,
            "rollback_to": decision.to_version,
            "rollback_reason": decision.reason,
        }
