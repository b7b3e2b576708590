"""The demo's local stack: the collector, Prometheus and Alertmanager as child processes on loopback.

Configuration is rendered from the files the project ships, so the demo runs what users deploy:

- Prometheus scrapes the collector's `/metrics` and loads `grafana/alerts/*.yaml` (the shipped rules);
- Alertmanager runs `grafana/alertmanager/alertmanager.example.yml` with its PagerDuty and Slack endpoints
  pointed at a local receiver (nothing leaves the machine);
- the collector runs with embedded defaults plus the demo's rule file and an Alertmanager target.

Each process writes its log under the run directory; `Stack.close` (also on Ctrl-C) stops them all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGER_EXAMPLE = REPO / "grafana" / "alertmanager" / "alertmanager.example.yml"
RULE_FILES = sorted(
    p for p in (REPO / "grafana" / "alerts").glob("otel-llm-*.yaml") if ".test." not in p.name
)
PROMETHEUS_BINARY = "prometheus"
ALERTMANAGER_BINARY = "prometheus-alertmanager"  # the Debian package's name for it
START_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str | None:
    """`name` on PATH or in /usr/bin (root's PATH in some containers lacks it)."""
    return shutil.which(name) or (f"/usr/bin/{name}" if os.path.isfile(f"/usr/bin/{name}") else None)


def alertmanager_config(receiver_url: str) -> dict[str, Any]:
    """The shipped example routing, with PagerDuty and Slack delivered to `receiver_url` instead."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    for receiver in config["receivers"]:
        for pagerduty in receiver.get("pagerduty_configs", []):
            pagerduty["url"] = f"{receiver_url}/pagerduty"
        for slack in receiver.get("slack_configs", []):
            slack["api_url"] = f"{receiver_url}/slack"
    return config


def prometheus_config(collector: str, alertmanager: str | None) -> dict[str, Any]:
    """Scrape the collector every 5 s with the shipped rule files; alerts to `alertmanager` when given."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(path) for path in RULE_FILES],
        "scrape_configs": [
            {
                "job_name": "otel-llm",
                "honor_labels": True,
                "metrics_path": "/metrics",
                "params": {"window": ["1m", "5m", "1h"]},
                "static_configs": [{"targets": [collector]}],
            }
        ],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise SystemExit(f"{what} did not start (exit code {proc.poll()}):\n{tail}")
        time.sleep(0.2)


@dataclass
class Stack:
    """The running processes and where they listen."""

    run_dir: Path
    collector_api: str = ""
    otlp_grpc: str = ""
    prometheus: str = ""
    alertmanager: str = ""
    missing: list[str] = field(default_factory=list)
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start_collector(self, settings: dict[str, Any], env: dict[str, str]) -> None:
        api_port, grpc_port, http_port = free_port(), free_port(), free_port()
        config = self.run_dir / "collector.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "otlp_grpc_endpoint": f"127.0.0.1:{grpc_port}",
                    "otlp_http_endpoint": f"127.0.0.1:{http_port}",
                    "http_endpoint": f"127.0.0.1:{api_port}",
                    "state_dir": str(self.run_dir / "collector-state"),
                    **settings,
                }
            )
        )
        log = self.run_dir / "collector.log"
        proc = self._spawn(
            "collector",
            [
                sys.executable,
                "-m",
                "otel_llm_collector.cli",
                "collector",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ],
            log,
            env=env,
        )
        self.collector_api, self.otlp_grpc = f"127.0.0.1:{api_port}", f"127.0.0.1:{grpc_port}"
        wait_http_ok(f"http://{self.collector_api}/readyz", proc, log, "the collector")

    def start_alertmanager(self, receiver_url: str) -> None:
        binary = find_binary(ALERTMANAGER_BINARY)
        if binary is None:
            self.missing.append(ALERTMANAGER_BINARY)
            return
        port = free_port()
        config = self.run_dir / "alertmanager.yml"
        config.write_text(yaml.safe_dump(alertmanager_config(receiver_url), sort_keys=False))
        log = self.run_dir / "alertmanager.log"
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.path={self.run_dir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # a single instance: no gossip port
        ]
        proc = self._spawn("alertmanager", args, log)
        self.alertmanager = f"127.0.0.1:{port}"
        wait_http_ok(f"http://{self.alertmanager}/-/ready", proc, log, "Alertmanager")

    def start_prometheus(self) -> None:
        binary = find_binary(PROMETHEUS_BINARY)
        if binary is None:
            self.missing.append(PROMETHEUS_BINARY)
            return
        port = free_port()
        config = self.run_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(self.collector_api, self.alertmanager or None)))
        log = self.run_dir / "prometheus.log"
        args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        proc = self._spawn("prometheus", args, log)
        self.prometheus = f"127.0.0.1:{port}"
        wait_http_ok(f"http://{self.prometheus}/-/ready", proc, log, "Prometheus")

    def prometheus_query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            body: dict[str, Any] = json.load(response)
        return list(body["data"]["result"])

    def _spawn(
        self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children in order
            )
        self._procs.append((name, proc))
        return proc

    def close(self) -> None:
        for _, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self._procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()


@contextlib.contextmanager
def running_stack(run_dir: Path) -> Iterator[Stack]:
    stack = Stack(run_dir)
    try:
        yield stack
    finally:
        stack.close()
