"""Scale-out: two collectors behind a service-hashing router give the same figures and alerts as one.

The shipped topology (collector/deploy/scale-out/) puts the OpenTelemetry Collector's load-balancing
exporter, `routing_key: service`, in front of several otel-llm collectors. Here a router of ours stands in
for it: a gRPC server for `TraceService/Export` and `LogsService/Export` that splits each request by
resource `service.name` and forwards each part to the backend the exporter's consistent-hash ring picks
for that name (a port of its ring: 100 points per endpoint at crc32(endpoint + byte(i)) mod 36000, the key
at crc32(service.name) mod 36000, the next point clockwise; endpoints sorted, as its static resolver does).
The ring is built from the names in the shipped otelcol.yaml (otel-llm-0:4317, otel-llm-1:4317), which the
test maps to two live collectors, so the partition is the one the example would produce.

Six services of generated traffic (faithfulness incidents, a refusal spike on a new prompt version, a model
change, an error burst), two of them sending their evaluations as OTLP log records rather than span events,
go through the router and, identically, to a third collector alone. Every series must then live on exactly
one partition, and per series and window the partitions' figures must equal the single collector's, as
must the alerts: the transitions, the ones active at the end, their event times and annotations.

Event time is what makes this exact: the requests are sent in batch order (10 s of every service, then the
next 10 s), the batches line up with the rules' minute ticks (the time shift is whole minutes), and the
wall clock is kept from moving the engines (a long idle interval), so each collector's windows and rule
ticks see the same records whether the other services share the process or not.
"""

from __future__ import annotations

import bisect
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from otel_llm_collector.config import load_settings
from otel_llm_collector.scenarios import Phase, Scenario, at, constant

from otel_llm import attributes as A
from tests.e2e.collector_process import running_collector

ROOT: Final = Path(__file__).resolve().parents[2]
DEPLOY: Final = ROOT / "collector" / "deploy" / "scale-out"
PROMTOOL: Final = shutil.which("promtool")
ALERTMANAGER: Final = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
ALERTMANAGER_CONFIG: Final = ROOT / "grafana" / "alertmanager" / "alertmanager.example.yml"

TRACES_SERVICE: Final = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE: Final = "opentelemetry.proto.collector.logs.v1.LogsService"
MINUTE_NS: Final = 60 * 1_000_000_000
RING_POSITIONS: Final = 36_000
RING_POINTS_PER_ENDPOINT: Final = 100
ENDPOINTS: Final = ("otel-llm-0:4317", "otel-llm-1:4317")
"""The first two backends of the shipped otelcol.yaml."""

# Long enough that the wall clock never moves an engine during the test: each collector's clock is then
# the newest event time it has seen, and every window covers the same buckets everywhere.
COLLECTOR_SETTINGS: Final = {"idle_watermark_interval_seconds": 3600, "snapshot_interval_seconds": 3600}


# --- the router -----------------------------------------------------------------------------------------
class HashRing:
    """The load-balancing exporter's consistent-hash ring, ported: same points, same lookup."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        points: dict[int, str] = {}
        for endpoint in sorted(endpoints):
            for i in range(RING_POINTS_PER_ENDPOINT):
                position = zlib.crc32(endpoint.encode() + bytes([i])) % RING_POSITIONS
                points.setdefault(position, endpoint)  # an occupied point stays with the first endpoint
        self._positions = sorted(points)
        self._endpoints = [points[p] for p in self._positions]

    def endpoint_for(self, key: str) -> str:
        position = zlib.crc32(key.encode()) % RING_POSITIONS
        index = bisect.bisect_left(self._positions, position)
        return self._endpoints[index % len(self._endpoints)]


def _service_name(attributes: Sequence[KeyValue]) -> str:
    for kv in attributes:
        if kv.key == "service.name":
            return str(kv.value.string_value)
    return ""


@dataclass
class BackendTraffic:
    requests: int = 0
    spans: int = 0
    log_records: int = 0


class ServiceRouter:
    """OTLP/gRPC in, split by resource `service.name`, each part forwarded to its ring backend.

    Parts are forwarded one after another before the answer, so each backend sees its services' requests
    in the order the client sent them. A backend shedding load (UNAVAILABLE) is retried here, part by
    part: retrying the whole request from the client would deliver the other parts twice. Like the
    exporter, a resource without `service.name` is refused.
    """

    def __init__(self, backends: Mapping[str, str]) -> None:
        self._ring = HashRing(list(backends))
        self._channels = {name: grpc.insecure_channel(address) for name, address in backends.items()}
        self.traffic = {name: BackendTraffic() for name in backends}
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    TRACES_SERVICE,
                    {
                        "Export": grpc.unary_unary_rpc_method_handler(
                            self._export_traces,
                            request_deserializer=ExportTraceServiceRequest.FromString,
                            response_serializer=ExportTraceServiceResponse.SerializeToString,
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    LOGS_SERVICE,
                    {
                        "Export": grpc.unary_unary_rpc_method_handler(
                            self._export_logs,
                            request_deserializer=ExportLogsServiceRequest.FromString,
                            response_serializer=ExportLogsServiceResponse.SerializeToString,
                        )
                    },
                ),
            )
        )
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def __enter__(self) -> ServiceRouter:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)
        for channel in self._channels.values():
            channel.close()

    def endpoint_for(self, service: str) -> str:
        return self._ring.endpoint_for(service)

    def _export_traces(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        parts: dict[str, ExportTraceServiceRequest] = {}
        for resource_spans in request.resource_spans:
            service = _service_name(resource_spans.resource.attributes)
            if not service:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a resource without service.name")
            part = parts.setdefault(self._ring.endpoint_for(service), ExportTraceServiceRequest())
            part.resource_spans.append(resource_spans)
        response = ExportTraceServiceResponse()
        for endpoint, part in parts.items():
            answer = self._forward(TRACES_SERVICE, endpoint, part, ExportTraceServiceResponse, context)
            response.partial_success.rejected_spans += answer.partial_success.rejected_spans
            spans = sum(len(s.spans) for rs in part.resource_spans for s in rs.scope_spans)
            with self._lock:
                self.traffic[endpoint].requests += 1
                self.traffic[endpoint].spans += spans
        return response

    def _export_logs(
        self, request: ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> ExportLogsServiceResponse:
        parts: dict[str, ExportLogsServiceRequest] = {}
        for resource_logs in request.resource_logs:
            service = _service_name(resource_logs.resource.attributes)
            if not service:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a resource without service.name")
            part = parts.setdefault(self._ring.endpoint_for(service), ExportLogsServiceRequest())
            part.resource_logs.append(resource_logs)
        response = ExportLogsServiceResponse()
        for endpoint, part in parts.items():
            answer = self._forward(LOGS_SERVICE, endpoint, part, ExportLogsServiceResponse, context)
            response.partial_success.rejected_log_records += answer.partial_success.rejected_log_records
            records = sum(len(s.log_records) for rl in part.resource_logs for s in rl.scope_logs)
            with self._lock:
                self.traffic[endpoint].requests += 1
                self.traffic[endpoint].log_records += records
        return response

    def _forward(
        self, service: str, endpoint: str, part: Any, response_type: Any, context: grpc.ServicerContext
    ) -> Any:
        export = self._channels[endpoint].unary_unary(
            f"/{service}/Export",
            request_serializer=lambda r: r.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        try:
            return _with_retry(lambda: export(part, timeout=30))
        except grpc.RpcError as exc:
            context.abort(exc.code(), f"backend {endpoint}: {exc.details()}")


def _with_retry(call: Any, *, deadline_seconds: float = 60) -> Any:
    """Retry UNAVAILABLE (the collector shedding load) the way an OTLP exporter would; raise the rest."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# --- the traffic ----------------------------------------------------------------------------------------
START_NS: Final = at(10, 0)
END_NS: Final = at(10, 30)


def _scenarios() -> list[tuple[Scenario, bool]]:
    """(scenario, evaluations as log records) per service; all share the time range and batch size."""
    base = Phase(start_ns=START_NS, evaluated_share=0.3)
    drop = replace(base, start_ns=at(10, 12), faithfulness=constant(0.55), service_version="1.1.0")
    refusals = replace(base, start_ns=at(10, 15), prompt_version="v2", refusal_rate=constant(0.35))
    bigger_model = replace(base, start_ns=at(10, 10), model="gpt-4o", latency_s=constant(2.4))
    errors = replace(base, start_ns=at(10, 10), error_rate=constant(0.12))
    plans = [
        ("checkout", (base, drop), False),
        ("search", (replace(base, calls_per_second=1.5), replace(refusals, calls_per_second=1.5)), False),
        ("support-bot", (base,), True),
        ("billing", (base, bigger_model), False),
        ("onboarding", (base, drop), True),
        ("docs-qa", (base, errors), False),
    ]
    return [
        (
            Scenario(
                name=service,
                phases=phases,
                end_ns=END_NS,
                service=service,
                feature=f"{service}-answer",
                seed=101 + i,
            ),
            as_logs,
        )
        for i, (service, phases, as_logs) in enumerate(plans)
    ]


def _evaluations_as_logs(request: ExportTraceServiceRequest) -> ExportLogsServiceRequest:
    """Move the request's `gen_ai.evaluation.result` span events into log records carrying the span's
    context, as `otel_llm.evaluation.record_evaluation` emits them once the span has ended."""
    logs = ExportLogsServiceRequest()
    for resource_spans in request.resource_spans:
        resource_logs = logs.resource_logs.add()
        resource_logs.resource.CopyFrom(resource_spans.resource)
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = "otel_llm"
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                for event in span.events:
                    record = scope_logs.log_records.add()
                    record.time_unix_nano = event.time_unix_nano
                    record.observed_time_unix_nano = event.time_unix_nano
                    record.event_name = A.GEN_AI_EVALUATION_RESULT_EVENT
                    record.trace_id = span.trace_id
                    record.span_id = span.span_id
                    record.attributes.extend(event.attributes)
                    record.attributes.append(
                        KeyValue(key="otel_llm.evaluation.source", value=AnyValue(string_value="app"))
                    )
                del span.events[:]
    return logs


Request = ExportTraceServiceRequest | ExportLogsServiceRequest


@dataclass
class Traffic:
    requests: list[Request]
    calls: dict[str, int]
    evaluations: dict[str, int]
    """Per service."""


def _traffic(offset_ns: int) -> Traffic:
    """Every service's requests, interleaved batch by batch (each service's calls, then its log records)."""
    streams: list[tuple[str, list[ExportTraceServiceRequest], bool]] = [
        (scenario.service, list(scenario.requests(offset_ns=offset_ns)), as_logs)
        for scenario, as_logs in _scenarios()
    ]
    batches = {len(requests) for _, requests, _ in streams}
    assert batches == {(END_NS - START_NS) // (10 * 1_000_000_000)}  # one request per 10 s, none empty
    traffic = Traffic([], {}, {})
    for index in range(batches.pop()):
        for service, requests, as_logs in streams:
            request = requests[index]
            spans = [span for rs in request.resource_spans for s in rs.scope_spans for span in s.spans]
            traffic.calls[service] = traffic.calls.get(service, 0) + len(spans)
            events = sum(len(span.events) for span in spans)
            traffic.evaluations[service] = traffic.evaluations.get(service, 0) + events
            traffic.requests.append(request)
            if as_logs:
                traffic.requests.append(_evaluations_as_logs(request))
    return traffic


def _send(address: str, requests: Sequence[Request]) -> None:
    with grpc.insecure_channel(address) as channel:
        traces = channel.unary_unary(
            f"/{TRACES_SERVICE}/Export",
            request_serializer=lambda r: r.SerializeToString(),
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        logs = channel.unary_unary(
            f"/{LOGS_SERVICE}/Export",
            request_serializer=lambda r: r.SerializeToString(),
            response_deserializer=ExportLogsServiceResponse.FromString,
        )
        for request in requests:
            if isinstance(request, ExportTraceServiceRequest):
                answer = _with_retry(lambda r=request: traces(r, timeout=30))
                assert answer.partial_success.rejected_spans == 0
            else:
                answer = _with_retry(lambda r=request: logs(r, timeout=30))
                assert answer.partial_success.rejected_log_records == 0


# --- reading the collectors -----------------------------------------------------------------------------
def _get(address: str, path: str) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=30) as response:
        return json.load(response)


def _wait_applied(address: str, calls: int, evaluations: int) -> dict[str, Any]:
    """Wait until the windows hold every call and evaluation sent (acknowledged is not yet applied)."""
    deadline = time.monotonic() + 60
    windows: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _get(address, "/api/v1/status")
        windows = status["windows"]
        applied = windows["calls_total"] >= calls and windows["evaluations_total"] >= evaluations
        if applied and status["collector"]["ingest_queue_batches"] == 0:
            return windows
        time.sleep(0.1)
    raise AssertionError(f"{address}: expected {calls} calls and {evaluations} evaluations, have {windows}")


SERIES_LABELS: Final = ("service", "feature", "prompt_name", "prompt_version", "model")


def _series(address: str, window: str) -> tuple[int, dict[tuple[str, ...], dict[str, Any]]]:
    """(the engine's clock, figures by series key) with each collector's own clock taken out: `end_ns` is
    its clock + 1 and `rate_per_s` the count over the time from `start_ns` to it (checked here)."""
    document = _get(address, f"/api/v1/series?window={window}")
    figures: dict[tuple[str, ...], dict[str, Any]] = {}
    for item in document["series"]:
        item = dict(item)
        end_ns, rate = item.pop("end_ns"), item.pop("rate_per_s")
        assert end_ns == document["now_ns"] + 1
        assert rate == pytest.approx(item["count"] / ((end_ns - item["start_ns"]) / 1e9), rel=1e-9)
        key = tuple(item["series"][label] for label in SERIES_LABELS)
        assert key not in figures
        figures[key] = item
    return document["now_ns"], figures


def _alerts(address: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(active alerts, recent transitions), each in a stable order."""
    document = _get(address, "/api/v1/alerts")
    return sorted(document["alerts"], key=_order), sorted(document["recent"], key=_order)


def _order(alert: Mapping[str, Any]) -> tuple[int, str, str]:
    return (alert["eventTimeUnixNano"], alert["fingerprint"], alert["status"])


# --- the tests ------------------------------------------------------------------------------------------
@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[dict[str, dict[str, str]]]:
    """Three live collectors by name: `single`, and the two partitions named like the shipped ring."""
    names = ("single", *ENDPOINTS)
    with ExitStack() as stack:
        running: dict[str, dict[str, str]] = {}
        for index, name in enumerate(names):
            directory = tmp_path / f"collector-{index}"
            directory.mkdir()
            running[name] = stack.enter_context(running_collector(directory, COLLECTOR_SETTINGS))
        yield running


def test_partitioned_collectors_equal_one_collector(collectors: dict[str, dict[str, str]]) -> None:
    # Whole minutes, so the 10-second batches never straddle a rule tick; the last call two minutes ago.
    offset_ns = ((time.time_ns() - END_NS) // MINUTE_NS - 2) * MINUTE_NS
    traffic = _traffic(offset_ns)
    single = collectors["single"]
    with ServiceRouter({name: collectors[name]["otlp_grpc"] for name in ENDPOINTS}) as router:
        placement = {service: router.endpoint_for(service) for service in traffic.calls}
        # The shipped ring splits these six services four to two; both partitions hold an incident.
        assert {s for s, e in placement.items() if e == ENDPOINTS[1]} == {"onboarding", "docs-qa"}
        with futures.ThreadPoolExecutor(max_workers=2) as pool:
            sent = [
                pool.submit(_send, address, traffic.requests)
                for address in (single["otlp_grpc"], router.address)
            ]
            for future in sent:
                future.result(timeout=120)

    # Both backends got traffic, and exactly their services' spans and evaluation log records.
    for endpoint in ENDPOINTS:
        mine = [s for s, e in placement.items() if e == endpoint]
        assert router.traffic[endpoint].spans == sum(traffic.calls[s] for s in mine) > 0
        assert router.traffic[endpoint].log_records > 0  # support-bot on one side, onboarding on the other

    expected = {
        name: (
            sum(traffic.calls[s] for s in traffic.calls if name == "single" or placement[s] == name),
            sum(traffic.evaluations[s] for s in traffic.calls if name == "single" or placement[s] == name),
        )
        for name in collectors
    }
    for name, addresses in collectors.items():
        windows = _wait_applied(addresses["http"], *expected[name])
        assert (windows["calls_total"], windows["evaluations_total"]) == expected[name]
        assert windows["evaluations_unmatched_total"] == windows["evaluations_pending"] == 0
        assert (
            windows["late_total"] == windows["dropped_too_old_total"] == windows["dropped_future_total"] == 0
        )

    for window in ("1m", "5m", "15m", "1h", "24h", "7d"):
        now_ns, whole = _series(single["http"], window)
        union: dict[tuple[str, ...], dict[str, Any]] = {}
        for endpoint in ENDPOINTS:
            part_now_ns, part = _series(collectors[endpoint]["http"], window)
            assert part_now_ns // MINUTE_NS == now_ns // MINUTE_NS  # the same buckets make the window
            assert {key[0] for key in part} == {s for s, e in placement.items() if e == endpoint}
            assert not union.keys() & part.keys()  # every series on exactly one partition
            union.update(part)
        if window == "24h":  # every series: search and billing have two (prompt version, model)
            assert len(whole) == 8
        assert union == whole, window

    alerts, recent = _alerts(single["http"])
    assert len(recent) < 1000  # /api/v1/alerts keeps the last 1,000 transitions: none cut off here
    part_alerts: list[dict[str, Any]] = []
    part_recent: list[dict[str, Any]] = []
    for endpoint in ENDPOINTS:
        active, transitions = _alerts(collectors[endpoint]["http"])
        assert {a["labels"]["service"] for a in active + transitions} <= {
            s for s, e in placement.items() if e == endpoint
        }
        part_alerts += active
        part_recent += transitions
    firing = {(a["labels"]["alertname"], a["labels"]["service"]) for a in alerts if a["status"] == "firing"}
    assert {("faithfulness-p1", "checkout"), ("faithfulness-p1", "onboarding")} <= firing
    assert sorted(part_alerts, key=_order) == alerts
    assert sorted(part_recent, key=_order) == recent


# --- the shipped files ----------------------------------------------------------------------------------
@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")
def test_prometheus_config_passes_promtool() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout  # the rule files resolve and pass too


def test_prometheus_scrapes_every_collector_and_alerts_every_peer() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "otel-llm"]
    assert job["honor_labels"] is True
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    otelcol = yaml.safe_load((DEPLOY / "otelcol.yaml").read_text())
    backends = otelcol["exporters"]["loadbalancing"]["resolver"]["static"]["hostnames"]
    assert [t.replace(":9464", ":4317") for t in targets] == backends  # one scrape target per backend
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    peers = [t for group in alertmanagers["static_configs"] for t in group["targets"]]
    assert len(peers) == 3
    collector = load_settings(DEPLOY / "otel-llm.yaml")
    assert [t.kind for t in collector.notify.targets] == ["alertmanager"] * 3
    assert sorted(str(t.url) for t in collector.notify.targets) == sorted(f"http://{p}" for p in peers)


def test_otelcol_config_routes_traces_and_logs_by_service() -> None:
    config = yaml.safe_load((DEPLOY / "otelcol.yaml").read_text())
    exporter = config["exporters"]["loadbalancing"]
    assert exporter["routing_key"] == "service"
    assert "endpoint" not in exporter["protocol"]["otlp"]  # the resolver supplies it
    assert exporter["resolver"]["static"]["hostnames"][: len(ENDPOINTS)] == list(ENDPOINTS)
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["loadbalancing"]
    assert pipelines["logs"]["exporters"] == ["loadbalancing"]
    for pipeline in pipelines.values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["processors"]) <= set(config["processors"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.skipif(
    ALERTMANAGER is None, reason="alertmanager is not installed (Debian: prometheus-alertmanager)"
)
def test_alertmanager_peers_form_one_cluster(tmp_path: Path) -> None:
    """The documented command line, on loopback: three peers that each list all three."""
    assert ALERTMANAGER is not None
    text = (DEPLOY / "alertmanager-cluster.md").read_text()
    command = text.split("```bash\n", 1)[1].split("```", 1)[0]
    flags = re.findall(r"--([a-z.-]+)=", command)
    assert sorted(set(flags)) == [
        "cluster.advertise-address",
        "cluster.listen-address",
        "cluster.peer",
        "config.file",
        "storage.path",
        "web.listen-address",
    ]
    assert flags.count("cluster.peer") == 3
    web, gossip = _free_ports(3), _free_ports(3)
    peers = [f"--cluster.peer=127.0.0.1:{port}" for port in gossip]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(3):
            log = (tmp_path / f"alertmanager-{index}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [
                        ALERTMANAGER,
                        f"--config.file={ALERTMANAGER_CONFIG}",
                        f"--storage.path={tmp_path / f'data-{index}'}",
                        f"--web.listen-address=127.0.0.1:{web[index]}",
                        f"--cluster.listen-address=127.0.0.1:{gossip[index]}",
                        f"--cluster.advertise-address=127.0.0.1:{gossip[index]}",
                        *peers,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
            log.close()
        deadline = time.monotonic() + 30
        seen: dict[int, int] = {}
        while time.monotonic() < deadline and sorted(seen.values()) != [3, 3, 3]:
            for port in web:
                try:
                    seen[port] = len(_get(f"127.0.0.1:{port}", "/api/v2/status")["cluster"]["peers"])
                except OSError:
                    seen[port] = 0  # not listening yet
            time.sleep(0.2)
        logs = "".join(p.read_text() for p in sorted(tmp_path.glob("alertmanager-*.log")))
        assert sorted(seen.values()) == [3, 3, 3], logs
    finally:
        for process in processes:  # no graceful leave (it waits ~10 s): the data is thrown away
            process.kill()
            process.wait()
