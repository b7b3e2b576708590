"""The wired collector: in process (endpoints, readiness, shutdown) and as a subprocess (restart)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from otel_llm_collector.app import App
from otel_llm_collector.config import load_settings
from otel_llm_collector.testing import SECOND_NS, SpanRecorder, genai_request

OTEL_LLM = Path(sys.executable).with_name("otel-llm")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _recent_spans(count: int, feature: str = "support") -> SpanRecorder:
    recorder = SpanRecorder(service="checkout")
    now = time.time_ns() - 2 * SECOND_NS
    for i in range(count):
        recorder.genai_span(start_ns=now - SECOND_NS, end_ns=now + i, feature=feature, response_id=f"r{i}")
    return recorder


def _local_settings(state_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "otlp_grpc_endpoint": "127.0.0.1:0",
        "otlp_http_endpoint": "127.0.0.1:0",
        "http_endpoint": "127.0.0.1:0",
        "state_dir": state_dir,
        **extra,
    }


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    running = App(
        load_settings(overrides=_local_settings(tmp_path / "state", snapshot_interval_seconds=3600))
    )
    assert not running.ready
    running.start()
    try:
        yield running
    finally:
        running.stop(1.0)


def _series_count(http: str, window: str = "5m") -> int:
    status, body = _get(f"http://{http}/api/v1/series?window={window}")
    assert status == 200
    return sum(item["count"] for item in json.loads(body)["series"])


def test_spans_over_grpc_and_http_show_in_metrics_and_series(app: App) -> None:
    addresses = app.addresses()
    grpc_exporter = OTLPSpanExporter(endpoint=addresses["otlp_grpc"], insecure=True)
    http_exporter = HttpSpanExporter(endpoint=f"http://{addresses['otlp_http']}/v1/traces")
    try:
        assert (
            grpc_exporter.export(_recent_spans(3).exporter.get_finished_spans()) is SpanExportResult.SUCCESS
        )
        assert (
            http_exporter.export(_recent_spans(2).exporter.get_finished_spans()) is SpanExportResult.SUCCESS
        )
    finally:
        grpc_exporter.shutdown()
        http_exporter.shutdown()
    assert _wait(lambda: _series_count(addresses["http"]) == 5)
    status, body = _get(f"http://{addresses['http']}/metrics")
    assert status == 200
    text = body.decode()
    assert re.search(
        r'^otel_llm_window_calls\{service="checkout",feature="support".*window="5m"\} 5$', text, re.M
    )
    assert re.search(r"^otel_llm_collector_spans_received_total 5$", text, re.M)
    assert "otel_llm_collector_ingest_queue_batches 0" in text


def test_metrics_can_be_limited_to_some_windows(app: App) -> None:
    http = app.addresses()["http"]
    exporter = OTLPSpanExporter(endpoint=app.addresses()["otlp_grpc"], insecure=True)
    try:
        assert exporter.export(_recent_spans(2).exporter.get_finished_spans()) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert _wait(lambda: _series_count(http) == 2)
    text = _get(f"http://{http}/metrics?window=5m")[1].decode()
    assert 'window="5m"' in text
    assert 'window="1h"' not in text
    status, body = _get(f"http://{http}/metrics?window=3m")
    assert status == 400
    assert "3m" in json.loads(body)["error"]


def test_health_readiness_and_errors(app: App) -> None:
    http = app.addresses()["http"]
    assert _get(f"http://{http}/healthz") == (200, b'{"status":"ok"}')
    assert _get(f"http://{http}/readyz")[0] == 200
    status, body = _get(f"http://{http}/api/v1/series?window=2m")
    assert status == 400
    assert "window" in json.loads(body)["error"]
    assert _get(f"http://{http}/nope")[0] == 404


def test_stop_drains_and_takes_the_final_snapshot(tmp_path: Path) -> None:
    settings = load_settings(overrides=_local_settings(tmp_path, snapshot_interval_seconds=3600))
    first = App(settings)
    first.start()
    exporter = OTLPSpanExporter(endpoint=first.addresses()["otlp_grpc"], insecure=True)
    try:
        assert exporter.export(_recent_spans(7).exporter.get_finished_spans()) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    first.stop(1.0)
    assert not first.ready
    second = App(settings)
    second.start()
    try:
        assert _series_count(second.addresses()["http"]) == 7
    finally:
        second.stop(1.0)


@pytest.mark.slow
def test_100k_distinct_series_overflow_is_bounded_and_counted(tmp_path: Path) -> None:
    settings = load_settings(
        overrides=_local_settings(tmp_path, max_series=1000, snapshot_interval_seconds=3600)
    )
    app = App(settings)
    app.start()
    try:
        addresses = app.addresses()
        base_ns = time.time_ns() - 60 * SECOND_NS
        with grpc.insecure_channel(addresses["otlp_grpc"]) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            for k in range(196):  # 196 x 512 = 100,352 spans, each its own feature
                request = genai_request(spans=512, seed=k, start_ns=base_ns + k * 1000, spacing_ns=1)
                for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
                    for attribute in span.attributes:
                        if attribute.key == "otel_llm.feature":
                            attribute.value.string_value = f"f-{k * 512 + i}"
                export(request.SerializeToString(), timeout=30)

        def windows() -> dict[str, Any]:
            status: dict[str, Any] = json.loads(_get(f"http://{addresses['http']}/api/v1/status")[1])
            figures: dict[str, Any] = status["windows"]
            return figures

        assert _wait(lambda: windows()["calls_total"] == 100_352, timeout=120)
        status = windows()
        assert status["series"] == 1000 + 1  # the overflow series on top
        assert status["overflow_calls_total"] == 100_352 - 1000
        assert _get(f"http://{addresses['http']}/healthz")[0] == 200
    finally:
        app.stop(1.0)


class _Collector:
    """`otel-llm collector` as a subprocess, on ports the OS picks."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        command = [
            str(OTEL_LLM),
            "collector",
            "--otlp-grpc-endpoint=127.0.0.1:0",
            "--otlp-http-endpoint=127.0.0.1:0",
            "--http-endpoint=127.0.0.1:0",
            f"--state-dir={state_dir}",
            "--log-level=WARNING",
            *args,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # bounded: the process prints it or exits
        match = re.match(r"otel-llm collector ready otlp_grpc=(\S+) otlp_http=(\S+) http=(\S+)", line)
        if match is None:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise AssertionError(f"collector did not start: {line!r} {err}")
        self.grpc, self.otlp_http, self.http = match.groups()

    def metric(self, name: str) -> float:
        text = _get(f"http://{self.http}/metrics")[1].decode()
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


@pytest.fixture
def collectors() -> Iterator[list[_Collector]]:
    started: list[_Collector] = []
    yield started
    for collector in started:
        collector.close()


def _send_grpc(endpoint: str, spans: int) -> None:
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    try:
        assert exporter.export(_recent_spans(spans).exporter.get_finished_spans()) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


@pytest.mark.slow
def test_sigkill_after_a_snapshot_restores_the_windows(tmp_path: Path, collectors: list[_Collector]) -> None:
    first = _Collector(tmp_path, "--snapshot-interval-seconds=0.3")
    collectors.append(first)
    _send_grpc(first.grpc, 12)
    assert _wait(lambda: _series_count(first.http) == 12)
    taken = first.metric("otel_llm_collector_snapshots_total")
    assert _wait(lambda: first.metric("otel_llm_collector_snapshots_total") >= taken + 2)
    os.kill(first.process.pid, signal.SIGKILL)
    assert first.process.wait(timeout=10) == -signal.SIGKILL
    second = _Collector(tmp_path)
    collectors.append(second)
    assert _series_count(second.http) == 12
    assert _get(f"http://{second.http}/readyz")[0] == 200


@pytest.mark.slow
def test_sigkill_loses_nothing_acknowledged_thanks_to_the_log(
    tmp_path: Path, collectors: list[_Collector]
) -> None:
    first = _Collector(tmp_path, "--snapshot-interval-seconds=0.3")
    collectors.append(first)
    _send_grpc(first.grpc, 5)
    assert _wait(lambda: first.metric("otel_llm_collector_snapshots_total") >= 2)
    _send_grpc(first.grpc, 4)  # acknowledged; perhaps in no snapshot yet
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    second = _Collector(tmp_path, "--snapshot-interval-seconds=3600")
    collectors.append(second)
    assert _series_count(second.http) == 9
    # Segments a saved snapshot covers are gone: the log does not grow without bound.
    assert 1 <= len(list((tmp_path / "wal").glob("wal-*.log"))) <= 3


@pytest.mark.slow
def test_sigkill_before_any_snapshot_replays_the_log(tmp_path: Path, collectors: list[_Collector]) -> None:
    first = _Collector(tmp_path, "--snapshot-interval-seconds=3600")
    collectors.append(first)
    _send_grpc(first.grpc, 6)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    second = _Collector(tmp_path, "--snapshot-interval-seconds=3600")
    collectors.append(second)
    assert _series_count(second.http) == 6
    assert second.metric("otel_llm_collector_wal_replayed_requests_total") == 1


@pytest.mark.slow
def test_sigterm_drains_and_exits_zero(tmp_path: Path, collectors: list[_Collector]) -> None:
    first = _Collector(tmp_path, "--snapshot-interval-seconds=3600")
    collectors.append(first)
    _send_grpc(first.grpc, 9)
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(timeout=30) == 0
    second = _Collector(tmp_path)
    collectors.append(second)
    assert _series_count(second.http) == 9


def test_busy_port_fails_to_start_with_exit_1(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [
                str(OTEL_LLM),
                "collector",
                "--otlp-grpc-endpoint=127.0.0.1:0",
                f"--otlp-http-endpoint=127.0.0.1:{port}",
                "--http-endpoint=127.0.0.1:0",
                "--no-reuse-port",
                f"--state-dir={tmp_path}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "cannot start" in result.stderr
