"""Rule conditions: a small expression language of our own, parsed once and evaluated per series and window.

    condition = parse_condition("eval_mean{faithfulness} < 0.65 and latency_p95 < baseline * 2")
    verdict = condition.evaluate(WindowMetrics(engine.window(key, "15m")), min_samples=20, baselines=...)
    verdict.result      # True, False, or None (insufficient data)

Grammar (keywords are lower case; `5%` is 0.05)::

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | primary
    primary    := number | metric | "baseline" | "baseline" "(" metric ")" | "(" condition ")"
    metric     := name | name "{" argument "}"        e.g. error_rate, tokens_mean{input}, eval_mean{toxicity}

The whole condition must be a comparison or a logical combination of comparisons. A bare `baseline` means
the learned baseline of the one metric on the other side of its comparison (`latency_p95 > baseline * 2`);
write `baseline(metric)` when that side has no metric or several.

Why not `eval`: rule files come from users and from the network (a config API); a grammar this small
accepts exactly the language documented here and nothing that could run code. Input is bounded
(`MAX_CONDITION_LENGTH` characters, `MAX_DEPTH` levels of nesting), so no input can exhaust the stack, and
every malformed input raises `ConditionError` naming the column and what was expected.

Truth has three values. A metric without data, or with fewer samples than the rule's `min_samples`, is
unknown; so is a comparison, sum or quotient involving an unknown, and a division by zero. `and`/`or`/`not`
follow Kleene's logic: `False and unknown` is False, `True or unknown` is True, anything else with an
unknown is unknown. An unknown result is the rule's "insufficient data" state, never "fine".

Count metrics (`call_count`, `error_count`, `cost_total`, `tokens_total{kind}`, `tool_calls`,
`eval_samples{name}`, `eval_fail_count{name}`) are exact totals, zero when nothing happened; `min_samples`
does not apply to them. Every other metric is an estimate from a sample, unknown below `min_samples` (see
`METRICS`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, Protocol

from otel_llm_collector.buckets import TOKEN_KINDS, WindowStats

__all__ = [
    "MAX_CONDITION_LENGTH",
    "MAX_DEPTH",
    "METRICS",
    "Condition",
    "ConditionError",
    "Measurement",
    "MetricRef",
    "MetricSource",
    "MetricSpec",
    "Verdict",
    "WindowMetrics",
    "parse_condition",
    "parse_metric",
    "wilson_interval",
]

MAX_CONDITION_LENGTH: Final = 1000
MAX_DEPTH: Final = 32
"""Deepest expression tree accepted: far beyond any sensible rule, far below Python's recursion limit."""


class ConditionError(ValueError):
    """A condition (or metric reference) is malformed; the message names the column and what was expected."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column
        """1-based column of the offending input, when there is one."""


# --- metrics ---------------------------------------------------------------------------------------------


class MetricRef(NamedTuple):
    """A metric in a condition: `name`, or `name{argument}`."""

    name: str
    argument: str = ""

    def __str__(self) -> str:
        return f"{self.name}{{{self.argument}}}" if self.argument else self.name


class Measurement(NamedTuple):
    """A metric's value in one window, and how many samples it rests on."""

    value: float
    samples: int


ArgumentKind = Literal["", "token_kind", "evaluation"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    argument: ArgumentKind
    count: bool
    """Exact totals (no sampling error): zero without data, exempt from `min_samples`."""
    read: Callable[[WindowStats, str], Measurement | None]
    description: str


def _sampled(stats: WindowStats, value: float | None, samples: int) -> Measurement | None:
    if value is None or samples <= 0:
        return None
    return Measurement(float(value), samples)


WILSON_Z: Final = 1.959963984540054
"""Two-sided 95%: the bounds of `eval_fail_rate_lower` / `eval_fail_rate_upper`."""


def wilson_interval(failures: float, samples: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion: honest at small n, unlike `p +- z*se`.

    Rules on pass/fail signals compare a bound, not the raw ratio, so 3 failures in 5 samples (raw 60%,
    lower bound 23%) do not look like 60 in 100 (lower bound 50%).
    """
    if samples <= 0:
        return 0.0, 1.0
    p = min(max(failures / samples, 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * samples)) / (1 + z2 / samples)
    half = z * math.sqrt(p * (1 - p) / samples + z2 / (4 * samples * samples)) / (1 + z2 / samples)
    return max(0.0, centre - half), min(1.0, centre + half)


def _evaluation(stats: WindowStats, name: str, field: str) -> Measurement | None:
    ev = stats.evaluations.get(name)
    if ev is None or ev.samples <= 0:
        return None
    value: float | None
    if field == "mean":
        value = ev.mean
    elif field == "fail":
        value = ev.fail_rate
    else:
        lower, upper = wilson_interval(round(ev.fail_rate * ev.samples), ev.samples)
        value = lower if field == "lower" else upper
    return None if value is None else Measurement(value, ev.samples)


METRICS: Final[dict[str, MetricSpec]] = {
    "call_count": MetricSpec("", True, lambda s, _: Measurement(s.count, s.count), "calls in the window"),
    "error_count": MetricSpec("", True, lambda s, _: Measurement(s.errors, s.count), "failed calls"),
    "rate_per_s": MetricSpec(
        "", True, lambda s, _: Measurement(s.rate_per_s, s.count), "calls per second of event time"
    ),
    "error_rate": MetricSpec(
        "", False, lambda s, _: _sampled(s, s.error_rate, s.count), "failed calls / calls"
    ),
    "success_rate": MetricSpec(
        "", False, lambda s, _: _sampled(s, s.success_rate, s.count), "successful calls / calls"
    ),
    "latency_p50": MetricSpec("", False, lambda s, _: _sampled(s, s.latency_p50_s, s.count), "seconds"),
    "latency_p95": MetricSpec("", False, lambda s, _: _sampled(s, s.latency_p95_s, s.count), "seconds"),
    "latency_p99": MetricSpec("", False, lambda s, _: _sampled(s, s.latency_p99_s, s.count), "seconds"),
    "latency_mean": MetricSpec("", False, lambda s, _: _sampled(s, s.latency_mean_s, s.count), "seconds"),
    "ttfc_p50": MetricSpec("", False, lambda s, _: _sampled(s, s.ttfc_p50_s, s.ttfc_count), "seconds"),
    "ttfc_p95": MetricSpec("", False, lambda s, _: _sampled(s, s.ttfc_p95_s, s.ttfc_count), "seconds"),
    "ttfc_p99": MetricSpec("", False, lambda s, _: _sampled(s, s.ttfc_p99_s, s.ttfc_count), "seconds"),
    "cost_mean": MetricSpec("", False, lambda s, _: _sampled(s, s.cost_usd_mean, s.count), "USD per call"),
    "cost_total": MetricSpec("", True, lambda s, _: Measurement(s.cost_usd_total, s.count), "USD"),
    "context_tokens_mean": MetricSpec(
        "", False, lambda s, _: _sampled(s, s.context_tokens_mean, s.count), "context tokens per call"
    ),
    "tool_calls": MetricSpec("", True, lambda s, _: Measurement(s.tool_calls, s.count), "tool calls"),
    "tokens_mean": MetricSpec(
        "token_kind", False, lambda s, k: _sampled(s, s.tokens_mean.get(k), s.count), "tokens per call"
    ),
    "tokens_total": MetricSpec(
        "token_kind", True, lambda s, k: Measurement(s.tokens_total.get(k, 0), s.count), "tokens"
    ),
    "eval_mean": MetricSpec(
        "evaluation", False, lambda s, n: _evaluation(s, n, "mean"), "mean numeric score of an evaluation"
    ),
    "eval_fail_rate": MetricSpec(
        "evaluation", False, lambda s, n: _evaluation(s, n, "fail"), "samples labelled `fail` / samples"
    ),
    "eval_fail_rate_lower": MetricSpec(
        "evaluation",
        False,
        lambda s, n: _evaluation(s, n, "lower"),
        "95% Wilson lower bound of the fail rate",
    ),
    "eval_fail_rate_upper": MetricSpec(
        "evaluation",
        False,
        lambda s, n: _evaluation(s, n, "upper"),
        "95% Wilson upper bound of the fail rate",
    ),
    "eval_samples": MetricSpec(
        "evaluation",
        True,
        lambda s, n: Measurement(e.samples if (e := s.evaluations.get(n)) else 0, s.count),
        "evaluation results in the window",
    ),
    "eval_fail_count": MetricSpec(
        "evaluation",
        True,
        lambda s, n: Measurement(
            round(e.fail_rate * e.samples) if (e := s.evaluations.get(n)) else 0, s.count
        ),
        "evaluation results labelled `fail` in the window (`eval_fail_count{leak} > 0`: any leak)",
    ),
    "feedback_positive_rate": MetricSpec(
        "", False, lambda s, _: _evaluation(s, "user_feedback", "mean"), "thumbs-up share (user_feedback)"
    ),
}
"""Every metric a condition may name. Times are seconds, costs USD, rates fractions in [0, 1]."""

_EVALUATION_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class MetricSource(Protocol):
    """The figures of one series over one window. Pure reads: must not block, raise or read a clock."""

    def measure(self, metric: MetricRef) -> Measurement | None:
        """The metric's value and sample count; None when the window has no data for it."""
        ...


class WindowMetrics:
    """A `MetricSource` over one `WindowStats` (None: the series has no data at all)."""

    __slots__ = ("stats",)

    def __init__(self, stats: WindowStats | None) -> None:
        self.stats = stats

    def measure(self, metric: MetricRef) -> Measurement | None:
        spec = METRICS[metric.name]
        if self.stats is None:
            return Measurement(0.0, 0) if spec.count else None
        return spec.read(self.stats, metric.argument)


def _check_metric(name: str, argument: str | None, column: int) -> MetricRef:
    spec = METRICS.get(name)
    if spec is None:
        known = ", ".join(sorted(METRICS))
        raise ConditionError(f"unknown metric {name!r} at column {column}; expected one of {known}", column)
    if spec.argument == "":
        if argument is not None:
            raise ConditionError(f"metric {name!r} at column {column} takes no {{argument}}", column)
        return MetricRef(name)
    if argument is None:
        what = "a token kind" if spec.argument == "token_kind" else "an evaluation name"
        raise ConditionError(f"metric {name!r} at column {column} needs {what}, e.g. {name}{{...}}", column)
    if spec.argument == "token_kind" and argument not in TOKEN_KINDS:
        raise ConditionError(
            f"unknown token kind {argument!r} at column {column}; expected one of {', '.join(TOKEN_KINDS)}",
            column,
        )
    if spec.argument == "evaluation" and not _EVALUATION_NAME.fullmatch(argument):
        raise ConditionError(f"bad evaluation name {argument!r} at column {column}", column)
    return MetricRef(name, argument)


# --- tokens ----------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\{(?P<argument>[^{}]*)\})?
    | (?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\))
    """,
    re.VERBOSE,
)
_KEYWORDS: Final = frozenset({"and", "or", "not", "baseline"})


class _Token(NamedTuple):
    kind: Literal["number", "name", "keyword", "op", "end"]
    text: str
    column: int
    argument: str | None = None


def _describe(token: _Token) -> str:
    return "end of condition" if token.kind == "end" else f"token {token.text!r}"


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ConditionError(f"unexpected character {text[pos]!r} at column {pos + 1}", pos + 1)
        column = pos + 1
        pos = match.end()
        if match.lastgroup == "space":
            continue
        if match.group("number") is not None:
            out.append(_Token("number", match.group("number"), column))
        elif match.group("name") is not None:
            name = match.group("name")
            kind: Literal["name", "keyword"] = "keyword" if name in _KEYWORDS else "name"
            if kind == "keyword" and match.group("argument") is not None:
                raise ConditionError(f"unexpected '{{' after {name!r} at column {column}", column)
            out.append(_Token(kind, name, column, match.group("argument")))
        else:
            out.append(_Token("op", match.group("op"), column))
    out.append(_Token("end", "", len(text) + 1))
    return out


# --- syntax tree -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    column: int
    depth: int
    boolean: bool


@dataclass(frozen=True, slots=True)
class _Number(_Node):
    value: float


@dataclass(frozen=True, slots=True)
class _Metric(_Node):
    ref: MetricRef


@dataclass(frozen=True, slots=True)
class _Baseline(_Node):
    ref: MetricRef | None
    """None for a bare `baseline` until its comparison resolves it."""


@dataclass(frozen=True, slots=True)
class _Unary(_Node):
    op: str  # "-" or "not"
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Binary(_Node):
    op: str  # + - * / < <= > >= == != and or
    left: _Node
    right: _Node


def _depth(*children: _Node) -> int:
    return 1 + max((child.depth for child in children), default=0)


def _walk(node: _Node) -> Iterator[_Node]:
    yield node
    if isinstance(node, _Unary):
        yield from _walk(node.operand)
    elif isinstance(node, _Binary):
        yield from _walk(node.left)
        yield from _walk(node.right)


def _resolve_bare(node: _Node, ref: MetricRef) -> _Node:
    if isinstance(node, _Baseline) and node.ref is None:
        return _Baseline(node.column, node.depth, False, ref)
    if isinstance(node, _Unary):
        return _Unary(node.column, node.depth, node.boolean, node.op, _resolve_bare(node.operand, ref))
    if isinstance(node, _Binary):
        left, right = _resolve_bare(node.left, ref), _resolve_bare(node.right, ref)
        return _Binary(node.column, node.depth, node.boolean, node.op, left, right)
    return node


_COMPARISONS: Final = frozenset({"<", "<=", ">", ">=", "==", "!="})


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.nesting = 0
        """Open parentheses, `not`s and unary minuses: bounds the parser's own recursion."""

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def fail(self, expected: str) -> ConditionError:
        token = self.token
        return ConditionError(
            f"unexpected {_describe(token)} at column {token.column}; expected {expected}", token.column
        )

    def enter(self, column: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise ConditionError(
                f"expression too deeply nested at column {column} (at most {MAX_DEPTH} levels)", column
            )

    def limit(self, node: _Node) -> _Node:
        if node.depth > MAX_DEPTH:
            raise ConditionError(
                f"expression too deeply nested at column {node.column} (at most {MAX_DEPTH} levels)",
                node.column,
            )
        return node

    def need_boolean(self, node: _Node, where: str) -> None:
        if not node.boolean:
            raise ConditionError(
                f"expected a comparison {where} at column {node.column}, e.g. 'error_rate > 0.05'",
                node.column,
            )

    def need_number(self, node: _Node, where: str) -> None:
        if node.boolean:
            raise ConditionError(f"expected a number {where} at column {node.column}", node.column)

    def parse(self) -> _Node:
        node = self.parse_or()
        if self.token.kind != "end":
            raise self.fail("an operator, 'and', 'or' or the end")
        self.need_boolean(node, "as the condition")
        return node

    def parse_or(self) -> _Node:
        node = self.parse_and()
        while self.token.text == "or" and self.token.kind == "keyword":
            column = self.advance().column
            right = self.parse_and()
            self.need_boolean(node, "before 'or'")
            self.need_boolean(right, "after 'or'")
            node = self.limit(_Binary(column, _depth(node, right), True, "or", node, right))
        return node

    def parse_and(self) -> _Node:
        node = self.parse_not()
        while self.token.text == "and" and self.token.kind == "keyword":
            column = self.advance().column
            right = self.parse_not()
            self.need_boolean(node, "before 'and'")
            self.need_boolean(right, "after 'and'")
            node = self.limit(_Binary(column, _depth(node, right), True, "and", node, right))
        return node

    def parse_not(self) -> _Node:
        if self.token.text == "not" and self.token.kind == "keyword":
            column = self.advance().column
            self.enter(column)
            operand = self.parse_not()
            self.nesting -= 1
            self.need_boolean(operand, "after 'not'")
            return self.limit(_Unary(column, _depth(operand), True, "not", operand))
        return self.parse_comparison()

    def parse_comparison(self) -> _Node:
        left = self.parse_sum()
        if self.token.kind == "op" and self.token.text in _COMPARISONS:
            op_token = self.advance()
            right = self.parse_sum()
            self.need_number(left, f"before {op_token.text!r}")
            self.need_number(right, f"after {op_token.text!r}")
            left, right = self._resolve_baseline(left, right)
            node = _Binary(op_token.column, _depth(left, right), True, op_token.text, left, right)
            if self.token.kind == "op" and self.token.text in _COMPARISONS:
                raise self.fail("'and' or 'or' (comparisons do not chain)")
            return self.limit(node)
        return left

    def _resolve_baseline(self, left: _Node, right: _Node) -> tuple[_Node, _Node]:
        bare = [
            n for side in (left, right) for n in _walk(side) if isinstance(n, _Baseline) and n.ref is None
        ]
        if not bare:
            return left, right
        for side in (left, right):
            refs = {n.ref for n in _walk(side) if isinstance(n, _Metric)}
            if len(refs) == 1:
                ref = refs.pop()
                return _resolve_bare(left, ref), _resolve_bare(right, ref)
            if refs:
                break
        column = bare[0].column
        raise ConditionError(
            f"bare 'baseline' at column {column} needs exactly one metric on one side of its comparison; "
            "write baseline(metric)",
            column,
        )

    def parse_sum(self) -> _Node:
        node = self.parse_product()
        while self.token.kind == "op" and self.token.text in ("+", "-"):
            op_token = self.advance()
            right = self.parse_product()
            self.need_number(node, f"before {op_token.text!r}")
            self.need_number(right, f"after {op_token.text!r}")
            node = self.limit(
                _Binary(op_token.column, _depth(node, right), False, op_token.text, node, right)
            )
        return node

    def parse_product(self) -> _Node:
        node = self.parse_unary()
        while self.token.kind == "op" and self.token.text in ("*", "/"):
            op_token = self.advance()
            right = self.parse_unary()
            self.need_number(node, f"before {op_token.text!r}")
            self.need_number(right, f"after {op_token.text!r}")
            node = self.limit(
                _Binary(op_token.column, _depth(node, right), False, op_token.text, node, right)
            )
        return node

    def parse_unary(self) -> _Node:
        if self.token.kind == "op" and self.token.text == "-":
            column = self.advance().column
            self.enter(column)
            operand = self.parse_unary()
            self.nesting -= 1
            self.need_number(operand, "after '-'")
            return self.limit(_Unary(column, _depth(operand), False, "-", operand))
        return self.parse_primary()

    def parse_primary(self) -> _Node:
        token = self.token
        if token.kind == "number":
            self.advance()
            return _Number(token.column, 1, False, _number(token))
        if token.kind == "name":
            self.advance()
            return _Metric(token.column, 1, False, _check_metric(token.text, token.argument, token.column))
        if token.kind == "keyword" and token.text == "baseline":
            self.advance()
            if self.token.kind == "op" and self.token.text == "(":
                self.advance()
                inner = self.token
                if inner.kind != "name":
                    raise self.fail("a metric inside baseline(...)")
                self.advance()
                ref = _check_metric(inner.text, inner.argument, inner.column)
                if self.token.text != ")" or self.token.kind != "op":
                    raise self.fail("')' after the metric in baseline(...)")
                self.advance()
                return _Baseline(token.column, 1, False, ref)
            return _Baseline(token.column, 1, False, None)
        if token.kind == "op" and token.text == "(":
            self.advance()
            self.enter(token.column)
            inner_node = self.parse_or()
            self.nesting -= 1
            if not (self.token.kind == "op" and self.token.text == ")"):
                raise self.fail("')' to close the '(' at column " + str(token.column))
            self.advance()
            return inner_node
        raise self.fail("a number, metric, 'baseline' or '('")


def _number(token: _Token) -> float:
    text = token.text
    percent = text.endswith("%")
    value = float(text[:-1] if percent else text)
    if not math.isfinite(value):
        raise ConditionError(f"number {text!r} at column {token.column} is out of range", token.column)
    return value / 100.0 if percent else value


# --- evaluation ------------------------------------------------------------------------------------------


class Verdict(NamedTuple):
    """The outcome of a condition in one window."""

    result: bool | None
    """None: insufficient data (a metric missing or below `min_samples`, a missing baseline, x / 0)."""
    value: float | None
    """The left-hand value of the deciding comparison (the first true one, else the first one): `$value`."""


BaselineLookup = Callable[[MetricRef], float | None]


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition. Build it with `parse_condition`; immutable and safe to share between threads."""

    text: str
    _root: _Node
    metrics: frozenset[MetricRef]
    """Every metric the condition reads."""
    baseline_metrics: frozenset[MetricRef]
    """The metrics whose learned baseline the condition compares against."""

    def evaluate(
        self, source: MetricSource, *, min_samples: int = 0, baselines: BaselineLookup | None = None
    ) -> Verdict:
        run = _Run(source, min_samples, baselines)
        result = run.truth(self._root)
        value = run.first_true if run.first_true is not None else run.first_value
        return Verdict(result, value)


class _Run:
    def __init__(self, source: MetricSource, min_samples: int, baselines: BaselineLookup | None) -> None:
        self.source = source
        self.min_samples = min_samples
        self.baselines = baselines
        self.cache: dict[MetricRef, float | None] = {}
        self.first_value: float | None = None
        self.first_true: float | None = None
        self.compared = False

    def metric(self, ref: MetricRef) -> float | None:
        if ref in self.cache:
            return self.cache[ref]
        measured = self.source.measure(ref)
        value: float | None = None
        if measured is not None and (METRICS[ref.name].count or measured.samples >= self.min_samples):
            value = measured.value if math.isfinite(measured.value) else None
        self.cache[ref] = value
        return value

    def number(self, node: _Node) -> float | None:
        if isinstance(node, _Number):
            return node.value
        if isinstance(node, _Metric):
            return self.metric(node.ref)
        if isinstance(node, _Baseline):
            if self.baselines is None or node.ref is None:
                return None
            found = self.baselines(node.ref)
            return found if found is not None and math.isfinite(found) else None
        if isinstance(node, _Unary):
            operand = self.number(node.operand)
            return None if operand is None else -operand
        assert isinstance(node, _Binary)
        left, right = self.number(node.left), self.number(node.right)
        if left is None or right is None:
            return None
        if node.op == "+":
            out = left + right
        elif node.op == "-":
            out = left - right
        elif node.op == "*":
            out = left * right
        else:
            if right == 0:
                return None
            out = left / right
        return out if math.isfinite(out) else None

    def truth(self, node: _Node) -> bool | None:
        if isinstance(node, _Unary):
            operand = self.truth(node.operand)
            return None if operand is None else not operand
        assert isinstance(node, _Binary)
        if node.op in ("and", "or"):
            left, right = self.truth(node.left), self.truth(node.right)
            decisive = node.op == "or"  # the value that settles the operator on its own
            if left is decisive or right is decisive:
                return decisive
            if left is None or right is None:
                return None
            return not decisive
        left_value, right_value = self.number(node.left), self.number(node.right)
        if not self.compared:
            self.compared = True
            self.first_value = left_value
        if left_value is None or right_value is None:
            return None
        result = _compare(node.op, left_value, right_value)
        if result and self.first_true is None:
            self.first_true = left_value
        return result


def _compare(op: str, left: float, right: float) -> bool:
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "==":
        return left == right
    return left != right


def parse_condition(text: str) -> Condition:
    """Parse a condition; raise `ConditionError` (a `ValueError`) naming the column and what was expected."""
    if not isinstance(text, str):
        raise ConditionError("condition must be a string")
    if not text.strip():
        raise ConditionError("condition is empty; expected a comparison such as 'error_rate > 0.05'")
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionError(f"condition is {len(text)} characters long; at most {MAX_CONDITION_LENGTH}")
    root = _Parser(text).parse()
    nodes = list(_walk(root))
    metrics = frozenset(n.ref for n in nodes if isinstance(n, _Metric))
    baselines = frozenset(n.ref for n in nodes if isinstance(n, _Baseline) and n.ref is not None)
    return Condition(text, root, metrics, baselines)


def parse_metric(text: str) -> MetricRef:
    """Parse one metric reference such as `eval_mean{faithfulness}` (detector and baseline settings)."""
    if not isinstance(text, str) or len(text) > 200:
        raise ConditionError("expected a metric such as 'eval_mean{faithfulness}'")
    stripped = text.strip()
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\{([^{}]*)\})?", stripped)
    if match is None:
        raise ConditionError(f"expected a metric such as 'eval_mean{{faithfulness}}', got {text!r}")
    return _check_metric(match.group(1), match.group(2), 1)
