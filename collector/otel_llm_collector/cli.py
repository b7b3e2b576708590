"""The ``otel-llm`` command line: ``otel-llm collector [--config FILE] [flags]``.

Subcommands are registered in `build_parser` (``rules``, ``replay``, ``prompts``, ``switches``, ``report``,
``gate`` and ``slo`` join ``collector`` there); each sets a ``run`` function on its namespace that returns
the exit code. Flags override the config file, which overrides the defaults (see
`otel_llm_collector.config`). A bad flag or setting prints one line naming it and exits with status 2, the
argparse convention for usage errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otel_llm_collector import gate, prompts_cli, replay, report, rules_cli, slo_cli
from otel_llm_collector.config import ConfigError, load_settings

__all__ = ["build_parser", "main"]

USAGE_ERROR = 2


def _forward_target(text: str) -> dict[str, Any]:
    """``--forward grpc://host:4317`` or ``--forward http://host:4318``."""
    if text.startswith("grpc://"):
        return {"endpoint": text.removeprefix("grpc://"), "protocol": "grpc"}
    if text.startswith(("http://", "https://")):
        return {"endpoint": text, "protocol": "http"}
    raise argparse.ArgumentTypeError(f"expected grpc://host:port or http://host:port, got {text!r}")


def _add_collector(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "collector",
        help="run the OTLP collector",
        description="Receive OTLP traces and logs, window GenAI calls, expose /metrics and /api/v1.",
    )
    parser.add_argument("--config", type=Path, help="YAML settings file (flags override it)")
    parser.add_argument("--otlp-grpc-endpoint", help="OTLP/gRPC listen address (default 0.0.0.0:4317)")
    parser.add_argument("--otlp-http-endpoint", help="OTLP/HTTP listen address (default 0.0.0.0:4318)")
    parser.add_argument(
        "--http-endpoint", help="/metrics, /api/v1, /healthz listen address (default 0.0.0.0:9464)"
    )
    parser.add_argument(
        "--state-dir", type=Path, help="SQLite state and window snapshots (default ./otel-llm-state)"
    )
    parser.add_argument("--max-request-bytes", type=int)
    parser.add_argument("--queue-max-batches", type=int)
    parser.add_argument("--max-series", type=int)
    parser.add_argument("--allowed-lateness-seconds", type=float)
    parser.add_argument("--snapshot-interval-seconds", type=float)
    parser.add_argument("--grpc-max-workers", type=int)
    parser.add_argument(
        "--reuse-port", action=argparse.BooleanOptionalAction, default=None, help="SO_REUSEPORT on OTLP ports"
    )
    parser.add_argument(
        "--forward",
        action="append",
        type=_forward_target,
        metavar="URL",
        help="forward every request to grpc://host:port or http://host:port (repeatable; replaces the file)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.set_defaults(run=_run_collector)


_SETTING_FLAGS = (
    "otlp_grpc_endpoint",
    "otlp_http_endpoint",
    "http_endpoint",
    "state_dir",
    "max_request_bytes",
    "queue_max_batches",
    "max_series",
    "allowed_lateness_seconds",
    "snapshot_interval_seconds",
    "grpc_max_workers",
    "reuse_port",
)


def _run_collector(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {name: getattr(args, name) for name in _SETTING_FLAGS}
    if args.forward:
        overrides["forward"] = args.forward
    try:
        settings = load_settings(args.config, overrides)
    except ConfigError as exc:
        print(f"otel-llm collector: {exc}", file=sys.stderr)
        return USAGE_ERROR
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from otel_llm_collector.app import run  # the server stack loads only when it is needed

    return run(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-llm", description="otel-llm: catch LLM quality regressions.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_collector(subparsers)
    rules_cli.add_parser(subparsers)
    replay.add_parser(subparsers)
    prompts_cli.add_parser(subparsers)
    report.add_parser(subparsers)
    gate.add_parser(subparsers)
    slo_cli.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
