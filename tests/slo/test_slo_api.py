"""SLO and canary HTTP handlers through the real router."""

from __future__ import annotations

import json
import random
import threading
from typing import Any

from otel_llm_collector.canary import CanaryCollector
from otel_llm_collector.records import CallRecord, SeriesKey
from otel_llm_collector.router import Request, Router
from otel_llm_collector.slo import MINUTE_NS, SloSpec, SloTracker
from otel_llm_collector.slo_api import register

T0 = 1_800_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS


def _setup() -> Router:
    tracker = SloTracker([SloSpec(name="avail", kind="availability", objective=0.99)])
    canary = CanaryCollector()
    rng = random.Random(2)
    for version in ("v1", "v2"):
        series = SeriesKey("svc", "f", "answer", version, "m")
        for i in range(100):
            call = CallRecord(
                series,
                T0 + i * 1_000_000,
                rng.uniform(0.5, 1.5),
                "t",
                f"s{i}",
                error_type="E" if i < 3 else "",
            )
            tracker.observe_call(call)
            canary.observe_call(call)
    tracker.evaluate(T0 + MINUTE_NS)
    router = Router()
    register(router, tracker, canary, threading.Lock())
    return router


def _get(router: Router, path: str, **query: str) -> tuple[int, Any]:
    response = router.dispatch(Request("GET", path, {k: [v] for k, v in query.items()}))
    return response.status, json.loads(response.body)


def test_slos_lists_budget_burn_rates_and_policy() -> None:
    status, body = _get(_setup(), "/api/v1/slos")
    assert status == 200
    assert body["at_ns"] == T0 + MINUTE_NS
    (slo,) = body["slos"]
    # 6 errors in 200 calls at 99%: 3x; the budget is spent three times over.
    assert slo["name"] == "avail"
    assert slo["objective"] == 0.99
    assert abs(slo["error_budget_remaining"] - -2.0) < 1e-9
    assert slo["release_policy"] == "freeze"
    assert abs(slo["burn_rates"]["5m"] - 3.0) < 1e-9
    assert slo["burn_rates"]["3d"] is not None


def test_canary_report_and_errors() -> None:
    router = _setup()
    status, body = _get(router, "/api/v1/canary", name="answer", baseline="v1", candidate="v2")
    assert status == 200
    assert body["verdict"] == "pass"
    assert {m["name"] for m in body["metrics"]} == {"latency_seconds", "error_rate"}
    status, body = _get(router, "/api/v1/canary", name="answer", baseline="v1")
    assert (status, body["error"]) == (400, "missing query parameter(s): candidate")
    status, body = _get(router, "/api/v1/canary", name="answer", baseline="v1", candidate="v7")
    assert status == 404
    assert "v1, v2" in body["error"]
