"""Firth logistic regression on rare variants: gwaslift.linear_gwas vs plink2 --glm.

Rare variants are where a case/control GWAS leaves ordinary logistic regression: a variant
whose few carriers are all cases (or all controls) has no finite maximum-likelihood
estimate, and plink2 by default refits it with Firth's penalized likelihood. One run times
both tools on the same files, same machine, 2 threads each, in two modes:

* ``fallback``: plink2's default ``firth-fallback`` against gwaslift's default
  ``firth="fallback"`` (ordinary fits, Firth where separated or not converged);
* ``always``: plink2 ``--glm firth`` against ``firth="always"`` (every variant Firth).

and checks that the results agree: the same variants refitted with Firth, the same NA set,
beta within a tolerance of the SE (plink2's Firth fits stop ~1e-4-1e-3 SE short of the
penalized maximum; gwaslift's run to a score below 1e-9 SE).

    .venv/bin/python benchmarks/firth_vs_plink2.py [--samples 10000] [--variants 5000] [--out benchmarks/results/firth.md]

Data (cached in benchmarks/data/, git-ignored): ``--samples`` x ``--variants`` rare variants,
A1 frequency ~ U(0.00005, 0.0025) (minor allele count ~1-50 at 10,000 samples), genotypes
binomial(2, p), written by ``gwaslift.write_plink``; 10 N(0, 1) covariates; a binary
phenotype, 30% cases, from the first two covariates only (seed 0). No variant has an
effect: this measures the fitting, not power.
"""

from __future__ import annotations

import os

# 2 threads for every numerical library, set before numpy is imported
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "2"

import argparse  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gwaslift  # noqa: E402
from gwaslift.io.sumstats import read_sumstats  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from linear_vs_plink2 import loadavg  # noqa: E402  (the same load-average column)

DATA = ROOT / "benchmarks" / "data"
K = 10


def dataset(n: int, m: int) -> tuple[Path, Path, Path]:
    """The cached rare-variant fileset and its pheno / covar files (made if absent)."""
    prefix = DATA / f"rare_{n}_{m}"
    pheno, covar = Path(f"{prefix}.pheno.tsv"), Path(f"{prefix}.covar.tsv")
    if not (Path(f"{prefix}.bed").exists() and pheno.exists() and covar.exists()):
        DATA.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        p = rng.uniform(0.00005, 0.0025, m)
        G = rng.binomial(2, p, size=(n, m)).astype(np.float32)
        samples = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)],
                                "father": "0", "mother": "0", "sex": 0, "trait": np.nan})
        variants = pd.DataFrame({"chrom": "1", "snp": [f"r{j}" for j in range(m)], "cm": 0.0,
                                 "pos": np.arange(1, m + 1) * 100, "a1": "A", "a2": "G"})
        gwaslift.write_plink(prefix, G, samples=samples, variants=variants)
        C = rng.normal(size=(n, K))
        eta = np.log(0.3 / 0.7) + 0.4 * C[:, 0] - 0.3 * C[:, 1]
        y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
        ids = pd.DataFrame({"#FID": samples["fid"], "IID": samples["iid"]})
        ids.assign(b=y + 1).to_csv(pheno, sep="\t", index=False)
        pd.concat([ids, pd.DataFrame(C, columns=[f"c{k}" for k in range(K)])], axis=1).to_csv(
            covar, sep="\t", index=False)
    return prefix, pheno, covar


def run_plink2(prefix, pheno, covar, mode, out):
    mods = {"fallback": [], "always": ["firth"]}[mode]
    cmd = ["plink2", "--threads", "2", "--memory", "4000", "--bfile", str(prefix), "--pheno", str(pheno),
           "--covar", str(covar), "--glm", "hide-covar", *mods, "omit-ref", "cols=+a1freq,+err,+beta,+firth",
           "--out", str(out)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"plink2 failed: {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    path = {"fallback": f"{out}.b.glm.logistic.hybrid", "always": f"{out}.b.glm.firth"}[mode]
    ref = read_sumstats(path)
    if mode == "always":
        # plink2's .glm.firth has no FIRTH? column: every fitted row is a Firth fit
        ref["firth"] = (ref["errcode"] == "").to_numpy()
    return dt, ref, cmd


def run_gwaslift(prefix, pheno, covar, mode):
    t0 = time.perf_counter()
    g = gwaslift.read_plink(prefix)
    ph = pd.read_csv(pheno, sep="\t")
    cv = pd.read_csv(covar, sep="\t")
    assert (ph["IID"].astype(str).to_numpy() == g.samples["iid"].to_numpy()).all()
    res = gwaslift.linear_gwas(g, ph["b"].to_numpy(float), cv.iloc[:, 2:], firth=mode, progress=False)
    return time.perf_counter() - t0, res


def compare(ours: pd.DataFrame, ref: pd.DataFrame) -> dict:
    ok = (ours["errcode"] == "").to_numpy() & (ref["errcode"] == "").to_numpy()
    firth = ours["firth"].to_numpy()
    scaled = np.abs(ours["beta"].to_numpy() - ref["beta"].to_numpy()) / np.maximum(
        np.abs(ref["beta"].to_numpy()), ref["se"].to_numpy())
    se_rel = np.abs(ours["se"].to_numpy() / ref["se"].to_numpy() - 1)
    sel = ok & firth
    return {
        "firth_ours": int(firth.sum()), "firth_plink2": int(ref["firth"].sum()),
        "firth_same": bool((firth == ref["firth"].to_numpy()).all()),
        "na_ours": int((ours["errcode"] != "").sum()), "na_plink2": int((ref["errcode"] != "").sum()),
        "plink2_errcodes": dict(ref.loc[ref["errcode"] != "", "errcode"].value_counts()),
        "na_same": bool(((ours["errcode"] != "") == (ref["errcode"] != "")).all()),
        "beta_firth_max": float(scaled[sel].max()) if sel.any() else float("nan"),
        "beta_firth_p99": float(np.quantile(scaled[sel], 0.99)) if sel.any() else float("nan"),
        "beta_ordinary_max": float(scaled[ok & ~firth].max()) if (ok & ~firth).any() else float("nan"),
        "se_firth_rel_max": float(se_rel[sel].max()) if sel.any() else float("nan"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--variants", type=int, default=5_000)
    ap.add_argument("--modes", default="fallback,always")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "firth.md"))
    args = ap.parse_args()
    if shutil.which("plink2") is None:
        sys.exit("plink2 not found")
    prefix, pheno, covar = dataset(args.samples, args.variants)
    work = ROOT / "benchmarks" / "out" / "firth"
    work.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["plink2", "--version"], capture_output=True, text=True).stdout.strip()
    rows = []
    for mode in args.modes.split(","):
        load0 = loadavg()
        t_pl, ref, cmd = run_plink2(prefix, pheno, covar, mode, work / f"plink2_{mode}")
        t_gl, ours = run_gwaslift(prefix, pheno, covar, mode)
        row = dict(mode=mode, t_gwaslift=t_gl, t_plink2=t_pl, load_before=load0, load_after=loadavg(),
                   plink2_cmd=" ".join(cmd[:-2]).replace(str(ROOT) + "/", ""), **compare(ours, ref))
        print(row, flush=True)
        rows.append(row)
    lines = [
        "# Firth logistic regression on rare variants: gwaslift vs plink2 --glm",
        "",
        f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}); {version}; "
        "numpy/OpenBLAS and plink2 both limited to 2 threads.",
        f"Data: {args.samples:,} samples x {args.variants:,} rare variants (A1 frequency ~ U(0.00005, 0.0025)), "
        "10 N(0,1) covariates, binary phenotype (30% cases) from the covariates only.",
        "",
        f"Command: `.venv/bin/python benchmarks/firth_vs_plink2.py --samples {args.samples} "
        f"--variants {args.variants}`",
        "",
        "Times are wall-clock seconds (gwaslift includes `read_plink` and reading the pheno/covar files). "
        "beta diff = |beta_ours - beta_plink2| / max(|beta_plink2|, SE), over variants both fitted.",
        "",
        "| mode | gwaslift s | plink2 s | ratio (plink2 / gwaslift) | Firth fits ours / plink2 (same set) | "
        "NA ours / plink2 (same set) | plink2 NA codes | beta diff Firth fits max (p99) | SE rel. diff Firth max | "
        "beta diff ordinary fits max | load before / after | plink2 command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['t_gwaslift']:.2f} | {r['t_plink2']:.2f} | {r['t_plink2'] / r['t_gwaslift']:.2f} | "
            f"{r['firth_ours']} / {r['firth_plink2']} ({r['firth_same']}) | {r['na_ours']} / {r['na_plink2']} "
            f"({r['na_same']}) | {r['plink2_errcodes'] or '-'} | {r['beta_firth_max']:.1e} ({r['beta_firth_p99']:.1e}) | "
            f"{r['se_firth_rel_max']:.1e} | {r['beta_ordinary_max']:.1e} | {r['load_before']} / {r['load_after']} | "
            f"`{r['plink2_cmd']}` |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
