"""otel-llm: OpenTelemetry instrumentation that makes LLM quality observable.

Public API grows here as modules land; see the README for usage.
"""

from __future__ import annotations

from otel_llm.version import __version__

__all__ = ["__version__"]
