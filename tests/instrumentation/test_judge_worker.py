"""The judge off the request path: its own worker, sampling, queue and drain, and no telemetry of its own."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import httpx
import openai
import pytest

import otel_llm
from otel_llm import cost, evaluation_hook
from otel_llm.evaluation_worker import EvaluationWorker
from otel_llm.evaluators import EvaluationInput
from otel_llm.judge import Judge, judge_evaluators
from otel_llm.judge_prompts import load_prompt
from otel_llm.judge_wire import HttpReply
from otel_llm.testing.llm_server import LLMRequest, LLMServer, Reply, Usage
from tests.conftest import Telemetry

VERDICT = '{"score": 0.9, "explanation": "Fine."}'
DOCS = ["The Pro plan costs $39 per month."]
APP_USAGE = Usage(input_tokens=50, output_tokens=10)
JUDGE_USAGE = Usage(input_tokens=2000, output_tokens=30)


def _answering(request: LLMRequest) -> Reply:
    """The app's model and the judge share one local server: judge prompts get a verdict."""
    if request.system.startswith("You check answers"):
        return Reply(text=VERDICT, usage=JUDGE_USAGE)
    return Reply(text="The Pro plan costs $39 per month.", usage=APP_USAGE)


def _app_call(server: LLMServer, **context: Any) -> None:
    with (
        otel_llm.llm_context(retrieved_context=DOCS, **context),
        openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client,
    ):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "What does Pro cost?"}]
        )


def _total(telemetry: Telemetry, name: str, **where: str) -> float:
    return sum(
        point.value
        for point in telemetry.metric_points(name)
        if all(dict(point.attributes or {}).get(key) == value for key, value in where.items())
    )


def _judge_requests(server: LLMServer) -> list[Any]:
    return [r for r in server.requests if r.body and r.body["messages"][0].get("role") == "system"]


def _evaluation_records(telemetry: Telemetry) -> list[Any]:
    return [record.log_record for record in telemetry.logs.get_finished_logs()]


def test_judge_calls_make_no_spans_and_their_cost_is_evaluation_cost(telemetry: Telemetry) -> None:
    with LLMServer(_answering) as server:
        judge = Judge(
            model="gpt-4o-mini", base_url=server.openai_base_url, meter_provider=telemetry.meter_provider
        )
        otel_llm.enable_judge(judge, sample_rate=1.0, meter_provider=telemetry.meter_provider)
        try:
            _app_call(server, feature="pricing")
        finally:
            otel_llm.disable_judge()  # drains: every judge call has finished when it returns
        requests = server.requests
    (app_span,) = telemetry.genai_spans()  # the app's call only: the judge's four calls made no span
    assert len(requests) == 5
    records = _evaluation_records(telemetry)
    names = sorted(str((r.attributes or {})["gen_ai.evaluation.name"]) for r in records)
    assert names == ["answer_relevance", "faithfulness", "hallucination", "toxicity"]
    assert {r.span_id for r in records} == {app_span.context.span_id}  # no evaluation of an evaluation
    assert {(r.attributes or {})["otel_llm.evaluation.source"] for r in records} == {"judge"}
    judge_cost = cost.cost_usd("gpt-4o-mini", "openai", 2000, 30)
    app_cost = cost.cost_usd("gpt-4o-mini", "openai", 50, 10)
    assert judge_cost is not None
    assert app_cost is not None
    assert judge.stats.cost_usd == pytest.approx(4 * judge_cost)
    assert _total(telemetry, "otel_llm.evaluation.cost") == pytest.approx(4 * judge_cost)
    assert _total(telemetry, "otel_llm.client.cost") == pytest.approx(app_cost)  # the app's call alone
    assert _total(telemetry, "otel_llm.evaluation.sampled", **{"otel_llm.evaluation.source": "judge"}) == 1


class HttpxTransport:
    """A judge transport on an `httpx.Client`, a client the instrumentation hooks."""

    def __init__(self) -> None:
        self.client = httpx.Client()

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout_seconds: float) -> HttpReply:
        try:
            reply = self.client.post(url, headers=dict(headers), content=body, timeout=timeout_seconds)
        except httpx.TimeoutException as exc:
            raise TimeoutError(str(exc)) from exc
        return HttpReply(reply.status_code, reply.content)


def test_a_judge_on_an_instrumented_client_is_suppressed(telemetry: Telemetry) -> None:
    transport = HttpxTransport()
    with LLMServer(_answering) as server:
        judge = Judge(model="gpt-4o-mini", base_url=server.openai_base_url, transport=transport)
        url = f"{server.openai_base_url}/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You check answers"}]}
        # The same transport outside the judge is an ordinary instrumented LLM call ...
        transport.post(url, {"content-type": "application/json"}, json.dumps(body).encode(), 5.0)
        assert len(telemetry.genai_spans()) == 1
        # ... and inside it, nothing.
        verdict = judge.ask(load_prompt("toxicity"), answer="Have a nice day.")
        assert len(server.requests) == 2
    transport.client.close()
    assert verdict.score == 0.9
    assert len(telemetry.genai_spans()) == 1


def test_unparseable_verdicts_record_no_evaluation(telemetry: Telemetry) -> None:
    def unparseable(request: LLMRequest) -> Reply:
        if request.system.startswith("You check answers"):
            return Reply(text="Score: 9/10, the answer looks faithful.")
        return _answering(request)

    with LLMServer(unparseable) as server:
        judge = Judge(model="gpt-4o-mini", base_url=server.openai_base_url)
        worker = otel_llm.enable_judge(judge, criteria=["faithfulness", "toxicity"], sample_rate=1.0)
        try:
            _app_call(server)
        finally:
            otel_llm.disable_judge()
    assert len(_judge_requests(server)) == 2
    assert judge.stats.unparseable == 2
    assert judge.stats.cost_usd > 0
    assert worker.evaluated == 2  # the evaluators ran and abstained
    assert _evaluation_records(telemetry) == []


def test_feature_and_tenant_rates_override_the_default_rate() -> None:
    worker = EvaluationWorker(
        [],
        sample_rate=0.0,
        feature_sample_rates={"checkout": 1.0, "noisy": 0.0},
        tenant_sample_rates={"acme": 1.0},
    )
    calls = {
        "default": EvaluationInput(feature="search"),
        "feature": EvaluationInput(feature="checkout"),
        "tenant": EvaluationInput(feature="search", tenant="acme"),
        "higher wins": EvaluationInput(feature="noisy", tenant="acme"),
        "error": EvaluationInput(feature="noisy", error_type="500"),
    }
    chosen = {name: worker.submit(data) for name, data in calls.items()}
    assert chosen == {"default": False, "feature": True, "tenant": True, "higher wins": True, "error": True}
    assert (worker.sampled, worker.sampled_out) == (4, 1)
    assert worker.shutdown(timeout_seconds=10)

    everything_but_noise = EvaluationWorker([], sample_rate=1.0, feature_sample_rates={"noisy": 0.0})
    assert everything_but_noise.rate_for(EvaluationInput(feature="noisy")) == 0.0
    assert everything_but_noise.submit(EvaluationInput(feature="noisy")) is False
    assert everything_but_noise.submit(EvaluationInput(feature="other")) is True
    assert everything_but_noise.shutdown(timeout_seconds=10)


@pytest.mark.parametrize("rates", [{"checkout": 1.5}, {"checkout": True}])
def test_bad_feature_rates_name_the_setting(rates: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"feature_sample_rates\['checkout'\]"):
        EvaluationWorker([], feature_sample_rates=rates)


class GatedEndpoint:
    """A judge transport that holds each call until released, to fill the judge worker's queue."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout_seconds: float) -> HttpReply:
        with self._lock:
            self.calls += 1
        self.entered.set()
        self.release.wait(10)
        answer = {
            "model": "gpt-4o-mini",
            "choices": [{"message": {"role": "assistant", "content": VERDICT}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10},
        }
        return HttpReply(200, json.dumps(answer).encode())


def _sampled_call(index: int) -> EvaluationInput:
    return EvaluationInput(response_text=f"Answer {index}.", response_id=f"r{index}")


def test_full_judge_queue_drops_and_counts_then_drains(telemetry: Telemetry) -> None:
    endpoint = GatedEndpoint()
    judge = Judge(model="gpt-4o-mini", transport=endpoint)
    worker = EvaluationWorker(
        judge_evaluators(judge, ["toxicity"]),
        sample_rate=1.0,
        max_queue=2,
        workers=1,
        source="judge",
        meter_provider=telemetry.meter_provider,
    )
    assert worker.submit(_sampled_call(0))
    assert endpoint.entered.wait(10)  # the worker holds call 0 inside the judge; the queue is empty again
    queued = [worker.submit(_sampled_call(index)) for index in range(1, 6)]
    assert queued == [True, True, False, False, False]
    assert (
        _total(telemetry, "otel_llm.evaluation.queue.dropped", **{"otel_llm.evaluation.source": "judge"}) == 3
    )
    endpoint.release.set()
    assert worker.shutdown(timeout_seconds=10)  # drains the two queued calls
    assert endpoint.calls == judge.stats.ok == 3
    assert len(_evaluation_records(telemetry)) == 3


def test_shutdown_without_drain_discards_the_queue_and_counts_it(telemetry: Telemetry) -> None:
    endpoint = GatedEndpoint()
    judge = Judge(model="gpt-4o-mini", transport=endpoint)
    worker = EvaluationWorker(
        judge_evaluators(judge, ["toxicity"]), sample_rate=1.0, workers=1, source="judge"
    )
    for index in range(4):
        assert worker.submit(_sampled_call(index))
    assert endpoint.entered.wait(10)  # call 0 is inside the judge, calls 1-3 wait in the queue
    assert worker.shutdown(timeout_seconds=0.2, drain=False) is False  # call 0 is still running
    assert worker.dropped == 3
    assert worker.submit(_sampled_call(9)) is False
    endpoint.release.set()
    assert worker.shutdown(timeout_seconds=10)
    assert endpoint.calls == judge.stats.ok == 1  # the running call finished; the queued ones were not judged


def test_local_and_judge_workers_are_replaced_and_stopped_independently(telemetry: Telemetry) -> None:
    with LLMServer(_answering) as server:
        judge = Judge(model="gpt-4o-mini", base_url=server.openai_base_url)
        otel_llm.enable_judge(judge, criteria=["toxicity"], sample_rate=1.0)
        try:
            otel_llm.enable_evaluation(sample_rate=1.0)  # replaces the local workers only
            _app_call(server)
            otel_llm.disable_judge()
            _app_call(server)  # the local evaluators still run; the judge does not
        finally:
            otel_llm.disable_evaluation()
    assert len(_judge_requests(server)) == 1
    sources = [
        str((r.attributes or {})["otel_llm.evaluation.source"]) for r in _evaluation_records(telemetry)
    ]
    assert sorted(sources) == ["judge"] + ["local"] * 4  # groundedness and refusal on two calls


def test_environment_starts_the_judge(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with LLMServer(_answering) as server:
        env = {
            "OTEL_LLM_JUDGE_MODEL": "gpt-4o-mini",
            "OTEL_LLM_JUDGE_BASE_URL": server.openai_base_url,
            "OTEL_LLM_JUDGE_API_KEY": "from-env",
            "OTEL_LLM_JUDGE_EVALUATORS": "toxicity,politeness",
            "OTEL_LLM_JUDGE_SAMPLE_RATE": "0",
            "OTEL_LLM_JUDGE_FEATURE_SAMPLE_RATES": "checkout=1.0,broken",
            "OTEL_LLM_JUDGE_TENANT_SAMPLE_RATES": "acme=1",
        }
        try:
            assert evaluation_hook.enable_from_env(env) is None  # no local evaluators asked for
            _app_call(server, feature="search")
            _app_call(server, feature="search", tenant="acme")
        finally:
            otel_llm.disable_evaluation()
        judged = _judge_requests(server)
    assert len(judged) == 1  # the tenant's call; the feature rates were ignored, the default is 0
    assert "politeness" in caplog.text
    assert "OTEL_LLM_JUDGE_FEATURE_SAMPLE_RATES" in caplog.text
    assert judged[0].body["messages"][0]["content"] == load_prompt("toxicity").system


def test_a_judge_configuration_that_does_not_validate_leaves_the_judge_off(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"OTEL_LLM_JUDGE_MODEL": "my-local-llama", "OTEL_LLM_JUDGE_DAILY_BUDGET_USD": "5"}
    with LLMServer(_answering) as server:
        try:
            evaluation_hook.enable_from_env(env)
            _app_call(server)
        finally:
            otel_llm.disable_evaluation()
        assert len(server.requests) == 1
    assert "judge not enabled" in caplog.text
    assert "daily_budget_usd" in caplog.text
