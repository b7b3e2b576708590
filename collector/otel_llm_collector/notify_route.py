"""Routing alerts to targets, and the Alertmanager re-send policy.

`Router.route(alerts, now=...)` takes alert events from the alert engine (`notify.Alert`, in the shape of
Alertmanager's webhook alerts) and returns the `Notification` records to put in the outbox:

- chat, paging and webhook targets get one notification per alert group when the group changes: an alert
  starts firing or resolves. Re-feeding the same state (every evaluation, or after a restart) produces
  notifications with the same dedup key, which the outbox ignores; annotation-only changes (a new
  ``value``) notify nobody.
- Alertmanager targets get what `ResendPolicy` says is due: new and changed alerts at once, firing ones
  again at most every ``resend_interval_seconds`` with an ``endsAt`` lease of four intervals, resolved
  ones for 15 minutes. Alertmanager dedups, groups and routes on its side; the lease means a collector
  that dies lets its alerts resolve instead of firing forever.

`Router.tick(now)` returns the Alertmanager re-sends due at ``now`` without new events; call it every few
seconds of event time (the watermark). All times are event time, passed in: nothing here reads a clock,
so replay gives the same notifications as living through the same traffic.

Default routing (see `notify_config`): P0/P1 page (PagerDuty), P2/P3 chat (Slack), Alertmanager and
webhook targets everything.

Threading: `Router` methods may be called from any thread (one lock; no I/O, never blocks on the
network). `ResendPolicy` is plain state without a lock; the router serialises access to its own.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from otel_llm_collector.notify import (
    Alert,
    AlertmanagerNotifier,
    AlertStatus,
    Notification,
    Notifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    format_time,
    group_key,
)
from otel_llm_collector.notify_config import DEFAULT_GROUP_BY, SEVERITIES, NotifySettings, TargetKind

__all__ = ["ResendPolicy", "Route", "Router", "build_notifier"]


@dataclass(slots=True)
class _Tracked:
    alert: Alert
    last_sent: datetime | None = None
    resolved_at: datetime | None = None


class ResendPolicy:
    """Decides which alerts to (re)send to Alertmanager at a given event time.

    Prometheus' rule: a firing alert is sent when it starts and then at most every resend interval, each
    time with ``endsAt = now + lease_resend_intervals * interval``; a resolved alert is sent with ``endsAt``
    = its resolve time, again every interval, until ``resolved_resend_seconds`` after it resolved.
    """

    def __init__(
        self,
        *,
        resend_interval_seconds: float = 60.0,
        lease_resend_intervals: int = 4,
        resolved_resend_seconds: float = 900.0,
    ) -> None:
        if resend_interval_seconds <= 0 or lease_resend_intervals < 1 or resolved_resend_seconds < 0:
            raise ValueError("resend policy: intervals must be positive")
        self.interval = timedelta(seconds=resend_interval_seconds)
        self.lease = self.interval * lease_resend_intervals
        self.resolved_retention = timedelta(seconds=resolved_resend_seconds)
        self._tracked: dict[str, _Tracked] = {}

    def __len__(self) -> int:
        return len(self._tracked)

    def observe(self, alert: Alert, *, now: datetime) -> None:
        """Record the latest state of an alert. A new alert, a re-fire (new ``starts_at``) or a resolution
        is due at once; the same state again only updates the annotations sent next time."""
        tracked = self._tracked.get(alert.fingerprint)
        if alert.status == "firing":
            if tracked and tracked.alert.status == "firing" and tracked.alert.starts_at == alert.starts_at:
                tracked.alert = alert
            else:
                self._tracked[alert.fingerprint] = _Tracked(alert)
            return
        resolved_at = alert.ends_at or now
        if tracked and tracked.alert.status == "resolved" and tracked.resolved_at == resolved_at:
            tracked.alert = replace(alert, ends_at=resolved_at)
        else:
            self._tracked[alert.fingerprint] = _Tracked(
                replace(alert, ends_at=resolved_at), None, resolved_at
            )

    def due(self, now: datetime) -> list[Alert]:
        """The alerts to send at ``now``, with their ``endsAt`` set; marks them sent. Resolved alerts past
        their retention are forgotten here, so memory follows the number of live alerts."""
        out: list[Alert] = []
        for fingerprint, tracked in list(self._tracked.items()):
            resolved_at = tracked.resolved_at
            sent = tracked.last_sent
            if resolved_at is not None and sent is not None and now - resolved_at >= self.resolved_retention:
                del self._tracked[fingerprint]
                continue
            if tracked.last_sent is not None and now - tracked.last_sent < self.interval:
                continue
            tracked.last_sent = now
            ends_at = now + self.lease if resolved_at is None else resolved_at
            out.append(replace(tracked.alert, ends_at=ends_at))
        return out


@dataclass(frozen=True, slots=True)
class Route:
    """A target, the severities it takes, how it groups, and the notifier that reaches it."""

    target: str
    kind: TargetKind
    notifier: Notifier
    severities: frozenset[str] = frozenset(SEVERITIES)
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY


def build_notifier(
    target_kind: TargetKind,
    *,
    name: str,
    url: str,
    timeout_seconds: float,
    routing_key: str = "",
    bearer_token: str = "",
    clock: Callable[[], float] = time.time,
) -> Notifier:
    """The notifier for one kind of target."""
    if target_kind == "alertmanager":
        return AlertmanagerNotifier(
            url=url, timeout_seconds=timeout_seconds, bearer_token=bearer_token, clock=clock
        )
    if target_kind == "slack":
        return SlackNotifier(url=url, timeout_seconds=timeout_seconds, clock=clock)
    if target_kind == "pagerduty":
        return PagerDutyNotifier(
            url=url, timeout_seconds=timeout_seconds, clock=clock, routing_key=routing_key
        )
    return WebhookNotifier(
        url=url, timeout_seconds=timeout_seconds, bearer_token=bearer_token, clock=clock, receiver=name
    )


def _event_key(alerts: Iterable[Alert]) -> str:
    """Identity of a set of transitions: which alerts, in which state, since when (not annotations)."""
    parts = sorted(
        f"{a.fingerprint}|{a.status}|{format_time(a.starts_at)}"
        + ("" if a.status == "firing" or a.ends_at is None else f"|{format_time(a.ends_at)}")
        for a in alerts
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


@dataclass(slots=True)
class _Group:
    labels: dict[str, str]
    firing: dict[str, Alert] = field(default_factory=dict)


class Router:
    """Turns alert events into notifications per target (see the module docs)."""

    def __init__(self, routes: Sequence[Route], *, resend_policy: ResendPolicy | None = None) -> None:
        names = [route.target for route in routes]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate route targets: {names}")
        self.routes = tuple(routes)
        self.resend_policy = resend_policy or ResendPolicy()
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str], _Group] = {}

    @classmethod
    def from_settings(
        cls,
        settings: NotifySettings,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Router:
        """Build notifiers from the settings, reading secrets from ``environ`` (default ``os.environ``);
        raises `notify_config.MissingSecretError` naming the setting when one is unset."""
        env = os.environ if environ is None else environ
        routes = []
        for target in settings.targets:
            secrets = target.secrets(env)
            notifier = build_notifier(
                target.kind,
                name=target.name,
                url=secrets.url,
                timeout_seconds=target.timeout_seconds,
                routing_key=secrets.routing_key,
                bearer_token=secrets.bearer_token,
                clock=clock,
            )
            routes.append(
                Route(target.name, target.kind, notifier, target.effective_severities(), target.group_by)
            )
        policy = ResendPolicy(
            resend_interval_seconds=settings.resend_interval_seconds,
            lease_resend_intervals=settings.lease_resend_intervals,
            resolved_resend_seconds=settings.resolved_resend_seconds,
        )
        return cls(routes, resend_policy=policy)

    @property
    def notifiers(self) -> dict[str, Notifier]:
        """Target name -> notifier: what the outbox needs to deliver."""
        return {route.target: route.notifier for route in self.routes}

    def route(self, alerts: Iterable[Alert], *, now: datetime) -> list[Notification]:
        """Notifications for these alert events at event time ``now`` (plus Alertmanager re-sends due)."""
        alerts = list(alerts)
        out: list[Notification] = []
        with self._lock:
            for route in self.routes:
                if route.kind != "alertmanager":
                    out += self._transitions(route, [a for a in alerts if a.severity in route.severities])
            if any(route.kind == "alertmanager" for route in self.routes):
                for alert in alerts:
                    self.resend_policy.observe(alert, now=now)
                out += self._resends(now)
        return out

    def tick(self, now: datetime) -> list[Notification]:
        """Alertmanager re-sends due at event time ``now``."""
        with self._lock:
            return self._resends(now)

    def _transitions(self, route: Route, alerts: list[Alert]) -> list[Notification]:
        by_group: dict[str, list[Alert]] = {}
        labels_of: dict[str, dict[str, str]] = {}
        for alert in alerts:
            key = group_key(alert.labels, route.group_by)
            by_group.setdefault(key, []).append(alert)
            labels_of[key] = {name: alert.labels[name] for name in route.group_by if name in alert.labels}
        out = []
        for key, members in by_group.items():
            group = self._groups.setdefault((route.target, key), _Group(labels_of[key]))
            changed: list[Alert] = []
            resolved: list[Alert] = []
            for alert in members:
                previous = group.firing.get(alert.fingerprint)
                if alert.status == "firing":
                    if previous is None or previous.starts_at != alert.starts_at:
                        changed.append(alert)
                    group.firing[alert.fingerprint] = alert
                else:
                    changed.append(alert)
                    resolved.append(alert)
                    group.firing.pop(alert.fingerprint, None)
            if not group.firing:
                del self._groups[(route.target, key)]
            if not changed:
                continue
            status: AlertStatus = "firing" if group.firing else "resolved"
            out.append(
                Notification(
                    target=route.target,
                    group_key=key,
                    status=status,
                    alerts=(*group.firing.values(), *resolved),
                    dedup_key=_event_key(changed),
                    group_labels=group.labels,
                )
            )
        return out

    def _resends(self, now: datetime) -> list[Notification]:
        due = self.resend_policy.due(now)
        out = []
        for route in self.routes:
            if route.kind != "alertmanager":
                continue
            selected = tuple(a for a in due if a.severity in route.severities)
            if not selected:
                continue
            status: AlertStatus = "firing" if any(a.status == "firing" for a in selected) else "resolved"
            out.append(
                Notification(
                    target=route.target,
                    group_key="alertmanager",
                    status=status,
                    alerts=selected,
                    dedup_key=f"{format_time(now)}|{_event_key(selected)}",
                    ttl_seconds=self.resend_policy.lease.total_seconds(),
                )
            )
        return out
