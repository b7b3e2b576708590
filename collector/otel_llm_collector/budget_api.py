"""HTTP handler for cost budgets.

    register(router, tracker, lock)

`GET /api/v1/budgets`: every budget at the tracker's current event time (its last evaluation)::

    {"at_ns": ..., "budgets": [{"name", "scope", "match": {"service": ...}, "at_ns",
      "daily": {"period", "start_ns", "end_ns", "spend_usd", "calls", "unpriced_calls", "cache_hit_ratio",
                "limit_usd", "prorated_limit_usd", "ratio", "band"},
      "monthly": {...}, "projected_month_end_usd",
      "spikes": [{"kind", "minute_start_ns", "value_usd", "baseline_usd", "ratio", "baseline_minutes",
                  "state", "severity"}],
      "firing": ["BudgetOverrun/P3"]}]}

`?name=<budget>` returns that budget alone (`{"at_ns", "budgets": [...]}`, 404 for an unknown name).
Reads run under `lock` (the ingest worker's), so they never see a half-applied batch.
"""

from __future__ import annotations

import threading
from typing import Any

from otel_llm_collector.budgets import BudgetTracker
from otel_llm_collector.router import HttpError, Request, Response, Router

__all__ = ["budgets_payload", "register"]


def budgets_payload(tracker: BudgetTracker, name: str | None = None) -> dict[str, Any]:
    """The `/api/v1/budgets` document; raise `KeyError` for an unknown budget `name`."""
    at_ns = tracker.now_ns
    statuses = [tracker.status(name, at_ns)] if name else tracker.statuses(at_ns)
    return {"at_ns": at_ns, "budgets": [s.to_dict() for s in statuses]}


def register(router: Router, tracker: BudgetTracker, lock: threading.Lock) -> None:
    """Add `GET /api/v1/budgets` to `router`."""

    def list_budgets(request: Request) -> Response:
        name = (request.query_value("name") or "").strip() or None
        try:
            with lock:
                payload = budgets_payload(tracker, name)
        except KeyError:
            known = ", ".join(b.name for b in tracker.budgets) or "none"
            raise HttpError(404, f"no budget named {name!r} (budgets: {known})") from None
        return Response.json(200, payload)

    router.add("GET", "/api/v1/budgets", list_budgets)
