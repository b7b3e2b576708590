"""Prompt registry and kill switches from the collector, read without ever blocking a request.

    import otel_llm
    otel_llm.enable_control("http://collector:4320", service="support-bot")   # or OTEL_LLM_CONTROL_URL

    with otel_llm.prompt("answer", feature="support-answer"):   # spans get gen_ai.prompt.name / .version
        docs = retrieve(question) if otel_llm.retrieval_enabled() else []
        canned = otel_llm.static_response()
        if canned is not None:
            return canned
        client.chat.completions.create(
            model=otel_llm.model_for("gpt-4o"),                  # a downgrade switch maps it
            tools=TOOLS if otel_llm.tools_enabled() else openai.omit,
            messages=...,
        )

A daemon thread polls ``GET {url}/api/v1/control?service=S`` every refresh interval and swaps in the new
snapshot in one assignment, so readers (`prompt()`, the helpers) only read memory: a request never waits on
the network, not even for the first poll. A deploy, rollback or switch flip therefore reaches the app within
one refresh interval. When a poll fails (collector down, HTTP error, malformed JSON, timeout) the
last-known-good snapshot stays in force; the failure is counted and logged once per outage, and the
recovery is logged too.

Everything fails open: before the first successful poll, or with control disabled, `prompt()` sets no
version and the helpers answer "enabled" / "unchanged". Switches exist to degrade an app on purpose; an
unreachable collector must not degrade it by accident.

Kill switches are honoured where the app decides (retrieve or not, offer tools or not, which model, a
canned answer): `tools_enabled()`, `retrieval_enabled()`, `model_for()`, `static_response()`. The feature
defaults to the one in `llm_context`; a switch whose feature is ``"*"`` covers every feature of the
service, and a switch for the feature itself takes precedence over it. When a switch applies, the helper
lists its kind in the ``otel_llm.kill_switch`` attribute of the current span and in the kill-switch scope
opened by `prompt()` (or `kill_switch_scope()`), from which the GenAI spans of the calls made later in
that scope take ``otel_llm.kill_switch``. The scope keeps a request's switches from marking the next request
served by the same thread.

Configuration (argument > environment variable > default; bad environment values are logged and ignored):

- ``OTEL_LLM_CONTROL_URL``: the collector's HTTP base URL; control stays off without one.
- ``OTEL_LLM_CONTROL_REFRESH_SECONDS``: refresh interval, default 15.
- ``OTEL_SERVICE_NAME``: the service whose switches apply, default ``unknown_service``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlencode, urlsplit

from opentelemetry import trace

from otel_llm import attributes as attr
from otel_llm.context import LLMContext, current_context, llm_context

_log = logging.getLogger(__name__)

ENV_URL: Final = "OTEL_LLM_CONTROL_URL"
ENV_REFRESH_SECONDS: Final = "OTEL_LLM_CONTROL_REFRESH_SECONDS"
ENV_SERVICE: Final = "OTEL_SERVICE_NAME"
DEFAULT_REFRESH_SECONDS: Final = 15.0
DEFAULT_TIMEOUT_SECONDS: Final = 2.0
DEFAULT_SERVICE: Final = "unknown_service"
MAX_RESPONSE_BYTES: Final = 1 << 20
"""A control answer larger than this is refused as malformed rather than read into memory."""

SwitchKind = Literal["disable_tools", "disable_retrieval", "downgrade_model", "static_response"]
SWITCH_KINDS: Final[frozenset[str]] = frozenset(
    {"disable_tools", "disable_retrieval", "downgrade_model", "static_response"}
)
ALL_FEATURES: Final = "*"


# --- plain data and pure logic -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PromptVersion:
    """The active version of one prompt as the registry serves it."""

    version: str
    content_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Switch:
    """One kill switch. `value`: `None`, a `(from, to)` model pair, or the static response text."""

    service: str
    feature: str
    kind: SwitchKind
    value: tuple[str, str] | str | None = None
    set_at: str | None = None
    set_by: str | None = None


@dataclass(frozen=True, slots=True)
class ControlState:
    """One snapshot of the control answer; replaced whole, never mutated, so readers need no lock."""

    prompts: Mapping[str, PromptVersion] = field(default_factory=dict)
    switches: tuple[Switch, ...] = ()
    generated_at: str | None = None


EMPTY_STATE: Final = ControlState()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _parse_switch(item: Any) -> Switch | None:
    """A switch, or `None` for one this version cannot honour (unknown kind, bad value): skipped, so a
    newer collector's switch kinds do not make the whole answer unusable."""
    if not isinstance(item, dict):
        return None
    service, feature, kind, raw = (
        item.get("service"),
        item.get("feature"),
        item.get("kind"),
        item.get("value"),
    )
    if not isinstance(service, str) or not isinstance(feature, str) or kind not in SWITCH_KINDS:
        return None
    value: tuple[str, str] | str | None = None
    if kind == "downgrade_model":
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("from"), str)
            or not isinstance(raw.get("to"), str)
        ):
            return None
        value = (raw["from"], raw["to"])
    elif kind == "static_response":
        if not isinstance(raw, str):
            return None
        value = raw
    return Switch(service, feature, kind, value, _text(item.get("set_at")), _text(item.get("set_by")))


def parse_control(payload: Any) -> ControlState:
    """The snapshot for a decoded control answer; `ValueError` when its shape is not the contract's."""
    if not isinstance(payload, dict):
        raise ValueError("control answer is not a JSON object")
    prompts_raw = payload.get("prompts", {})
    switches_raw = payload.get("switches", [])
    if not isinstance(prompts_raw, dict) or not isinstance(switches_raw, list):
        raise ValueError("control answer: 'prompts' must be an object and 'switches' a list")
    prompts: dict[str, PromptVersion] = {}
    for name, entry in prompts_raw.items():
        if isinstance(entry, dict) and isinstance(entry.get("version"), str):
            prompts[name] = PromptVersion(entry["version"], _text(entry.get("content_hash")))
    switches = tuple(s for s in map(_parse_switch, switches_raw) if s is not None)
    return ControlState(prompts, switches, _text(payload.get("generated_at")))


def applicable(switches: tuple[Switch, ...], *, service: str, feature: str | None) -> tuple[Switch, ...]:
    """The switches that apply to `feature` of `service`: the feature's own first, then the ``"*"`` ones."""
    own = [s for s in switches if s.service == service and feature is not None and s.feature == feature]
    every = [s for s in switches if s.service == service and s.feature == ALL_FEATURES]
    return (*own, *every)


# --- the client: a background poller and a snapshot ----------------------------------------------------
class ControlClient:
    """Polls the collector's control endpoint on a daemon thread and answers from the last good snapshot.

    Readers (`active_version`, `switches`) never block and never raise. `refresh_now()` polls on the
    caller's thread; it never raises either (a failed poll returns `False`).
    """

    def __init__(
        self,
        url: str,
        *,
        service: str,
        refresh_interval_seconds: float = DEFAULT_REFRESH_SECONDS,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ValueError(f"control url must be an http(s) URL, got {url!r}")
        for name, value in (
            ("refresh_interval_seconds", refresh_interval_seconds),
            ("timeout_seconds", timeout_seconds),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.url = url.rstrip("/")
        self.service = service
        self.refresh_interval_seconds = refresh_interval_seconds
        self.timeout_seconds = timeout_seconds
        self._endpoint = f"{self.url}/api/v1/control?{urlencode({'service': service})}"
        self._state: ControlState = EMPTY_STATE
        self._polled = threading.Condition()
        self._polls = 0
        self._failures = 0
        self._consecutive_failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle
    def start(self) -> None:
        """Start polling in the background (the first poll too); a no-op when already running."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="otel-llm-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; waits at most one request timeout for a poll in flight."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout_seconds + 1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh_now()
            if self._stop.wait(self.refresh_interval_seconds):
                return

    # --- polling
    def refresh_now(self) -> bool:
        """Poll once on this thread; `True` when a new snapshot was taken, `False` when the old one stays."""
        try:
            state = parse_control(json.loads(self._fetch()))
        except Exception as exc:  # network, HTTP status, JSON, shape: all mean "keep the last good one"
            self._failed(exc)
            return False
        self._state = state
        with self._polled:
            if self._consecutive_failures:
                _log.info(
                    "otel_llm control: %s reachable again after %d failed polls",
                    self.url,
                    self._consecutive_failures,
                )
            self._consecutive_failures = 0
            self._polls += 1
            self._polled.notify_all()
        return True

    def _fetch(self) -> bytes:
        # Imported here: apps that never enable control do not pay for urllib's import (http.client, ssl).
        import urllib.request

        from opentelemetry.instrumentation.utils import suppress_instrumentation

        request = urllib.request.Request(self._endpoint, headers={"Accept": "application/json"})
        # Our polls are not the app's traffic: keep an installed urllib instrumentation from tracing them.
        with (
            suppress_instrumentation(),
            urllib.request.urlopen(request, timeout=self.timeout_seconds) as reply,
        ):
            body: bytes = reply.read(MAX_RESPONSE_BYTES + 1)
        if len(body) > MAX_RESPONSE_BYTES:
            raise ValueError(f"control answer larger than {MAX_RESPONSE_BYTES} bytes")
        return body

    def _failed(self, exc: Exception) -> None:
        with self._polled:
            self._failures += 1
            self._consecutive_failures += 1
            first = self._consecutive_failures == 1
            self._polls += 1
            self._polled.notify_all()
        if first:
            _log.warning(
                "otel_llm control: polling %s failed (%s: %s); keeping the last-known-good prompts and "
                "switches until it answers again",
                self._endpoint,
                type(exc).__name__,
                exc,
            )
        else:
            _log.debug("otel_llm control: poll failed again", exc_info=exc)

    def wait_for_polls(self, count: int, timeout_seconds: float) -> bool:
        """Wait until `count` polls (successful or not) have completed; `False` on timeout."""
        with self._polled:
            return self._polled.wait_for(lambda: self._polls >= count, timeout_seconds)

    # --- reading
    @property
    def polls(self) -> int:
        """Completed polls, successful or not."""
        return self._polls

    @property
    def failures(self) -> int:
        """Failed polls since the client was made."""
        return self._failures

    @property
    def consecutive_failures(self) -> int:
        """Failed polls since the last successful one (0 while the collector answers)."""
        return self._consecutive_failures

    @property
    def state(self) -> ControlState:
        """The snapshot in force: the last one the collector served, or an empty one before that."""
        return self._state

    def active_prompt(self, prompt_name: str) -> PromptVersion | None:
        return self._state.prompts.get(prompt_name)

    def active_version(self, prompt_name: str) -> str | None:
        """The active version of `prompt_name` in the last good snapshot, or `None` when it has none."""
        active = self._state.prompts.get(prompt_name)
        return active.version if active is not None else None

    def switches(self, feature: str | None = None) -> tuple[Switch, ...]:
        """The switches in force for `feature` (default: the `llm_context` feature) of this service."""
        if feature is None:
            feature = current_context().feature
        return applicable(self._state.switches, service=self.service, feature=feature)


# --- module-level convenience: one client per process ---------------------------------------------------
_client: ControlClient | None = None
_applied: ContextVar[tuple[str, ...] | None] = ContextVar("otel_llm_kill_switches", default=None)


def _refresh_from_env(env: Mapping[str, str]) -> float:
    raw = env.get(ENV_REFRESH_SECONDS, "").strip()
    if not raw:
        return DEFAULT_REFRESH_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        _log.warning(
            "%s=%r is not a positive number of seconds; using %s",
            ENV_REFRESH_SECONDS,
            raw,
            DEFAULT_REFRESH_SECONDS,
        )
        return DEFAULT_REFRESH_SECONDS
    return value


def enable_control(
    url: str | None = None, *, service: str | None = None, refresh_interval_seconds: float | None = None
) -> ControlClient | None:
    """Start polling the collector for prompt versions and kill switches; returns at once.

    Arguments win over the environment. Without a URL, or with a bad one in the environment, control stays
    off (logged) and `None` is returned; a bad argument raises `ValueError`, naming the setting.
    """
    global _client
    env = os.environ
    if url is None:
        url = env.get(ENV_URL, "").strip() or None
        if url is None:
            _log.debug("otel_llm control: no %s; prompt versions and kill switches are off", ENV_URL)
            return None
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            _log.warning("%s=%r is not an http(s) URL; control stays off", ENV_URL, url)
            return None
    if refresh_interval_seconds is None:
        refresh_interval_seconds = _refresh_from_env(env)
    client = ControlClient(
        url,
        service=service or env.get(ENV_SERVICE, "").strip() or DEFAULT_SERVICE,
        refresh_interval_seconds=refresh_interval_seconds,
    )
    disable_control()
    _client = client
    client.start()
    return client


def disable_control() -> None:
    """Stop polling and forget the snapshot: `prompt()` sets no version and every switch is off."""
    global _client
    client, _client = _client, None
    if client is not None:
        client.stop()


def control_client() -> ControlClient | None:
    """The client `enable_control()` started, if any."""
    return _client


def active_version(prompt_name: str) -> str | None:
    """The registry's active version of `prompt_name`, or `None` (control off, not yet polled, unknown)."""
    client = _client
    return client.active_version(prompt_name) if client is not None else None


@contextlib.contextmanager
def kill_switch_scope() -> Iterator[None]:
    """Collect the switch kinds the helpers apply in this block, for the GenAI spans made in it.

    `prompt()` opens one; open one yourself around a request that calls the helpers without `prompt()`.
    Nested scopes start from the enclosing one's kinds.
    """
    token = _applied.set(_applied.get() or ())
    try:
        yield
    finally:
        _applied.reset(token)


def applied_switches() -> tuple[str, ...]:
    """The switch kinds applied so far in the current kill-switch scope (empty outside one)."""
    return _applied.get() or ()


@contextlib.contextmanager
def prompt(name: str, *, feature: str | None = None) -> Iterator[LLMContext]:
    """`llm_context(prompt_name=name, prompt_version=<active version>)` plus a kill-switch scope.

    Every GenAI span inside carries the registry's active version of `name` at the time the block was
    entered, so the calls of one request agree on the version even if a deploy lands halfway through.
    """
    version = active_version(name)
    with llm_context(prompt_name=name, prompt_version=version, feature=feature) as ctx, kill_switch_scope():
        yield ctx


def _in_force(kind: SwitchKind, feature: str | None) -> list[Switch]:
    client = _client
    if client is None:
        return []
    try:
        return [s for s in client.switches(feature) if s.kind == kind]
    except Exception:  # never let a control bug reach the app's decision point
        _log.debug("otel_llm control: reading switches failed", exc_info=True)
        return []


def _record(kind: str) -> None:
    """Say on the current span, and in the kill-switch scope, that a switch of `kind` changed behaviour."""
    try:
        applied = _applied.get()
        if applied is not None and kind not in applied:
            _applied.set((*applied, kind))
        span = trace.get_current_span()
        if span.is_recording():
            previous = (getattr(span, "attributes", None) or {}).get(attr.KILL_SWITCH) or ()
            if kind not in previous:
                span.set_attribute(attr.KILL_SWITCH, [*previous, kind])
    except Exception:
        _log.debug("otel_llm control: recording a kill switch failed", exc_info=True)


def tools_enabled(feature: str | None = None) -> bool:
    """`False` when a ``disable_tools`` switch applies to `feature`: offer the model no tools."""
    if _in_force("disable_tools", feature):
        _record("disable_tools")
        return False
    return True


def retrieval_enabled(feature: str | None = None) -> bool:
    """`False` when a ``disable_retrieval`` switch applies to `feature`: answer without retrieval."""
    if _in_force("disable_retrieval", feature):
        _record("disable_retrieval")
        return False
    return True


def model_for(model: str, feature: str | None = None) -> str:
    """The model to call instead of `model`: the target of a ``downgrade_model`` switch mapping it (the
    feature's own switch before a ``"*"`` one), else `model` unchanged."""
    for switch in _in_force("downgrade_model", feature):
        if isinstance(switch.value, tuple) and switch.value[0] == model:
            _record("downgrade_model")
            return switch.value[1]
    return model


def static_response(feature: str | None = None) -> str | None:
    """The canned answer of a ``static_response`` switch for `feature`, or `None` to answer normally."""
    for switch in _in_force("static_response", feature):
        if isinstance(switch.value, str):
            _record("static_response")
            return switch.value
    return None


__all__ = [
    "ControlClient",
    "ControlState",
    "PromptVersion",
    "Switch",
    "active_version",
    "applicable",
    "applied_switches",
    "control_client",
    "disable_control",
    "enable_control",
    "kill_switch_scope",
    "model_for",
    "parse_control",
    "prompt",
    "retrieval_enabled",
    "static_response",
    "tools_enabled",
]
