"""Budgets in the live collector: a tenant's spend from decoded spans, the overrun alert, metrics, API."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from otel_llm_collector.alerting import Alerting
from otel_llm_collector.config import load_settings
from otel_llm_collector.decode import decode_traces
from otel_llm_collector.router import Request, Router
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.testing import SECOND_NS, SpanRecorder
from otel_llm_collector.windows import WindowEngine

from otel_llm import attributes as A

T0 = 1_800_000_000 * SECOND_NS - (1_800_000_000 * SECOND_NS) % (86_400 * SECOND_NS) + 8 * 3600 * SECOND_NS
"""08:00 UTC on some day."""


def test_the_tenant_attribute_reaches_the_call_record_as_a_segment() -> None:
    recorder = SpanRecorder(service="support-bot")
    recorder.genai_span(start_ns=T0, end_ns=T0 + SECOND_NS, extra={A.TENANT: "acme"})
    [call] = decode_traces(recorder.request()).calls
    assert ("tenant", "acme") in call.segments


def test_a_tenant_over_its_daily_budget_raises_an_overrun_and_shows_on_metrics(tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("budgets:\n  - {name: acme-daily, tenant: acme, daily_usd: 0.01}\n")
    settings = load_settings(None, {"state_dir": str(tmp_path / "state"), "budgets_file": str(budgets)})
    alerting = Alerting(settings, tmp_path / "state", Counters())
    try:
        pipeline = alerting.pipeline(WindowEngine())
        router = Router()
        alerting.register_routes(router, threading.Lock())
        # 40 calls of 0.00042 USD for acme (0.0168, 68% over), 40 for another tenant, over 20 minutes.
        for minute in range(20):
            recorder = SpanRecorder(service="support-bot")
            for i in range(4):
                start = T0 + minute * 60 * SECOND_NS + i * SECOND_NS
                tenant = "acme" if i % 2 == 0 else "globex"
                recorder.genai_span(
                    start_ns=start,
                    end_ns=start + SECOND_NS,
                    response_id=f"r{minute}-{i}",
                    extra={A.TENANT: tenant},
                )
            pipeline.apply(decode_traces(recorder.request()))
        active = [e for e in pipeline.active_alerts() if e.alertname == "BudgetOverrun"]
        lines = alerting.metrics_lines()
        response = router.dispatch(Request("GET", "/api/v1/budgets", {}, {}, b""))
    finally:
        alerting.stop()
    assert [(e.status, e.severity) for e in active] == [("firing", "P2")]
    [spend] = [
        line for line in lines if line.startswith("otel_llm_budget_spend_usd{") and 'period="daily"' in line
    ]
    assert 'budget="acme-daily"' in spend
    assert abs(float(spend.rsplit(" ", 1)[1]) - 19 * 2 * 0.00042) < 3 * 0.00042
    assert response.status == 200
    [budget] = json.loads(response.body)["budgets"]
    assert budget["name"] == "acme-daily"
    assert budget["daily"]["band"] == "escalate"
