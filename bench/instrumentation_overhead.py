"""Time the instrumentation adds to an LLM call: none vs otel_llm vs the official OpenAI instrumentation.

    .venv/bin/python bench/instrumentation_overhead.py            # full run, prints the table
    .venv/bin/python bench/instrumentation_overhead.py --quick    # a smoke run (noisy figures)
    .venv/bin/python bench/instrumentation_overhead.py --profile otel_llm   # cProfile of the hot path

The official `opentelemetry-instrumentation-openai-v2` is not a dependency of the project: the benchmark
creates (or reuses) its own virtualenv at `bench/.venv-official` with the repository installed editable plus
the official package, and runs every mode in that environment, each in its own worker process, so the
instrumentations never share a process and all modes use the same interpreter and library versions.

Each worker has what a real app has: an SDK `TracerProvider` with a `BatchSpanProcessor` (exporting to an
exporter that only counts), a `MeterProvider` with an `InMemoryMetricReader` and a `LoggerProvider` with a
`BatchLogRecordProcessor`. The real `openai` SDK calls the local `LLMServer` on loopback, which runs in this
(the orchestrating) process, and, for a steadier figure, gets the same responses from an in-process replay
transport (no socket, no server competing for the CPU). Time is taken both as wall clock and as the calling
thread's CPU time. The workers take turns in interleaved rounds, never two at once, and the
figures are medians over rounds, which keeps the noise of a small shared machine out of the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / "bench" / ".venv-official"
# The same pins as the project's `dev` extra: util-genai 1.3b0 dropped a module that openai-v2 2.4b0 imports.
OFFICIAL_REQUIREMENTS = (
    "opentelemetry-instrumentation-openai-v2==2.4b0",
    "opentelemetry-util-genai==1.1b0",
    "openai~=3.0",
    "httpx~=0.28",  # openai-v2 imports httpx; openai 3 itself uses httpx2
)
MODES = ("none", "otel_llm", "official")
# `server`: the real SDK over loopback to LLMServer; `replay`: its responses from an in-process transport.
TRANSPORTS = ("server", "replay")
TRANSPORT_LABELS = {
    "server": "LLMServer over loopback",
    "replay": "in-process replay transport (no socket, no server: the least noisy figure)",
}
MODE_LABELS = {"none": "none (baseline)", "otel_llm": "otel_llm", "official": "openai-v2 (official)"}
MODEL = "gpt-4o-mini"
MESSAGES = [
    {"role": "system", "content": "Answer from the pricing documents only. Be brief."},
    {"role": "user", "content": "How much does the Pro plan cost per month, and is there a yearly discount?"},
]
NON_STREAM_REPLY = "The Pro plan costs 49 dollars per month; paying yearly saves two months."
TARGET_CALL_US = 30.0
TARGET_CHUNK_US = 1.0


# --- the worker: one mode, one process --------------------------------------------------------------------
class _CountingSpanExporter:
    """Counts spans instead of keeping them: memory stays flat over thousands of calls."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _CountingLogExporter:
    def __init__(self) -> None:
        self.exported = 0

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        self.exported += len(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


@dataclass
class _Worker:
    mode: str
    base_url: str
    clients: dict[str, Any] = field(default_factory=dict)
    spans: _CountingSpanExporter = field(default_factory=_CountingSpanExporter)
    logs: _CountingLogExporter = field(default_factory=_CountingLogExporter)
    providers: tuple[Any, Any, Any] | None = None
    metric_reader: Any = None

    def setup(self) -> None:
        import openai
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        replay = self._replay_transport()  # recorded before instrumenting: these requests are not measured
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(self.spans))  # type: ignore[arg-type]
        self.metric_reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.metric_reader])
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(self.logs))  # type: ignore[arg-type]
        self.providers = (tracer_provider, meter_provider, logger_provider)
        providers = {
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
            "logger_provider": logger_provider,
        }
        if self.mode == "otel_llm":
            import otel_llm

            otel_llm.instrument(**providers)
        elif self.mode == "official":
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(**providers)  # type: ignore[no-untyped-call]
        self.clients["server"] = openai.OpenAI(base_url=self.base_url, api_key="bench", max_retries=0)
        self.clients["replay"] = openai.OpenAI(
            base_url=self.base_url, api_key="bench", max_retries=0, http_client=replay
        )

    def _replay_transport(self) -> Any:
        """An `httpx2` client whose transport replays what the server answered, with no socket at all.

        It takes the server (and the loopback round trip) out of the measurement, so the noise of a shared
        machine shrinks to that of the client's own work; the stream is replayed event by event.
        """
        import httpx2

        url = f"{self.base_url}/chat/completions"
        plain = httpx2.post(url, json={"model": MODEL, "messages": MESSAGES}, timeout=30).content
        body = {
            "model": MODEL,
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        streamed = httpx2.post(url, json=body, timeout=30).content
        events = [event + b"\n\n" for event in streamed.split(b"\n\n") if event.strip()]

        def handler(request: Any) -> Any:
            if b'"stream":true' in request.content or b'"stream": true' in request.content:
                headers = {"content-type": "text/event-stream; charset=utf-8"}
                return httpx2.Response(200, headers=headers, content=iter(events))
            return httpx2.Response(200, headers={"content-type": "application/json"}, content=plain)

        return httpx2.Client(transport=httpx2.MockTransport(handler))

    def call(self, transport: str) -> None:
        self.clients[transport].chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=256)

    def stream(self, transport: str) -> int:
        chunks = 0
        response = self.clients[transport].chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=1024,
            stream=True,
            stream_options={"include_usage": True},
        )
        for _chunk in response:
            chunks += 1
        return chunks

    def run(self, kind: str, count: int, transport: str = "server") -> dict[str, Any]:
        """Wall-clock and calling-thread CPU time of each call, in nanoseconds."""
        wall: list[int] = []
        cpu: list[int] = []
        chunks = 0
        clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
        for _ in range(count):
            start, start_cpu = clock(), cpu_clock()
            if kind == "call":
                self.call(transport)
            else:
                chunks = self.stream(transport)
            cpu.append(cpu_clock() - start_cpu)
            wall.append(clock() - start)
        return {"wall_ns": wall, "cpu_ns": cpu, "chunks": chunks}

    def telemetry_counts(self) -> dict[str, int]:
        assert self.providers is not None
        tracer_provider, _, logger_provider = self.providers
        tracer_provider.force_flush()
        logger_provider.force_flush()
        data = self.metric_reader.get_metrics_data()
        points = 0
        if data is not None:
            for rm in data.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        points += len(metric.data.data_points)
        return {"spans": self.spans.exported, "logs": self.logs.exported, "metric_points": points}


def worker_main(mode: str, base_url: str, warmup_calls: int, warmup_streams: int) -> None:
    """Serve commands from stdin, one JSON line each: `{"kind": "call"|"stream", "count": n, "transport":
    "server"|"replay"}` answers the per-call times; `"counts"` answers the spans, logs and metric points."""
    worker = _Worker(mode, base_url)
    worker.setup()
    for transport in TRANSPORTS:
        worker.run("call", warmup_calls, transport)
        worker.run("stream", warmup_streams, transport)
    out = sys.stdout
    out.write(json.dumps({"ready": mode}) + "\n")
    out.flush()
    for line in sys.stdin:
        command = json.loads(line)
        if command == "counts":
            reply: dict[str, Any] = worker.telemetry_counts()
        else:
            reply = worker.run(command["kind"], command["count"], command["transport"])
        out.write(json.dumps(reply) + "\n")
        out.flush()


def profile_main(mode: str, base_url: str, calls: int, streams: int) -> None:
    """Print the top cumulative costs of `calls` plain and `streams` streamed calls under cProfile."""
    import cProfile
    import pstats

    worker = _Worker(mode, base_url)
    worker.setup()
    worker.run("call", 100, "replay")
    worker.run("stream", 5, "replay")
    for kind, count in (("call", calls), ("stream", streams)):
        if count <= 0:
            continue
        # CPU time of this thread, not wall time: on a shared machine, time spent preempted would otherwise
        # be charged to whatever function happened to be running.
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        worker.run(kind, count, "replay")
        profiler.disable()
        print(f"\n=== {mode}: {count} {'non-streaming' if kind == 'call' else 'streaming'} calls ===")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(r"otel_llm|openai_v2|util/genai|opentelemetry", 40)


# --- the orchestrator -------------------------------------------------------------------------------------
def ensure_venv(path: Path, *, rebuild: bool = False) -> Path:
    """The bench virtualenv's python, creating the venv or reinstalling when the requirements changed."""
    python = path / "bin" / "python"
    marker = path / ".bench-requirements"
    wanted = "\n".join((str(REPO), *OFFICIAL_REQUIREMENTS))
    if not rebuild and python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"preparing {path} (editable otel-llm + {', '.join(OFFICIAL_REQUIREMENTS)}) ...", file=sys.stderr)
    if rebuild or not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True, timeout=300)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-e", str(REPO), *OFFICIAL_REQUIREMENTS],
        check=True,
        timeout=900,
    )
    marker.write_text(wanted)
    return python


def _worker_env() -> dict[str, str]:
    # Every mode runs with the instrumentations' defaults, whatever the caller's shell exports.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "ANTHROPIC_"))}
    env["PYTHONHASHSEED"] = "0"
    return env


class _Proc:
    def __init__(
        self, python: Path, mode: str, base_url: str, warmup_calls: int, warmup_streams: int
    ) -> None:
        self.mode = mode
        self.proc = subprocess.Popen(
            [
                str(python),
                str(Path(__file__).resolve()),
                "--worker",
                mode,
                "--base-url",
                base_url,
                "--warmup-calls",
                str(warmup_calls),
                "--warmup-streams",
                str(warmup_streams),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_worker_env(),
            cwd=str(REPO / "bench"),
        )

    def _read(self) -> Any:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.mode!r} exited with {self.proc.wait(timeout=10)}")
        return json.loads(line)

    def wait_ready(self) -> None:
        self._read()

    def ask(self, command: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class _Rounds:
    """Per-mode, per-round medians and all raw samples (microseconds)."""

    medians: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    samples: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})

    def add(self, mode: str, samples_ns: list[int]) -> None:
        us = [s / 1000 for s in samples_ns]
        self.medians[mode].append(statistics.median(us))
        self.samples[mode].extend(us)

    def median(self, mode: str) -> float:
        return statistics.median(self.medians[mode])

    def mean(self, mode: str) -> float:
        return statistics.fmean(self.samples[mode])

    def added(self, mode: str) -> float:
        """Median over rounds of (mode - baseline) in the same round: drift between rounds cancels out."""
        return statistics.median([m - b for m, b in zip(self.medians[mode], self.medians["none"])])


def _rotations(modes: Sequence[str], rounds: int) -> Iterator[list[str]]:
    # Rotate who goes first so that no mode always runs right after a particular other one.
    for r in range(rounds):
        k = r % len(modes)
        yield [*modes[k:], *modes[:k]]


def _responder_factory() -> Callable[[Any], Any]:
    from otel_llm.testing.llm_server import Reply

    def responder(request: Any) -> Any:
        if request.stream:
            # One word per streamed chunk: 200 content chunks, plus role, finish and usage chunks.
            return Reply(text=" ".join(f"w{i}" for i in range(200)))
        return Reply(text=NON_STREAM_REPLY)

    return responder


def _versions(python: Path) -> str:
    code = (
        "from importlib.metadata import version as v; "
        "print(', '.join(f'{p} {v(p)}' for p in ('openai', 'opentelemetry-sdk', "
        "'opentelemetry-instrumentation-openai-v2', 'otel-llm')))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


@dataclass
class _Results:
    """One transport's figures."""

    plain_wall: _Rounds = field(default_factory=_Rounds)
    plain_cpu: _Rounds = field(default_factory=_Rounds)
    stream_wall: _Rounds = field(default_factory=_Rounds)
    stream_cpu: _Rounds = field(default_factory=_Rounds)
    chunks: int = 0


def run_benchmark(args: argparse.Namespace, python: Path) -> tuple[dict[str, _Results], dict[str, Any]]:
    from otel_llm.testing.llm_server import LLMServer

    results = {t: _Results() for t in TRANSPORTS}
    with LLMServer(_responder_factory()) as server:
        procs = {m: _Proc(python, m, server.openai_base_url, args.warmup_calls, 20) for m in MODES}
        try:
            for proc in procs.values():
                proc.wait_ready()
            for order in _rotations(MODES, args.rounds):
                for mode in order:
                    for transport, r in results.items():
                        command = {"kind": "call", "count": args.calls_per_round, "transport": transport}
                        reply = procs[mode].ask(command)
                        r.plain_wall.add(mode, reply["wall_ns"])
                        r.plain_cpu.add(mode, reply["cpu_ns"])
                        command = {"kind": "stream", "count": args.streams_per_round, "transport": transport}
                        reply = procs[mode].ask(command)
                        r.stream_wall.add(mode, reply["wall_ns"])
                        r.stream_cpu.add(mode, reply["cpu_ns"])
                        r.chunks = reply["chunks"]
            counts = {m: procs[m].ask("counts") for m in MODES}
        finally:
            for proc in procs.values():
                proc.close()
    return results, counts


def _added(rounds: _Rounds, mode: str, per: int = 1, digits: int = 1) -> str:
    return "-" if mode == "none" else f"{rounds.added(mode) / per:+.{digits}f}"


def print_tables(
    args: argparse.Namespace, results: dict[str, _Results], counts: dict[str, Any], versions: str
) -> None:
    n_plain = args.rounds * args.calls_per_round
    n_stream = args.rounds * args.streams_per_round
    calls_made = len(TRANSPORTS) * (n_plain + n_stream + args.warmup_calls + 20)
    print(f"\nInstrumentation overhead per LLM call ({versions})")
    print(
        f"{args.rounds} interleaved rounds after warm-up; {n_plain} non-streaming and {n_stream} streaming "
        "calls per mode and transport. Figures in µs, medians over rounds; 'added' = median over rounds "
        "of (mode - baseline) in the same round.\n"
        "wall = elapsed time of the call; CPU = CPU time of the calling thread (not charged for waiting "
        "on the server).\n"
        "spans/call: " + ", ".join(f"{MODE_LABELS[m]} {counts[m]['spans'] / calls_made:.2f}" for m in MODES)
    )
    for transport, r in results.items():
        print(f"\n== {TRANSPORT_LABELS[transport]} ==")
        header = (
            f"{'non-streaming':<22} {'wall median':>11} {'wall mean':>10} {'added wall':>11} "
            f"{'CPU median':>11} {'added CPU':>10}"
        )
        print(header)
        print("-" * len(header))
        for mode in MODES:
            print(
                f"{MODE_LABELS[mode]:<22} {r.plain_wall.median(mode):>11.1f} "
                f"{r.plain_wall.mean(mode):>10.1f} {_added(r.plain_wall, mode):>11} "
                f"{r.plain_cpu.median(mode):>11.1f} {_added(r.plain_cpu, mode):>10}"
            )
        header = (
            f"{f'streaming, {r.chunks} chunks':<22} {'wall median':>11} {'added wall':>11} {'added CPU':>10} "
            f"{'wall/chunk':>11} {'CPU/chunk':>10}"
        )
        print()
        print(header)
        print("-" * len(header))
        for mode in MODES:
            print(
                f"{MODE_LABELS[mode]:<22} {r.stream_wall.median(mode):>11.1f} "
                f"{_added(r.stream_wall, mode):>11} {_added(r.stream_cpu, mode):>10} "
                f"{_added(r.stream_wall, mode, r.chunks, 3):>11} "
                f"{_added(r.stream_cpu, mode, r.chunks, 3):>10}"
            )
    print("\nper chunk = added per streaming call / chunks (so it includes the stream's per-call cost)\n")
    for transport, r in results.items():
        for clock, plain, stream in (
            ("wall", r.plain_wall, r.stream_wall),
            ("CPU", r.plain_cpu, r.stream_cpu),
        ):
            ours, official = plain.added("otel_llm"), plain.added("official")
            ours_chunk, official_chunk = (
                stream.added("otel_llm") / r.chunks,
                stream.added("official") / r.chunks,
            )
            checks = [
                (f"<= {TARGET_CALL_US:g} µs/call ({ours:.1f})", ours <= TARGET_CALL_US),
                (f"<= {TARGET_CHUNK_US:g} µs/chunk ({ours_chunk:.3f})", ours_chunk <= TARGET_CHUNK_US),
                (f"< official per call ({official:.1f})", ours < official),
                (f"< official per chunk ({official_chunk:.3f})", ours_chunk < official_chunk),
            ]
            line = "; ".join(f"{'PASS' if ok else 'MISS'} {text}" for text, ok in checks)
            print(f"  otel_llm, {transport}, {clock}: {line}")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls-per-round", type=int, default=100, help="non-streaming calls per mode")
    parser.add_argument("--streams-per-round", type=int, default=20, help="streaming calls per mode")
    parser.add_argument("--warmup-calls", type=int, default=300)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--rebuild-venv", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 50 calls: a smoke run")
    parser.add_argument("--profile", choices=MODES, help="cProfile one mode instead of benchmarking")
    # Internal: the worker side.
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--warmup-streams", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--profile-calls", type=int, default=2000, help=argparse.SUPPRESS)
    parser.add_argument("--profile-streams", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls_per_round, args.streams_per_round, args.warmup_calls = 3, 50, 5, 50
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    if args.worker:
        if args.profile:
            profile_main(args.worker, args.base_url, args.profile_calls, args.profile_streams)
        else:
            worker_main(args.worker, args.base_url, args.warmup_calls, args.warmup_streams)
        return
    python = ensure_venv(args.venv, rebuild=args.rebuild_venv)
    if args.profile:
        from otel_llm.testing.llm_server import LLMServer

        with LLMServer(_responder_factory()) as server:
            command = [str(python), str(Path(__file__).resolve()), "--worker", args.profile]
            command += ["--profile", args.profile, "--base-url", server.openai_base_url]
            command += ["--profile-calls", str(args.profile_calls)]
            command += ["--profile-streams", str(args.profile_streams)]
            subprocess.run(command, check=True, env=_worker_env(), cwd=str(REPO / "bench"), timeout=1800)
        return
    results, counts = run_benchmark(args, python)
    print_tables(args, results, counts, _versions(python))


if __name__ == "__main__":
    main()
