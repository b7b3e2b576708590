"""A refund-support agent on the Anthropic Messages API with tool use, traced from question to answer.

Each question runs an agent loop: the model asks for a tool (`tool_use`), the app runs it inside an
`otel_llm.tool_span` and sends the `tool_result` back, until the model answers (`end_turn`). One question is
one trace: an `invoke_agent refund-agent` span with the `chat` spans of the model calls (finish reason,
requested tools, tokens, cost) and the `execute_tool lookup_order` / `execute_tool refund_policy` spans
(`gen_ai.tool.name`, `gen_ai.tool.call_id`; ERROR status when a tool fails) as its children.

    python examples/anthropic_agent/app.py ["Can I get a refund for order A-1001?" ...]

Without `ANTHROPIC_BASE_URL` the app starts the local server (`otel_llm.testing.llm_server`) with
`local_model`, a small deterministic stand-in that uses the tools the way Claude does, so it runs offline
with no key. Spans go to the console, or over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
(`OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc`, the default, or `http/protobuf`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import anthropic
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import Tracer

import otel_llm
from otel_llm.testing.llm_server import LLMRequest, LLMServer, Reply, ToolCall

AGENT_NAME = "refund-agent"
MODEL = os.environ.get("AGENT_MODEL", "claude-haiku-4-5")
FEATURE = "refund-support"
PROMPT_NAME = "refund-agent"
PROMPT_VERSION = "1.0.0"
MAX_STEPS = 6
MAX_TOKENS = 400
TODAY = date(2026, 1, 20)  # fixed, so that the example answers the same every day

SYSTEM_PROMPT = (
    "You help customers with refunds. Look the order up with lookup_order, check the rules with "
    "refund_policy, and answer from what the tools return. Never promise a refund the policy does not allow."
)

QUESTIONS: tuple[str, ...] = (
    "Can I get a refund for order A-1001?",
    "I want my money back for order A-1002.",
    "Please refund order A-9999.",
)


# --- the tools ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    plan: str
    billing: str
    purchased: date
    amount_usd: int


ORDERS: Mapping[str, Order] = {
    o.order_id: o
    for o in (
        Order("A-1001", "Pro", "yearly", date(2026, 1, 5), 588),
        Order("A-1002", "Pro", "monthly", date(2026, 1, 12), 49),
        Order("A-1003", "Starter", "yearly", date(2025, 10, 2), 120),
    )
}


def lookup_order(order_id: str) -> dict[str, Any]:
    """The order's plan, billing period and age; raises `LookupError` for an unknown order."""
    order = ORDERS.get(order_id)
    if order is None:
        raise LookupError(f"no order {order_id}")
    return {
        "order_id": order.order_id,
        "plan": order.plan,
        "billing": order.billing,
        "purchased": order.purchased.isoformat(),
        "days_since_purchase": (TODAY - order.purchased).days,
        "amount_usd": order.amount_usd,
    }


def refund_policy(billing: str) -> dict[str, Any]:
    """The refund rule for a billing period."""
    if billing == "yearly":
        return {"billing": billing, "refundable": True, "window_days": 30}
    return {"billing": billing, "refundable": False, "window_days": 0, "note": "cancel any time instead"}


TOOL_FUNCTIONS: Mapping[str, Callable[..., dict[str, Any]]] = {
    "lookup_order": lookup_order,
    "refund_policy": refund_policy,
}

TOOLS: list[Any] = [
    {
        "name": "lookup_order",
        "description": "Look up an order by its number (like A-1001): plan, billing period, purchase date.",
        "input_schema": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
    {
        "name": "refund_policy",
        "description": "The refund rule for a billing period (monthly or yearly).",
        "input_schema": {
            "type": "object",
            "properties": {"billing": {"type": "string", "enum": ["monthly", "yearly"]}},
            "required": ["billing"],
        },
    },
]
_DESCRIPTIONS = {t["name"]: t["description"] for t in TOOLS}


def run_tool(block: Any) -> dict[str, Any]:
    """One `tool_use` block run inside an `execute_tool` span, answered as a `tool_result` block.

    A failing tool is not the end of the conversation: the span records the error, and the model is told
    (`is_error`) so that it can answer accordingly.
    """
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.id}
    try:
        with otel_llm.tool_span(block.name, call_id=block.id, description=_DESCRIPTIONS.get(block.name)):
            function = TOOL_FUNCTIONS.get(block.name)
            if function is None:
                raise LookupError(f"unknown tool {block.name}")
            output = function(**block.input)
    except (LookupError, TypeError) as exc:
        return {**result, "content": str(exc), "is_error": True}
    return {**result, "content": json.dumps(output)}


# --- the agent ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgentAnswer:
    text: str
    steps: int
    """Model calls made."""
    tools_run: tuple[str, ...]


def ask(client: anthropic.Anthropic, question: str, *, tracer: Tracer) -> AgentAnswer:
    """Run the agent loop for one question, in one `invoke_agent` span."""
    attributes = {
        gen_ai.GEN_AI_OPERATION_NAME: "invoke_agent",
        gen_ai.GEN_AI_AGENT_NAME: AGENT_NAME,
        gen_ai.GEN_AI_PROVIDER_NAME: "anthropic",
        gen_ai.GEN_AI_REQUEST_MODEL: MODEL,
    }
    messages: list[Any] = [{"role": "user", "content": question}]
    tools_run: list[str] = []
    with (
        tracer.start_as_current_span(f"invoke_agent {AGENT_NAME}", attributes=attributes),
        otel_llm.llm_context(feature=FEATURE, prompt_name=PROMPT_NAME, prompt_version=PROMPT_VERSION),
    ):
        for step in range(1, MAX_STEPS + 1):
            response = client.messages.create(
                model=MODEL, max_tokens=MAX_TOKENS, system=SYSTEM_PROMPT, tools=TOOLS, messages=messages
            )
            if response.stop_reason != "tool_use":
                text = "".join(block.text for block in response.content if block.type == "text")
                return AgentAnswer(text, step, tuple(tools_run))
            messages.append({"role": "assistant", "content": response.content})
            results = []
            for block in response.content:
                if block.type == "tool_use":
                    tools_run.append(block.name)
                    results.append(run_tool(block))
            messages.append({"role": "user", "content": results})
    return AgentAnswer(f"Gave up after {MAX_STEPS} steps.", MAX_STEPS, tuple(tools_run))


# --- the local model ------------------------------------------------------------------------------------
_ORDER_ID = re.compile(r"\b[A-Z]-\d{4}\b")


def _blocks(request: LLMRequest) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, Mapping):
                    yield str(message.get("role")), block


def local_model(request: LLMRequest) -> Reply:
    """A deterministic stand-in for Claude: asks for the order, then for the policy, then answers."""
    calls = {
        b["id"]: b for role, b in _blocks(request) if role == "assistant" and b.get("type") == "tool_use"
    }
    results = {
        calls[b["tool_use_id"]]["name"]: b
        for role, b in _blocks(request)
        if b.get("type") == "tool_result" and b.get("tool_use_id") in calls
    }
    question = request.messages[0].get("content") if request.messages else ""
    found = _ORDER_ID.search(question if isinstance(question, str) else "")
    if found is None:
        return Reply(text="Which order is it about? Please give me its number, like A-1001.")
    order_id = found.group()
    if "lookup_order" not in results:
        return Reply(
            text=f"Let me look up order {order_id}.",
            tool_calls=[ToolCall("lookup_order", {"order_id": order_id})],
        )
    if results["lookup_order"].get("is_error"):
        return Reply(text=f"I could not find order {order_id}. Please check the number on your invoice.")
    order = json.loads(str(results["lookup_order"]["content"]))
    if "refund_policy" not in results:
        return Reply(
            text=f"It is a {order['billing']} {order['plan']} plan; let me check the refund rules.",
            tool_calls=[ToolCall("refund_policy", {"billing": order["billing"]})],
        )
    policy = json.loads(str(results["refund_policy"]["content"]))
    days = order["days_since_purchase"]
    if policy["refundable"] and days <= policy["window_days"]:
        verdict = (
            f"can be refunded: {order['billing']} plans are refundable within {policy['window_days']} days "
            f"and it was bought {days} days ago. You will get {order['amount_usd']} dollars back."
        )
    elif policy["refundable"]:
        window = policy["window_days"]
        verdict = f"cannot be refunded any more: it was bought {days} days ago, past the {window}-day window."
    else:
        verdict = (
            f"cannot be refunded: {order['billing']} plans are not refunded, but you can cancel any time."
        )
    return Reply(text=f"Order {order_id} ({order['plan']}, {order['billing']}) {verdict}")


# --- running it -----------------------------------------------------------------------------------------
def tracer_provider() -> TracerProvider:
    """Spans to the console, or over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set."""
    provider = TracerProvider(resource=Resource.create({"service.name": "refund-agent"}))
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(HTTPSpanExporter()))
    return provider


@contextlib.contextmanager
def model_endpoint() -> Iterator[str]:
    """`ANTHROPIC_BASE_URL` if set, else a local server running `local_model` for as long as needed."""
    configured = os.environ.get("ANTHROPIC_BASE_URL")
    if configured:
        yield configured
        return
    with LLMServer(local_model) as server:
        yield server.anthropic_base_url


def main(argv: Sequence[str] | None = None) -> int:
    questions = list(sys.argv[1:] if argv is None else argv) or list(QUESTIONS)
    provider = tracer_provider()
    otel_llm.instrument(tracer_provider=provider)
    tracer = provider.get_tracer("examples.anthropic_agent")
    try:
        with model_endpoint() as base_url:
            api_key = os.environ.get("ANTHROPIC_API_KEY") or "test"
            with anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=1) as client:
                for question in questions:
                    result = ask(client, question, tracer=tracer)
                    tools = ", ".join(result.tools_run) or "none"
                    print(f"Q: {question}\nA: {result.text}\n   (tools: {tools})\n", flush=True)
    finally:
        otel_llm.uninstrument()
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
