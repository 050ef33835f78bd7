#!/usr/bin/env bash
# Set up gwaslift in ./.venv. Usage: bash scripts/setup.sh [--test]
#   --test  also install the test extras and the Debian plink2 package (the reference tool).
# On a machine without an NVIDIA GPU the CPU build of PyTorch is installed first, so that
# the `torch` requirement is already met and pip never pulls the multi-GB CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $PIP install -q torch
  else
    # a local CPU wheel (pip's find-links) first; else PyTorch's CPU-only index
    $PIP install -q "torch==2.13.0+cpu" 2>/dev/null \
      || $PIP install -q torch --index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi

if [ "${1:-}" = "--test" ]; then
  $PIP install -q -e ".[test]"
  if ! command -v plink2 >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq plink2 >/dev/null
  fi
else
  $PIP install -q -e .
fi
