"""`/api/v1/alerts` and `/api/v1/deployments`, and the alert figures on `/metrics`.

    GET  /api/v1/alerts                  active alerts (pending, firing) and the recent transitions
    GET  /api/v1/deployments[?service=]  deployments seen in telemetry and posted, newest last
    POST /api/v1/deployments             {"id", "time" (RFC 3339, default now), "components": {...},
                                          "commit", "author"}; needs `Authorization: Bearer <api_token>`

Reads and writes go through the pipeline under the ingest worker's lock, so they see a consistent state.
Mutations need the configured bearer token: no header is 401, a wrong token 403, and with no token
configured every mutation is refused (403) rather than left open.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from otel_llm_collector.alerts import AlertEvent
from otel_llm_collector.correlation import Deployment
from otel_llm_collector.pipeline import Pipeline
from otel_llm_collector.router import HttpError, Request, Response, Router

MAX_RECENT_EVENTS = 1000
_ACTIVE = ("pending", "firing")


def require_token(request: Request, token: str | None) -> None:
    """Raise `HttpError` 401/403 unless the request carries the configured bearer token."""
    header = request.header("authorization")
    if not header:
        raise HttpError(401, "this endpoint needs 'Authorization: Bearer <token>'")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HttpError(401, "expected a bearer token")
    if not token:
        raise HttpError(
            403,
            "no API token is configured (api_token_env, OTEL_LLM_API_TOKEN by default): changes are refused",
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HttpError(403, "the bearer token is not valid")


class AlertLog:
    """Keeps the recent alert transitions for the API and counts them for /metrics. Thread-safe."""

    def __init__(self, max_events: int = MAX_RECENT_EVENTS) -> None:
        self._lock = threading.Lock()
        self._recent: deque[dict[str, Any]] = deque(maxlen=max_events)
        self.transitions: Counter[str] = Counter()

    def record(self, events: list[AlertEvent]) -> None:
        """Called by the pipeline (ingest worker thread) with each tick's transitions."""
        with self._lock:
            self.transitions.update(event.status for event in events)
            maxlen = self._recent.maxlen
            for event in events if maxlen is None else events[-maxlen:]:  # the rest would fall out
                self._recent.append(event.to_dict())

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent)


def _parse_time_ns(value: object) -> int:
    if value is None:
        return time.time_ns()
    if not isinstance(value, str):
        raise HttpError(400, "time: expected an RFC 3339 timestamp such as 2026-01-01T10:12:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HttpError(400, f"time: not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise HttpError(400, "time: a timezone is required (e.g. a trailing Z)")
    return int(parsed.timestamp() * 1e9)


def parse_deployment(body: bytes) -> Deployment:
    """A posted deployment, or `HttpError` 400 naming the bad field."""
    try:
        document = json.loads(body or b"null")
    except ValueError:
        raise HttpError(400, "body: expected a JSON object") from None
    if not isinstance(document, dict):
        raise HttpError(400, "body: expected a JSON object")
    deployment_id = document.get("id")
    if not isinstance(deployment_id, str) or not deployment_id.strip() or len(deployment_id) > 200:
        raise HttpError(400, "id: expected a non-empty string (at most 200 characters)")
    components = document.get("components", {})
    if not isinstance(components, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in components.items()
    ):
        raise HttpError(400, 'components: expected an object of strings, e.g. {"service": "checkout"}')
    for name in ("commit", "author"):
        if not isinstance(document.get(name, ""), str):
            raise HttpError(400, f"{name}: expected a string")
    return Deployment(
        id=deployment_id.strip(),
        time_ns=_parse_time_ns(document.get("time")),
        components=dict(components),
        commit=document.get("commit", ""),
        author=document.get("author", ""),
    )


def register(
    router: Router,
    pipeline: Pipeline,
    lock: threading.Lock,
    log: AlertLog,
    *,
    api_token: Callable[[], str | None],
) -> None:
    """Add the alert and deployment routes."""

    def list_alerts(request: Request) -> Response:
        with lock:
            active = pipeline.active_alerts()
        return Response.json(
            200,
            {
                "alerts": [e.to_dict() for e in active if e.status in _ACTIVE],
                "recent": log.recent(),
            },
        )

    def list_deployments(request: Request) -> Response:
        service = request.query_value("service")
        with lock:
            found = pipeline.deployments.deployments()
        items = [
            d.to_dict() for d in found if service is None or d.components.get("service") in (None, service)
        ]
        return Response.json(200, {"deployments": items})

    def post_deployment(request: Request) -> Response:
        require_token(request, api_token())
        deployment = parse_deployment(request.body)
        with lock:
            pipeline.record_deployment(deployment)
        return Response.json(201, {"deployment": deployment.to_dict()})

    router.add("GET", "/api/v1/alerts", list_alerts)
    router.add("GET", "/api/v1/deployments", list_deployments)
    router.add("POST", "/api/v1/deployments", post_deployment)


def alert_metrics(pipeline: Pipeline, log: AlertLog) -> list[str]:
    """Prometheus lines: one `otel_llm_alert` series per active alert, and transitions by status."""
    from otel_llm_collector.exposition import escape_label_value

    lines = [
        "# HELP otel_llm_alert Active alerts (pending or firing) by rule, severity and series; value 1.",
        "# TYPE otel_llm_alert gauge",
    ]
    for event in pipeline.active_alerts():
        if event.status not in _ACTIVE:
            continue
        labels = {**event.labels, "state": event.status, "inhibited": "true" if event.inhibited else "false"}
        text = ",".join(f'{k}="{escape_label_value(str(v))}"' for k, v in sorted(labels.items()))
        lines.append(f"otel_llm_alert{{{text}}} 1")
    lines += [
        "# HELP otel_llm_alert_transitions_total Alert state transitions by status.",
        "# TYPE otel_llm_alert_transitions_total counter",
    ]
    for status, count in sorted(log.transitions.items()):
        lines.append(f'otel_llm_alert_transitions_total{{status="{status}"}} {count}')
    return lines
