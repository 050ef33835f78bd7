#!/usr/bin/env bash
# The GPU measurements of issues 4 and 8 in one command, for a session that is lent a GPU.
#
#   1. grid_f32:  the paper grid (80 fits, benchmarks/deep_grid.py), gwaslift against the plain
#                 PyTorch loop, both on the GPU (issue 4: "the same grid's wall time");
#   2. grid_bf16: gwaslift's side again with bf16 first-layer products;
#   3. biobank:   400,000 x 300,000 (benchmarks/biobank_gpu.py): generation, epoch time against
#                 its first-layer floor, DeepLIFT, the protocol extrapolated (issues 4 and 8).
#
# Each step has its own time limit (T_GRID, T_BF16, T_BIO seconds), so a slow step leaves the
# others their time; JSON and logs go to $OUT, which the device tool brings back. The device
# image lacks dask: first, here, `bash scripts/device_wheels.sh`; then one device `run` with
# carry [".whl"], timeout_s 600 and the command `bash benchmarks/gpu_checks.sh`.
# SMOKE=1 runs the same steps at toy sizes on the CPU (how it was tested without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_checks}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [ "${SMOKE:-0}" = 1 ]; then
  DEV=cpu
  GRID=(--samples 600 --snps 300 --epochs 2 --patience 1 --seeds 1 --threads 1)
  BIO=(--n-samples 3000 --n-snps 1500 --epoch-samples 1500 --eval-samples 400 --deeplift-samples 100
       --precision float32)
else
  DEV=cuda
  GRID=(--epochs 15 --patience 3 --lr 3e-3 --threads 8)
  BIO=(--n-samples 400000 --n-snps 300000 --precision bf16)
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import sys, numpy, pandas, torch, numba, dask; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'pandas', pandas.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numba', numba.__version__, 'dask', dask.__version__)"
} 2>&1 | tee "$OUT/env.txt"

step() {  # name, time limit (s), command...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/steps.txt"
}

step grid_f32 "${T_GRID:-150}" "$PY" benchmarks/deep_grid.py --device "$DEV" "${GRID[@]}" \
  --data "${DATA:-/tmp/gwaslift_data}" --json "$OUT/grid_f32.json"
step grid_bf16 "${T_BF16:-60}" "$PY" benchmarks/deep_grid.py --device "$DEV" "${GRID[@]}" --precision bf16 \
  --skip-plain --data "${DATA:-/tmp/gwaslift_data}" --json "$OUT/grid_bf16.json"
step biobank "${T_BIO:-360}" "$PY" benchmarks/biobank_gpu.py --device "$DEV" "${BIO[@]}" \
  --data "${DATA:-/tmp/gwaslift_data}" --json "$OUT/biobank_gpu.json"
