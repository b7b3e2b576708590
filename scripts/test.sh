#!/usr/bin/env bash
# The whole test job: set up (scripts/setup.sh), lint (ruff), types (mypy --strict), then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff check" && .venv/bin/ruff check .
echo "== ruff format --check" && .venv/bin/ruff format --check .
echo "== mypy --strict" && .venv/bin/mypy otel_llm collector/otel_llm_collector
echo "== pytest" && .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
