"""The control plane over HTTP: the prompt registry, kill switches, and the document apps poll.

    GET  /api/v1/control[?service=S]          open: active prompt versions and enabled switches (below)
    GET  /api/v1/prompts                      every prompt's active version (no text)
    GET  /api/v1/prompts/versions?name=N      all versions of N, with text
    GET  /api/v1/prompts/active?name=N        the active version of N, with text (404 if none)
    POST /api/v1/prompts/register             {"name", "version", "text", "created_by", "metadata",
                                               "baselines", "auto_rollback"} -> 201; 409 if it exists
    POST /api/v1/prompts/deploy               {"name", "version", "by", "reason"}
    POST /api/v1/prompts/promote              {"name", "version", "by", "reason", "allow_marginal"}: deploy
                                               only on the canary verdict `pass` (or `marginal` if allowed)
                                               against the active version; 409 with the report otherwise
    POST /api/v1/prompts/rollback             {"name", "by", "reason" (required), "automatic"}; 409 without a
                                               reference; "automatic": true audits it as `auto_rollback`
    POST /api/v1/prompts/deprecate            {"name", "version", "by", "reason"}
    GET  /api/v1/audit[?name=N]               the registry's audit log, oldest first
    GET  /api/v1/switches                     every switch, enabled or not
    POST /api/v1/switches                     {"service", "feature", "kind", "value", "enabled", "by",
                                               "reason"}; "enabled": false without "value" clears an
                                               existing switch (404 if there is none)
    GET  /api/v1/switches/audit               the switches' audit log

The control document, what the instrumentation reads on each refresh::

    {"prompts": {"<name>": {"version": "1.2.0", "content_hash": "<sha256 hex>"}},
     "switches": [{"service", "feature", "kind", "value", "set_at", "set_by"}],
     "generated_at": "<RFC 3339>"}

It is always open (apps carry no admin token) and never fails because of one prompt: a tampered active
version is left out (and logged and audited by the registry), so the apps keep their last known good
version of that prompt while the rest still reaches them.

Tokens: every POST needs ``Authorization: Bearer <api_token>`` (`alert_api.require_token`: 401 without,
403 wrong or none configured). Reads are open unless ``reads_need_token``. Errors: a bad body is 400
naming the field; `registry`'s errors map NotFound 404, Conflict 409, Invalid 400, Tampered 500.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from otel_llm_collector.alert_api import require_token
from otel_llm_collector.canary import CanaryReport
from otel_llm_collector.registry import (
    Conflict,
    Invalid,
    NotFound,
    PromptRegistry,
    PromptVersion,
    RegistryError,
    Tampered,
    rfc3339,
)
from otel_llm_collector.router import HttpError, Request, Response, Router
from otel_llm_collector.switches import KillSwitches

__all__ = ["CanaryReader", "control_document", "register"]

CanaryReader = Callable[[str, str, str], CanaryReport | None]
"""`(prompt, baseline, candidate)` -> the canary comparison of two of its versions, None without data."""

_STATUS: dict[type[RegistryError], int] = {NotFound: 404, Conflict: 409, Invalid: 400, Tampered: 500}
_MISSING = object()


def control_document(
    registry: PromptRegistry, switches: KillSwitches, service: str | None, *, now: float
) -> dict[str, Any]:
    """What ``GET /api/v1/control`` answers: a pure read of both stores."""
    prompts = {
        name: {"version": version.version, "content_hash": version.content_hash}
        for name, version in sorted(registry.active_versions().items())
    }
    return {
        "prompts": prompts,
        "switches": [s.to_control() for s in switches.for_service(service)],
        "generated_at": rfc3339(now),
    }


def _json_body(request: Request) -> dict[str, Any]:
    try:
        document = json.loads(request.body or b"null")
    except ValueError:
        raise HttpError(400, "body: expected a JSON object") from None
    if not isinstance(document, dict):
        raise HttpError(400, "body: expected a JSON object")
    return document


def _string(document: dict[str, Any], name: str, *, required: bool = True, default: str = "") -> str:
    value = document.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise HttpError(400, f"{name}: required (a string)")
        return default
    if not isinstance(value, str):
        raise HttpError(400, f"{name}: expected a string")
    if required and not value.strip():
        raise HttpError(400, f"{name}: required (a non-empty string)")
    return value


def _bool(document: dict[str, Any], name: str, default: bool) -> bool:
    value = document.get(name, default)
    if not isinstance(value, bool):
        raise HttpError(400, f"{name}: expected true or false")
    return value


def _object(document: dict[str, Any], name: str) -> dict[str, Any]:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HttpError(400, f"{name}: expected a JSON object")
    return value


def _query(request: Request, name: str) -> str:
    value = request.query_value(name)
    if not value:
        raise HttpError(400, f"{name}: required query parameter (?{name}=...)")
    return value


def _handled(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Turn the registry's expected failures into their HTTP statuses."""

    def wrapper(request: Request) -> Response:
        try:
            return handler(request)
        except RegistryError as exc:
            raise HttpError(_STATUS.get(type(exc), 400), exc.message) from None

    return wrapper


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise HttpError(400, f"{name}: expected true or false")
    return value


def register(
    router: Router,
    registry: PromptRegistry,
    switches: KillSwitches,
    *,
    api_token: Callable[[], str | None],
    reads_need_token: bool = False,
    clock: Callable[[], float] = time.time,
    on_deploy: Callable[[PromptVersion, str], None] | None = None,
    canary_report: CanaryReader | None = None,
) -> None:
    """Add the control routes. ``api_token`` is called per request, so a rotated token applies at once.
    ``on_deploy(version, reason)`` hears of every deploy made through the API (deployment correlation)."""

    def read_guard(request: Request) -> None:
        if reads_need_token:
            require_token(request, api_token())

    def control(request: Request) -> Response:
        document = control_document(registry, switches, request.query_value("service"), now=clock())
        return Response.json(200, document)

    def list_prompts(request: Request) -> Response:
        read_guard(request)
        return Response.json(200, {"prompts": [v.to_dict(include_text=False) for v in registry.prompts()]})

    def list_versions(request: Request) -> Response:
        read_guard(request)
        name = _query(request, "name")
        return Response.json(200, {"name": name, "versions": [v.to_dict() for v in registry.versions(name)]})

    def get_active(request: Request) -> Response:
        read_guard(request)
        return Response.json(200, {"prompt": registry.active(_query(request, "name")).to_dict()})

    def post_register(request: Request) -> Response:
        require_token(request, api_token())
        body = _json_body(request)
        version = registry.register(
            _string(body, "name"),
            _string(body, "version"),
            _string(body, "text"),
            created_by=_string(body, "created_by"),
            metadata=_object(body, "metadata"),
            baselines=_object(body, "baselines"),
            auto_rollback=_bool(body, "auto_rollback", False),
        )
        return Response.json(201, {"prompt": version.to_dict()})

    def post_deploy(request: Request) -> Response:
        require_token(request, api_token())
        body = _json_body(request)
        version = registry.deploy(
            _string(body, "name"),
            _string(body, "version"),
            by=_string(body, "by"),
            reason=_string(body, "reason", required=False),
            deprecate_older=_flag(body, "deprecate_older"),
        )
        if on_deploy is not None:
            on_deploy(version, _string(body, "reason", required=False))
        return Response.json(200, {"prompt": version.to_dict()})

    def post_promote(request: Request) -> Response:
        """Deploy a candidate only when the canary comparison with the active version says it is safe."""
        require_token(request, api_token())
        body = _json_body(request)
        name, version = _string(body, "name"), _string(body, "version")
        by, reason = _string(body, "by"), _string(body, "reason", required=False)
        accept = ("pass", "marginal") if _flag(body, "allow_marginal") else ("pass",)
        active = registry.active(name).version
        report = canary_report(name, active, version) if canary_report is not None else None
        if report is None:
            message = (
                f"no canary data comparing {name} {version} with the active {active}: serve both at once "
                "(e.g. a share of traffic on the candidate) before promoting"
            )
            return Response.json(409, {"error": message, "canary": None})
        if report.verdict not in accept:
            message = f"canary verdict {report.verdict} for {name} {version} against {active}: not promoted"
            return Response.json(409, {"error": message, "canary": report.to_dict()})
        why = f"promoted on canary {report.verdict} (score {report.score:.0f})" + (
            f": {reason}" if reason else ""
        )
        promoted = registry.deploy(name, version, by=by, reason=why)
        if on_deploy is not None:
            on_deploy(promoted, why)
        return Response.json(200, {"prompt": promoted.to_dict(), "canary": report.to_dict()})

    def post_rollback(request: Request) -> Response:
        require_token(request, api_token())
        body = _json_body(request)
        version = registry.rollback(
            _string(body, "name"),
            _string(body, "by"),
            _string(body, "reason"),
            automatic=_flag(body, "automatic"),
        )
        return Response.json(200, {"prompt": version.to_dict()})

    def post_deprecate(request: Request) -> Response:
        require_token(request, api_token())
        body = _json_body(request)
        version = registry.deprecate(
            _string(body, "name"),
            _string(body, "version"),
            by=_string(body, "by"),
            reason=_string(body, "reason", required=False),
        )
        return Response.json(200, {"prompt": version.to_dict()})

    def get_audit(request: Request) -> Response:
        read_guard(request)
        entries = registry.audit(request.query_value("name") or None)
        return Response.json(200, {"audit": [e.to_dict() for e in entries]})

    def list_switches(request: Request) -> Response:
        read_guard(request)
        return Response.json(200, {"switches": [s.to_dict() for s in switches.list()]})

    def post_switch(request: Request) -> Response:
        require_token(request, api_token())
        body = _json_body(request)
        enabled = _bool(body, "enabled", True)
        if not enabled and "value" not in body:
            # Switching off needs no value: the stored one is kept (404 if the switch was never set).
            switch = switches.clear(
                _string(body, "service"),
                _string(body, "feature"),
                _string(body, "kind"),
                by=_string(body, "by"),
                reason=_string(body, "reason", required=False),
            )
            return Response.json(200, {"switch": switch.to_dict()})
        switch = switches.set(
            _string(body, "service"),
            _string(body, "feature"),
            _string(body, "kind"),
            body.get("value"),
            enabled=enabled,
            by=_string(body, "by"),
            reason=_string(body, "reason", required=False),
        )
        return Response.json(200, {"switch": switch.to_dict()})

    def switch_audit(request: Request) -> Response:
        read_guard(request)
        return Response.json(200, {"audit": [e.to_dict() for e in switches.audit()]})

    router.add("GET", "/api/v1/control", _handled(control))
    router.add("GET", "/api/v1/prompts", _handled(list_prompts))
    router.add("GET", "/api/v1/prompts/versions", _handled(list_versions))
    router.add("GET", "/api/v1/prompts/active", _handled(get_active))
    router.add("POST", "/api/v1/prompts/register", _handled(post_register))
    router.add("POST", "/api/v1/prompts/deploy", _handled(post_deploy))
    router.add("POST", "/api/v1/prompts/promote", _handled(post_promote))
    router.add("POST", "/api/v1/prompts/rollback", _handled(post_rollback))
    router.add("POST", "/api/v1/prompts/deprecate", _handled(post_deprecate))
    router.add("GET", "/api/v1/audit", _handled(get_audit))
    router.add("GET", "/api/v1/switches", _handled(list_switches))
    router.add("POST", "/api/v1/switches", _handled(post_switch))
    router.add("GET", "/api/v1/switches/audit", _handled(switch_audit))
