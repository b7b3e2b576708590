"""The control HTTP API through the router: tokens, bodies, status codes and the control document."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otel_llm_collector import control_api
from otel_llm_collector.registry import PromptRegistry, content_hash
from otel_llm_collector.router import Request, Router
from otel_llm_collector.switches import KillSwitches

TOKEN = "s3cret-token"
GOOD = object()

MUTATIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "/api/v1/prompts/register",
        {"name": "p", "version": "9.0.0", "text": "t", "created_by": "a"},
    ),
    ("/api/v1/prompts/deploy", {"name": "support", "version": "1.1.0", "by": "bob"}),
    ("/api/v1/prompts/rollback", {"name": "support", "by": "bob", "reason": "r"}),
    ("/api/v1/prompts/deprecate", {"name": "support", "version": "1.1.0", "by": "bob"}),
    ("/api/v1/switches", {"service": "s", "feature": "f", "kind": "disable_tools", "by": "ops"}),
]


class Api:
    def __init__(self, tmp_path: Path, *, token: str | None = TOKEN, reads_need_token: bool = False) -> None:
        self.registry = PromptRegistry(tmp_path, clock=lambda: 1_800_000_000.0)
        self.switches = KillSwitches(tmp_path, clock=lambda: 1_800_000_000.0)
        self.router = Router()
        control_api.register(
            self.router,
            self.registry,
            self.switches,
            api_token=lambda: token,
            reads_need_token=reads_need_token,
            clock=lambda: 1_800_000_060.0,
        )

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        token: object = GOOD,
        query: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, Any]]:
        given = TOKEN if token is GOOD else token
        headers = {"authorization": f"Bearer {given}"} if given else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        params = {k: [v] for k, v in (query or {}).items()}
        response = self.router.dispatch(Request(method, path, params, headers, data))
        return response.status, json.loads(response.body)

    def close(self) -> None:
        self.registry.close()
        self.switches.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    app = Api(tmp_path)
    for version in ("1.0.0", "1.1.0"):
        status, _ = app.call(
            "POST",
            "/api/v1/prompts/register",
            {"name": "support", "version": version, "text": f"Be kind {version}", "created_by": "alice"},
        )
        assert status == 201
    assert (
        app.call("POST", "/api/v1/prompts/deploy", {"name": "support", "version": "1.0.0", "by": "b"})[0]
        == 200
    )
    yield app
    app.close()


@pytest.mark.parametrize(("path", "body"), MUTATIONS)
def test_every_mutation_needs_the_token(api: Api, path: str, body: dict[str, Any]) -> None:
    before = len(api.registry.audit()) + len(api.switches.audit())
    status, answer = api.call("POST", path, body, token=None)
    assert status == 401
    assert "Bearer" in answer["error"]
    assert api.call("POST", path, body, token="wrong")[0] == 403
    assert len(api.registry.audit()) + len(api.switches.audit()) == before


@pytest.mark.parametrize(("path", "body"), MUTATIONS)
def test_mutations_are_refused_when_no_token_is_configured(
    tmp_path: Path, path: str, body: dict[str, Any]
) -> None:
    app = Api(tmp_path, token=None)
    try:
        status, answer = app.call("POST", path, body, token="anything")
        assert status == 403
        assert "no API token is configured" in answer["error"]
    finally:
        app.close()


def test_reads_are_open_by_default_and_guarded_when_configured(tmp_path: Path) -> None:
    guarded = Api(tmp_path, reads_need_token=True)
    try:
        for path in ("/api/v1/prompts", "/api/v1/audit", "/api/v1/switches", "/api/v1/switches/audit"):
            assert guarded.call("GET", path, token=None)[0] == 401
            assert guarded.call("GET", path)[0] == 200
        assert guarded.call("GET", "/api/v1/control", token=None)[0] == 200
    finally:
        guarded.close()


def test_register_deploy_rollback_deprecate_flow(api: Api) -> None:
    status, listed = api.call("GET", "/api/v1/prompts", token=None)
    assert status == 200
    assert [(p["name"], p["version"]) for p in listed["prompts"]] == [("support", "1.0.0")]
    assert "text" not in listed["prompts"][0]

    status, deployed = api.call(
        "POST",
        "/api/v1/prompts/deploy",
        {"name": "support", "version": "1.1.0", "by": "bob", "reason": "tone"},
    )
    assert status == 200
    assert deployed["prompt"]["rollback_to"] == "1.0.0"

    status, active = api.call("GET", "/api/v1/prompts/active", token=None, query={"name": "support"})
    assert (status, active["prompt"]["version"], active["prompt"]["text"]) == (200, "1.1.0", "Be kind 1.1.0")

    status, back = api.call(
        "POST", "/api/v1/prompts/rollback", {"name": "support", "by": "carol", "reason": "bad"}
    )
    assert (status, back["prompt"]["version"]) == (200, "1.0.0")

    status, gone = api.call(
        "POST", "/api/v1/prompts/deprecate", {"name": "support", "version": "1.1.0", "by": "c"}
    )
    assert (status, gone["prompt"]["status"]) == (200, "deprecated")

    status, versions = api.call("GET", "/api/v1/prompts/versions", token=None, query={"name": "support"})
    assert [(v["version"], v["status"]) for v in versions["versions"]] == [
        ("1.0.0", "active"),
        ("1.1.0", "deprecated"),
    ]
    status, audit = api.call("GET", "/api/v1/audit", token=None, query={"name": "support"})
    assert [e["action"] for e in audit["audit"]] == [
        "register",
        "register",
        "deploy",
        "deploy",
        "rollback",
        "deprecate",
    ]
    assert audit["audit"][4]["by"] == "carol"
    assert audit["audit"][4]["reason"] == "bad"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/prompts/register", None, "body"),
        ("/api/v1/prompts/register", [1], "body"),
        ("/api/v1/prompts/register", {"version": "1.0.0", "text": "t", "created_by": "a"}, "name"),
        ("/api/v1/prompts/register", {"name": "p", "version": 1, "text": "t", "created_by": "a"}, "version"),
        (
            "/api/v1/prompts/register",
            {"name": "p", "version": "1", "text": "t", "created_by": "a"},
            "version",
        ),
        ("/api/v1/prompts/register", {"name": "p", "version": "1.0.0", "created_by": "a"}, "text"),
        ("/api/v1/prompts/register", {"name": "p", "version": "1.0.0", "text": "t"}, "created_by"),
        (
            "/api/v1/prompts/register",
            {"name": "p", "version": "1.0.0", "text": "t", "created_by": "a", "metadata": "x"},
            "metadata",
        ),
        (
            "/api/v1/prompts/register",
            {"name": "p", "version": "1.0.0", "text": "t", "created_by": "a", "auto_rollback": "yes"},
            "auto_rollback",
        ),
        (
            "/api/v1/prompts/register",
            {"name": "p", "version": "1.0.0", "text": "t", "created_by": "a", "baselines": {"quality": "hi"}},
            "baselines.quality",
        ),
        ("/api/v1/prompts/deploy", {"name": "support", "by": "b"}, "version"),
        ("/api/v1/prompts/rollback", {"name": "support", "by": "b"}, "reason"),
        ("/api/v1/prompts/rollback", {"name": "support", "by": "b", "reason": "  "}, "reason"),
        ("/api/v1/prompts/deprecate", {"name": "support", "version": "1.1.0"}, "by"),
        ("/api/v1/switches", {"service": "s", "feature": "f", "by": "o"}, "kind"),
        ("/api/v1/switches", {"service": "s", "feature": "f", "kind": "nope", "by": "o"}, "kind"),
        ("/api/v1/switches", {"service": "s", "feature": "f", "kind": "static_response", "by": "o"}, "value"),
        (
            "/api/v1/switches",
            {"service": "s", "feature": "f", "kind": "disable_tools", "enabled": 1, "by": "o"},
            "enabled",
        ),
    ],
)
def test_bad_bodies_are_400_naming_the_field(api: Api, path: str, body: object, field: str) -> None:
    status, answer = api.call("POST", path, body)
    assert status == 400
    assert answer["error"].startswith(f"{field}:")


def test_invalid_json_is_400(api: Api) -> None:
    status, answer = api.call("POST", "/api/v1/prompts/deploy", raw=b"{not json")
    assert (status, answer["error"]) == (400, "body: expected a JSON object")


def test_conflicts_are_409_and_missing_things_404(api: Api) -> None:
    register = {"name": "support", "version": "1.0.0", "text": "again", "created_by": "a"}
    assert api.call("POST", "/api/v1/prompts/register", register)[0] == 409
    status, answer = api.call(
        "POST", "/api/v1/prompts/rollback", {"name": "support", "by": "c", "reason": "r"}
    )
    assert status == 409
    assert "rollback reference" in answer["error"]
    assert (
        api.call("POST", "/api/v1/prompts/deploy", {"name": "support", "version": "1.0.0", "by": "b"})[0]
        == 409
    )
    assert (
        api.call("POST", "/api/v1/prompts/deploy", {"name": "support", "version": "7.0.0", "by": "b"})[0]
        == 404
    )
    assert api.call("GET", "/api/v1/prompts/active", query={"name": "ghost"})[0] == 404
    assert api.call("GET", "/api/v1/prompts/versions", query={"name": "ghost"})[0] == 404
    assert api.call("GET", "/api/v1/prompts/active")[0] == 400  # no ?name=


def test_control_document_lists_active_prompts_and_enabled_switches(api: Api) -> None:
    api.call(
        "POST",
        "/api/v1/switches",
        {
            "service": "checkout",
            "feature": "chat",
            "kind": "downgrade_model",
            "value": {"from": "gpt-4o", "to": "gpt-4o-mini"},
            "by": "ops",
            "reason": "cost spike",
        },
    )
    api.call(
        "POST",
        "/api/v1/switches",
        {"service": "search", "feature": "*", "kind": "disable_retrieval", "by": "ops"},
    )
    api.call(
        "POST",
        "/api/v1/switches",
        {
            "service": "checkout",
            "feature": "chat",
            "kind": "disable_tools",
            "value": None,
            "enabled": False,
            "by": "ops",
        },
    )
    status, document = api.call("GET", "/api/v1/control", token=None, query={"service": "checkout"})
    assert status == 200
    assert document == {
        "prompts": {"support": {"version": "1.0.0", "content_hash": content_hash("Be kind 1.0.0")}},
        "switches": [
            {
                "service": "checkout",
                "feature": "chat",
                "kind": "downgrade_model",
                "value": {"from": "gpt-4o", "to": "gpt-4o-mini"},
                "set_at": "2027-01-15T08:00:00.000Z",
                "set_by": "ops",
            }
        ],
        "generated_at": "2027-01-15T08:01:00.000Z",
    }
    _, everything = api.call("GET", "/api/v1/control", token=None)
    assert [s["service"] for s in everything["switches"]] == ["checkout", "search"]
    _, listed = api.call("GET", "/api/v1/switches", token=None)
    assert len(listed["switches"]) == 3
    _, audit = api.call("GET", "/api/v1/switches/audit", token=None)
    assert [e["reason"] for e in audit["audit"]] == ["cost spike", "", ""]


def test_tampered_prompt_is_a_500_on_read_and_left_out_of_control(api: Api) -> None:
    with sqlite3.connect(api.registry.path) as conn:
        conn.execute("UPDATE prompt_versions SET text = 'evil' WHERE version = '1.0.0'")
    status, answer = api.call("GET", "/api/v1/prompts/active", query={"name": "support"})
    assert status == 500
    assert "content hash mismatch" in answer["error"]
    assert api.call("GET", "/api/v1/prompts")[0] == 500
    status, document = api.call("GET", "/api/v1/control")
    assert (status, document["prompts"]) == (200, {})
    _, audit = api.call("GET", "/api/v1/audit", query={"name": "support"})
    assert audit["audit"][-1]["action"] == "tamper_detected"


def test_switch_off_without_value_keeps_the_stored_value(api: Api) -> None:
    switch = {"service": "s", "feature": "f", "kind": "static_response", "by": "ops"}
    assert api.call("POST", "/api/v1/switches", {**switch, "value": "Busy."})[0] == 200
    status, answer = api.call("POST", "/api/v1/switches", {**switch, "enabled": False, "reason": "over"})
    assert status == 200
    assert (answer["switch"]["enabled"], answer["switch"]["value"]) == (False, "Busy.")
    assert api.call("GET", "/api/v1/control")[1]["switches"] == []
    missing = {**switch, "feature": "other", "enabled": False}
    assert api.call("POST", "/api/v1/switches", missing)[0] == 404
