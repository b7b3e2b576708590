"""The Anthropic tool-use agent, the delayed user feedback and the replayable blind-spot incident examples.

Each runs as shipped: the real `anthropic`/`openai` SDKs against the local server, the real OpenTelemetry
SDK (in-memory exporters in-process, OTLP from a subprocess), a real collector subprocess for the feedback
join, and the real `otel-llm replay` command for the incident file.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from otel_llm_collector.rules import load_default_rules

import otel_llm
from otel_llm import attributes as attr
from otel_llm.evaluation import Recorded
from otel_llm.testing.llm_server import LLMServer
from tests.conftest import Telemetry
from tests.e2e.collector_process import running_collector

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
AGENT_APP = EXAMPLES / "anthropic_agent" / "app.py"
FEEDBACK_APP = EXAMPLES / "feedback" / "app.py"
INCIDENTS = EXAMPLES / "incidents"
OTEL_LLM = Path(sys.executable).parent / "otel-llm"
SUBPROCESS_TIMEOUT_SECONDS = 120


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


agent = _load("anthropic_agent_app", AGENT_APP)
feedback = _load("feedback_app", FEEDBACK_APP)
generate = _load("incidents_generate", INCIDENTS / "generate.py")


def _clean_env(**extra: str) -> dict[str, str]:
    prefixes = ("OTEL_", "OPENAI_", "ANTHROPIC_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(prefixes)}, **extra}


def _run(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args,
        env=dict(env),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _console_objects(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporters printed (each starts at column 0), among the app's lines."""
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(stdout, m.start())[0] for m in re.finditer(r"^\{", stdout, re.MULTILINE)]


# --- the Anthropic tool-use agent -------------------------------------------------------------------------
def _agent_trace(
    telemetry: Telemetry, question: str
) -> tuple[Any, ReadableSpan, list[ReadableSpan], LLMServer]:
    with LLMServer(agent.local_model) as server:
        with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="t", max_retries=0) as client:
            answer = agent.ask(client, question, tracer=telemetry.tracer_provider.get_tracer("test"))
        spans = telemetry.finished()
    (root,) = [s for s in spans if s.name == f"invoke_agent {agent.AGENT_NAME}"]
    assert root.parent is None
    assert (root.attributes or {})["gen_ai.operation.name"] == "invoke_agent"
    assert root.context is not None
    children = sorted((s for s in spans if s is not root), key=lambda s: s.start_time or 0)
    return answer, root, children, server


def _tool_results(server: LLMServer) -> list[dict[str, Any]]:
    """The `tool_result` blocks the agent sent, in order (the last request holds the whole conversation)."""
    last = server.requests[-1].body
    return [
        block
        for message in last["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def test_agent_trace_nests_model_calls_and_tool_runs_under_the_agent_span(telemetry: Telemetry) -> None:
    answer, root, children, server = _agent_trace(telemetry, "Can I get a refund for order A-1001?")

    assert "can be refunded" in answer.text
    assert "588 dollars" in answer.text
    assert answer.tools_run == ("lookup_order", "refund_policy")
    assert [s.name for s in children] == [
        "chat claude-haiku-4-5",
        "execute_tool lookup_order",
        "chat claude-haiku-4-5",
        "execute_tool refund_policy",
        "chat claude-haiku-4-5",
    ]
    for span in children:
        assert span.context is not None
        assert span.parent is not None
        assert span.context.trace_id == root.context.trace_id
        assert span.parent.span_id == root.context.span_id
        attributes = span.attributes or {}
        assert attributes[attr.FEATURE] == agent.FEATURE
        assert attributes[attr.GEN_AI_PROMPT_VERSION] == agent.PROMPT_VERSION

    chats = [dict(s.attributes or {}) for s in children if s.name.startswith("chat ")]
    assert [c[attr.GEN_AI_RESPONSE_FINISH_REASONS] for c in chats] == [
        ("tool_use",),
        ("tool_use",),
        ("end_turn",),
    ]
    assert [c.get(attr.TOOL_CALL_NAMES) for c in chats] == [("lookup_order",), ("refund_policy",), None]
    assert {c[attr.GEN_AI_PROVIDER_NAME] for c in chats} == {"anthropic"}
    assert all(isinstance(n, int) and n > 0 for n in (c[attr.GEN_AI_USAGE_INPUT_TOKENS] for c in chats))

    tools = [s for s in children if s.name.startswith("execute_tool ")]
    results = _tool_results(server)
    assert len(tools) == len(results) == 2
    for span, result, name in zip(tools, results, ["lookup_order", "refund_policy"], strict=True):
        attributes = span.attributes or {}
        assert attributes[attr.GEN_AI_OPERATION_NAME] == "execute_tool"
        assert attributes[attr.GEN_AI_TOOL_NAME] == name
        # The span names the call the model made, and the result sent back answers that same call.
        assert attributes[attr.GEN_AI_TOOL_CALL_ID] == result["tool_use_id"]
        assert "is_error" not in result
        assert span.status.status_code is StatusCode.UNSET
    # Each tool ran after the model call that asked for it, and before the next model call began.
    for before, tool, after in zip(children[0:-1:2], children[1::2], children[2::2], strict=True):
        assert (before.end_time or 0) <= (tool.start_time or 0)
        assert (tool.end_time or 0) <= (after.start_time or 0)


def test_a_failing_tool_marks_its_span_and_the_model_is_told(telemetry: Telemetry) -> None:
    answer, _, children, server = _agent_trace(telemetry, "Please refund order A-9999.")

    assert answer.text.startswith("I could not find order A-9999")
    assert [s.name for s in children] == [
        "chat claude-haiku-4-5",
        "execute_tool lookup_order",
        "chat claude-haiku-4-5",
    ]
    tool = children[1]
    assert tool.status.status_code is StatusCode.ERROR
    assert (tool.attributes or {})[attr.ERROR_TYPE] == "LookupError"
    assert [e.name for e in tool.events] == ["exception"]
    (result,) = _tool_results(server)
    assert result["is_error"] is True
    assert result["tool_use_id"] == (tool.attributes or {})[attr.GEN_AI_TOOL_CALL_ID]
    # Only the tool failed: both model calls succeeded.
    finish = [(s.attributes or {})[attr.GEN_AI_RESPONSE_FINISH_REASONS] for s in (children[0], children[2])]
    assert finish == [("tool_use",), ("end_turn",)]
    assert all(s.status.status_code is StatusCode.UNSET for s in (children[0], children[2]))


class _OTLPReceiver(ThreadingHTTPServer):
    """Collects OTLP/HTTP protobuf trace exports."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OTLPHandler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[tuple[str, Any]]:
        """(service.name, span) for every span received."""
        with self.lock:
            return [
                (
                    next(a.value.string_value for a in rs.resource.attributes if a.key == "service.name"),
                    span,
                )
                for request in self.requests
                for rs in request.resource_spans
                for scope_spans in rs.scope_spans
                for span in scope_spans.spans
            ]


class _OTLPHandler(BaseHTTPRequestHandler):
    server: _OTLPReceiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            with self.server.lock:
                self.server.requests.append(ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[_OTLPReceiver]:
    running = _OTLPReceiver()
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.shutdown()
        running.server_close()
        thread.join(timeout=10)


def test_agent_runs_standalone_and_sends_one_trace_per_question_over_otlp(receiver: _OTLPReceiver) -> None:
    env = _clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf"
    )
    done = _run([sys.executable, str(AGENT_APP)], env)

    assert len(re.findall(r"^A: ", done.stdout, re.MULTILINE)) == len(agent.QUESTIONS)
    assert "(tools: lookup_order, refund_policy)" in done.stdout
    received = receiver.spans()
    assert {service for service, _ in received} == {"refund-agent"}
    spans = [span for _, span in received]
    roots = [s for s in spans if s.name == f"invoke_agent {agent.AGENT_NAME}"]
    assert len(roots) == len(agent.QUESTIONS)
    tools_per_trace = []
    for root in sorted(roots, key=lambda s: s.start_time_unix_nano):
        trace = [s for s in spans if s.trace_id == root.trace_id and s is not root]
        assert all(s.parent_span_id == root.span_id for s in trace)
        tools = sorted(
            (s for s in trace if s.name.startswith("execute_tool ")), key=lambda s: s.start_time_unix_nano
        )
        tools_per_trace.append([s.name.removeprefix("execute_tool ") for s in tools])
        assert sum(s.name == "chat claude-haiku-4-5" for s in trace) == len(tools) + 1
    assert tools_per_trace == [
        ["lookup_order", "refund_policy"],
        ["lookup_order", "refund_policy"],
        ["lookup_order"],
    ]


def test_agent_prints_its_spans_without_an_otlp_endpoint() -> None:
    done = _run([sys.executable, str(AGENT_APP), "Can I get a refund for order A-1003?"], _clean_env())

    assert "cannot be refunded any more" in done.stdout
    names = [o["name"] for o in _console_objects(done.stdout)]
    assert sorted(names) == sorted(
        ["invoke_agent refund-agent", "execute_tool lookup_order", "execute_tool refund_policy"]
        + ["chat claude-haiku-4-5"] * 3
    )


# --- user feedback, minutes after the call ------------------------------------------------------------------
def test_feedback_recorded_after_the_span_was_exported_carries_the_calls_ids(
    telemetry: Telemetry, llm_server: LLMServer
) -> None:
    with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
        service = feedback.ChatService(client)
        billing = service.ask("Where do I find my invoice?")
        account = service.ask("How do I reset my password?")
    spans = {(s.attributes or {})[attr.FEATURE]: s for s in telemetry.genai_spans()}
    assert set(spans) == {"billing", "account"} == {billing.feature, account.feature}
    assert list(telemetry.logs.get_finished_logs()) == []  # the spans are out; nothing rated yet

    assert service.rate(billing.message_id, False, comment="that page does not exist") is Recorded.LOG_RECORD
    assert service.rate(account.message_id, True) is Recorded.LOG_RECORD
    assert service.rate("msg-404", True) is None

    records = [r.log_record for r in telemetry.logs.get_finished_logs()]
    assert len(records) == 2
    for record, answer, score, label in (
        (records[0], billing, 0.0, "fail"),
        (records[1], account, 1.0, "pass"),
    ):
        span = spans[answer.feature]
        assert span.context is not None
        assert (record.trace_id, record.span_id) == (span.context.trace_id, span.context.span_id)
        assert record.event_name == attr.GEN_AI_EVALUATION_RESULT_EVENT
        assert (record.timestamp or 0) > (span.end_time or 0)
        attributes = dict(record.attributes or {})
        assert attributes[attr.GEN_AI_RESPONSE_ID] == (span.attributes or {})[attr.GEN_AI_RESPONSE_ID]
        assert attributes[attr.GEN_AI_EVALUATION_NAME] == "user_feedback"
        assert attributes[attr.GEN_AI_EVALUATION_SCORE_VALUE] == score
        assert attributes[attr.GEN_AI_EVALUATION_SCORE_LABEL] == label
        assert attributes[attr.EVALUATION_SOURCE] == "user"
    assert dict(records[0].attributes or {})[attr.GEN_AI_EVALUATION_EXPLANATION] == "that page does not exist"


def _get(address: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
        return json.load(response)


def _series_by_feature(address: str, wanted: Any, timeout_seconds: float = 30.0) -> dict[str, dict[str, Any]]:
    """The collector's 5-minute series by feature, once `wanted(series)` holds (polled; the collector
    ingests asynchronously)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        series = {s["series"]["feature"]: s for s in _get(address, "/api/v1/series")["series"]}
        if wanted(series) or time.monotonic() > deadline:
            return series
        time.sleep(0.1)


def test_feedback_joins_its_calls_series_in_a_running_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server: LLMServer
) -> None:
    with running_collector(tmp_path) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{collector['otlp_grpc']}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        tracer_provider, logger_provider = feedback.providers()
        otel_llm.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
        try:
            with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
                service = feedback.ChatService(client)
                billing = service.ask("Where do I find my invoice?")
                account = service.ask("How do I reset my password?")
            otel_llm.flush()
            assert tracer_provider.force_flush()

            # The collector has the calls, and no feedback for them, before anyone rates.
            before = _series_by_feature(collector["http"], lambda s: {"billing", "account"} <= set(s))
            assert {f: s["count"] for f, s in before.items()} == {"billing": 1, "account": 1}
            assert all("user_feedback" not in s["evaluations"] for s in before.values())

            assert service.rate(billing.message_id, False) is Recorded.LOG_RECORD
            assert service.rate(account.message_id, True) is Recorded.LOG_RECORD
            assert logger_provider.force_flush()

            after = _series_by_feature(
                collector["http"], lambda s: all("user_feedback" in x["evaluations"] for x in s.values())
            )
        finally:
            otel_llm.uninstrument()
            tracer_provider.shutdown()
            logger_provider.shutdown()
        status = _get(collector["http"], "/api/v1/status")["windows"]

    assert after["billing"]["series"]["service"] == feedback.SERVICE_NAME
    assert after["billing"]["evaluations"]["user_feedback"] == {"samples": 1, "mean": 0.0, "fail_rate": 1.0}
    assert after["account"]["evaluations"]["user_feedback"] == {"samples": 1, "mean": 1.0, "fail_rate": 0.0}
    assert (status["evaluations_unmatched_total"], status["evaluations_pending"]) == (0, 0)


def test_feedback_app_runs_standalone_and_prints_calls_then_ratings() -> None:
    done = _run([sys.executable, str(FEEDBACK_APP), "--feedback-delay-seconds", "0"], _clean_env())

    assert "[msg-1] thumbs-up -> log_record" in done.stdout
    assert "[msg-2] thumbs-down -> log_record" in done.stdout
    printed = _console_objects(done.stdout)
    spans = [o for o in printed if o.get("name") == "chat gpt-4o-mini"]
    records = [o for o in printed if o.get("event_name") == attr.GEN_AI_EVALUATION_RESULT_EVENT]
    assert len(spans) == len(records) == len(feedback.QUESTIONS)
    # Printed in that order: every span went out before the first rating was made.
    assert done.stdout.index('"event_name"') > max(done.stdout.index(s["context"]["span_id"]) for s in spans)
    for span, record in zip(spans, records, strict=True):
        assert (record["trace_id"], record["span_id"]) == (
            span["context"]["trace_id"],
            span["context"]["span_id"],
        )
        assert record["attributes"][attr.GEN_AI_RESPONSE_ID] == span["attributes"][attr.GEN_AI_RESPONSE_ID]


# --- the blind-spot incident, replayed ---------------------------------------------------------------------
def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_replaying_the_blind_spot_file_raises_exactly_the_expected_alerts() -> None:
    expected = json.loads((INCIDENTS / "blind_spot.expected.json").read_text())
    done = _run([str(OTEL_LLM), "replay", str(INCIDENTS / expected["input"])], _clean_env())

    events = [json.loads(line) for line in done.stdout.splitlines()]
    first_firing: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        labels = dict(event["labels"])
        rule, severity = labels.pop("alertname"), labels.pop("severity")
        if event["status"] == "firing":
            first_firing.setdefault(
                (rule, json.dumps(labels, sort_keys=True)),
                {
                    "rule": rule,
                    "severity": severity,
                    "series": labels,
                    "starts_at": event["startsAt"],
                    "first_firing": event["eventTime"],
                    "deployment": event["annotations"].get("deployment", ""),
                    "deployment_confidence": event["annotations"].get("deployment_confidence", ""),
                    "inhibited_by": event["inhibitedBy"],
                },
            )
    assert list(first_firing.values()) == expected["alerts"]

    # Latency, errors and cost had enough data all along and ended green: never firing, never without data
    # (a rule with data from its first evaluation starts with no event), and inactive at the end.
    green = set(expected["green"])
    assert green <= {rule.name for rule in load_default_rules().rules}
    statuses = [(e["labels"]["alertname"], e["status"]) for e in events if e["labels"]["alertname"] in green]
    assert {status for _, status in statuses} <= {"pending", "inactive"}
    last_status = dict(statuses)
    assert {rule: last_status.get(rule, "inactive") for rule in green} == dict.fromkeys(green, "inactive")
    assert f"pages (P0/P1 firing): {expected['pages']}" in done.stderr
    deployment = expected["deployment"]
    page = expected["alerts"][0]
    minutes = (_time(page["first_firing"]) - _time(deployment["at"])).total_seconds() / 60
    after = f"({minutes:.0f} min after the deployment)"
    assert f"first firing naming {deployment['id']}: {page['first_firing']} {after}" in done.stderr


def test_generate_rebuilds_the_incident_file_byte_for_byte(tmp_path: Path) -> None:
    shipped = INCIDENTS / "blind_spot.otlp.jsonl"
    rebuilt = tmp_path / "blind_spot.otlp.jsonl"
    _run([sys.executable, str(INCIDENTS / "generate.py"), "--output", str(rebuilt)], _clean_env())

    assert rebuilt.read_bytes() == shipped.read_bytes()
    assert shipped.stat().st_size < 2_000_000
    lines = shipped.read_text().splitlines()
    assert all("resourceSpans" in json.loads(line) for line in lines)
    assert generate.blind_spot_sampled().phases[1].start_ns == generate.at(10, 12)
