"""Calls are finished off the request path without moving what is observed."""

from __future__ import annotations

import threading
import time

import openai

from otel_llm.finisher import Finisher
from otel_llm.testing.llm_server import LLMServer, Reply, ScriptedResponder
from tests.conftest import Telemetry


def test_flush_waits_for_submitted_jobs() -> None:
    finisher = Finisher()
    gate = threading.Event()
    done: list[int] = []
    finisher.submit(lambda: (gate.wait(5), done.append(1)))
    finisher.submit(done.append, 2)
    assert finisher.flush(0.05) is False
    gate.set()
    assert finisher.flush(5) is True
    assert done == [1, 2]


def test_a_full_queue_runs_work_inline_rather_than_dropping_it() -> None:
    finisher = Finisher(max_pending=1)
    gate = threading.Event()
    done: list[int] = []
    finisher.submit(lambda: gate.wait(5))
    time.sleep(0)  # let the thread take the first job or not: either way nothing may be lost
    for i in range(5):
        finisher.submit(done.append, i)
    gate.set()
    assert finisher.flush(5)
    assert sorted(done) == list(range(5))
    assert finisher.ran_inline >= 3


def test_a_failing_job_does_not_stop_the_thread() -> None:
    finisher = Finisher()
    done: list[int] = []
    finisher.submit(lambda: 1 / 0)
    finisher.submit(done.append, 1)
    assert finisher.flush(5)
    assert done == [1]


def test_span_end_time_is_taken_on_the_apps_thread(telemetry: Telemetry) -> None:
    reply = Reply(text="one two three four", chunk_delay_seconds=0.01)
    with LLMServer(ScriptedResponder([reply])) as server:
        with openai.OpenAI(base_url=server.openai_base_url, api_key="t", max_retries=0) as client:
            before = time.time_ns()
            for _ in client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True
            ):
                pass
            after = time.time_ns()
            time.sleep(0.05)  # any delay in finishing must not show in the span
    span = telemetry.only_call()
    assert span.start_time is not None
    assert span.end_time is not None
    assert before <= span.start_time <= span.end_time <= after


def test_a_submit_wakes_an_idle_thread_without_a_flush() -> None:
    finisher = Finisher(batch_seconds=0)
    first, second = threading.Event(), threading.Event()
    finisher.submit(first.set)
    assert first.wait(5)
    time.sleep(0.1)  # past its (zero) doze: the thread now sleeps until woken
    finisher.submit(second.set)
    assert second.wait(5)


def test_flush_cuts_the_batch_doze_short() -> None:
    # The thread dozes 60 s between batches: only a flush that wakes it can finish within 5 s.
    finisher = Finisher(batch_seconds=60)
    ran = threading.Event()
    finisher.submit(ran.set)
    assert ran.wait(5)
    done: list[int] = []
    finisher.submit(done.append, 1)
    assert finisher.flush(5) is True
    assert done == [1]


def test_no_job_is_lost_with_many_submitting_threads() -> None:
    finisher = Finisher(batch_seconds=0.001)
    done: list[int] = []

    def submit_many(base: int) -> None:
        for i in range(2000):
            finisher.submit(done.append, base + i)

    threads = [threading.Thread(target=submit_many, args=(n * 10_000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert finisher.flush(10)
    assert sorted(done) == sorted(n * 10_000 + i for n in range(4) for i in range(2000))
