"""The prompt registry: versions of each prompt, which one is active, and an append-only audit log.

Construct one per collector with the state dir: ``PromptRegistry(state_dir)`` keeps its tables in
``<state_dir>/control.sqlite3`` (SQLite, WAL journal), apart from the window store, so that a registry
change never waits on a window snapshot. `KillSwitches` shares the file, not the tables.

Lifecycle of a version::

    register -> draft --deploy--> active --(deploy of another / rollback)--> staged --deploy--> active
                  \\                                                          \\
                   `--deprecate--> deprecated <------------------ deprecate --'

- `deploy` makes a version active and records the previous active version as its *rollback reference*.
  The previous active version becomes **staged**, not deprecated: it stays a valid rollback target, and a
  version is only retired by an explicit `deprecate` (a person's decision, recorded with a reason).
- `rollback` makes the active version's rollback reference active again (the rolled-back version becomes
  staged) and keeps the reference's own rollback reference, so repeated rollbacks walk back through the
  deploy history. A deprecated, missing or tampered reference is refused.
- The active version cannot be deprecated (deploy or roll back first), so a prompt never loses its active
  version by accident.

Integrity. Each version stores the SHA-256 of its UTF-8 text. Every read recomputes it; a mismatch (a text
edited in the database behind the registry's back) raises `Tampered`, logs an error and appends one
``tamper_detected`` audit row per version, instead of serving a text nobody registered.

Audit. Each mutation writes its audit row (who, when, why, action, before, after) in the same transaction
as the change, so the log never misses or invents a change. SQLite triggers refuse UPDATE and DELETE on the
audit table.

Errors. Expected failures raise one family, which the HTTP API maps to status codes::

    RegistryError            base; never raised itself
     +-- NotFound            no such prompt or version                       (404)
     +-- Conflict            the state forbids it: version exists, no        (409)
     |                       rollback reference, deprecating the active one
     +-- Invalid             a bad argument; the message starts with the     (400)
     |                       field name ("version: expected ...")
     +-- Tampered            stored text does not match its content hash     (500)

Threading: one connection behind a lock; every public method may be called from any thread and blocks for
one short SQLite transaction. Concurrent deploys and rollbacks serialise on the lock, and a partial unique
index guarantees at most one active version per prompt even if that were ever bypassed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
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
]

_logger = logging.getLogger(__name__)

CONTROL_DATABASE_FILE: Final = "control.sqlite3"
BASELINE_KEYS: Final = frozenset({"quality", "latency_p50_s", "latency_p95_s", "token_budget"})
MAX_NAME_CHARS: Final = 200
MAX_TEXT_BYTES: Final = 1024 * 1024
MAX_METADATA_BYTES: Final = 64 * 1024
MAX_REASON_CHARS: Final = 2000

Status = Literal["draft", "staged", "active", "deprecated"]

# semver.org 2.0.0: MAJOR.MINOR.PATCH, optional pre-release and build metadata.
_SEMVER: Final = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS prompt_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    status TEXT NOT NULL,
    deployed_at REAL,
    deployed_by TEXT,
    metadata TEXT NOT NULL,
    baselines TEXT NOT NULL,
    rollback_to TEXT,
    auto_rollback INTEGER NOT NULL,
    UNIQUE (name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS prompt_versions_one_active ON prompt_versions (name)
    WHERE status = 'active';
CREATE TABLE IF NOT EXISTS prompt_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    name TEXT NOT NULL,
    version TEXT,
    action TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS prompt_audit_no_update BEFORE UPDATE ON prompt_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS prompt_audit_no_delete BEFORE DELETE ON prompt_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class RegistryError(Exception):
    """Base of the expected failures; ``message`` is meant for the person who asked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(RegistryError):
    """No such prompt, version or switch."""


class Conflict(RegistryError):
    """The current state forbids the change (it would be valid in another state)."""


class Invalid(RegistryError):
    """A bad argument; the message starts with the field's name."""


class Tampered(RegistryError):
    """The stored text no longer matches its content hash."""


def content_hash(text: str) -> str:
    """SHA-256 hex digest of the UTF-8 text: what the instrumentation compares to detect a change."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rfc3339(seconds: float | None) -> str | None:
    """UTC RFC 3339 with milliseconds and a ``Z``, the form every API timestamp uses."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_control_database(path: str | Path) -> tuple[Path, sqlite3.Connection]:
    """Open ``<state_dir>/control.sqlite3`` (or ``path`` itself when it names a ``.sqlite3`` file)."""
    given = Path(path)
    db_path = given if given.suffix in (".sqlite3", ".db") else given / CONTROL_DATABASE_FILE
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return db_path, conn


@dataclass(frozen=True, slots=True)
class PromptVersion:
    name: str
    version: str
    text: str
    content_hash: str
    created_at: float
    created_by: str
    status: Status
    deployed_at: float | None
    deployed_by: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    baselines: Mapping[str, float] = field(default_factory=dict)
    rollback_to: str | None = None
    """The version that was active before this one was last deployed: where a rollback goes."""
    auto_rollback: bool = False

    def to_dict(self, *, include_text: bool = True) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "content_hash": self.content_hash,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
            "created_by": self.created_by,
            "deployed_at": rfc3339(self.deployed_at),
            "deployed_by": self.deployed_by,
            "metadata": dict(self.metadata),
            "baselines": dict(self.baselines),
            "rollback_to": self.rollback_to,
            "auto_rollback": self.auto_rollback,
        }
        if include_text:
            document["text"] = self.text
        return document


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    name: str
    version: str | None
    action: str
    by: str
    reason: str
    before: Mapping[str, Any]
    after: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": rfc3339(self.at),
            "name": self.name,
            "version": self.version,
            "action": self.action,
            "by": self.by,
            "reason": self.reason,
            "before": dict(self.before),
            "after": dict(self.after),
        }


def _check_text(field_name: str, value: str, *, max_chars: int, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise Invalid(f"{field_name}: required (a non-empty string)")
    if len(value) > max_chars:
        raise Invalid(f"{field_name}: at most {max_chars} characters")
    if any(ord(c) < 32 for c in value):
        raise Invalid(f"{field_name}: control characters are not allowed")
    return value


def _check_baselines(baselines: Mapping[str, Any]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for key, value in baselines.items():
        if key not in BASELINE_KEYS:
            raise Invalid(
                f"baselines.{key}: unknown baseline (expected one of {', '.join(sorted(BASELINE_KEYS))})"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise Invalid(f"baselines.{key}: expected a non-negative number")
        if key == "quality" and value > 1:
            raise Invalid("baselines.quality: expected a score between 0 and 1")
        checked[key] = float(value)
    return checked


class PromptRegistry:
    """Prompt versions, the active one per prompt, and the audit log, in ``<state_dir>/control.sqlite3``."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path, self._conn = open_control_database(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending_tamper: list[tuple[PromptVersion, str]] = []
        """Detections inside a transaction that is about to roll back; written right after it."""
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> PromptRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- mutations ------------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        version: str,
        text: str,
        *,
        created_by: str,
        metadata: Mapping[str, Any] | None = None,
        baselines: Mapping[str, Any] | None = None,
        auto_rollback: bool = False,
    ) -> PromptVersion:
        """Add a draft version; `Conflict` when ``name``/``version`` exists (versions are immutable)."""
        name = _check_text("name", name, max_chars=MAX_NAME_CHARS)
        version = version.strip()
        if not _SEMVER.match(version):
            raise Invalid(f"version: expected a semantic version such as 1.2.0, got {version!r}")
        if not text.strip():
            raise Invalid("text: required (a non-empty string)")
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise Invalid(f"text: at most {MAX_TEXT_BYTES} bytes")
        created_by = _check_text("created_by", created_by, max_chars=MAX_NAME_CHARS)
        metadata_json = json.dumps(dict(metadata or {}), sort_keys=True)
        if len(metadata_json) > MAX_METADATA_BYTES:
            raise Invalid(f"metadata: at most {MAX_METADATA_BYTES} bytes of JSON")
        checked_baselines = _check_baselines(baselines or {})
        now = self._clock()
        digest = content_hash(text)
        with self._lock, self._transaction():
            if self._row(name, version) is not None:
                raise Conflict(f"{name} {version} is already registered; versions are immutable")
            self._conn.execute(
                "INSERT INTO prompt_versions (name, version, text, content_hash, created_at, created_by,"
                " status, metadata, baselines, auto_rollback) VALUES (?, ?, ?, ?, ?, ?, 'draft', ?, ?, ?)",
                (
                    name,
                    version,
                    text,
                    digest,
                    now,
                    created_by,
                    metadata_json,
                    json.dumps(checked_baselines, sort_keys=True),
                    int(auto_rollback),
                ),
            )
            self._audit(
                name, version, "register", created_by, "", {}, {"status": "draft", "content_hash": digest}
            )
            return self._version(name, version)

    def deploy(
        self, name: str, version: str, *, by: str, reason: str = "", deprecate_older: bool = False
    ) -> PromptVersion:
        """Make ``version`` active; the previous active version becomes staged and the rollback reference.

        ``deprecate_older`` also retires every other staged version (never the new rollback reference, so a
        rollback stays possible): the "deprecate as configured" step of a release process.
        """
        by = _check_text("by", by, max_chars=MAX_NAME_CHARS)
        reason = _check_text("reason", reason, max_chars=MAX_REASON_CHARS, required=False)
        with self._lock, self._transaction():
            target = self._version(name, version)
            if target.status == "active":
                raise Conflict(f"{name} {version} is already active")
            if target.status == "deprecated":
                raise Conflict(f"{name} {version} is deprecated; register a new version instead")
            previous = self._active(name)
            now = self._clock()
            if previous is not None:
                self._conn.execute(
                    "UPDATE prompt_versions SET status = 'staged' WHERE name = ? AND version = ?",
                    (name, previous.version),
                )
            rollback_to = previous.version if previous is not None else None
            if deprecate_older:
                retired = self._conn.execute(
                    "SELECT version FROM prompt_versions WHERE name = ? AND status = 'staged'"
                    " AND version != ? AND version != ?",
                    (name, version, rollback_to or ""),
                ).fetchall()
                for (old,) in retired:
                    self._conn.execute(
                        "UPDATE prompt_versions SET status = 'deprecated' WHERE name = ? AND version = ?",
                        (name, old),
                    )
                    self._audit(
                        name,
                        old,
                        "deprecate",
                        by,
                        "retired by a deploy",
                        {"status": "staged"},
                        {"status": "deprecated"},
                    )
            self._conn.execute(
                "UPDATE prompt_versions SET status = 'active', deployed_at = ?, deployed_by = ?,"
                " rollback_to = ? WHERE name = ? AND version = ?",
                (now, by, rollback_to, name, version),
            )
            self._audit(
                name,
                version,
                "deploy",
                by,
                reason,
                {"active": rollback_to, "status": target.status},
                {"active": version, "rollback_to": rollback_to},
            )
            return self._version(name, version)

    def rollback(self, name: str, by: str, reason: str, *, automatic: bool = False) -> PromptVersion:
        """Make the active version's rollback reference active again; ``reason`` is required.

        ``automatic`` marks the audit row ``auto_rollback`` instead of ``rollback`` so that the
        automatic-rollback safeguards (spacing, daily limit) can count their own rollbacks.
        """
        by = _check_text("by", by, max_chars=MAX_NAME_CHARS)
        reason = _check_text("reason", reason, max_chars=MAX_REASON_CHARS)
        with self._lock, self._transaction():
            current, target = self._candidate(name)
            now = self._clock()
            self._conn.execute(
                "UPDATE prompt_versions SET status = 'staged' WHERE name = ? AND version = ?",
                (name, current.version),
            )
            self._conn.execute(
                "UPDATE prompt_versions SET status = 'active', deployed_at = ?, deployed_by = ?"
                " WHERE name = ? AND version = ?",
                (now, by, name, target.version),
            )
            self._audit(
                name,
                target.version,
                "auto_rollback" if automatic else "rollback",
                by,
                reason,
                {"active": current.version},
                {"active": target.version, "rollback_to": target.rollback_to},
            )
            return self._version(name, target.version)

    def deprecate(self, name: str, version: str, *, by: str, reason: str = "") -> PromptVersion:
        """Retire a version: it can no longer be deployed or rolled back to. The active one is refused."""
        by = _check_text("by", by, max_chars=MAX_NAME_CHARS)
        reason = _check_text("reason", reason, max_chars=MAX_REASON_CHARS, required=False)
        with self._lock, self._transaction():
            target = self._version(name, version)
            if target.status == "active":
                raise Conflict(f"{name} {version} is active; deploy another version or roll back first")
            if target.status == "deprecated":
                raise Conflict(f"{name} {version} is already deprecated")
            self._conn.execute(
                "UPDATE prompt_versions SET status = 'deprecated' WHERE name = ? AND version = ?",
                (name, version),
            )
            self._audit(
                name, version, "deprecate", by, reason, {"status": target.status}, {"status": "deprecated"}
            )
            return self._version(name, version)

    # --- reads ----------------------------------------------------------------------------------------
    def active(self, name: str) -> PromptVersion:
        """The active version, verified; `NotFound` when the prompt has none."""
        with self._lock:
            found = self._active(name)
        if found is None:
            raise NotFound(f"prompt {name!r} has no active version")
        return found

    def versions(self, name: str) -> list[PromptVersion]:
        """Every version of ``name`` in registration order, verified; `NotFound` for an unknown prompt."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM prompt_versions WHERE name = ? ORDER BY id", (name,)
            ).fetchall()
            if not rows:
                raise NotFound(f"no prompt named {name!r}")
            return [self._verified(row) for row in rows]

    def prompts(self) -> list[PromptVersion]:
        """The active version of every prompt that has one, by name; `Tampered` if any fails its check."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM prompt_versions WHERE status = 'active' ORDER BY name"
            ).fetchall()
            return [self._verified(row) for row in rows]

    def active_versions(self) -> dict[str, PromptVersion]:
        """Like `prompts` but leaves out (and logs) tampered ones, for the control document.

        A running app keeps its last known good version of a prompt missing here, while the kill switches
        and the other prompts in the same document still reach it.
        """
        found: dict[str, PromptVersion] = {}
        with self._lock:
            rows = self._conn.execute("SELECT * FROM prompt_versions WHERE status = 'active'").fetchall()
            for row in rows:
                try:
                    found[row["name"]] = self._verified(row)
                except Tampered:
                    continue
        return found

    def predicted_quality(self) -> dict[tuple[str, str], float]:
        """`(name, version) -> baselines.quality` of every live version (not deprecated) that declares one:
        the predictions the calibration loop checks. One query; the text is neither read nor verified."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, version, baselines FROM prompt_versions WHERE status != 'deprecated'"
            ).fetchall()
        found: dict[tuple[str, str], float] = {}
        for row in rows:
            quality = json.loads(row["baselines"]).get("quality")
            if isinstance(quality, int | float):
                found[(row["name"], row["version"])] = float(quality)
        return found

    def rollback_candidate(self, name: str) -> PromptVersion:
        """Where `rollback` would go: the active version's reference, checked to exist, be live and intact.

        Raises `NotFound` (no active version), `Conflict` (no usable reference) or `Tampered`.
        """
        with self._lock:
            return self._candidate(name)[1]

    def audit(self, name: str | None = None, *, limit: int = 1000) -> list[AuditEntry]:
        """Audit rows, oldest first (the last ``limit``), for one prompt or all."""
        with self._lock:
            if name is None:
                rows = self._conn.execute(
                    "SELECT * FROM prompt_audit ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT * FROM prompt_audit WHERE name = ? ORDER BY id DESC LIMIT ?", (name, limit)
                ).fetchall()
        return [
            AuditEntry(
                id=row["id"],
                at=row["at"],
                name=row["name"],
                version=row["version"],
                action=row["action"],
                by=row["by"],
                reason=row["reason"],
                before=json.loads(row["before"]),
                after=json.loads(row["after"]),
            )
            for row in reversed(rows)
        ]

    # --- internals (the caller holds the lock) -------------------------------------------------------
    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn, self._flush_tamper)

    def _flush_tamper(self) -> None:
        pending, self._pending_tamper = self._pending_tamper, []
        for version, actual in pending:
            self._audit_tamper(version, actual)

    def _row(self, name: str, version: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(
            "SELECT * FROM prompt_versions WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        return row

    def _version(self, name: str, version: str) -> PromptVersion:
        row = self._row(name, version)
        if row is None:
            raise NotFound(f"prompt {name!r} has no version {version!r}")
        return self._verified(row)

    def _active(self, name: str) -> PromptVersion | None:
        row = self._conn.execute(
            "SELECT * FROM prompt_versions WHERE name = ? AND status = 'active'", (name,)
        ).fetchone()
        return None if row is None else self._verified(row)

    def _candidate(self, name: str) -> tuple[PromptVersion, PromptVersion]:
        current = self._active(name)
        if current is None:
            raise Conflict(f"prompt {name!r} has no active version to roll back")
        if current.rollback_to is None:
            raise Conflict(f"{name} {current.version} has no rollback reference (it was the first deployed)")
        row = self._row(name, current.rollback_to)
        if row is None:
            raise Conflict(f"{name}: the rollback reference {current.rollback_to} does not exist")
        target = self._verified(row)
        if target.status == "deprecated":
            raise Conflict(f"{name}: the rollback reference {target.version} is deprecated")
        return current, target

    def _verified(self, row: sqlite3.Row) -> PromptVersion:
        version = PromptVersion(
            name=row["name"],
            version=row["version"],
            text=row["text"],
            content_hash=row["content_hash"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            status=row["status"],
            deployed_at=row["deployed_at"],
            deployed_by=row["deployed_by"],
            metadata=json.loads(row["metadata"]),
            baselines=json.loads(row["baselines"]),
            rollback_to=row["rollback_to"],
            auto_rollback=bool(row["auto_rollback"]),
        )
        actual = content_hash(version.text)
        if actual != version.content_hash:
            self._record_tamper(version, actual)
            raise Tampered(
                f"content hash mismatch for {version.name} {version.version}: the stored text was changed "
                "outside the registry; register a new version and deploy it"
            )
        return version

    def _record_tamper(self, version: PromptVersion, actual: str) -> None:
        """Log every detection; audit it once per version and altered text (reads must not flood the log)."""
        _logger.error(
            "content hash mismatch for prompt %s version %s: expected %s, stored text hashes to %s",
            version.name,
            version.version,
            version.content_hash,
            actual,
        )
        if self._conn.in_transaction:
            self._pending_tamper.append((version, actual))
        else:
            self._audit_tamper(version, actual)

    def _audit_tamper(self, version: PromptVersion, actual: str) -> None:
        after = json.dumps({"content_hash": actual}, sort_keys=True)
        seen = self._conn.execute(
            "SELECT 1 FROM prompt_audit WHERE name = ? AND version = ? AND action = 'tamper_detected'"
            " AND after = ?",
            (version.name, version.version, after),
        ).fetchone()
        if seen is None:
            self._audit(
                version.name,
                version.version,
                "tamper_detected",
                "registry",
                "content hash mismatch",
                {"content_hash": version.content_hash},
                {"content_hash": actual},
            )

    def _audit(
        self,
        name: str,
        version: str | None,
        action: str,
        by: str,
        reason: str,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
    ) -> None:
        self._conn.execute(
            "INSERT INTO prompt_audit (at, name, version, action, by, reason, before, after)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._clock(),
                name,
                version,
                action,
                by,
                reason,
                json.dumps(dict(before), sort_keys=True),
                json.dumps(dict(after), sort_keys=True),
            ),
        )


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception (the change and its audit row
    land together or not at all)."""

    def __init__(self, conn: sqlite3.Connection, after: Callable[[], None]) -> None:
        self._conn = conn
        self._after = after

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        self._after()


class RegistryRollbackTarget:
    """The registry as the automatic-rollback controller sees it: version strings, None for "nothing".

    "No active version" and "no usable rollback reference" are ordinary answers (None) there; a tampered
    text still raises `Tampered`, so the controller records a failed decision rather than skipping quietly.
    """

    def __init__(self, registry: PromptRegistry) -> None:
        self._registry = registry

    def active_version(self, name: str) -> str | None:
        try:
            return self._registry.active(name).version
        except NotFound:
            return None

    def rollback_reference(self, name: str) -> str | None:
        try:
            return self._registry.rollback_candidate(name).version
        except (NotFound, Conflict):
            return None

    def rollback(self, name: str, *, by: str, reason: str, automatic: bool) -> str:
        return self._registry.rollback(name, by, reason, automatic=automatic).version
