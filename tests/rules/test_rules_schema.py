"""The rule schema: durations, scope matchers, templates, and errors that name the rule and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from otel_llm_collector.records import SeriesKey
from otel_llm_collector.rules import (
    Rule,
    RulesError,
    check_rules_file,
    load_rules,
    parse_duration,
    parse_rules,
    render_template,
)
from rules_support import KEY

VALID = """
rules:
  - name: faithfulness-p1
    condition: eval_mean{faithfulness} < 0.65
    window: 15m
    min_samples: 20
    for: 10m
    keep_firing_for: 1h30m
    severity: P1
    group: quality
    scope: {feature: support-answer, model: "=~gpt-4o.*", prompt_version: "!=v0"}
    actions: [alert, auto_rollback]
    runbook_url: https://runbooks.example/faithfulness
    summary: "Faithfulness {{ $value }} on {{$labels.feature}}"
    labels: {team: search}
  - name: errors
    condition: error_rate > 5%
    severity: P2
"""


def _write(tmp_path: Path, text: str) -> Path:
    """Write `rules.yaml` and return it relative to the working directory (tests chdir to `tmp_path`)."""
    (tmp_path / "rules.yaml").write_text(text)
    return Path("rules.yaml")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    ruleset = load_rules(_write(tmp_path, VALID))
    rule = ruleset.by_name("faithfulness-p1")
    assert rule.for_seconds == 600
    assert rule.keep_firing_for_seconds == 5400
    assert rule.actions == ("alert", "auto_rollback")
    assert rule.compiled is not None
    errors = ruleset.by_name("errors")
    assert (errors.window, errors.min_samples, errors.for_seconds, errors.actions) == (
        "15m",
        0,
        0.0,
        ("alert",),
    )
    assert errors.scope == {}
    assert check_rules_file(_write(tmp_path, VALID)) == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        (0, 0),
        ("0s", 0),
        ("45s", 45),
        ("10m", 600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1h0m5s", 3605),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "-5m", "1.5h", "5m1h", "1H", True, None, 3.5, "m"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like '10m'"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("scope", "series", "applies"),
    [
        ({}, KEY, True),
        ({"feature": "support-answer"}, KEY, True),
        ({"feature": "search"}, KEY, False),
        ({"model": "=~gpt-4o.*"}, KEY, True),
        ({"model": "=~gpt-4"}, KEY, False),  # regexes are anchored, as in Prometheus
        ({"model": "!~claude.*", "service": "checkout"}, KEY, True),
        ({"prompt_version": "!=v1"}, KEY, False),
        ({"feature": "=~support.*", "prompt_name": "other"}, KEY, False),
        ({"feature": ""}, SeriesKey("svc", "", "", "", ""), True),
    ],
)
def test_scope_matchers(scope: dict[str, str], series: SeriesKey, applies: bool) -> None:
    rule = Rule.model_validate({"name": "r", "condition": "error_rate > 1", "severity": "P2", "scope": scope})
    assert rule.applies_to(series) is applies


def _errors(rule: dict[str, object]) -> list[str]:
    ruleset, errors = parse_rules({"rules": [rule]}, source="rules.yaml")
    assert ruleset is None
    return errors


BASE = {"name": "faithfulness-p1", "condition": "eval_mean{faithfulness} < 0.65", "severity": "P1"}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"for": "ten minutes"}, "rules.yaml: rule 'faithfulness-p1': for: expected a duration like '10m'"),
        (
            {"keep_firing_for": "5"},
            "rules.yaml: rule 'faithfulness-p1': keep_firing_for: expected a duration",
        ),
        (
            {"condition": "eval_mean{faithfulness} < 0.65)"},
            "rules.yaml: rule 'faithfulness-p1': condition: unexpected token ')' at column 31",
        ),
        (
            {"condition": "faithfulness < 1"},
            "rule 'faithfulness-p1': condition: unknown metric 'faithfulness'",
        ),
        ({"severity": "P5"}, "rule 'faithfulness-p1': severity: Input should be 'P0', 'P1', 'P2' or 'P3'"),
        ({"severity": "critical"}, "rule 'faithfulness-p1': severity:"),
        ({"window": "2m"}, "rule 'faithfulness-p1': window:"),
        ({"window": "7d"}, "rule 'faithfulness-p1': window:"),
        ({"min_samples": -1}, "rule 'faithfulness-p1': min_samples:"),
        ({"actions": ["page"]}, "rule 'faithfulness-p1': actions:"),
        ({"actions": ["alert", "alert"]}, "rule 'faithfulness-p1': actions: an action is listed twice"),
        ({"scope": {"team": "x"}}, "rule 'faithfulness-p1': scope: unknown series label 'team'"),
        ({"scope": {"model": "=~("}}, "rule 'faithfulness-p1': scope: bad regular expression '('"),
        ({"scope": "some"}, "rule 'faithfulness-p1': scope: expected 'all' or a mapping"),
        ({"summary": "{{ .Labels.feature }}"}, "rule 'faithfulness-p1': summary: unsupported placeholder"),
        ({"description": "{{ $value | printf }}"}, "rule 'faithfulness-p1': description: unsupported"),
        ({"labels": {"severity": "high"}}, "rule 'faithfulness-p1': labels: label 'severity' is set by"),
        ({"labels": {"bad-name": "x"}}, "rule 'faithfulness-p1': labels: label name 'bad-name'"),
        ({"detector": {"kind": "ewma", "metric": "eval_mean{faithfulness}"}}, "exactly one of 'condition'"),
        ({"condition": None}, "rule 'faithfulness-p1': condition: a rule needs exactly one of"),
        ({"sevrity": "P1"}, "rule 'faithfulness-p1': sevrity: Extra inputs are not permitted"),
        ({"name": "has space"}, "rule 'has space': name:"),
    ],
)
def test_errors_name_the_rule_and_the_field(change: dict[str, object], error: str) -> None:
    errors = _errors({**BASE, **change})
    assert any(error in line for line in errors), errors


def test_rule_without_a_name_is_named_by_position() -> None:
    ruleset, errors = parse_rules({"rules": [BASE, {"condition": "error_rate > 1", "severity": "P2"}]})
    assert ruleset is None
    assert errors == ["rules: rule #2: name: Field required"]


def test_every_error_in_a_file_is_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
rules:
  - {name: a, condition: "error_rate >", severity: P1}
  - {name: b, condition: "error_rate > 1", severity: P1, for: soon}
  - {name: a, condition: "error_rate > 1", severity: P2}
  - just a string
""",
    )
    errors = check_rules_file(path)
    assert len(errors) == 4, errors
    assert errors[0].startswith("rules.yaml: rule 'a': condition:")
    assert errors[1] == "rules.yaml: rule 'b': for: expected a duration like '10m'"
    assert errors[2] == "rules.yaml: rule 'a': name: duplicate of rule #1"
    assert errors[3] == "rules.yaml: rule #4: expected a mapping of rule fields"
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert info.value.errors == errors


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("rules: [", "rules.yaml: invalid YAML at line"),
        ("- name: a", "rules.yaml: expected a mapping with a 'rules' list"),
        ("rules: {name: a}", "rules.yaml: rules: expected a list of rules"),
        ("groups: []\nrules: []", "rules.yaml: unknown top-level key(s) groups"),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, error: str) -> None:
    errors = check_rules_file(_write(tmp_path, text))
    assert errors
    assert errors[0].startswith(error), errors


def test_missing_file_is_an_error_line_not_an_exception(tmp_path: Path) -> None:
    errors = check_rules_file(tmp_path / "nope.yaml")
    assert len(errors) == 1
    assert "cannot read" in errors[0]


def test_empty_file_is_an_empty_rule_set(tmp_path: Path) -> None:
    assert len(load_rules(_write(tmp_path, ""))) == 0


def test_templates_substitute_only_values_and_labels() -> None:
    labels = {"feature": "support-answer", "service": "checkout"}
    text = "{{ $value }} on {{$labels.feature}} ({{ $labels.missing }}) vs {{ $baseline }} {not} {{x"
    assert render_template(text, labels=labels, value=0.123456, baseline=None) == (
        "0.1235 on support-answer () vs n/a {not} {{x"
    )
