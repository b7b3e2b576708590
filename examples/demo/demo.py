"""The otel-llm demo: the collector with embedded defaults and an instrumented RAG app sending it traffic.

    python examples/demo/demo.py               # runs until Ctrl-C
    python examples/demo/demo.py --short       # a few seconds, for tests

What runs, all on loopback:
1. a local OpenAI-compatible server (`otel_llm.testing.llm_server`) that answers from the retrieved context;
2. `otel-llm collector` with embedded defaults (OTLP gRPC/HTTP, /metrics, /api/v1), as a subprocess;
3. a RAG app using the real `openai` SDK, instrumented by `otel_llm`, exporting spans and evaluation log
   records over OTLP/gRPC, with the local groundedness and refusal evaluators scoring every call.

Halfway through, the app ships "v2" of its prompt with the classic bug: the retrieved context is cut, so
answers quote a stale price. The terminal shows the collector's windowed view: call rate, errors,
latency and the faithfulness score per prompt version, where v2's faithfulness falls while latency and
errors stay green.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

DOCS = {
    "pricing": "The Pro plan costs 49 dollars per month. The Basic plan costs 9 dollars per month.",
    "limits": "The Pro plan includes 100 seats. The Basic plan includes 5 seats.",
    "support": "Support is available on weekdays from 9 to 17 CET by email.",
}
STALE = {"49": "39", "9 dollars": "7 dollars", "100": "50"}
QUESTIONS = ["What does the Pro plan cost?", "How many seats come with Basic?", "When is support open?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answer_from_context(request: Any) -> str:
    """The local model: answers with the retrieved sentences it was given (stale ones if that is all)."""
    system = request.system
    words = set(re.findall(r"\w+", request.last_user_text.lower()))
    sentences = [
        s.strip() + "." for s in system.split(".") if s.strip() and set(re.findall(r"\w+", s.lower())) & words
    ]
    return " ".join(sentences[:2]) or "I can't help with that."


def retrieve(question: str, *, truncated: bool) -> list[str]:
    words = set(re.findall(r"\w+", question.lower()))
    docs = [text for text in DOCS.values() if words & set(re.findall(r"\w+", text.lower()))]
    if truncated:
        # The v2 refactor cuts the fresh part of each document; an outdated cached copy fills the gap.
        out = []
        for doc in docs:
            for new, old in STALE.items():
                doc = doc.replace(new, old)
            out.append(doc)
        return out
    return docs


@contextlib.contextmanager
def collector(
    state_dir: str, grpc_port: int, http_port: int, api_port: int
) -> Iterator[subprocess.Popen[str]]:
    exe = shutil.which("otel-llm") or os.path.join(os.path.dirname(sys.executable), "otel-llm")
    proc = subprocess.Popen(
        [
            exe,
            "collector",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{http_port}",
            "--http-endpoint",
            f"127.0.0.1:{api_port}",
            "--state-dir",
            state_dir,
            "--log-level",
            "WARNING",
        ],
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the collector did not start") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def series(api_port: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v1/series?window=5m", timeout=5) as r:
        body: dict[str, Any] = json.load(r)
    return list(body["series"])


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"  {'feature':<10} {'prompt':<10} {'calls':>5} {'errors':>6} {'p95 ms':>7} {'faithfulness':>12}")
    for row in rows:
        key = row["series"]
        faith = row["evaluations"].get("faithfulness", {}).get("mean")
        p95_ms = (row["latency_s"]["p95"] or 0) * 1000
        prompt = f"{key['prompt_name']} {key['prompt_version']}"
        score = "-" if faith is None else f"{faith:.2f}"
        print(
            f"  {key['feature']:<10} {prompt:<10} {row['count']:>5} "
            f"{row['error_rate']:>6.1%} {p95_ms:>7.1f} {score:>12}"
        )


def run(args: argparse.Namespace) -> int:
    import openai
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import otel_llm
    from otel_llm.testing.llm_server import LLMServer

    grpc_port, http_port, api_port = free_port(), free_port(), free_port()
    state_dir = tempfile.mkdtemp(prefix="otel-llm-demo-")
    calls = 40 if args.short else 10_000
    with LLMServer(answer_from_context) as llm, collector(state_dir, grpc_port, http_port, api_port):
        print(
            f"collector API:   http://127.0.0.1:{api_port}/api/v1/series   metrics: http://127.0.0.1:{api_port}/metrics"
        )
        print(f"OTLP endpoints:  grpc 127.0.0.1:{grpc_port}  http 127.0.0.1:{http_port}")
        resource = Resource.create({"service.name": "support-bot", "service.version": "1.0.0"})
        tracer_provider = TracerProvider(resource=resource)
        endpoint = f"127.0.0.1:{grpc_port}"
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=200)
        )
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(
                OTLPLogExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=200
            )
        )
        otel_llm.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
        otel_llm.enable_evaluation(sample_rate=1.0, sample_by_response_id=True)
        client = openai.OpenAI(base_url=llm.openai_base_url, api_key="demo", max_retries=0)
        try:
            for i in range(calls):
                version = "2.0.0" if i >= calls // 2 else "1.0.0"
                question = QUESTIONS[i % len(QUESTIONS)]
                docs = retrieve(question, truncated=version == "2.0.0")
                with otel_llm.llm_context(
                    feature="support",
                    prompt_name="answer",
                    prompt_version=version,
                    context_documents=len(docs),
                    context_chars=sum(map(len, docs)),
                    retrieved_context=list(DOCS.values()),
                ):
                    client.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[
                            {"role": "system", "content": " ".join(docs)},
                            {"role": "user", "content": question},
                        ],
                    )
                if i == calls // 2:
                    print("\n>>> shipping prompt answer v2.0.0 (context truncation bug)\n")
                if (i + 1) % 20 == 0:
                    tracer_provider.force_flush()
                    logger_provider.force_flush()
                    time.sleep(0.3)
                    print_table(series(api_port))
                    print()
                if not args.short:
                    time.sleep(0.05)
        except KeyboardInterrupt:
            print("stopping")
        finally:
            otel_llm.disable_evaluation()
            tracer_provider.force_flush()
            logger_provider.force_flush()
            time.sleep(0.5)
            rows = series(api_port)
            print("final 5m window per series:")
            print_table(rows)
            client.close()
            otel_llm.uninstrument()
            tracer_provider.shutdown()
            logger_provider.shutdown()
    shutil.rmtree(state_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="send a few dozen calls and stop")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
