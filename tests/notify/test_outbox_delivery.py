"""The outbox's delivery loop: Retry-After, backoff, dead letters, ordering, idempotence, the worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest
from notify_support import T0, make_alert, minutes, resolved
from otel_llm_collector.notify import DeliveryResult, Notification, Notifier, SlackNotifier, WebhookNotifier
from otel_llm_collector.notify_config import OutboxSettings
from otel_llm_collector.notify_route import Route, Router
from otel_llm_collector.outbox import Outbox, OutboxWorker, outbox_path
from otel_llm_collector.selfmetrics import Counters
from otel_llm_collector.store import StateStore
from otel_llm_collector.testing_receivers import RecordingNotifier, RecordingReceiver, Reply

NOW = 1_700_000_000.0
SETTINGS = OutboxSettings(
    retry_initial_interval_seconds=2,
    retry_max_interval_seconds=20,
    retry_jitter_ratio=0.2,
    max_age_seconds=600,
    in_flight_lease_seconds=30,
)


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as server:
        yield server


def open_outbox(tmp_path: Path, notifiers: dict[str, Notifier], **kwargs: object) -> Outbox:
    return Outbox(outbox_path(tmp_path), notifiers=notifiers, settings=SETTINGS, seed=1, **kwargs)  # type: ignore[arg-type]


def note(dedup: str = "d1", *, target: str = "t", group: str = "g", status: str = "firing") -> Notification:
    alert = make_alert() if status == "firing" else resolved(make_alert(), T0 + minutes(5))
    return Notification(target, group, alert.status, (alert,), dedup_key=dedup)


def test_429_retry_after_is_honoured(tmp_path: Path, receiver: RecordingReceiver) -> None:
    receiver.script(Reply(429, headers={"Retry-After": "7"}))
    with open_outbox(tmp_path, {"t": SlackNotifier(url=receiver.url)}) as box:
        box.enqueue(note(), now=NOW)
        assert box.deliver_due(NOW).retried == 1
        assert box.next_due_at() == NOW + 7
        assert box.deliver_due(NOW + 6.9).retried == 0
        assert len(receiver.requests) == 1
        assert box.deliver_due(NOW + 7).delivered == 1
        assert [r.replied_status for r in receiver.requests] == [429, 200]
        assert box.pending() == []
        assert box.totals() == {("t", "enqueued"): 1, ("t", "retried"): 1, ("t", "delivered"): 1}


def test_503_retry_after_http_date_is_honoured(tmp_path: Path, receiver: RecordingReceiver) -> None:
    assert formatdate(NOW + 100, usegmt=True) == "Tue, 14 Nov 2023 22:15:00 GMT"
    receiver.script(Reply(503, headers={"Retry-After": "Tue, 14 Nov 2023 22:15:00 GMT"}))
    notifier = WebhookNotifier(url=receiver.url, clock=lambda: NOW)
    with open_outbox(tmp_path, {"t": notifier}) as box:
        box.enqueue(note(), now=NOW)
        box.deliver_due(NOW)
        assert box.next_due_at() == NOW + 100


def test_backoff_grows_exponentially_with_seeded_jitter(tmp_path: Path) -> None:
    def delays(seed: int, directory: Path) -> list[float]:
        failing = RecordingNotifier(*[DeliveryResult.retry("HTTP 500", status_code=500)] * 6)
        box = Outbox(outbox_path(directory), notifiers={"t": failing}, settings=SETTINGS, seed=seed)
        with box:
            box.enqueue(note(), now=NOW)
            now, out = NOW, []
            for _ in range(6):
                box.deliver_due(now)
                due = box.next_due_at()
                assert due is not None
                out.append(due - now)
                now = due
            assert box.deliver_due(now).delivered == 1
        assert len(failing.sent) == 7
        return out

    first = delays(1, tmp_path / "a")
    for attempt, delay in enumerate(first):
        base = min(20.0, 2.0 * 2**attempt)
        assert base * 0.8 <= delay <= base * 1.2, (attempt, delay)
    assert first == delays(1, tmp_path / "b")
    assert first != delays(2, tmp_path / "c")


def test_permanent_failure_goes_to_the_dead_letters_at_once(
    tmp_path: Path, receiver: RecordingReceiver
) -> None:
    receiver.script(Reply(400, body=b'{"message":"Event object is invalid"}'))
    with open_outbox(tmp_path, {"t": WebhookNotifier(url=receiver.url)}) as box:
        box.enqueue(note(), now=NOW)
        assert box.deliver_due(NOW).dead_lettered == 1
        [dead] = box.dead_letters()
        assert dead.reason.startswith("rejected: HTTP 400")
        assert "Event object is invalid" in dead.reason
        assert box.pending() == []
        assert box.totals()[("t", "failed")] == 1


def test_after_max_age_it_gives_up_and_counts(tmp_path: Path, receiver: RecordingReceiver) -> None:
    receiver.default = Reply(503)
    with open_outbox(tmp_path, {"t": WebhookNotifier(url=receiver.url)}) as box:
        box.enqueue(note(), now=NOW)
        now = NOW
        while (due := box.next_due_at()) is not None:
            now = due
            box.deliver_due(now)
        [dead] = box.dead_letters()
        assert now - NOW > 600
        assert dead.reason.startswith(f"gave up after {len(receiver.requests)} attempts")
        assert "HTTP 503" in dead.reason
        assert box.totals()[("t", "dead_lettered")] == 1


def test_enqueue_is_idempotent_per_target_dedup_key_and_status(tmp_path: Path) -> None:
    sink = RecordingNotifier()
    with open_outbox(tmp_path, {"t": sink, "u": sink}) as box:
        first = box.enqueue(note("k"), now=NOW)
        assert box.enqueue(note("k"), now=NOW + 1) == first
        assert box.enqueue(note("k", status="resolved"), now=NOW) != first
        assert box.enqueue(note("k", target="u"), now=NOW) != first
        box.deliver_due(NOW)
        assert len(sink.sent) == 3
        assert box.enqueue(note("k"), now=NOW + 5) == first  # already delivered: not again
        box.deliver_due(NOW + 5)
        assert len(sink.sent) == 3
        with pytest.raises(ValueError, match="no notifier for target 'x'"):
            box.enqueue(note(target="x"))


def test_a_resolve_never_overtakes_its_trigger(tmp_path: Path) -> None:
    sink = RecordingNotifier(DeliveryResult.retry("HTTP 500"))
    with open_outbox(tmp_path, {"t": sink}) as box:
        box.enqueue(note("trigger", group="g1"), now=NOW)
        box.enqueue(note("resolve", group="g1", status="resolved"), now=NOW)
        box.enqueue(note("other", group="g2"), now=NOW)
        box.deliver_due(NOW)
        assert [n.dedup_key for n in sink.sent] == ["trigger", "other"]
        box.deliver_due(NOW + 60)
        assert [n.dedup_key for n in sink.sent] == ["trigger", "other", "trigger", "resolve"]


def test_a_stale_alertmanager_lease_expires_instead_of_being_sent(tmp_path: Path) -> None:
    sink = RecordingNotifier(DeliveryResult.retry("connection refused"))
    hook = Route("am", "alertmanager", sink)
    router = Router([hook])
    with open_outbox(tmp_path, {"am": sink}) as box:
        box.enqueue_many(router.route([make_alert()], now=T0), now=NOW)
        box.deliver_due(NOW)
        box.enqueue_many(router.tick(T0 + minutes(5)), now=NOW + 300)
        report = box.deliver_due(NOW + 300)
        assert (report.expired, report.delivered) == (1, 1)
        assert [n.alerts[0].ends_at for n in sink.sent] == [T0 + minutes(4), T0 + minutes(9)]


def test_a_notifier_that_raises_loses_nothing(tmp_path: Path) -> None:
    class Broken:
        calls = 0

        def send(self, notification: Notification) -> DeliveryResult:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("bug")
            return DeliveryResult.ok()

    broken = Broken()
    with open_outbox(tmp_path, {"t": broken}) as box:
        box.enqueue(note(), now=NOW)
        assert box.deliver_due(NOW).retried == 1
        assert box.deliver_due(NOW + 60).delivered == 1


def test_accepted_notifications_survive_reopening_and_share_the_state_database(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        store.put("ns", "k", 1, updated_ns=1)
        with open_outbox(tmp_path, {"t": RecordingNotifier()}) as box:
            box.enqueue(note("a"), now=NOW)
            box.enqueue(note("b", group="h"), now=NOW)
        assert store.get("ns", "k") == 1
    sink = RecordingNotifier()
    with open_outbox(tmp_path, {"t": sink}) as box:
        assert [item.notification.dedup_key for item in box.pending()] == ["a", "b"]
        box.deliver_due(NOW + 1)
    assert [n.dedup_key for n in sink.sent] == ["a", "b"]


def test_metrics_through_the_collector_counters(tmp_path: Path) -> None:
    counters = Counters()
    sink = RecordingNotifier(DeliveryResult.retry("HTTP 500"))
    clock = [NOW]
    box = Outbox(
        outbox_path(tmp_path),
        notifiers={"t": sink},
        settings=SETTINGS,
        counters=counters,
        clock=lambda: clock[0],
    )
    with box:
        box.enqueue(note("a"), now=NOW)
        box.enqueue(note("b", group="h"), now=NOW + 10)
        clock[0] = NOW + 30
        box.deliver_due(NOW + 30)
        values = counters.snapshot()
        assert values['notifications_enqueued_total{target="t"}'] == 2
        assert values['notifications_retried_total{target="t"}'] == 1
        assert values['notifications_delivered_total{target="t"}'] == 1
        assert values['notifications_queued{target="t"}'] == 1
        assert values['notifications_oldest_age_seconds{target="t"}'] == 30
        assert values['notifications_dead_lettered_total{target="t"}'] == 0


def test_the_worker_delivers_promptly_and_a_slow_target_does_not_hold_up_another(tmp_path: Path) -> None:
    with RecordingReceiver(default=Reply(delay_seconds=3)) as slow, RecordingReceiver() as fast:
        notifiers: dict[str, Notifier] = {
            "slow": WebhookNotifier(url=slow.url, timeout_seconds=5),
            "fast": WebhookNotifier(url=fast.url, timeout_seconds=5),
        }
        with Outbox(outbox_path(tmp_path), notifiers=notifiers, settings=SETTINGS) as box:
            worker = OutboxWorker(box, idle_poll_seconds=30)
            worker.start()
            try:
                box.enqueue(note("s", target="slow"))
                slow.wait_for(1, timeout_seconds=5)
                started = time.monotonic()
                box.enqueue(note("f", target="fast"))
                fast.wait_for(1, timeout_seconds=2)
                assert time.monotonic() - started < 1.0
            finally:
                assert worker.stop(timeout_seconds=10)
            assert [item.target for item in box.pending()] == []
