"""``otel-llm gate``: block a prompt change in CI when it answers a golden dataset worse than the baseline.

    otel-llm gate --dataset golden.jsonl --baseline 1.0.0 --candidate 1.1.0 --endpoint URL
                  (--prompts-file prompts.yaml | --registry-url URL --prompt-name NAME)
                  [--model gpt-4o-mini] [--api-key-env OPENAI_API_KEY] [--max-concurrency 4]
                  [--max-retries 2] [--timeout 60] [--min-samples 30] [--json]

Prompts. The two versions' system prompts come from ``--prompts-file`` (YAML or JSON: a mapping from
version to prompt text; quote versions such as ``"1.10"`` so YAML keeps them strings) or from a running
collector's registry (``GET {registry_url}/api/v1/prompts/versions?name=NAME``; the bearer token from
``--token`` or ``OTEL_LLM_API_TOKEN`` is sent when set).

Dataset. JSON lines, one item a line (blank lines skipped)::

    {"question": "How much is the Pro plan?", "context": ["The Pro plan costs $39 a month."],
     "expected": "$39 a month."}

``expected`` (optional) is a reference answer; it is carried into the ``--json`` items for review and does
not enter the verdict.

Calls. For every item and both versions, one chat completion at ``{endpoint}/chat/completions`` through the
``openai`` SDK: the version's text as the system message, then a user message with the numbered context
documents and the question. Baseline and candidate calls are interleaved so that neither version gets the
warm-up or the quiet minute. The gate's own calls run under ``suppress_instrumentation()`` and are not
traced.

Scores and verdict. Each answer is scored by the local evaluators (`otel_llm.evaluators`): ``groundedness``
(evaluation ``faithfulness``: score and pass/fail label) and ``refusal`` (pass/fail label). The two versions
are then compared with the canary statistics (`otel_llm_collector.canary`, 98% confidence):
``latency_seconds`` and ``score:faithfulness`` with the Mann-Whitney rank test, ``error_rate``,
``fail_rate:faithfulness`` and ``fail_rate:refusal`` with the two-proportion test; the overall verdict is
the canary's (pass, marginal, fail, inconclusive), except that a significant error-rate regression fails
the gate on its own (a candidate whose calls all fail leaves nothing else to judge). A metric needs at least
``--min-samples`` (default 30) values per version to be conclusive.

Exit codes: 0 pass or marginal; 1 fail (a regression); 3 inconclusive (too few items or scores);
2 a usage or configuration error (bad flag, unreadable or malformed dataset line, unknown version,
unreachable endpoint or registry, refused credentials).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from otel_llm.evaluators import EvaluationInput, EvaluationOutcome, groundedness, refusal
from otel_llm_collector.canary import (
    CANARY_CONFIDENCE,
    DEFAULT_MIN_SAMPLES,
    CanaryReport,
    MetricVerdict,
    compare_proportions,
    compare_samples,
    overall_verdict,
)

__all__ = [
    "EXIT_FAIL",
    "EXIT_INCONCLUSIVE",
    "EXIT_PASS",
    "EXIT_USAGE",
    "GateItem",
    "GateResult",
    "add_parser",
    "load_dataset",
    "main",
    "run_gate",
]

EXIT_PASS: Final = 0
EXIT_FAIL: Final = 1
EXIT_USAGE: Final = 2
EXIT_INCONCLUSIVE: Final = 3
DEFAULT_MODEL: Final = "gpt-4o-mini"
DEFAULT_API_KEY_ENV: Final = "OPENAI_API_KEY"
TOKEN_ENV: Final = "OTEL_LLM_API_TOKEN"
REGISTRY_TIMEOUT_SECONDS: Final = 10.0

Side = Literal["baseline", "candidate"]
_SIDES: Final[tuple[Side, Side]] = ("baseline", "candidate")


class GateError(Exception):
    """A usage or configuration problem: exit 2 with this message."""


@dataclass(frozen=True, slots=True)
class GateItem:
    line: int
    question: str
    context: tuple[str, ...]
    expected: str | None = None


@dataclass(slots=True)
class Answer:
    """One version's answer to one item."""

    text: str = ""
    latency_s: float | None = None
    error: str | None = None
    faithfulness: EvaluationOutcome | None = None
    refusal: EvaluationOutcome | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "latency_seconds": self.latency_s,
            "error": self.error,
            "faithfulness": _outcome(self.faithfulness),
            "refusal": _outcome(self.refusal),
        }


@dataclass(slots=True)
class GateResult:
    report: CanaryReport
    items: list[GateItem]
    answers: dict[Side, list[Answer]] = field(default_factory=dict)
    reason: str = ""

    @property
    def exit_code(self) -> int:
        return {"pass": EXIT_PASS, "marginal": EXIT_PASS, "fail": EXIT_FAIL}.get(
            self.report.verdict, EXIT_INCONCLUSIVE
        )

    def to_dict(self) -> dict[str, Any]:
        document = self.report.to_dict()
        for metric in document["metrics"]:
            metric["difference"] = _difference(metric["baseline"], metric["candidate"])
        document["reason"] = self.reason
        document["exit_code"] = self.exit_code
        document["n_items"] = len(self.items)
        document["items"] = [
            {
                "line": item.line,
                "question": item.question,
                "expected": item.expected,
                **{side: self.answers[side][i].to_dict() for side in _SIDES},
            }
            for i, item in enumerate(self.items)
        ]
        return document


def _outcome(outcome: EvaluationOutcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {"score": outcome.score, "label": outcome.label, "explanation": outcome.explanation}


def _difference(baseline: float | None, candidate: float | None) -> float | None:
    if baseline is None or candidate is None:
        return None
    return candidate - baseline


# --- inputs ---------------------------------------------------------------------------------------------


def load_dataset(path: Path) -> list[GateItem]:
    """Parse the golden dataset; `GateError` naming ``file:line`` for the first bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GateError(f"cannot read the dataset {path}: {exc}") from exc
    items: list[GateItem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            document = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise GateError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(document, dict):
            raise GateError(f"{where}: expected a JSON object, got {type(document).__name__}")
        question = document.get("question")
        if not isinstance(question, str) or not question.strip():
            raise GateError(f'{where}: "question" must be a non-empty string')
        context = document.get("context")
        if not isinstance(context, list) or not all(isinstance(doc, str) for doc in context):
            raise GateError(f'{where}: "context" must be a list of strings')
        expected = document.get("expected")
        if expected is not None and not isinstance(expected, str):
            raise GateError(f'{where}: "expected" must be a string when given')
        items.append(GateItem(number, question, tuple(context), expected))
    if not items:
        raise GateError(f"{path}: the dataset has no items")
    return items


def _prompts_from_file(path: Path) -> dict[str, str]:
    import yaml  # YAML is a superset of JSON: one loader reads both

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise GateError(f"cannot read the prompts file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise GateError(f"{path}: not valid YAML or JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise GateError(f"{path}: expected a mapping from version to prompt text")
    prompts: dict[str, str] = {}
    for version, text in document.items():
        if not isinstance(text, str):
            raise GateError(f"{path}: the text of version {version!r} must be a string")
        prompts[str(version)] = text
    return prompts


def _prompts_from_registry(url: str, name: str, token: str | None) -> dict[str, str]:
    query = urllib.parse.urlencode({"name": name})
    address = f"{url.rstrip('/')}/api/v1/prompts/versions?{query}"
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(address, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=REGISTRY_TIMEOUT_SECONDS) as response:
            document = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip()
        raise GateError(f"the registry at {url} answered {exc.code} for prompt {name!r}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise GateError(f"cannot reach the registry at {url}: {exc}") from exc
    except ValueError as exc:
        raise GateError(f"the registry at {url} did not answer JSON: {exc}") from exc
    versions = document.get("versions") if isinstance(document, dict) else None
    if not isinstance(versions, list):
        raise GateError(f"the registry at {url} answered without a list of versions")
    prompts: dict[str, str] = {}
    for entry in versions:
        if isinstance(entry, dict) and isinstance(entry.get("version"), str):
            text = entry.get("text")
            if isinstance(text, str):
                prompts[entry["version"]] = text
    return prompts


def _pick(prompts: Mapping[str, str], version: str, source: str) -> str:
    if version not in prompts:
        known = ", ".join(sorted(prompts)) or "none"
        raise GateError(f"version {version!r} is not in {source} (versions: {known})")
    return prompts[version]


# --- calls ----------------------------------------------------------------------------------------------


def build_messages(system_prompt: str, item: GateItem) -> list[dict[str, str]]:
    """The chat request for one item: the version's system prompt, then context and question."""
    documents = "\n\n".join(f"[{i}] {doc}" for i, doc in enumerate(item.context, start=1))
    user = f"Context:\n{documents}\n\nQuestion: {item.question}" if documents else item.question
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def _score(item: GateItem, answer: Answer, model: str) -> None:
    data = EvaluationInput(
        request_messages=[{"role": "user", "content": item.question}],
        response_text=answer.text,
        context=item.context,
        model=model,
        error_type=answer.error,
    )
    answer.faithfulness = groundedness(data)
    answer.refusal = refusal(data)


Ask = Callable[[list[dict[str, str]]], str]
"""Send one chat request, return the answer text; raises on failure."""


def _openai_asker(endpoint: str, api_key: str, model: str, *, max_retries: int, timeout: float) -> Ask:
    import openai

    client = openai.OpenAI(base_url=endpoint, api_key=api_key, max_retries=max_retries, timeout=timeout)

    def ask(messages: list[dict[str, str]]) -> str:
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        with suppress_instrumentation():
            completion = client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
            )
        if not completion.choices:
            return ""
        return completion.choices[0].message.content or ""

    return ask


def _config_problem(exc: BaseException, endpoint: str) -> str | None:
    """A message when a failed call means the endpoint or the credentials are wrong (not the prompt)."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return f"cannot reach the endpoint {endpoint}: {exc}"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return f"the endpoint {endpoint} refused the credentials ({exc.status_code}): {exc.message}"
    if isinstance(exc, openai.NotFoundError):
        return f"the endpoint {endpoint} has no such route or model ({exc.status_code}): {exc.message}"
    return None


def _call(ask: Ask, system_prompt: str, item: GateItem) -> tuple[Answer, BaseException | None]:
    answer = Answer()
    started = time.perf_counter()
    try:
        answer.text = ask(build_messages(system_prompt, item))
    except Exception as exc:
        answer.error = type(exc).__name__
        return answer, exc
    answer.latency_s = time.perf_counter() - started
    return answer, None


def run_gate(
    items: Sequence[GateItem],
    prompts: Mapping[Side, str],
    ask: Ask,
    *,
    versions: Mapping[Side, str],
    model: str = DEFAULT_MODEL,
    endpoint: str = "",
    group: str = "gate",
    max_concurrency: int = 4,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    confidence: float = CANARY_CONFIDENCE,
    classify: Callable[[BaseException, str], str | None] = _config_problem,
) -> GateResult:
    """Ask every item of both versions, score the answers and judge candidate against baseline.

    `GateError` when the first call shows the endpoint unusable (unreachable, credentials refused)."""
    answers: dict[Side, list[Answer]] = {side: [Answer() for _ in items] for side in _SIDES}
    jobs = [(side, i) for i in range(len(items)) for side in _SIDES]
    # The first call alone: an endpoint that is down or refuses the key stops the gate before the rest.
    first_side, first_index = jobs[0]
    answer, error = _call(ask, prompts[first_side], items[first_index])
    if error is not None and (problem := classify(error, endpoint)) is not None:
        raise GateError(problem)
    answers[first_side][first_index] = answer
    problems: list[str] = []
    lock = threading.Lock()

    def work(job: tuple[Side, int]) -> None:
        side, i = job
        result, failure = _call(ask, prompts[side], items[i])
        answers[side][i] = result
        if failure is not None and (message := classify(failure, endpoint)) is not None:
            with lock:
                problems.append(message)

    with ThreadPoolExecutor(max_workers=max(1, max_concurrency), thread_name_prefix="otel-llm-gate") as pool:
        list(pool.map(work, jobs[1:]))
    if problems and len(problems) == len(jobs) - 1:
        raise GateError(problems[0])
    for side in _SIDES:
        for item, result in zip(items, answers[side]):
            _score(item, result, model)
    report, reason = _judge(answers, versions, group, min_samples=min_samples, confidence=confidence)
    return GateResult(report, list(items), answers, reason)


def _judge(
    answers: Mapping[Side, list[Answer]],
    versions: Mapping[Side, str],
    group: str,
    *,
    min_samples: int,
    confidence: float,
) -> tuple[CanaryReport, str]:
    options: dict[str, Any] = {"min_samples": min_samples, "confidence": confidence}

    def latencies(side: Side) -> list[float]:
        return [a.latency_s for a in answers[side] if a.latency_s is not None]

    def errors(side: Side) -> tuple[int, int]:
        return sum(a.error is not None for a in answers[side]), len(answers[side])

    def scores(side: Side) -> list[float]:
        return [
            a.faithfulness.score
            for a in answers[side]
            if a.faithfulness is not None and a.faithfulness.score is not None
            if math.isfinite(a.faithfulness.score)
        ]

    def failures(side: Side, evaluation: str) -> tuple[int, int]:
        outcomes = [getattr(a, evaluation) for a in answers[side]]
        labelled = [o for o in outcomes if o is not None and o.label]
        return sum(o.label == "fail" for o in labelled), len(labelled)

    metrics: list[MetricVerdict] = [
        compare_samples(
            "latency_seconds", latencies("baseline"), latencies("candidate"), better="lower", **options
        ),
        compare_proportions("error_rate", errors("baseline"), errors("candidate"), better="lower", **options),
        compare_samples(
            "score:faithfulness", scores("baseline"), scores("candidate"), better="higher", **options
        ),
    ]
    for evaluation in ("faithfulness", "refusal"):
        metrics.append(
            compare_proportions(
                f"fail_rate:{evaluation}",
                failures("baseline", evaluation),
                failures("candidate", evaluation),
                better="lower",
                **options,
            )
        )
    verdict, score = overall_verdict(metrics)
    reason = ""
    if metrics[1].verdict == "fail" and verdict != "fail":
        verdict, reason = "fail", "the candidate's error rate is significantly higher"
    elif verdict == "inconclusive":
        reason = f"too few values to judge: each metric needs {min_samples} per version"
    report = CanaryReport(
        group, versions["baseline"], versions["candidate"], verdict, score, tuple(metrics), confidence
    )
    return report, reason


# --- output ---------------------------------------------------------------------------------------------


def _number(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _p_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if value < 0.001 else f"{value:.3f}"


def render_table(result: GateResult) -> str:
    report = result.report
    rows = [["metric", "baseline", "candidate", "difference", "p-value", "verdict"]]
    for metric in report.metrics:
        rows.append(
            [
                metric.name,
                _number(metric.baseline),
                _number(metric.candidate),
                _number(_difference(metric.baseline, metric.candidate), signed=True),
                _p_value(metric.p_value),
                metric.verdict,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    score = "" if report.score is None else f" (score {report.score:.1f})"
    header = (
        f"{report.group}: candidate {report.candidate} vs baseline {report.baseline}, "
        f"{len(result.items)} items, {report.confidence:.0%} confidence"
    )
    footer = f"verdict: {report.verdict}{score}"
    if result.reason:
        footer += f": {result.reason}"
    return "\n".join([header, "", *lines, "", footer])


# --- command line ---------------------------------------------------------------------------------------


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected at least {minimum}, got {value}")
        return value

    return parse


_positive = _whole_number(1)
_non_negative = _whole_number(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=Path, required=True, help="golden dataset (JSON lines)")
    parser.add_argument("--baseline", required=True, metavar="VERSION", help="the version to compare against")
    parser.add_argument("--candidate", required=True, metavar="VERSION", help="the version to judge")
    parser.add_argument(
        "--endpoint", required=True, metavar="URL", help="OpenAI-compatible base URL, e.g. http://host/v1"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts-file", type=Path, help="YAML or JSON mapping version -> system prompt")
    source.add_argument("--registry-url", metavar="URL", help="a running collector's HTTP address")
    parser.add_argument("--prompt-name", metavar="NAME", help="the prompt's name in the registry")
    parser.add_argument("--token", help=f"registry bearer token (default: ${TOKEN_ENV} when set)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model to ask (default {DEFAULT_MODEL})")
    parser.add_argument(
        "--api-key-env",
        default=DEFAULT_API_KEY_ENV,
        metavar="NAME",
        help=f"environment variable holding the API key (default {DEFAULT_API_KEY_ENV})",
    )
    parser.add_argument("--max-concurrency", type=_positive, default=4, help="calls in flight (default 4)")
    parser.add_argument(
        "--max-retries", type=_non_negative, default=2, help="SDK retries per call (default 2)"
    )
    parser.add_argument("--timeout", type=_seconds, default=60.0, help="seconds per call (default 60)")
    parser.add_argument(
        "--min-samples",
        type=_positive,
        default=DEFAULT_MIN_SAMPLES,
        help=f"values per version for a conclusive metric (default {DEFAULT_MIN_SAMPLES})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        result = _gate(args)
    except GateError as exc:
        print(f"otel-llm gate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_table(result))
    return result.exit_code


def _gate(args: argparse.Namespace) -> GateResult:
    versions: dict[Side, str] = {"baseline": args.baseline, "candidate": args.candidate}
    if args.prompts_file is not None:
        if args.prompt_name:
            raise GateError("--prompt-name goes with --registry-url, not --prompts-file")
        prompts = _prompts_from_file(args.prompts_file)
        source = str(args.prompts_file)
        group = args.prompts_file.stem
    else:
        if not args.prompt_name:
            raise GateError("--registry-url needs --prompt-name")
        token = args.token or os.environ.get(TOKEN_ENV) or None
        prompts = _prompts_from_registry(args.registry_url, args.prompt_name, token)
        source = f"the registry's prompt {args.prompt_name!r}"
        group = args.prompt_name
    texts: dict[Side, str] = {side: _pick(prompts, versions[side], source) for side in _SIDES}
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if not api_key:
        raise GateError(
            f"the API key variable {args.api_key_env or '(none)'} is not set "
            "(a local server accepts any value)"
        )
    items = load_dataset(args.dataset)
    ask = _openai_asker(
        args.endpoint, api_key, args.model, max_retries=args.max_retries, timeout=args.timeout
    )
    return run_gate(
        items,
        texts,
        ask,
        versions=versions,
        model=args.model,
        endpoint=args.endpoint,
        group=group,
        max_concurrency=args.max_concurrency,
        min_samples=args.min_samples,
    )


def add_parser(subparsers: Any) -> None:
    """Register ``gate`` on an argparse subparsers object; ``run`` on the namespace returns the exit code."""
    parser = subparsers.add_parser(
        "gate",
        help="compare two prompt versions on a golden dataset; non-zero exit on a regression",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _configure(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otel-llm")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["gate", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
