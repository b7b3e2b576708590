"""Regenerate `blind_spot.otlp.jsonl`, the blind-spot incident as OTLP JSON lines, byte for byte.

    python examples/incidents/generate.py [--output PATH]

The traffic is the collector's `blind_spot` scenario (`otel_llm_collector.scenarios`), sampled down so that
the file stays small: one call every 10 s instead of one a second, every call scored instead of one in ten
(the same number of faithfulness scores per minute, so the same rules see the same evidence), from 09:00
to 11:00 instead of 08:00 to 12:00, and one export request per minute of traffic. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from otel_llm_collector import scenarios
from otel_llm_collector.scenarios import Scenario, at

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "blind_spot.otlp.jsonl"
CALLS_PER_SECOND = 0.1
EVALUATED_SHARE = 1.0
START = (9, 0)
END = (11, 0)
BATCH_SECONDS = 60


def blind_spot_sampled() -> Scenario:
    """The reference scenario at a tenth of its call rate, every call scored, over two hours."""
    reference = scenarios.blind_spot()
    phases = tuple(
        replace(phase, calls_per_second=CALLS_PER_SECOND, evaluated_share=EVALUATED_SHARE)
        for phase in reference.phases
    )
    phases = (replace(phases[0], start_ns=at(*START)), *phases[1:])
    return replace(reference, phases=phases, end_ns=at(*END), batch_seconds=BATCH_SECONDS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default {OUTPUT})")
    args = parser.parse_args(argv)
    lines = scenarios.write_jsonl(blind_spot_sampled(), args.output)
    print(f"wrote {lines} export requests to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
