"""A real Prometheus on loopback and the PromQL our dashboards ship, for the tests that run one on the other.

Each dashboard is proven by exactly one live stack, whose collector state makes every panel return data:
`TRAFFIC_DASHBOARDS` by `test_prometheus_queries.py` (window metrics of three prompt versions),
`CONTROL_DASHBOARDS` by `test_control_dashboards.py` (SLOs, alerts, a rollback, kill switches, a canary).
`test_promtool.py` checks that together they cover every file in `grafana/dashboards/`.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
VARIABLE_VALUES = {"window": "5m", "__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
TRAFFIC_DASHBOARDS = ("llm-quality", "operations", "tokens-cost")
CONTROL_DASHBOARDS = ("alerts-actions", "slo")


# --- processes ----------------------------------------------------------------------------------------
def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def poll(what: str, check: Callable[[], bool], deadline: float) -> None:
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError as exc:
            last_error = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Prometheus:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        assert self.process.poll() is None, self.log.read_text()
        return query(self.url, expr)


@contextlib.contextmanager
def running_prometheus(tmp: Path, target: str) -> Iterator[Prometheus]:
    """Prometheus scraping `target` (`host:port`, `/metrics`) every second, with its TSDB under `tmp`."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "otel-llm", "static_configs": [{"targets": [target]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log_path = tmp / "prometheus.log"
    address = f"127.0.0.1:{free_port()}"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={address}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield Prometheus(f"http://{address}", process, log_path)
        finally:
            stop(process)


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    """Run an instant query; an error status fails the test, the result vector is returned."""
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = get_json(url)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{exc.code} {exc.read().decode()} for:\n{expr}") from None
    assert body["status"] == "success", body
    assert body["data"]["resultType"] == "vector", body["data"]["resultType"]
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def finite(result: Sequence[dict[str, Any]]) -> list[float]:
    return [v for v in (float(sample["value"][1]) for sample in result) if v == v and abs(v) != float("inf")]


# --- the expressions we ship ----------------------------------------------------------------------------
def substitute(expr: str) -> str:
    """Grafana's template variables: every series variable as `.*` (All), the rest a real value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return VARIABLE_VALUES.get(name, ".*")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def dashboards(names: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text())) for name in names]


def panel_queries(names: Sequence[str]) -> list[tuple[str, str]]:
    """(id, expression) of every panel target and annotation of the dashboards `names`."""
    out = []
    for board, dashboard in dashboards(names):
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{board}: {panel['title']} [{target['refId']}]", substitute(target["expr"])))
        for annotation in dashboard["annotations"]["list"]:
            out.append((f"{board}: annotation {annotation['name']}", substitute(annotation["expr"])))
    return out


def variable_queries(names: Sequence[str]) -> list[tuple[str, str, str]]:
    """(id, series selector, label) of every `label_values(selector, label)` variable of `names`."""
    out = []
    for board, dashboard in dashboards(names):
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
            assert match is not None, variable["definition"]
            out.append((f"{board}: ${variable['name']}", substitute(match.group(1)), match.group(2)))
    return out


def label_values(prometheus_url: str, selector: str, label: str) -> list[str]:
    url = f"{prometheus_url}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": selector})
    body = get_json(url)
    assert body["status"] == "success", body
    values: list[str] = body["data"]
    return values
