#!/usr/bin/env bash
# Wheels that a lent GPU machine lacks, fetched here (where pip works) into .whl/ for the
# device tool's `carry`: its image holds torch (CUDA), numba, numpy, pandas, scipy, matplotlib
# and tqdm, but not dask (nor dask's partd / locket). Pure-Python wheels, ~1.5 MB.
# Usage: bash scripts/device_wheels.sh; then see benchmarks/gpu_checks.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "dask==2026.11.0" "partd==1.4.2" "locket==1.0.0"
ls -l .whl
