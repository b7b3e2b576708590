"""The control loop end to end: a bad prompt version is rolled back by the collector and a running app
picks the good one up.

Register 1.0.0 and 2.0.0 in the live collector's registry and deploy 2.0.0; a running instrumented app (the
real openai SDK, otel_llm with its control client polling the collector) tags its spans with 2.0.0. Degraded
traffic for 2.0.0 (30% errors) goes over gRPC; the `error-rate-rollback` rule fires, the collector rolls the
prompt back to 1.0.0, the app's next span says 1.0.0, and the alert says what was done.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from otel_llm_collector import scenarios

import otel_llm
from otel_llm.testing.llm_server import LLMServer
from tests.conftest import Telemetry
from tests.e2e.collector_process import running_collector

TOKEN = "rollback-token"


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_collector(tmp_path, env={"OTEL_LLM_API_TOKEN": TOKEN}) as addresses:
        yield addresses


def _api(address: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://{address}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _ask(server: LLMServer) -> None:
    with otel_llm.prompt("answer", feature="support-answer"):
        with openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Pro?"}]
            )


def test_collector_rolls_back_and_the_app_follows(
    collector: dict[str, str], telemetry: Telemetry, llm_server: LLMServer
) -> None:
    http = collector["http"]
    for version in ("1.0.0", "2.0.0"):
        _api(
            http,
            "/api/v1/prompts/register",
            {"name": "answer", "version": version, "text": f"v{version}", "created_by": "dev"},
        )
        _api(
            http,
            "/api/v1/prompts/deploy",
            {"name": "answer", "version": version, "by": "dev", "reason": "ship"},
        )
    client = otel_llm.enable_control(f"http://{http}", service="support-bot", refresh_interval_seconds=0.1)
    assert client is not None
    try:
        assert client.wait_for_polls(2, timeout_seconds=10)
        _ask(llm_server)

        good = scenarios.Phase(start_ns=scenarios.at(10, 0), prompt_version="1.0.0")
        bad = replace(
            good, start_ns=scenarios.at(10, 40), prompt_version="2.0.0", error_rate=scenarios.constant(0.3)
        )
        traffic = scenarios.Scenario(name="bad_version", phases=(good, bad), end_ns=scenarios.at(11, 0))
        offset = time.time_ns() - traffic.end_ns - 30 * 10**9
        with grpc.insecure_channel(collector["otlp_grpc"]) as channel:
            export = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                request_serializer=lambda r: r.SerializeToString(),
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
            for request in traffic.requests(offset_ns=offset):
                export(request, timeout=30)

        deadline = time.monotonic() + 60
        while _api(http, "/api/v1/prompts/active?name=answer")["prompt"]["version"] != "1.0.0":
            assert time.monotonic() < deadline, "the collector did not roll the prompt back"
            time.sleep(0.2)
        polls = client.polls
        assert client.wait_for_polls(polls + 2, timeout_seconds=10)
        _ask(llm_server)
    finally:
        otel_llm.disable_control()

    first, second = (s.attributes or {} for s in telemetry.genai_spans())
    assert first["gen_ai.prompt.version"] == "2.0.0"
    assert second["gen_ai.prompt.version"] == "1.0.0"
    alerts = _api(http, "/api/v1/alerts")["recent"]
    rolled = [a for a in alerts if a["annotations"].get("rollback") == "rolled_back"]
    assert rolled
    assert rolled[0]["labels"]["alertname"] == "error-rate-rollback"
    assert rolled[0]["annotations"]["rollback_to"] == "1.0.0"
    decision, *others = _api(http, "/api/v1/rollbacks")["rollbacks"]
    # The success-rate rule may fire too: it finds 2.0.0 no longer active and leaves it alone.
    assert all(other["outcome"] == "refused" for other in others)
    assert (decision["outcome"], decision["from_version"], decision["to_version"]) == (
        "rolled_back",
        "2.0.0",
        "1.0.0",
    )
    assert decision["snapshot"]["figures"]["error_rate"] > 0.1
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=30) as response:
        assert 'otel_llm_rollbacks_total{outcome="rolled_back"} 1' in response.read().decode()
    audit = _api(http, "/api/v1/audit?name=answer")
    assert any(row["action"] == "auto_rollback" for row in audit["audit"])
