"""SIGKILL while notifications are queued and failing: after a restart every accepted one is delivered,
and the only duplicate is the one that was in flight when the process died (at-least-once)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from otel_llm_collector.notify import WebhookNotifier
from otel_llm_collector.notify_config import OutboxSettings
from otel_llm_collector.outbox import Outbox
from otel_llm_collector.testing_receivers import RecordingReceiver, Reply

CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from otel_llm_collector.notify import Alert, Notification, WebhookNotifier
    from otel_llm_collector.notify_config import OutboxSettings
    from otel_llm_collector.outbox import Outbox, OutboxWorker

    database, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = OutboxSettings(
        retry_initial_interval_seconds=0.05, retry_max_interval_seconds=0.2, in_flight_lease_seconds=30
    )
    notifiers = {"hook": WebhookNotifier(url=url, timeout_seconds=20)}
    box = Outbox(database, notifiers=notifiers, settings=settings)
    OutboxWorker(box, idle_poll_seconds=0.2).start()
    for i in range(count):
        labels = {"alertname": "FaithfulnessLow", "severity": "P1", "service": f"svc{i}"}
        alert = Alert("firing", labels, {}, datetime.now(UTC))
        box.enqueue(Notification("hook", f"group-{i}", "firing", (alert,), dedup_key=f"n{i}"))
        print(f"accepted group-{i}", flush=True)
        time.sleep(0.02)
    time.sleep(120)
    """
)
COUNT = 40


def wait_until(condition: Callable[[], bool], *, timeout_seconds: float, what: str) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def test_sigkill_with_failing_deliveries_loses_nothing(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite3"
    accepted: list[str] = []
    with RecordingReceiver(default=Reply(503)) as receiver:
        # Three attempts fail, the fourth hangs: it is in flight when the process dies.
        receiver.script(Reply(503), Reply(503), Reply(503), Reply(200, delay_seconds=60))
        with (
            open(tmp_path / "child.stderr", "wb") as stderr,
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(database), receiver.url, str(COUNT)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            ) as child,
        ):
            assert child.stdout is not None
            stdout = child.stdout

            def read() -> None:
                for line in stdout:
                    accepted.append(line.split()[1])

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            try:
                wait_until(
                    lambda: len(accepted) >= 20 and len(receiver.requests) >= 4,
                    timeout_seconds=30,
                    what="the child to accept notifications and attempt deliveries",
                )
                child.send_signal(signal.SIGKILL)
            finally:
                child.kill()
                child.wait(timeout=10)
            reader.join(timeout=5)
        assert child.returncode == -signal.SIGKILL
        assert len(accepted) < COUNT, "the kill should land while notifications are still being accepted"
        before = receiver.requests
        assert [r.replied_status for r in before[:3]] == [503, 503, 503]
        in_flight = [r.json()["groupKey"] for r in before if r.replied_status is None]
        assert len(in_flight) == 1
        assert not any(r.replied_status == 200 for r in before)

        receiver.default = Reply(200)
        settings = OutboxSettings(in_flight_lease_seconds=30)
        notifiers = {"hook": WebhookNotifier(url=receiver.url, timeout_seconds=5)}
        with Outbox(database, notifiers=notifiers, settings=settings) as box:
            restarted_at = time.time()
            assert box.pending(), "the restart must find the queued notifications"
            box.deliver_due(restarted_at)  # the in-flight item is still claimed by the dead process
            box.deliver_due(restarted_at + 31)  # its claim has run out: sent again
            assert box.pending() == []
            assert box.dead_letters() == []
        delivered = Counter(r.json()["groupKey"] for r in receiver.requests if r.replied_status == 200)

    assert set(accepted) <= set(delivered), "an accepted notification was lost"
    assert set(delivered) <= {f"group-{i}" for i in range(COUNT)}
    assert all(n == 1 for n in delivered.values()), delivered
    # What the target saw twice: only the one in flight at the kill (once unanswered, once answered).
    seen = Counter([*in_flight, *delivered.elements()])
    assert [key for key, n in seen.items() if n > 1] == in_flight
