"""QC pass (allele frequencies + call rates) of gwaslift versus ``plink2 --freq --missing``.

Both tools run on the same PLINK fileset, with the same number of threads, in one run of
this script; each is timed best-of-N wall clock, alternating, after a warm-up that puts the
.bed in the page cache for both. gwaslift is timed twice:

* ``qc pass``: :func:`gwaslift.qc.genotype_counts` (one pass over the packed bytes) and the
  two labelled tables :func:`allele_stats` / :func:`sample_missingness`, on an opened fileset;
* ``open + qc pass``: the same plus :func:`gwaslift.read_plink` (parsing .bim/.fam), which
  plink2's time also includes. plink2 also writes its .afreq/.vmiss/.smiss text files.

The outputs are checked against each other before timing (frequencies, missing counts).

Usage::

    .venv/bin/python benchmarks/qc_vs_plink2.py [--samples 10000 --variants 100000
        --threads 2 --repeats 3 --keep-fraction 1.0 --out benchmarks/out/qc_vs_plink2.md]

Data: ``benchmarks/data/dummy_<S>_<V>`` (``plink2 --dummy S V 0.02 acgt --seed 1``), made
once and reused (``dummy_10k_100k`` for the default sizes).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gwaslift  # noqa: E402
from gwaslift.qc import allele_stats, genotype_counts, sample_missingness  # noqa: E402


def _short(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def dataset(data_dir: Path, n_samples: int, n_variants: int, plink2: str) -> Path:
    """The benchmark fileset prefix, made with plink2 --dummy when not there yet."""
    prefix = data_dir / f"dummy_{_short(n_samples)}_{_short(n_variants)}"
    if all(Path(f"{prefix}.{e}").is_file() for e in ("bed", "bim", "fam")):
        return prefix
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([plink2, "--threads", "2", "--memory", "2000", "--dummy", str(n_samples),
                    str(n_variants), "0.02", "acgt", "--seed", "1", "--make-bed", "--out",
                    str(prefix)], check=True, capture_output=True)
    return prefix


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_plink2(plink2: str, prefix: Path, out: Path, threads: int, keep: Path | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one plink2 run (``keep``: its --keep file)."""
    c0, t0 = _child_cpu(), time.perf_counter()
    subprocess.run([plink2, "--threads", str(threads), "--memory", "4000", "--bfile", str(prefix),
                    *(["--keep", str(keep)] if keep is not None else []),
                    "--freq", "--missing", "--out", str(out)], check=True, capture_output=True)
    return time.perf_counter() - t0, _child_cpu() - c0


def run_gwaslift(prefix: Path, geno=None, keep: np.ndarray | None = None):
    """One QC pass: ((wall s, CPU s), tables). With ``geno`` given the open is not timed;
    ``keep``: the sample positions to keep (the --keep file's samples, in file order)."""
    c0, t0 = time.process_time(), time.perf_counter()
    if geno is None:
        geno = gwaslift.read_plink(prefix)
        if keep is not None:
            geno = geno.subset(samples=keep)
    g = geno
    counts = genotype_counts(g, progress=False)
    var = allele_stats(g, counts=counts)
    smp = sample_missingness(g, counts=counts)
    return (time.perf_counter() - t0, time.process_time() - c0), (var, smp)


def check_same(out: Path, var: pd.DataFrame, smp: pd.DataFrame) -> None:
    freq = pd.read_csv(f"{out}.afreq", sep="\t")
    vmiss = pd.read_csv(f"{out}.vmiss", sep="\t")
    smiss = pd.read_csv(f"{out}.smiss", sep="\t")
    assert (freq["ALT"].to_numpy() == var["a1"].to_numpy()).all()
    assert np.allclose(freq["ALT_FREQS"], var["a1_freq"], rtol=6e-6, atol=1e-12)
    assert (vmiss["MISSING_CT"].to_numpy() == var["n_missing"].to_numpy()).all()
    assert (smiss["MISSING_CT"].to_numpy() == smp["n_missing"].to_numpy()).all()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--variants", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep-fraction", type=float, default=1.0,
                    help="QC of a random sample subset of this size (plink2 --keep), seed 0")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "qc_vs_plink2.md")
    args = ap.parse_args(argv)

    import dask

    plink2 = shutil.which("plink2")
    if plink2 is None:
        print("plink2 not found on PATH", file=sys.stderr)
        return 2
    version = subprocess.run([plink2, "--version"], capture_output=True, text=True).stdout.strip()
    prefix = dataset(args.data_dir, args.samples, args.variants, plink2)
    bed_bytes = Path(f"{prefix}.bed").stat().st_size
    # dask's thread pool = the threads given to plink2
    dask.config.set(scheduler="threads", num_workers=args.threads)

    load_before = os.getloadavg()
    times = {"plink2 --freq --missing": [], "gwaslift qc pass": [], "gwaslift open + qc pass": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plink2"
        g = gwaslift.read_plink(prefix)
        keep = keep_file = None
        if args.keep_fraction < 1:
            rng = np.random.default_rng(0)
            keep = np.sort(rng.permutation(g.n_samples)[: int(args.keep_fraction * g.n_samples)])
            keep_file = Path(tmp) / "keep.txt"
            g.samples.iloc[keep][["fid", "iid"]].to_csv(keep_file, sep="\t", header=["#FID", "IID"], index=False)
            g = g.subset(samples=keep)
        # warm-up (page cache, imports, lookup tables) and cross-check of the outputs
        run_plink2(plink2, prefix, out, args.threads, keep_file)
        _, (var, smp) = run_gwaslift(prefix, g)
        check_same(out, var, smp)
        for _ in range(args.repeats):
            times["plink2 --freq --missing"].append(run_plink2(plink2, prefix, out, args.threads, keep_file))
            times["gwaslift qc pass"].append(run_gwaslift(prefix, g)[0])
            times["gwaslift open + qc pass"].append(run_gwaslift(prefix, keep=keep)[0])
    load_after = os.getloadavg()

    best = {k: min(w for w, _ in v) for k, v in times.items()}
    cpu = {k: min(c for _, c in v) for k, v in times.items()}
    ref = best["plink2 --freq --missing"]
    lines = [
        f"QC pass, {args.samples:,} samples x {args.variants:,} variants "
        f"({bed_bytes / 1e6:.0f} MB packed .bed, 2% missing), {args.threads} threads, "
        f"best of {args.repeats}"
        + (f"; a random {args.keep_fraction:.0%} of the samples (plink2 --keep)." if keep is not None else "."),
        "",
        "| tool | best wall (s) | all runs wall (s) | packed GB/s | wall / plink2 | best CPU user+sys (s) |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in times.items():
        lines.append(f"| {k} | {best[k]:.3f} | {', '.join(f'{w:.3f}' for w, _ in v)} | "
                     f"{bed_bytes / best[k] / 1e9:.2f} | {best[k] / ref:.2f} | {cpu[k]:.3f} |")
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs visible; {version}; "
        f"python {platform.python_version()}, numpy {np.__version__}, dask {dask.__version__}.",
        f"Load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f}"
        " (above ~0.5 means other jobs shared the CPU).",
        "Outputs checked equal before timing (A1 frequency, variant and sample missing counts).",
        f"Command: {' '.join([Path(sys.executable).name, *sys.argv])}",
    ]
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
