"""Wiring: settings -> state store, window engine, ingest queue, receivers, forwarders, HTTP endpoints.

Start order makes readiness honest: the window snapshot is restored from the state dir first and the
write-ahead log replayed past it, the worker and forwarders start, then the listeners; ``/readyz`` turns
200 once every listener is bound and serving.
Stop order makes shutdown lossless: stop the listeners (in-flight calls finish and are acknowledged only
once queued), drain the ingest queue into the windows, take the final snapshot, flush the forwarders
(bounded), close the store. ``run`` does this on SIGTERM or SIGINT and returns 0.

When the listeners are up, one line goes to stdout with the bound addresses (ports chosen by the OS for
``:0`` endpoints included), for scripts and tests that start the collector as a subprocess:
``otel-llm collector ready otlp_grpc=0.0.0.0:4317 otlp_http=0.0.0.0:4318 http=0.0.0.0:9464``.

The ``http_endpoint`` serves, through `App.router` (later stages add their routes there):

- ``GET /metrics``: Prometheus text (window figures and self-metrics, see ``docs/metrics.md``);
  ``?window=5m&window=1h`` limits the windows (use a scrape config's ``params`` with many series);
- ``GET /api/v1/series?window=5m``: every series with its figures over one window, as JSON;
- ``GET /api/v1/status``: self-metrics and window engine counters as JSON, cheap at any series count;
- ``GET /healthz`` (the process is up), ``GET /readyz`` (listening; 503 before and during shutdown).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from otel_llm_collector import control_api, exposition
from otel_llm_collector.alerting import Alerting
from otel_llm_collector.config import CollectorSettings, parse_endpoint
from otel_llm_collector.content_eval import ContentEvaluator
from otel_llm_collector.contracts import DecodeResult
from otel_llm_collector.decode import decode_logs, decode_traces
from otel_llm_collector.forward import Forwarder
from otel_llm_collector.httpserver import HttpServer
from otel_llm_collector.ingest import SNAPSHOT_WAL_KEY, IngestQueue
from otel_llm_collector.native_decode import native_trace_decoder
from otel_llm_collector.receive_grpc import GrpcReceiver
from otel_llm_collector.receive_http import add_otlp_routes, too_large_response
from otel_llm_collector.receiver import Receiver, Signal
from otel_llm_collector.router import HttpError, Request, Response, Router
from otel_llm_collector.rules import RulesError
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.store import StateStore
from otel_llm_collector.switches import KillSwitches
from otel_llm_collector.wal import WriteAheadLog
from otel_llm_collector.windows import SNAPSHOT_SERIES, WINDOW_NAMES, WindowEngine

__all__ = ["App", "run"]

_logger = logging.getLogger(__name__)
_ADMIN_MAX_BODY_BYTES = 1024 * 1024


class App:
    """The collector process's components and their lifecycle."""

    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self.counters = Counters()
        self.ready = False
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = StateStore(settings.state_dir)
        self.wal = WriteAheadLog(settings.state_dir / "wal") if settings.write_ahead_log else None
        self.engine, applied_seq = self._restore_engine()
        # Rules, the alert log and notifications sit on top of the windows; the pipeline is what the
        # ingest worker drives, so rules tick on the same thread, in event time.
        self.alerting = Alerting(settings, settings.state_dir, self.counters)
        self.pipeline = self.alerting.pipeline(self.engine)
        saved = self.store.load_snapshot()
        if saved is not None:
            try:
                self.pipeline.restore(saved[1])
            except Exception:
                _logger.exception("the rule state in the snapshot cannot be restored; starting fresh")
        self.ingest = IngestQueue(
            self.pipeline,
            max_batches=settings.queue_max_batches,
            counters=self.counters,
            save_snapshot=self._save_snapshot,
            snapshot_interval_seconds=settings.snapshot_interval_seconds,
            idle_watermark_interval_seconds=settings.idle_watermark_interval_seconds,
            wal=self.wal,
            applied_seq=applied_seq,
        )
        self.forwarder = Forwarder(settings.forward, self.counters)
        # Evaluation of captured content in the collector (opt-in): it samples in the decoders and hands
        # the sampled calls to its workers once the ingest queue accepted their request.
        self.content_evaluator = (
            ContentEvaluator(settings.content_evaluation, offer=self.ingest.offer, counters=self.counters)
            if settings.content_evaluation.enabled
            else None
        )
        content = self.content_evaluator
        self.receiver = Receiver(
            offer=content.offer if content is not None else self.ingest.offer,
            counters=self.counters,
            decode_traces=content.decode_traces if content is not None else decode_traces,
            decode_logs=content.decode_logs if content is not None else decode_logs,
            forwarder=self.forwarder if self.forwarder else None,
            # Content evaluation reads the spans' protobuf objects, so it keeps the reference decoder.
            decode_trace_bytes=native_trace_decoder() if content is None else None,
        )
        self.router = Router()
        self._add_admin_routes(self.router)
        self.alerting.register_routes(self.router, self.ingest.engine_lock)
        self.switches = KillSwitches(settings.state_dir)
        control_api.register(
            self.router,
            self.alerting.registry,
            self.switches,
            api_token=self.alerting.api_token,
            reads_need_token=settings.control_reads_need_token,
            on_deploy=lambda version, reason: self.alerting.record_prompt_deployment(
                version, reason, self.ingest.engine_lock
            ),
            canary_report=lambda name, baseline, candidate: self.alerting.canary_report(
                name, baseline, candidate, self.ingest.engine_lock
            ),
        )
        self._grpc: GrpcReceiver | None = None
        self._otlp_http: HttpServer | None = None
        self._http: HttpServer | None = None
        self._stopped = threading.Event()

    def _restore_engine(self) -> tuple[WindowEngine, int]:
        """The engine from the last snapshot plus the logged requests it lacks; and the last log record."""
        settings = self.settings
        options: dict[str, Any] = {
            "max_series": settings.max_series,
            "allowed_lateness_seconds": settings.allowed_lateness_seconds,
        }
        engine: WindowEngine | None = None
        covered = 0
        saved = self.store.load_snapshot()
        if saved is not None:
            try:  # the series rows stream in: one decoded at a time beside the engine being rebuilt
                engine = WindowEngine.restore(saved[1], rows=self.store.load_snapshot_rows(), **options)
            except Exception:
                _logger.exception(
                    "the window snapshot in %s cannot be restored; starting empty", settings.state_dir
                )
            else:
                covered = int(saved[1].get(SNAPSHOT_WAL_KEY, 0))
                _logger.info("restored %d series from %s", len(engine), settings.state_dir)
        if engine is None:
            engine = WindowEngine(**options)
        return engine, self._replay(engine, covered)

    def _replay(self, engine: WindowEngine, after_seq: int) -> int:
        """Apply the logged requests newer than the snapshot; returns the last sequence number seen."""
        if self.wal is None:
            return after_seq
        last, replayed = after_seq, 0
        decoders: dict[Signal, Callable[[Any], DecodeResult]] = {
            Signal.TRACES: decode_traces,
            Signal.LOGS: decode_logs,
        }
        native = native_trace_decoder()
        for seq, code, payload in self.wal.replay(after_seq):
            signal = Signal.from_code(code)
            try:
                result = native(payload) if native is not None and signal is Signal.TRACES else None
                if result is None:
                    result = decoders[signal](signal.request_type.FromString(payload))
                engine.apply(result)
            except Exception:
                _logger.exception("skipping write-ahead log record %d: it cannot be applied", seq)
            last, replayed = seq, replayed + 1
        if replayed:
            _logger.info("replayed %d request(s) from the write-ahead log", replayed)
        self.counters.add("wal_replayed_requests_total", replayed)
        return last

    def _save_snapshot(self, data: dict[str, Any]) -> None:
        """The header as one row and the window series in rows of their own, in one transaction."""
        header = {key: value for key, value in data.items() if key != SNAPSHOT_SERIES}
        self.store.save_snapshot(header, saved_at_ns=time.time_ns(), rows=data.get(SNAPSHOT_SERIES, ()))

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything; on a failure (a busy port) stop what already started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop(0.0)
            raise

    def _start(self) -> None:
        settings = self.settings
        self.ingest.start()
        if self.content_evaluator is not None:
            self.content_evaluator.start()
        self.forwarder.start()
        self.alerting.start()
        self._grpc = GrpcReceiver(
            self.receiver,
            endpoint=settings.otlp_grpc_endpoint,
            max_request_bytes=settings.max_request_bytes,
            retry_after_seconds=settings.retry_after_seconds,
            max_workers=settings.grpc_max_workers,
            reuse_port=settings.reuse_port,
        )
        otlp_router = Router()
        add_otlp_routes(
            otlp_router,
            self.receiver,
            max_request_bytes=settings.max_request_bytes,
            retry_after_seconds=settings.retry_after_seconds,
        )
        self._otlp_http = HttpServer(
            otlp_router,
            endpoint=settings.otlp_http_endpoint,
            max_body_bytes=settings.max_request_bytes,
            reuse_port=settings.reuse_port,
            on_too_large=too_large_response(self.receiver),
            name="otlp-http",
        )
        self._http = HttpServer(
            self.router, endpoint=settings.http_endpoint, max_body_bytes=_ADMIN_MAX_BODY_BYTES, name="http"
        )
        self._grpc.start()
        self._otlp_http.start()
        self._http.start()
        self.ready = True

    def addresses(self) -> dict[str, str]:
        """The bound ``host:port`` of each listener (the real port when 0 was asked for)."""
        if self._grpc is None or self._otlp_http is None or self._http is None:
            return {}
        s = self.settings
        return {
            "otlp_grpc": _with_port(s.otlp_grpc_endpoint, self._grpc.port),
            "otlp_http": _with_port(s.otlp_http_endpoint, self._otlp_http.port),
            "http": _with_port(s.http_endpoint, self._http.port),
        }

    def stop(self, grace_seconds: float = 5.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.ready = False
        if self._grpc is not None:
            self._grpc.stop(grace_seconds)
        if self._otlp_http is not None:
            self._otlp_http.stop()
        if self.content_evaluator is not None:
            self.content_evaluator.stop(grace_seconds)
        self.ingest.stop()
        self.alerting.stop()
        self.switches.close()
        self.forwarder.stop(grace_seconds)
        if self._http is not None:
            self._http.stop()
        self.store.close()
        if self.wal is not None:
            self.wal.close()

    # -- admin endpoints -------------------------------------------------------------------------------

    def _add_admin_routes(self, router: Router) -> None:
        router.add("GET", "/metrics", self._metrics)
        router.add("GET", "/healthz", lambda request: Response.json(200, {"status": "ok"}))
        router.add("GET", "/readyz", self._readyz)
        router.add("GET", "/api/v1/series", self._series)
        router.add("GET", "/api/v1/status", self._status)

    def _readyz(self, request: Request) -> Response:
        if self.ready:
            return Response.json(200, {"status": "ready"})
        return Response.json(503, {"status": "not ready"})

    def _status(self, request: Request) -> Response:
        """The self-metrics and engine counters as JSON: cheap at any series count, unlike /metrics."""
        with self.ingest.engine_lock:
            windows = self.engine.counters()
        return Response.json(
            200, {"ready": self.ready, "collector": self.counters.snapshot(), "windows": windows}
        )

    def _metrics(self, request: Request) -> Response:
        windows = tuple(request.query.get("window", ())) or WINDOW_NAMES
        unknown = [window for window in windows if window not in WINDOW_NAMES]
        if unknown:
            raise HttpError(400, f"window: expected one of {', '.join(WINDOW_NAMES)}, got {unknown[0]!r}")
        switches = self.switches.list()  # SQLite: read before taking the ingest lock
        with self.ingest.engine_lock:  # only the reading races with ingest; formatting happens outside
            figures = exposition.collect(self.engine, windows)
            alert_lines = self.alerting.metrics_lines(switches)
        text = exposition.format_metrics(figures, self_metrics=self.counters.snapshot())
        text += "\n".join(alert_lines) + "\n"
        return Response.text(200, text, exposition.CONTENT_TYPE)

    def _series(self, request: Request) -> Response:
        window = request.query_value("window", "5m") or "5m"
        if window not in WINDOW_NAMES:
            raise HttpError(400, f"window: expected one of {', '.join(WINDOW_NAMES)}")
        with self.ingest.engine_lock:
            document = exposition.series_json(self.engine, window)
        return Response.json(200, document)


def _with_port(endpoint: str, port: int) -> str:
    host, _ = parse_endpoint(endpoint)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(settings: CollectorSettings) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully. Returns the exit code."""
    try:
        app = App(settings)
    except (RulesError, ValueError) as exc:  # a bad rules or SLO file, a missing notification secret
        _logger.error("cannot start: %s", exc)
        return 2
    try:
        app.start()
    except OSError as exc:
        _logger.error("cannot start: %s", exc)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    listening = " ".join(f"{name}={address}" for name, address in app.addresses().items())
    print(f"otel-llm collector ready {listening}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        _logger.info("shutting down: draining the ingest queue and taking the final snapshot")
        app.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
