"""Quotas: a refused call never reaches the provider (real openai SDK against the local server), says why
on the app's span and in a metric; windows reset at UTC minute and day edges; counts hold under threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import openai
import pytest

import otel_llm
from otel_llm import Quota, QuotaExceeded, QuotaGuard, llm_context
from otel_llm import attributes as attr
from otel_llm.quotas import METRIC_REFUSED, OTHER_TENANT
from otel_llm.testing.llm_server import LLMServer
from tests.conftest import Telemetry

NOON = datetime(2026, 3, 10, 12, 0, 10, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def at(self, hour: int, minute: int, second: int = 0, *, day: int = 10) -> None:
        self.now = datetime(2026, 3, day, hour, minute, second, tzinfo=UTC).timestamp()


def _client(server: LLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)


def _ask(client: openai.OpenAI, text: str) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])


def test_a_quota_stops_the_call_before_the_provider_with_span_attribute_and_metric(
    telemetry: Telemetry, llm_server: LLMServer
) -> None:
    clock = Clock(NOON)
    guard = QuotaGuard(
        {"acme": Quota(calls_per_minute=2)}, clock=clock, meter_provider=telemetry.meter_provider
    )
    tracer = telemetry.tracer_provider.get_tracer("app")
    client = _client(llm_server)
    refused: list[QuotaExceeded] = []
    for i in range(3):
        with tracer.start_as_current_span("handle-request"), llm_context(tenant="acme"):
            try:
                guard.check()
            except QuotaExceeded as stopped:
                refused.append(stopped)
                continue
            _ask(client, f"question {i}")
    assert len(llm_server.requests) == 2
    assert len(telemetry.genai_spans()) == 2
    (exc,) = refused
    assert (exc.tenant, exc.quota, exc.limit, exc.used, exc.requested) == (
        "acme",
        "calls_per_minute",
        2,
        2,
        1,
    )
    assert exc.reset_at == datetime(2026, 3, 10, 12, 1, tzinfo=UTC)
    assert exc.retry_after_seconds == pytest.approx(50.0)
    assert str(exc) == (
        "tenant 'acme' is over its calls_per_minute quota: 2 calls used + 1 requested > limit 2; "
        "resets at 2026-03-10T12:01:00Z (in 50 s)"
    )
    handlers = [s for s in telemetry.finished() if s.name == "handle-request"]
    assert [(s.attributes or {}).get(attr.QUOTA_EXCEEDED) for s in handlers] == [
        None,
        None,
        "calls_per_minute",
    ]
    assert (handlers[2].attributes or {}).get(attr.TENANT) == "acme"
    points = telemetry.metric_points(METRIC_REFUSED)
    assert [(dict(p.attributes), p.value) for p in points] == [
        ({attr.QUOTA_NAME: "calls_per_minute", attr.TENANT: "acme"}, 1)
    ]


def test_finished_calls_count_their_tokens_for_the_context_tenant(
    telemetry: Telemetry, llm_server: LLMServer
) -> None:
    clock = Clock(NOON)
    guard = QuotaGuard({"acme": Quota(tokens_per_day=40)}, clock=clock).track_calls()
    client = _client(llm_server)
    try:
        with llm_context(tenant="acme"):
            guard.check(estimated_tokens=10)
            _ask(client, "how many tokens does this short question use")
        with llm_context(tenant="other"):  # no quota of its own and no default: not counted
            _ask(client, "a question from another tenant")
        _ask(client, "a call outside any tenant")
        otel_llm.flush()
        (span,) = [s for s in telemetry.genai_spans() if (s.attributes or {}).get(attr.TENANT) == "acme"]
        attributes = span.attributes or {}
        input_tokens = attributes[attr.GEN_AI_USAGE_INPUT_TOKENS]
        output_tokens = attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS]
        assert isinstance(input_tokens, int)
        assert isinstance(output_tokens, int)
        used = input_tokens + output_tokens
        assert used > 0
        usage = guard.usage("acme")
        assert (usage.calls_today, usage.tokens_today, usage.tokens_this_minute) == (1, used, used)
        assert guard.usage("other").tokens_today == 0
        with llm_context(tenant="acme"):
            guard.check(estimated_tokens=40 - used)  # exactly up to the limit: admitted
            with pytest.raises(QuotaExceeded) as caught:
                guard.check(estimated_tokens=40 - used + 1)
        assert (caught.value.quota, caught.value.used, caught.value.requested) == (
            "tokens_per_day",
            used,
            40 - used + 1,
        )
        assert caught.value.reset_at == datetime(2026, 3, 11, tzinfo=UTC)
    finally:
        guard.stop_tracking()
    with llm_context(tenant="acme"):
        _ask(client, "after tracking stopped")
    otel_llm.flush()
    assert guard.usage("acme").tokens_today == used


def test_windows_reset_at_the_utc_minute_and_midnight() -> None:
    clock = Clock(NOON)
    guard = QuotaGuard({"acme": Quota(calls_per_minute=2, calls_per_day=3)}, clock=clock)
    guard.check("acme")
    guard.check("acme")
    with pytest.raises(QuotaExceeded, match="calls_per_minute"):
        guard.check("acme")
    assert guard.usage("acme").calls_this_minute == 2  # a refused call is not counted
    clock.at(12, 0, 59)
    with pytest.raises(QuotaExceeded, match="calls_per_minute"):
        guard.check("acme")
    clock.at(12, 1, 0)
    guard.check("acme")
    clock.at(12, 1, 5)
    with pytest.raises(QuotaExceeded) as caught:
        guard.check("acme")
    assert (caught.value.quota, caught.value.used) == ("calls_per_day", 3)
    assert caught.value.reset_at == datetime(2026, 3, 11, tzinfo=UTC)
    clock.at(23, 59, 59)
    with pytest.raises(QuotaExceeded, match="calls_per_day"):
        guard.check("acme")
    clock.at(0, 0, 0, day=11)
    guard.check("acme")
    usage = guard.usage("acme")
    assert (usage.calls_this_minute, usage.calls_today) == (1, 1)
    assert usage.day_resets_at == datetime(2026, 3, 12, tzinfo=UTC)


def test_token_windows_refuse_at_the_limit_and_reset() -> None:
    clock = Clock(NOON)
    guard = QuotaGuard({"acme": Quota(tokens_per_minute=100, tokens_per_day=250)}, clock=clock)
    guard.record_usage("acme", 99)
    guard.check("acme", estimated_tokens=1)  # 99 + 1 stays within 100
    with pytest.raises(QuotaExceeded, match=r"99 tokens used \+ 2 requested > limit 100"):
        guard.check("acme", estimated_tokens=2)
    guard.record_usage("acme", 1)
    clock.at(12, 0, 30)
    with pytest.raises(QuotaExceeded, match="tokens_per_minute"):
        guard.check("acme")  # at the limit: refused even without an estimate
    clock.at(12, 1, 0)
    guard.check("acme", estimated_tokens=100)
    guard.record_usage("acme", 100)
    clock.at(12, 2, 0)
    guard.record_usage("acme", 50)
    with pytest.raises(QuotaExceeded) as caught:
        guard.check("acme", estimated_tokens=1)
    assert (caught.value.quota, caught.value.used, caught.value.limit) == ("tokens_per_day", 250, 250)
    usage = guard.usage("acme")
    assert (usage.tokens_this_minute, usage.tokens_today) == (50, 250)


def test_the_quota_named_is_the_one_that_resets_last() -> None:
    clock = Clock(NOON)
    guard = QuotaGuard({"acme": Quota(calls_per_minute=1, calls_per_day=1)}, clock=clock)
    guard.check("acme")
    with pytest.raises(QuotaExceeded) as caught:
        guard.check("acme")
    assert caught.value.quota == "calls_per_day"


def test_default_quota_unlisted_tenants_and_the_metric_label(telemetry: Telemetry) -> None:
    clock = Clock(NOON)
    unlimited = QuotaGuard({"acme": Quota(calls_per_minute=1)}, clock=clock)
    for _ in range(50):
        unlimited.check("someone-else")
    guard = QuotaGuard(
        {"acme": Quota(calls_per_minute=5)},
        default=Quota(calls_per_minute=1),
        clock=clock,
        meter_provider=telemetry.meter_provider,
    )
    guard.check("tenant-1")
    guard.check("tenant-2")
    for tenant in ("tenant-1", "tenant-2"):
        with pytest.raises(QuotaExceeded):
            guard.check(tenant)  # outside any span: no attribute to set, still refused
    points = telemetry.metric_points(METRIC_REFUSED)
    assert [(dict(p.attributes), p.value) for p in points] == [
        ({attr.QUOTA_NAME: "calls_per_minute", attr.TENANT: OTHER_TENANT}, 2)
    ]


def test_checks_and_usage_from_many_threads_are_counted_exactly() -> None:
    clock = Clock(NOON)
    guard = QuotaGuard({"acme": Quota(calls_per_minute=1000, tokens_per_day=10**9)}, clock=clock)
    admitted = [0] * 8
    refused = [0] * 8
    start = threading.Barrier(8)

    def work(index: int) -> None:
        start.wait()
        for _ in range(250):
            try:
                guard.check("acme")
                admitted[index] += 1
            except QuotaExceeded:
                refused[index] += 1
            guard.record_usage("acme", 3)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (sum(admitted), sum(refused)) == (1000, 1000)
    usage = guard.usage("acme")
    assert (usage.calls_this_minute, usage.tokens_today) == (1000, 8 * 250 * 3)


def test_bad_settings_and_arguments_are_clear_errors() -> None:
    with pytest.raises(
        ValueError, match=r"Quota\.calls_per_minute must be a positive integer or None, got 0"
    ):
        Quota(calls_per_minute=0)
    with pytest.raises(ValueError, match="tokens_per_day"):
        Quota(tokens_per_day=True)
    with pytest.raises(ValueError, match="tenant names"):
        QuotaGuard({"": Quota()})
    with pytest.raises(TypeError, match=r"quotas\['acme'\]: expected a Quota"):
        QuotaGuard({"acme": {"calls_per_minute": 1}})  # type: ignore[dict-item]
    guard = QuotaGuard({"acme": Quota(calls_per_minute=1)})
    with pytest.raises(ValueError, match="no tenant"):
        guard.check()
    with pytest.raises(ValueError, match="estimated_tokens"):
        guard.check("acme", estimated_tokens=-1)
    with pytest.raises(ValueError, match="tokens must be"):
        guard.record_usage("acme", -5)
