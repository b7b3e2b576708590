"""Per-tenant call and token quotas that an app enforces before it calls the provider.

    from otel_llm import Quota, QuotaExceeded, QuotaGuard, llm_context

    guard = QuotaGuard(
        {"acme": Quota(calls_per_minute=60, tokens_per_day=2_000_000)},
        default=Quota(calls_per_minute=20, tokens_per_day=200_000),   # every other tenant; None: unlimited
    )
    guard.track_calls()                  # count each finished call's tokens for its `llm_context` tenant

    with llm_context(tenant="acme"):
        try:
            guard.check(estimated_tokens=1_500)   # the tenant from `llm_context`, or guard.check("acme")
        except QuotaExceeded as exc:
            return f"Busy; try again after {exc.reset_at:%H:%M} UTC"
        client.chat.completions.create(...)

Quotas: `calls_per_minute`, `calls_per_day`, `tokens_per_minute`, `tokens_per_day`, each a positive integer
or None (no limit). Windows are fixed and aligned to UTC on the wall clock: a minute window runs from a
whole minute to the next, a day window from midnight UTC to the next; counts start from zero in each new
window and in a new process (nothing is persisted). A fixed window admits up to twice a per-minute quota
in the 60 seconds around a window edge; that is the price of a reset time a client can be told.

`check()` admits a call or raises `QuotaExceeded`:

- calls: admitted while the window's calls stay within the quota with this call added; an admitted call is
  counted at once (concurrent checks cannot both take the last place), a refused one is not;
- tokens: admitted while the window's tokens are under the quota and stay within it with
  `estimated_tokens` added. Tokens are known only after the call, so they are counted when reported
  (`record_usage`, or automatically with `track_calls()`); calls admitted at the same moment can together
  overshoot a token quota by their own usage. Pass an estimate to keep headroom.

When several quotas are exceeded, the exception names the one whose window resets last (retrying earlier
would fail again). It carries `tenant`, `quota`, `limit`, `used`, `requested`, `reset_at` (UTC datetime)
and `retry_after_seconds`, and its message states them all.

Telemetry of a refused call: the current span (the app's request or agent span; no GenAI span exists for
a call that never happened) gets `otel_llm.quota.exceeded` = the quota's name and `otel_llm.tenant`, and
the counter `otel_llm.quota.refused` (unit `{call}`) is incremented with `otel_llm.quota.name` and
`otel_llm.tenant` (the tenant's name when it has a quota of its own, `_OTHER` for tenants on the default
quota, so the metric's cardinality is bounded by the configuration). The counter comes from
`meter_provider` (default: the global one); pass the provider given to `otel_llm.instrument()` when it is
not the global one.

Token usage. `track_calls()` adds a completion hook: every finished call made inside
`llm_context(tenant=...)` counts its input plus output tokens (as reported by the provider; failed calls
and calls without usage count nothing) for that tenant, on the instrumentation's finisher thread, shortly
after the call returns (`otel_llm.flush()` waits for it). Without `track_calls()`, report usage yourself
with `record_usage(tenant, tokens)`; doing both counts the tokens twice. `stop_tracking()` removes the hook.

Thread-safe (one lock per guard, held for a few dictionary operations); no I/O. Memory: one small record
per tenant seen today; records of earlier days are dropped when the day changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider

from otel_llm import attributes as attr
from otel_llm.call import add_completion_hook, remove_completion_hook
from otel_llm.context import current_context
from otel_llm.guard import guard
from otel_llm.telemetry import SCOPE_NAME
from otel_llm.version import __version__

if TYPE_CHECKING:
    from otel_llm.call import LLMCall
    from otel_llm.wire import ResponseInfo

__all__ = ["METRIC_REFUSED", "OTHER_TENANT", "Quota", "QuotaExceeded", "QuotaGuard", "QuotaUsage"]

METRIC_REFUSED: Final = "otel_llm.quota.refused"
OTHER_TENANT: Final = "_OTHER"
_MINUTE: Final = 60
_DAY: Final = 86_400
# Checked in this order; on a tie in reset time, the first exceeded one is named.
_QUOTAS: Final = ("calls_per_minute", "calls_per_day", "tokens_per_minute", "tokens_per_day")


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits of one tenant; None: no limit."""

    calls_per_minute: int | None = None
    calls_per_day: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"Quota.{f.name} must be a positive integer or None, got {value!r}")


class QuotaExceeded(Exception):
    """A quota stopped a call before it reached the provider."""

    def __init__(
        self,
        *,
        tenant: str,
        quota: str,
        limit: int,
        used: int,
        requested: int,
        reset_at: datetime,
        now: float,
    ) -> None:
        self.tenant = tenant
        self.quota = quota
        self.limit = limit
        self.used = used
        self.requested = requested
        self.reset_at = reset_at
        self.retry_after_seconds = max(reset_at.timestamp() - now, 0.0)
        unit = "calls" if quota.startswith("calls") else "tokens"
        super().__init__(
            f"tenant {tenant!r} is over its {quota} quota: {used} {unit} used + {requested} requested > "
            f"limit {limit}; resets at {reset_at:%Y-%m-%dT%H:%M:%SZ} (in {self.retry_after_seconds:.0f} s)"
        )


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """A tenant's counts in the current windows."""

    tenant: str
    calls_this_minute: int
    calls_today: int
    tokens_this_minute: int
    tokens_today: int
    minute_resets_at: datetime
    day_resets_at: datetime


class _Counts:
    __slots__ = ("calls_day", "calls_minute", "day", "minute", "tokens_day", "tokens_minute")

    def __init__(self, minute: int, day: int) -> None:
        self.minute, self.day = minute, day
        self.calls_minute = self.tokens_minute = self.calls_day = self.tokens_day = 0

    def roll(self, minute: int, day: int) -> None:
        if minute != self.minute:
            self.minute, self.calls_minute, self.tokens_minute = minute, 0, 0
        if day != self.day:
            self.day, self.calls_day, self.tokens_day = day, 0, 0


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class QuotaGuard:
    """Call and token quotas per tenant (see the module docstring). `clock`: wall clock, seconds."""

    def __init__(
        self,
        quotas: Mapping[str, Quota] | None = None,
        *,
        default: Quota | None = None,
        clock: Callable[[], float] = time.time,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.quotas = dict(quotas or {})
        for tenant, quota in self.quotas.items():
            if not isinstance(tenant, str) or not tenant:
                raise ValueError(f"quotas: tenant names must be non-empty strings, got {tenant!r}")
            if not isinstance(quota, Quota):
                raise TypeError(f"quotas[{tenant!r}]: expected a Quota, got {type(quota).__name__}")
        if default is not None and not isinstance(default, Quota):
            raise TypeError(f"default: expected a Quota or None, got {type(default).__name__}")
        self.default = default
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, _Counts] = {}
        self._day = -1
        self._tracking = False
        meter = metrics.get_meter(SCOPE_NAME, __version__, meter_provider)
        self._refused = meter.create_counter(
            METRIC_REFUSED, "{call}", "Calls a quota stopped before they reached the provider."
        )

    def quota_for(self, tenant: str) -> Quota | None:
        """The tenant's own quota, else the default (None: unlimited)."""
        return self.quotas.get(tenant, self.default)

    def _counts_for(self, tenant: str, now: float) -> _Counts:
        minute, day = int(now // _MINUTE), int(now // _DAY)
        if day != self._day:
            # A new day: every tenant's counts start again, so forget them (bounds the memory).
            self._day = day
            self._counts = {t: c for t, c in self._counts.items() if c.day == day}
        counts = self._counts.get(tenant)
        if counts is None:
            counts = self._counts[tenant] = _Counts(minute, day)
        counts.roll(minute, day)
        return counts

    # --- enforcement ----------------------------------------------------------------------------------
    def check(self, tenant: str | None = None, *, estimated_tokens: int = 0) -> None:
        """Admit one call of `tenant` (default: the `llm_context` tenant) or raise `QuotaExceeded`."""
        name = _tenant(tenant)
        if (
            isinstance(estimated_tokens, bool)
            or not isinstance(estimated_tokens, int)
            or estimated_tokens < 0
        ):
            raise ValueError(f"estimated_tokens must be a non-negative integer, got {estimated_tokens!r}")
        quota = self.quota_for(name)
        if quota is None:
            return
        now = self._clock()
        with self._lock:
            counts = self._counts_for(name, now)
            over: list[tuple[int, str, int, int, int]] = []  # (reset, quota, limit, used, requested)
            for quota_name in _QUOTAS:
                limit = getattr(quota, quota_name)
                if limit is None:
                    continue
                per_day = quota_name.endswith("day")
                reset = (counts.day + 1) * _DAY if per_day else (counts.minute + 1) * _MINUTE
                if quota_name.startswith("calls"):
                    used = counts.calls_day if per_day else counts.calls_minute
                    if used + 1 > limit:
                        over.append((reset, quota_name, limit, used, 1))
                else:
                    used = counts.tokens_day if per_day else counts.tokens_minute
                    if used >= limit or used + estimated_tokens > limit:
                        over.append((reset, quota_name, limit, used, estimated_tokens))
            if not over:
                counts.calls_minute += 1
                counts.calls_day += 1
                return
        reset, quota_name, limit, used, requested = max(over, key=lambda o: o[0])  # first one on a tie
        self._report(name, quota_name)
        raise QuotaExceeded(
            tenant=name,
            quota=quota_name,
            limit=limit,
            used=used,
            requested=requested,
            reset_at=_utc(reset),
            now=now,
        )

    def _report(self, tenant: str, quota_name: str) -> None:
        with guard("quota telemetry"):
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attributes({attr.QUOTA_EXCEEDED: quota_name, attr.TENANT: tenant})
            label = tenant if tenant in self.quotas else OTHER_TENANT
            self._refused.add(1, {attr.QUOTA_NAME: quota_name, attr.TENANT: label})

    def record_usage(self, tenant: str | None, tokens: int) -> None:
        """Count `tokens` (input + output) of a finished call of `tenant` (None: the `llm_context` one)."""
        name = _tenant(tenant)
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ValueError(f"tokens must be a non-negative integer, got {tokens!r}")
        if self.quota_for(name) is None or not tokens:
            return
        now = self._clock()
        with self._lock:
            counts = self._counts_for(name, now)
            counts.tokens_minute += tokens
            counts.tokens_day += tokens

    def usage(self, tenant: str) -> QuotaUsage:
        """The tenant's counts in the current minute and day."""
        now = self._clock()
        with self._lock:
            counts = self._counts.get(tenant)
            minute, day = int(now // _MINUTE), int(now // _DAY)
            if counts is not None:
                counts.roll(minute, day)
            return QuotaUsage(
                tenant=tenant,
                calls_this_minute=counts.calls_minute if counts else 0,
                calls_today=counts.calls_day if counts else 0,
                tokens_this_minute=counts.tokens_minute if counts else 0,
                tokens_today=counts.tokens_day if counts else 0,
                minute_resets_at=_utc((minute + 1) * _MINUTE),
                day_resets_at=_utc((day + 1) * _DAY),
            )

    # --- automatic token usage ------------------------------------------------------------------------
    def track_calls(self) -> QuotaGuard:
        """Count the tokens of every finished call made inside `llm_context(tenant=...)`; returns self."""
        with self._lock:
            if self._tracking:
                return self
            self._tracking = True
        add_completion_hook(self._on_call_end)
        return self

    def stop_tracking(self) -> None:
        with self._lock:
            self._tracking = False
        remove_completion_hook(self._on_call_end)

    def _on_call_end(self, call: LLMCall, info: ResponseInfo | None) -> None:
        """The completion hook (finisher thread; must be cheap and never raise)."""
        tenant = call.context.tenant
        if not tenant or info is None:
            return
        tokens = (info.input_tokens or 0) + (info.output_tokens or 0)
        if tokens > 0:
            self.record_usage(tenant, tokens)


def _tenant(tenant: str | None) -> str:
    name = tenant if tenant is not None else current_context().tenant
    if not name or not isinstance(name, str):
        raise ValueError("no tenant: pass one, or call inside llm_context(tenant=...)")
    return name
