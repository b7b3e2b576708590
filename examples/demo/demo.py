"""The otel-llm demo: the blind-spot incident caught, attributed, rolled back and recovered on a local stack.

    python examples/demo/demo.py               # runs until Ctrl-C after the incident
    python examples/demo/demo.py --short       # stops once recovery is confirmed (about two minutes)

What runs, all on loopback (`examples/demo/stack.py`):
1. `otel-llm collector` with embedded defaults, the demo's rule file (`examples/demo/rules.yaml`: the
   default faithfulness P0 rule on a one-minute horizon) and Alertmanager as its notification target;
2. Alertmanager with the shipped example routing (`grafana/alertmanager/`), PagerDuty and Slack pointed at
   a local receiver; Prometheus scraping the collector with the shipped rules (`grafana/alerts/`);
3. a local OpenAI-compatible server that answers from the context it is given;
4. a support bot using the real `openai` SDK, instrumented by `otel_llm`: spans and evaluation results go
   over OTLP/gRPC, the local groundedness evaluator scores every answer, and the prompt version comes
   from the collector's prompt registry (`otel_llm.prompt`), refreshed every half second.

The story: prompt `answer` 1.0.0 is live. CI deploys 2.0.0, which ships with a retrieval refactor that cuts
the fresh part of every document, so answers quote stale prices. Latency and errors stay green. The
faithfulness rule fires within a minute or two and names the deployment; its `auto_rollback` action puts
1.0.0 back; the bot follows within its refresh interval; Alertmanager pages through the (local) PagerDuty
receiver; a minute later the collector confirms the recovery.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import REPO, Stack, running_stack

DOCS = {
    "pricing": "The Pro plan costs 49 dollars per month. The Basic plan costs 9 dollars per month.",
    "limits": "The Pro plan includes 100 seats. The Basic plan includes 5 seats.",
    "support": "Support is available on weekdays from 9 to 17 CET by email.",
}
STALE = {"49": "39", "9 dollars": "7 dollars", "100": "50", "5 seats": "3 seats", "9 to 17": "8 to 16"}
QUESTIONS = ["What does the Pro plan cost?", "How many seats come with Basic?", "When is support open?"]
TOKEN = "demo-token"
PROMPT = "answer"
GOOD, BAD = "1.0.0", "2.0.0"
DEMO_RULES = Path(__file__).resolve().parent / "rules.yaml"


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


# --- the app -------------------------------------------------------------------------------------------
def answer_from_context(request: Any) -> str:
    """The local model: answers with the retrieved sentences it was given (stale ones if that is all)."""
    words = set(re.findall(r"\w+", request.last_user_text.lower()))
    sentences = [
        s.strip() + "."
        for s in request.system.split(".")
        if s.strip() and set(re.findall(r"\w+", s.lower())) & words
    ]
    return " ".join(sentences[:2]) or "I can't help with that."


def retrieve(question: str, *, truncated: bool) -> list[str]:
    words = set(re.findall(r"\w+", question.lower()))
    docs = [text for text in DOCS.values() if words & set(re.findall(r"\w+", text.lower()))]
    if not truncated:
        return docs
    # The 2.0.0 refactor cuts the fresh part of each document; an outdated cached copy fills the gap.
    out = []
    for doc in docs:
        for new, old in STALE.items():
            doc = doc.replace(new, old)
        out.append(doc)
    return out


class SupportBot:
    """The instrumented app: asks the model, with the prompt version the registry says is active."""

    def __init__(self, base_url: str) -> None:
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key="demo", max_retries=0)
        self.calls = 0
        self.served: dict[str, int] = {}
        self.stop = threading.Event()

    def ask(self, question: str) -> None:
        import otel_llm

        with otel_llm.prompt(PROMPT, feature="support") as ctx:
            version = ctx.prompt_version or GOOD
            docs = retrieve(question, truncated=version == BAD)
            with otel_llm.llm_context(
                context_documents=len(docs),
                context_chars=sum(map(len, docs)),
                retrieved_context=list(DOCS.values()),
            ):
                self.client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[
                        {"role": "system", "content": " ".join(docs)},
                        {"role": "user", "content": question},
                    ],
                )
        self.calls += 1
        self.served[version] = self.served.get(version, 0) + 1

    def run(self, calls_per_second: float) -> None:
        i = 0
        while not self.stop.is_set():
            self.ask(QUESTIONS[i % len(QUESTIONS)])
            i += 1
            self.stop.wait(1 / calls_per_second)


# --- talking to the collector --------------------------------------------------------------------------
def api(stack: Stack, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://{stack.collector_api}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def wait_for(what: str, check: Callable[[], Any], timeout_seconds: float, on_wait: Callable[[], None]) -> Any:
    deadline = time.monotonic() + timeout_seconds
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if time.monotonic() - last_report >= 15:
            on_wait()
            last_report = time.monotonic()
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout_seconds:.0f} s waiting for {what}")


def firing_alert(stack: Stack) -> dict[str, Any] | None:
    alerts = api(stack, "/api/v1/alerts")["alerts"]
    return next(
        (a for a in alerts if a["status"] == "firing" and a["labels"].get("prompt_version") == BAD), None
    )


def rollback(stack: Stack, *, checked: bool = False) -> dict[str, Any] | None:
    """The automatic rollback of the prompt; with `checked`, only once its recovery watch has a verdict."""
    for decision in api(stack, "/api/v1/rollbacks")["rollbacks"]:
        if decision["prompt"] == PROMPT and (not checked or decision["recovery"] not in ("", "pending")):
            return dict(decision)
    return None


def print_series(stack: Stack) -> None:
    rows = api(stack, "/api/v1/series?window=5m")["series"]
    print(f"    {'prompt':<14} {'calls/5m':>8} {'errors':>6} {'p95 ms':>7} {'faithfulness':>12}")
    for row in sorted(rows, key=lambda r: r["series"]["prompt_version"]):
        key = row["series"]
        faith = row["evaluations"].get("faithfulness", {}).get("mean")
        p95_ms = (row["latency_s"]["p95"] or 0) * 1000
        score = "-" if faith is None else f"{faith:.2f}"
        print(
            f"    {key['prompt_name'] + ' ' + key['prompt_version']:<14} {row['count']:>8} "
            f"{row['error_rate']:>6.1%} {p95_ms:>7.1f} {score:>12}",
            flush=True,
        )


def pages(receiver: Any) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.requests if r.path == "/pagerduty"]


# --- the run -------------------------------------------------------------------------------------------
def start_stack(stack: Stack, receiver_url: str) -> None:
    say("starting Alertmanager, the collector and Prometheus")
    stack.start_alertmanager(receiver_url)
    targets = [{"name": "alertmanager", "kind": "alertmanager", "url": f"http://{stack.alertmanager}"}]
    settings = {
        "rules_file": str(DEMO_RULES),
        "notify": {"targets": targets} if stack.alertmanager else {},
        "auto_rollback_recovery_seconds": 30,
    }
    stack.start_collector(settings, env={"OTEL_LLM_API_TOKEN": TOKEN})
    stack.start_prometheus()
    for missing in stack.missing:
        say(
            f"{missing} is not installed (scripts/setup.sh installs it when run as root): going on without it"
        )
    print_where(stack, receiver_url)
    for version in (GOOD, BAD):
        text = f"Answer from the documents ({version})."
        api(
            stack,
            "/api/v1/prompts/register",
            {"name": PROMPT, "version": version, "text": text, "created_by": "demo"},
        )
    api(stack, "/api/v1/prompts/deploy", {"name": PROMPT, "version": GOOD, "by": "demo", "reason": "launch"})


@contextlib.contextmanager
def instrumented_app(stack: Stack) -> Iterator[Any]:
    """The app's OpenTelemetry set-up and otel_llm (instrumentation, evaluators, control client); all of it
    flushed and shut down on exit, while the collector still listens."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import otel_llm

    resource = Resource.create({"service.name": "support-bot", "service.version": "1.0.0"})
    tracer_provider = TracerProvider(resource=resource)
    span_exporter = OTLPSpanExporter(endpoint=stack.otlp_grpc, insecure=True)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=200))
    logger_provider = LoggerProvider(resource=resource)
    log_exporter = OTLPLogExporter(endpoint=stack.otlp_grpc, insecure=True)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter, schedule_delay_millis=200))
    otel_llm.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    otel_llm.enable_evaluation(sample_rate=1.0, sample_by_response_id=True)
    control = otel_llm.enable_control(
        f"http://{stack.collector_api}", service="support-bot", refresh_interval_seconds=0.5
    )
    try:
        if control is None or not control.wait_for_polls(1, timeout_seconds=10):
            raise SystemExit("the app could not reach the collector's control API")
        yield control
    finally:
        otel_llm.disable_control()
        otel_llm.disable_evaluation()
        otel_llm.uninstrument()
        tracer_provider.shutdown()
        logger_provider.shutdown()


def tell_story(stack: Stack, bot: SupportBot, control: Any, receiver: Any, args: argparse.Namespace) -> None:
    """Deploy the bad version, then show the alert, the rollback, the page and the recovery as they come."""
    time.sleep(args.warmup_seconds)
    # Land the deploy early in a minute: rules run on minute boundaries of event time, and 2.0.0 needs 20
    # evaluated answers in the minute before one to be judged.
    seconds_into_minute = time.time() % 60
    if seconds_into_minute > 45:
        time.sleep(61 - seconds_into_minute)
    print_series(stack)

    say(f">>> CI deploys prompt {PROMPT} {BAD} (a retrieval refactor: stale text replaces fresh)")
    deploy = {"name": PROMPT, "version": BAD, "by": "ci-pipeline", "reason": "retrieval refactor"}
    api(stack, "/api/v1/prompts/deploy", deploy)
    deployed_at = time.monotonic()

    def progress() -> None:
        say("waiting for the next minute boundary of event time ...")
        print_series(stack)

    alert = wait_for("the faithfulness alert", lambda: firing_alert(stack), 180, progress)
    notes = alert["annotations"]
    labels = alert["labels"]
    elapsed = time.monotonic() - deployed_at
    say(f"!!! ALERT {labels['alertname']} [{labels['severity']}] firing {elapsed:.0f} s after the deploy")
    print(f"    {notes.get('summary', '')}")
    deployment = notes.get("deployment") or "none"
    print(f"    correlated deployment: {deployment} (confidence {notes.get('deployment_confidence', '-')})")
    print_series(stack)

    decision = wait_for("the automatic rollback", lambda: rollback(stack), 30, progress)
    say(
        f"<<< automatic rollback of {PROMPT}: {decision['from_version']} -> {decision['to_version']} "
        f"({decision['outcome']}: {decision['reason']})"
    )
    wait_for("the app to follow", lambda: control.active_version(PROMPT) == GOOD, 10, progress)
    say(f"support-bot now serves {PROMPT} {GOOD} (control refresh every 0.5 s)")

    if stack.alertmanager:
        summary = notes.get("summary", "")
        [page] = wait_for(
            "Alertmanager's page",
            lambda: [p for p in pages(receiver) if summary in p["payload"]["summary"]][:1],
            60,
            progress,
        )
        say(f"Alertmanager paged the (local) PagerDuty receiver: {page['payload']['summary']}")

    checked = wait_for("the recovery check", lambda: rollback(stack, checked=True), 180, progress)
    say(f"recovery after the rollback: {checked['recovery']}")
    print_series(stack)
    if stack.alertmanager:
        # Prometheus evaluates the shipped rule files too (e.g. the SLO burn-rate rules) and pages through
        # the same Alertmanager.
        for other in sorted(
            {p["payload"]["summary"] for p in pages(receiver)} - {page["payload"]["summary"]}
        ):
            say(f"also paged: {other}")
    if stack.prometheus:
        rules = prometheus_rule_count(stack)
        samples = stack.prometheus_query('otel_llm_window_eval_score_mean{evaluation="faithfulness"}')
        say(f"Prometheus: {rules} shipped rules loaded, {len(samples)} faithfulness series scraped")
    say(f"demo summary: {bot.calls} calls, served by version: {dict(sorted(bot.served.items()))}")


def run(args: argparse.Namespace) -> int:
    from otel_llm_collector.testing_receivers import RecordingReceiver

    from otel_llm.testing.llm_server import LLMServer

    run_dir = Path(tempfile.mkdtemp(prefix="otel-llm-demo-"))
    try:
        with (
            RecordingReceiver() as receiver,
            LLMServer(answer_from_context) as llm,
            running_stack(run_dir) as stack,
        ):
            start_stack(stack, receiver.url)
            with instrumented_app(stack) as control:
                bot = SupportBot(llm.openai_base_url)
                traffic = threading.Thread(target=bot.run, args=(args.calls_per_second,), daemon=True)
                traffic.start()
                say(f"support-bot is serving prompt {PROMPT} {GOOD} ({args.calls_per_second:g} calls/s)")
                try:
                    tell_story(stack, bot, control, receiver, args)
                    if not args.short:
                        say("the bot keeps serving; Ctrl-C stops everything")
                        while True:
                            time.sleep(30)
                            print_series(stack)
                finally:
                    bot.stop.set()
                    traffic.join(timeout=10)
    except KeyboardInterrupt:
        say("stopped")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def prometheus_rule_count(stack: Stack) -> int:
    with urllib.request.urlopen(f"http://{stack.prometheus}/api/v1/rules", timeout=5) as response:
        groups = json.load(response)["data"]["groups"]
    return sum(len(group["rules"]) for group in groups)


def print_where(stack: Stack, receiver_url: str) -> None:
    print(
        f"    collector API   http://{stack.collector_api}/api/v1/series   /api/v1/alerts   /api/v1/rollbacks"
    )
    print(f"    metrics         http://{stack.collector_api}/metrics")
    print(f"    OTLP            grpc {stack.otlp_grpc}")
    if stack.prometheus:
        print(f"    Prometheus      http://{stack.prometheus}/alerts")
    if stack.alertmanager:
        print(
            f"    Alertmanager    http://{stack.alertmanager}/#/alerts   (pages delivered to {receiver_url})"
        )
    print(f"    Grafana         import {REPO / 'grafana' / 'dashboards'}/*.json (Dashboards > New > Import),")
    print(
        f"                    datasource: a Prometheus at http://{stack.prometheus or '<prometheus>'}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="stop once the recovery is confirmed")
    parser.add_argument("--calls-per-second", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=None, help="1.0.0 traffic before the deploy")
    args = parser.parse_args(argv)
    if args.warmup_seconds is None:
        args.warmup_seconds = 5.0 if args.short else 30.0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
