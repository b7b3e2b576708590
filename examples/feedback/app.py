"""A chat service whose users rate its answers, minutes after the call, as `user_feedback` evaluations.

When the service answers, it keeps the call's handle (`otel_llm.last_call()`: the span context and the
provider's response id) with the message it shows. When the user clicks thumbs-up or thumbs-down, which can
be minutes later (the call's span ended and was exported long before), `ChatService.rate` calls
`otel_llm.record_feedback`: a `gen_ai.evaluation.result` log record named `user_feedback` (1.0 / `pass` for
up, 0.0 / `fail` for down) that carries the call's trace and span ids and `gen_ai.response.id`. The collector
joins it to the call's series by span context (or response id), where the `thumbs-up-p2` and
`negative-feedback-review` rules watch it.

    python examples/feedback/app.py [--feedback-delay-seconds 120]

Without `OPENAI_BASE_URL` the app starts the local OpenAI-compatible server (`otel_llm.testing.llm_server`,
which echoes the question). Spans and log records go to the console, or over OTLP when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set (`OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc`, the default, or
`http/protobuf`), e.g. to `otel-llm collector`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import openai
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

import otel_llm
from otel_llm.call import CallHandle
from otel_llm.evaluation import Recorded
from otel_llm.testing.llm_server import LLMServer

SERVICE_NAME = "help-chat"
MODEL = os.environ.get("FEEDBACK_MODEL", "gpt-4o-mini")
PROMPT_NAME = "help-answer"
PROMPT_VERSION = "1.0.0"
MAX_KEPT_ANSWERS = 10_000
"""Answers the service remembers for rating; a real service keeps the ids with its chat history instead."""

TOPICS = {
    "billing": ("invoice", "refund", "price", "plan", "pay"),
    "account": ("password", "login", "email", "account"),
}
DEFAULT_FEATURE = "general"

QUESTIONS: tuple[str, ...] = (
    "Where do I find my invoice?",
    "How do I reset my password?",
)


def feature_for(question: str) -> str:
    """The feature (one series in the collector) a question belongs to, by keyword."""
    words = question.lower()
    return next((name for name, keys in TOPICS.items() if any(k in words for k in keys)), DEFAULT_FEATURE)


@dataclass(frozen=True, slots=True)
class Answer:
    message_id: str
    feature: str
    text: str
    call: CallHandle | None
    """None when the app runs uninstrumented: the answer can still be shown, but not rated."""


class ChatService:
    """Answers questions and records the users' ratings of the answers, whenever they come."""

    def __init__(self, client: openai.OpenAI, *, max_kept_answers: int = MAX_KEPT_ANSWERS) -> None:
        self._client = client
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._max_kept_answers = max_kept_answers
        self._ids = itertools.count(1)

    def ask(self, question: str) -> Answer:
        feature = feature_for(question)
        with otel_llm.llm_context(feature=feature, prompt_name=PROMPT_NAME, prompt_version=PROMPT_VERSION):
            completion = self._client.chat.completions.create(
                model=MODEL,
                messages=[
                    {"role": "system", "content": "You answer questions about our product, briefly."},
                    {"role": "user", "content": question},
                ],
            )
            # The handle of the call just made, on this thread: read it here, not later.
            call = otel_llm.last_call()
        answer = Answer(f"msg-{next(self._ids)}", feature, completion.choices[0].message.content or "", call)
        self._answers[answer.message_id] = answer
        if len(self._answers) > self._max_kept_answers:
            self._answers.popitem(last=False)
        return answer

    def rate(self, message_id: str, positive: bool, *, comment: str | None = None) -> Recorded | None:
        """Record a thumbs-up or -down; `None` when the answer is unknown, forgotten, or was not traced."""
        answer = self._answers.get(message_id)
        if answer is None or answer.call is None:
            return None
        return otel_llm.record_feedback(
            positive,
            span_context=answer.call.span_context,
            response_id=answer.call.response_id,
            comment=comment,
        )


# --- running it -----------------------------------------------------------------------------------------
def providers() -> tuple[TracerProvider, LoggerProvider]:
    """Spans and log records to the console, or over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set."""
    resource = Resource.create({"service.name": SERVICE_NAME})
    tracer_provider = TracerProvider(resource=resource)
    logger_provider = LoggerProvider(resource=resource)
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(ConsoleLogRecordExporter()))
    elif os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HTTPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(HTTPSpanExporter()))
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(HTTPLogExporter()))
    return tracer_provider, logger_provider


@contextlib.contextmanager
def model_endpoint() -> Iterator[str]:
    """`OPENAI_BASE_URL` if set, else a local echo server for as long as needed."""
    configured = os.environ.get("OPENAI_BASE_URL")
    if configured:
        yield configured
        return
    with LLMServer() as server:
        yield server.openai_base_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("questions", nargs="*", default=list(QUESTIONS))
    parser.add_argument(
        "--feedback-delay-seconds",
        type=float,
        default=5.0,
        help="how long the users take to rate the answers (a real user: minutes)",
    )
    args = parser.parse_args(argv)
    if args.feedback_delay_seconds < 0:
        parser.error("--feedback-delay-seconds: must not be negative")

    tracer_provider, logger_provider = providers()
    otel_llm.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    try:
        with model_endpoint() as base_url:
            api_key = os.environ.get("OPENAI_API_KEY") or "test"
            with openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=1) as client:
                service = ChatService(client)
                answers = [service.ask(question) for question in args.questions]
        for answer in answers:
            print(f"[{answer.message_id}] ({answer.feature}) {answer.text}", flush=True)
        # The calls' spans leave the process now, as a batch processor sends them long before anyone rates.
        otel_llm.flush()
        tracer_provider.force_flush()
        print(f"... the users read the answers for {args.feedback_delay_seconds:g} s ...", flush=True)
        time.sleep(args.feedback_delay_seconds)
        for number, answer in enumerate(answers):
            positive = number % 2 == 0  # every other answer gets a thumbs-down, for the example's sake
            recorded = service.rate(answer.message_id, positive)
            verdict = "thumbs-up" if positive else "thumbs-down"
            where = recorded.value if recorded is not None else "not recorded"
            print(f"[{answer.message_id}] {verdict} -> {where}", flush=True)
    finally:
        otel_llm.uninstrument()
        tracer_provider.shutdown()
        logger_provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
