"""The control modules' public names, pinned: a change here is a change to what other code may import."""

from __future__ import annotations

import pytest
from otel_llm_collector import control_api, prompts_cli, registry, switches

EXPECTED = {
    registry: [
        "BASELINE_KEYS",
        "CONTROL_DATABASE_FILE",
        "AuditEntry",
        "Conflict",
        "Invalid",
        "NotFound",
        "PromptRegistry",
        "PromptVersion",
        "RegistryError",
        "RegistryRollbackTarget",
        "Status",
        "Tampered",
        "content_hash",
        "open_control_database",
        "rfc3339",
    ],
    switches: [
        "KINDS",
        "KillSwitches",
        "Switch",
        "SwitchAuditEntry",
        "SwitchKind",
        "check_kind",
        "check_value",
    ],
    control_api: ["CanaryReader", "control_document", "register"],
    prompts_cli: ["DEFAULT_URL", "TOKEN_ENV", "add_parser", "main"],
}


@pytest.mark.parametrize("module", list(EXPECTED), ids=lambda m: m.__name__)
def test_exported_names_are_pinned_and_exist(module: object) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    assert exported == EXPECTED[module]  # type: ignore[index]
    for name in exported:
        assert hasattr(module, name), name


def test_error_family_is_one_tree() -> None:
    for error in (registry.NotFound, registry.Conflict, registry.Invalid, registry.Tampered):
        assert issubclass(error, registry.RegistryError)
