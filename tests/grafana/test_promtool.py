"""Static checks of everything under grafana/: rules and their unit tests, dashboards, provisioning, routing.

`promtool` and `amtool` come from the Debian `prometheus` and `prometheus-alertmanager` packages; without
them the tests that need them are skipped with the reason. The Alertmanager example falls back to a real
`prometheus-alertmanager` start when `amtool` is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.grafana.prometheus_stack import CONTROL_DASHBOARDS, TRAFFIC_DASHBOARDS

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
ALERTS = GRAFANA / "alerts"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULE_FILES = [ALERTS / "otel-llm-rules.yaml"]
RULE_TESTS = sorted(ALERTS.glob("*.test.yaml"))
ALERTMANAGER_EXAMPLE = GRAFANA / "alertmanager" / "alertmanager.example.yml"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
SERIES_LABELS = ("service", "feature", "prompt_name", "prompt_version", "model")
SEVERITIES = {"P0", "P1", "P2", "P3"}
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
VARIABLES = {
    "service": "service",
    "feature": "feature",
    "prompt": "prompt_name",
    "version": "prompt_version",
    "model": "model",
}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "state-timeline"}

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _load_yaml(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _alert_rules() -> list[dict[str, Any]]:
    return [
        rule for f in RULE_FILES for g in _load_yaml(f)["groups"] for rule in g["rules"] if "alert" in rule
    ]


def _walk(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# --- Prometheus rules -----------------------------------------------------------------------------------
def test_rule_files_and_their_tests_exist() -> None:
    assert all(f.is_file() for f in RULE_FILES)
    assert [t.name for t in RULE_TESTS] == ["otel-llm-rules.test.yaml", "otel-llm-slo-rules.test.yaml"]


@needs_promtool
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules_passes(path: Path) -> None:
    assert PROMTOOL is not None
    result = _run(PROMTOOL, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_unit_tests_fail_when_the_min_samples_guard_is_removed(tmp_path: Path) -> None:
    """The unit tests really pin the guard: with `>= 1` instead of `>= 20`, the sparse series fire."""
    assert PROMTOOL is not None
    rules = (ALERTS / "otel-llm-rules.yaml").read_text()
    assert ">= 20" in rules
    (tmp_path / "otel-llm-rules.yaml").write_text(rules.replace(">= 20", ">= 1"))
    shutil.copy(ALERTS / "otel-llm-rules.test.yaml", tmp_path)
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "otel-llm-rules.test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert 'prompt_version="v3"' in result.stdout + result.stderr


def test_every_alert_has_for_severity_annotations_runbook_and_guard() -> None:
    rules = _alert_rules()
    assert len(rules) >= 12
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        runbook = annotations["runbook_url"]
        assert runbook.startswith("docs/runbooks/"), name
        assert (ROOT / runbook).is_file(), (name, runbook)
        guard = re.search(r"and on \(([^)]*)\)\s*(\S+)\{[^}]*\} >= 20\s*$", rule["expr"])
        assert guard is not None, f"{name}: no min-samples guard"
        assert tuple(label.strip() for label in guard.group(1).split(",")) == SERIES_LABELS, name
        assert guard.group(2) in ("otel_llm_window_eval_samples", "otel_llm_window_calls"), name


def test_rules_mirror_the_default_severity_matrix() -> None:
    by_name = {rule["alert"]: rule for rule in _alert_rules()}
    expected = {
        "LLMToxicAnswers": ("P0", 'evaluation="toxicity", window="1h"', "> 0.01"),
        "LLMFaithfulnessCollapsed": ("P0", 'evaluation="faithfulness", window="5m"', "< 0.40"),
        "LLMFaithfulnessLow": ("P1", 'evaluation="faithfulness", window="5m"', "< 0.65"),
        "LLMHallucinationRateHigh": ("P1", 'evaluation="hallucination", window="15m"', "> 0.25"),
        "LLMFaithfulnessDegraded": ("P2", 'evaluation="faithfulness", window="15m"', "< 0.75"),
        "LLMAnswerRelevanceLow": ("P2", 'evaluation="answer_relevance", window="15m"', "< 0.60"),
        "LLMThumbsUpLow": ("P2", 'evaluation="user_feedback", window="1h"', "< 0.50"),
        "LLMErrorRateCritical": ("P1", 'window="5m"', "> 0.05"),
        "LLMErrorRateWarning": ("P2", 'window="15m"', "> 0.03"),
        "LLMSuccessRateLow": ("P2", 'window="1h"', "< 0.95"),
    }
    for name, (severity, selector, comparison) in expected.items():
        rule = by_name[name]
        assert rule["labels"]["severity"] == severity, name
        assert selector in rule["expr"], name
        assert comparison in rule["expr"], name


# --- dashboards -----------------------------------------------------------------------------------------
def test_the_expected_dashboards_exist_and_each_is_proven_by_a_live_stack() -> None:
    names = [p.stem for p in DASHBOARDS]
    assert names == ["alerts-actions", "llm-quality", "operations", "slo", "tokens-cost"]
    assert sorted([*TRAFFIC_DASHBOARDS, *CONTROL_DASHBOARDS]) == names


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_importable_json_with_unique_panel_ids(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": dashboard["__inputs"][0]["description"],
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"].startswith("otel-llm-")
    assert dashboard["title"].startswith("otel-llm / ")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    assert {panel["type"] for panel in dashboard["panels"]} <= PANEL_TYPES
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_uses_only_the_ds_prometheus_datasource(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    references = [node["datasource"] for node in _walk(dashboard) if "datasource" in node]
    assert references, "no datasource references"
    assert all(ref == DATASOURCE for ref in references), [r for r in references if r != DATASOURCE]
    assert "datasourceUid" not in path.read_text()


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    targets = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    return targets + [a["expr"] for a in dashboard["annotations"]["list"]]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_variables_are_defined_and_come_from_label_values_of_a_real_metric(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    used = {m[0] or m[1] for e in _expressions(dashboard) for m in re.findall(r"\$\{(\w+)\}|\$(\w+)", e)}
    assert used - BUILTIN_VARIABLES <= set(variables), used - BUILTIN_VARIABLES - set(variables)
    for name, variable in variables.items():
        if variable["type"] != "query":
            continue
        query = variable["definition"]
        assert re.fullmatch(r"label_values\(otel_llm_\w+(\{[^}]*\})?, \w+\)", query), query
        assert variable["query"]["query"] == query
        assert variable["allValue"] == ".*"
        assert name in used, f"{name} filters nothing"
    if used & set(VARIABLES):
        # A dashboard on series filters by every series label, from the series the collector sees.
        for name, label in VARIABLES.items():
            query = variables[name]["definition"]
            assert re.fullmatch(rf"label_values\(otel_llm_window_calls(\{{[^}}]*\}})?, {label}\)", query), (
                query
            )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_annotations_are_prometheus_queries_and_value_times_are_milliseconds(path: Path) -> None:
    annotations = json.loads(path.read_text())["annotations"]["list"]
    assert annotations
    for annotation in annotations:
        name = annotation["name"]
        assert annotation["datasource"] == DATASOURCE, name
        assert annotation["enable"] is True, name
        assert annotation["hide"] is False, name
        assert re.fullmatch(r"\d+[sm]", annotation["step"]), name
        assert annotation["titleFormat"], name
        assert annotation["textFormat"], name
        assert isinstance(annotation["useValueForTime"], bool), name
        if annotation["useValueForTime"]:
            # Grafana reads the value as a time in milliseconds: a Unix-seconds gauge times 1000.
            assert re.fullmatch(r"otel_llm_\w+_timestamp_seconds\{[^}]*\} \* 1000", annotation["expr"]), name


def test_every_dashboard_that_marks_new_prompt_versions_marks_rollbacks_too() -> None:
    marks = {
        path.stem: {a["name"]: a for a in json.loads(path.read_text())["annotations"]["list"]}
        for path in DASHBOARDS
    }
    rollbacks = {board for board, names in marks.items() if "Rollback" in names}
    assert rollbacks == {board for board, names in marks.items() if "New prompt version" in names} | {
        "alerts-actions"
    }
    for board in rollbacks:
        rollback = marks[board]["Rollback"]
        assert rollback["useValueForTime"] is True, board
        assert 'outcome="rolled_back"' in rollback["expr"], board


# --- Grafana provisioning and alerting ------------------------------------------------------------------
def test_grafana_provisioning_files() -> None:
    datasources = _load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")
    assert datasources["apiVersion"] == 1
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "otel-llm-prometheus"
    providers = _load_yaml(GRAFANA / "provisioning" / "dashboards" / "otel-llm.yaml")
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]


def test_grafana_alerting_mirrors_the_prometheus_rules() -> None:
    document = _load_yaml(ALERTS / "grafana-alerting.yaml")
    assert document["apiVersion"] == 1
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    prometheus = {rule["alert"]: rule for rule in _alert_rules()}
    assert {rule["title"] for rule in rules} == set(prometheus)
    assert len({rule["uid"] for rule in rules}) == len(rules)
    for rule in rules:
        mirror = prometheus[rule["title"]]
        assert rule["for"] == mirror["for"], rule["title"]
        assert rule["labels"] == mirror["labels"], rule["title"]
        assert rule["annotations"]["runbook_url"] == mirror["annotations"]["runbook_url"]
        queries = {query["refId"]: query for query in rule["data"]}
        assert queries["A"]["datasourceUid"] == "otel-llm-prometheus"
        assert queries["A"]["model"]["expr"].rstrip().endswith(">= 20"), rule["title"]
        assert queries[rule["condition"]]["model"]["type"] == "threshold"
        assert rule["noDataState"] == "OK"


# --- Alertmanager ---------------------------------------------------------------------------------------
def _route(*labels: str) -> str:
    assert AMTOOL is not None
    result = _run(AMTOOL, "config", "routes", "test", f"--config.file={ALERTMANAGER_EXAMPLE}", *labels)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    AMTOOL is None and ALERTMANAGER is None, reason="neither amtool nor alertmanager installed"
)
def test_alertmanager_example_is_valid(tmp_path: Path) -> None:
    if AMTOOL is not None:
        result = _run(AMTOOL, "check-config", str(ALERTMANAGER_EXAMPLE))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout
        return
    assert ALERTMANAGER is not None
    port = _free_port()
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={ALERTMANAGER_EXAMPLE}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            f"--storage.path={tmp_path}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as response:
                    assert response.status == 200
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"alertmanager did not become ready: exit code {process.poll()}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.skipif(AMTOOL is None, reason="amtool is not installed (Debian: prometheus-alertmanager)")
@pytest.mark.parametrize(
    ("severity", "receiver"),
    [
        ("P0", "pagerduty-llm-oncall"),
        ("P1", "pagerduty-llm-oncall"),
        ("P2", "slack-llm-quality"),
        ("P3", "slack-llm-quality"),
    ],
)
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    assert _route("alertname=LLMFaithfulnessLow", f"severity={severity}", "service=bot") == receiver


def test_alertmanager_groups_by_series_and_inhibits_lower_severities_of_the_same_series() -> None:
    config = _load_yaml(ALERTMANAGER_EXAMPLE)
    assert config["route"]["group_by"] == ["alertname", *SERIES_LABELS]
    ranks = ["P0", "P1", "P2", "P3"]
    inhibited: set[tuple[str, str]] = set()
    for rule in config["inhibit_rules"]:
        assert rule["equal"] == list(SERIES_LABELS)
        [source] = rule["source_matchers"]
        [target] = rule["target_matchers"]
        source_severity = re.fullmatch(r'severity="(P\d)"', source)
        target_severities = re.fullmatch(r'severity=~?"([P\d|]+)"', target)
        assert source_severity is not None, source
        assert target_severities is not None, target
        for lower in target_severities.group(1).split("|"):
            assert ranks.index(lower) > ranks.index(source_severity.group(1))
            inhibited.add((source_severity.group(1), lower))
    assert inhibited == {
        (high, low) for high in ranks for low in ranks if ranks.index(low) > ranks.index(high)
    }
