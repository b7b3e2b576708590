"""The SLOs as Prometheus rules and Grafana alerting (`slo_rules`, `otel-llm slo`): the committed files are
the renderings of the shipped SLO file, promtool accepts the rules of several SLO sets, label values are
escaped, the alerts are the collector's burn-rate table, Grafana's inline queries fire exactly when the
Prometheus alerts do, and bad SLO files fail the command with a clear message."""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from otel_llm_collector import slo, slo_cli, slo_rules
from otel_llm_collector.slo import (
    BURN_RATE_ALERTS,
    BURN_WINDOWS,
    SLO_ALERTNAME,
    SloSpec,
    load_slos,
    parse_slos,
)
from otel_llm_collector.slo_rules import (
    RATIO_WINDOWS,
    escape_promql_string,
    render_grafana_rules,
    render_prometheus_rules,
    scope_selector,
)

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "grafana" / "alerts"
SLO_FILE = "grafana/alerts/slos.yaml"
RULE_FILE = "grafana/alerts/otel-llm-slo-rules.yaml"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")

ODD = 'quote " backslash \\ newline \n tab \t brace } comma , ünïcödé \u2028 end'
"""A label value with everything PromQL strings and YAML scalars must escape."""

SLO_SETS: dict[str, list[dict[str, Any]]] = {
    "empty": [],
    "unscoped": [
        {"name": "all-calls", "kind": "availability", "objective": 0.999},
        {"name": "all-feedback", "kind": "quality", "evaluation": "user_feedback", "objective": 0.5},
    ],
    "every-scope-and-period": [
        {
            "name": f"slo-{period}",
            "kind": kind,
            "objective": objective,
            "period": period,
            "service": "support-bot",
            "feature": "answer",
            "prompt_name": "answer",
            "model": "gpt-4o-mini",
            **extra,
        }
        for period, kind, objective, extra in (
            ("1h", "availability", 0.9, {}),
            ("7d", "quality", 0.99, {"evaluation": "hallucination", "threshold": 0.3}),
            ("90d", "latency", 0.9999, {"threshold_seconds": 0.25}),
            ("36h", "quality", 0.001, {"evaluation": "custom.score"}),
        )
    ],
    "odd-label-values": [
        {"name": "odd.avail", "kind": "availability", "objective": 0.99, "service": ODD, "model": "\\"},
        {"name": "odd:quality", "kind": "quality", "objective": 0.9, "evaluation": ODD, "feature": '"'},
        {"name": "odd_latency", "kind": "latency", "objective": 0.95, "threshold_seconds": 1, "feature": ODD},
    ],
}


def _promtool(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def _groups(text: str) -> list[dict[str, Any]]:
    document: dict[str, Any] = yaml.safe_load(text)
    groups: list[dict[str, Any]] = document["groups"]
    return groups


def _shipped() -> list[SloSpec]:
    return list(load_slos(ROOT / SLO_FILE).slos)


def _rules_by_slo(text: str) -> dict[str, list[dict[str, Any]]]:
    return {group["rules"][0]["labels"]["slo"]: group["rules"] for group in _groups(text)}


# --- the committed files --------------------------------------------------------------------------------
def test_committed_rules_are_the_rendering_of_the_shipped_slo_file() -> None:
    rendered = render_prometheus_rules(load_slos(ROOT / SLO_FILE), source=SLO_FILE, output=RULE_FILE)
    assert (ROOT / RULE_FILE).read_text("utf-8") == rendered, (
        f"{RULE_FILE} is stale: run `otel-llm slo render-rules --slo-file {SLO_FILE} --output {RULE_FILE}`"
    )


def test_the_command_in_the_header_reproduces_the_committed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "grafana" / "alerts").mkdir(parents=True)
    shutil.copy(ROOT / SLO_FILE, tmp_path / SLO_FILE)
    committed = (ROOT / RULE_FILE).read_text("utf-8")
    header = re.search(r"^#   otel-llm (slo render-rules .*)$", committed, re.MULTILINE)
    assert header is not None
    monkeypatch.chdir(tmp_path)
    assert slo_cli.main(header.group(1).split()[1:]) == 0
    assert (tmp_path / RULE_FILE).read_text("utf-8") == committed
    assert "rules for 3 SLOs written" in capsys.readouterr().err


def test_shipped_slo_file_has_an_slo_of_every_kind() -> None:
    assert sorted(spec.kind for spec in _shipped()) == ["availability", "latency", "quality"]


@needs_promtool
def test_promtool_unit_tests_of_the_committed_rules_pass() -> None:
    result = _promtool(ALERTS, "test", "rules", "otel-llm-slo-rules.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


# --- promtool on renderings -----------------------------------------------------------------------------
@needs_promtool
@pytest.mark.parametrize("name", [*SLO_SETS, "shipped"])
def test_promtool_check_rules_passes_on_the_rendering(name: str, tmp_path: Path) -> None:
    slos = _shipped() if name == "shipped" else parse_slos({"slos": SLO_SETS[name]})
    text = render_prometheus_rules(slos, source=f"{name}.yaml")
    (tmp_path / "rules.yaml").write_text(text, "utf-8")
    result = _promtool(tmp_path, "check", "rules", "rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert len(_groups(text)) == len(SLO_SETS.get(name, _shipped()))


@needs_promtool
def test_escaped_selectors_match_exactly_the_odd_label_values(tmp_path: Path) -> None:
    """The odd service's calls all fail; a series whose service differs only by the escapes is healthy and
    four times larger. The ratio is 1.0 only if the selector matches the odd value and nothing else."""
    spec = SloSpec(name="odd", kind="availability", objective=0.99, service=ODD)
    text = render_prometheus_rules([spec])
    (tmp_path / "rules.yaml").write_text(text, "utf-8")
    alerts = [rule for rule in _groups(text)[0]["rules"] if "alert" in rule]
    value = '{{ printf "%.3g" $value }}'
    near_miss = ODD.replace("\\", "").replace("\n", "n")
    series = []
    for service, ratio, calls in ((ODD, 1, 100), (near_miss, 0, 400)):
        for window in ("5m", "1h", "24h"):
            labels = f'service="{escape_promql_string(service)}",window="{window}"'
            series += [
                {"series": f"otel_llm_window_error_ratio{{{labels}}}", "values": f"{ratio}x20"},
                {"series": f"otel_llm_window_calls{{{labels}}}", "values": f"{calls}x20"},
            ]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": f'slo:sli_error:ratio_rate{window}{{slo="odd"}}',
                        "eval_time": "10m",
                        "exp_samples": [
                            {"labels": f'slo:sli_error:ratio_rate{window}{{slo="odd"}}', "value": 1}
                        ],
                    }
                    for window in RATIO_WINDOWS
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": SLO_ALERTNAME,
                        "exp_alerts": [  # 100% errors: 100x, every pair holds
                            {
                                "exp_labels": rule["labels"],
                                "exp_annotations": {
                                    k: v.replace(value, "100") for k, v in rule["annotations"].items()
                                },
                            }
                            for rule in alerts
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, allow_unicode=True), "utf-8")
    result = _promtool(tmp_path, "test", "rules", "tests.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


# --- escaping -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("support-bot", "support-bot"),
        ('say "hi"', 'say \\"hi\\"'),
        ("C:\\path", "C:\\\\path"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x1f\x7f", "\\u0000\\u001f\\u007f"),
        ("line\u2028sep\x85", "line\\u2028sep\\u0085"),
        ("ünï 中文 {x}", "ünï 中文 {x}"),
    ],
)
def test_escape_promql_string(value: str, escaped: str) -> None:
    assert escape_promql_string(value) == escaped


def test_rendered_yaml_holds_the_escaped_selectors_and_labels_verbatim() -> None:
    slos = parse_slos({"slos": SLO_SETS["odd-label-values"]})
    rules = _rules_by_slo(render_prometheus_rules(slos))
    assert set(rules) == {"odd.avail", "odd:quality", "odd_latency"}
    avail = {rule.get("record"): rule["expr"] for rule in rules["odd.avail"]}
    assert f'service="{escape_promql_string(ODD)}"' in avail["slo:sli_errors:window5m"]
    assert 'model="\\\\"' in avail["slo:sli_errors:window5m"]
    quality = {rule.get("record"): rule["expr"] for rule in rules["odd:quality"]}
    assert (
        f'feature="\\"",evaluation="{escape_promql_string(ODD)}",window="24h"'
        in (quality["slo:sli_error:ratio_rate1d"])
    )
    assert scope_selector(slos.slos[2]) == f'{{feature="{escape_promql_string(ODD)}"}}'


def test_header_and_comments_stay_comments_whatever_the_names() -> None:
    spec = SloSpec(name="x", kind="availability", objective=0.99, description="two\nlines", service=ODD)
    text = render_prometheus_rules([spec], source="odd\nname.yaml", output="out put.yaml")
    assert "odd\\nname.yaml" in text
    assert "--output 'out put.yaml'" in text
    before_groups = text.split("\ngroups:\n")[0]
    assert all(line.startswith("#") for line in before_groups.splitlines())
    assert _groups(text)[0]["name"] == "otel-llm-slo-x"


# --- structure ------------------------------------------------------------------------------------------
def test_recording_rules_cover_the_ratio_rate_family_per_slo() -> None:
    rules = _rules_by_slo(render_prometheus_rules(_shipped()))
    for spec in _shipped():
        records = [rule["record"] for rule in rules[spec.name] if "record" in rule]
        windows = [w for w in RATIO_WINDOWS if spec.kind != "latency" or w in BURN_WINDOWS]
        assert {f"slo:sli_error:ratio_rate{w}" for w in windows} <= set(records), spec.name
        assert {"slo:objective:ratio", "slo:error_budget:ratio", "slo:time_period:days"} <= set(records)
        assert len(records) == len(set(records)), spec.name
        for rule in rules[spec.name]:
            assert rule["labels"]["slo"] == spec.name, rule
            if "record" in rule:
                assert "slo=" not in rule["expr"] or f'slo="{spec.name}"' in rule["expr"], rule
    latency = {rule.get("record") for rule in rules["support-bot-latency"]}
    assert "slo:sli_error:ratio_rate1d" not in latency


def test_each_kind_reads_its_own_source_metrics_in_its_scope() -> None:
    rules = _rules_by_slo(render_prometheus_rules(_shipped()))
    exprs = {name: "\n".join(rule["expr"] for rule in group) for name, group in rules.items()}
    availability = exprs["support-bot-availability"]
    assert 'otel_llm_window_error_ratio{service="support-bot",window="5m"}' in availability
    assert 'otel_llm_window_calls{service="support-bot",window="24h"}' in availability
    assert "eval" not in availability
    quality = exprs["support-bot-faithfulness"]
    selector = '{service="support-bot",evaluation="faithfulness",window="1h"}'
    assert f"otel_llm_window_eval_fail_ratio{selector}" in quality
    assert f"otel_llm_window_eval_samples{selector}" in quality
    assert "otel_llm_window_error_ratio" not in quality
    latency = exprs["support-bot-latency"]
    assert 'otel_llm_slo_burn_rate{slo="support-bot-latency",window="3d"}) * 0.05' in latency
    assert "otel_llm_window" not in latency


def test_objective_budget_and_period_are_recorded_as_written() -> None:
    spec = SloSpec(name="x", kind="availability", objective=0.995, period="7d")
    records = {
        rule.get("record"): rule["expr"] for rule in _groups(render_prometheus_rules([spec]))[0]["rules"]
    }
    assert records["slo:objective:ratio"] == "vector(0.995)"
    assert records["slo:error_budget:ratio"] == "vector(0.005)"
    assert records["slo:time_period:days"] == "vector(7)"


@pytest.mark.parametrize("name", ["shipped", "unscoped", "every-scope-and-period"])
def test_alerts_carry_the_collectors_labels_and_an_existing_runbook(name: str) -> None:
    specs = _shipped() if name == "shipped" else list(parse_slos({"slos": SLO_SETS[name]}).slos)
    rules = _rules_by_slo(render_prometheus_rules(specs))
    severities = list(dict.fromkeys(row.severity for row in BURN_RATE_ALERTS))
    for name, group in rules.items():
        alerts = [rule for rule in group if "alert" in rule]
        assert [rule["alert"] for rule in alerts] == [SLO_ALERTNAME] * len(severities)
        assert [rule["labels"] for rule in alerts] == [{"slo": name, "severity": s} for s in severities]
        for rule in alerts:
            assert "for" not in rule
            assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
            assert rule["annotations"]["summary"].startswith(f"SLO {name} burns its error budget at ")
            path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
            assert (ROOT / path).is_file(), path
            if anchor:
                headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text("utf-8"), re.MULTILINE)
                assert anchor in {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


_PAIR = re.compile(
    r"\(\s*slo:sli_error:ratio_rate(\w+)\{slo=\"([^\"]+)\"\} / ([\d.]+) >= ([\d.]+) \* ([\d.]+)\s*and\s*"
    r"slo:sli_error:ratio_rate(\w+)\{slo=\"([^\"]+)\"\} / ([\d.]+) >= ([\d.]+) \* ([\d.]+)\s*\)"
)


@pytest.mark.parametrize("name", ["shipped", "every-scope-and-period", "unscoped"])
def test_alert_thresholds_follow_the_collector_table(name: str) -> None:
    specs = _shipped() if name == "shipped" else list(parse_slos({"slos": SLO_SETS[name]}).slos)
    rules = _rules_by_slo(render_prometheus_rules(specs))
    for spec in specs:
        alerts = {rule["labels"]["severity"]: rule for rule in rules[spec.name] if "alert" in rule}
        for severity, rule in alerts.items():
            pairs = _PAIR.findall(rule["expr"])
            table = [row for row in BURN_RATE_ALERTS if row.severity == severity]
            assert len(pairs) == len(table), rule["expr"]
            assert rule["expr"].count(")\nor\n(") == len(table) - 1
            for row, pair in zip(table, pairs):
                long, slo_a, budget_a, rate_a, factor_a, short, slo_b, budget_b, rate_b, factor_b = pair
                assert (long, short) == (row.long_window, row.short_window)
                assert slo_a == slo_b == spec.name
                assert float(rate_a) == float(rate_b) == row.rate
                assert float(budget_a) == float(budget_b) == pytest.approx(spec.budget, rel=1e-12)
                assert float(factor_a) == float(factor_b) == 1 - slo._REL_TOLERANCE


def test_budget_spent_in_descriptions_follows_the_period() -> None:
    spec = SloSpec(name="weekly", kind="availability", objective=0.99, period="7d")
    page = _groups(render_prometheus_rules([spec]))[0]["rules"][-2]
    # 14.4x for 1h of a 168h period spends 8.57% of the budget (2% of a 30-day one).
    assert "(8.57% of the 7d budget in 1h)" in page["annotations"]["description"]


def test_rendering_is_deterministic_and_keeps_the_file_order() -> None:
    specs = list(parse_slos({"slos": SLO_SETS["every-scope-and-period"]}).slos)
    text = render_prometheus_rules(specs)
    assert render_prometheus_rules(specs) == text
    assert [g["name"] for g in _groups(text)] == [f"otel-llm-slo-{spec.name}" for spec in specs]
    assert render_prometheus_rules(specs[::-1]) != text


def test_header_names_the_source_and_the_command() -> None:
    text = render_prometheus_rules(_shipped(), source="teams/slos.yaml", output="rules/slo.yaml")
    assert text.startswith("# Prometheus rules for the SLOs in teams/slos.yaml, generated by\n")
    assert "#   otel-llm slo render-rules --slo-file teams/slos.yaml --output rules/slo.yaml\n" in text
    assert "--output" not in render_prometheus_rules([], source="x.yaml")


def test_no_slos_render_an_empty_rule_file() -> None:
    assert yaml.safe_load(render_prometheus_rules([])) == {"groups": []}


# --- the command ----------------------------------------------------------------------------------------
BAD_FILES = {
    "unknown field": (
        "slos:\n  - name: a\n    kind: availability\n    objective: 0.9\n    servce: x\n",
        "servce",
    ),
    "objective": ("slos:\n  - name: a\n    kind: availability\n    objective: 99\n", "slos.0.objective"),
    "latency without threshold": (
        "slos:\n  - name: a\n    kind: latency\n    objective: 0.9\n",
        "threshold_seconds",
    ),
    "duplicate names": (
        "slos:\n" + "  - {name: a, kind: quality, evaluation: x, objective: 0.9}\n" * 2,
        "duplicate SLO",
    ),
    "invalid YAML": ("slos: [\n", "while parsing"),
    "not a mapping": ("- name: a\n", "valid dictionary"),
}


@pytest.mark.parametrize("command", ["check", "render-rules"])
@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_slo_files_exit_2_with_a_message_naming_file_and_field(
    command: str, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD_FILES[case]
    path = tmp_path / "slos.yaml"
    path.write_text(text)
    output = tmp_path / "rules.yaml"
    args = [command, "--slo-file", str(path)] + (
        ["--output", str(output)] if command == "render-rules" else []
    )
    assert slo_cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert expected in captured.err
    assert f"otel-llm slo {command}: {path}" in captured.err
    assert "Traceback" not in captured.err
    assert not output.exists()


@pytest.mark.parametrize(
    ("content", "expected"), [(None, "No such file"), (b"\xff\xfe\x00bin", "not UTF-8 text")]
)
def test_unreadable_slo_files_exit_2(
    content: bytes | None, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "slos.yaml"
    if content is not None:
        path.write_bytes(content)
    assert slo_cli.main(["render-rules", "--slo-file", str(path)]) == 2
    assert expected in capsys.readouterr().err


def test_missing_slo_file_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert slo_cli.main(["render-rules"]) == 2
    assert "--slo-file" in capsys.readouterr().err


def test_check_lists_the_slos(capsys: pytest.CaptureFixture[str]) -> None:
    assert slo_cli.main(["check", "--slo-file", str(ROOT / SLO_FILE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{ROOT / SLO_FILE}: 3 SLOs OK"
    assert (
        out[1]
        == '  support-bot-availability: availability, objective 0.99 over 30d, scope {service="support-bot"}'
    )


def test_render_rules_to_stdout_and_unwritable_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(ROOT / SLO_FILE)
    assert slo_cli.main(["render-rules", "--slo-file", path]) == 0
    assert capsys.readouterr().out == render_prometheus_rules(load_slos(path), source=path)
    missing = tmp_path / "no-such-dir" / "rules.yaml"
    assert slo_cli.main(["render-rules", "--slo-file", path, "--output", str(missing)]) == 1
    assert f"cannot write {missing}" in capsys.readouterr().err


def test_add_parser_registers_slo_on_a_main_parser() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="otel-llm")
    slo_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["slo", "render-rules", "--slo-file", "s.yaml", "--output", "o.yaml"])
    assert (args.slo_file, args.output, callable(args.run)) == (Path("s.yaml"), Path("o.yaml"), True)


def test_exports() -> None:
    assert sorted(slo_rules.__all__) == [
        "RATIO_WINDOWS",
        "SCOPE_LABELS",
        "escape_promql_string",
        "render_grafana_rules",
        "render_prometheus_rules",
        "scope_selector",
    ]
    assert sorted(slo_cli.__all__) == ["add_parser", "check", "main", "render_rules"]
    assert all(hasattr(slo_rules, name) for name in slo_rules.__all__)
    assert all(hasattr(slo_cli, name) for name in slo_cli.__all__)


# --- Grafana alerting -----------------------------------------------------------------------------------
GRAFANA_FILE = "grafana/alerts/grafana-alerting-slo.yaml"
GRAFANA_VALUE = '{{ printf "%.3g" $values.B.Value }}'
PROMETHEUS_VALUE = '{{ printf "%.3g" $value }}'


def _grafana_rules(text: str) -> list[dict[str, Any]]:
    document: dict[str, Any] = yaml.safe_load(text)
    return [rule for group in document["groups"] for rule in group["rules"]]


def _query_a(rule: dict[str, Any]) -> str:
    [query] = [query for query in rule["data"] if query["refId"] == "A"]
    expr: str = query["model"]["expr"]
    return expr


def _prometheus_alerts(specs: list[SloSpec]) -> list[dict[str, Any]]:
    return [
        rule
        for group in _groups(render_prometheus_rules(specs))
        for rule in group["rules"]
        if "alert" in rule
    ]


def _specs(name: str) -> list[SloSpec]:
    return _shipped() if name == "shipped" else list(parse_slos({"slos": SLO_SETS[name]}).slos)


def _query_a_as_prometheus_alerts(text: str, alertname: str) -> str:
    """A Prometheus rule file alerting on each Grafana rule's query A with the rule's labels, and the value A
    returns in the summary as Grafana's summary prints it."""
    rules = [
        {
            "alert": alertname,
            "expr": _query_a(rule),
            "labels": rule["labels"],
            "annotations": {"summary": PROMETHEUS_VALUE},
        }
        for rule in _grafana_rules(text)
    ]
    return yaml.safe_dump({"groups": [{"name": "grafana-query-a", "interval": "1m", "rules": rules}]})


def test_committed_grafana_file_is_the_rendering_of_the_shipped_slo_file() -> None:
    rendered = render_grafana_rules(load_slos(ROOT / SLO_FILE), source=SLO_FILE, output=GRAFANA_FILE)
    assert (ROOT / GRAFANA_FILE).read_text("utf-8") == rendered, (
        f"{GRAFANA_FILE} is stale: run "
        f"`otel-llm slo render-rules --format grafana --slo-file {SLO_FILE} --output {GRAFANA_FILE}`"
    )


def test_the_command_in_the_grafana_header_reproduces_the_committed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "grafana" / "alerts").mkdir(parents=True)
    shutil.copy(ROOT / SLO_FILE, tmp_path / SLO_FILE)
    committed = (ROOT / GRAFANA_FILE).read_text("utf-8")
    header = re.search(r"^#   otel-llm (slo render-rules .*)$", committed, re.MULTILINE)
    assert header is not None
    assert "--format grafana" in header.group(1)
    monkeypatch.chdir(tmp_path)
    assert slo_cli.main(header.group(1).split()[1:]) == 0
    assert (tmp_path / GRAFANA_FILE).read_text("utf-8") == committed
    assert "rules for 3 SLOs written" in capsys.readouterr().err


@pytest.mark.parametrize("name", [*SLO_SETS, "shipped"])
def test_grafana_file_has_the_provisioning_structure_of_grafana_alerting_yaml(name: str) -> None:
    """The checks tests/grafana/test_promtool.py makes on grafana-alerting.yaml, except the min-samples guard:
    burn rates have none, in the collector as in the Prometheus rules."""
    specs = _specs(name)
    document = yaml.safe_load(render_grafana_rules(specs))
    assert document["apiVersion"] == 1
    if not specs:
        assert document["groups"] == []
        return
    [group] = document["groups"]
    assert (group["orgId"], group["name"], group["folder"], group["interval"]) == (
        1,
        "otel-llm-slo",
        "otel-llm",
        "1m",
    )
    rules = group["rules"]
    assert len(rules) == 2 * len(specs)
    uids = [rule["uid"] for rule in rules]
    assert len(set(uids)) == len(uids)
    for rule in rules:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", rule["uid"]), rule["uid"]
        assert rule["title"] == SLO_ALERTNAME
        queries = {query["refId"]: query for query in rule["data"]}
        assert list(queries) == ["A", "B", "C"]
        assert queries["A"]["datasourceUid"] == "otel-llm-prometheus"
        assert queries["A"]["model"]["instant"] is True
        assert queries["B"]["model"] | {"settings": None} == {
            "refId": "B",
            "type": "reduce",
            "expression": "A",
            "reducer": "last",
            "settings": None,
        }
        assert queries[rule["condition"]]["model"]["type"] == "threshold"
        assert queries[rule["condition"]]["model"]["expression"] == "B"
        assert (rule["noDataState"], rule["execErrState"], rule["for"]) == ("OK", "Error", "0s")
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}


def test_grafana_uids_are_stable_and_fit_grafana_for_every_slo_name() -> None:
    names = ["a", "x" * 100, "a.b", "a:b", "a_b", "support-bot-availability", "support-bot-availabilityy"]
    specs = [SloSpec(name=name, kind="availability", objective=0.9) for name in names]
    uids = [rule["uid"] for rule in _grafana_rules(render_grafana_rules(specs))]
    assert len(set(uids)) == len(uids) == 2 * len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid) for uid in uids), uids
    assert uids[:2] == ["otel-llm-slo-a-p1", "otel-llm-slo-a-p3"]
    assert "otel-llm-slo-support-bot-availability-p1" in uids
    assert uids == [rule["uid"] for rule in _grafana_rules(render_grafana_rules(specs))]


@pytest.mark.parametrize("name", ["shipped", "unscoped", "every-scope-and-period", "odd-label-values"])
def test_grafana_rules_carry_the_labels_and_annotations_of_the_prometheus_alerts(name: str) -> None:
    specs = _specs(name)
    grafana = _grafana_rules(render_grafana_rules(specs))
    prometheus = _prometheus_alerts(specs)
    assert len(grafana) == len(prometheus) == 2 * len(specs)
    for rule, mirror in zip(grafana, prometheus, strict=True):
        assert rule["title"] == mirror["alert"] == SLO_ALERTNAME
        assert rule["labels"] == mirror["labels"]
        assert "for" not in mirror
        summary = rule["annotations"]["summary"]
        assert GRAFANA_VALUE in summary
        assert summary.replace(GRAFANA_VALUE, PROMETHEUS_VALUE) == mirror["annotations"]["summary"]
        for key in ("description", "runbook_url"):
            assert rule["annotations"][key] == mirror["annotations"][key]


@pytest.mark.parametrize("name", [*SLO_SETS, "shipped"])
def test_grafana_queries_read_the_collector_metrics_not_recording_rules(name: str) -> None:
    specs = _specs(name)
    prometheus = {
        group["rules"][0]["labels"]["slo"]: {rule.get("record"): rule["expr"] for rule in group["rules"]}
        for group in _groups(render_prometheus_rules(specs))
    }
    for rule in _grafana_rules(render_grafana_rules(specs)):
        expr = _query_a(rule)
        assert not re.search(r"\bslo:\w+:", expr), expr
        recorded = prometheus[rule["labels"]["slo"]]
        # The inline figures are the recording rules' own expressions, character for character.
        flat = re.sub(r"\s+", " ", expr)
        for record in ("slo:sli_errors:window5m", "slo:sli_events:window5m", "slo:sli_errors:window1h"):
            if record in recorded:
                assert re.sub(r"\s+", " ", recorded[record].strip()) in flat, record
        if "slo:sli_errors:window5m" not in recorded:  # latency: (the burn-rate gauge x budget)
            for window in re.findall(r'window="(\w+)"', expr):
                assert f"({recorded[f'slo:sli_error:ratio_rate{window}'].strip()}) / " in expr, window


@needs_promtool
@pytest.mark.parametrize("name", [*SLO_SETS, "shipped"])
def test_promtool_accepts_every_grafana_query(name: str, tmp_path: Path) -> None:
    text = render_grafana_rules(_specs(name))
    (tmp_path / "queries.yaml").write_text(_query_a_as_prometheus_alerts(text, "GrafanaQueryA"), "utf-8")
    result = _promtool(tmp_path, "check", "rules", "queries.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_grafana_rules(text))} rules found" in result.stdout


def _burn_series(spec: SloSpec, window: str, values: str) -> list[dict[str, str]]:
    """Window gauges (1,000 events a minute) whose error ratio follows `values` (promtool notation)."""
    if spec.kind == "availability":
        labels = f'service="support-bot",window="{window}"'
        names = ("otel_llm_window_error_ratio", "otel_llm_window_calls")
    else:
        labels = f'service="support-bot",evaluation="{spec.evaluation}",window="{window}"'
        names = ("otel_llm_window_eval_fail_ratio", "otel_llm_window_eval_samples")
    count = sum(int(part.partition("x")[2] or 0) + 1 for part in values.split()) - 1
    return [
        {"series": f"{names[0]}{{{labels}}}", "values": values},
        {"series": f"{names[1]}{{{labels}}}", "values": f"1000x{count}"},
    ]


def _error_ratio(spec: SloSpec, burn_rate: str) -> str:
    return format(Decimal(burn_rate) * (1 - Decimal(repr(spec.objective))), "f")


def _both_fire(
    tmp_path: Path,
    spec: SloSpec,
    series: list[dict[str, str]],
    eval_time: str,
    firing: dict[str, str],
) -> subprocess.CompletedProcess[str]:
    """promtool: the Prometheus rules and Grafana's query A (as alerts `GrafanaSLOBurnRate`) fire exactly
    the severities of `firing` (severity -> the value the summary prints) at `eval_time`."""
    (tmp_path / "prometheus.yaml").write_text(render_prometheus_rules([spec]), "utf-8")
    grafana = render_grafana_rules([spec])
    (tmp_path / "grafana.yaml").write_text(
        _query_a_as_prometheus_alerts(grafana, "GrafanaSLOBurnRate"), "utf-8"
    )
    prometheus = {rule["labels"]["severity"]: rule for rule in _prometheus_alerts([spec])}
    labels = {severity: {"slo": spec.name, "severity": severity} for severity in prometheus}
    tests = {
        "rule_files": ["prometheus.yaml", "grafana.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": eval_time,
                        "alertname": SLO_ALERTNAME,
                        "exp_alerts": [
                            {
                                "exp_labels": labels[severity],
                                "exp_annotations": {
                                    key: text.replace(PROMETHEUS_VALUE, value)
                                    for key, text in prometheus[severity]["annotations"].items()
                                },
                            }
                            for severity, value in firing.items()
                        ],
                    },
                    {
                        "eval_time": eval_time,
                        "alertname": "GrafanaSLOBurnRate",
                        "exp_alerts": [
                            {"exp_labels": labels[severity], "exp_annotations": {"summary": value}}
                            for severity, value in firing.items()
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests), "utf-8")
    return _promtool(tmp_path, "test", "rules", "tests.yaml")


@needs_promtool
@pytest.mark.parametrize("kind", ["availability", "quality", "latency"])
@pytest.mark.parametrize(("burn_rate", "fires"), [("14.4", True), ("14.3", False)])
def test_grafana_page_query_fires_at_14_4x_and_not_at_14_3x_as_the_prometheus_alert(
    kind: str, burn_rate: str, fires: bool, tmp_path: Path
) -> None:
    """Burning at `burn_rate` for the last 3 minutes (5m and 1h windows), calm before: the fast page pair
    alone decides, the slow pair (6h, 30m) and the ticket (3d, 6h) stay below their rates."""
    [spec] = [spec for spec in _shipped() if spec.kind == kind]
    if kind == "latency":
        series = [
            {
                "series": f'otel_llm_slo_burn_rate{{slo="{spec.name}",window="{window}"}}',
                "values": f"{burn_rate if window in ('5m', '1h') else '0.5'}x62",
            }
            for window in BURN_WINDOWS
        ]
    else:
        ratio = _error_ratio(spec, burn_rate)
        series = _burn_series(spec, "5m", f"0x59 {ratio}x2") + _burn_series(spec, "1h", f"{ratio}x62")
    result = _both_fire(tmp_path, spec, series, "62m", {"P1": burn_rate} if fires else {})
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("kind", ["availability", "quality"])
@pytest.mark.parametrize(("burn_rate", "firing"), [("6", {"P1": "6", "P3": "6"}), ("5.9", {"P3": "5.9"})])
def test_grafana_subqueries_fire_the_slow_page_and_the_ticket_as_the_recording_rules(
    kind: str, burn_rate: str, firing: dict[str, str], tmp_path: Path
) -> None:
    """A steady burn for 7 hours: the 6h and 30m ratios (sums over time of the 5m figures) decide the page,
    the 3d ratio (of the 1h figures) and the 6h one the ticket, in both renderings alike."""
    [spec] = [spec for spec in _shipped() if spec.kind == kind]
    ratio = _error_ratio(spec, burn_rate)
    series = _burn_series(spec, "5m", f"{ratio}x420") + _burn_series(spec, "1h", f"{ratio}x420")
    result = _both_fire(tmp_path, spec, series, "7h", firing)
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_rules_format_grafana_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(ROOT / SLO_FILE)
    assert slo_cli.main(["render-rules", "--format", "grafana", "--slo-file", path]) == 0
    assert capsys.readouterr().out == render_grafana_rules(load_slos(path), source=path)
    assert slo_cli.main(["render-rules", "--format", "alertmanager", "--slo-file", path]) == 2
    assert "invalid choice: 'alertmanager'" in capsys.readouterr().err


def test_grafana_header_names_the_source_the_command_and_the_grafana_version() -> None:
    text = render_grafana_rules(_shipped(), source="teams/slos.yaml", output="alerting/slo.yaml")
    assert text.startswith("# Grafana alerting provisioning for the SLOs in teams/slos.yaml, generated by\n")
    command = (
        "otel-llm slo render-rules --format grafana --slo-file teams/slos.yaml --output alerting/slo.yaml"
    )
    assert f"#   {command}\n" in text
    assert "Grafana 12.0 or later" in text
    before = text.split("\napiVersion: 1\n")[0]
    assert all(line.startswith("#") for line in before.splitlines())
    assert render_grafana_rules(_shipped()) == render_grafana_rules(_shipped())
