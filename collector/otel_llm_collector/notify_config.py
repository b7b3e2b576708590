"""Notification settings: where alerts go, which severities each target takes, and how the outbox retries.

One pydantic schema that the collector's config embeds (a ``notify:`` section)::

    notify:
      targets:
        - {name: am, kind: alertmanager, url: "http://alertmanager:9093"}
        - {name: oncall, kind: pagerduty, routing_key_env: PAGERDUTY_ROUTING_KEY}
        - {name: team-chat, kind: slack, url_env: SLACK_WEBHOOK_URL}
        - {name: audit, kind: webhook, url: "https://hooks.example.com/otel-llm", severities: [P0, P1]}
      outbox:
        max_age_seconds: 14400

Default routing when a target names no ``severities``: ``pagerduty`` pages for P0/P1, ``slack`` chats for
P2/P3, ``alertmanager`` and ``webhook`` receive everything.

Secrets never sit in the file: a Slack webhook URL (which is itself the credential) comes from the
environment variable named by ``url_env``, a PagerDuty routing key from ``routing_key_env``, a bearer token
for a webhook or an Alertmanager behind a proxy from ``bearer_token_env``. They are read once, when the
notifiers are built (`NotifyTarget.secrets`), and a missing one stops the start with an error that names the
setting and the variable, never the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_GROUP_BY",
    "DEFAULT_SEVERITIES",
    "PAGERDUTY_EVENTS_URL",
    "SEVERITIES",
    "MissingSecretError",
    "NotifySettings",
    "NotifyTarget",
    "OutboxSettings",
    "ResolvedSecrets",
    "Severity",
    "TargetKind",
]

TargetKind = Literal["alertmanager", "slack", "pagerduty", "webhook"]
Severity = Literal["P0", "P1", "P2", "P3"]
SEVERITIES: Final[tuple[Severity, ...]] = ("P0", "P1", "P2", "P3")
DEFAULT_SEVERITIES: Final[Mapping[str, tuple[Severity, ...]]] = {
    "pagerduty": ("P0", "P1"),
    "slack": ("P2", "P3"),
    "alertmanager": SEVERITIES,
    "webhook": SEVERITIES,
}
DEFAULT_GROUP_BY: Final = ("alertname", "service", "feature", "prompt_name", "prompt_version", "model")
PAGERDUTY_EVENTS_URL: Final = "https://events.pagerduty.com/v2/enqueue"
_NAME_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}$"


class MissingSecretError(ValueError):
    """An environment variable named in the notify settings is unset or empty (the message names both)."""


@dataclass(frozen=True, slots=True)
class ResolvedSecrets:
    """What a target needs at send time, read from the environment once. Never log an instance."""

    url: str
    routing_key: str = ""
    bearer_token: str = ""

    def __repr__(self) -> str:
        return "ResolvedSecrets(<redacted>)"


def _check_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value


class NotifyTarget(BaseModel):
    """One destination for notifications."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    """Unique; labels the outbox metrics (``target="..."``) and names the webhook ``receiver``."""
    kind: TargetKind
    url: str | None = None
    """Alertmanager: the base URL (``/api/v2/alerts`` is appended); others: the full URL. PagerDuty
    defaults to the public Events API v2 endpoint."""
    url_env: str | None = None
    """Read the URL from this environment variable instead (Slack webhook URLs are credentials)."""
    routing_key_env: str | None = None
    """PagerDuty: the environment variable holding the integration's routing key."""
    bearer_token_env: str | None = None
    """Optional ``Authorization: Bearer`` token for webhook and Alertmanager targets."""
    severities: tuple[Severity, ...] | None = None
    """Severities this target receives; None means the default for its kind (see the module docs)."""
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    """Labels that make one notification group (one PagerDuty incident, one Slack message)."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """Bound on one HTTP request, connect and read together."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @model_validator(mode="after")
    def _sources(self) -> Self:
        if self.url is not None and self.url_env is not None:
            raise ValueError(f"target {self.name}: set url or url_env, not both")
        if self.url is None and self.url_env is None and self.kind != "pagerduty":
            raise ValueError(f"target {self.name}: url or url_env is required for kind {self.kind}")
        if self.kind == "pagerduty" and not self.routing_key_env:
            raise ValueError(f"target {self.name}: routing_key_env is required for kind pagerduty")
        if self.kind != "pagerduty" and self.routing_key_env:
            raise ValueError(f"target {self.name}: routing_key_env only applies to kind pagerduty")
        return self

    def effective_severities(self) -> frozenset[str]:
        return frozenset(self.severities if self.severities is not None else DEFAULT_SEVERITIES[self.kind])

    def secrets(self, environ: Mapping[str, str] | None = None) -> ResolvedSecrets:
        """Read the URL and credentials; raise `MissingSecretError` naming the setting when one is unset."""
        env = os.environ if environ is None else environ

        def read(setting: str, variable: str) -> str:
            value = env.get(variable, "")
            if not value:
                raise MissingSecretError(
                    f"notify target {self.name}: {setting}: environment variable {variable} is not set"
                )
            return value

        if self.url_env is not None:
            url = read("url_env", self.url_env)
            try:
                _check_url(url)
            except ValueError:
                raise MissingSecretError(
                    f"notify target {self.name}: url_env: {self.url_env} does not hold an http(s) URL"
                ) from None
        else:
            url = self.url or PAGERDUTY_EVENTS_URL
        routing_key = read("routing_key_env", self.routing_key_env) if self.routing_key_env else ""
        token = read("bearer_token_env", self.bearer_token_env) if self.bearer_token_env else ""
        return ResolvedSecrets(url=url, routing_key=routing_key, bearer_token=token)


class OutboxSettings(BaseModel):
    """How the durable outbox retries, and when it gives up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retry_initial_interval_seconds: float = Field(default=2.0, gt=0)
    retry_max_interval_seconds: float = Field(default=300.0, gt=0)
    retry_multiplier: float = Field(default=2.0, ge=1)
    retry_jitter_ratio: float = Field(default=0.2, ge=0, lt=1)
    """Each delay is scaled by a uniform factor in [1 - ratio, 1 + ratio] so that many collectors
    recovering from the same outage do not retry in lockstep."""
    max_retry_after_seconds: float = Field(default=3600.0, gt=0)
    """A server's ``Retry-After`` is honoured up to this bound (a broken header must not park an item
    for days)."""
    max_age_seconds: float = Field(default=4 * 3600.0, gt=0)
    """An undelivered notification older than this is dead-lettered and counted: a page hours late
    misleads more than it helps."""
    retention_seconds: float = Field(default=24 * 3600.0, gt=0)
    """Delivered and dead-lettered rows are kept this long; it is also the window in which re-enqueueing
    the same notification (same target, dedup key, status) is a no-op."""
    in_flight_lease_seconds: float = Field(default=150.0, gt=0)
    """A claimed item is not retried by anyone else for this long; must exceed every target's timeout.
    After a crash mid-send the item is sent again once the lease ends (at-least-once)."""


class NotifySettings(BaseModel):
    """Targets, the outbox, and the Alertmanager resend policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: tuple[NotifyTarget, ...] = ()
    outbox: OutboxSettings = OutboxSettings()
    resend_interval_seconds: float = Field(default=60.0, gt=0)
    """Alertmanager targets: a firing alert is re-sent at most this often (event time)."""
    lease_resend_intervals: int = Field(default=4, ge=2)
    """A firing alert's ``endsAt`` is set this many resend intervals ahead, so a collector that dies lets
    its alerts resolve in Alertmanager instead of firing forever."""
    resolved_resend_seconds: float = Field(default=900.0, ge=0)
    """Alertmanager targets: a resolved alert keeps being re-sent this long, in case one send was lost."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [target.name for target in self.targets]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"targets: duplicate names {duplicates}")
        slowest = max((target.timeout_seconds for target in self.targets), default=0.0)
        if self.outbox.in_flight_lease_seconds <= slowest:
            raise ValueError(
                f"outbox.in_flight_lease_seconds ({self.outbox.in_flight_lease_seconds}) must exceed the "
                f"largest target timeout_seconds ({slowest})"
            )
        return self
