"""LLM-as-judge evaluators: faithfulness, answer relevance, hallucination and toxicity, scored by a model.

    import otel_llm

    otel_llm.instrument()
    otel_llm.enable_judge(model="gpt-4o-mini", sample_rate=0.02, feature_sample_rates={"checkout": 0.2},
                          calls_per_minute=60, daily_budget_usd=5.0)
    ...
    otel_llm.disable_judge()                      # drains what is queued, then stops

    # or by hand, against any OpenAI-compatible or Anthropic endpoint:
    from otel_llm.judge import Judge, judge_evaluators
    judge = Judge(model="claude-haiku-4-5", kind="anthropic", timeout_seconds=10, daily_budget_usd=5.0)
    verdict = judge.ask(load_prompt("faithfulness"), question=..., context=[...], answer=...)

A `Judge` sends one versioned prompt (`otel_llm.judge_prompts`) per criterion and call to a model and
reads the answer strictly: a JSON score in [0, 1] and a short explanation, or the answer is counted as
unparseable and no score is recorded. `JudgeEvaluator` wraps it as an evaluator for the evaluation worker;
`otel_llm.enable_judge` runs the four of them on a worker of their own (`source` `judge`, its own sampling
policy, queue and threads), next to the cheap local evaluators.

What a judge call never does: raise into the worker, retry (a retry costs budget; a failure is counted),
pass through the instrumentation (the default transport is `urllib`, and every call runs inside
OpenTelemetry's `suppress_instrumentation()`, which the `httpx` hooks honour: no GenAI span, no cost on
`otel_llm.client.cost`, no evaluation of the evaluation), or block longer than `timeout_seconds` (see
`UrllibTransport` for the exact bound).

Limits (`otel_llm.judge_limits`): `calls_per_minute` (default 60; 0 or `None` turns it off) and
`daily_budget_usd` (off by default; needs a price for the model: the shipped table, a prices file, or
`price=ModelPrice(...)`). A call over a limit is not made and is counted. Concurrency is the judge worker's
thread count (`workers`, default 2).

Cost: each call's usage is priced with `otel_llm.cost` (or `price`) and added to the counter
`otel_llm.evaluation.cost` (USD), never to the app's `otel_llm.client.cost`. An answer without usage, or a
model without a price, has no cost (logged once); the daily budget then charges the estimate it reserved.

Counters (OpenTelemetry, attributes `gen_ai.evaluation.name`, `gen_ai.request.model`,
`gen_ai.provider.name`; and in `Judge.stats`):

| metric | counts |
|---|---|
| `otel_llm.evaluation.judge.calls` | calls made; with `error.type` when no score came back: `timeout`, |
| | `unparseable`, an HTTP status (`429`), `invalid_response` or an exception class |
| `otel_llm.evaluation.judge.rate_limited` | calls not made: `calls_per_minute` reached |
| `otel_llm.evaluation.judge.budget_exhausted` | calls not made: `daily_budget_usd` spent |
| `otel_llm.evaluation.cost` | USD spent on judge calls |

Content: the judge sees the question, the retrieved documents and the answer; that is the point, and the
reason it is opt-in. Its explanation may quote them, so it is exported (after the prompt id, e.g.
`faithfulness.v1 by gpt-4o-mini: ...`) only when message content capture is on
(`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`) or `include_explanation=True`.

Environment (argument > environment > default; a bad value is logged and the default used):
`OTEL_LLM_JUDGE_MODEL` (enables the judge at `instrument()`), `OTEL_LLM_JUDGE_KIND` (`openai`, `anthropic`),
`OTEL_LLM_JUDGE_BASE_URL`, `OTEL_LLM_JUDGE_API_KEY` (else `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`),
`OTEL_LLM_JUDGE_TIMEOUT_SECONDS` (10), `OTEL_LLM_JUDGE_MAX_OUTPUT_TOKENS` (200),
`OTEL_LLM_JUDGE_CALLS_PER_MINUTE` (60), `OTEL_LLM_JUDGE_DAILY_BUDGET_USD`, `OTEL_LLM_JUDGE_EVALUATORS`
(criteria, default all four), `OTEL_LLM_JUDGE_SAMPLE_RATE` (0.01), `OTEL_LLM_JUDGE_FEATURE_SAMPLE_RATES`
and `OTEL_LLM_JUDGE_TENANT_SAMPLE_RATES` (`name=rate,name=rate`), `OTEL_LLM_JUDGE_WORKERS` (2),
`OTEL_LLM_JUDGE_MAX_QUEUE` (1000).
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import metrics
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import MeterProvider
from opentelemetry.util.types import AttributeValue

from otel_llm import attributes as attr
from otel_llm import cost
from otel_llm.config import load as load_settings
from otel_llm.evaluators import EvaluationInput, EvaluationOutcome, question_of
from otel_llm.judge_limits import CallRateLimit, DailySpendLimit
from otel_llm.judge_prompts import CRITERIA, JudgePrompt, load_prompt, parse_verdict
from otel_llm.judge_wire import (
    JudgeKind,
    JudgeTransport,
    UrllibTransport,
    WireAnswer,
    build_request,
    read_answer,
)
from otel_llm.telemetry import SCOPE_NAME
from otel_llm.version import __version__

__all__ = [
    "CRITERIA",
    "METRIC_BUDGET_EXHAUSTED",
    "METRIC_CALLS",
    "METRIC_COST",
    "METRIC_RATE_LIMITED",
    "Judge",
    "JudgeEvaluator",
    "JudgeKind",
    "JudgeStats",
    "JudgeStatus",
    "Verdict",
    "judge_evaluators",
    "worker_options_from_env",
]

_logger = logging.getLogger(__name__)

METRIC_CALLS: Final = "otel_llm.evaluation.judge.calls"
METRIC_RATE_LIMITED: Final = "otel_llm.evaluation.judge.rate_limited"
METRIC_BUDGET_EXHAUSTED: Final = "otel_llm.evaluation.judge.budget_exhausted"
METRIC_COST: Final = "otel_llm.evaluation.cost"

_ENV: Final = "OTEL_LLM_JUDGE_"


class JudgeStatus(enum.Enum):
    """How one `Judge.ask` ended. Only `OK` carries a score."""

    OK = "ok"
    UNPARSEABLE = "unparseable"
    TIMEOUT = "timeout"
    ERROR = "error"
    RATE_LIMITED = "rate_limited"
    BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True, slots=True)
class Verdict:
    status: JudgeStatus
    score: float | None = None
    explanation: str | None = None
    cost_usd: float | None = None
    """The call's priced usage; `None` when no call was made or its cost is unknown."""
    error_type: str | None = None


@dataclass(frozen=True, slots=True)
class JudgeStats:
    """Counts since the judge was made; `calls` = ok + unparseable + timeouts + errors."""

    calls: int = 0
    ok: int = 0
    unparseable: int = 0
    timeouts: int = 0
    errors: int = 0
    rate_limited: int = 0
    budget_exhausted: int = 0
    cost_usd: float = 0.0
    spent_today_usd: float | None = None
    """Today's spend as the daily budget counts it; `None` without a budget."""


class Judge:
    """A judge model behind an OpenAI-compatible or Anthropic endpoint; see the module docstring.

    Settings are validated here with a `ValueError` naming the setting. `ask` is thread-safe.
    """

    def __init__(
        self,
        *,
        model: str,
        kind: JudgeKind | str = JudgeKind.OPENAI,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_seconds: float = 10.0,
        max_output_tokens: int = 200,
        max_input_chars: int = 24_000,
        calls_per_minute: int | None = 60,
        daily_budget_usd: float | None = None,
        price: cost.ModelPrice | None = None,
        request_options: Mapping[str, Any] | None = None,
        transport: JudgeTransport | None = None,
        meter_provider: MeterProvider | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model: the judge needs a model name (argument or OTEL_LLM_JUDGE_MODEL)")
        try:
            self.kind = JudgeKind(kind)
        except ValueError:
            raise ValueError(f"kind must be one of {[k.value for k in JudgeKind]}, got {kind!r}") from None
        _positive("timeout_seconds", timeout_seconds)
        _positive_int("max_output_tokens", max_output_tokens)
        _positive_int("max_input_chars", max_input_chars)
        self.model = model
        self.base_url = base_url or self.kind.default_base_url
        self.api_key = api_key
        self.timeout_seconds = float(timeout_seconds)
        self.max_output_tokens = max_output_tokens
        self.max_input_chars = max_input_chars
        self.price = price
        self.request_options = dict(request_options or {})
        self._transport: JudgeTransport = transport if transport is not None else UrllibTransport()
        self._rate = CallRateLimit(calls_per_minute, clock=monotonic) if calls_per_minute else None
        self._budget: DailySpendLimit | None = None
        if daily_budget_usd is not None:
            self._budget = DailySpendLimit(daily_budget_usd, clock=wall_clock)
            if price is None and cost.prices().lookup(model, self.kind.value) is None:
                raise ValueError(
                    f"daily_budget_usd: judge model {model!r} has no price in the price table; pass "
                    "price=ModelPrice(...) or add it with OTEL_LLM_PRICES_FILE"
                )
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(JudgeStatus, 0)
        self._cost_total = 0.0
        self._warned: set[str] = set()
        meter = metrics.get_meter(SCOPE_NAME, __version__, meter_provider)
        self._m_calls = meter.create_counter(METRIC_CALLS, "{call}", "Judge calls made.")
        self._m_rate_limited = meter.create_counter(
            METRIC_RATE_LIMITED, "{call}", "Judge calls not made: calls per minute reached."
        )
        self._m_budget = meter.create_counter(
            METRIC_BUDGET_EXHAUSTED, "{call}", "Judge calls not made: daily budget spent."
        )
        self._m_cost = meter.create_counter(METRIC_COST, "USD", "Estimated cost of judge calls.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **arguments: Any) -> Judge:
        """A judge from `OTEL_LLM_JUDGE_*` with `arguments` on top (argument > environment > default)."""
        env = os.environ if env is None else env
        options: dict[str, Any] = {}
        for name in ("model", "kind", "base_url", "api_key"):
            value = env.get(_ENV + name.upper(), "").strip()
            if value:
                options[name] = value
        for name, parse in (
            ("timeout_seconds", _parse_positive_float),
            ("max_output_tokens", _parse_positive_int),
            ("calls_per_minute", _parse_limit),
            ("daily_budget_usd", _parse_positive_float),
        ):
            raw = env.get(_ENV + name.upper())
            if raw is None or not raw.strip():
                continue
            try:
                options[name] = parse(raw)
            except ValueError:
                _logger.warning("%s=%r is not valid; using the default", _ENV + name.upper(), raw)
        if options.get("kind", JudgeKind.OPENAI) not in {kind.value for kind in JudgeKind}:
            _logger.warning("%sKIND=%r is not openai or anthropic; using openai", _ENV, options.pop("kind"))
        options.update(arguments)
        if "api_key" not in options:
            kind = str(options.get("kind", JudgeKind.OPENAI))
            options["api_key"] = env.get("ANTHROPIC_API_KEY" if kind == "anthropic" else "OPENAI_API_KEY")
        options.setdefault("model", "")  # refused by the constructor with a message naming the setting
        return cls(**options)

    @property
    def stats(self) -> JudgeStats:
        with self._lock:
            counts = dict(self._counts)
            total = self._cost_total
        made = (JudgeStatus.OK, JudgeStatus.UNPARSEABLE, JudgeStatus.TIMEOUT, JudgeStatus.ERROR)
        return JudgeStats(
            calls=sum(counts[status] for status in made),
            ok=counts[JudgeStatus.OK],
            unparseable=counts[JudgeStatus.UNPARSEABLE],
            timeouts=counts[JudgeStatus.TIMEOUT],
            errors=counts[JudgeStatus.ERROR],
            rate_limited=counts[JudgeStatus.RATE_LIMITED],
            budget_exhausted=counts[JudgeStatus.BUDGET_EXHAUSTED],
            cost_usd=total,
            spent_today_usd=self._budget.spent_today_usd if self._budget is not None else None,
        )

    def ask(
        self, prompt: JudgePrompt, *, question: str = "", context: Sequence[str] = (), answer: str = ""
    ) -> Verdict:
        """Judge one answer with `prompt`. Blocks for up to about `timeout_seconds`; never raises."""
        attributes: dict[str, AttributeValue] = {
            attr.GEN_AI_EVALUATION_NAME: prompt.evaluation,
            attr.GEN_AI_REQUEST_MODEL: self.model,
            attr.GEN_AI_PROVIDER_NAME: self.kind.value,
        }
        reservation = 0.0
        if self._budget is not None:
            reserved = self._budget.reserve()
            if reserved is None:
                return self._not_made(JudgeStatus.BUDGET_EXHAUSTED, self._m_budget, attributes)
            reservation = reserved
        if self._rate is not None and not self._rate.try_acquire():
            if self._budget is not None:
                self._budget.release(reservation)
            return self._not_made(JudgeStatus.RATE_LIMITED, self._m_rate_limited, attributes)
        verdict = self._call(prompt, question, context, answer)
        if self._budget is not None:
            self._budget.settle(reservation, verdict.cost_usd)
        with self._lock:
            self._counts[verdict.status] += 1
            self._cost_total += verdict.cost_usd or 0.0
        if verdict.error_type is not None:
            attributes[attr.ERROR_TYPE] = verdict.error_type
            self._warn_once(
                verdict.error_type,
                "otel_llm: judge %s gave no score: %s (counted in %s with error.type; further ones logged at "
                "debug level)",
                self.model,
                verdict.error_type,
                METRIC_CALLS,
            )
        self._m_calls.add(1, attributes)
        if verdict.cost_usd is not None:
            attributes.pop(attr.ERROR_TYPE, None)
            self._m_cost.add(verdict.cost_usd, attributes)
        return verdict

    def _call(self, prompt: JudgePrompt, question: str, context: Sequence[str], answer: str) -> Verdict:
        try:
            system, user = prompt.render(
                question=question, context=context, answer=answer, max_chars=self.max_input_chars
            )
            url, headers, body = build_request(
                self.kind,
                base_url=self.base_url,
                api_key=self.api_key,
                model=self.model,
                system=system,
                user=user,
                max_output_tokens=self.max_output_tokens,
                request_options=self.request_options,
            )
            with suppress_instrumentation():
                reply = self._transport.post(url, headers, body, self.timeout_seconds)
        except TimeoutError:
            return Verdict(JudgeStatus.TIMEOUT, error_type="timeout")
        except Exception as exc:  # the endpoint unreachable, or a transport's own bug: counted, not raised
            _logger.debug("otel_llm: judge call failed", exc_info=True)
            return Verdict(JudgeStatus.ERROR, error_type=type(exc).__name__)
        if not 200 <= reply.status < 300:
            return Verdict(JudgeStatus.ERROR, error_type=str(reply.status))
        try:
            wire = read_answer(self.kind, reply.body)
        except (ValueError, RecursionError):
            return Verdict(JudgeStatus.ERROR, error_type="invalid_response")
        spent = self._cost(wire)
        parsed = parse_verdict(wire.text) if wire.text is not None else None
        if parsed is None:
            return Verdict(JudgeStatus.UNPARSEABLE, cost_usd=spent, error_type="unparseable")
        return Verdict(JudgeStatus.OK, parsed.score, parsed.explanation, spent)

    def _cost(self, wire: WireAnswer) -> float | None:
        usage = wire.usage
        spent: float | None = None
        if usage is not None:
            counts = (
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_creation_tokens,
            )
            if self.price is not None:
                spent = self.price.cost_usd(*counts)
            else:
                for name in (wire.model, self.model):
                    spent = cost.cost_usd(name, self.kind.value, *counts)
                    if spent is not None:
                        break
        if spent is None:
            self._warn_once(
                "cost",
                "otel_llm: judge %s answered without usage, or its model has no price: cost not recorded",
                self.model,
            )
        return spent

    def _not_made(self, status: JudgeStatus, counter: Any, attributes: dict[str, AttributeValue]) -> Verdict:
        with self._lock:
            self._counts[status] += 1
        counter.add(1, attributes)
        self._warn_once(
            status.value, "otel_llm: judge %s: calls skipped, %s (counted)", self.model, status.value
        )
        return Verdict(status)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        _logger.log(logging.WARNING if first else logging.DEBUG, message, *args)


class JudgeEvaluator:
    """One judge prompt as an evaluator (`(EvaluationInput) -> EvaluationOutcome | None`).

    Not judged (`None`, nothing recorded): an empty answer, a prompt's required input missing (no retrieved
    context for `faithfulness`, no question for `answer_relevance`), or a judge call that gave no score
    (counted by the judge). A failed call with a partial answer is judged on what was answered.
    """

    def __init__(
        self, judge: Judge, prompt: JudgePrompt | str, *, include_explanation: bool | None = None
    ) -> None:
        self.judge = judge
        self.prompt = load_prompt(prompt) if isinstance(prompt, str) else prompt
        if include_explanation is None:
            settings = load_settings()
            include_explanation = settings.capture_content or settings.capture_content_events
        self.include_explanation = include_explanation

    @property
    def name(self) -> str:
        return self.prompt.evaluation

    def __repr__(self) -> str:
        return f"JudgeEvaluator({self.prompt.id}, model={self.judge.model!r})"

    def __call__(self, data: EvaluationInput, /) -> EvaluationOutcome | None:
        answer = data.response_text
        if not answer.strip():
            return None
        question = question_of(data.request_messages)
        if "question" in self.prompt.requires and not question.strip():
            return None
        if "context" in self.prompt.requires and not any(doc.strip() for doc in data.context):
            return None
        verdict = self.judge.ask(self.prompt, question=question, context=data.context, answer=answer)
        if verdict.score is None:
            return None
        explanation = f"{self.prompt.id} by {self.judge.model}"
        if self.include_explanation and verdict.explanation:
            explanation += f": {verdict.explanation}"
        return EvaluationOutcome(
            self.prompt.evaluation, verdict.score, self.prompt.label(verdict.score), explanation
        )


def judge_evaluators(
    judge: Judge, criteria: Sequence[str] | None = None, *, include_explanation: bool | None = None
) -> list[JudgeEvaluator]:
    """One `JudgeEvaluator` per criterion (default: `CRITERIA`), with the newest shipped prompt of each."""
    return [
        JudgeEvaluator(judge, criterion, include_explanation=include_explanation)
        for criterion in (CRITERIA if criteria is None else criteria)
    ]


def worker_options_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The judge worker's settings found in `OTEL_LLM_JUDGE_*`; bad values are logged and left out."""
    options: dict[str, Any] = {}
    raw_criteria = env.get(_ENV + "EVALUATORS")
    if raw_criteria is not None and raw_criteria.strip():
        names = [name.strip() for name in raw_criteria.split(",") if name.strip()]
        unknown = [name for name in names if name not in CRITERIA]
        if unknown:
            _logger.warning("%sEVALUATORS: unknown criteria ignored: %s", _ENV, ", ".join(unknown))
        options["criteria"] = [name for name in names if name in CRITERIA]
    for name, parse in (
        ("sample_rate", _parse_rate),
        ("feature_sample_rates", _parse_rates),
        ("tenant_sample_rates", _parse_rates),
        ("workers", _parse_positive_int),
        ("max_queue", _parse_positive_int),
    ):
        raw = env.get(_ENV + name.upper())
        if raw is None or not raw.strip():
            continue
        try:
            options[name] = parse(raw)
        except ValueError:
            _logger.warning("%s=%r is not valid; using the default", _ENV + name.upper(), raw)
    return options


def _positive(setting: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{setting} must be a positive number, got {value!r}")


def _positive_int(setting: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{setting} must be a positive integer, got {value!r}")


def _parse_positive_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(raw)
    return value


def _parse_positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError(raw)
    return value


def _parse_limit(raw: str) -> int | None:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value or None


def _parse_rate(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError(raw)
    return value


def _parse_rates(raw: str) -> dict[str, float]:
    rates: dict[str, float] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(part)
        rates[name.strip()] = _parse_rate(value)
    return rates
