"""Prompt registry and kill switches: a real HTTP control server on port 0, the real poller, real spans."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm import control
from otel_llm.control import ControlClient, Switch, applicable, parse_control
from otel_llm.testing.llm_server import LLMServer
from tests.conftest import Telemetry

SERVICE = "support-bot"
WAIT_SECONDS = 5.0
"""Upper bound for anything that should happen within a few 50 ms refresh intervals."""


class ControlServer:
    """The collector's control endpoint as the contract spells it, switchable to fail in each way."""

    def __init__(self) -> None:
        self.prompts: dict[str, dict[str, Any]] = {"answer": {"version": "1.0.0", "content_hash": "ab12"}}
        self.switches: list[dict[str, Any]] = []
        self.mode = "ok"  # ok | error | garbage | hang
        self.queries: list[str] = []
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.queries.append(self.path)
                mode = owner.mode
                if mode == "hang":
                    owner.release.wait(WAIT_SECONDS)
                    return
                if mode == "error":
                    self._send(500, b'{"error": "boom"}')
                elif mode == "garbage":
                    self._send(200, b"<html>not json")
                else:
                    body = {"prompts": owner.prompts, "switches": owner.switches, "generated_at": "now"}
                    self._send(200, json.dumps(body).encode())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def switch(self, kind: str, feature: str = "*", value: Any = None, service: str = SERVICE) -> None:
        self.switches.append(
            {
                "service": service,
                "feature": feature,
                "kind": kind,
                "value": value,
                "set_at": "t",
                "set_by": "oncall",
            }
        )

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(WAIT_SECONDS)


@pytest.fixture
def server() -> Iterator[ControlServer]:
    s = ControlServer()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def client(server: ControlServer) -> Iterator[ControlClient]:
    """Control enabled against the test server, polling every 50 ms, first poll already done."""
    c = control.enable_control(server.url, service=SERVICE, refresh_interval_seconds=0.05)
    assert c is not None
    try:
        assert c.wait_for_polls(1, WAIT_SECONDS)
        yield c
    finally:
        control.disable_control()


def wait_for_fresh_poll(c: ControlClient) -> None:
    """Wait for a poll that began after the caller changed the server (the next one may be in flight)."""
    assert c.wait_for_polls(c.polls + 2, WAIT_SECONDS)


# --- prompt registry --------------------------------------------------------------------------------
def test_first_poll_supplies_active_version_and_asks_for_the_service(
    client: ControlClient, server: ControlServer
) -> None:
    assert client.active_version("answer") == "1.0.0"
    assert client.active_prompt("answer") == control.PromptVersion("1.0.0", "ab12")
    assert client.active_version("unknown") is None
    assert server.queries[0] == f"/api/v1/control?service={SERVICE}"


def test_deploy_reaches_the_app_within_the_refresh_interval(
    client: ControlClient, server: ControlServer
) -> None:
    server.prompts["answer"] = {"version": "2.0.0", "content_hash": "cd34"}
    changed = time.monotonic()
    wait_for_fresh_poll(client)
    assert client.active_version("answer") == "2.0.0"
    # Two intervals at most (one poll in flight, the next one); generous slack for slow machines.
    assert time.monotonic() - changed < 2.0


@pytest.mark.parametrize("mode", ["error", "garbage"])
def test_last_known_good_survives_failures_and_outage_is_logged_once(
    client: ControlClient, server: ControlServer, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="otel_llm.control")
    server.mode = mode
    failures_before = client.failures
    assert client.wait_for_polls(client.polls + 4, WAIT_SECONDS)
    assert client.failures >= failures_before + 3
    assert client.consecutive_failures >= 3
    assert client.active_version("answer") == "1.0.0"
    assert not client.refresh_now()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]

    server.mode = "ok"
    server.prompts["answer"] = {"version": "1.1.0"}
    wait_for_fresh_poll(client)
    assert client.active_version("answer") == "1.1.0"
    assert client.consecutive_failures == 0
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_unreachable_collector_keeps_last_known_good(server: ControlServer) -> None:
    c = ControlClient(server.url, service=SERVICE, timeout_seconds=0.5)
    assert c.refresh_now()
    server.close()
    assert not c.refresh_now()
    assert c.active_version("answer") == "1.0.0"
    assert c.failures == 1


def test_request_never_waits_on_a_hanging_collector(server: ControlServer) -> None:
    server.mode = "hang"
    c = control.enable_control(server.url, service=SERVICE, refresh_interval_seconds=0.05)
    assert c is not None
    c.timeout_seconds = 0.3  # so that stopping does not wait for the default 2 s timeout
    try:
        started = time.perf_counter()
        with control.prompt("answer") as ctx:
            entered = time.perf_counter() - started
            assert control.tools_enabled()
            assert control.model_for("gpt-4o") == "gpt-4o"
        assert entered < 0.05
        assert ctx.prompt_name == "answer"
        assert ctx.prompt_version is None  # nothing known yet: no version rather than a wait
    finally:
        server.release.set()
        control.disable_control()


def test_prompt_block_tags_real_openai_spans_and_follows_a_rollback(
    telemetry: Telemetry, client: ControlClient, server: ControlServer, llm_server: LLMServer
) -> None:
    messages = [{"role": "user", "content": "What does the Pro plan cost?"}]
    with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as llm:
        with control.prompt("answer", feature="support-answer"):
            llm.chat.completions.create(model="gpt-4o-mini", messages=messages)
        server.prompts["answer"] = {"version": "0.9.0"}  # a rollback on the collector
        wait_for_fresh_poll(client)
        with control.prompt("answer"):
            llm.chat.completions.create(model="gpt-4o-mini", messages=messages)
    first, second = (s.attributes or {} for s in telemetry.genai_spans())
    assert first["gen_ai.prompt.name"] == "answer"
    assert first["gen_ai.prompt.version"] == "1.0.0"
    assert first["otel_llm.feature"] == "support-answer"
    assert second["gen_ai.prompt.version"] == "0.9.0"


def test_genai_span_carries_the_kill_switch_applied_in_its_scope(
    telemetry: Telemetry, client: ControlClient, server: ControlServer, llm_server: LLMServer
) -> None:
    server.switch("downgrade_model", value={"from": "gpt-4o", "to": "gpt-4o-mini"})
    wait_for_fresh_poll(client)
    messages = [{"role": "user", "content": "x"}]
    with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as llm:
        with control.prompt("answer"):
            model = control.model_for("gpt-4o")
            llm.chat.completions.create(model=model, messages=messages)
        llm.chat.completions.create(model="gpt-4o", messages=messages)
    first, second = (s.attributes or {} for s in telemetry.genai_spans())
    assert model == "gpt-4o-mini"
    assert first["otel_llm.kill_switch"] == ("downgrade_model",)
    assert first["gen_ai.request.model"] == "gpt-4o-mini"
    assert "otel_llm.kill_switch" not in second


def test_prompt_without_control_sets_no_version() -> None:
    control.disable_control()
    with control.prompt("answer") as ctx:
        assert ctx.prompt_name == "answer"
        assert ctx.prompt_version is None
        assert control.tools_enabled()
        assert control.static_response() is None


# --- kill switches ----------------------------------------------------------------------------------
@pytest.fixture
def tracer() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider.get_tracer("test"), exporter
    finally:
        provider.shutdown()


def test_helpers_honour_switches_and_mark_the_current_span(
    client: ControlClient, server: ControlServer, tracer: tuple[Any, InMemorySpanExporter]
) -> None:
    t, exporter = tracer
    with t.start_as_current_span("request"), control.prompt("answer", feature="search"):
        assert control.tools_enabled()
        assert control.retrieval_enabled()
        assert control.model_for("gpt-4o") == "gpt-4o"
        assert control.static_response() is None
        assert control.applied_switches() == ()

        server.switch("disable_tools")
        server.switch("disable_retrieval", feature="search")
        server.switch("downgrade_model", feature="search", value={"from": "gpt-4o", "to": "gpt-4o-mini"})
        server.switch("static_response", feature="search", value="We are busy; please retry soon.")
        wait_for_fresh_poll(client)

        assert not control.tools_enabled()
        assert not control.retrieval_enabled()
        assert control.model_for("gpt-4o") == "gpt-4o-mini"
        assert control.model_for("claude-haiku-4-5") == "claude-haiku-4-5"  # no mapping for it
        assert control.static_response() == "We are busy; please retry soon."
        assert not control.tools_enabled()  # applied twice, listed once
        applied = ("disable_tools", "disable_retrieval", "downgrade_model", "static_response")
        assert control.applied_switches() == applied
    assert control.applied_switches() == ()  # the scope ended with the block
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["otel_llm.kill_switch"] == applied


def test_switch_for_another_feature_or_service_does_not_apply(
    client: ControlClient, server: ControlServer, tracer: tuple[Any, InMemorySpanExporter]
) -> None:
    t, exporter = tracer
    server.switch("disable_tools", feature="checkout")
    server.switch("disable_retrieval", service="other-service")
    wait_for_fresh_poll(client)
    with t.start_as_current_span("request"), control.prompt("answer", feature="search"):
        assert control.tools_enabled()
        assert control.retrieval_enabled()
        assert not control.tools_enabled(feature="checkout")  # explicit feature wins over the context's
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["otel_llm.kill_switch"] == ("disable_tools",)


def test_switch_flip_back_reaches_the_app(client: ControlClient, server: ControlServer) -> None:
    server.switch("disable_tools")
    wait_for_fresh_poll(client)
    assert not control.tools_enabled()
    server.switches.clear()
    wait_for_fresh_poll(client)
    assert control.tools_enabled()


def test_helpers_outside_a_scope_leave_no_trace_for_later_requests(
    client: ControlClient, server: ControlServer
) -> None:
    server.switch("disable_tools")
    wait_for_fresh_poll(client)
    assert not control.tools_enabled()  # no span, no scope: nothing to record, nothing leaks
    with control.kill_switch_scope():
        assert control.applied_switches() == ()


def test_feature_switch_takes_precedence_over_service_wide_one() -> None:
    switches = parse_control(
        {
            "switches": [
                {
                    "service": "s",
                    "feature": "*",
                    "kind": "downgrade_model",
                    "value": {"from": "a", "to": "c"},
                },
                {
                    "service": "s",
                    "feature": "f",
                    "kind": "downgrade_model",
                    "value": {"from": "a", "to": "b"},
                },
            ]
        }
    ).switches
    chosen = applicable(switches, service="s", feature="f")
    assert [s.value for s in chosen] == [("a", "b"), ("a", "c")]
    assert [s.value for s in applicable(switches, service="s", feature=None)] == [("a", "c")]


def test_parse_control_skips_what_it_cannot_honour_and_rejects_wrong_shapes() -> None:
    state = parse_control(
        {
            "prompts": {"a": {"version": "1.0.0"}, "b": {"version": 3}, "c": "x"},
            "switches": [
                {"service": "s", "feature": "*", "kind": "reroute_to_mars", "value": None},
                {"service": "s", "feature": "*", "kind": "downgrade_model", "value": "gpt-4o"},
                {"service": "s", "feature": "*", "kind": "static_response", "value": None},
                {"service": "s", "feature": "*", "kind": "disable_tools", "value": None},
                "nonsense",
            ],
        }
    )
    assert dict(state.prompts) == {"a": control.PromptVersion("1.0.0")}
    assert state.switches == (Switch("s", "*", "disable_tools"),)
    for bad in ([], {"prompts": []}, {"switches": {}}):
        with pytest.raises(ValueError, match="control answer"):
            parse_control(bad)


# --- configuration ----------------------------------------------------------------------------------
def test_environment_configures_control(server: ControlServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_CONTROL_URL", server.url + "/")
    monkeypatch.setenv("OTEL_LLM_CONTROL_REFRESH_SECONDS", "0.05")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    c = control.enable_control()
    try:
        assert c is not None
        assert c.refresh_interval_seconds == 0.05
        assert c.wait_for_polls(1, WAIT_SECONDS)
        assert server.queries[0] == "/api/v1/control?service=from-env"
        assert control.active_version("answer") == "1.0.0"
    finally:
        control.disable_control()
    assert control.active_version("answer") is None


@pytest.mark.parametrize("raw", ["soon", "-1", "0", "nan", "inf"])
def test_bad_refresh_env_falls_back_to_default(
    server: ControlServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    monkeypatch.setenv("OTEL_LLM_CONTROL_REFRESH_SECONDS", raw)
    c = control.enable_control(server.url, service=SERVICE)
    try:
        assert c is not None
        assert c.refresh_interval_seconds == control.DEFAULT_REFRESH_SECONDS
        assert "OTEL_LLM_CONTROL_REFRESH_SECONDS" in caplog.text
    finally:
        control.disable_control()


def test_argument_wins_over_environment(server: ControlServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_CONTROL_REFRESH_SECONDS", "30")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    c = control.enable_control(server.url, service=SERVICE, refresh_interval_seconds=0.5)
    try:
        assert c is not None
        assert (c.refresh_interval_seconds, c.service) == (0.5, SERVICE)
    finally:
        control.disable_control()


def test_missing_or_bad_url_env_leaves_control_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OTEL_LLM_CONTROL_URL", raising=False)
    assert control.enable_control() is None
    monkeypatch.setenv("OTEL_LLM_CONTROL_URL", "collector:4320")
    assert control.enable_control() is None
    assert "OTEL_LLM_CONTROL_URL" in caplog.text
    assert control.control_client() is None


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"refresh_interval_seconds": 0.0}, "refresh_interval_seconds"),
        ({"timeout_seconds": -1.0}, "timeout_seconds"),
    ],
)
def test_bad_arguments_raise_naming_the_setting(kwargs: dict[str, Any], setting: str) -> None:
    options: dict[str, Any] = {"url": "http://127.0.0.1:1", **kwargs}
    url = options.pop("url")
    with pytest.raises(ValueError, match=setting):
        ControlClient(url, service=SERVICE, **options)


def test_stop_ends_the_polling_thread(server: ControlServer) -> None:
    c = ControlClient(server.url, service=SERVICE, refresh_interval_seconds=0.05)
    c.start()
    assert c.wait_for_polls(2, WAIT_SECONDS)
    c.stop()
    polls = c.polls
    assert not any(t.name == "otel-llm-control" for t in threading.enumerate())
    assert c.polls == polls
