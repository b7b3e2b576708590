"""Added time per LLM call, measured call against call: each instrumented call is paired with a plain one.

    .venv/bin/python bench/paired_overhead.py                 # otel_llm and the official openai-v2
    .venv/bin/python bench/paired_overhead.py --pairs 400     # a quicker, noisier run

`instrumentation_overhead.py` compares per-round medians of separate worker processes, and on a shared
2-core machine the noise between rounds (±100 µs on a ~1 ms call) hides a 30 µs difference. Here one
worker process per instrumentation alternates at the call level: before each pair it flips a coin for the
order, calls once with the instrumentation installed and once with it removed (`instrument()` and
`uninstrument()` run outside the timed region; the worker checks that uninstrumenting restores the
original methods), and keeps the difference. Neighbouring calls share the machine's state, so the
differences are steady even when the machine is not; the figure is their median with a bootstrap 95%
interval.

Each worker has what an app has: the real `openai` SDK over an in-process replay of the shipped
`LLMServer`'s answers (no socket), an SDK `TracerProvider` with a `BatchSpanProcessor`, a `MeterProvider`
and a `LoggerProvider`. After every call the worker waits until the telemetry of that call is processed
(our finisher thread, then the span processor's export), outside the timed region, so no call pays for
its neighbour's background work. Three figures per call:

- **calling thread, CPU**: what the app's thread spends (`time.thread_time_ns`);
- **wall**: the elapsed time of the call;
- **thread CPU, installed** (otel_llm only): the calling thread again, but with the instrumentation installed
  once, as in an app; the plain call of each pair runs under OpenTelemetry's `suppress_instrumentation()`,
  which our hook checks first (so this misses the microsecond that check costs). Re-instrumenting before
  every call costs something of its own, which the toggled figures include. The official instrumentation
  ignores the suppression key, so it has only the toggled figures;
- **whole process, CPU**: every thread's CPU (`time.process_time_ns`) over blocks of calls back to back
  (100 plain calls or 10 streams), instrumented and plain blocks in ABBA order, each block ending when its
  telemetry is processed: work moved to background threads is counted too. Blocks are seconds apart, so
  this figure is noisier than the paired ones.

Streaming calls (203 chunks with usage) are reported per chunk: the added time of the call divided by its
chunks, so the per-call cost of a stream is included. The official instrumentation runs in the benchmark's
own virtualenv (`bench/.venv-official`, created by `instrumentation_overhead.py` on first use).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instrumentation_overhead import (
    DEFAULT_VENV,
    TARGET_CALL_US,
    TARGET_CHUNK_US,
    _responder_factory,
    _Worker,
    _worker_env,
    ensure_venv,
)

MODES = ("otel_llm", "official")
FIGURES = (("thread_cpu_ns", "calling thread, CPU"), ("wall_ns", "wall"))
ALL_FIGURES = (*FIGURES, ("process_cpu_ns", "whole process, CPU"))


# --- the worker: one instrumentation, toggled call by call ----------------------------------------------
class _Toggle:
    """Install and remove one instrumentation; checks that removal restores the original methods."""

    def __init__(self, mode: str, providers: dict[str, Any]) -> None:
        import httpx2
        import openai.resources.chat.completions as chat

        self.mode = mode
        self.providers = providers
        self._originals = {
            "httpx2.Client.send": (httpx2.Client, "send", httpx2.Client.send),
            "Completions.create": (chat.Completions, "create", chat.Completions.create),
        }
        if mode == "otel_llm":
            from otel_llm.instrumentor import OtelLLMInstrumentor

            self.instrumentor: Any = OtelLLMInstrumentor()
        else:
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

            self.instrumentor = OpenAIInstrumentor()  # type: ignore[no-untyped-call]

    def on(self) -> None:
        self.instrumentor.instrument(**self.providers)
        if not any(
            getattr(owner, name) is not original for owner, name, original in self._originals.values()
        ):
            raise SystemExit(f"{self.mode}: instrument() patched neither httpx2 nor the openai SDK")

    def off(self) -> None:
        self.instrumentor.uninstrument()
        for label, (owner, name, original) in self._originals.items():
            if getattr(owner, name) is not original:
                raise SystemExit(f"{self.mode}: uninstrument() left {label} patched")


def _settle(worker: _Worker) -> None:
    """Wait until the telemetry of the last call is processed: our finisher, then the span export."""
    from otel_llm import finisher

    finisher.flush()
    assert worker.providers is not None
    worker.providers[0].force_flush()


def _timed(fn: Callable[[], Any], worker: _Worker) -> tuple[int, int]:
    clock, thread_cpu = time.perf_counter_ns, time.thread_time_ns
    start, start_thread = clock(), thread_cpu()
    fn()
    thread, wall = thread_cpu() - start_thread, clock() - start
    _settle(worker)
    return thread, wall


def _block(fn: Callable[[], Any], worker: _Worker, calls: int) -> int:
    """Every thread's CPU for `calls` calls back to back, their telemetry processed: ns per call."""
    _settle(worker)
    start = time.process_time_ns()
    for _ in range(calls):
        fn()
    _settle(worker)
    assert worker.providers is not None
    worker.providers[2].force_flush()
    return (time.process_time_ns() - start) // calls


def worker_main(
    mode: str, base_url: str, pairs: int, stream_pairs: int, seed: int, blocks: int, transport: str
) -> None:
    worker = _Worker("none", base_url)  # the server runs in the orchestrating process, not beside the app
    worker.setup()
    _measure(worker, mode, pairs, stream_pairs, seed, blocks, transport)


def _measure(
    worker: _Worker, mode: str, pairs: int, stream_pairs: int, seed: int, blocks: int, transport: str
) -> None:
    assert worker.providers is not None
    tracer_provider, meter_provider, logger_provider = worker.providers
    toggle = _Toggle(
        mode,
        {
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
            "logger_provider": logger_provider,
        },
    )
    chunks = 0

    def stream() -> None:
        nonlocal chunks
        chunks = worker.stream(transport)

    rng = random.Random(seed)
    out: dict[str, Any] = {"mode": mode, "transport": transport}
    for kind, count, fn in (
        ("call", pairs, lambda: worker.call(transport)),
        ("stream", stream_pairs, stream),
    ):
        for warm in range(max(20, count // 10)):  # both paths warm, in both orders
            (toggle.on if warm % 2 else toggle.off)()
            _timed(fn, worker)
        toggle.off()
        spans_before = worker.spans.exported
        diffs: dict[str, list[int]] = {name: [] for name, _ in FIGURES}
        for _ in range(count):
            order = (True, False) if rng.random() < 0.5 else (False, True)
            measured: dict[bool, tuple[int, int]] = {}
            for instrumented in order:
                (toggle.on if instrumented else toggle.off)()
                measured[instrumented] = _timed(fn, worker)
            toggle.off()
            for i, (name, _) in enumerate(FIGURES):
                diffs[name].append(measured[True][i] - measured[False][i])
        _settle(worker)
        spans = worker.spans.exported - spans_before
        # Work moved off the calling thread (our finisher, the span processor) is counted here: every
        # thread's CPU over blocks of calls, instrumented and plain blocks alternating in ABBA order.
        block_diffs: list[int] = []
        size = 100 if kind == "call" else 10
        for _ in range(blocks):
            costs: dict[bool, list[int]] = {True: [], False: []}
            for instrumented in (True, False, False, True):
                (toggle.on if instrumented else toggle.off)()
                costs[instrumented].append(_block(fn, worker, size))
            toggle.off()
            block_diffs.append(sum(costs[True]) // 2 - sum(costs[False]) // 2)
        diffs["process_cpu_ns"] = block_diffs
        if mode == "otel_llm":
            # Installed once, as in an app: the plain call runs under OpenTelemetry's suppression key, which
            # our hook checks first (the official instrumentation ignores it, so it has only the figure
            # above). Re-instrumenting before every instrumented call costs something of its own.
            from opentelemetry.instrumentation.utils import suppress_instrumentation

            def suppressed(fn: Callable[[], Any] = fn) -> None:
                with suppress_instrumentation():
                    fn()

            toggle.on()
            steady: list[int] = []
            for _ in range(count):
                order = (True, False) if rng.random() < 0.5 else (False, True)
                times = {on: _timed(fn if on else suppressed, worker)[0] for on in order}
                steady.append(times[True] - times[False])
            toggle.off()
            diffs["installed_thread_cpu_ns"] = steady
        out[kind] = {"diffs": diffs, "spans": spans, "count": count}
    out["chunks"] = chunks
    print(json.dumps(out))


# --- the orchestrator -----------------------------------------------------------------------------------
def median_interval(
    values: Sequence[float], *, seed: int = 0, resamples: int = 2000
) -> tuple[float, float, float]:
    """The median and a percentile-bootstrap 95% interval for it."""
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return statistics.median(values), medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def _figures(diffs: dict[str, Any]) -> list[tuple[str, str]]:
    extra = (
        [("installed_thread_cpu_ns", "thread CPU, installed")] if "installed_thread_cpu_ns" in diffs else []
    )
    return [*ALL_FIGURES, *extra]


def _row(label: str, diffs: Sequence[int], per: int) -> str:
    mid, low, high = median_interval([d / 1000 / per for d in diffs])
    digits = 2 if per > 1 else 1
    return f"  {label:<22} {mid:+9.{digits}f} µs   (95% interval {low:+.{digits}f} .. {high:+.{digits}f})"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=1500, help="non-streaming pairs per instrumentation")
    parser.add_argument("--stream-pairs", type=int, default=150, help="streaming pairs per instrumentation")
    parser.add_argument("--blocks", type=int, default=15, help="ABBA block sets for the whole-process CPU")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--transport",
        choices=("replay", "server"),
        default="replay",
        help="replay: the server's answers from an in-process transport; server: LLMServer over loopback",
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(
            args.worker, args.base_url, args.pairs, args.stream_pairs, args.seed, args.blocks, args.transport
        )
        return
    python = ensure_venv(args.venv)
    print(
        f"paired calls: {args.pairs} non-streaming and {args.stream_pairs} streaming pairs "
        f"per instrumentation, {args.transport} transport"
    )
    from otel_llm.testing.llm_server import LLMServer

    with LLMServer(_responder_factory()) as server:
        results = [_run_worker(python, mode, server.base_url, args) for mode in MODES]
    for mode, result in zip(MODES, results):
        _print_result(mode, result, args)
    print(
        f"\ntargets: at most {TARGET_CALL_US:.0f} µs per call and {TARGET_CHUNK_US:.0f} µs per chunk, "
        "below the official"
    )


def _run_worker(python: Path, mode: str, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [str(python), __file__, "--worker", mode, "--base-url", base_url, "--pairs", str(args.pairs)]
    command += ["--stream-pairs", str(args.stream_pairs), "--seed", str(args.seed)]
    command += ["--blocks", str(args.blocks), "--transport", args.transport]
    done = subprocess.run(command, capture_output=True, text=True, env=_worker_env(), check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _print_result(mode: str, result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n{mode}: added per non-streaming call ({result['call']['spans']} spans for {args.pairs} calls)")
    for name, label in _figures(result["call"]["diffs"]):
        print(_row(label, result["call"]["diffs"][name], 1))
    print(
        f"{mode}: added per streamed chunk ({result['chunks']} chunks a stream, "
        f"{result['stream']['spans']} spans)"
    )
    for name, label in _figures(result["stream"]["diffs"]):
        print(_row(label, result["stream"]["diffs"][name], result["chunks"]))


if __name__ == "__main__":
    main()
