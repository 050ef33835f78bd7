"""gwaslift.pca vs plink2 --pca approx on one structured fileset, timed in one run.

The fileset (cached under benchmarks/data/) is a Balding-Nichols simulation: 11 populations
of unequal sizes (weights 1..11) drawn from one ancestral allele-frequency spectrum
(U(0.05, 0.95)) with F_ST = 0.03, so that 10 PCs carry structure with clear gaps. It is
written block by block with gwaslift's PlinkWriter.

Usage::

    .venv/bin/python benchmarks/pca_vs_plink2.py                  # 10,000 x 100,000
    .venv/bin/python benchmarks/pca_vs_plink2.py --n-samples 2000 --n-snps 20000

Both tools get 2 threads: plink2 ``--threads 2``; gwaslift runs the Dask threaded scheduler
with 2 workers. Reported: wall and CPU times (CPU = user + system of the process, or of the
plink2 child; less sensitive than wall time to other jobs on a shared machine), their
ratios, and |corr| of PC1..PCk between the tools.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gwaslift  # noqa: E402
from gwaslift.io.writer import PlinkWriter  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
OUT = ROOT / "benchmarks" / "out"


def make_structured(prefix: Path, n: int, m: int, n_pops: int = 11, fst: float = 0.03,
                    seed: int = 1, block: int = 4000) -> Path:
    """Write a Balding-Nichols fileset (n samples x m SNPs) unless it already exists."""
    if all(Path(f"{prefix}.{e}").exists() for e in ("bed", "bim", "fam")):
        return prefix
    rng = np.random.default_rng(seed)
    weights = np.arange(1, n_pops + 1, dtype=float)
    sizes = np.floor(n * weights / weights.sum()).astype(int)
    sizes[-1] += n - sizes.sum()
    pop = np.repeat(np.arange(n_pops), sizes)
    samples = pd.DataFrame({"fid": [f"pop{p}" for p in pop], "iid": [f"s{i}" for i in range(n)]})
    variants = pd.DataFrame({
        "chrom": "1", "snp": [f"snp{j}" for j in range(m)], "cm": 0.0,
        "pos": np.arange(1, m + 1, dtype=np.int64) * 100, "a1": "A", "a2": "G",
    })
    c = (1 - fst) / fst
    t0 = time.perf_counter()
    with PlinkWriter(prefix, samples, variants) as w:
        for start in range(0, m, block):
            b = min(block, m - start)
            anc = rng.uniform(0.05, 0.95, b)
            pk = rng.beta(anc * c, (1 - anc) * c, size=(n_pops, b)).astype(np.float32)
            p_ind = pk[pop]  # (n, b) allele frequency of each sample's population
            g = (rng.random((n, b), dtype=np.float32) < p_ind).astype(np.uint8)
            g += rng.random((n, b), dtype=np.float32) < p_ind
            w.write(g)
    print(f"wrote {prefix} ({n} x {m}) in {time.perf_counter() - t0:.1f} s", flush=True)
    return prefix


def run_plink2(prefix: Path, k: int, threads: int, out: Path) -> tuple[float, float]:
    """Run plink2 --pca approx; return (wall seconds, CPU seconds of the child)."""
    cmd = ["plink2", "--threads", str(threads), "--memory", "2500", "--bfile", str(prefix),
           "--pca", str(k), "approx", "--seed", "1", "--out", str(out)]
    print("$", " ".join(cmd), flush=True)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(res.stdout + res.stderr)
    return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-samples", type=int, default=10_000)
    ap.add_argument("--n-snps", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n-iter", type=int, default=5)
    ap.add_argument("--oversample", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-plink2", action="store_true", help="time gwaslift only")
    args = ap.parse_args()

    if shutil.which("plink2") is None and not args.skip_plink2:
        sys.exit("plink2 not found")
    import dask

    prefix = make_structured(DATA / f"bn11_{args.n_samples}_{args.n_snps}", args.n_samples, args.n_snps)
    OUT.mkdir(parents=True, exist_ok=True)
    g = gwaslift.read_plink(prefix)

    with dask.config.set(scheduler="threads", num_workers=args.threads):
        c0, t0 = time.process_time(), time.perf_counter()
        pcs = gwaslift.pca(g, k=args.k, n_iter=args.n_iter, oversample=args.oversample, seed=0)
        t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    print(f"gwaslift.pca(k={args.k}, n_iter={args.n_iter}, oversample={args.oversample}): "
          f"{t_ours:.1f} s wall, {c_ours:.1f} s CPU (variant_chunk={g.variant_chunk}), peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB", flush=True)
    print("gwaslift eigenvalues:", np.round(pcs.attrs["eigenvalues"], 4).tolist())
    if args.skip_plink2:
        return

    out = OUT / f"pca_{args.n_samples}_{args.n_snps}"
    t_plink, c_plink = run_plink2(prefix, args.k, args.threads, out)
    print(f"plink2 --pca {args.k} approx: {t_plink:.1f} s wall, {c_plink:.1f} s CPU", flush=True)
    ev = pd.read_csv(f"{out}.eigenvec", sep="\t")
    evals = np.loadtxt(f"{out}.eigenval")
    assert (ev["IID"].astype(str).to_numpy() == pcs["iid"].to_numpy()).all()
    corr = [abs(np.corrcoef(ev[f"PC{i}"], pcs[f"PC{i}"])[0, 1]) for i in range(1, args.k + 1)]
    print("plink2 eigenvalues:  ", np.round(evals, 4).tolist())
    print("|corr| PC1..PC%d:" % args.k, [round(c, 5) for c in corr])
    print(f"min |corr| = {min(corr):.5f}")
    print(f"ratio plink2 / gwaslift = {t_plink / t_ours:.1f}x wall, {c_plink / c_ours:.1f}x CPU "
          f"({args.n_samples} x {args.n_snps}, {args.threads} threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
