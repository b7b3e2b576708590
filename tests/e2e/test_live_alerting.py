"""The live collector end to end: OTLP over real gRPC in, a faithfulness page out to webhook and Slack.

The blind-spot scenario is shifted so that it ends now, sent as fast as the collector takes it, and the
collector (a subprocess with its default rules) must page once, on the right series, naming the deployment,
through the durable outbox to local HTTP receivers standing in for the chat and paging services.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from otel_llm_collector import scenarios
from otel_llm_collector.testing_receivers import RecordingReceiver

from tests.e2e.collector_process import running_collector


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as r:
        yield r


@pytest.fixture
def collector(tmp_path: Path, receiver: RecordingReceiver) -> Iterator[dict[str, str]]:
    settings = {
        "notify": {
            "targets": [
                {"name": "hook", "kind": "webhook", "url": receiver.url + "/hook"},
                {"name": "chat", "kind": "slack", "url_env": "TEST_SLACK_URL"},
                {
                    "name": "page",
                    "kind": "pagerduty",
                    "url": receiver.url + "/pagerduty",
                    "routing_key_env": "TEST_PD_KEY",
                },
            ]
        }
    }
    env = {"TEST_SLACK_URL": receiver.url + "/slack", "TEST_PD_KEY": "pd-routing-key"}
    with running_collector(tmp_path, settings, env) as addresses:
        yield addresses


def _get(address: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
        return json.load(response)


def test_blind_spot_pages_through_the_live_collector(
    collector: dict[str, str], receiver: RecordingReceiver
) -> None:
    scenario = scenarios.blind_spot()
    offset = time.time_ns() - scenario.end_ns - 60 * 10**9  # the last call a minute ago
    with grpc.insecure_channel(collector["otlp_grpc"]) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda r: r.SerializeToString(),
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        for request in scenario.requests(offset_ns=offset):
            response = export(request, timeout=30)
            assert response.partial_success.rejected_spans == 0

    deadline = time.monotonic() + 60
    firing: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not firing:
        alerts = _get(collector["http"], "/api/v1/alerts")["alerts"]
        firing = [a for a in alerts if a["status"] == "firing" and not a["inhibited"]]
        time.sleep(0.2)
    assert [a["labels"]["alertname"] for a in firing] == ["faithfulness-p1"]
    assert "service_version=1.1.0" in firing[0]["annotations"]["deployment"]
    started = firing[0]["startsAt"]
    assert started  # an event-time timestamp of the scenario's incident, shifted

    # The durable outbox delivered it: to the webhook, and as a P1 to the pager, not to chat (P2/P3).
    hooks = receiver.wait_for(1, timeout_seconds=30, path="/hook")
    payload = hooks[0].json()
    assert payload["status"] == "firing"
    assert payload["commonLabels"]["alertname"] == "faithfulness-p1"
    (page,) = receiver.wait_for(1, timeout_seconds=30, path="/pagerduty")
    event = page.json()
    assert event["routing_key"] == "pd-routing-key"
    assert event["event_action"] == "trigger"
    assert "faithfulness" in json.dumps(event)
    assert [r for r in receiver.requests if r.path == "/slack"] == []

    with urllib.request.urlopen(f"http://{collector['http']}/metrics", timeout=30) as response:
        metrics = response.read().decode()
    assert 'otel_llm_alert{alertname="faithfulness-p1"' in metrics
    assert "otel_llm_collector_notifications_delivered_total" in metrics
