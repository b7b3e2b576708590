#!/usr/bin/env bash
# Installs what otel-llm needs on a fresh Debian machine: system packages (when root and missing) and a
# virtual environment at .venv with the project and its development extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
need_apt=()
# A C compiler and the interpreter's headers build the collector's native decoder (optional: without them
# the install goes on and the pure-Python decoder does the work, several times slower).
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
"$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need_apt+=(python3-dev)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
  || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]} (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # The packages start system services; the project starts its own instances on loopback.
    systemctl stop prometheus prometheus-alertmanager >/dev/null 2>&1 || true
  else
    echo "setup: ${need_apt[*]} missing and not root; tests that need them will skip" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import otel_llm, otel_llm_collector"
.venv/bin/python -c "from otel_llm_collector.native_decode import native_built; import sys; sys.exit(not native_built())" \
  || echo "setup: the native trace decoder was not built (no C compiler or Python headers); using the pure-Python decoder" >&2
