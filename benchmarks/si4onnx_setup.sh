#!/usr/bin/env bash
# Create (once) the private virtual environment in which the authors' engine si4onnx runs.
#
# si4onnx 0.1.13 needs numpy < 2 and torch, which clash with diffad's environment (numpy 2),
# so it lives in its own venv OUTSIDE the repository and is never a diffad dependency.
# torch is pinned to 2.13.0: that release is the CPU wheel that pip takes from this machine's
# local disk (an unpinned torch would pull a multi-GB CUDA build). Idempotent: if the venv
# already imports si4onnx at the pinned version, nothing is installed.
#
# Usage: benchmarks/si4onnx_setup.sh [VENV_DIR]   (default ~/.cache/diffad/si4onnx-venv)
# Prints the venv's python path on the last line of stdout.
set -euo pipefail

VENV="${1:-${SI4ONNX_VENV:-$HOME/.cache/diffad/si4onnx-venv}}"
PY="$VENV/bin/python"

# Exact pins, so that every run of the comparison uses the same engine; the sicore version is
# the newest that pip resolves for si4onnx 0.1.13 (its requirement is sicore>=2.3.0) and is
# pinned so the p-value definition cannot change under us.
PINS=(
    "si4onnx==0.1.13"
    "sicore==3.0.0"
    "torch==2.13.0"
    "numpy<2"
    "onnx"
)

if [ -x "$PY" ] && "$PY" - <<'EOF' >/dev/null 2>&1; then
import importlib.metadata as m
assert m.version("si4onnx") == "0.1.13"
assert m.version("sicore") == "3.0.0"
import numpy, si4onnx, sicore  # noqa: F401
assert numpy.__version__.startswith("1.")
EOF
    echo "si4onnx venv ready: $VENV" >&2
    echo "$PY"
    exit 0
fi

echo "creating si4onnx venv in $VENV (one time, a few minutes)" >&2
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$PY" -m pip install --quiet --upgrade pip >&2
"$PY" -m pip install --quiet "${PINS[@]}" >&2
"$PY" -c "import si4onnx, sicore, numpy, torch; print('si4onnx venv ok: numpy', numpy.__version__, 'torch', torch.__version__)" >&2
echo "$PY"
