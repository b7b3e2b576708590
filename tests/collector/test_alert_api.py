"""The alert and deployment API over a real pipeline fed the blind-spot scenario."""

from __future__ import annotations

import json
import threading

import pytest
from otel_llm_collector import scenarios
from otel_llm_collector.alert_api import AlertLog, alert_metrics, register
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.evaluator import build_evaluator
from otel_llm_collector.pipeline import Pipeline
from otel_llm_collector.router import Request, Router
from otel_llm_collector.rules import load_default_rules
from otel_llm_collector.windows import WindowEngine

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def app() -> tuple[Router, Pipeline, AlertLog]:
    log = AlertLog()
    pipeline = Pipeline(WindowEngine(), build_evaluator(load_default_rules()), on_events=log.record)
    for request in scenarios.blind_spot().requests():
        pipeline.apply(decode_traces(request))
        if pipeline.engine.now_ns >= scenarios.at(10, 40):
            break
    router = Router()
    register(router, pipeline, threading.Lock(), log, api_token=lambda: TOKEN)
    return router, pipeline, log


def _call(
    router: Router, method: str, path: str, body: object = None, token: str | None = None
) -> tuple[int, dict]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    raw = json.dumps(body).encode() if body is not None else b""
    response = router.dispatch(Request(method, path, {}, headers, raw))
    return response.status, json.loads(response.body)


def test_firing_alert_is_listed_with_its_deployment(app: tuple[Router, Pipeline, AlertLog]) -> None:
    router, _, _ = app
    status, body = _call(router, "GET", "/api/v1/alerts")
    assert status == 200
    firing = [a for a in body["alerts"] if a["status"] == "firing" and not a["inhibited"]]
    assert [a["labels"]["alertname"] for a in firing] == ["faithfulness-p1"]
    assert "service_version=1.1.0" in firing[0]["annotations"]["deployment"]
    assert any(e["status"] == "firing" for e in body["recent"])


def test_alert_metrics_expose_the_active_alert(app: tuple[Router, Pipeline, AlertLog]) -> None:
    _, pipeline, log = app
    lines = alert_metrics(pipeline, log)
    active = [line for line in lines if line.startswith("otel_llm_alert{")]
    assert any('alertname="faithfulness-p1"' in line and 'state="firing"' in line for line in active)
    assert any(line.startswith('otel_llm_alert_transitions_total{status="firing"}') for line in lines)


def test_deployments_need_the_token(app: tuple[Router, Pipeline, AlertLog]) -> None:
    router, _, _ = app
    body = {"id": "deploy-42", "time": "2026-01-01T10:30:00Z", "components": {"service": "support-bot"}}
    assert _call(router, "POST", "/api/v1/deployments", body)[0] == 401
    assert _call(router, "POST", "/api/v1/deployments", body, token="wrong")[0] == 403
    status, created = _call(router, "POST", "/api/v1/deployments", body, token=TOKEN)
    assert status == 201
    assert created["deployment"]["time_ns"] == scenarios.at(10, 30)
    _, listed = _call(router, "GET", "/api/v1/deployments")
    ids = [d["id"] for d in listed["deployments"]]
    assert "deploy-42" in ids
    assert any(i.startswith("auto:") and "1.1.0" in i for i in ids)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"components": {}}, "id:"),
        ({"id": "x", "time": "yesterday"}, "time:"),
        ({"id": "x", "time": "2026-01-01T10:30:00"}, "timezone"),
        ({"id": "x", "components": {"a": 1}}, "components:"),
        ([1, 2], "body:"),
    ],
)
def test_bad_deployments_are_rejected_with_the_field(
    app: tuple[Router, Pipeline, AlertLog], body: object, message: str
) -> None:
    router, _, _ = app
    status, answer = _call(router, "POST", "/api/v1/deployments", body, token=TOKEN)
    assert status == 400
    assert message in answer["error"]


def test_no_configured_token_refuses_changes(app: tuple[Router, Pipeline, AlertLog]) -> None:
    _, pipeline, log = app
    router = Router()
    register(router, pipeline, threading.Lock(), log, api_token=lambda: None)
    status, answer = _call(router, "POST", "/api/v1/deployments", {"id": "x"}, token="anything")
    assert status == 403
    assert "no API token" in answer["error"]
