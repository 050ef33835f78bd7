"""Biobank-sized QC + linear GWAS on the CI machine: peak RSS and throughput vs plink2.

20,000 samples x 500,000 SNPs (2.5 GB packed .bed; the float32 dosage matrix would be
40 GB, beyond this machine's RAM). One run times, on the same file and one after the other:

* gwaslift ``qc_stats`` (A1 frequency + variant/sample missingness, one pass over the packed
  bytes) -- vs ``plink2 --freq --missing`` (case ``qc``);
* gwaslift ``qc`` (filters maf 0.01, geno 0.02, mind 0.02), writing the kept variant IDs --
  vs ``plink2 --maf 0.01 --geno 0.02 --mind 0.02 --write-snplist --write-samples`` (case
  ``qc_filter``);
* gwaslift ``linear_gwas`` without covariates -- vs ``plink2 --glm allow-no-covars omit-ref``;
* gwaslift ``linear_gwas`` with 10 N(0,1) covariates on the first ``--covar-variants`` SNPs --
  vs ``plink2 --glm hide-covar omit-ref --covar`` on the same SNPs (plink2 refits the
  covariates per variant with missing calls, which is slow at full size);
* the same for a binary phenotype (logistic regression, both tools in their default Firth
  fallback).

Each tool runs in its own child process; its peak resident memory and CPU time come from
``os.wait4`` (the kernel's ru_maxrss of that process). The .bed is read once beforehand so
both tools find it in the page cache. gwaslift's results are checked against plink2's.

    .venv/bin/python benchmarks/biobank_cpu.py [--covar-variants 20000] [--cases qc,qc_filter,linear,linear_covar,logistic_covar]
        [--out benchmarks/results/biobank_cpu.md]

Data (cached in benchmarks/data/, git-ignored): ``plink2 --dummy 20000 500000 0.01 acgt
--seed 3 --make-bed``; quantitative phenotype and covariates are N(0, 1) draws (seed 0); the
binary phenotype (30% cases, coded 1/2 as plink2 reads it) does not depend on them (seed 1).
"""

from __future__ import annotations

import os

# 2 threads for every numerical library, set before numpy is imported
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "2"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
OUT = ROOT / "benchmarks" / "out" / "biobank_cpu"
N, M, K = 20_000, 500_000, 10
PLINK = ["plink2", "--threads", "2", "--memory", "2000"]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd`` as a child; wall seconds, user+sys CPU seconds, peak RSS (ru_maxrss)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out.decode()[-3000:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024,
            "stdout": out.decode()}


def dataset(n: int, m: int) -> Path:
    prefix = DATA / f"biobank_{n // 1000}k_{m // 1000}k"
    if not Path(f"{prefix}.bed").exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run([*PLINK, "--dummy", str(n), str(m), "0.01", "acgt", "--seed", "3",
                        "--make-bed", "--out", str(prefix)], check=True, capture_output=True)
    return prefix


# ----------------------------------------------------------------------------- children
def child(args) -> None:
    """One gwaslift job in this (measured) process; timings + results go to ``args.save``."""
    sys.path.insert(0, str(ROOT))
    import gwaslift
    from gwaslift.qc import qc_stats

    info = {}
    t0 = time.perf_counter()
    g = gwaslift.read_plink(args.prefix)
    if args.child == "qc":
        v, s = qc_stats(g)
        info["qc_stats_s"] = time.perf_counter() - t0
        np.savez(args.save, a1_freq=v["a1_freq"].to_numpy(), var_miss=v["n_missing"].to_numpy(),
                 smiss=s["n_missing"].to_numpy())
    elif args.child == "qc_filter":
        kept, report = gwaslift.qc(g, maf=0.01, geno=0.02, mind=0.02)
        # the kept variant and sample IDs, as plink2 --write-snplist / --write-samples
        Path(str(args.save) + ".snplist").write_text("\n".join(kept.variants["snp"]) + "\n")
        kept.samples[["fid", "iid"]].to_csv(str(args.save) + ".id", sep="\t", index=False, header=False)
        info["qc_filter_s"] = time.perf_counter() - t0
        info["qc_kept"] = list(kept.shape)
        info["qc_removed"] = report["reason"].value_counts().to_dict()
        np.savez(args.save, kept=np.array(kept.shape))
    else:
        pheno = pd.read_csv(OUT / "pheno.tsv", sep="\t")
        cov = None
        if args.child in ("linear_covar", "logistic_covar"):
            g = g.subset(variants=np.arange(args.nvar))
            cov = pd.read_csv(OUT / "covar.tsv", sep="\t").iloc[:, 2:]
        column = "b" if args.child == "logistic_covar" else "y"
        res = gwaslift.linear_gwas(g, pheno[column].to_numpy(float), cov)
        info["firth"] = int(res["firth"].sum())
        info["linear_s"] = time.perf_counter() - t0
        np.savez(args.save, beta=res["beta"].to_numpy(), se=res["se"].to_numpy(),
                 log10_p=res["log10_p"].to_numpy(), n=res["n"].to_numpy(), firth=res["firth"].to_numpy())
    info["variant_chunk"] = g.variant_chunk
    Path(str(args.save) + ".json").write_text(json.dumps(info))


def gwaslift_job(kind: str, prefix: Path, nvar: int = 0) -> tuple[dict, dict, dict]:
    save = OUT / f"gwaslift_{kind}.npz"
    r = run_measured([sys.executable, __file__, "--child", kind, "--prefix", str(prefix),
                      "--nvar", str(nvar), "--save", str(save)])
    return r, json.loads(Path(str(save) + ".json").read_text()), dict(np.load(save))


def plink_job(args: list[str]) -> tuple[dict, list[str]]:
    cmd = [*PLINK, *map(str, args)]
    return run_measured(cmd), cmd


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=N)
    ap.add_argument("--variants", type=int, default=M)
    ap.add_argument("--covar-variants", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "biobank_cpu.md")
    ap.add_argument("--cases", default="qc,qc_filter,linear,linear_covar,logistic_covar")
    ap.add_argument("--child", choices=["qc", "qc_filter", "linear", "linear_covar", "logistic_covar"])
    ap.add_argument("--prefix")
    ap.add_argument("--nvar", type=int, default=0)
    ap.add_argument("--save")
    args = ap.parse_args()
    if args.child:
        return child(args)

    OUT.mkdir(parents=True, exist_ok=True)
    prefix = dataset(args.samples, args.variants)
    fam = pd.read_csv(f"{prefix}.fam", sep=r"\s+", header=None, dtype=str)
    bim = pd.read_csv(f"{prefix}.bim", sep=r"\s+", header=None, dtype=str)
    n, m = len(fam), len(bim)
    rng = np.random.default_rng(0)
    ids = pd.DataFrame({"#FID": fam[0], "IID": fam[1]})
    pheno = ids.assign(y=rng.normal(size=n))
    ids.assign(**{f"c{k}": rng.normal(size=n) for k in range(K)}).to_csv(OUT / "covar.tsv", sep="\t", index=False)
    pheno["b"] = np.where(np.random.default_rng(1).random(n) < 0.3, 2, 1)
    pheno.to_csv(OUT / "pheno.tsv", sep="\t", index=False)
    cases = set(args.cases.split(","))
    nvar = min(args.covar_variants, m)
    bim[1].iloc[:nvar].to_csv(OUT / "covar_snps.txt", index=False, header=False)

    rows, notes = [], []
    bed = Path(f"{prefix}.bed")
    t0 = time.perf_counter()
    with open(bed, "rb") as fh:  # page cache warm-up, so neither tool pays the first disk read
        while fh.read(1 << 24):
            pass
    notes.append(f"warm-up read of the {bed.stat().st_size / 1e9:.2f} GB .bed: {time.perf_counter() - t0:.1f} s")
    load0 = load()

    def row(case, tool, r, cmd, extra=""):
        rows.append({"case": case, "tool": tool, "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
                     "peak_rss_mb": r["peak_rss_mb"], "load": load(), "cmd": cmd, "extra": extra})
        print(f"{case:14s} {tool:9s} wall {r['wall_s']:8.1f} s  cpu {r['cpu_s']:8.1f} s  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB  load {load()}", flush=True)

    # ---- QC: freq + missingness
    if "qc" in cases:
        qc_case(prefix, row, notes)
    if "qc_filter" in cases:
        qc_filter_case(prefix, row, notes)
    if "linear" in cases:
        linear_case(prefix, row, notes)
    for kind in ("linear_covar", "logistic_covar"):
        if kind in cases:
            covar_case(kind, prefix, nvar, row, notes)
    write_report(args, rows, notes, n, m, nvar, load0)


def qc_case(prefix, row, notes) -> None:
    rg, info, ours = gwaslift_job("qc", prefix)
    row("qc", "gwaslift", rg, "read_plink + qc_stats (child process)",
        f"qc_stats {info['qc_stats_s']:.1f} s incl. read_plink; variant_chunk {info['variant_chunk']}")
    rp, cmd = plink_job(["--bfile", prefix, "--freq", "--missing", "--out", OUT / "plink_qc"])
    row("qc", "plink2", rp, " ".join(cmd))
    notes.append(f"gwaslift QC statistics (read_plink + qc_stats = freq + missingness, timed inside the child, "
                 f"without interpreter start-up and imports): {info['qc_stats_s']:.2f} s = "
                 f"{info['qc_stats_s'] / rp['wall_s']:.2f} x plink2 --freq --missing wall")
    af = pd.read_csv(OUT / "plink_qc.afreq", sep="\t")
    vm = pd.read_csv(OUT / "plink_qc.vmiss", sep="\t")
    sm = pd.read_csv(OUT / "plink_qc.smiss", sep="\t")
    notes.append(f"QC check: max |A1 freq - plink2 ALT_FREQS| = {np.nanmax(np.abs(ours['a1_freq'] - af['ALT_FREQS'])):.2e} "
                 f"(plink2 prints 6 digits); variant missing counts equal: "
                 f"{bool(np.array_equal(ours['var_miss'], vm['MISSING_CT']))}; sample missing counts equal: "
                 f"{bool(np.array_equal(ours['smiss'], sm['MISSING_CT']))}")



def qc_filter_case(prefix, row, notes) -> None:
    rg, info, _ = gwaslift_job("qc_filter", prefix)
    row("qc_filter", "gwaslift", rg, "read_plink + qc(maf=0.01, geno=0.02, mind=0.02) + kept IDs written (child process)",
        f"qc {info['qc_filter_s']:.1f} s incl. read_plink; kept {info['qc_kept']}, removed {info['qc_removed']}")
    rp, cmd = plink_job(["--bfile", prefix, "--maf", "0.01", "--geno", "0.02", "--mind", "0.02",
                         "--write-snplist", "--write-samples", "--out", OUT / "plink_qcf"])
    row("qc_filter", "plink2", rp, " ".join(cmd))
    save = OUT / "gwaslift_qc_filter.npz"
    same_snps = Path(str(save) + ".snplist").read_text().split() == (OUT / "plink_qcf.snplist").read_text().split()
    theirs = pd.read_csv(OUT / "plink_qcf.id", sep="\t", dtype=str)
    ours = pd.read_csv(str(save) + ".id", sep="\t", header=None, dtype=str)
    same_samples = ours.values.tolist() == theirs.values.tolist()
    notes.append(f"QC filter check: kept variant IDs equal plink2's .snplist: {same_snps}; kept samples equal "
                 f"plink2's .id: {same_samples}")


def linear_case(prefix, row, notes) -> None:
    rg, info, ours = gwaslift_job("linear", prefix)
    row("linear", "gwaslift", rg, "linear_gwas(g, y) (child process)",
        f"linear_gwas {info['linear_s']:.1f} s incl. read_plink")
    rp, cmd = plink_job(["--bfile", prefix, "--pheno", OUT / "pheno.tsv", "--pheno-name", "y",
                         "--glm", "allow-no-covars", "omit-ref", "--out", OUT / "plink_lin"])
    row("linear", "plink2", rp, " ".join(cmd))
    notes.append(f"gwaslift linear_gwas timed inside the child (incl. read_plink, without start-up/imports): "
                 f"{info['linear_s']:.1f} s = {info['linear_s'] / rp['wall_s']:.2f} x plink2 wall")
    notes.append("linear check: " + compare(ours, OUT / "plink_lin.y.glm.linear"))



def covar_case(kind: str, prefix, nvar: int, row, notes) -> None:
    """10 covariates on the first nvar variants: linear (phenotype y) or logistic (b)."""
    model, column = ("logistic", "b") if kind == "logistic_covar" else ("linear", "y")
    case = f"{model}+{K}cov ({nvar} SNPs)"
    rg, info, ours = gwaslift_job(kind, prefix, nvar)
    row(case, "gwaslift", rg, f"linear_gwas(g.subset(variants=arange({nvar})), {column}, covar)",
        f"linear_gwas {info['linear_s']:.1f} s incl. read_plink; {info['firth']} Firth fits")
    extra = ["cols=+beta,+firth"] if model == "logistic" else []
    rp, cmd = plink_job(["--bfile", prefix, "--extract", OUT / "covar_snps.txt", "--pheno", OUT / "pheno.tsv",
                         "--pheno-name", column, "--covar", OUT / "covar.tsv", "--glm", "hide-covar", "omit-ref",
                         *extra, "--out", OUT / f"plink_{kind}"])
    row(case, "plink2", rp, " ".join(cmd))
    glm = OUT / (f"plink_{kind}.{column}.glm.logistic.hybrid" if model == "logistic"
                 else f"plink_{kind}.{column}.glm.linear")
    notes.append(f"{case} check: " + compare(ours, glm))


def compare(ours: dict, glm: Path) -> str:
    """Agreement with plink2's .glm file (ordinary fits only where it has a FIRTH? column:
    plink2's Firth fits stop short of the penalized maximum, benchmarks/results/firth.md)."""
    p = pd.read_csv(glm, sep="\t")
    beta = p["BETA"].to_numpy(float)
    ok = np.isfinite(beta) & np.isfinite(ours["beta"])
    firth = ""
    if "FIRTH?" in p.columns:
        theirs = (p["FIRTH?"] == "Y").to_numpy()
        ok &= ~theirs
        firth = (f"; Firth fits ours / plink2 {int(ours['firth'].sum())} / {int(theirs.sum())}, same variants: "
                 f"{bool(np.array_equal(ours['firth'].astype(bool), theirs))} (left out of the comparison)")
    scale = np.maximum(np.abs(beta[ok]), p["SE"].to_numpy(float)[ok])
    dl = np.abs(ours["log10_p"][ok] + np.log10(p["P"].to_numpy(float)[ok]))
    return (f"{ok.sum()} of {len(beta)} variants tested by both; OBS_CT equal: "
            f"{bool(np.array_equal(ours['n'][ok], p['OBS_CT'].to_numpy()[ok]))}; "
            f"max |beta diff| / max(|beta|, SE) = {np.max(np.abs(ours['beta'][ok] - beta[ok]) / scale):.1e}; "
            f"max |d log10 p| = {np.max(dl):.1e} (plink2 prints 6 significant digits){firth}")


def write_report(args, rows, notes, n, m, nvar, load0) -> None:
    df = pd.DataFrame(rows)
    lines = [
        "# Biobank-sized QC + linear GWAS on the CI machine (peak RSS, throughput vs plink2)", "",
        f"Machine: {os.cpu_count()} cores ({platform.machine()}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, shared with other jobs "
        f"(1/5/15-min load average at start: {load0}; per row below). numpy/OpenBLAS and plink2 limited to 2 threads.",
        f"Data: `plink2 --dummy {n} {m} 0.01 acgt --seed 3 --make-bed` ({n:,} samples x {m:,} SNPs, "
        f"{n * m / 4 / 1e9:.1f} GB packed; the float32 dosage matrix would be {n * m * 4 / 1e9:.0f} GB). "
        f"Phenotype and {K} covariates N(0,1), seed 0.", "",
        f"Command: `.venv/bin/python benchmarks/biobank_cpu.py --covar-variants {args.covar_variants} --cases {args.cases}`", "",
        "Each tool runs in its own child process, one after the other; wall = wall-clock seconds, "
        "cpu = user+sys seconds, peak RSS = the kernel's ru_maxrss of that process (os.wait4). "
        "gwaslift times include starting Python and importing the package.", "",
        "| case | tool | wall s | cpu s | peak RSS MB | wall ratio gwaslift/plink2 | M genotypes / s | load after | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in df.iterrows():
        other = df[(df.case == r.case) & (df.tool == "plink2")].wall_s.iloc[0]
        nv = nvar if "cov" in r.case else m
        ratio = f"{r.wall_s / other:.2f}" if r.tool == "gwaslift" else ""
        lines.append(f"| {r.case} | {r.tool} | {r.wall_s:.1f} | {r.cpu_s:.1f} | {r.peak_rss_mb:.0f} | {ratio} | "
                     f"{nv * n / r.wall_s / 1e6:.0f} | {r.load} | {r.extra} |")
    lines += ["", "Commands run (plink2 exactly; gwaslift as the child of this script):", ""]
    lines += [f"- {r.case} / {r.tool}: `{r.cmd}`" for _, r in df.iterrows()]
    lines += ["", "Checks and notes:", ""] + [f"- {x}" for x in notes]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
