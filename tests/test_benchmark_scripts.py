"""Smoke runs of benchmark scripts written for a lent GPU, at CPU size, so that a session
with a GPU spends its device time measuring and not debugging, and of deep_waves.py, whose
equality check is part of its result. No timing is checked."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_biobank_gpu_runs_at_cpu_size(tmp_path):
    mod = _load("biobank_gpu")
    rec = mod.main(["--n-samples", "3000", "--n-snps", "1500", "--device", "cpu", "--data", str(tmp_path),
                    "--epoch-samples", "1500", "--eval-samples", "400", "--deeplift-samples", "100",
                    "--precision", "float32", "--json", str(tmp_path / "r.json")])
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["n_train"] == 1500 and saved["batches_per_epoch"] == 6
    for key in ("generate_s", "train_1_epoch_s", "train_2_epochs_s", "floor_epoch_s", "deeplift_s"):
        assert rec[key] > 0, key
    assert (tmp_path / "synthetic_3000_1500.bed").stat().st_size == 3 + 1500 * 750
    # a difference of two timings (2 epochs - 1 epoch): finite, but its sign is the machine's
    # noise at this size, so it is not checked (timings never go into tests)
    assert math.isfinite(saved["protocol_extrapolated"]["total_h"])


def test_deep_grid_runs_both_sides_at_cpu_size(tmp_path):
    """The paper-grid benchmark (gwaslift against the plain loop), at smoke size: the script a
    GPU session runs with --device cuda (benchmarks/gpu_checks.sh)."""
    import torch

    mod = _load("deep_grid")
    threads = torch.get_num_threads()
    try:
        out = mod.main(["--samples", "600", "--snps", "300", "--epochs", "2", "--patience", "1",
                        "--seeds", "1", "--threads", "1", "--device", "cpu", "--data", str(tmp_path),
                        "--json", str(tmp_path / "g.json")])
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "g.json").read_text())["m"] == 300
    # the same algorithm on both sides: every member stops at the same epoch, same weights
    assert out["same_epochs"] == 16 and out["max_abs_w1_diff"] < 1e-4
    assert out["gwaslift_s"] > 0 and out["plain_s"] > 0
    assert len(out["parity"]["per_config_mean_val_loglik"]) == 16


def test_gpu_checks_script_runs_its_steps_at_cpu_size(tmp_path):
    """benchmarks/gpu_checks.sh, the one command a GPU session runs, in its SMOKE mode: every
    step exits 0 and leaves its JSON."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
           "DATA": str(tmp_path / "data")}
    subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_checks.sh")], env=env, check=True,
                   capture_output=True, timeout=600)
    steps = (tmp_path / "out" / "steps.txt").read_text().splitlines()
    assert [s.split(":")[0] for s in steps] == ["grid_f32", "grid_bf16", "biobank"]
    assert all("exit 0 " in s for s in steps), steps
    for name in ("grid_f32", "grid_bf16", "biobank_gpu"):
        assert json.loads((tmp_path / "out" / f"{name}.json").read_text())


def test_deep_waves_runs_and_finds_the_members_equal(tmp_path):
    """benchmarks/deep_waves.py at smoke size: both child processes train the 80-member
    grid (one wave, and waves under a tiny budget) and their weights compare equal."""
    mod = _load("deep_waves")
    out = mod.main(["--samples", "300", "--snps", "120", "--epochs", "1", "--budget-gb", "0.002",
                    "--threads", "1", "--data", str(tmp_path), "--out", str(tmp_path / "w.md")])
    assert out["same"] and out["one_wave"][1] > 0 and out["bounded"][1] > 0
    assert "bitwise equal: True" in (tmp_path / "w.md").read_text()
