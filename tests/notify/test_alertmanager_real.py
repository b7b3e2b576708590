"""A real Alertmanager (Debian's ``prometheus-alertmanager``) receives our alerts through the outbox:
grouping, resolution, and lease refreshes by re-sends, checked through its API and its webhook."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from notify_support import make_alert, resolved
from otel_llm_collector.notify import AlertmanagerNotifier, parse_time
from otel_llm_collector.notify_config import DEFAULT_GROUP_BY
from otel_llm_collector.notify_route import Route, Router
from otel_llm_collector.outbox import Outbox, outbox_path
from otel_llm_collector.testing_receivers import RecordingReceiver

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BINARY is None, reason="prometheus-alertmanager is not installed (apt install it)"),
]
T = TypeVar("T")


def free_port() -> int:
    """Alertmanager cannot listen on port 0: take a free port from the kernel and release it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def poll(read: Callable[[], T], accept: Callable[[T], bool], *, timeout_seconds: float, what: str) -> T:
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")
        time.sleep(0.05)


@dataclass
class Alertmanager:
    url: str
    log: Path

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return None


@pytest.fixture
def webhook() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as receiver:
        yield receiver


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: RecordingReceiver) -> Iterator[Alertmanager]:
    assert BINARY is not None
    config = {
        "route": {
            "receiver": "hook",
            "group_by": list(DEFAULT_GROUP_BY),
            "group_wait": "300ms",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "hook", "webhook_configs": [{"url": webhook.url + "/hook", "send_resolved": True}]}
        ],
    }
    (tmp_path / "alertmanager.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = tmp_path / "alertmanager.log"
    with (
        open(log, "wb") as output,
        subprocess.Popen(
            [
                BINARY,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        manager = Alertmanager(f"http://127.0.0.1:{port}", log)
        try:
            poll(
                lambda: process.poll() is None and manager.get("/api/v2/status") is not None,
                bool,
                timeout_seconds=20,
                what=f"Alertmanager to start ({log.read_text(errors='replace')[-2000:]})",
            )
            yield manager
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def active(manager: Alertmanager) -> dict[str, dict[str, Any]]:
    return {
        a["labels"]["service"] + "/" + a["labels"]["severity"]: a for a in manager.get("/api/v2/alerts") or []
    }


def hook_posts(webhook: RecordingReceiver) -> list[dict[str, Any]]:
    return [r.json() for r in webhook.requests if r.path == "/hook"]


def close_to(value: str, expected: datetime) -> bool:
    parsed = parse_time(value)
    return parsed is not None and abs((parsed - expected).total_seconds()) < 0.01


def test_alertmanager_groups_resolves_and_refreshes_leases(
    tmp_path: Path, alertmanager: Alertmanager, webhook: RecordingReceiver
) -> None:
    notifier = AlertmanagerNotifier(url=alertmanager.url, timeout_seconds=5)
    router = Router([Route("am", "alertmanager", notifier)])
    box = Outbox(outbox_path(tmp_path), notifiers=router.notifiers)
    t0 = datetime.now(UTC).replace(microsecond=0)
    started = t0 - timedelta(minutes=10)
    p1 = make_alert(service="checkout", severity="P1", starts_at=started)
    p2 = make_alert(service="checkout", severity="P2", starts_at=started)
    other = make_alert(alertname="LatencyHigh", service="search", severity="P2", starts_at=started)

    def deliver(notifications: list[Any]) -> None:
        box.enqueue_many(notifications)
        report = box.deliver_due(time.time())
        assert report.delivered == len(notifications), box.pending()

    with box:
        deliver(router.route([p1, p2, other], now=t0))

        # Accepted with our lease: endsAt four resend intervals ahead.
        alerts = poll(lambda: active(alertmanager), lambda a: len(a) == 3, timeout_seconds=5, what="3 alerts")
        assert all(close_to(a["endsAt"], t0 + timedelta(minutes=4)) for a in alerts.values()), alerts
        assert all(a["status"]["state"] == "active" for a in alerts.values())
        assert alerts["checkout/P1"]["annotations"]["deployment"] == "checkout 1.4.2 at 10:12 (strong)"

        # Grouped by alertname and series: the two checkout severities share a group.
        groups = alertmanager.get("/api/v2/alerts/groups")
        by_service = {
            g["labels"]["service"]: sorted(a["labels"]["severity"] for a in g["alerts"]) for g in groups
        }
        assert by_service == {"checkout": ["P1", "P2"], "search": ["P2"]}
        checkout = next(g for g in groups if g["labels"]["service"] == "checkout")
        assert set(checkout["labels"]) == set(DEFAULT_GROUP_BY)

        # ...and Alertmanager's webhook delivered grouped notifications. The alerts started ten minutes
        # ago, longer than group_wait, so Alertmanager may flush the first alert of a group at once and
        # the second one a group_interval later: wait for the notification that holds both.
        def severities(posts: list[dict[str, Any]], service: str) -> list[list[str]]:
            return [
                sorted(a["labels"]["severity"] for a in p["alerts"])
                for p in posts
                if p["groupLabels"]["service"] == service and p["status"] == "firing"
            ]

        posts = poll(
            lambda: hook_posts(webhook),
            lambda p: ["P1", "P2"] in severities(p, "checkout") and severities(p, "search") == [["P2"]],
            timeout_seconds=10,
            what="grouped webhooks",
        )
        assert all(set(p["groupLabels"]) == set(DEFAULT_GROUP_BY) for p in posts)
        search = [p for p in posts if p["groupLabels"]["service"] == "search"]
        assert [a["labels"]["alertname"] for p in search for a in p["alerts"]] == ["LatencyHigh"]

        # Re-sends: nothing before a minute of event time, then a refreshed lease for every firing alert.
        assert router.tick(t0 + timedelta(seconds=30)) == []
        later = t0 + timedelta(seconds=61)
        deliver(router.tick(later))
        alerts = poll(
            lambda: active(alertmanager),
            lambda a: all(close_to(x["endsAt"], later + timedelta(minutes=4)) for x in a.values()),
            timeout_seconds=5,
            what="refreshed endsAt",
        )
        assert len(alerts) == 3

        # Resolve one: endsAt in the past, so Alertmanager no longer lists it as active and notifies.
        resolved_at = datetime.now(UTC) - timedelta(seconds=1)
        deliver(router.route([resolved(other, resolved_at)], now=later + timedelta(seconds=1)))
        alerts = poll(
            lambda: active(alertmanager), lambda a: len(a) == 2, timeout_seconds=5, what="resolution"
        )
        assert sorted(alerts) == ["checkout/P1", "checkout/P2"]
        groups = alertmanager.get("/api/v2/alerts/groups")
        assert all(a["labels"]["service"] == "checkout" for g in groups for a in g["alerts"])
        posts = poll(
            lambda: hook_posts(webhook),
            lambda p: any(x["status"] == "resolved" for x in p),
            timeout_seconds=10,
            what="the resolved webhook",
        )
        [done] = [p for p in posts if p["status"] == "resolved"]
        assert done["groupLabels"]["service"] == "search"
        assert [(a["status"], a["labels"]["service"]) for a in done["alerts"]] == [("resolved", "search")]
        assert close_to(done["alerts"][0]["endsAt"], resolved_at)
        assert not [r for r in webhook.requests if r.path != "/hook"]
