"""Notifications: the alert and notification records, the `Notifier` boundary, and the four notifiers.

The alert engine hands over alerts in the shape of Alertmanager's webhook alerts (`Alert`, or a mapping
through `Alert.from_mapping`); the `Router` (`notify_route`) turns them into `Notification` records, one per
target and alert group, which go through the durable outbox (`outbox`) to a `Notifier`.

Every notifier has one method, ``send(notification) -> DeliveryResult``. Expected failures (connection
refused, timeout, 429, 5xx, a 400 from the target) come back as results, never as exceptions:

- ``ok``: the target accepted it (2xx);
- ``retry``: try again later, after ``retry_after_seconds`` when the server said so (429/503
  ``Retry-After``, seconds or an HTTP date), else after the outbox's backoff; connection errors, timeouts,
  408, 425, 429 and 5xx;
- ``permanent_failure``: the target rejected it (other 4xx, a redirect); retrying cannot help.

Threading contract for every notifier here: ``send`` may be called from any thread, blocks for at most its
``timeout_seconds`` (one HTTP request with stdlib ``urllib``; no retries inside), holds no shared state, and
raises only on programmer errors. Error reasons never contain the URL or a credential: a Slack webhook URL
and a PagerDuty routing key are secrets.

Payloads:

- `AlertmanagerNotifier`: ``POST {url}/api/v2/alerts`` with the list of alerts (labels, annotations,
  startsAt, endsAt, generatorURL). Alertmanager does its own grouping, inhibition and routing.
- `SlackNotifier`: an incoming webhook message, ``{"text": ..., "blocks": [...]}`` with status, severity,
  alert name, series, value, deployment and a runbook link.
- `PagerDutyNotifier`: Events API v2, ``trigger`` / ``resolve`` with a ``dedup_key`` derived from the
  alert group's labels only, so it is stable across restarts and re-sends and PagerDuty keeps one incident.
- `WebhookNotifier`: Alertmanager's webhook payload (version "4", groupKey, status, receiver, groupLabels,
  commonLabels, commonAnnotations, alerts), so receivers written for Alertmanager work unchanged.
"""

from __future__ import annotations

import enum
import hashlib
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

__all__ = [
    "ZERO_TIME",
    "Alert",
    "AlertStatus",
    "AlertmanagerNotifier",
    "DeliveryResult",
    "Notification",
    "Notifier",
    "Outcome",
    "PagerDutyNotifier",
    "SlackNotifier",
    "WebhookNotifier",
    "alertmanager_payload",
    "format_time",
    "group_key",
    "pagerduty_dedup_key",
    "pagerduty_payload",
    "parse_retry_after",
    "parse_time",
    "post_json",
    "slack_payload",
    "webhook_payload",
]

AlertStatus = Literal["firing", "resolved"]
ZERO_TIME: Final = "0001-01-01T00:00:00Z"
"""How Alertmanager's webhook writes the endsAt of an alert that has not ended."""
_SEVERITY_ORDER: Final = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}
_PAGERDUTY_SEVERITY: Final = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info"}
_MAX_RESPONSE_BYTES: Final = 64 * 1024


# --- time ---------------------------------------------------------------------------------------------
def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, as Alertmanager and PagerDuty accept."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str | datetime | None) -> datetime | None:
    """An RFC 3339 string (or a datetime) as an aware UTC datetime; None and Go's zero time as None."""
    if value is None or value == "" or value == ZERO_TIME:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    if parsed.year <= 1:
        return None
    return parsed.astimezone(UTC)


# --- records ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Alert:
    """One alert in the shape of Alertmanager's webhook alerts (``labels`` carry ``alertname``,
    ``severity`` P0..P3 and the series labels; ``annotations`` carry summary, description, value,
    runbook_url, deployment). ``ends_at`` is None while firing; a resolved alert's ``ends_at`` is the
    event time it resolved."""

    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    fingerprint: str = ""
    """Stable identity of the label set; derived from the labels when empty."""
    generator_url: str = ""

    def __post_init__(self) -> None:
        if self.status not in ("firing", "resolved"):
            raise ValueError(f"alert status must be 'firing' or 'resolved', not {self.status!r}")
        if self.starts_at.tzinfo is None or (self.ends_at is not None and self.ends_at.tzinfo is None):
            raise ValueError("alert timestamps must be timezone-aware")
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))
        if not self.fingerprint:
            text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(self.labels.items()))
            object.__setattr__(self, "fingerprint", hashlib.sha256(text.encode()).hexdigest()[:16])

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Alert:
        """Read the webhook alert shape (``startsAt``/``endsAt`` RFC 3339 strings or datetimes)."""
        starts_at = parse_time(data["startsAt"])
        if starts_at is None:
            raise ValueError("alert startsAt is required")
        return cls(
            status=data.get("status", "firing"),
            labels={str(k): str(v) for k, v in data.get("labels", {}).items()},
            annotations={str(k): str(v) for k, v in data.get("annotations", {}).items()},
            starts_at=starts_at,
            ends_at=parse_time(data.get("endsAt")),
            fingerprint=str(data.get("fingerprint", "")),
            generator_url=str(data.get("generatorURL", "")),
        )

    def to_mapping(self) -> dict[str, Any]:
        """The webhook alert shape, as Alertmanager's webhook sends it."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": format_time(self.starts_at),
            "endsAt": ZERO_TIME if self.ends_at is None else format_time(self.ends_at),
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


def group_key(labels: Mapping[str, str], group_by: Sequence[str]) -> str:
    """Alertmanager's spelling of a group: ``{}:{alertname="x", service="y"}`` (missing labels omitted)."""
    pairs = ", ".join(f"{name}={json.dumps(labels[name])}" for name in sorted(group_by) if name in labels)
    return "{}:{" + pairs + "}"


def pagerduty_dedup_key(key: str) -> str:
    """A short stable PagerDuty ``dedup_key`` for a group key (PagerDuty allows 255 characters)."""
    return "otel-llm-" + hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one target about one alert group: the unit the outbox stores and delivers."""

    target: str
    group_key: str
    status: AlertStatus
    """``firing`` while any alert of the group fires, else ``resolved``."""
    alerts: tuple[Alert, ...]
    dedup_key: str
    """With (target, status), identifies the notification: enqueueing it twice is a no-op."""
    group_labels: Mapping[str, str] = field(default_factory=dict)
    ttl_seconds: float | None = None
    """Delivering it later than this after enqueueing is pointless (an Alertmanager lease superseded by
    the next re-send); the outbox then drops it as expired instead of sending stale state."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "target": self.target,
                "group_key": self.group_key,
                "status": self.status,
                "dedup_key": self.dedup_key,
                "group_labels": dict(self.group_labels),
                "ttl_seconds": self.ttl_seconds,
                "alerts": [alert.to_mapping() for alert in self.alerts],
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Notification:
        data = json.loads(text)
        return cls(
            target=data["target"],
            group_key=data["group_key"],
            status=data["status"],
            alerts=tuple(Alert.from_mapping(a) for a in data["alerts"]),
            dedup_key=data["dedup_key"],
            group_labels=data.get("group_labels", {}),
            ttl_seconds=data.get("ttl_seconds"),
        )


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    PERMANENT_FAILURE = "permanent_failure"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one send attempt achieved; see the module docs for which failures retry."""

    outcome: Outcome
    retry_after_seconds: float | None = None
    reason: str = ""
    status_code: int | None = None

    @classmethod
    def ok(cls, status_code: int | None = None) -> DeliveryResult:
        return cls(Outcome.OK, status_code=status_code)

    @classmethod
    def retry(
        cls, reason: str, *, retry_after_seconds: float | None = None, status_code: int | None = None
    ) -> DeliveryResult:
        return cls(Outcome.RETRY, retry_after_seconds, reason, status_code)

    @classmethod
    def permanent_failure(cls, reason: str, *, status_code: int | None = None) -> DeliveryResult:
        return cls(Outcome.PERMANENT_FAILURE, None, reason, status_code)


class Notifier(Protocol):
    """Delivers one notification. May block up to its own timeout; returns a result for expected
    failures and raises only on bugs."""

    def send(self, notification: Notification) -> DeliveryResult: ...


# --- HTTP ---------------------------------------------------------------------------------------------
def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or
    unreadable. A date in the past means zero."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET without body: report it as a failure instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirects)


def _classify(status: int, retry_after: float | None, detail: str) -> DeliveryResult:
    reason = f"HTTP {status}" + (f": {detail}" if detail else "")
    if 200 <= status < 300:
        return DeliveryResult.ok(status)
    if status in (408, 425, 429) or status >= 500:
        return DeliveryResult.retry(reason, retry_after_seconds=retry_after, status_code=status)
    return DeliveryResult.permanent_failure(reason, status_code=status)


def post_json(
    url: str,
    body: Any,
    *,
    timeout_seconds: float,
    headers: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> DeliveryResult:
    """POST ``body`` as JSON; one attempt bounded by ``timeout_seconds``; never raises for I/O errors."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body, separators=(",", ":")).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "otel-llm-collector", **(headers or {})},
    )
    try:
        with _OPENER.open(request, timeout=timeout_seconds) as response:
            response.read(_MAX_RESPONSE_BYTES)
            return _classify(int(response.status), None, "")
    except urllib.error.HTTPError as error:
        with error:
            retry_after = parse_retry_after(error.headers.get("Retry-After"), now=clock())
            try:
                detail = error.read(200).decode("utf-8", "replace").strip().replace("\n", " ")
            except (OSError, http.client.HTTPException):
                detail = ""
        return _classify(error.code, retry_after, detail)
    except urllib.error.URLError as error:
        return DeliveryResult.retry(f"connection failed: {error.reason}")
    except (OSError, http.client.HTTPException) as error:
        return DeliveryResult.retry(f"{type(error).__name__}: {error}")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# --- payloads -----------------------------------------------------------------------------------------
def _by_severity(alerts: Sequence[Alert]) -> list[Alert]:
    return sorted(
        alerts, key=lambda a: (a.status != "firing", _SEVERITY_ORDER.get(a.severity, 9), a.fingerprint)
    )


def _series(labels: Mapping[str, str]) -> str:
    prompt = labels.get("prompt_name", "")
    if prompt and labels.get("prompt_version"):
        prompt += "@" + labels["prompt_version"]
    parts = ["/".join(p for p in (labels.get("service", ""), labels.get("feature", "")) if p), prompt]
    parts.append(labels.get("model", ""))
    return " · ".join(p for p in parts if p) or "all series"


def alertmanager_payload(notification: Notification) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts``."""
    out = []
    for alert in notification.alerts:
        item: dict[str, Any] = {
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "startsAt": format_time(alert.starts_at),
        }
        if alert.ends_at is not None:
            item["endsAt"] = format_time(alert.ends_at)
        if alert.generator_url:
            item["generatorURL"] = alert.generator_url
        out.append(item)
    return out


def _common(mappings: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not mappings:
        return {}
    first = mappings[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in mappings[1:])}


def webhook_payload(notification: Notification, *, receiver: str, external_url: str = "") -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4)."""
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": 0,
        "status": notification.status,
        "receiver": receiver,
        "groupLabels": dict(notification.group_labels),
        "commonLabels": _common([a.labels for a in notification.alerts]),
        "commonAnnotations": _common([a.annotations for a in notification.alerts]),
        "externalURL": external_url,
        "alerts": [alert.to_mapping() for alert in notification.alerts],
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, label: str) -> str:
    if not url.startswith(("http://", "https://")):
        return ""
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{label}>"


def slack_payload(notification: Notification, *, max_alerts: int = 5) -> dict[str, Any]:
    """A concise incoming-webhook message: one section per alert (at most ``max_alerts``)."""
    alerts = _by_severity(notification.alerts)
    top = alerts[0]
    word = "FIRING" if notification.status == "firing" else "RESOLVED"
    headline = f"[{word} {top.severity}] {top.alertname} {_series(top.labels)}"
    if top.annotations.get("value"):
        headline += f": {top.annotations['value']}"
    blocks: list[dict[str, Any]] = []
    for alert in alerts[:max_alerts]:
        icon = ":red_circle:" if alert.status == "firing" else ":large_green_circle:"
        title = f"{icon} *{alert.status.upper()} · {alert.severity} · {_slack_escape(alert.alertname)}*"
        summary = alert.annotations.get("summary", "")
        text = title + (f"\n{_slack_escape(summary)}" if summary else "")
        fields = [("Series", _series(alert.labels))]
        fields += [(name.capitalize(), alert.annotations[name]) for name in ("value", "deployment")]
        fields = [(name, value) for name, value in fields if value]
        block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}
        if fields:
            block["fields"] = [
                {"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"[:2000]}
                for name, value in fields
            ]
        blocks.append(block)
        link = _slack_link(alert.annotations.get("runbook_url", ""), "Runbook")
        if link:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    if len(alerts) > max_alerts:
        more = f"and {len(alerts) - max_alerts} more in this group"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": headline[:3000], "blocks": blocks}


def pagerduty_payload(notification: Notification, *, routing_key: str) -> dict[str, Any]:
    """An Events API v2 event: ``trigger`` while the group fires, ``resolve`` when it has resolved."""
    dedup_key = pagerduty_dedup_key(notification.group_key)
    if notification.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    alerts = _by_severity(notification.alerts)
    top = alerts[0]
    summary = top.annotations.get("summary") or f"{top.alertname} on {_series(top.labels)}"
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "otel-llm",
        "payload": {
            "summary": f"[{top.severity}] {summary}"[:1024],
            "severity": _PAGERDUTY_SEVERITY.get(top.severity, "error"),
            "source": top.labels.get("service") or "otel-llm",
            "timestamp": format_time(top.starts_at),
            "class": top.alertname,
            "component": top.labels.get("feature", ""),
            "group": top.labels.get("prompt_name", ""),
            "custom_details": {
                "series": _series(top.labels),
                "value": top.annotations.get("value", ""),
                "deployment": top.annotations.get("deployment", ""),
                "alerts": [{"labels": dict(a.labels), "annotations": dict(a.annotations)} for a in alerts],
            },
        },
    }
    runbook = top.annotations.get("runbook_url", "")
    if runbook.startswith(("http://", "https://")):
        event["links"] = [{"href": runbook, "text": "Runbook"}]
    return event


# --- notifiers ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, repr=False)
class _HttpTarget:
    url: str
    timeout_seconds: float = 10.0
    bearer_token: str = ""
    clock: Callable[[], float] = time.time

    def __repr__(self) -> str:
        return f"{type(self).__name__}(timeout_seconds={self.timeout_seconds})"

    def _post(self, url: str, body: Any) -> DeliveryResult:
        return post_json(
            url,
            body,
            timeout_seconds=self.timeout_seconds,
            headers=_auth(self.bearer_token),
            clock=self.clock,
        )


@dataclass(frozen=True, slots=True, repr=False)
class AlertmanagerNotifier(_HttpTarget):
    """Posts alerts to an Alertmanager's API v2 (``url`` is its base URL)."""

    def send(self, notification: Notification) -> DeliveryResult:
        return self._post(self.url.rstrip("/") + "/api/v2/alerts", alertmanager_payload(notification))


@dataclass(frozen=True, slots=True, repr=False)
class WebhookNotifier(_HttpTarget):
    """Posts Alertmanager's webhook payload to ``url``; ``receiver`` names this target in it."""

    receiver: str = "otel-llm"
    external_url: str = ""

    def send(self, notification: Notification) -> DeliveryResult:
        body = webhook_payload(notification, receiver=self.receiver, external_url=self.external_url)
        return self._post(self.url, body)


@dataclass(frozen=True, slots=True, repr=False)
class SlackNotifier(_HttpTarget):
    """Posts to a Slack incoming webhook (``url`` is the secret webhook URL)."""

    def send(self, notification: Notification) -> DeliveryResult:
        return self._post(self.url, slack_payload(notification))


@dataclass(frozen=True, slots=True, repr=False)
class PagerDutyNotifier(_HttpTarget):
    """Sends PagerDuty Events API v2 events (``url`` is the ``/v2/enqueue`` endpoint)."""

    routing_key: str = ""

    def send(self, notification: Notification) -> DeliveryResult:
        return self._post(self.url, pagerduty_payload(notification, routing_key=self.routing_key))
