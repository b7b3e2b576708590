"""`otel-llm collector` as a subprocess on ephemeral ports, for the end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def running_collector(
    tmp_path: Path, settings: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """Start it with `settings` on top of loopback port-0 endpoints; yields its bound addresses by name
    (`otlp_grpc`, `otlp_http`, `http`); stops it (SIGTERM, then SIGKILL) afterwards."""
    config = tmp_path / "collector.yaml"
    config.write_text(
        json.dumps(
            {
                "otlp_grpc_endpoint": "127.0.0.1:0",
                "otlp_http_endpoint": "127.0.0.1:0",
                "http_endpoint": "127.0.0.1:0",
                "state_dir": str(tmp_path / "state"),
                **(settings or {}),
            }
        )
    )
    log_path = tmp_path / "collector.log"
    log = log_path.open("w")  # a file, not a pipe: nobody drains it while the test runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_llm_collector.cli", "collector", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("otel-llm collector ready"), line + log_path.read_text()
        yield dict(part.split("=", 1) for part in line.split()[3:])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()
