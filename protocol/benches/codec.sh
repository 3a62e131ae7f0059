#!/usr/bin/env bash
# Runs the SparseLoCo codec benchmark with its NumPy baseline in the same run.
# Installs NumPy into a private virtualenv first (no system packages are touched).
#   bash protocol/benches/codec.sh            # full run (~5 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${L402_BENCH_VENV:-$HOME/.cache/l402-bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import numpy" 2>/dev/null || "$venv/bin/pip" install --quiet "numpy>=1.26,<3"
export L402_NUMPY_PYTHON="$venv/bin/python"
# Old OpenBLAS workarounds slow NumPy down; the codec uses no BLAS, but unset them to be safe.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE || true
exec cargo bench -p l402-protocol --bench codec -- "$@"
