#!/usr/bin/env bash
# Install gwaslift (see scripts/setup.sh) and run the main job on the embedded simulated cohort.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/gwaslift demo --out "${1:-gwaslift-demo}"
