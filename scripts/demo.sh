#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh), then run the collector with embedded defaults and an instrumented
# demo app sending it traffic (examples/demo/demo.py). Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/demo/demo.py "$@"
