"""Every PromQL expression we ship runs against a real Prometheus scraping a live collector, and returns data.

The collector (`otel-llm collector`, a subprocess on ports the OS picks) is fed three series of the same
feature over OTLP/gRPC with the real protobuf stub:

- prompt version 1.0.0 (v1): healthy (good scores, 1 error in 40 calls, cheap, fast);
- 2.0.0 (v2): the incident (bad scores on every evaluation, 10% errors, slow, expensive), plus a healthy
  history three hours earlier (calls without evaluation results) that gives the 24h window its baseline;
- 3.0.0 (v3): as bad as v2 but only 5 calls: the min-samples guards must keep it quiet.

Before the traffic, v1 and then v2 of the prompt are registered and deployed through the collector's API
(with a token), so v2 is the active version and v1 its rollback reference: v2's toxic answers fire the
default `toxicity-p0` rule, whose `auto_rollback` action rolls the prompt back to v1 for real. That is the
rollback the dashboards' "Rollback" annotation marks (`otel_llm_rollback_timestamp_seconds`).

A real Prometheus (`/usr/bin/prometheus`, 1s scrape interval) scrapes `/metrics`; every panel target and
variable of the window dashboards (`TRAFFIC_DASHBOARDS`), every expression of the Prometheus rule file and
every query of the Grafana alerting file then goes through `/api/v1/query`, and an empty result or an error
fails the test. Alert expressions must select v2 and never v1 or v3.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.util.types import AttributeValue
from otel_llm_collector.testing import SECOND_NS, SpanRecorder, genai_attributes

from otel_llm import attributes as A
from tests.grafana.prometheus_stack import (
    GRAFANA,
    PROMETHEUS,
    ROOT,
    TRAFFIC_DASHBOARDS,
    dashboards,
    finite,
    get_json,
    label_values,
    panel_queries,
    poll,
    query,
    running_prometheus,
    stop,
    substitute,
    variable_queries,
)

EVALUATIONS = ("faithfulness", "answer_relevance", "hallucination", "toxicity", "refusal", "user_feedback")
WAIT_SECONDS = 30.0
TOKEN = "traffic-token"

pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).is_file(), reason=f"the prometheus binary is absent ({PROMETHEUS})"
)


# --- traffic ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """How one prompt version behaves; `failing` evaluations are labelled fail on every n-th call;
    without `scored`, its calls carry no evaluation results."""

    version: str
    calls: int
    error_every: int
    latency_s: float
    cost_usd: float
    faithfulness: float
    answer_relevance: float
    fail_every: Mapping[str, int]
    thumbs_up_every: int
    context_tokens: int
    scored: bool = True


V1, V2, V3 = "1.0.0", "2.0.0", "3.0.0"
HEALTHY = Profile(V1, 40, 40, 0.8, 0.0004, 0.9, 0.85, {}, 1, 900)
INCIDENT = Profile(
    V2, 40, 10, 3.0, 0.004, 0.3, 0.4, {"hallucination": 2, "toxicity": 4, "refusal": 2}, 5, 300
)
SPARSE = Profile(V3, 5, 2, 3.0, 0.004, 0.3, 0.4, {"hallucination": 1, "toxicity": 1, "refusal": 1}, 5, 300)


def _evaluation(
    name: str, score: float, passed: bool, at_ns: int
) -> tuple[str, dict[str, AttributeValue], int]:
    attributes: dict[str, AttributeValue] = {
        A.GEN_AI_EVALUATION_NAME: name,
        A.GEN_AI_EVALUATION_SCORE_VALUE: score,
        A.GEN_AI_EVALUATION_SCORE_LABEL: "pass" if passed else "fail",
    }
    return (A.GEN_AI_EVALUATION_RESULT_EVENT, attributes, at_ns)


def _record(recorder: SpanRecorder, profile: Profile, *, end_ns: int, serial: int, latency_s: float) -> None:
    failed = serial % profile.error_every == 0
    error_type = ("RateLimitError", "500")[serial // profile.error_every % 2] if failed else None
    attributes = genai_attributes(
        prompt_version=profile.version,
        cost_usd=None if failed else profile.cost_usd,
        ttfc_s=latency_s / 4 if serial % 2 else None,
        response_id=f"chatcmpl-{profile.version}-{serial}-{end_ns}",
        error_type=error_type,
        extra={A.CONTEXT_TOKENS: profile.context_tokens},
    )
    events = []
    if profile.scored and not failed:
        for name, every in profile.fail_every.items():
            bad = serial % every == 0
            events.append(_evaluation(name, 1.0 if bad else 0.0, not bad, end_ns))
        for name in ("hallucination", "toxicity", "refusal"):
            if name not in profile.fail_every:
                events.append(_evaluation(name, 0.0, True, end_ns))
        faithfulness = profile.faithfulness + (serial % 3 - 1) * 0.05
        events.append(_evaluation("faithfulness", faithfulness, faithfulness >= 0.7, end_ns))
        events.append(
            _evaluation("answer_relevance", profile.answer_relevance, profile.answer_relevance >= 0.6, end_ns)
        )
        up = serial % profile.thumbs_up_every == 0
        events.append(_evaluation("user_feedback", 1.0 if up else 0.0, up, end_ns))
    recorder.span(
        f"chat {attributes[A.GEN_AI_REQUEST_MODEL]}",
        attributes,
        start_ns=end_ns - int(latency_s * SECOND_NS),
        end_ns=end_ns,
        error=failed,
        events=events,
    )


def traffic_end(wall_ns: int) -> int:
    """When the recent traffic ends: 5 s past the last event-time minute boundary that is 5 s or more
    before `wall_ns`. The collector evaluates its rules at each minute boundary of event time, so at that
    boundary it sees all but the last call of each version (and not, depending on the wall clock, only
    half of them): v2's incident has enough samples for the collector's own rules, whatever the time."""
    minute = 60 * SECOND_NS
    boundary = (wall_ns - 5 * SECOND_NS) // minute * minute
    return boundary + 5 * SECOND_NS


def traffic(now_ns: int) -> list[ExportTraceServiceRequest]:
    """The three versions' recent calls (the two minutes before `now_ns`, one call every 3 s), after v2's
    healthy history 3-4 hours earlier. The history (latency and cost for the 24h baselines) carries no
    evaluation results: the canary comparison the rollback safeguard consults judges a version on all it
    has sampled of it, and with 800 good scores of v2 besides the incident's bad ones it would find v2 no
    worse than v1 and refuse the rollback."""
    recorder = SpanRecorder(service="support-bot")
    history = Profile(V2, 800, 10**9, 0.8, 0.0004, 0.9, 0.85, {}, 1, 900, scored=False)
    for i in range(history.calls):
        end_ns = now_ns - 4 * 3600 * SECOND_NS + i * 4 * SECOND_NS
        _record(
            recorder, history, end_ns=end_ns, serial=i + 1, latency_s=history.latency_s * (1 + i % 5 / 10)
        )
    requests = [recorder.request()]
    for profile in (HEALTHY, INCIDENT, SPARSE):
        for i in range(profile.calls):
            end_ns = now_ns - (profile.calls - i) * 3 * SECOND_NS
            latency_s = profile.latency_s * (1 + i % 5 / 10)
            _record(recorder, profile, end_ns=end_ns, serial=i + 1, latency_s=latency_s)
    requests.append(recorder.request())
    return requests


def send(target: str, requests: Sequence[ExportTraceServiceRequest]) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = TraceServiceStub(channel)
        for request in requests:
            response = stub.Export(request, timeout=10)
            assert response.partial_success.rejected_spans == 0, response.partial_success.error_message


def _api(http: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://{http}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def deploy_v1_then_v2(http: str) -> None:
    """The registry state that makes v2's incident a rollback: v2 active, v1 its reference."""
    for version in (V1, V2):
        prompt = {"name": "answer", "version": version, "text": f"Answer ({version})", "created_by": "dev"}
        _api(http, "/api/v1/prompts/register", prompt)
        _api(http, "/api/v1/prompts/deploy", {"name": "answer", "version": version, "by": "dev"})


def rolled_back(http: str) -> list[dict[str, Any]]:
    decisions: list[dict[str, Any]] = _api(http, "/api/v1/rollbacks")["rollbacks"]
    return [d for d in decisions if d["outcome"] == "rolled_back"]


# --- processes ----------------------------------------------------------------------------------------
def _ready_line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and process.poll() is None:
            if selector.select(timeout=0.2):
                line = process.stdout.readline()
                if line.startswith("otel-llm collector ready"):
                    return line
    raise AssertionError(f"the collector did not report ready (exit code {process.poll()})")


@dataclass(frozen=True)
class Stack:
    prometheus_url: str
    collector_http: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A live collector fed with the traffic above, and a Prometheus that has scraped it at least twice."""
    tmp = tmp_path_factory.mktemp("stack")
    deadline = time.monotonic() + WAIT_SECONDS
    collector_log = (tmp / "collector.log").open("w")
    collector = subprocess.Popen(
        [
            *(sys.executable, "-m", "otel_llm_collector.cli", "collector"),
            *("--otlp-grpc-endpoint", "127.0.0.1:0", "--otlp-http-endpoint", "127.0.0.1:0"),
            *("--http-endpoint", "127.0.0.1:0", "--state-dir", str(tmp / "state"), "--log-level", "WARNING"),
        ],
        stdout=subprocess.PIPE,
        stderr=collector_log,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OTEL_LLM_API_TOKEN": TOKEN},
    )
    try:
        addresses = dict(kv.split("=", 1) for kv in _ready_line(collector, deadline).split()[3:])
        http = addresses["http"]
        deploy_v1_then_v2(http)
        send(addresses["otlp_grpc"], traffic(traffic_end(time.time_ns())))
        poll(
            "the collector to window the traffic",
            lambda: len(get_json(f"http://{http}/api/v1/series?window=5m")["series"]) == 3,
            deadline,
        )
        poll("the collector to roll answer back", lambda: bool(rolled_back(http)), deadline)
        with running_prometheus(tmp, http) as prometheus:
            scraped = (
                "min(count_over_time(otel_llm_calls_total[1m])) >= 3 and count(otel_llm_calls_total) == 3"
            )
            poll(
                "Prometheus to scrape the collector three times",
                lambda: bool(prometheus.query(scraped)),
                deadline,
            )
            yield Stack(prometheus.url, http)
    finally:
        stop(collector)
        collector_log.close()


# --- the expressions we ship ----------------------------------------------------------------------------
def _rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load((GRAFANA / "alerts" / "otel-llm-rules.yaml").read_text())[
        "groups"
    ]
    return groups


def _inline_recordings(expr: str) -> str:
    """Replace recorded series by their recording expressions, so no rule evaluation has to be awaited."""
    for group in _rule_groups():
        for rule in group["rules"]:
            if "record" in rule:
                expr = re.sub(
                    re.escape(rule["record"]) + r"\{([^}]*)\}",
                    lambda m, rule=rule: (
                        f"(({rule['expr']}) and otel_llm_window_eval_samples{{{m.group(1)}}})"
                    ),
                    expr,
                )
    return expr


def alert_rules() -> list[tuple[str, str]]:
    return [
        (rule["alert"], rule["expr"])
        for group in _rule_groups()
        for rule in group["rules"]
        if "alert" in rule
    ]


def recording_rules() -> list[tuple[str, str]]:
    return [
        (rule["record"], rule["expr"])
        for group in _rule_groups()
        for rule in group["rules"]
        if "record" in rule
    ]


def grafana_alert_queries() -> list[tuple[str, str, str, float]]:
    """(title, query A, threshold operator, threshold) of every Grafana-provisioned rule."""
    document = yaml.safe_load((GRAFANA / "alerts" / "grafana-alerting.yaml").read_text())
    out = []
    for group in document["groups"]:
        for rule in group["rules"]:
            queries = {query["refId"]: query["model"] for query in rule["data"]}
            [condition] = queries[rule["condition"]]["conditions"]
            evaluator = condition["evaluator"]
            out.append(
                (rule["title"], queries["A"]["expr"], evaluator["type"], float(evaluator["params"][0]))
            )
    return out


def _versions(result: Sequence[Mapping[str, Any]]) -> set[str]:
    return {sample["metric"].get("prompt_version", "") for sample in result}


# --- tests ----------------------------------------------------------------------------------------------
def test_the_traffic_carries_every_evaluation_the_panels_use(stack: Stack) -> None:
    series = get_json(f"http://{stack.collector_http}/api/v1/series?window=5m")["series"]
    for row in series:
        assert set(row["evaluations"]) == set(EVALUATIONS), row["series"]
        assert row["ttfc_s"]["p95"] is not None, row["series"]
        assert row["errors"] > 0, row["series"]
    for panel in panel_queries(TRAFFIC_DASHBOARDS):
        for name in re.findall(r'evaluation="(\w+)"', panel[1]):
            assert name in EVALUATIONS, panel


@pytest.mark.parametrize(
    ("panel", "expr"),
    panel_queries(TRAFFIC_DASHBOARDS),
    ids=[p for p, _ in panel_queries(TRAFFIC_DASHBOARDS)],
)
def test_every_dashboard_query_returns_data(stack: Stack, panel: str, expr: str) -> None:
    result = query(stack.prometheus_url, expr)
    assert result, f"{panel}: empty result for\n{expr}"
    assert finite(result), f"{panel}: no finite value in {result}"


def test_the_rollback_annotations_mark_the_time_the_collector_rolled_v2_back(stack: Stack) -> None:
    [decision] = rolled_back(stack.collector_http)
    assert (decision["prompt"], decision["from_version"], decision["to_version"]) == ("answer", V2, V1)
    assert decision["alert"] == "toxicity-p0"
    decided_ms = round(datetime.fromisoformat(decision["time"]).timestamp() * 1000)
    assert time.time() * 1000 - 180_000 < decided_ms < time.time() * 1000, "not within the recent traffic"
    annotations = [
        (board, annotation["expr"])
        for board, dashboard in dashboards(TRAFFIC_DASHBOARDS)
        for annotation in dashboard["annotations"]["list"]
        if annotation["name"] == "Rollback"
    ]
    assert [board for board, _ in annotations] == ["llm-quality", "operations", "tokens-cost"]
    for board, expr in annotations:
        [sample] = query(stack.prometheus_url, substitute(expr))
        labels = {k: v for k, v in sample["metric"].items() if k not in ("instance", "job")}
        assert labels == {
            "prompt_name": "answer",
            "from_version": V2,
            "to_version": V1,
            "outcome": "rolled_back",
        }, board
        # Grafana floors the value to milliseconds; the API's time has millisecond precision.
        assert int(float(sample["value"][1])) == decided_ms, board


@pytest.mark.parametrize(
    ("variable", "selector", "label"),
    variable_queries(TRAFFIC_DASHBOARDS),
    ids=[v[0] for v in variable_queries(TRAFFIC_DASHBOARDS)],
)
def test_every_dashboard_variable_has_values(stack: Stack, variable: str, selector: str, label: str) -> None:
    assert label_values(stack.prometheus_url, selector, label), (
        f"{variable}: no values of {label} in {selector}"
    )


@pytest.mark.parametrize(("record", "expr"), recording_rules(), ids=[r for r, _ in recording_rules()])
def test_recording_rules_return_data(stack: Stack, record: str, expr: str) -> None:
    result = query(stack.prometheus_url, expr)
    assert {sample["metric"]["evaluation"] for sample in result} >= {"hallucination", "toxicity", "refusal"}
    assert all(0.0 <= v <= 1.0 for v in finite(result)), result


@pytest.mark.parametrize(("alert", "expr"), alert_rules(), ids=[a for a, _ in alert_rules()])
def test_every_alert_selects_the_incident_and_spares_healthy_and_sparse_series(
    stack: Stack, alert: str, expr: str
) -> None:
    result = query(stack.prometheus_url, _inline_recordings(expr))
    assert result, f"{alert}: empty result for\n{expr}"
    assert _versions(result) == {V2}, f"{alert}: {result}"
    assert "window" not in result[0]["metric"], "alerts must be per series, not per window"


@pytest.mark.parametrize(
    ("title", "expr", "op", "threshold"), grafana_alert_queries(), ids=[g[0] for g in grafana_alert_queries()]
)
def test_every_grafana_alert_query_returns_data_and_its_condition_selects_the_incident(
    stack: Stack, title: str, expr: str, op: str, threshold: float
) -> None:
    result = query(stack.prometheus_url, expr)
    assert result, f"{title}: empty result for\n{expr}"
    assert V3 not in _versions(result), f"{title}: the min-samples guard let the sparse series through"
    firing = {
        sample["metric"]["prompt_version"]
        for sample in result
        if (float(sample["value"][1]) > threshold if op == "gt" else float(sample["value"][1]) < threshold)
    }
    assert firing == {V2}, f"{title}: {result}"
