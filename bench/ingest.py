"""Ingest benchmark: end-to-end GenAI spans/s over OTLP/gRPC on loopback, beside the parse-only ceiling.

    .venv/bin/python bench/ingest.py                      # all phases, default durations
    .venv/bin/python bench/ingest.py --seconds 20 --long-seconds 120 --client-processes 2

Phases, all in one run so the figures are comparable:

1. ceilings, in this process, on the same pre-encoded bytes: protobuf ``FromString`` (parse only), parse +
   ``decode_traces``, and ``WindowEngine.apply`` of decoded results;
2. end to end: ``otel-llm collector`` as a subprocess; client processes (threads, one gRPC channel each)
   send the pre-encoded 512-span requests (~15 attributes per span) as raw bytes for ``--seconds``; the
   figure is spans acknowledged divided by the time until the windows have applied all of them (read from
   ``/api/v1/status``), so queued-but-unapplied work is not counted as done. Shed requests (UNAVAILABLE)
   are retried after the server's delay, as the OTLP exporters do, and reported;
3. memory: a longer run over 10,000 active series, sampling the collector's RSS every second; the peak is
   the kernel's high-water mark (``VmHWM``);
4. ``SO_REUSEPORT``: two collector processes bound to the same port, the same clients, the sum.

Client and collectors share the machine's cores, so the client's CPU use is printed too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_REQUEST = 512
# BENCH_OTEL_LLM names another collector command, to compare two builds in alternating runs.
OTEL_LLM = Path(os.environ.get("BENCH_OTEL_LLM") or Path(sys.executable).with_name("otel-llm"))


def build_requests(count: int, series: int, base_ns: int) -> list[bytes]:
    """``count`` distinct 512-span requests whose spans cycle through ``series`` feature names."""
    from otel_llm_collector.testing import genai_request

    from otel_llm import attributes as A

    payloads = []
    for k in range(count):
        request = genai_request(spans=SPANS_PER_REQUEST, series=1, seed=k, start_ns=base_ns + k * 1_000_000)
        for i, span in enumerate(request.resource_spans[0].scope_spans[0].spans):
            for attribute in span.attributes:
                if attribute.key == A.FEATURE:
                    attribute.value.string_value = f"feature-{(k * SPANS_PER_REQUEST + i) % series}"
                    break
        payloads.append(request.SerializeToString())
    return payloads


# --- ceilings --------------------------------------------------------------------------------------------


def ceilings(payloads: list[bytes], seconds: float) -> dict[str, float]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from otel_llm_collector.decode import decode_traces
    from otel_llm_collector.native_decode import native_trace_decoder
    from otel_llm_collector.windows import WindowEngine

    def rate(work: Any) -> float:
        done = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            work(payloads[done % len(payloads)])
            done += 1
        return done * SPANS_PER_REQUEST / (time.perf_counter() - started)

    parse = ExportTraceServiceRequest.FromString
    results = [decode_traces(parse(p)) for p in payloads]
    engine = WindowEngine(max_series=20_000)
    applied = iter(range(10**12))
    figures = {
        "parse_only": rate(parse),
        "parse_and_decode": rate(lambda p: decode_traces(parse(p))),
    }
    native = native_trace_decoder()
    if native is not None:  # what the collector runs: the same bytes decoded by the extension
        figures["native_decode"] = rate(native)
    figures["windows_apply"] = rate(lambda p: engine.apply(results[next(applied) % len(results)]))
    return figures


# --- collector subprocesses ------------------------------------------------------------------------------


@dataclass
class Collector:
    process: subprocess.Popen[str]
    grpc: str
    http: str

    @classmethod
    def start(cls, state_dir: Path, config: Path, grpc_endpoint: str = "127.0.0.1:0") -> Collector:
        command = [
            str(OTEL_LLM),
            "collector",
            f"--config={config}",
            f"--otlp-grpc-endpoint={grpc_endpoint}",
            "--otlp-http-endpoint=127.0.0.1:0",
            "--http-endpoint=127.0.0.1:0",
            f"--state-dir={state_dir}",
            "--log-level=WARNING",
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.match(r"otel-llm collector ready otlp_grpc=(\S+) otlp_http=\S+ http=(\S+)", line)
        if found is None:
            process.kill()
            raise SystemExit(f"collector did not start: {line!r}")
        return cls(process, found.group(1), found.group(2))

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{self.http}/api/v1/status", timeout=30) as response:
            result: dict[str, Any] = json.load(response)
            return result

    def memory_kib(self) -> tuple[int, int]:
        """(current RSS, peak RSS) in KiB, from the kernel."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
        peak = int(re.search(r"VmHWM:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
        return rss, peak

    def cpu_seconds(self) -> float:
        """User plus system CPU the collector process has used, from the kernel."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# --- clients ---------------------------------------------------------------------------------------------


def _client_main(
    endpoint: str,
    threads: int,
    start_at: float,
    seconds: float,
    series: int,
    seed: int,
    sweep_minutes: float,
    out: Any,
) -> None:
    import grpc
    from google.rpc import error_details_pb2

    count = max(16, -(-series // SPANS_PER_REQUEST))  # enough requests to touch every series
    first_ns = time.time_ns() - int((sweep_minutes * 60 + 120) * 1e9) + seed * 10**9
    payloads = build_requests(count, series, first_ns)
    totals = {"accepted_spans": 0, "shed": 0, "errors": 0}
    lock = threading.Lock()
    done = threading.Event()

    def sweep() -> None:
        # Event time moves through `sweep_minutes` during the run, so minute buckets open, roll up into
        # hours and are evicted as they would over a long day, in a run of minutes.
        nonlocal payloads
        while not done.wait(5.0):
            progress = min(1.0, max(0.0, (time.time() - start_at) / seconds))
            payloads = build_requests(count, series, first_ns + int(progress * sweep_minutes * 60e9))

    refresher = threading.Thread(target=sweep, daemon=True)
    if sweep_minutes > 0:
        refresher.start()

    def sender(index: int) -> None:
        # One channel (one TCP connection) per thread, so SO_REUSEPORT can spread the connections.
        with grpc.insecure_channel(endpoint, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            call = channel.unary_unary(TRACE_EXPORT)
            accepted = shed = errors = 0
            n = index
            while time.time() < start_at:
                time.sleep(0.001)
            deadline = start_at + seconds
            while time.time() < deadline:
                try:
                    call(payloads[n % len(payloads)], timeout=60)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        errors += 1
                        continue
                    shed += 1
                    delay = 0.05
                    for key, value in error.trailing_metadata() or ():
                        if key == "google.rpc.retryinfo-bin":
                            info = error_details_pb2.RetryInfo.FromString(value)
                            delay = info.retry_delay.ToNanoseconds() / 1e9
                    time.sleep(delay)
                    continue
                accepted += SPANS_PER_REQUEST
                n += threads
        with lock:
            totals["accepted_spans"] += accepted
            totals["shed"] += shed
            totals["errors"] += errors

    cpu_before = os.times()
    workers = [threading.Thread(target=sender, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    cpu_after = os.times()
    totals["cpu_seconds"] = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    out.put(totals)


def run_clients(
    endpoint: str, *, processes: int, threads: int, seconds: float, series: int, sweep_minutes: float = 0.0
) -> tuple[dict[str, float], float]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 4.0  # after every client built its requests
    workers = [
        context.Process(
            target=_client_main,
            args=(endpoint, threads, start_at, seconds, series, i, sweep_minutes, out),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    summed = {key: float(sum(r[key] for r in results)) for key in results[0]}
    return summed, start_at


def wait_applied(collectors: list[Collector], spans: float, timeout: float = 300.0) -> float:
    """The wall-clock time at which the windows had applied ``spans`` calls in total."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        applied = sum(c.status()["windows"]["calls_total"] for c in collectors)
        if applied >= spans:
            return time.time()
        time.sleep(0.05)
    raise SystemExit(f"windows applied {applied} of {spans} calls within {timeout}s")


def throughput(
    collectors: list[Collector],
    args: argparse.Namespace,
    seconds: float,
    series: int,
    sweep_minutes: float = 0.0,
) -> dict[str, float]:
    before = sum(c.status()["windows"]["calls_total"] for c in collectors)
    cpu_before = sum(c.cpu_seconds() for c in collectors)
    totals, start_at = run_clients(
        collectors[0].grpc,
        processes=args.client_processes,
        threads=args.client_threads,
        seconds=seconds,
        series=series,
        sweep_minutes=sweep_minutes,
    )
    done_at = wait_applied(collectors, before + totals["accepted_spans"])
    elapsed = done_at - start_at
    cpu = sum(c.cpu_seconds() for c in collectors) - cpu_before
    return {
        **totals,
        # CPU per span moves less than spans/s when other jobs share the machine: a steadier comparison.
        "collector_cpu_us_per_span": cpu / max(totals["accepted_spans"], 1) * 1e6,
        "elapsed_seconds": elapsed,
        "spans_per_second": totals["accepted_spans"] / elapsed,
        "client_cpu_share": totals["cpu_seconds"] / elapsed,
    }


def long_run(collector: Collector, args: argparse.Namespace) -> dict[str, Any]:
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append(collector.memory_kib()[0])

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = throughput([collector], args, args.long_seconds, args.series, args.sweep_minutes)
    finally:
        stop.set()
        sampler.join()
    rss, peak = collector.memory_kib()
    status = collector.status()
    third = max(1, len(samples) // 3)
    step = max(1, len(samples) // 10)
    timeline = " ".join(f"{kib / 1024:.0f}" for kib in samples[::step])
    return {
        "timeline": timeline,
        **result,
        "series": status["windows"]["series"],
        "overflow_calls": status["windows"]["overflow_calls_total"],
        "rss_mib_end": rss / 1024,
        "rss_mib_peak": peak / 1024,
        "rss_mib_first_third_max": max(samples[:third], default=0) / 1024,
        "rss_mib_last_third_max": max(samples[-third:], default=0) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="each throughput phase")
    parser.add_argument("--long-seconds", type=float, default=60.0, help="the memory phase")
    parser.add_argument("--series", type=int, default=10_000, help="active series in the memory phase")
    parser.add_argument(
        "--sweep-minutes", type=float, default=90.0, help="event time covered by the memory phase"
    )
    parser.add_argument(
        "--snapshot-seconds", type=float, default=30.0, help="the collector's snapshot interval"
    )
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--client-threads", type=int, default=8)
    parser.add_argument("--grpc-max-workers", type=int, default=2, help="the collector's gRPC thread pool")
    parser.add_argument("--no-wal", action="store_true", help="run the collector without its write-ahead log")
    parser.add_argument(
        "--no-rules", action="store_true", help="run the collector without rules (windows and snapshots only)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the single-process collector (needs py-spy)"
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=["ceilings", "single", "long", "reuseport"]
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="otel-llm-bench-"))
    config = work / "bench.yaml"
    config.write_text(
        "queue_max_batches: 64\nretry_after_seconds: 0.02\n"
        f"snapshot_interval_seconds: {args.snapshot_seconds}\n"
        f"max_series: {max(args.series, 1000) + 100}\ngrpc_max_workers: {args.grpc_max_workers}\n"
        f"write_ahead_log: {'false' if args.no_wal else 'true'}\n"
        f"rules_enabled: {'false' if args.no_rules else 'true'}\n"
    )
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; work dir {work}")
    payloads = build_requests(16, 50, time.time_ns() - 120 * 10**9)
    print(
        f"requests: {SPANS_PER_REQUEST} spans, {len(payloads[0]) / SPANS_PER_REQUEST:.0f} bytes/span encoded"
    )

    if "ceilings" not in args.skip:
        for name, value in ceilings(payloads, min(args.seconds, 5.0)).items():
            print(f"ceiling  {name:18s} {value:>12,.0f} spans/s (one thread, this process)")

    if "single" not in args.skip:
        collector = Collector.start(work / "single", config)
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(collector.process.pid),
                    "--duration",
                    str(int(args.seconds)),
                    "--format",
                    "speedscope",
                    "--output",
                    str(work / "profile.json"),
                    "--threads",
                    "--gil",
                ],
                stdout=subprocess.DEVNULL,
            )
        try:
            result = throughput([collector], args, args.seconds, 50)
            if profiler is not None:
                profiler.wait(timeout=60)
                print(f"profile: {work / 'profile.json'}")
            rss, peak = collector.memory_kib()
        finally:
            collector.stop()
        print(
            f"end-to-end 1 process  {result['spans_per_second']:>12,.0f} spans/s  "
            f"({result['accepted_spans']:,.0f} spans in {result['elapsed_seconds']:.1f}s, "
            f"shed {result['shed']:.0f}, errors {result['errors']:.0f}, "
            f"client CPU {result['client_cpu_share']:.2f} cores, "
            f"collector CPU {result['collector_cpu_us_per_span']:.2f} us/span, "
            f"RSS {rss / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB)"
        )

    if "long" not in args.skip:
        collector = Collector.start(work / "long", config)
        try:
            result = long_run(collector, args)
        finally:
            collector.stop()
        print(
            f"memory   {result['series']:.0f} series, {args.long_seconds:.0f}s "
            f"sweeping {args.sweep_minutes:.0f} event-time minutes, "
            f"{result['accepted_spans']:,.0f} spans ({result['spans_per_second']:,.0f}/s): "
            f"RSS peak {result['rss_mib_peak']:.0f} MiB, end {result['rss_mib_end']:.0f} MiB, "
            f"max in first third {result['rss_mib_first_third_max']:.0f} MiB, "
            f"last third {result['rss_mib_last_third_max']:.0f} MiB; "
            f"overflow calls {result['overflow_calls']:.0f}"
        )
        print(f"         RSS every ~10% of the run (MiB): {result['timeline']}")

    if "reuseport" not in args.skip:
        first = Collector.start(work / "rp1", config)
        second = Collector.start(work / "rp2", config, grpc_endpoint=first.grpc)
        try:
            result = throughput([first, second], args, args.seconds, 50)
            split = [c.status()["windows"]["calls_total"] for c in (first, second)]
        finally:
            first.stop()
            second.stop()
        print(
            f"end-to-end 2 processes (SO_REUSEPORT) {result['spans_per_second']:>12,.0f} spans/s  "
            f"(split {split[0]:,.0f} / {split[1]:,.0f}, shed {result['shed']:.0f}, "
            f"client CPU {result['client_cpu_share']:.2f} cores)"
        )


if __name__ == "__main__":
    main()
