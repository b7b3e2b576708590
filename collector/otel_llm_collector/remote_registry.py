"""The prompt registry of another collector, as the automatic-rollback controller sees it.

Scaled out (`docs/scale-out.md`), each collector judges the series of its own services, but the apps poll
one control plane (`OTEL_LLM_CONTROL_URL`). A rollback must change that registry, not the local SQLite file
no app reads. With `control_plane_url` set, the collector's rollback target is this client of the control
plane's HTTP API instead of its own registry:

- `active_version` and `rollback_reference`: `GET /api/v1/prompts/active?name=N` (`version`, `rollback_to`);
  404 means "no active version";
- `rollback`: `POST /api/v1/prompts/rollback` with `"automatic": true` and the bearer token, so the control
  plane validates the reference (409 without one) and audits it as an automatic rollback.

Calls block the caller (the ingest worker, on an alert that asks for a rollback: rare) for at most
`timeout_seconds`; any failure raises, and the controller records a failed decision. Safeguards (spacing,
daily limit) stay per collector: with partitioning by service, one prompt's alerts come from one collector.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = ["RemoteRegistryError", "RemoteRollbackTarget"]


class RemoteRegistryError(Exception):
    """The control plane refused or could not be reached; the message says which and why."""


class RemoteRollbackTarget:
    """`rollback.RollbackTarget` over the control plane's registry API."""

    def __init__(
        self, base_url: str, *, token: Callable[[], str | None], timeout_seconds: float = 5.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_seconds = timeout_seconds

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The JSON answer; None for a 404."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            token = self._token()
            if not token:
                raise RemoteRegistryError("no API token to change the control plane's registry")
            headers["Authorization"] = f"Bearer {token}"
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                answer: dict[str, Any] = json.load(response)
                return answer
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 404:
                    return None
                try:
                    message = json.load(exc)["error"]
                except (ValueError, KeyError, TypeError):
                    message = exc.reason
            raise RemoteRegistryError(f"control plane {method} {path}: {exc.code} {message}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RemoteRegistryError(f"control plane at {self.base_url} unreachable: {exc}") from None

    def _active(self, name: str) -> dict[str, Any] | None:
        answer = self._call("GET", "/api/v1/prompts/active?" + urllib.parse.urlencode({"name": name}))
        return None if answer is None else dict(answer["prompt"])

    def active_version(self, name: str) -> str | None:
        active = self._active(name)
        return None if active is None else str(active["version"])

    def rollback_reference(self, name: str) -> str | None:
        active = self._active(name)
        reference = None if active is None else active.get("rollback_to")
        return str(reference) if reference else None

    def rollback(self, name: str, *, by: str, reason: str, automatic: bool) -> str:
        body = {"name": name, "by": by, "reason": reason, "automatic": automatic}
        answer = self._call("POST", "/api/v1/prompts/rollback", body)
        if answer is None:
            raise RemoteRegistryError(f"control plane has no prompt {name!r}")
        return str(answer["prompt"]["version"])
