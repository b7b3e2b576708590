"""The judge's limits: calls per minute and dollars per day. Pure bookkeeping with injected clocks.

    rate = CallRateLimit(60)                     # at most 60 calls in any 60 seconds
    budget = DailySpendLimit(5.0)                # at most $5 per UTC day

    reservation = budget.reserve()               # None: today's budget is spent
    if reservation is not None and rate.try_acquire():
        cost = ...                               # make the call
        budget.settle(reservation, cost)         # cost None (unknown): charged at the reservation

Both are thread-safe and never block: a call over a limit is not made (the judge counts it), it does not
wait for the limit to free up. Sampling decides how many calls reach the judge; the limits are the
safety cap behind it, so lower the sample rate if they are hit all day.

`CallRateLimit` is a sliding window: it remembers the times of the calls of the last minute (at most
`calls_per_minute` of them) and admits a call while fewer than that many fall within the last 60 seconds.
Unlike a token bucket it never admits a burst above the limit at a minute's boundary.

`DailySpendLimit` cannot know a call's cost before the call, so it reserves an estimate (the cost of the
previous call, 0 for the first) and admits the call only if today's spend, the reservations of the calls
still running and the estimate stay within the budget. Settling replaces the reservation with the real
cost; an unknown cost (a timeout, an answer without usage) is charged at the reservation. The budget can
therefore be overshot by the error of the estimate, not by the number of concurrent calls. The day is the
UTC calendar day of the wall clock; spend starts from zero at midnight UTC and in a new process.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["CallRateLimit", "DailySpendLimit"]

_WINDOW_SECONDS: Final = 60.0
_DAY_SECONDS: Final = 86_400


class CallRateLimit:
    """At most `calls_per_minute` calls in any 60-second window; `clock` is a monotonic clock."""

    def __init__(self, calls_per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if (
            isinstance(calls_per_minute, bool)
            or not isinstance(calls_per_minute, int)
            or calls_per_minute < 1
        ):
            raise ValueError(f"calls_per_minute must be a positive integer, got {calls_per_minute!r}")
        self.calls_per_minute = calls_per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: deque[float] = deque()

    def try_acquire(self) -> bool:
        """Admit one call now (`True`) or refuse it (`False`); never blocks."""
        now = self._clock()
        with self._lock:
            while self._calls and now - self._calls[0] >= _WINDOW_SECONDS:
                self._calls.popleft()
            if len(self._calls) >= self.calls_per_minute:
                return False
            self._calls.append(now)
            return True


class DailySpendLimit:
    """At most `usd_per_day` of judge spend per UTC day; `clock` is the wall clock (seconds since epoch)."""

    def __init__(self, usd_per_day: float, *, clock: Callable[[], float] = time.time) -> None:
        if (
            isinstance(usd_per_day, bool)
            or not isinstance(usd_per_day, int | float)
            or not math.isfinite(usd_per_day)
            or usd_per_day <= 0
        ):
            raise ValueError(f"daily_budget_usd must be a positive number, got {usd_per_day!r}")
        self.usd_per_day = float(usd_per_day)
        self._clock = clock
        self._lock = threading.Lock()
        self._day = self._today()
        self._spent = 0.0
        self._reserved = 0.0
        self._estimate = 0.0

    def _today(self) -> int:
        return int(self._clock() // _DAY_SECONDS)

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            self._spent = 0.0

    @property
    def spent_today_usd(self) -> float:
        with self._lock:
            self._roll()
            return self._spent

    def reserve(self) -> float | None:
        """Reserve the estimated cost of one call; `None` when it would not fit in today's budget."""
        with self._lock:
            self._roll()
            committed = self._spent + self._reserved
            if committed >= self.usd_per_day or committed + self._estimate > self.usd_per_day:
                return None
            self._reserved += self._estimate
            return self._estimate

    def release(self, reservation: float) -> None:
        """Give a reservation back: the call was not made."""
        with self._lock:
            self._reserved = max(self._reserved - reservation, 0.0)

    def settle(self, reservation: float, cost_usd: float | None) -> None:
        """Replace a reservation by the call's cost (`None`: unknown, charged at the reservation)."""
        with self._lock:
            self._roll()
            self._reserved = max(self._reserved - reservation, 0.0)
            charged = reservation if cost_usd is None else cost_usd
            self._spent += charged
            if cost_usd is not None:
                self._estimate = cost_usd
