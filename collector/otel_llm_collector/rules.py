"""Alert rules: the one schema (pydantic) for rule files, their loader, and the shipped default rule set.

A rule file is YAML with a list of rules under `rules:`::

    rules:
      - name: faithfulness-p1
        condition: eval_mean{faithfulness} < 0.65      # see otel_llm_collector.conditions
        window: 15m                                    # 1m, 5m, 15m, 1h or 24h
        min_samples: 20                                # fewer evaluations: "insufficient data", not "fine"
        for: 10m                                       # condition true this long (event time) before firing
        keep_firing_for: 5m                            # condition false this long before resolving
        severity: P1                                   # P0 (most severe) .. P3
        group: quality                                 # one incident per series for rules in one group
        scope:                                         # omitted: every series
          feature: support-answer                      # exact; "=~regex", "!=value", "!~regex" also work
          model: "=~gpt-4o.*"
        actions: [alert, flag_for_review]              # alert, auto_rollback, flag_for_review
        runbook_url: https://runbooks.example/faithfulness
        summary: "Faithfulness {{ $value }} on {{ $labels.feature }}"
        description: "..."
        labels: {team: search}

Instead of a `condition`, a rule may name a `detector` (a statistical detector from
`otel_llm_collector.detectors`, fed the rule's metric once per baseline period) for changes no fixed
threshold catches, such as a slow downward trend.

Templates. `summary`, `description` and `labels` values may use `{{ $value }}` (the condition's deciding
value, four significant digits), `{{ $baseline }}` (the first baseline the condition compares against) and
`{{ $labels.NAME }}` (series and rule labels). That is substitution, not a template engine: nothing else
inside `{{ }}` is accepted, so a rule file cannot run code; an unknown name is a load error.

Errors name the file, the rule and the field, e.g. ``rules.yaml: rule 'faithfulness-p1': for: expected a
duration like '10m'``. `check_rules_file` returns all of them; `load_rules` raises `RulesError` with all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from otel_llm_collector.conditions import Condition, MetricRef, parse_condition, parse_metric
from otel_llm_collector.records import SeriesKey

__all__ = [
    "ACTIONS",
    "RULE_WINDOWS",
    "SERIES_LABELS",
    "SEVERITIES",
    "DetectorSpec",
    "Matcher",
    "Rule",
    "RuleSet",
    "RulesError",
    "check_rules_file",
    "load_default_rules",
    "load_rules",
    "parse_duration",
    "parse_rules",
    "render_template",
]

SEVERITIES: Final = ("P0", "P1", "P2", "P3")
"""Most severe first."""
RULE_WINDOWS: Final = ("1m", "5m", "15m", "1h", "24h")
ACTIONS: Final = ("alert", "auto_rollback", "flag_for_review")
SERIES_LABELS: Final = SeriesKey._fields
"""`service`, `feature`, `prompt_name`, `prompt_version`, `model`: the label names of a series."""
MAX_RULES: Final = 1000
DEFAULT_RULES_RESOURCE: Final = "default_rules.yaml"

Severity = Literal["P0", "P1", "P2", "P3"]
WindowName = Literal["1m", "5m", "15m", "1h", "24h"]
Action = Literal["alert", "auto_rollback", "flag_for_review"]


class RulesError(ValueError):
    """A rule file is invalid; `errors` holds one line per problem, each naming the rule and field."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


# --- durations and templates -----------------------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_UNITS: Final = (86400, 3600, 60, 1)


def parse_duration(value: object) -> float:
    """`10m`, `1h30m`, `45s`, `2d`, or `0` -> seconds. Raise ValueError otherwise (no fractions, no sign)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("expected a duration like '10m'")
    text = str(value).strip()
    if text == "0":
        return 0.0
    match = _DURATION.fullmatch(text)
    if not text or match is None or len(text) > 32:
        raise ValueError("expected a duration like '10m'")
    return float(sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS) if part))


_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PLACEHOLDER_BODY = re.compile(r"\s*\$(value|baseline|labels\.([A-Za-z_][A-Za-z0-9_]*))\s*")


def _check_template(text: str) -> str:
    for match in _PLACEHOLDER.finditer(text):
        if _PLACEHOLDER_BODY.fullmatch(match.group(1)) is None:
            raise ValueError(
                f"unsupported placeholder {match.group(0)!r}; use {{{{ $value }}}}, {{{{ $baseline }}}} "
                "or {{ $labels.NAME }}"
            )
    return text


def _format_number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def render_template(
    text: str, *, labels: Mapping[str, str], value: float | None, baseline: float | None = None
) -> str:
    """Substitute `{{ $value }}`, `{{ $baseline }}` and `{{ $labels.NAME }}` (missing labels: empty)."""

    def substitute(match: re.Match[str]) -> str:
        body = _PLACEHOLDER_BODY.fullmatch(match.group(1))
        if body is None:
            return match.group(0)
        if body.group(1) == "value":
            return _format_number(value)
        if body.group(1) == "baseline":
            return _format_number(baseline)
        return labels.get(body.group(2) or "", "")

    return _PLACEHOLDER.sub(substitute, text)


# --- schema ----------------------------------------------------------------------------------------------


class Matcher(BaseModel):
    """One label matcher: `value` (exact), `=~regex` / `!~regex` (fully anchored), `!=value`."""

    model_config = ConfigDict(frozen=True)

    op: Literal["=", "!=", "=~", "!~"]
    value: str
    _pattern: re.Pattern[str] | None = PrivateAttr(default=None)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        for op in ("=~", "!~", "!="):
            if text.startswith(op):
                return cls(op=op, value=text[len(op) :])
        return cls(op="=", value=text.removeprefix("="))

    @model_validator(mode="after")
    def _compile(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                self._pattern = re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {self.value!r}: {exc}") from None
        return self

    def matches(self, value: str) -> bool:
        if self._pattern is not None:
            found = self._pattern.fullmatch(value) is not None
            return found if self.op == "=~" else not found
        return (value == self.value) if self.op == "=" else (value != self.value)


class DetectorSpec(BaseModel):
    """A statistical detector on one metric, evaluated on completed baseline periods (see `alerts`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    """A detector name from `otel_llm_collector.detectors`, e.g. `ewma`, `cusum`, `western_electric`."""
    metric: str
    direction: Literal["down", "up", "both"] = "down"
    """Which shift is bad: `down` for quality scores, `up` for error rates and latency."""
    params: dict[str, float] = Field(default_factory=dict)
    """Detector settings (e.g. `lambda`, `L`, `k`, `h`), passed through to the detector."""

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        parse_metric(value)
        return value

    @property
    def metric_ref(self) -> MetricRef:
        return parse_metric(self.metric)


class Rule(BaseModel):
    """One alert rule. Field docs are in the module docstring; the YAML names are the field aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
    condition: str | None = None
    detector: DetectorSpec | None = None
    window: WindowName = "15m"
    min_samples: int = Field(default=0, ge=0, le=1_000_000)
    for_seconds: float = Field(default=0.0, alias="for")
    keep_firing_for_seconds: float = Field(default=0.0, alias="keep_firing_for")
    severity: Severity
    scope: dict[str, Matcher] = Field(default_factory=dict)
    actions: tuple[Action, ...] = ("alert",)
    runbook_url: str = ""
    summary: str = ""
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    group: str = Field(default="", max_length=64)
    """Rules of one group on one series form one incident: the most severe firing one inhibits the rest."""

    _condition: Condition | None = PrivateAttr(default=None)

    @field_validator("for_seconds", "keep_firing_for_seconds", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)

    @field_validator("condition")
    @classmethod
    def _parse_condition(cls, value: str | None) -> str | None:
        if value is not None:
            parse_condition(value)  # raises ConditionError, a ValueError, naming the column
        return value

    @field_validator("scope", mode="before")
    @classmethod
    def _scope(cls, value: object) -> object:
        if value is None or value == "all":
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("expected 'all' or a mapping of series labels to matchers")
        out: dict[str, Matcher] = {}
        for label, text in value.items():
            if label not in SERIES_LABELS:
                raise ValueError(
                    f"unknown series label {label!r}; expected one of {', '.join(SERIES_LABELS)}"
                )
            if not isinstance(text, str):
                raise ValueError(f"{label}: expected a string matcher such as 'support' or '=~gpt-4.*'")
            out[label] = Matcher.parse(text)
        return out

    @field_validator("summary", "description")
    @classmethod
    def _template(cls, value: str) -> str:
        return _check_template(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"label name {key!r} must match [A-Za-z_][A-Za-z0-9_]*")
            if key in ("alertname", "severity", *SERIES_LABELS):
                raise ValueError(f"label {key!r} is set by the collector")
            _check_template(text)
        return value

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("an action is listed twice")
        return value

    @model_validator(mode="after")
    def _compile(self) -> Rule:
        if (self.condition is None) == (self.detector is None):
            raise ValueError("condition: a rule needs exactly one of 'condition' and 'detector'")
        if self.condition is not None:
            self._condition = parse_condition(self.condition)
        return self

    # --- derived --------------------------------------------------------------------------------------
    @property
    def compiled(self) -> Condition | None:
        """The parsed condition; None for a detector rule."""
        return self._condition

    @property
    def severity_rank(self) -> int:
        """0 for P0 (most severe) .. 3 for P3."""
        return SEVERITIES.index(self.severity)

    @property
    def metrics(self) -> frozenset[MetricRef]:
        if self._condition is not None:
            return self._condition.metrics
        assert self.detector is not None
        return frozenset({self.detector.metric_ref})

    def applies_to(self, series: SeriesKey) -> bool:
        return all(m.matches(getattr(series, label)) for label, m in self.scope.items())


class RuleSet(BaseModel):
    """A validated rule file: rules with unique names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[Rule, ...] = ()

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in value:
            if rule.name in seen:
                raise ValueError(f"rule {rule.name!r}: name: duplicate rule name")
            seen.add(rule.name)
        return value

    def __len__(self) -> int:
        return len(self.rules)

    def by_name(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


# --- loading ---------------------------------------------------------------------------------------------


def _field(loc: tuple[int | str, ...]) -> str:
    names = [str(part) for part in loc if not isinstance(part, int)]
    aliases = {"for_seconds": "for", "keep_firing_for_seconds": "keep_firing_for"}
    return ".".join(aliases.get(name, name) for name in names) or "rule"


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _rule_label(index: int, raw: object) -> str:
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) and raw["name"]:
        return f"rule {raw['name']!r}"
    return f"rule #{index + 1}"


def parse_rules(data: object, *, source: str = "rules") -> tuple[RuleSet | None, list[str]]:
    """Validate already-parsed YAML; return the rule set (None on any error) and every error found."""
    if data is None:
        data = {"rules": []}
    if not isinstance(data, Mapping):
        return None, [f"{source}: expected a mapping with a 'rules' list at the top"]
    errors: list[str] = []
    extra = sorted(str(key) for key in data if key != "rules")
    if extra:
        errors.append(f"{source}: unknown top-level key(s) {', '.join(extra)}; expected 'rules'")
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        return None, [*errors, f"{source}: rules: expected a list of rules"]
    if len(raw_rules) > MAX_RULES:
        return None, [*errors, f"{source}: rules: {len(raw_rules)} rules; at most {MAX_RULES}"]
    rules: list[Rule] = []
    names: dict[str, int] = {}
    for index, raw in enumerate(raw_rules):
        label = _rule_label(index, raw)
        if not isinstance(raw, Mapping):
            errors.append(f"{source}: {label}: expected a mapping of rule fields")
            continue
        name = raw.get("name")
        if isinstance(name, str) and name:
            if name in names:
                errors.append(f"{source}: {label}: name: duplicate of rule #{names[name] + 1}")
                continue
            names[name] = index
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                field = _field(tuple(error["loc"]))
                message = _message(error)
                if field == "rule" and message.startswith("condition: "):
                    field, message = "condition", message.removeprefix("condition: ")
                errors.append(f"{source}: {label}: {field}: {message}")
            continue
        rules.append(rule)
    if errors:
        return None, errors
    return RuleSet(rules=tuple(rules)), []


def _read(path: Path) -> tuple[object, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read: {exc}"]
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, source: str) -> tuple[object, list[str]]:
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        return None, [f"{source}: invalid YAML{where}: {problem}"]


def check_rules_file(path: str | Path) -> list[str]:
    """Every problem in a rule file, one line each naming the file, rule and field; empty when valid."""
    data, errors = _read(Path(path))
    if errors:
        return errors
    return parse_rules(data, source=str(path))[1]


def load_rules(path: str | Path) -> RuleSet:
    """Load and validate a rule file; raise `RulesError` listing every problem."""
    data, errors = _read(Path(path))
    if errors:
        raise RulesError(errors)
    ruleset, errors = parse_rules(data, source=str(path))
    if ruleset is None:
        raise RulesError(errors)
    return ruleset


def load_default_rules() -> RuleSet:
    """The shipped default rule set (`data/default_rules.yaml`): works with no configuration."""
    text = resources.files("otel_llm_collector").joinpath("data", DEFAULT_RULES_RESOURCE).read_text("utf-8")
    data, errors = _parse_yaml(text, DEFAULT_RULES_RESOURCE)
    ruleset, more = parse_rules(data, source=DEFAULT_RULES_RESOURCE) if not errors else (None, [])
    if ruleset is None:
        raise RulesError(errors or more)
    return ruleset
