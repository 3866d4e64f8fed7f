#!/usr/bin/env bash
# Paper-size GPU benchmark (benchmarks/gpu/run.py; options pass through): writes benchmarks/gpu/results-<device>.json.
cd "$(dirname "$0")/../.." || exit 1
PY="${PYTHON:-$(hatch env find default 2>/dev/null)/bin/python}"; [ -x "$PY" ] || PY=python3
exec "$PY" benchmarks/gpu/run.py "$@"
