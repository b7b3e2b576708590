"""The collector's settings: one pydantic schema, loaded from YAML and overridden by command-line flags.

Precedence is flag > config file > default. Every setting carries its unit in its name and is validated
once at start; a bad value stops the start with a message that names the setting, for example
``otlp_grpc_endpoint: expected host:port``.

Ports (defaults):

- ``otlp_grpc_endpoint`` ``0.0.0.0:4317``, ``otlp_http_endpoint`` ``0.0.0.0:4318``: the OTLP standard ports.
- ``http_endpoint`` ``0.0.0.0:9464``: ``/metrics``, ``/api/v1/*``, ``/healthz``, ``/readyz``. 9464 is the
  port the OpenTelemetry Prometheus exporter uses, so scrape configs written for it keep working.

An endpoint with port 0 binds an ephemeral port (tests); the bound port is reported by the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from otel_llm_collector.calibration import CalibrationSettings
from otel_llm_collector.content_eval import ContentEvaluationSettings
from otel_llm_collector.notify_config import NotifySettings

__all__ = ["CollectorSettings", "ConfigError", "ForwardTarget", "load_settings", "parse_endpoint"]

MIB = 1024 * 1024


class ConfigError(Exception):
    """The configuration is invalid; the message names the setting."""


def parse_endpoint(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:4317`` for IPv6); raise ValueError when it is not one."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("expected host:port")
    port = int(port_text)
    if port > 65535:
        raise ValueError("expected host:port with a port from 0 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def _check_endpoint(value: str) -> str:
    parse_endpoint(value)
    return value


class ForwardTarget(BaseModel):
    """A downstream OTLP endpoint that receives a copy of every request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str
    """``host:port`` for gRPC; a base URL (``http://host:4318``) or ``host:port`` for HTTP."""
    protocol: Literal["grpc", "http"] = "grpc"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10.0, gt=0)
    queue_max_requests: int = Field(default=1000, ge=1)
    """Requests waiting for this target; beyond it the oldest is dropped and counted."""
    queue_max_bytes: int = Field(default=64 * MIB, ge=1024)
    """Bytes waiting for this target, the same way: a dead backend costs bounded memory."""
    retry_initial_interval_seconds: float = Field(default=5.0, gt=0)
    retry_max_interval_seconds: float = Field(default=30.0, gt=0)
    retry_max_elapsed_seconds: float = Field(default=300.0, ge=0)
    """Give up on one request after this long (0 retries forever). The OpenTelemetry Collector's defaults."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value.startswith(("http://", "https://")):
            return value
        return _check_endpoint(value)


class SegmentDisparityConfig(BaseModel):
    """The ``segment_disparity:`` section: quality per app-chosen segment against the rest of its group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    window_seconds: float = Field(default=3600.0, ge=60)
    min_difference: float = Field(default=0.10, ge=0, lt=1)
    """Smallest pass-rate gap (absolute) worth a P2."""
    confidence: float = Field(default=0.99, ge=0.5, lt=1)
    """One-sided level of the two-proportion test, before the division by the number of values tested."""
    min_samples: int = Field(default=30, ge=1)
    max_values: int = Field(default=20, ge=1)
    """Distinct values per segment name; the rest fold into ``__other__`` (never alerted on)."""
    max_cells: int = Field(default=2000, ge=1)

    @field_validator("window_seconds")
    @classmethod
    def _whole_minutes(cls, value: float) -> float:
        if value % 60:
            raise ValueError("expected whole minutes (a multiple of 60)")
        return value


class CollectorSettings(BaseModel):
    """All settings of ``otel-llm collector``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    otlp_grpc_endpoint: str = "0.0.0.0:4317"
    otlp_http_endpoint: str = "0.0.0.0:4318"
    http_endpoint: str = "0.0.0.0:9464"
    state_dir: Path = Path("./otel-llm-state")
    max_request_bytes: int = Field(default=64 * MIB, ge=1024)
    """Largest accepted request after decompression (RESOURCE_EXHAUSTED / 413 beyond it)."""
    queue_max_batches: int = Field(default=256, ge=1)
    """Decoded requests waiting for the windows worker; a full queue sheds load (UNAVAILABLE / 503)."""
    retry_after_seconds: float = Field(default=1.0, gt=0)
    """The delay suggested to clients when load is shed."""
    max_series: int = Field(default=10_000, ge=1)
    allowed_lateness_seconds: float = Field(default=300.0, ge=0)
    snapshot_interval_seconds: float = Field(default=30.0, gt=0)
    write_ahead_log: bool = True
    """Log accepted GenAI requests in ``<state_dir>/wal`` so that a kill loses nothing acknowledged."""
    idle_watermark_interval_seconds: float = Field(default=1.0, gt=0)
    """How often wall-clock time advances the watermark while no data arrives."""
    grpc_max_workers: int = Field(default=2, ge=1)
    """gRPC handler threads. Decoding holds the GIL, so more threads than cores only queue for it: on two
    cores, 2 handlers took 5-10% more spans/s than 8 (docs/performance.md)."""
    reuse_port: bool = True
    """Let several collector processes bind the same OTLP ports (SO_REUSEPORT, Linux)."""
    forward: tuple[ForwardTarget, ...] = ()
    rules_file: Path | None = None
    """Quality rules (YAML, see `otel-llm rules check`); the shipped default rule set when unset."""
    rules_enabled: bool = True
    rule_evaluation_share: float | None = Field(default=0.25, gt=0, le=1)
    """When event time runs ahead of the wall clock (catching up a backlog), rule evaluation takes at most
    this share of the ingest worker's time: ticks that come sooner are coalesced into the next one.
    ``null`` evaluates every event-time minute whatever it costs."""
    budgets_file: Path | None = None
    """Cost budgets (YAML, see `otel_llm_collector.budgets`); none when unset."""
    slo_file: Path | None = None
    """SLO definitions (YAML, see `otel_llm_collector.slo`); none when unset."""
    notify: NotifySettings = NotifySettings()
    """Notification targets (Alertmanager, Slack, PagerDuty, webhooks), the outbox, the resend policy."""
    auto_rollback_enabled: bool = True
    """Let rules with the `auto_rollback` action roll prompt versions back (with the safeguards below)."""
    auto_rollback_dry_run: bool = False
    """Record what an automatic rollback would have done, change nothing."""
    auto_rollback_min_interval_seconds: float = Field(default=900.0, ge=0)
    auto_rollback_max_per_day: int = Field(default=3, ge=0)
    control_plane_url: str | None = None
    """Another collector whose prompt registry the apps poll (scale-out): automatic rollbacks change that
    registry through its API (with this collector's token) instead of the local one. None: the local one."""
    auto_rollback_recovery_seconds: float = Field(default=900.0, gt=0)
    """After a rollback, how long (event time) to wait before checking that the rule's condition cleared."""
    content_evaluation: ContentEvaluationSettings = ContentEvaluationSettings()
    """Evaluation of captured content in the collector (opt-in): `otel_llm_collector.content_eval`."""
    segment_disparity: SegmentDisparityConfig = SegmentDisparityConfig()
    """Segment disparity (`otel_llm_collector.disparity`): a P2 when one segment's quality lags the rest."""
    calibration: CalibrationSettings = CalibrationSettings()
    """The calibration loop: predicted quality (registry `baselines.quality`) against measured quality."""
    control_reads_need_token: bool = False
    """Whether reading the prompt registry and switches needs the bearer token (`/api/v1/control` never)."""
    api_token_env: str = "OTEL_LLM_API_TOKEN"
    """The environment variable holding the bearer token that API changes need (never the token itself)."""

    @field_validator("otlp_grpc_endpoint", "otlp_http_endpoint", "http_endpoint")
    @classmethod
    def _endpoints(cls, value: str) -> str:
        return _check_endpoint(value)


def _format_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "config"
        message = str(item["msg"])
        message = message.removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> CollectorSettings:
    """Build the settings from an optional YAML file and flag overrides (None values are ignored)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: invalid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping of settings at the top level")
        data.update(loaded)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        return CollectorSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None
