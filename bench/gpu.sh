#!/usr/bin/env bash
# The GPU report of docs/benchmarks.md: throughput per batch size (float32, float64), compile time,
# peak device memory, the headline run and the CPU-infeasible full presets, as one markdown table.
#
#   bench/gpu.sh                       # full sizes (on a GPU: tens of minutes with the presets)
#   bench/gpu.sh --presets ''          # throughput and headline only (a few minutes)
#   bench/gpu.sh --tiny --out /tmp/r.md  # toy sizes: a smoke test that runs on any CPU (the tests run it)
#
# It installs nothing beyond the project: JAX (with CUDA on a GPU machine) and trajlab's other
# dependencies must be importable by $PYTHON (default: .venv/bin/python if present, else python3);
# trajlab itself is taken from this checkout's src/ when it is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c "import trajlab" 2>/dev/null; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
missing=$("$PYTHON" - <<'PY'
import importlib.util
names = ["jax", "optax", "diffrax", "numpy", "pandas", "pyarrow", "typer", "rich", "yaml", "matplotlib", "cvxpy"]
print(" ".join(n for n in names if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
    echo "error: $PYTHON lacks $missing (install the project's dependencies first: pip install -e .)" >&2
    exit 2
fi
exec "$PYTHON" -m trajlab.bench_gpu "$@"
