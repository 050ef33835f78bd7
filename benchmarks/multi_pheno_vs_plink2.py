"""Several quantitative phenotypes: gwaslift.linear_gwas_multi vs plink2 --glm.

10,000 samples x 100,000 SNPs, 10 N(0, 1) covariates and ``--phenotypes`` N(0, 1)
quantitative phenotypes (no phenotype missing, so both tools batch them all). One run
times, on the same files:

* gwaslift ``linear_gwas_multi`` (every phenotype in one pass over the genotypes);
* gwaslift ``linear_gwas`` once per phenotype (what ``gwaslift gwas`` did before);
* plink2 ``--glm hide-covar omit-ref`` with every phenotype (``--pheno-name`` list).

gwaslift runs in this process after a warm-up on 2,000 variants (numba's compile is a
one-time cost, cached on disk); plink2 runs as a child. Every phenotype's results are
checked against plink2's (the same variants, OBS_CT, betas to plink2's printed digits).

    .venv/bin/python benchmarks/multi_pheno_vs_plink2.py [--phenotypes 10] [--missing 0.0]
        [--variants 100000] [--out benchmarks/out/multi_pheno.md]

Data (cached in benchmarks/data/, git-ignored): ``plink2 --dummy 10000 100000 {0.0, 0.02}
acgt --seed 1`` (the linear_vs_plink2.py filesets).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

# the fileset, plink2's invocation and the 2-thread setting (made before numpy loads) are
# linear_vs_plink2.py's: the same data as the one-phenotype comparison
sys.path.insert(0, str(Path(__file__).resolve().parent))
from linear_vs_plink2 import K, M, ROOT, dataset, gwaslift, np, pd, plink2, read_sumstats  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phenotypes", type=int, default=10)
    ap.add_argument("--missing", type=float, default=0.0, help="missing-call rate of the fileset (0 or 0.02)")
    ap.add_argument("--variants", type=int, default=M)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "multi_pheno.md")
    args = ap.parse_args(argv)
    work = args.out.parent / "multi_pheno_work"
    work.mkdir(parents=True, exist_ok=True)
    prefix = dataset(args.missing)
    fam = pd.read_csv(f"{prefix}.fam", sep=r"\s+", header=None, dtype=str)
    rng = np.random.default_rng(0)
    names = [f"y{k}" for k in range(args.phenotypes)]
    ids = pd.DataFrame({"#FID": fam[0], "IID": fam[1]})
    ph = ids.assign(**{name: rng.normal(size=len(fam)) for name in names})
    cv = ids.assign(**{f"c{k}": rng.normal(size=len(fam)) for k in range(K)})
    ph.to_csv(work / "pheno.tsv", sep="\t", index=False)
    cv.to_csv(work / "covar.tsv", sep="\t", index=False)
    load0 = os.getloadavg()[0]

    g = gwaslift.read_plink(prefix)
    if args.variants < g.n_variants:
        g = g.subset(variants=np.arange(args.variants))
    pheno, covar = ph[names], cv.iloc[:, 2:]
    gwaslift.linear_gwas_multi(g.subset(variants=np.arange(2000)), pheno, covar, progress=False)  # warm-up
    t0 = time.perf_counter()
    multi = gwaslift.linear_gwas_multi(g, pheno, covar, progress=False)
    t_multi = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name in names:
        gwaslift.linear_gwas(g, pheno[name], covar, progress=False)
    t_each = time.perf_counter() - t0

    extra = [] if args.variants >= M else ["--from", "snp0", "--to", f"snp{args.variants - 1}"]
    t0 = time.perf_counter()
    cmd = plink2("--bfile", prefix, *extra, "--pheno", work / "pheno.tsv", "--pheno-name", ",".join(names),
                 "--covar", work / "covar.tsv", "--glm", "hide-covar", "omit-ref", "cols=+beta",
                 "--out", work / "ref")
    t_plink = time.perf_counter() - t0
    load1 = os.getloadavg()[0]

    worst, same_n, same_na = 0.0, True, True
    for name in names:
        ours, ref = multi[name], read_sumstats(work / f"ref.{name}.glm.linear")
        assert list(ours.snp) == list(ref.snp)
        same_n &= bool(np.array_equal(ours.n.to_numpy(), ref.n.to_numpy()))
        same_na &= bool(((ours.errcode != "") == (ref.errcode != "")).all())
        ok = (ours.errcode == "").to_numpy() & (ref.errcode == "").to_numpy()
        scaled = (np.abs(ours.beta - ref.beta) / np.maximum(np.abs(ref.beta), ref.se)).to_numpy()[ok]
        worst = max(worst, float(scaled.max()))
    lines = [
        "# Several quantitative phenotypes: gwaslift.linear_gwas_multi vs plink2 --glm", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs visible, 2 threads for both tools; "
        f"load average (1 min) before / after: {load0:.2f} / {load1:.2f}.",
        f"Data: `{prefix.name}` (plink2 --dummy, missing-call rate {args.missing}), first {g.n_variants:,} "
        f"variants, {g.n_samples:,} samples; {args.phenotypes} N(0,1) phenotypes, {K} N(0,1) covariates.", "",
        "| tool | wall s | per phenotype s | wall / plink2 |", "|---|---|---|---|",
        f"| plink2 --glm, {args.phenotypes} phenotypes | {t_plink:.2f} | {t_plink / args.phenotypes:.3f} | 1.00 |",
        f"| gwaslift linear_gwas_multi (one pass) | {t_multi:.2f} | {t_multi / args.phenotypes:.3f} | "
        f"**{t_multi / t_plink:.2f}** |",
        f"| gwaslift linear_gwas, one phenotype at a time | {t_each:.2f} | {t_each / args.phenotypes:.3f} | "
        f"{t_each / t_plink:.2f} |", "",
        f"Checks (every phenotype against plink2): OBS_CT equal: {same_n}; same NA set: {same_na}; "
        f"max |beta diff| / max(|beta|, SE) = {worst:.1e} (plink2 prints 6 significant digits).", "",
        f"plink2 command: `{' '.join(map(str, cmd))}`",
        f"Command: `python benchmarks/multi_pheno_vs_plink2.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not (same_n and same_na and worst < 1e-4):
        raise SystemExit("results differ from plink2's")


if __name__ == "__main__":
    main()
