"""A support-answer service whose prompt version and degradation come from the collector.

The app asks for its prompt by name (`otel_llm.prompt("support-answer")`) and gets the version the
collector's registry has active, so a deploy or rollback reaches it within one refresh interval with no
restart, and every GenAI span carries `gen_ai.prompt.version`. At each decision point it asks the kill-switch
helpers whether to retrieve, whether to offer tools, which model to call and whether to answer with a canned
text, so that an operator can shed load or cost from the collector (`POST /api/v1/switches`) while the
spans say which switch changed the behaviour (`otel_llm.kill_switch`).

    python -m otel_llm.testing.llm_server --port 8000 &
    otel-llm collector &
    OTEL_LLM_CONTROL_URL=http://127.0.0.1:9464 OTEL_SERVICE_NAME=support-bot \\
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=test \\
        opentelemetry-instrument python examples/control_app/app.py --rounds 5 --pause-seconds 3

`OPENAI_BASE_URL` defaults to the local server above, so the example never reaches the network by accident.
Without a collector the app still answers (the helpers fail open and no version is tagged).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import openai
from opentelemetry import trace

from otel_llm import control

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
FEATURE = "support-answer"
PROMPT_NAME = "support-answer"
MODEL = os.environ.get("CONTROL_APP_MODEL", "gpt-4o")
# Stands in for the server span a web framework's instrumentation would start per request: the helpers mark
# it with the switches they applied.
tracer = trace.get_tracer(__name__)

KNOWLEDGE = {
    "refund": "Refunds are available within 30 days of purchase for yearly plans.",
    "pro": "The Pro plan costs 49 dollars per user per month.",
    "sso": "Single sign-on is included in the Enterprise plan.",
}

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "open_ticket",
            "description": "Open a support ticket for the user.",
            "parameters": {"type": "object", "properties": {"summary": {"type": "string"}}},
        },
    }
]


def retrieve(question: str) -> list[str]:
    """Passages whose keyword appears in the question (a stand-in for a vector store)."""
    words = question.lower()
    return [text for key, text in KNOWLEDGE.items() if key in words]


def answer(client: openai.OpenAI, question: str) -> str:
    """One request: every decision the kill switches can override is taken here, inside `prompt()`."""
    with tracer.start_as_current_span("answer"), control.prompt(PROMPT_NAME, feature=FEATURE) as ctx:
        canned = control.static_response()
        if canned is not None:  # the operator switched the feature to a fixed answer: no model call at all
            return canned
        docs = retrieve(question) if control.retrieval_enabled() else []
        messages: list[Any] = [
            {"role": "system", "content": f"Prompt {ctx.prompt_name} {ctx.prompt_version or 'unversioned'}."},
            {"role": "system", "content": ("Context:\n" + "\n".join(docs)) if docs else "No context."},
            {"role": "user", "content": question},
        ]
        options: dict[str, Any] = {"tools": TOOLS} if control.tools_enabled() else {}
        reply = client.chat.completions.create(model=control.model_for(MODEL), messages=messages, **options)
        return reply.choices[0].message.content or ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("questions", nargs="*", default=["How do I get a refund?", "What does Pro cost?"])
    parser.add_argument("--rounds", type=int, default=1, help="ask the questions this many times")
    parser.add_argument("--pause-seconds", type=float, default=0.0, help="wait between rounds")
    args = parser.parse_args(argv)

    # OTEL_LLM_CONTROL_URL, OTEL_LLM_CONTROL_REFRESH_SECONDS and OTEL_SERVICE_NAME configure it; returns at
    # once (the first poll runs in the background), or None when no URL is configured.
    client_control = control.enable_control(refresh_interval_seconds=2.0)
    if client_control is not None:
        client_control.wait_for_polls(1, timeout_seconds=2.0)  # only so the first round shows a version
    base_url = os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
    try:
        with openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "test")) as client:
            for round_number in range(args.rounds):
                if round_number:
                    time.sleep(args.pause_seconds)
                version = control.active_version(PROMPT_NAME) or "none"
                for question in args.questions:
                    print(f"[{PROMPT_NAME}@{version}] {question}\n  -> {answer(client, question)}")
    finally:
        control.disable_control()
    return 0


if __name__ == "__main__":
    sys.exit(main())
