"""Biobank sample counts, few variants: what ``gwaslift gwas`` costs before and after its
pass over the genotypes, against plink2 --glm.

At 500,000 samples the per-sample work -- reading the .fam and a phenotype file of 10
columns, matching its IDs to the samples, building the design, writing results -- is paid
on every run (a run per chromosome, per phenotype batch), whatever the number of variants.
This script times it where it dominates: a few hundred variants.

One run, the same files, both tools as whole child processes with 2 threads, repeated
(``--repeats``; the table gives each time):

* ``gwaslift gwas --bfile D --pheno P --no-psam-pheno --threads 2 --out ...`` (every column of P);
* ``plink2 --bfile D --pheno P --no-psam-pheno --glm allow-no-covars omit-ref --threads 2 --out ...``.

``--no-psam-pheno``: the --dummy .fam holds a case/control phenotype, which both tools
would otherwise test too (as PHENO1), a logistic regression beside the file's columns.
Every output is checked to be one of the file's phenotypes.

and, in this process, the phenotype file read alone (``read_pheno_columns``, the parse
cache cleared before each read): the numba reader against pandas' round-trip parser
(the reader used where numba cannot load; what every read used before). Every phenotype's
results are checked against plink2's (OBS_CT; betas to plink2's printed digits).

Phenotype files: 10 N(0, 1) columns written as Python/pandas write doubles (shortest
round-trip form, 16-17 digits: ``repr``) and with 7 significant digits (``%.7g``).

    .venv/bin/python benchmarks/many_samples_vs_plink2.py [--samples 500000] [--variants 200]
        [--repeats 3] [--no-covariates] [--out benchmarks/out/many_samples.md]

With covariates (unless ``--no-covariates``): the same two tools, once each, with 20 PCs,
age, sex and a 20-level batch (42 design columns), on the 10 phenotypes (linear) and on
a case/control phenotype (logistic; plink2's Firth fallback writes .glm.logistic.hybrid),
with each child's peak RSS.

Data (cached in benchmarks/data/, git-ignored): ``plink2 --dummy N V 0.01 acgt --seed 1``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from linear_vs_plink2 import ROOT, np, pd, plink2, read_sumstats  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
GWASLIFT = [sys.executable, "-m", "gwaslift"]
FORMATS = {"repr": repr, "g7": lambda v: "%.7g" % v}


def dataset(n: int, m: int) -> Path:
    prefix = DATA / f"dummy_{n}_{m}"
    if not Path(f"{prefix}.bed").exists():
        DATA.mkdir(parents=True, exist_ok=True)
        plink2("--dummy", n, m, "0.01", "acgt", "--seed", "1", "--make-bed", "--out", prefix)
    return prefix


def write_pheno(prefix: Path, work: Path, k: int) -> dict:
    fam = pd.read_csv(f"{prefix}.fam", sep=r"\s+", header=None, dtype=str)
    y = np.random.default_rng(0).normal(size=(len(fam), k))
    paths = {}
    for name, fmt in FORMATS.items():
        path = work / f"pheno_{name}.tsv"
        with open(path, "w") as fh:
            fh.write("#FID\tIID\t" + "\t".join(f"y{j}" for j in range(k)) + "\n")
            fh.write("\n".join(f"{a}\t{b}\t" + "\t".join(fmt(float(v)) for v in row)
                               for a, b, row in zip(fam[0], fam[1], y)) + "\n")
        paths[name] = path
    return paths


def timed(cmd) -> float:
    return timed_rss(cmd)[0]


def timed_rss(cmd) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of a child process (its own rusage, via wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"failed: {' '.join(map(str, cmd))}\n{err[-2000:]}")
    return dt, usage.ru_maxrss / 2**20  # kB -> GB


def write_covariates(prefix: Path, work: Path) -> tuple[Path, Path]:
    """20 PCs, age, sex and a 20-level batch (42 design columns with the intercept), and a
    case/control phenotype (30% cases, PLINK 1/2 coding)."""
    fam = pd.read_csv(f"{prefix}.fam", sep=r"\s+", header=None, dtype=str)
    rng = np.random.default_rng(2)
    n = len(fam)
    cov = pd.DataFrame({"#FID": fam[0], "IID": fam[1]})
    for j in range(20):
        cov[f"PC{j}"] = np.round(rng.normal(size=n), 6)
    cov["age"], cov["sex"] = rng.integers(40, 70, n), rng.integers(1, 3, n)
    cov["batch"] = [f"B{b}" for b in rng.integers(0, 20, n)]
    cc = pd.DataFrame({"#FID": fam[0], "IID": fam[1], "cc": np.where(rng.random(n) < 0.3, 2, 1)})
    cov.to_csv(work / "covar.tsv", sep="\t", index=False)
    cc.to_csv(work / "cc.tsv", sep="\t", index=False)
    return work / "covar.tsv", work / "cc.tsv"


def read_time(path: Path, g, names, numba: bool) -> float:
    from gwaslift.io import pheno

    pheno._PARSED.clear()
    saved = pheno._text_kernels
    if not numba:
        pheno._text_kernels = lambda: None
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pheno.read_pheno_columns(path, g, names)
        return time.perf_counter() - t0
    finally:
        pheno._text_kernels = saved
        pheno._PARSED.clear()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=500_000)
    ap.add_argument("--variants", type=int, default=200)
    ap.add_argument("--phenotypes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-covariates", action="store_true",
                    help="skip the two runs with 42 covariates (plink2 takes ~3 minutes each at 500,000)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "many_samples.md")
    args = ap.parse_args(argv)
    work = args.out.parent / "many_samples_work"
    work.mkdir(parents=True, exist_ok=True)
    prefix = dataset(args.samples, args.variants)
    paths = write_pheno(prefix, work, args.phenotypes)
    names = [f"y{j}" for j in range(args.phenotypes)]
    import gwaslift

    g = gwaslift.read_plink(prefix)
    read_time(paths["g7"], g, names[:1], True)  # numba's cached kernels loaded once
    load0 = os.getloadavg()[0]
    rows, parity = [], []
    for stale in [*work.glob("g*.glm.*"), *work.glob("p*.glm.*")]:
        stale.unlink()  # the phenotypes each tool tested are read back from its outputs below

    def tested(stem: str) -> list[str]:
        return sorted(f.name[len(stem) + 1:].split(".glm.")[0] for f in work.glob(f"{stem}.*.glm.*"))

    for fmt, path in paths.items():
        ours = [timed([*GWASLIFT, "gwas", "--bfile", prefix, "--pheno", path, "--no-psam-pheno", "--threads", "2",
                       "--no-progress", "--out", work / f"g_{fmt}"]) for _ in range(args.repeats)]
        ref = [timed(["plink2", "--threads", "2", "--memory", "4000", "--bfile", prefix, "--pheno", path,
                      "--no-psam-pheno", "--glm", "allow-no-covars", "omit-ref", "cols=+beta",
                      "--out", work / f"p_{fmt}"])
               for _ in range(args.repeats)]
        fast = [read_time(path, g, names, True) for _ in range(args.repeats)]
        slow = [read_time(path, g, names, False) for _ in range(args.repeats)]
        rows.append((fmt, ours, ref, fast, slow))
        assert tested(f"g_{fmt}") == tested(f"p_{fmt}") == sorted(names), "the tools tested other phenotypes"
        for name in names:
            a = read_sumstats(work / f"g_{fmt}.{name}.glm.linear")
            b = read_sumstats(work / f"p_{fmt}.{name}.glm.linear")
            assert (a["snp"].to_numpy() == b["snp"].to_numpy()).all() and (a["a1"] == b["a1"]).all(), "variants differ"
            assert (a["n"].to_numpy() == b["n"].to_numpy()).all(), f"{name}: OBS_CT differs"
            scale = np.maximum(np.abs(b["beta"].to_numpy()), b["se"].to_numpy())
            parity.append(float(np.max(np.abs(a["beta"].to_numpy() - b["beta"].to_numpy()) / scale)))
    cov_rows = []
    if not args.no_covariates:
        covar, cc = write_covariates(prefix, work)
        for label, pheno, ext in (("linear, 10 phenotypes (%.7g file)", paths["g7"], "linear"),
                                  ("logistic, 1 case/control phenotype", cc, "logistic")):
            tag = ext
            ours = timed_rss([*GWASLIFT, "gwas", "--bfile", prefix, "--pheno", pheno, "--no-psam-pheno",
                              "--covar", covar, "--threads", "2", "--no-progress", "--out", work / f"gc_{tag}"])
            ref = timed_rss(["plink2", "--threads", "2", "--memory", "8000", "--bfile", prefix, "--pheno", pheno,
                             "--no-psam-pheno", "--covar", covar, "--glm", "omit-ref", "hide-covar", "cols=+beta",
                             "--out", work / f"pc_{tag}"])
            # (one phenotype: gwaslift writes <out>.glm.*, plink2 <out>.<name>.glm.*)
            assert tested(f"pc_{tag}") == (sorted(names) if ext == "linear" else ["cc"]), tested(f"pc_{tag}")
            assert tested(f"gc_{tag}") == (sorted(names) if ext == "linear" else []), tested(f"gc_{tag}")
            worst = 0.0
            stems = [f".{nm}" for nm in names] if ext == "linear" else [""]
            for stem in stems:
                suffix = "glm.linear" if ext == "linear" else "cc.glm.logistic.hybrid"
                a = read_sumstats(work / f"gc_{tag}{stem}.glm.{ext}")
                b = read_sumstats(work / f"pc_{tag}{stem}.{suffix}" if ext == "linear" else work / f"pc_{tag}.{suffix}")
                assert (a["n"].to_numpy() == b["n"].to_numpy()).all(), f"{label}: OBS_CT differs"
                ok = (a["errcode"] == "").to_numpy() & (b["errcode"] == "").to_numpy()
                scale = np.maximum(np.abs(b["beta"].to_numpy()[ok]), b["se"].to_numpy()[ok])
                worst = max(worst, float(np.max(np.abs(a["beta"].to_numpy()[ok] - b["beta"].to_numpy()[ok]) / scale)))
            cov_rows.append((label, ours, ref, worst))
    load1 = os.getloadavg()[0]

    def fmt_times(ts):
        return ", ".join(f"{t:.2f}" for t in ts)

    lines = [
        f"# gwaslift gwas vs plink2 --glm at {args.samples:,} samples x {args.variants} variants, "
        f"{args.phenotypes} phenotypes",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load average "
        f"{load0:.2f} at the start, {load1:.2f} at the end. Both tools as whole processes, 2 threads.",
        f"Command: `.venv/bin/python benchmarks/many_samples_vs_plink2.py --samples {args.samples} "
        f"--variants {args.variants} --repeats {args.repeats}`",
        "",
        "| phenotype file | gwaslift gwas (s) | plink2 --glm (s) | plink2 / gwaslift (best) "
        "| file read, numba (s) | file read, pandas round-trip (s) |",
        "|---|---|---|---|---|---|",
    ]
    for fmt, ours, ref, fast, slow in rows:
        lines.append(f"| {fmt} | {fmt_times(ours)} | {fmt_times(ref)} | {min(ref) / min(ours):.2f}x "
                     f"| {fmt_times(fast)} | {fmt_times(slow)} |")
    lines += ["", f"Parity: every phenotype has plink2's variants and OBS_CT; betas within "
                  f"{max(parity):.1e} of max(|beta|, SE)."]
    if cov_rows:
        lines += ["", "With covariates (20 PCs, age, sex, a 20-level batch: 42 design columns), one run each:", "",
                  "| model | gwaslift gwas (s, peak RSS) | plink2 --glm (s, peak RSS) | plink2 / gwaslift | parity |",
                  "|---|---|---|---|---|"]
        for label, (t, r), (tp, rp), worst in cov_rows:
            lines.append(f"| {label} | {t:.1f} s, {r:.2f} GB | {tp:.1f} s, {rp:.2f} GB | {tp / t:.2f}x "
                         f"| same OBS_CT; d beta / max(\\|beta\\|, SE) <= {worst:.1e} |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
