"""Kill switches: per service and feature, degrade an LLM feature gracefully without a redeploy.

A switch is identified by ``(service, feature, kind)``; ``feature`` ``"*"`` covers every feature of the
service. Kinds and their ``value``:

    disable_tools       null                                   the app calls the model without tools
    disable_retrieval   null                                   the app skips retrieval
    downgrade_model     {"from": "gpt-4o", "to": "gpt-4o-mini"}  the app swaps the model
    static_response     "We are busy, please retry later."     the app answers with this text

`KillSwitches(state_dir)` keeps them in ``<state_dir>/control.sqlite3`` (the registry's file, its own
tables). `set` creates or replaces a switch, enabled or not; `clear` disables it (the row stays, so the
list shows what was switched off and by whom). Each change writes an audit row in the same transaction.
The instrumentation reads the enabled switches of its service through ``GET /api/v1/control``
(`for_service`), so a flip reaches running apps within their refresh interval.

Errors: `Invalid` (400, the message names the field) and `NotFound` (404), from `registry`'s family.
Threading: one connection behind a lock; any thread may call, each call is one short transaction.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from otel_llm_collector.registry import Invalid, NotFound, open_control_database, rfc3339

__all__ = ["KINDS", "KillSwitches", "Switch", "SwitchAuditEntry", "SwitchKind", "check_kind", "check_value"]

SwitchKind = Literal["disable_tools", "disable_retrieval", "downgrade_model", "static_response"]
KINDS: Final[tuple[str, ...]] = get_args(SwitchKind)
MAX_NAME_CHARS: Final = 200
MAX_STATIC_RESPONSE_CHARS: Final = 64 * 1024
MAX_REASON_CHARS: Final = 2000

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS kill_switches (
    service TEXT NOT NULL,
    feature TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    set_at REAL NOT NULL,
    set_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (service, feature, kind)
);
CREATE TABLE IF NOT EXISTS kill_switch_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    service TEXT NOT NULL,
    feature TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS kill_switch_audit_no_update BEFORE UPDATE ON kill_switch_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS kill_switch_audit_no_delete BEFORE DELETE ON kill_switch_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass(frozen=True, slots=True)
class Switch:
    service: str
    feature: str
    kind: SwitchKind
    value: Any
    """None, a ``{"from", "to"}`` mapping or a string, by kind (see the module docstring)."""
    enabled: bool
    set_at: float
    set_by: str
    reason: str

    def to_control(self) -> dict[str, Any]:
        """The entry of ``GET /api/v1/control``: exactly the fields the instrumentation reads."""
        return {
            "service": self.service,
            "feature": self.feature,
            "kind": self.kind,
            "value": self.value,
            "set_at": rfc3339(self.set_at),
            "set_by": self.set_by,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.to_control(), "enabled": self.enabled, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class SwitchAuditEntry:
    id: int
    at: float
    service: str
    feature: str
    kind: str
    action: str
    by: str
    reason: str
    before: Mapping[str, Any]
    after: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": rfc3339(self.at),
            "service": self.service,
            "feature": self.feature,
            "kind": self.kind,
            "action": self.action,
            "by": self.by,
            "reason": self.reason,
            "before": dict(self.before),
            "after": dict(self.after),
        }


def _check_name(field_name: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise Invalid(f"{field_name}: required (a non-empty string)")
    if len(value) > MAX_NAME_CHARS or any(ord(c) < 32 for c in value):
        raise Invalid(f"{field_name}: at most {MAX_NAME_CHARS} printable characters")
    return value


def check_kind(kind: str) -> SwitchKind:
    if kind not in KINDS:
        raise Invalid(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    return kind  # type: ignore[return-value]


def check_value(kind: SwitchKind, value: Any) -> Any:
    """The value a switch of ``kind`` may carry, or `Invalid` naming ``value``."""
    if kind in ("disable_tools", "disable_retrieval"):
        if value is not None:
            raise Invalid(f"value: {kind} takes no value (null)")
        return None
    if kind == "downgrade_model":
        if (
            not isinstance(value, Mapping)
            or set(value) != {"from", "to"}
            or not all(isinstance(v, str) and v.strip() for v in value.values())
        ):
            raise Invalid('value: downgrade_model expects {"from": "<model>", "to": "<model>"}')
        return {"from": value["from"].strip(), "to": value["to"].strip()}
    if not isinstance(value, str) or not value.strip():
        raise Invalid("value: static_response expects the response text (a non-empty string)")
    if len(value) > MAX_STATIC_RESPONSE_CHARS:
        raise Invalid(f"value: at most {MAX_STATIC_RESPONSE_CHARS} characters")
    return value


class KillSwitches:
    """The switch table and its audit log in ``<state_dir>/control.sqlite3``."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path, self._conn = open_control_database(path)
        self._clock = clock
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> KillSwitches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set(
        self,
        service: str,
        feature: str,
        kind: str,
        value: Any = None,
        *,
        enabled: bool = True,
        by: str,
        reason: str = "",
    ) -> Switch:
        """Create or replace the switch ``(service, feature, kind)``."""
        service = _check_name("service", service)
        feature = _check_name("feature", feature)
        checked_kind = check_kind(kind)
        checked_value = check_value(checked_kind, value)
        by = _check_name("by", by)
        reason = reason.strip()
        if len(reason) > MAX_REASON_CHARS:
            raise Invalid(f"reason: at most {MAX_REASON_CHARS} characters")
        now = self._clock()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._get(service, feature, checked_kind)
                self._conn.execute(
                    "INSERT OR REPLACE INTO kill_switches"
                    " (service, feature, kind, value, enabled, set_at, set_by, reason)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        service,
                        feature,
                        checked_kind,
                        json.dumps(checked_value),
                        int(enabled),
                        now,
                        by,
                        reason,
                    ),
                )
                after = self._get(service, feature, checked_kind)
                assert after is not None
                action = "enable" if enabled else "disable"
                self._conn.execute(
                    "INSERT INTO kill_switch_audit"
                    " (at, service, feature, kind, action, by, reason, before, after)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        now,
                        service,
                        feature,
                        checked_kind,
                        action,
                        by,
                        reason,
                        json.dumps(_state(before)),
                        json.dumps(_state(after)),
                    ),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return after

    def clear(self, service: str, feature: str, kind: str, *, by: str, reason: str = "") -> Switch:
        """Disable an existing switch (its value is kept); `NotFound` when it was never set."""
        checked_kind = check_kind(kind)
        with self._lock:
            existing = self._get(service.strip(), feature.strip(), checked_kind)
        if existing is None:
            raise NotFound(f"no {kind} switch for service {service!r} feature {feature!r}")
        return self.set(
            existing.service,
            existing.feature,
            checked_kind,
            existing.value,
            enabled=False,
            by=by,
            reason=reason,
        )

    def list(self, *, include_disabled: bool = True) -> builtins.list[Switch]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM kill_switches ORDER BY service, feature, kind"
            ).fetchall()
        switches = [_switch(row) for row in rows]
        return [s for s in switches if include_disabled or s.enabled]

    def for_service(self, service: str | None) -> builtins.list[Switch]:
        """The enabled switches of ``service`` (of every service when None): what the apps must honour."""
        return [s for s in self.list(include_disabled=False) if service is None or s.service == service]

    def audit(self, *, limit: int = 1000) -> builtins.list[SwitchAuditEntry]:
        """The last ``limit`` audit rows, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM kill_switch_audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [
            SwitchAuditEntry(
                id=row["id"],
                at=row["at"],
                service=row["service"],
                feature=row["feature"],
                kind=row["kind"],
                action=row["action"],
                by=row["by"],
                reason=row["reason"],
                before=json.loads(row["before"]),
                after=json.loads(row["after"]),
            )
            for row in reversed(rows)
        ]

    def _get(self, service: str, feature: str, kind: str) -> Switch | None:
        row = self._conn.execute(
            "SELECT * FROM kill_switches WHERE service = ? AND feature = ? AND kind = ?",
            (service, feature, kind),
        ).fetchone()
        return None if row is None else _switch(row)


def _switch(row: Any) -> Switch:
    return Switch(
        service=row["service"],
        feature=row["feature"],
        kind=row["kind"],
        value=json.loads(row["value"]),
        enabled=bool(row["enabled"]),
        set_at=row["set_at"],
        set_by=row["set_by"],
        reason=row["reason"],
    )


def _state(switch: Switch | None) -> dict[str, Any]:
    return {} if switch is None else {"enabled": switch.enabled, "value": switch.value}
