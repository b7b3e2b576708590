"""Routing and the Alertmanager resend policy: pure functions of alerts and event time."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from notify_support import T0, make_alert, minutes, resolved
from otel_llm_collector import notify, notify_config, notify_route, outbox, testing_receivers
from otel_llm_collector.notify import Notification
from otel_llm_collector.notify_config import MissingSecretError, NotifySettings, NotifyTarget, TargetKind
from otel_llm_collector.notify_route import ResendPolicy, Route, Router
from otel_llm_collector.testing_receivers import RecordingNotifier
from pydantic import ValidationError

LEASE = minutes(4)


def test_public_api_is_pinned() -> None:
    assert sorted(notify_route.__all__) == ["ResendPolicy", "Route", "Router", "build_notifier"]
    assert sorted(outbox.__all__) == [
        "DeadLetter",
        "DeliveryReport",
        "Outbox",
        "OutboxWorker",
        "PendingItem",
        "outbox_path",
    ]
    assert sorted(testing_receivers.__all__) == [
        "RecordedRequest",
        "RecordingNotifier",
        "RecordingReceiver",
        "Reply",
    ]
    for module in (notify, notify_config, notify_route, outbox, testing_receivers):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
    assert {"Alert", "Notification", "Notifier", "DeliveryResult", "Outcome"} <= set(notify.__all__)


# --- ResendPolicy -------------------------------------------------------------------------------------
def test_firing_alert_is_sent_at_once_then_at_most_every_interval_with_a_lease() -> None:
    policy = ResendPolicy()
    alert = make_alert()
    policy.observe(alert, now=T0)
    [sent] = policy.due(T0)
    assert (sent.status, sent.ends_at) == ("firing", T0 + LEASE)
    for seconds in (1, 30, 59):
        assert policy.due(T0 + timedelta(seconds=seconds)) == []
    [again] = policy.due(T0 + minutes(1))
    assert again.ends_at == T0 + minutes(1) + LEASE


def test_same_state_again_does_not_resend_early_but_carries_new_annotations() -> None:
    policy = ResendPolicy()
    policy.observe(make_alert(value="0.55"), now=T0)
    policy.due(T0)
    policy.observe(make_alert(value="0.52"), now=T0 + timedelta(seconds=20))
    assert policy.due(T0 + timedelta(seconds=20)) == []
    [sent] = policy.due(T0 + minutes(1))
    assert sent.annotations["value"] == "0.52"


def test_resolved_alert_is_sent_at_once_and_for_fifteen_minutes() -> None:
    policy = ResendPolicy()
    alert = make_alert()
    policy.observe(alert, now=T0)
    policy.due(T0)
    resolved_at = T0 + timedelta(seconds=30)
    policy.observe(resolved(alert, resolved_at), now=resolved_at)
    [sent] = policy.due(resolved_at)
    assert (sent.status, sent.ends_at) == ("resolved", resolved_at)
    sends = [len(policy.due(resolved_at + timedelta(seconds=s))) for s in range(10, 20 * 60, 10)]
    assert sum(sends) == 14  # every minute until 15 minutes after the resolution, then never
    assert len(policy) == 0


def test_resolution_without_ends_at_uses_the_event_time_and_a_refire_is_sent_at_once() -> None:
    policy = ResendPolicy()
    alert = make_alert()
    policy.observe(alert, now=T0)
    policy.due(T0)
    gone = resolved(alert, T0)
    policy.observe(replace(gone, ends_at=None), now=T0 + minutes(2))
    [sent] = policy.due(T0 + minutes(2))
    assert sent.ends_at == T0 + minutes(2)
    refire = make_alert(starts_at=T0 + minutes(3))
    policy.observe(refire, now=T0 + minutes(3))
    [sent] = policy.due(T0 + minutes(3))
    assert (sent.status, sent.starts_at) == ("firing", T0 + minutes(3))


# --- Router -------------------------------------------------------------------------------------------
def default_router() -> Router:
    kinds: dict[str, TargetKind] = {
        "am": "alertmanager",
        "pd": "pagerduty",
        "chat": "slack",
        "hook": "webhook",
    }
    settings = NotifySettings(
        targets=tuple(
            NotifyTarget(
                name=name, kind=kind, url="http://127.0.0.1:9", routing_key_env="PD" if name == "pd" else None
            )
            for name, kind in kinds.items()
        )
    )
    return Router.from_settings(settings, environ={"PD": "key"})


def targets(notifications: list[Notification]) -> list[str]:
    return sorted(n.target for n in notifications)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("P0", ["am", "hook", "pd"]),
        ("P1", ["am", "hook", "pd"]),
        ("P2", ["am", "chat", "hook"]),
        ("P3", ["am", "chat", "hook"]),
    ],
)
def test_default_routing_pages_p0_p1_and_chats_p2_p3(severity: str, expected: list[str]) -> None:
    assert targets(default_router().route([make_alert(severity=severity)], now=T0)) == expected


def test_annotation_updates_notify_nobody_and_alertmanager_waits_for_the_interval() -> None:
    router = default_router()
    router.route([make_alert()], now=T0)
    assert router.route([make_alert(value="0.50")], now=T0 + timedelta(seconds=10)) == []
    [resend] = router.tick(T0 + minutes(1))
    assert resend.target == "am"
    assert resend.alerts[0].annotations["value"] == "0.50"
    assert resend.ttl_seconds == 240


def test_the_same_transition_after_a_restart_has_the_same_dedup_key() -> None:
    first = default_router().route([make_alert()], now=T0)
    again = default_router().route([make_alert(value="0.5")], now=T0 + timedelta(seconds=5))
    key = {(n.target, n.dedup_key) for n in first if n.target != "am"}
    assert key == {(n.target, n.dedup_key) for n in again if n.target != "am"}


def test_a_group_stays_firing_until_its_last_alert_resolves() -> None:
    hook = RecordingNotifier()
    router = Router([Route("hook", "webhook", hook)])
    p1, p2 = make_alert(severity="P1"), make_alert(severity="P2")
    [opened] = router.route([p1, p2], now=T0)
    assert (opened.status, len(opened.alerts)) == ("firing", 2)
    [partial] = router.route([resolved(p2, T0 + minutes(5))], now=T0 + minutes(5))
    assert partial.status == "firing"
    assert [(a.severity, a.status) for a in partial.alerts] == [("P1", "firing"), ("P2", "resolved")]
    assert partial.group_key == opened.group_key
    [closed] = router.route([resolved(p1, T0 + minutes(9))], now=T0 + minutes(9))
    assert (closed.status, [a.status for a in closed.alerts]) == ("resolved", ["resolved"])
    assert len({opened.dedup_key, partial.dedup_key, closed.dedup_key}) == 3


def test_other_series_are_other_groups() -> None:
    router = Router([Route("hook", "webhook", RecordingNotifier())])
    out = router.route([make_alert(service="a"), make_alert(service="b")], now=T0)
    assert len({n.group_key for n in out}) == 2


# --- settings -----------------------------------------------------------------------------------------
def test_missing_secret_names_the_setting_and_variable_only() -> None:
    settings = NotifySettings(targets=(NotifyTarget(name="chat", kind="slack", url_env="SLACK_URL"),))
    with pytest.raises(MissingSecretError, match=r"chat: url_env: environment variable SLACK_URL is not set"):
        Router.from_settings(settings, environ={})
    with pytest.raises(MissingSecretError, match="does not hold an http") as info:
        Router.from_settings(settings, environ={"SLACK_URL": "hooks.slack.com/T/B/SECRET"})
    assert "SECRET" not in str(info.value)
    router = Router.from_settings(settings, environ={"SLACK_URL": "https://hooks.slack.com/T/B/SECRET"})
    assert "SECRET" not in repr(router.notifiers)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([{"name": "pd", "kind": "pagerduty"}], "routing_key_env is required"),
        ([{"name": "x", "kind": "slack"}], "url or url_env is required"),
        ([{"name": "x", "kind": "webhook", "url": "ftp://h"}], "http:// or https://"),
        ([{"name": "x", "kind": "webhook", "url": "http://h"}] * 2, "duplicate names"),
        ([{"name": "x", "kind": "webhook", "url": "http://h", "timeout_seconds": 100}], "in_flight_lease"),
        ([{"name": "x y", "kind": "webhook", "url": "http://h"}], "pattern"),
    ],
)
def test_invalid_settings_name_the_problem(targets: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NotifySettings.model_validate({"targets": targets, "outbox": {"in_flight_lease_seconds": 60}})


def test_default_severities_per_kind() -> None:
    pd = NotifyTarget(name="pd", kind="pagerduty", routing_key_env="K")
    assert pd.effective_severities() == {"P0", "P1"}
    assert pd.secrets({"K": "k"}).url == notify_config.PAGERDUTY_EVENTS_URL
    chat = NotifyTarget(name="c", kind="slack", url="https://x", severities=("P1", "P2"))
    assert chat.effective_severities() == {"P1", "P2"}
