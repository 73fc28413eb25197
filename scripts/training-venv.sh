#!/usr/bin/env bash
# Makes the virtual environment the step-detection corpus runs in
# (fixtures/training/): PyTorch (CPU use of PyPI's wheel, ~5.6 GB with its
# CUDA libraries, about two minutes), scikit-learn, JAX and optax, numpy.
#   scripts/training-venv.sh [DIR]     (default: ~/.cache/sofa/training-venv)
# Prints the venv's python on its last line. Idempotent.
set -euo pipefail
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/sofa/training-venv}
python=${PYTHON:-python3}
if [ ! -x "$dir/bin/python" ]; then
    mkdir -p "$(dirname "$dir")"
    "$python" -m venv "$dir"
fi
if ! "$dir/bin/python" -c 'import torch, sklearn, jax, optax, numpy' 2>/dev/null; then
    "$dir/bin/pip" install --quiet --disable-pip-version-check torch numpy scikit-learn jax optax
fi
echo "$dir/bin/python"
