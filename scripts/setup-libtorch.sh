#!/usr/bin/env bash
# Create or reuse a cached venv with torch==2.9.0 (the LibTorch that burn-tch 0.22 / tch 0.22 expects) and
# transformers (the reference the parity tests compare with), and print the environment that
# `cargo build --features tch` needs. Idempotent: a second run only prints.
#
#   eval "$(scripts/setup-libtorch.sh)"   # then: cargo build --features tch
#
# download.pytorch.org is unreachable from the build machines, so LibTorch comes from PyPI's torch wheel
# (6.7 GB with its CUDA 12.8 libraries, ~3 min). The full install is needed even for CPU runs: burn-tch loads
# libtorch_cuda.so at start-up. Progress goes to stderr, the env to stdout.
set -euo pipefail

TORCH_VERSION=2.9.0
# The reference implementation the parity tests compare with (scripts/gen_reference.py, scripts/hf_check.py).
TRANSFORMERS_VERSION=4.57.1
cache="${REVGEN_CACHE:-$HOME/.cache/revgen}"
venv="$cache/torch-$TORCH_VERSION-venv"
python="${PYTHON:-python3}"

installed_version() {
    "$venv/bin/python" -c 'import torch, sys; sys.stdout.write(torch.__version__.split("+")[0])' 2>/dev/null || true
}

if [ "$(installed_version)" != "$TORCH_VERSION" ]; then
    echo "setup-libtorch: installing torch==$TORCH_VERSION into $venv" >&2
    mkdir -p "$cache"
    # Build in a side directory and move it into place, so an interrupted install is never mistaken for a good one.
    rm -rf "$venv.partial"
    "$python" -m venv "$venv.partial" >&2
    "$venv.partial/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" >&2
    # venv scripts embed their own path; recreate them at the final location.
    rm -rf "$venv"
    mv "$venv.partial" "$venv"
    "$python" -m venv --upgrade "$venv" >&2
    [ "$(installed_version)" = "$TORCH_VERSION" ] || { echo "setup-libtorch: torch import failed in $venv" >&2; exit 1; }
fi

transformers_version() {
    "$venv/bin/python" -c 'import transformers, sys; sys.stdout.write(transformers.__version__)' 2>/dev/null || true
}
if [ "$(transformers_version)" != "$TRANSFORMERS_VERSION" ]; then
    echo "setup-libtorch: installing transformers==$TRANSFORMERS_VERSION into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "transformers==$TRANSFORMERS_VERSION" >&2
    [ "$(transformers_version)" = "$TRANSFORMERS_VERSION" ] || { echo "setup-libtorch: transformers import failed" >&2; exit 1; }
fi

echo "export LIBTORCH_USE_PYTORCH=1"
echo "export PATH=\"$venv/bin:\$PATH\""
echo "export REVGEN_TORCH_VENV=\"$venv\""
