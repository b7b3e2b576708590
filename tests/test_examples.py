"""The shipped examples, run as users run them: unmodified, under `opentelemetry-instrument`."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm import attributes as attr
from otel_llm.testing.llm_server import LLMServer, count_tokens
from otel_llm.version import __version__

REPO = Path(__file__).resolve().parent.parent
RAG_APP = REPO / "examples" / "rag_app" / "app.py"
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
SUBPROCESS_TIMEOUT_SECONDS = 120
CHAT_SPAN = "chat gpt-4o-mini"


def _load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rag_app", RAG_APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


app = _load_app()


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


class _OTLPReceiver(ThreadingHTTPServer):
    """Collects the bodies of OTLP/HTTP protobuf trace exports."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OTLPHandler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def scoped_spans(self) -> list[tuple[str, str, str]]:
        """(scope name, scope version, span name) for every span received."""
        with self.lock:
            return [
                (scope_spans.scope.name, scope_spans.scope.version, span.name)
                for request in self.requests
                for resource_spans in request.resource_spans
                for scope_spans in resource_spans.scope_spans
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


def _run_instrumented(server: LLMServer, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    assert INSTRUMENT.exists(), f"{INSTRUMENT} is missing: install the project with its dev extra"
    # Without a distro `opentelemetry-instrument` instruments but configures no SDK: no span is exported.
    assert entry_points(group="opentelemetry_configurator"), "install opentelemetry-distro"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "ANTHROPIC_"))}
    full_env = {
        **base,
        "OTEL_SERVICE_NAME": "rag-app",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OPENAI_BASE_URL": server.openai_base_url,
        "OPENAI_API_KEY": "test",
        **env,
    }
    done = subprocess.run(
        [str(INSTRUMENT), sys.executable, str(RAG_APP)],
        env=full_env,
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.count("\nA: ") == len(app.QUESTIONS), done.stdout
    return done


def _console_spans(stdout: str) -> list[dict[str, Any]]:
    """The spans `ConsoleSpanExporter` printed: JSON objects starting at column 0, among the app's lines."""
    decoder = json.JSONDecoder()
    spans = []
    for start in re.finditer(r"^\{", stdout, re.MULTILINE):
        try:
            value, _ = decoder.raw_decode(stdout, start.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "context" in value and "attributes" in value:
            spans.append(value)
    return spans


def test_rag_app_under_opentelemetry_instrument_prints_one_genai_span_per_question(server: LLMServer) -> None:
    # The official OpenAI instrumentation is installed in the dev environment too; disabled here so that
    # the span is otel_llm's own (with it active, see the coexistence test below).
    done = _run_instrumented(
        server, {"OTEL_TRACES_EXPORTER": "console", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai"}
    )

    chat_spans = [s for s in _console_spans(done.stdout) if s["name"] == CHAT_SPAN]
    assert len(chat_spans) == len(app.QUESTIONS)
    hashes = set()
    for question in app.QUESTIONS:
        documents = app.retrieve(question)
        user_text = app.build_messages(question, documents)[1]["content"]
        [span] = [
            s
            for s in chat_spans
            if s["attributes"][attr.GEN_AI_USAGE_INPUT_TOKENS]
            == count_tokens(app.SYSTEM_PROMPT) + count_tokens(user_text)
            and s["attributes"][attr.CONTEXT_SOURCES] == [d.source for d in documents]
        ]
        attributes = span["attributes"]
        assert attributes[attr.GEN_AI_PROVIDER_NAME] == "openai"
        assert attributes[attr.GEN_AI_OPERATION_NAME] == "chat"
        assert attributes[attr.FEATURE] == app.FEATURE
        assert attributes[attr.GEN_AI_PROMPT_NAME] == app.PROMPT_NAME
        assert attributes[attr.GEN_AI_PROMPT_VERSION] == app.PROMPT_VERSION
        assert attributes[attr.CONTEXT_DOCUMENTS] == len(documents) > 0
        assert attributes[attr.CONTEXT_CHARS] == sum(len(d.text) for d in documents)
        assert attributes[attr.CONDITIONAL_PATH] == "retrieval"
        assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
        assert re.fullmatch(r"[0-9a-f]{64}", attributes[attr.INPUT_HASH])
        hashes.add(attributes[attr.INPUT_HASH])
        # Privacy by default: neither the question nor the retrieved text is on the span.
        assert all(question not in str(v) and documents[0].text not in str(v) for v in attributes.values())
        assert span["resource"]["attributes"]["service.name"] == "rag-app"
    assert len(hashes) == len(app.QUESTIONS)


def test_opentelemetry_instrument_discovers_the_otel_llm_instrumentor(
    server: LLMServer, receiver: _OTLPReceiver
) -> None:
    _run_instrumented(
        server,
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai",
        },
    )

    chat = [(scope, version) for scope, version, name in receiver.scoped_spans() if name == CHAT_SPAN]
    assert chat == [("otel_llm", __version__)] * len(app.QUESTIONS)


def test_with_the_official_openai_instrumentation_also_active_each_call_is_one_enriched_span(
    server: LLMServer, receiver: _OTLPReceiver
) -> None:
    # Everything installed is activated, as a user with both packages would get: the official span owns
    # the call and otel_llm adds its context to it instead of counting the call a second time.
    done = _run_instrumented(server, {"OTEL_TRACES_EXPORTER": "console"})

    chat_spans = [s for s in _console_spans(done.stdout) if s["name"] == CHAT_SPAN]
    assert len(chat_spans) == len(app.QUESTIONS)
    for span in chat_spans:
        attributes = span["attributes"]
        assert attributes["otel_llm.enriched"] is True
        assert attributes[attr.FEATURE] == app.FEATURE
        assert attributes[attr.GEN_AI_PROMPT_VERSION] == app.PROMPT_VERSION
        assert re.fullmatch(r"[0-9a-f]{64}", attributes[attr.INPUT_HASH])


def test_rag_app_runs_without_instrumentation(server: LLMServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    env |= {"OPENAI_BASE_URL": server.openai_base_url, "OPENAI_API_KEY": "test"}
    done = subprocess.run(
        [sys.executable, str(RAG_APP), "Do students get a discount?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "docs/pricing/students.md" in done.stdout.split("(sources: ", 1)[1]
    assert "Question: Do students get a discount?" in done.stdout  # the local server echoes the prompt
    assert "trace_id" not in done.stdout


def test_retrieval_ranks_by_keyword_overlap_and_returns_nothing_without_overlap() -> None:
    assert app.retrieve("refund for a yearly plan")[0].source == "docs/pricing/refunds.md"
    assert app.retrieve("quantum chromodynamics") == []
    assert "(no documents found)" in app.build_messages("quantum chromodynamics", [])[1]["content"]
