"""The SLO and the alerts-and-actions dashboards, against a real Prometheus scraping a live collector.

The collector (a subprocess on ports the OS picks, with an SLO file and an API token) is brought into the
state the panels show, only through its public interfaces:

- the prompt registry (API): `answer` 1.0.0 deployed, then 2.0.0, so 1.0.0 is the rollback reference;
- twenty minutes of event-time traffic over OTLP/gRPC, ending now, with both versions serving at once:
  1.0.0 healthy at 2 calls/s, 2.0.0 at 0.5 calls/s with half its calls failing and poor faithfulness. The
  default rules fire on 2.0.0 (`error-rate-rollback` among them), the collector rolls the prompt back to
  1.0.0 (the canary comparison agrees: 2.0.0 fails it), and the SLOs burn their budgets;
- kill switches (API): one enabled for every feature, one set and switched off again, one whose feature
  name needs escaping in the exposition.

Then a real Prometheus (`/usr/bin/prometheus`, 1s scrape interval) scrapes `/metrics`, and every panel
target, annotation and variable of `CONTROL_DASHBOARDS` goes through its HTTP API: an empty result, a value
that is not finite or a query error fails the test. A few figures are checked against what the state
above must give, and the whole page passes `promtool check metrics`.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from otel_llm_collector import scenarios

from tests.e2e.collector_process import running_collector
from tests.grafana.prometheus_stack import (
    CONTROL_DASHBOARDS,
    PROMETHEUS,
    finite,
    label_values,
    panel_queries,
    poll,
    query,
    running_prometheus,
    variable_queries,
)

TOKEN = "dashboards-token"
WAIT_SECONDS = 60.0
ESCAPED_FEATURE = 'beta "search" \\ v2'
SLOS = {
    "slos": [
        {"name": "answer-availability", "kind": "availability", "objective": 0.99, "prompt_name": "answer"},
        {"name": "answer-latency", "kind": "latency", "threshold_seconds": 2.5, "objective": 0.95},
        {
            "name": "answer-faithfulness",
            "kind": "quality",
            "evaluation": "faithfulness",
            "threshold": 0.7,
            "objective": 0.9,
        },
    ]
}

pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).is_file(), reason=f"the prometheus binary is absent ({PROMETHEUS})"
)


# --- state --------------------------------------------------------------------------------------------
def traffic(end_ns: int) -> Iterator[ExportTraceServiceRequest]:
    """Both versions of `answer` serving for twenty minutes up to `end_ns`, batch by batch in time order."""
    start, end = scenarios.at(10, 0), scenarios.at(10, 20)
    healthy = scenarios.Phase(
        start_ns=start, calls_per_second=2.0, evaluated_share=0.5, prompt_version="1.0.0"
    )
    bad = replace(
        healthy,
        calls_per_second=0.5,
        evaluated_share=1.0,
        prompt_version="2.0.0",
        error_rate=scenarios.constant(0.5),
        faithfulness=scenarios.constant(0.5),
    )
    offset = end_ns - end
    baseline = scenarios.Scenario(name="baseline", phases=(healthy,), end_ns=end, seed=41)
    candidate = scenarios.Scenario(name="candidate", phases=(bad,), end_ns=end, seed=43)
    pairs = itertools.zip_longest(baseline.requests(offset_ns=offset), candidate.requests(offset_ns=offset))
    for pair in pairs:
        yield from (request for request in pair if request is not None)


def _api(http: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://{http}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _prepare(addresses: dict[str, str], deadline: float) -> None:
    http = addresses["http"]
    for version in ("1.0.0", "2.0.0"):
        prompt = {"name": "answer", "version": version, "text": f"Answer ({version})", "created_by": "dev"}
        _api(http, "/api/v1/prompts/register", prompt)
        _api(http, "/api/v1/prompts/deploy", {"name": "answer", "version": version, "by": "dev"})
    with grpc.insecure_channel(addresses["otlp_grpc"]) as channel:
        stub = TraceServiceStub(channel)
        for request in traffic(time.time_ns() - 30 * 10**9):
            response = stub.Export(request, timeout=30)
            assert response.partial_success.rejected_spans == 0, response.partial_success.error_message
    switches: list[dict[str, Any]] = [
        {"service": "support-bot", "feature": "*", "kind": "disable_tools", "reason": "tool outage"},
        {
            "service": "support-bot",
            "feature": "support-answer",
            "kind": "downgrade_model",
            "value": {"from": "gpt-4o", "to": "gpt-4o-mini"},
        },
        {"service": "support-bot", "feature": "support-answer", "kind": "downgrade_model", "enabled": False},
        {"service": "support-bot", "feature": ESCAPED_FEATURE, "kind": "static_response", "value": "Busy."},
    ]
    for switch in switches:
        _api(http, "/api/v1/switches", {**switch, "by": "ops"})

    def rolled_back() -> bool:
        decisions = _api(http, "/api/v1/rollbacks")["rollbacks"]
        return any(d["outcome"] == "rolled_back" for d in decisions)

    poll("the collector to roll answer back", rolled_back, deadline)


@dataclass(frozen=True)
class Stack:
    prometheus_url: str
    collector_http: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("control-stack")
    deadline = time.monotonic() + WAIT_SECONDS
    (tmp / "slos.yaml").write_text(json.dumps(SLOS))
    settings = {"slo_file": str(tmp / "slos.yaml")}
    with running_collector(tmp, settings, {"OTEL_LLM_API_TOKEN": TOKEN}) as addresses:
        _prepare(addresses, deadline)
        with running_prometheus(tmp, addresses["http"]) as prometheus:
            scraped = "min(count_over_time(otel_llm_canary_verdict[1m])) >= 3"
            poll(
                "Prometheus to scrape the collector three times",
                lambda: bool(prometheus.query(scraped)),
                deadline,
            )
            yield Stack(prometheus.url, addresses["http"])


# --- tests ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("panel", "expr"),
    panel_queries(CONTROL_DASHBOARDS),
    ids=[p for p, _ in panel_queries(CONTROL_DASHBOARDS)],
)
def test_every_dashboard_query_returns_data(stack: Stack, panel: str, expr: str) -> None:
    result = query(stack.prometheus_url, expr)
    assert result, f"{panel}: empty result for\n{expr}"
    assert finite(result), f"{panel}: no finite value in {result}"


@pytest.mark.parametrize(
    ("variable", "selector", "label"),
    variable_queries(CONTROL_DASHBOARDS),
    ids=[v[0] for v in variable_queries(CONTROL_DASHBOARDS)],
)
def test_every_dashboard_variable_has_values(stack: Stack, variable: str, selector: str, label: str) -> None:
    assert label_values(stack.prometheus_url, selector, label), (
        f"{variable}: no values of {label} in {selector}"
    )


def _by(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s["metric"].get(label, "") for label in labels): float(s["value"][1]) for s in result}


def test_kill_switches_reach_prometheus_with_their_labels_intact(stack: Stack) -> None:
    result = query(stack.prometheus_url, "otel_llm_kill_switch_active")
    assert _by(result, "service", "feature", "switch") == {
        ("support-bot", "*", "disable_tools"): 1.0,
        ("support-bot", "support-answer", "downgrade_model"): 0.0,
        ("support-bot", ESCAPED_FEATURE, "static_response"): 1.0,
    }


def test_the_canary_judges_the_bad_version_against_the_active_one(stack: Stack) -> None:
    report = _api(stack.collector_http, "/api/v1/canary?name=answer&baseline=1.0.0&candidate=2.0.0")
    assert report["verdict"] == "fail"
    verdicts = query(stack.prometheus_url, "otel_llm_canary_verdict == 1")
    assert _by(verdicts, "prompt_name", "baseline", "candidate", "verdict") == {
        ("answer", "1.0.0", "2.0.0", "fail"): 1.0
    }
    scores = query(stack.prometheus_url, "otel_llm_canary_score")
    assert _by(scores, "prompt_name", "baseline", "candidate") == {
        ("answer", "1.0.0", "2.0.0"): report["score"]
    }


def test_the_rollback_the_alerts_and_the_release_policies(stack: Stack) -> None:
    rollbacks = query(stack.prometheus_url, "otel_llm_rollbacks_total")
    assert _by(rollbacks, "outcome")[("rolled_back",)] == 1.0
    [decision] = [
        d
        for d in _api(stack.collector_http, "/api/v1/rollbacks")["rollbacks"]
        if d["outcome"] == "rolled_back"
    ]
    decided = datetime.fromisoformat(decision["time"]).timestamp()
    times = query(stack.prometheus_url, 'otel_llm_rollback_timestamp_seconds{outcome="rolled_back"}')
    assert _by(times, "prompt_name", "from_version", "to_version") == {("answer", "2.0.0", "1.0.0"): decided}
    firing = query(stack.prometheus_url, 'otel_llm_alert{state="firing", inhibited="false"}')
    assert ("error-rate-rollback", "2.0.0") in _by(firing, "alertname", "prompt_version")
    # Series alerts are all about the bad version; the rest are the SLOs' own burn-rate alerts.
    assert {s["metric"]["prompt_version"] for s in firing if "prompt_version" in s["metric"]} == {"2.0.0"}
    assert {s["metric"]["alertname"] for s in firing if "prompt_version" not in s["metric"]} <= {
        "SLOBurnRate"
    }
    policies = query(stack.prometheus_url, "otel_llm_slo_release_policy == 1")
    slos = _api(stack.collector_http, "/api/v1/slos")["slos"]
    assert set(_by(policies, "slo", "mode")) == {(s["name"], s["release_policy"]) for s in slos}
    assert {s["name"]: s["release_policy"] for s in slos} == {
        "answer-availability": "freeze",
        "answer-latency": "normal",
        "answer-faithfulness": "freeze",
    }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_the_live_page_with_every_family_passes_promtool(stack: Stack) -> None:
    with urllib.request.urlopen(f"http://{stack.collector_http}/metrics", timeout=10) as response:
        page = response.read().decode()
    families = (
        "otel_llm_kill_switch_active",
        "otel_llm_canary_verdict",
        "otel_llm_slo_burn_rate",
        "otel_llm_rollback_timestamp_seconds",
    )
    for family in families:
        assert f"# TYPE {family} gauge" in page, family
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=page, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
