"""Instrumentation settings: argument > environment variable > default.

| setting | environment variable | default |
|---|---|---|
| `capture_content` | `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (`true`/`SPAN_ONLY`) | off |
| `capture_content_events` | the same variable, `EVENT_ONLY` or `SPAN_AND_EVENT` | off |
| `redact_content` | `OTEL_LLM_REDACT_CONTENT` | on (secrets and PII in captured content) |
| `extra_paths` | `OTEL_LLM_EXTRA_PATHS` (`/suffix=openai.chat,...`) | none |
| `thread_context` | `OTEL_LLM_THREAD_CONTEXT` (copy context into `ThreadPoolExecutor`) | on |
| `max_stream_buffer_bytes` | `OTEL_LLM_MAX_STREAM_BUFFER_BYTES` | 8388608 |
| `latest_semconv` | `OTEL_SEMCONV_STABILITY_OPT_IN` contains `gen_ai_latest_experimental` | off |
| `defer_spans` | `OTEL_LLM_DEFER_SPANS` (span created off the request path when allowed) | on |

A bad environment value is logged once and the default used: configuration never crashes the app.
A bad *argument* raises `ValueError` naming the setting, since that is a programming error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otel_llm.endpoints import ApiKind, parse_extra_paths

_log = logging.getLogger(__name__)

_TRUE = frozenset({"true", "1", "yes", "on", "span_only", "event_only", "span_and_event"})
_FALSE = frozenset({"false", "0", "no", "off", "no_content", ""})


@dataclass(frozen=True, slots=True)
class Settings:
    capture_content: bool = False
    """Content as span attributes (`gen_ai.input.messages`, `gen_ai.output.messages`)."""
    capture_content_events: bool = False
    """Content as a `gen_ai.client.inference.operation.details` event (a log record in the span's context)."""
    redact_content: bool = True
    extra_paths: tuple[tuple[bytes, ApiKind], ...] = ()
    thread_context: bool = True
    max_stream_buffer_bytes: int = 8 * 1024 * 1024
    latest_semconv: bool = False
    defer_spans: bool = True
    """Create the span on the finisher thread, with the request's start time and parent, when nothing inside
    the HTTP call needs it current (see `otel_llm.deferral`). Off: always start it before the request."""


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    _log.warning("%s=%r is not a boolean; using the default %s", name, raw, default)
    return default


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value <= 0:
        _log.warning("%s=%r is not a positive integer; using the default %d", name, raw, default)
        return default
    return value


def _content_mode(env: Mapping[str, str]) -> tuple[bool, bool]:
    """(on spans, as events) from the capture variable: a boolean or one of the GenAI content modes."""
    name = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    value = env.get(name, "").strip().lower()
    if value == "event_only":
        return False, True
    if value == "span_and_event":
        return True, True
    return _env_bool(env, name, False), False


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment with explicit `overrides` on top."""
    env = os.environ if env is None else env
    extra: tuple[tuple[bytes, ApiKind], ...] = ()
    if env.get("OTEL_LLM_EXTRA_PATHS"):
        try:
            extra = parse_extra_paths(env["OTEL_LLM_EXTRA_PATHS"])
        except ValueError as exc:
            _log.warning("OTEL_LLM_EXTRA_PATHS ignored: %s", exc)
    settings = Settings(
        capture_content=_content_mode(env)[0],
        capture_content_events=_content_mode(env)[1],
        redact_content=_env_bool(env, "OTEL_LLM_REDACT_CONTENT", True),
        extra_paths=extra,
        thread_context=_env_bool(env, "OTEL_LLM_THREAD_CONTEXT", True),
        max_stream_buffer_bytes=_env_int(env, "OTEL_LLM_MAX_STREAM_BUFFER_BYTES", 8 * 1024 * 1024),
        latest_semconv="gen_ai_latest_experimental" in env.get("OTEL_SEMCONV_STABILITY_OPT_IN", ""),
        defer_spans=_env_bool(env, "OTEL_LLM_DEFER_SPANS", True),
    )
    return _apply_overrides(settings, overrides)


def _apply_overrides(settings: Settings, overrides: Mapping[str, Any]) -> Settings:
    values: dict[str, Any] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if name == "extra_paths":
            if isinstance(value, str):
                value = parse_extra_paths(value)
            elif isinstance(value, Mapping):
                value = parse_extra_paths(",".join(f"{k}={v}" for k, v in value.items()))
            else:
                raise ValueError("extra_paths: expected a mapping of path suffix to API kind")
        elif name == "max_stream_buffer_bytes":
            if not isinstance(value, int) or value <= 0:
                raise ValueError("max_stream_buffer_bytes: expected a positive integer")
        elif name in (
            "capture_content",
            "capture_content_events",
            "redact_content",
            "thread_context",
            "latest_semconv",
            "defer_spans",
        ):
            if not isinstance(value, bool):
                raise ValueError(f"{name}: expected a bool")
        else:
            raise ValueError(f"unknown setting {name!r}")
        values[name] = value
    if not values:
        return settings
    from dataclasses import replace

    return replace(settings, **values)
