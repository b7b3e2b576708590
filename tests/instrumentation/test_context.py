"""App context on GenAI spans: nesting, threads, asyncio tasks; tool execution spans."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

import otel_llm
from otel_llm.testing.llm_server import LLMServer
from tests.conftest import Telemetry

MESSAGES = [{"role": "user", "content": "hello"}]


def test_nested_contexts_merge_and_restore() -> None:
    with otel_llm.llm_context(feature="search", prompt_name="p", segments={"locale": "de"}):
        with otel_llm.llm_context(prompt_version="2.0.0", segments={"tier": "gold"}) as inner:
            assert (inner.feature, inner.prompt_name, inner.prompt_version) == ("search", "p", "2.0.0")
            assert dict(inner.segments) == {"locale": "de", "tier": "gold"}
        assert otel_llm.current_context().prompt_version is None
    assert otel_llm.current_context().feature is None


def test_unknown_or_bad_context_values_are_refused() -> None:
    with pytest.raises(TypeError, match="sequence of strings"):
        with otel_llm.llm_context(context_sources="one-string"):  # type: ignore[arg-type]
            pass


def _ask(server: LLMServer, feature: str) -> str:
    with otel_llm.llm_context(feature=feature, prompt_name="answer", prompt_version=feature[-1]):
        with openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return feature


def test_context_follows_work_into_thread_pools(telemetry: Telemetry, llm_server: LLMServer) -> None:
    def call_in_thread() -> None:
        with openai.OpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with (
        otel_llm.llm_context(feature="batch", context_documents=3),
        ThreadPoolExecutor(max_workers=4) as pool,
    ):
        for future in [pool.submit(call_in_thread) for _ in range(6)]:
            future.result()
    spans = telemetry.genai_spans()
    assert len(spans) == 6
    assert {(s.attributes or {}).get("otel_llm.feature") for s in spans} == {"batch"}
    assert {(s.attributes or {}).get("otel_llm.context.documents") for s in spans} == {3}


def test_each_thread_keeps_its_own_context(telemetry: Telemetry, llm_server: LLMServer) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda f: _ask(llm_server, f), [f"feature-{i}" for i in range(8)]))
    spans = telemetry.genai_spans()
    pairs = {
        ((s.attributes or {})["otel_llm.feature"], (s.attributes or {})["gen_ai.prompt.version"])
        for s in spans
    }
    assert pairs == {(f"feature-{i}", str(i)) for i in range(8)}


def test_context_follows_asyncio_gather(telemetry: Telemetry, llm_server: LLMServer) -> None:
    async def one(client: openai.AsyncOpenAI, feature: str) -> None:
        with otel_llm.llm_context(feature=feature):
            await asyncio.sleep(0)
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    async def main() -> None:
        async with openai.AsyncOpenAI(base_url=llm_server.openai_base_url, api_key="t", max_retries=0) as c:
            with otel_llm.llm_context(prompt_name="shared"):
                await asyncio.gather(*(one(c, f"f{i}") for i in range(5)))

    asyncio.run(main())
    spans = telemetry.genai_spans()
    assert sorted((s.attributes or {})["otel_llm.feature"] for s in spans) == [f"f{i}" for i in range(5)]
    assert {(s.attributes or {})["gen_ai.prompt.name"] for s in spans} == {"shared"}


def test_last_call_hands_back_the_span_context(telemetry: Telemetry, llm_server: LLMServer) -> None:
    _ask(llm_server, "feedback-1")
    handle = otel_llm.last_call()
    assert handle is not None
    span = telemetry.only_call()
    assert handle.span_context.span_id == span.context.span_id
    assert handle.response_id == (span.attributes or {})["gen_ai.response.id"]


def test_tool_spans_as_context_manager_and_decorator(telemetry: Telemetry) -> None:
    @otel_llm.tool("lookup_price", description="Price of a plan")
    def lookup(plan: str) -> int:
        return {"pro": 20}[plan]

    @otel_llm.tool()
    async def fetch_docs(query: str) -> list[str]:
        return [query]

    with otel_llm.llm_context(feature="agent"):
        assert lookup("pro") == 20
        assert asyncio.run(fetch_docs("q")) == ["q"]
        with pytest.raises(KeyError):
            lookup("enterprise")
        with otel_llm.tool_span("get_weather", call_id="call_1") as span:
            span.set_attribute("app.city", "Paris")

    spans = {s.name: s for s in telemetry.finished()}
    ok = [s for s in telemetry.finished() if s.name == "execute_tool lookup_price"]
    assert len(ok) == 2
    assert (ok[0].attributes or {})["gen_ai.tool.name"] == "lookup_price"
    assert (ok[0].attributes or {})["gen_ai.operation.name"] == "execute_tool"
    assert (ok[0].attributes or {})["otel_llm.feature"] == "agent"
    assert (ok[1].attributes or {})["error.type"] == "KeyError"
    assert ok[1].status.status_code.name == "ERROR"
    assert "execute_tool fetch_docs" in spans
    weather = spans["execute_tool get_weather"].attributes or {}
    assert weather["gen_ai.tool.call.id"] == "call_1"
    assert weather["app.city"] == "Paris"
