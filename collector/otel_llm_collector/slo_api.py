"""HTTP handlers for SLOs and canary analysis.

    register(router, tracker, canary, lock)

`GET /api/v1/slos`: every SLO at the tracker's current event time (its last evaluation)::

    {"at_ns": ..., "slos": [{"name", "kind", "objective", "period", "good", "total",
      "error_budget_consumed", "error_budget_remaining", "release_policy", "burn_rates": {"5m": ...},
      "firing": ["P1"]}]}

`GET /api/v1/canary?name=<group>&baseline=<version>&candidate=<version>`: the `CanaryReport` as JSON
(verdict `pass`/`marginal`/`fail`/`inconclusive`, score, per-metric verdicts); 400 when a parameter is
missing, 404 when the group or a version has no samples.

Reads run under `lock` (the ingest worker's), so they never see a half-applied batch.
"""

from __future__ import annotations

import threading

from otel_llm_collector.canary import CanaryCollector
from otel_llm_collector.router import HttpError, Request, Response, Router
from otel_llm_collector.slo import SloTracker

__all__ = ["register"]


def register(router: Router, tracker: SloTracker, canary: CanaryCollector, lock: threading.Lock) -> None:
    """Add `GET /api/v1/slos` and `GET /api/v1/canary` to `router`."""

    def list_slos(request: Request) -> Response:
        with lock:
            at_ns = tracker.now_ns
            statuses = tracker.statuses(at_ns)
        return Response.json(200, {"at_ns": at_ns, "slos": [s.to_dict() for s in statuses]})

    def canary_report(request: Request) -> Response:
        params = {p: (request.query_value(p) or "").strip() for p in ("name", "baseline", "candidate")}
        missing = [p for p, v in params.items() if not v]
        if missing:
            raise HttpError(400, f"missing query parameter(s): {', '.join(missing)}")
        with lock:
            report = canary.compare(
                params["name"], baseline=params["baseline"], candidate=params["candidate"]
            )
            versions = canary.versions(params["name"])
        if report is None:
            known = ", ".join(versions) or "none"
            raise HttpError(
                404,
                f"no samples for {params['name']} {params['baseline']} and {params['candidate']} "
                f"(versions seen: {known})",
            )
        return Response.json(200, report.to_dict())

    router.add("GET", "/api/v1/slos", list_slos)
    router.add("GET", "/api/v1/canary", canary_report)
