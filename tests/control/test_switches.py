"""Kill switches: values checked by kind, enabled ones served per service, every change audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from otel_llm_collector.registry import Invalid, NotFound
from otel_llm_collector.switches import KillSwitches


@pytest.fixture
def switches(tmp_path: Path) -> Iterator[KillSwitches]:
    with KillSwitches(tmp_path, clock=lambda: 1_800_000_000.0) as store:
        yield store


def test_set_and_for_service_return_only_enabled_switches_of_that_service(switches: KillSwitches) -> None:
    switches.set("checkout", "*", "disable_tools", by="ops", reason="tool outage")
    switches.set("checkout", "chat", "downgrade_model", {"from": "gpt-4o", "to": "gpt-4o-mini"}, by="ops")
    switches.set("search", "answer", "static_response", "Search is resting.", by="ops")
    switches.set("checkout", "chat", "disable_retrieval", enabled=False, by="ops")
    found = switches.for_service("checkout")
    assert [(s.feature, s.kind, s.value) for s in found] == [
        ("*", "disable_tools", None),
        ("chat", "downgrade_model", {"from": "gpt-4o", "to": "gpt-4o-mini"}),
    ]
    assert len(switches.for_service(None)) == 3
    assert len(switches.list()) == 4
    assert found[0].to_control() == {
        "service": "checkout",
        "feature": "*",
        "kind": "disable_tools",
        "value": None,
        "set_at": "2027-01-15T08:00:00.000Z",
        "set_by": "ops",
    }


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("disable_tools", "x", "takes no value"),
        ("downgrade_model", {"from": "gpt-4o"}, "downgrade_model expects"),
        ("downgrade_model", "gpt-4o-mini", "downgrade_model expects"),
        ("static_response", "", "static_response expects"),
        ("static_response", None, "static_response expects"),
        ("shutdown", None, "kind: expected one of"),
    ],
)
def test_values_are_checked_by_kind(switches: KillSwitches, kind: str, value: object, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        switches.set("svc", "chat", kind, value, by="ops")
    assert switches.list() == []
    assert switches.audit() == []


def test_clear_disables_keeps_the_row_and_audits(switches: KillSwitches) -> None:
    switches.set("svc", "chat", "static_response", "Back soon.", by="ops", reason="incident 42")
    cleared = switches.clear("svc", "chat", "static_response", by="ops", reason="resolved")
    assert cleared.enabled is False
    assert cleared.value == "Back soon."
    assert switches.for_service("svc") == []
    audit = switches.audit()
    assert [(e.action, e.reason) for e in audit] == [("enable", "incident 42"), ("disable", "resolved")]
    assert audit[0].before == {}
    assert audit[1].before == {"enabled": True, "value": "Back soon."}
    assert audit[1].after == {"enabled": False, "value": "Back soon."}
    with pytest.raises(NotFound):
        switches.clear("svc", "other", "disable_tools", by="ops")
