"""Each notifier's payload as a real HTTP receiver sees it, and how HTTP outcomes become results."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from notify_support import T0, make_alert, minutes, resolved
from otel_llm_collector.notify import (
    Alert,
    AlertmanagerNotifier,
    AlertStatus,
    DeliveryResult,
    Notification,
    Outcome,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
    group_key,
    pagerduty_dedup_key,
    parse_retry_after,
)
from otel_llm_collector.notify_config import DEFAULT_GROUP_BY
from otel_llm_collector.testing_receivers import RecordingReceiver, Reply


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as server:
        yield server


def notification(*alerts: Alert, target: str = "t") -> Notification:
    key = group_key(alerts[0].labels, DEFAULT_GROUP_BY)
    status: AlertStatus = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    labels = {k: alerts[0].labels[k] for k in DEFAULT_GROUP_BY}
    return Notification(target, key, status, tuple(alerts), dedup_key="d", group_labels=labels)


def test_alertmanager_receives_the_v2_alert_list(receiver: RecordingReceiver) -> None:
    firing = make_alert()
    done = resolved(make_alert(service="search"), T0 + minutes(5))
    result = AlertmanagerNotifier(url=receiver.url + "/").send(notification(firing, done))
    assert result == DeliveryResult.ok(200)
    [request] = receiver.wait_for(1)
    assert (request.method, request.path) == ("POST", "/api/v2/alerts")
    assert request.headers["content-type"] == "application/json"
    first, second = request.json()
    assert first == {
        "labels": dict(firing.labels),
        "annotations": dict(firing.annotations),
        "startsAt": "2025-03-04T10:22:00.000Z",
    }
    assert second["endsAt"] == "2025-03-04T10:27:00.000Z"
    assert second["labels"]["service"] == "search"


def test_webhook_receives_alertmanagers_webhook_payload(receiver: RecordingReceiver) -> None:
    p1 = make_alert(severity="P1")
    p2 = make_alert(severity="P2", value="0.61")
    notifier = WebhookNotifier(url=receiver.url + "/hook", receiver="audit", bearer_token="s3cret")
    assert notifier.send(notification(p1, p2)).outcome is Outcome.OK
    [request] = receiver.wait_for(1)
    assert request.headers["authorization"] == "Bearer s3cret"
    body = request.json()
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["receiver"] == "audit"
    assert body["groupKey"].startswith('{}:{alertname="FaithfulnessLow", feature="support"')
    assert body["groupLabels"]["prompt_version"] == "v2"
    assert "severity" not in body["commonLabels"]  # P1 and P2 differ
    assert body["commonLabels"]["service"] == "checkout"
    assert "value" not in body["commonAnnotations"]
    assert body["commonAnnotations"]["runbook_url"] == "https://runbooks.example.com/faithfulness"
    assert [a["labels"]["severity"] for a in body["alerts"]] == ["P1", "P2"]
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert body["alerts"][0]["fingerprint"] == p1.fingerprint
    assert p1.fingerprint != p2.fingerprint


def test_slack_message_is_concise_and_escaped(receiver: RecordingReceiver) -> None:
    alert = make_alert(severity="P2", feature="<b>&co")
    assert SlackNotifier(url=receiver.url + "/services/T/B/X").send(notification(alert)).outcome is Outcome.OK
    body = receiver.wait_for(1)[0].json()
    assert body["text"] == ("[FIRING P2] FaithfulnessLow checkout/<b>&co · rag-answer@v2 · gpt-4o-mini: 0.55")
    section, context = body["blocks"]
    assert ":red_circle: *FIRING · P2 · FaithfulnessLow*" in section["text"]["text"]
    fields = [f["text"] for f in section["fields"]]
    assert fields == [
        "*Series*\ncheckout/&lt;b&gt;&amp;co · rag-answer@v2 · gpt-4o-mini",
        "*Value*\n0.55",
        "*Deployment*\ncheckout 1.4.2 at 10:12 (strong)",
    ]
    assert context["elements"][0]["text"] == "<https://runbooks.example.com/faithfulness|Runbook>"


def test_slack_resolved_message(receiver: RecordingReceiver) -> None:
    alert = resolved(make_alert(severity="P3"), T0 + minutes(30))
    SlackNotifier(url=receiver.url).send(notification(alert))
    body = receiver.wait_for(1)[0].json()
    assert body["text"].startswith("[RESOLVED P3] FaithfulnessLow")
    assert ":large_green_circle: *RESOLVED" in body["blocks"][0]["text"]["text"]


def test_pagerduty_trigger_and_resolve_share_a_stable_dedup_key(receiver: RecordingReceiver) -> None:
    notifier = PagerDutyNotifier(url=receiver.url + "/v2/enqueue", routing_key="R0UT1NG")
    firing = make_alert(severity="P0")
    assert notifier.send(notification(firing)).outcome is Outcome.OK
    later = make_alert(severity="P0", starts_at=T0 + minutes(1), value="0.31")  # same group, same labels
    assert notifier.send(notification(resolved(later, T0 + minutes(20)))).outcome is Outcome.OK
    trigger, resolve = (r.json() for r in receiver.wait_for(2, path="/v2/enqueue"))
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert trigger["dedup_key"] == pagerduty_dedup_key(group_key(firing.labels, DEFAULT_GROUP_BY))
    assert trigger["dedup_key"] == "otel-llm-" + trigger["dedup_key"][len("otel-llm-") :]
    assert len(trigger["dedup_key"]) < 255
    assert trigger["routing_key"] == "R0UT1NG"
    assert trigger["event_action"] == "trigger"
    payload = trigger["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"] == "[P0] FaithfulnessLow on checkout/support"
    assert payload["source"] == "checkout"
    assert payload["custom_details"]["deployment"] == "checkout 1.4.2 at 10:12 (strong)"
    assert payload["custom_details"]["value"] == "0.55"
    assert trigger["links"] == [{"href": "https://runbooks.example.com/faithfulness", "text": "Runbook"}]
    assert resolve == {"routing_key": "R0UT1NG", "event_action": "resolve", "dedup_key": trigger["dedup_key"]}


@pytest.mark.parametrize(("severity", "expected"), [("P0", "critical"), ("P1", "error"), ("P2", "warning")])
def test_pagerduty_severity_mapping(receiver: RecordingReceiver, severity: str, expected: str) -> None:
    PagerDutyNotifier(url=receiver.url, routing_key="k").send(notification(make_alert(severity=severity)))
    assert receiver.wait_for(1)[0].json()["payload"]["severity"] == expected


def test_429_with_retry_after_seconds_is_a_retry_with_that_delay(receiver: RecordingReceiver) -> None:
    receiver.script(Reply(429, headers={"Retry-After": "7"}, body=b"slow down"))
    result = SlackNotifier(url=receiver.url).send(notification(make_alert()))
    assert result == DeliveryResult.retry("HTTP 429: slow down", retry_after_seconds=7.0, status_code=429)


def test_503_with_retry_after_http_date(receiver: RecordingReceiver) -> None:
    now = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
    receiver.script(Reply(503, headers={"Retry-After": format_datetime(now + minutes(2), usegmt=True)}))
    notifier = WebhookNotifier(url=receiver.url, clock=now.timestamp)
    result = notifier.send(notification(make_alert()))
    assert (result.outcome, result.retry_after_seconds, result.status_code) == (Outcome.RETRY, 120.0, 503)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Tue, 04 Mar 2025 10:00:30 GMT", 30.0),
        ("Tue, 04 Mar 2025 09:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2025, 3, 4, 10, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (408, Outcome.RETRY),
        (400, Outcome.PERMANENT_FAILURE),
        (403, Outcome.PERMANENT_FAILURE),
        (302, Outcome.PERMANENT_FAILURE),
        (202, Outcome.OK),
    ],
)
def test_status_codes_map_to_outcomes(receiver: RecordingReceiver, status: int, outcome: Outcome) -> None:
    receiver.script(Reply(status, headers={"Location": "http://127.0.0.1:1/elsewhere"}))
    result = PagerDutyNotifier(url=receiver.url, routing_key="k").send(notification(make_alert()))
    assert (result.outcome, result.status_code) == (outcome, status)
    assert len(receiver.requests) == 1  # no redirect followed, no retry inside the notifier


def test_connection_refused_is_a_retry_without_the_url_in_the_reason() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T000/B000/SECRETTOKEN"
    result = SlackNotifier(url=url, timeout_seconds=2).send(notification(make_alert()))
    assert result.outcome is Outcome.RETRY
    assert "SECRETTOKEN" not in result.reason
    assert str(port) not in result.reason
    assert "SECRETTOKEN" not in repr(SlackNotifier(url=url))


def test_a_slow_target_is_cut_off_by_the_timeout(receiver: RecordingReceiver) -> None:
    receiver.script(Reply(200, delay_seconds=5))
    result = WebhookNotifier(url=receiver.url, timeout_seconds=0.3).send(notification(make_alert()))
    assert result.outcome is Outcome.RETRY
    assert "timed out" in result.reason


def test_alert_round_trips_through_the_webhook_shape() -> None:
    alert = resolved(make_alert(), T0 + minutes(3))
    again = Alert.from_mapping(alert.to_mapping())
    assert again == alert
    assert Alert.from_mapping({**alert.to_mapping(), "fingerprint": ""}).fingerprint == alert.fingerprint
    with pytest.raises(ValueError, match="timezone"):
        Alert("firing", {}, {}, datetime(2025, 1, 1))
    note = notification(alert)
    assert Notification.from_json(note.to_json()) == note
