"""gwaslift.deeplift versus captum.attr.DeepLift: time and peak memory, same model, same data.

Both explain the same GenotypeMLP (h1=64, h2=256; random weights, seed 0) on the same
plink2 --dummy genotypes (2% missing calls), against the mean-genotype reference (centred
inputs, baseline 0), and both end with the per-SNP mean |contribution| over all samples
(the two results are compared: max abs difference printed).

* gwaslift: ``gwaslift.deeplift(fit, genotypes, samples="all")``: packed genotypes staged and
  decoded batch by batch, closed-form Rescale, per-SNP sums accumulated.
* Captum, as a user would run it: build the dense float32 centred matrix of the samples
  (``genotypes.dosage`` -> numpy -> minus center, NaN -> 0), then ``DeepLift(model).attribute``
  in sample batches, summing |attributions| per SNP. When the dense matrix would exceed
  ``--dense-limit-gb`` (10,000 x 100,000 is 4 GB) it is read in blocks of samples instead.

Two first layers: "dense" (every SNP weight nonzero: our worst case) and "l1" (1% of the SNP
columns nonzero, the others exactly 0, as the proximal L1 fits leave them).

Each (method, size, model) runs in a fresh subprocess; memory = peak RSS of that process
(``ru_maxrss``) and its growth over the RSS after setup (imports, model, center). Wall and
CPU seconds (``time.process_time``, all threads) are printed with the 1-minute load average
before and after each run, since the machine may be shared.

Usage:  .venv/bin/python benchmarks/deeplift_vs_captum.py [--sizes 2500x10000,10000x100000]
        [--models dense,l1] [--captum-samples N]   (N: run Captum on the first N samples only)
        [--threads T]   (torch threads of both methods; default 2)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dataset(n: int, m: int) -> Path:
    """plink2 --dummy N M 0.02 acgt --seed 1 under benchmarks/data (reused when present)."""
    names = {(10000, 100000): "dummy_10k_100k"}
    prefix = DATA / names.get((n, m), f"dummy_{n}_{m}")
    if not prefix.with_suffix(".bed").exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(["plink2", "--threads", "2", "--dummy", str(n), str(m), "0.02", "acgt", "--seed", "1",
                        "--make-bed", "--out", str(prefix)], check=True, capture_output=True)
    return prefix


def setup(prefix: Path, model_kind: str):
    import torch

    from gwaslift import read_plink
    from gwaslift.deep.fit import VARIANT_COLUMNS, DeepFit, Member, Split
    from gwaslift.deep.network import GenotypeMLP
    from gwaslift.deep.train import training_center

    g = read_plink(prefix)
    cpath = Path(f"{prefix}.center.npy")
    if cpath.exists():
        center = np.load(cpath)
    else:
        center = training_center(g, np.arange(g.n_samples))
        np.save(cpath, center)
    torch.manual_seed(0)
    model = GenotypeMLP(g.n_variants, (64, 256)).eval()
    if model_kind == "l1":
        keep = np.random.default_rng(0).choice(g.n_variants, max(1, g.n_variants // 100), replace=False)
        mask = torch.zeros(g.n_variants, dtype=torch.bool)
        mask[torch.as_tensor(keep)] = True
        with torch.no_grad():
            model.snp_linear.weight[:, ~mask] = 0.0
    n = g.n_samples
    split = Split(train=np.arange(0, n // 2), early_stop=np.arange(n // 2, 3 * n // 4),
                  validation=np.arange(3 * n // 4, n))
    fit = DeepFit(members=[Member({"hidden": (64, 256), "l1": 0.0}, 0, model, {}, "refit")],
                  variants=g.variants[VARIANT_COLUMNS].reset_index(drop=True), center=center,
                  covar_names=[], covar_mean=np.zeros(0), covar_scale=np.zeros(0), split=split,
                  samples=g.samples[["fid", "iid"]].reset_index(drop=True), trait="binary")
    return g, model, center, fit


def run_gwaslift(g, fit, n_samples, batch_size):
    from gwaslift import deeplift

    res = deeplift(fit, g, samples=np.arange(n_samples), batch_size=batch_size, progress=False)
    return res.scores["deeplift_mean_abs"].to_numpy(), {"max_delta_error": res.max_delta_error}


def run_captum(g, model, center, n_samples, batch_size, dense_limit_gb):
    import torch
    from captum.attr import DeepLift

    dl = DeepLift(model)
    m = g.n_variants
    total = torch.zeros(m, dtype=torch.float64)
    block = n_samples if n_samples * m * 4 <= dense_limit_gb * 2**30 else max(batch_size, 1000)
    for b0 in range(0, n_samples, block):
        rows = np.arange(b0, min(n_samples, b0 + block))
        # the whole matrix when all samples are wanted and fit, else just these rows
        dens = g.dosage.compute() if len(rows) == g.n_samples else g.dosage[rows].compute()
        x = torch.from_numpy(np.nan_to_num(dens - center, nan=0.0).astype(np.float32))
        del dens
        for s in range(0, len(rows), batch_size):
            xb = x[s:s + batch_size].clone().requires_grad_()
            a = dl.attribute(xb, baselines=torch.zeros_like(xb), target=0)
            total += a.detach().abs().sum(0, dtype=torch.float64)
        del x
    return (total / n_samples).numpy(), {"dense_block": int(block)}


def worker(args):
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    n, m = (int(v) for v in args.size.split("x"))
    g, model, center, fit = setup(dataset(n, m), args.model)
    n_samples = args.n_samples or n
    base = rss_mb()
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    if args.method == "gwaslift":
        scores, extra = run_gwaslift(g, fit, n_samples, args.batch_size)
    else:
        scores, extra = run_captum(g, model, center, n_samples, args.batch_size, args.dense_limit_gb)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = Path(args.scores_out)
    np.save(out, scores)
    print(json.dumps({"method": args.method, "size": args.size, "model": args.model, "n_samples": n_samples,
                      "seconds": sec, "cpu_seconds": cpu, "peak_rss_mb": peak_mb(), "setup_rss_mb": base,
                      "load_before": load0, "load_after": os.getloadavg()[0], **extra}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2500x10000,10000x100000")
    ap.add_argument("--models", default="dense,l1")
    ap.add_argument("--captum-samples", type=int, default=0, help="Captum on the first N samples only")
    ap.add_argument("--gwaslift-samples", default="", help="extra gwaslift runs on these sample counts")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--dense-limit-gb", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of both methods")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", default="gwaslift")
    ap.add_argument("--size", default="")
    ap.add_argument("--model", default="dense")
    ap.add_argument("--n-samples", type=int, default=0)
    ap.add_argument("--scores-out", default="")
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    rows = []
    tmp = HERE / "out"
    tmp.mkdir(exist_ok=True)
    for size in args.sizes.split(","):
        n, m = (int(v) for v in size.split("x"))
        dataset(n, m)
        for model in args.models.split(","):
            runs = [("gwaslift", n), ("captum", min(n, args.captum_samples) if args.captum_samples else n)]
            runs += [("gwaslift", int(k)) for k in args.gwaslift_samples.split(",") if k and int(k) < n]
            res = {}
            for method, ns in runs:
                sc = tmp / f"dl_{method}_{size}_{model}_{ns}.npy"
                cmd = [sys.executable, __file__, "--worker", "--method", method, "--size", size, "--model", model,
                       "--n-samples", str(ns), "--batch-size", str(args.batch_size),
                       "--dense-limit-gb", str(args.dense_limit_gb), "--scores-out", str(sc),
                       "--threads", str(args.threads)]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    print(r.stdout, r.stderr, file=sys.stderr)
                    raise SystemExit(f"{method} {size} {model} failed")
                rec = json.loads(r.stdout.strip().splitlines()[-1])
                rec["scores"] = np.load(sc)
                res[(method, ns)] = rec
                rows.append(rec)
                print(f"{size:>14} {model:>5} {method:>8} n={ns:>6}: {rec['seconds']:8.2f} s wall "
                      f"{rec['cpu_seconds']:8.2f} s CPU  "
                      f"peak RSS {rec['peak_rss_mb']:7.0f} MB (setup {rec['setup_rss_mb']:.0f} MB, "
                      f"+{rec['peak_rss_mb'] - rec['setup_rss_mb']:.0f} MB)  "
                      f"load avg {rec['load_before']:.2f} -> {rec['load_after']:.2f}", flush=True)
            g_rec, c_rec = res[("gwaslift", n)], res[("captum", runs[1][1])]
            if c_rec["n_samples"] == n:
                diff = float(np.abs(g_rec["scores"] - c_rec["scores"]).max())
                scale = float(np.abs(c_rec["scores"]).max())
                print(f"{'':>14} {model:>5} max |mean|C| gwaslift - captum| = {diff:.2e} (max score {scale:.2e});"
                      f" speed-up {c_rec['seconds'] / g_rec['seconds']:.1f}x wall, "
                      f"{c_rec['cpu_seconds'] / g_rec['cpu_seconds']:.1f}x CPU", flush=True)
            else:
                f = n / c_rec["n_samples"]
                print(f"{'':>14} {model:>5} captum on {c_rec['n_samples']} samples; linear extrapolation "
                      f"to {n}: {c_rec['seconds'] * f:.1f} s wall, {c_rec['cpu_seconds'] * f:.1f} s CPU -> "
                      f"speed-up ~{c_rec['seconds'] * f / g_rec['seconds']:.1f}x wall, "
                      f"~{c_rec['cpu_seconds'] * f / g_rec['cpu_seconds']:.1f}x CPU", flush=True)


if __name__ == "__main__":
    main()
