"""The ``gwaslift`` command: plink-like flags in front of the public API, nothing more.

Exit codes: 0 success, 1 a run that failed (bad input, a failed stage), 2 a usage error.
Progress goes to stderr; each command writes a log with its full configuration beside its
outputs (``<out>.log`` for a prefix, ``<out>/gwaslift.log`` for a directory).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .errors import InputError

log = logging.getLogger("gwaslift")


# ------------------------------------------------------------------ argument types
def _int_list(text: str) -> list[int]:
    """``"0-4"`` or ``"0,1,5"`` -> list of ints."""
    out = []
    for part in text.split(","):
        if "-" in part.strip()[1:]:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    if not out:
        raise argparse.ArgumentTypeError(f"expected integers like 0-4 or 0,1,2, got {text!r}")
    return out


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.01,0.1,1, got {text!r}") from None


def _positive_float(text: str) -> float:
    """A number > 0 (checked before any work)."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return v


def _hidden_list(text: str) -> list[tuple[int, int]]:
    """``"64x128,128x256"`` -> [(64, 128), (128, 256)]."""
    try:
        return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer sizes like 64x128,128x256, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [t for t in text.replace(",", " ").split() if t]


# ------------------------------------------------------------------ shared flags
def _common(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch, BLAS, dask); default: all")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--verbose", action="store_true", help="log every stage to stderr")


def _input(p: argparse.ArgumentParser, pheno: bool = True, covar: bool = True) -> None:
    p.add_argument("--bfile", required=True, help="PLINK 1 fileset prefix (.bed/.bim/.fam)")
    p.add_argument("--keep", help="analyse only the samples listed (FID IID or IID; plink2 --keep)")
    p.add_argument("--remove", help="leave out the samples listed (plink2 --remove)")
    p.add_argument("--extract", help="analyse only the variant IDs listed (plink2 --extract)")
    p.add_argument("--exclude", help="leave out the variant IDs listed (plink2 --exclude)")
    p.add_argument("--chr", help="only these chromosomes, e.g. 1-4,22,X (plink2 --chr)")
    if pheno:
        p.add_argument("--pheno", help="phenotype file (FID IID header; default: the .fam's 6th column)")
        p.add_argument("--pheno-name", help="phenotype column to use (default: the first; gwas: comma-separated "
                                            "columns, default every column of --pheno, as plink2 --glm)")
    if covar:
        p.add_argument("--covar", help="covariate file (FID IID header; categorical columns one-hot encoded)")
        p.add_argument("--covar-name", type=_names,
                       help="covariate columns to use (comma separated; A-B: the columns from A to B, as plink2)")
        p.add_argument("--covar-variance-standardize", action="store_true",
                       help="accepted for plink2 command lines; changes nothing: the regressions run in an "
                            "orthonormal basis of the covariates, so no result depends on their scale")


def _ci_level(text: str) -> float:
    """A confidence level strictly between 0 and 1 (checked before any work)."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a level between 0 and 1 such as 0.95, got {text!r}")
    return v


def _threshold(text: str) -> float | None:
    """A QC threshold, or 'off' / 'none' for no filter."""
    if text.lower() in ("off", "none"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'off', got {text!r}") from None


def _qc_flags(p, pipeline: bool):
    """--maf --geno --mind --hwe. ``pipeline`` (analyze, demo): the analysis defaults, said in
    the help and the report; else (the qc command) plink2's rule: only the filters given apply."""
    d = dict(maf=0.01, geno=0.01, mind=0.02) if pipeline else {}
    say = (lambda k: f"default {d[k]}; 'off' for none") if pipeline else (lambda k: "default: off, as plink2")
    p.add_argument("--maf", type=_threshold, default=d.get("maf"), help=f"minimum minor allele frequency ({say('maf')})")
    p.add_argument("--geno", type=_threshold, default=d.get("geno"),
                   help=f"maximum variant missing-call fraction ({say('geno')})")
    p.add_argument("--mind", type=_threshold, default=d.get("mind"),
                   help=f"maximum sample missing-call fraction ({say('mind')})")
    p.add_argument("--hwe", type=_threshold, default=None, help="HWE exact-test p-value threshold (default: off)")


def _train_memory_flag(p):
    p.add_argument("--train-memory", type=_positive_float, default=None, metavar="MIB",
                   help="memory for the training state of the networks trained at once, in MiB (plink2 "
                        "--memory's unit; 20 bytes per first-layer weight, 28 with bf16): networks beyond it "
                        "train in later waves with the same results (default: half the available memory, "
                        "the cgroup limit included; on a GPU 70%% of its free memory)")


def _deep_flags(p):
    p.add_argument("--hidden", type=_hidden_list, default=None,
                   help="grid of hidden sizes h1xh2 (default: the paper's 64x128,64x256,128x128,128x256)")
    p.add_argument("--l1", type=_float_list, default=None, help="grid of L1 strengths (default 0.01,0.1,1,10)")
    p.add_argument("--seeds", type=_int_list, default=None, help="grid seeds (default 0-4)")
    p.add_argument("--refit-seeds", type=_int_list, default=None, help="re-training seeds (default 5-9)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default 100)")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=None, help="minibatch size (default 256)")
    p.add_argument("--lr", type=_positive_float, default=None, help="Adam learning rate (default 0.001)")
    p.add_argument("--precision", default=None, choices=["float32", "bf16"],
                   help="first-layer SNP products in float32 (default; exact) or bfloat16 operands with float32 "
                        "accumulation (faster on CPUs and GPUs with bf16 units; weights, optimizer and the "
                        "rest stay float32)")
    _train_memory_flag(p)
    p.add_argument("--l1-warmup", type=int, default=None,
                   help="epochs over which the L1 strength ramps up from 0 (default 0: full from the start)")
    p.add_argument("--cross-fit", action="store_true", default=None,
                   help="cross-fitted refits: refit seed j trains on every fold but fold j of the samples "
                        "(one fold per refit seed) instead of all on the same 50%% (not the paper's protocol)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gwaslift", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"gwaslift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("simulate", help="simulate a structured cohort (Hao et al. scenarios) to PLINK files")
    _common(p, "output prefix of the fileset, truth table and phenotype")
    p.add_argument("--n-samples", type=int, default=2000)
    p.add_argument("--n-snps", type=int, default=2000)
    p.add_argument("--a", type=float, default=0.1, help="Beta(a, a) spatial parameter (default 0.1)")
    p.add_argument("--scenario", default="spatial", choices=["spatial", "balding_nichols", "psd"])
    p.add_argument("--trait", default="binary", choices=["binary", "quantitative"])
    p.add_argument("--n-causal", type=int, default=10)
    p.add_argument("--case-fraction", type=float, default=None, help="target case fraction (default: literal model)")
    p.add_argument("--epistatic", default=None, help="pair interaction mode (see gwaslift.simulate.hao)")

    p = sub.add_parser("qc", help="allele frequencies, call rates, HWE; filter like plink2 --maf --geno --mind --hwe")
    _common(p, "output prefix: <out>.qc.tsv (removed and why), <out>.vstats.tsv, and with --make-bed a fileset")
    _input(p, pheno=False, covar=False)
    _qc_flags(p, pipeline=False)
    p.add_argument("--make-bed", action="store_true", help="write the filtered fileset to <out>.bed/.bim/.fam")

    p = sub.add_parser("pca", help="principal components (randomized SVD), plink2 .eigenvec/.eigenval format")
    _common(p, "output prefix: <out>.eigenvec, <out>.eigenval")
    _input(p, pheno=False, covar=False)
    p.add_argument("--pcs", type=int, default=10, help="number of components (default 10)")

    p = sub.add_parser("gwas", help="per-SNP linear/logistic regression, equal to plink2 --glm")
    _common(p, "output prefix: <out>.glm.linear|logistic and <out>.ssf.tsv (GWAS-SSF)")
    _input(p)
    p.add_argument("--pcs", type=int, default=0, help="compute this many PCs and add them as covariates")
    p.add_argument("--model", default="auto", choices=["auto", "linear", "logistic"])
    p.add_argument("--missing", default="drop", choices=["drop", "mean"],
                   help="missing genotypes: drop per SNP as plink2 (default) or mean-impute")
    p.add_argument("--firth", default="fallback", choices=["fallback", "no", "always"],
                   help="logistic: refit separated / non-converged SNPs with Firth regression "
                        "(plink2's default firth-fallback), report them NA (plink2 no-firth), or "
                        "fit every SNP with Firth (plink2 firth)")
    _qc_flags(p, pipeline=False)  # plink2 --glm --maf ...: the filters given apply first
    p.add_argument("--pheno-quantile-normalize", action="store_true",
                   help="rank-based inverse-normal transform of quantitative phenotypes (plink2's)")
    p.add_argument("--no-psam-pheno", action="store_true",
                   help="with --pheno: leave out the .fam's phenotype (column 6), which plink2 --glm "
                        "otherwise tests too, as PHENO1, when it is not all missing (plink2 --no-psam-pheno)")
    p.add_argument("--no-x-sex", action="store_true",
                   help="chrX without sex as a covariate (plink2 --glm no-x-sex; default: added, as plink2)")
    p.add_argument("--ci", type=_ci_level, default=None,
                   help="add confidence bounds at this level to the .glm file, e.g. 0.95 (plink2 --ci)")

    p = sub.add_parser("epistasis", help="test the product of every SNP pair (a score test, with covariates)")
    _common(p, "output prefix: <out>.epi.tsv (the top pairs), <out>.epi.snps.tsv (each SNP's strongest pair)")
    _input(p)
    p.add_argument("--pcs", type=int, default=0, help="compute this many PCs and add them as covariates")
    p.add_argument("--top", type=int, default=1000, help="pairs written, strongest first (default 1000)")
    p.add_argument("--min-distance-kb", type=float, default=None,
                   help="skip pairs on one chromosome closer than this (LD); default: test every pair")

    p = sub.add_parser("train", help="train the L1 network grid over seeds, select, re-train")
    _common(p, "output directory of the fitted models")
    _input(p)
    p.add_argument("--pcs", type=int, default=0, help="compute this many PCs as unpenalized network inputs")
    _deep_flags(p)

    p = sub.add_parser("attribute", help="DeepLIFT scores of a trained model (optionally null-calibrated)")
    _common(p, "output prefix: <out>.scores.tsv")
    _input(p)
    p.add_argument("--model", required=True, help="directory written by `gwaslift train`")
    p.add_argument("--pcs", type=int, default=0,
                   help="recompute this many PCs (same --seed) when the model was trained with --pcs")
    p.add_argument("--samples", default="validation", choices=["validation", "train", "all"])
    p.add_argument("--reference", default="mean", choices=["mean", "zero"])
    p.add_argument("--rule", default="rescale", choices=["rescale", "revealcancel"])
    p.add_argument("--n-null", type=int, default=0, help="permuted-phenotype fits for p-values (needs the phenotype)")
    _train_memory_flag(p)  # for the permuted-phenotype fits
    p.add_argument("--device", default="auto")

    for name, helptext in (("analyze", "the whole analysis: QC, PCA, GWAS, networks, DeepLIFT, plots, report"),
                           ("demo", "the whole analysis on an embedded simulated cohort")):
        p = sub.add_parser(name, help=helptext)
        _common(p, "output directory")
        if name == "analyze":
            _input(p)
        else:
            p.add_argument("--n-samples", type=int, default=4000)
            p.add_argument("--n-snps", type=int, default=4000)
        _qc_flags(p, pipeline=True)
        p.add_argument("--pcs", type=int, default=None, help="principal components as covariates (default 10)")
        _deep_flags(p)
        p.add_argument("--null", choices=["decoys", "permutation", "none"], default=None,
                       help="significance of the DeepLIFT scores: decoy SNPs trained alongside the real ones "
                            "(default), permuted-phenotype fits, or none")
        p.add_argument("--n-decoys", type=int, default=None, help="decoy SNPs (default: one per SNP)")
        p.add_argument("--n-null", type=int, default=None, help="permuted-phenotype fits with --null permutation "
                                                                "(default 10)")
        p.add_argument("--top", type=int, default=None, help="top SNPs per method in the report (default 10)")

    p = sub.add_parser("plot", help="redraw the Miami, Manhattan and QQ plots and the report of a saved analysis")
    p.add_argument("--from", dest="source", required=True, help="directory written by `gwaslift analyze`")
    p.add_argument("--out", default=None, help="where to write the figures (default: the same directory)")
    p.add_argument("--verbose", action="store_true")
    return parser


# ------------------------------------------------------------------ commands
def _log_to(path: Path, args: argparse.Namespace, argv: list[str]) -> logging.Handler:
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    cfg = {k: (v if isinstance(v, (int, float, str, bool, list, type(None))) else str(v)) for k, v in vars(args).items()}
    log.info("gwaslift %s", " ".join(argv))
    log.info("configuration: %s", json.dumps(cfg, default=str, sort_keys=True))
    return handler


def _prefix_ready(out: str) -> Path:
    """Check that files can be written at prefix ``out`` before any computation."""
    from ._util import check_writable_dir

    prefix = Path(out)
    check_writable_dir(prefix.parent if str(prefix.parent) else ".")
    return prefix


def _progress(args) -> bool | None:
    return False if getattr(args, "no_progress", False) else None


def _genotypes(args):
    """The --bfile fileset with plink2's --keep/--remove/--extract/--exclude/--chr applied."""
    from .io import read_plink
    from .io.select import select

    g = read_plink(args.bfile)
    sel = select(g, keep=args.keep, remove=args.remove, extract=args.extract, exclude=args.exclude,
                 chrom=args.chr)
    if sel is not g:
        print(f"{sel.n_samples} of {g.n_samples} samples and {sel.n_variants} of {g.n_variants} variants "
              "remain after --keep/--remove/--extract/--exclude/--chr", file=sys.stderr)
    return sel


def _phenotype(args, g):
    from .io.pheno import as_phenotype

    return as_phenotype(args.pheno, g, name=args.pheno_name)


def _covariates(args, g, n_pcs: int):
    import pandas as pd

    from .io.pheno import read_covar
    from .structure import pca

    parts = []
    if n_pcs:
        pcs = pca(g, k=n_pcs, seed=args.seed, progress=_progress(args))
        parts.append(pcs[[c for c in pcs.columns if c.startswith("PC")]].reset_index(drop=True))
    if getattr(args, "covar", None):
        parts.append(read_covar(args.covar, g, columns=args.covar_name).reset_index(drop=True))
    return pd.concat(parts, axis=1) if parts else None


def _cmd_simulate(args):
    from .simulate import hao

    prefix = _prefix_ready(args.out)
    epistatic = args.epistatic if args.epistatic else False
    sim = hao(args.n_samples, args.n_snps, a=args.a, scenario=args.scenario, trait=args.trait,
              n_causal=args.n_causal, seed=args.seed, out=prefix, case_fraction=args.case_fraction,
              epistatic=epistatic, progress=_progress(args))
    print(f"wrote {prefix}.bed/.bim/.fam, truth table and phenotype; "
          + ", ".join(f"{k}={v}" for k, v in sim.summary.items() if isinstance(v, (int, float)) and k in
                      ("case_fraction", "n_samples", "n_snps")), file=sys.stderr)


def _cmd_qc(args):
    from .io import write_plink
    from .qc import allele_stats, genotype_counts, qc

    prefix = _prefix_ready(args.out)
    g = _genotypes(args)
    # one counting pass for the filters and the variant table (a pass reads the whole .bed)
    counts = genotype_counts(g, progress=_progress(args))
    # plink2's rule: only the filters given apply. A monomorphic variant stays unless --maf
    # removes it, and --maf keeps a variant with no observed call (its frequency is undefined);
    # the analysis pipeline drops both (qc()'s default)
    gq, report = qc(g, maf=args.maf, geno=args.geno, mind=args.mind, hwe=args.hwe, counts=counts,
                    drop_monomorphic=False, progress=_progress(args))
    from .pipeline import _write_tsv

    _write_tsv(report, Path(f"{prefix}.qc.tsv"))
    _write_tsv(allele_stats(g, hwe=True, counts=counts, progress=_progress(args)), Path(f"{prefix}.vstats.tsv"))
    if args.make_bed and (gq.n_samples == 0 or gq.n_variants == 0):
        # as plink2 ("No variants remaining"): a fileset without samples or variants is no input
        # for anything; the report says what went and why
        removed = ", ".join(f"{reason}: {count} {kind}s" for (kind, reason), count in
                            report.groupby(["kind", "reason"], sort=False).size().items())
        empty = "samples" if gq.n_samples == 0 else "variants"
        raise InputError(f"no {empty} remain after the filters ({removed} removed; listed in {prefix}.qc.tsv): "
                         "no fileset written")
    if args.make_bed:
        write_plink(prefix, gq)
    print(f"{g.n_samples} samples x {g.n_variants} variants -> {gq.n_samples} x {gq.n_variants} after QC; "
          f"report: {prefix}.qc.tsv", file=sys.stderr)


def _cmd_pca(args):
    from ._util import atomic_path
    from .structure import pca

    prefix = _prefix_ready(args.out)
    g = _genotypes(args)
    pcs = pca(g, k=args.pcs, seed=args.seed, progress=_progress(args))
    out = pcs.rename(columns={"fid": "#FID", "iid": "IID"})
    with atomic_path(f"{prefix}.eigenvec") as tmp:
        out.to_csv(tmp, sep="\t", index=False)
    with atomic_path(f"{prefix}.eigenval") as tmp:
        tmp.write_text("\n".join(f"{v:.6g}" for v in pcs.attrs.get("eigenvalues", [])) + "\n")
    print(f"wrote {prefix}.eigenvec and {prefix}.eigenval", file=sys.stderr)


def _glm_filters(args, g):
    """``g`` after --mind/--geno/--hwe/--maf as plink2 applies them before --glm (unchanged
    when none is given). plink2 keeps a monomorphic variant (it reports it
    CONST_OMITTED_ALLELE) unless --maf drops it, and --maf keeps a variant with no observed
    call."""
    if all(getattr(args, k) is None for k in ("maf", "geno", "mind", "hwe")):
        return g
    from .qc import qc

    gq, _ = qc(g, maf=args.maf, geno=args.geno, mind=args.mind, hwe=args.hwe,
               drop_monomorphic=False, progress=_progress(args))
    print(f"{gq.n_samples} of {g.n_samples} samples and {gq.n_variants} of {g.n_variants} variants pass "
          "--mind/--geno/--hwe/--maf", file=sys.stderr)
    return gq


#: plink2's name for the .fam's phenotype (column 6) beside the columns of a --pheno file
FAM_PHENOTYPE_NAME = "PHENO1"


def _glm_phenotype_names(args, g) -> list:
    """The phenotypes to test, as plink2 --glm picks them: every column of --pheno unless
    --pheno-name names some (ranges expanded); without --pheno, the .fam's sixth column
    (None). With --pheno and no --pheno-name, plink2 also tests the .fam's phenotype, first
    and named PHENO1, unless --no-psam-pheno is given or the column is missing for every
    sample: it comes first in the list, as None (plink2 v2.00a3.5 measured, tests/test_cli.py)."""
    if not args.pheno:
        return _names(args.pheno_name) if args.pheno_name else [None]
    import numpy as np

    from .io.pheno import phenotype_columns

    names = phenotype_columns(args.pheno, _names(args.pheno_name) if args.pheno_name else None)
    # plink2 leaves out a .fam column 6 of only 0, -9 and NA (a case/control column with
    # every sample missing). It decides on the whole .fam before --keep/--remove and then
    # fails on a phenotype missing for every sample kept; here it is decided on the samples
    # analysed, so such a phenotype is left out instead.
    trait = g.samples["trait"].to_numpy(dtype=float)
    if args.pheno_name or args.no_psam_pheno or not (np.isfinite(trait) & (trait != 0)).any():
        return names
    if FAM_PHENOTYPE_NAME in names:
        raise InputError(f"a column of the phenotype file is named {FAM_PHENOTYPE_NAME!r}, the name plink2 and "
                         "gwaslift give the .fam's phenotype (column 6), which is tested too; pass "
                         "--no-psam-pheno to leave the .fam's phenotype out, or --pheno-name to pick columns",
                         args.pheno)
    return [None, *names]


def _cmd_gwas(args):
    import pandas as pd

    from .assoc import linear_gwas_multi
    from .io.pheno import as_phenotype, quantile_normalize, read_pheno_columns
    from .io.sumstats import write_glm, write_gwas_ssf

    prefix = _prefix_ready(args.out)
    g = _glm_filters(args, _genotypes(args))
    names = _glm_phenotype_names(args, g)
    cov = _covariates(args, g, args.pcs)
    if args.pheno:
        # a --pheno file is matched to the samples once for all its phenotypes
        from_file = iter(read_pheno_columns(args.pheno, g, [n for n in names if n is not None]))
        read = [as_phenotype(None, g, name=FAM_PHENOTYPE_NAME) if n is None else next(from_file) for n in names]
    else:
        read = [as_phenotype(None, g, name=n) for n in names]
    # the .fam's phenotype (None) as plink2 names it, in messages and in <out>.PHENO1.glm.*
    names = [FAM_PHENOTYPE_NAME if n is None else n for n in names]
    columns = []
    for name, y in zip(names, read):
        if args.pheno_quantile_normalize and not y.attrs.get("binary"):
            y = pd.Series(quantile_normalize(y), index=y.index, name=y.name)
        columns.append(y.rename(str(name)))
    # quantitative phenotypes observed on the same samples share one pass over the
    # genotypes, as plink2 batches them
    results = linear_gwas_multi(g, pd.concat(columns, axis=1), cov, model=args.model, missing=args.missing,
                                firth=args.firth, x_sex=not args.no_x_sex, progress=_progress(args))
    for name in names:
        ss = results[str(name)]
        model = ss.attrs.get("model", args.model if args.model != "auto" else "linear")
        # one phenotype writes <out>.glm.*, several <out>.<name>.glm.* (plink2's naming)
        stem = prefix if len(names) == 1 else f"{prefix}.{name}"
        write_glm(ss, f"{stem}.glm.{model}", model=model, ci=args.ci)
        write_gwas_ssf(ss, f"{stem}.ssf.tsv", model=model)
        print(f"wrote {stem}.glm.{model} and {stem}.ssf.tsv ({len(ss)} variants)", file=sys.stderr)


def _cmd_epistasis(args):
    from .epistasis import pair_scan
    from .pipeline import _write_tsv

    prefix = _prefix_ready(args.out)
    g = _genotypes(args)
    y = _phenotype(args, g)
    cov = _covariates(args, g, args.pcs)
    dist = None if args.min_distance_kb is None else int(round(args.min_distance_kb * 1000))
    scan = pair_scan(g, y, cov, top=args.top, min_distance_bp=dist, progress=_progress(args))
    _write_tsv(scan.pairs, Path(f"{prefix}.epi.tsv"))
    _write_tsv(scan.snps, Path(f"{prefix}.epi.snps.tsv"))
    print(f"wrote {prefix}.epi.tsv (top {len(scan.pairs)} of {scan.n_pairs} pairs, {scan.n_samples} samples) and "
          f"{prefix}.epi.snps.tsv", file=sys.stderr)


#: training options shared by ``gwaslift train`` and ``gwaslift analyze`` (names as in
#: :data:`gwaslift.pipeline.DEFAULTS`)
DEEP_FLAG_OPTIONS = ("hidden", "l1", "seeds", "refit_seeds", "epochs", "patience", "batch_size", "lr", "precision",
                     "l1_warmup", "cross_fit")


def _deep_options(args) -> dict:
    from .pipeline import DEFAULTS

    opts = {}
    for name in DEEP_FLAG_OPTIONS:
        v = getattr(args, name, None)
        opts[name] = DEFAULTS[name] if v is None else v
    opts["max_state_bytes"] = _state_bytes(args)
    return opts


def _state_bytes(args) -> int | None:
    """--train-memory (MiB) in bytes, or None for the default budget."""
    mib = getattr(args, "train_memory", None)
    return None if mib is None else int(mib * 2**20)


def _cmd_train(args):
    from . import deep

    out = Path(args.out)
    from .pipeline import check_writable

    check_writable(out)
    g = _genotypes(args)
    y = _phenotype(args, g)
    cov = _covariates(args, g, args.pcs)
    o = _deep_options(args)
    fit = deep.train(g, y, hidden=o["hidden"], l1=o["l1"], seeds=o["seeds"], refit_seeds=o["refit_seeds"],
                     covariates=cov, device=args.device, epochs=o["epochs"], patience=o["patience"],
                     batch_size=o["batch_size"], lr=o["lr"], precision=o["precision"], l1_warmup=o["l1_warmup"],
                     cross_fit=o["cross_fit"], split_seed=args.seed, checkpoint_dir=out / "checkpoints",
                     max_state_bytes=o["max_state_bytes"], progress=_progress(args))
    fit.save(out)
    print(f"wrote {len(fit.members)} fitted networks to {out}; selected {fit.selected}", file=sys.stderr)


def _cmd_attribute(args):
    from .attribution import attribution_null, deeplift
    from .deep import load_fit
    from .pipeline import _write_tsv

    prefix = _prefix_ready(args.out)
    g = _genotypes(args)
    fit = load_fit(args.model)
    cov = _covariates(args, g, args.pcs)
    names = [] if cov is None else list(cov.columns)
    if names != list(fit.covar_names):
        raise InputError(f"the model was trained with covariates {list(fit.covar_names)} but this run gives "
                         f"{names}: pass the same --pcs, --covar and --covar-name as `gwaslift train`", args.model)
    null = None
    if args.n_null:
        y = _phenotype(args, g)
        null = attribution_null(g, y, fit, n_null=args.n_null, seed=args.seed, samples=args.samples,
                                reference=args.reference, rule=args.rule, covariates=cov, device=args.device,
                                progress=_progress(args), max_state_bytes=_state_bytes(args))
    res = deeplift(fit, g, samples=args.samples, reference=args.reference, rule=args.rule, covariates=cov,
                   null=null, device=args.device, progress=_progress(args))
    _write_tsv(res.scores, Path(f"{prefix}.scores.tsv"))
    print(f"wrote {prefix}.scores.tsv (max summation-to-delta error {res.max_delta_error:.2e})", file=sys.stderr)


def _analysis_options(args) -> dict:
    opts = {"maf": args.maf, "geno": args.geno, "mind": args.mind, "hwe": args.hwe, "seed": args.seed,
            "split_seed": args.seed, "device": args.device}
    for name in DEEP_FLAG_OPTIONS:
        v = getattr(args, name, None)
        if v is not None:
            opts[name] = v
    budget = _state_bytes(args)
    if budget is not None:
        opts["max_state_bytes"] = budget
    if args.pcs is not None:
        opts["n_pcs"] = args.pcs
    for name in ("null", "n_decoys", "n_null"):
        if getattr(args, name, None) is not None:
            opts[name] = getattr(args, name)
    if args.top is not None:
        opts["top_k"] = args.top
    return opts


def _summarise(analysis, out: Path) -> None:
    s = analysis.summary
    top = analysis.top(analysis.config.get("top_k", 10))
    print(f"{s['n_samples_analysed']} samples x {s['n_variants_qc']} variants after QC; lambda_GC "
          f"{s['lambda_gc']:.3f}; selected {s['selected']}; wall time {s['wall_time_s']:.0f} s", file=sys.stderr)
    print(f"in both top lists: {', '.join(top[top.in_both].snp) or 'none'}", file=sys.stderr)
    print(f"report: {out / 'report.md'}", file=sys.stderr)


def _cmd_analyze(args):
    from .pipeline import analyze, check_writable

    out = check_writable(args.out)
    analysis = analyze(_genotypes(args), args.pheno, args.covar, out=out, pheno_name=args.pheno_name,
                       covar_names=args.covar_name, progress=_progress(args), **_analysis_options(args))
    _summarise(analysis, out)


#: The embedded default cohort of ``gwaslift demo``: the paper's spatial scenario with a
#: balanced binary trait (the literal model's case fraction swings with the seed).
DEMO_COHORT = dict(a=0.1, scenario="spatial", trait="binary", n_causal=10, case_fraction=0.5)
#: The demo runs the paper's whole protocol (16 configurations x 5 seeds, 5 fresh seeds for the
#: selected one) plus the decoy refits (5 seeds, 4,000 decoys) for the p-values.
DEMO_GRID = dict(null="decoys")


def _cmd_demo(args):
    from .pipeline import analyze, check_writable
    from .simulate import hao

    out = check_writable(args.out)
    sim = hao(args.n_samples, args.n_snps, seed=args.seed, out=out / "cohort" / "sim", progress=_progress(args),
              **DEMO_COHORT)
    log.info("simulated cohort: %s", json.dumps(sim.summary, default=str))
    opts = {**DEMO_GRID, **_analysis_options(args)}
    analysis = analyze(sim.prefix, sim.paths["pheno"], out=out, progress=_progress(args), **opts)
    truth = set(sim.truth.snp)
    k = analysis.config.get("top_k", 10)
    top = analysis.top(k)  # a zero score or a missing p is in no top k
    found_dl = truth & set(top.loc[top.in_deeplift, "snp"])
    found_lin = truth & set(top.loc[top.in_linear, "snp"])
    # kept in the summary, so that the report (and `gwaslift plot --from`) carries it
    analysis.summary["simulation_truth"] = (
        f"{len(truth)} causal SNPs; among the top {k}: DeepLIFT {len(found_dl)} "
        f"({', '.join(sorted(found_dl)) or 'none'}), linear GWAS {len(found_lin)} "
        f"({', '.join(sorted(found_lin)) or 'none'}).")
    from .pipeline import _write_json, write_report

    _write_json(analysis.summary, out / "summary.json")
    write_report(analysis, out)
    _summarise(analysis, out)
    print(f"causal SNPs in the top {k}: DeepLIFT {len(found_dl)}/{len(truth)}, "
          f"linear {len(found_lin)}/{len(truth)}", file=sys.stderr)


def _cmd_plot(args):
    from .pipeline import load, save_figures, write_report

    src = Path(args.source)
    analysis = load(src, models=False)
    out = Path(args.out) if args.out else src
    from .pipeline import check_writable

    check_writable(out)
    save_figures(analysis, out)
    write_report(analysis, out)
    print(f"wrote miami/manhattan/qq .png/.pdf and report.md to {out}", file=sys.stderr)


COMMANDS = {"simulate": _cmd_simulate, "qc": _cmd_qc, "pca": _cmd_pca, "gwas": _cmd_gwas,
            "epistasis": _cmd_epistasis, "train": _cmd_train,
            "attribute": _cmd_attribute, "analyze": _cmd_analyze, "demo": _cmd_demo, "plot": _cmd_plot}


#: commands whose work runs on numpy, numba and Dask alone (tested: no torch import)
_TORCH_FREE_COMMANDS = frozenset({"qc", "pca", "gwas"})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)  # exits 2 with a usage message on bad flags
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    if getattr(args, "threads", None):
        if args.command not in _TORCH_FREE_COMMANDS or "torch" in sys.modules:
            # importing torch only to set its threads costs ~1.5 s; these commands never use it
            import torch

            torch.set_num_threads(args.threads)
        import dask

        dask.config.set(num_workers=args.threads)
    handler = None
    try:
        out = getattr(args, "out", None) or getattr(args, "source", None)
        if args.command == "plot" and not Path(args.source).is_dir():
            raise InputError("not a directory written by `gwaslift analyze` or `demo`", args.source)
        if out is not None:
            directory = args.command in ("analyze", "demo", "train", "plot")
            target = Path(out)
            if directory:
                from .pipeline import check_writable

                check_writable(target)
                # plot has a log of its own: the analysis log in the same directory stays
                logpath = target / ("plot.log" if args.command == "plot" else "gwaslift.log")
            else:
                _prefix_ready(out)
                logpath = Path(f"{out}.log")
            handler = _log_to(logpath, args, argv)
        t0 = time.perf_counter()
        COMMANDS[args.command](args)
        log.info("done in %.1f s", time.perf_counter() - t0)
        return 0
    except InputError as exc:
        log.error("%s", exc)
        print(f"gwaslift {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a failed stage: say what failed, keep the traceback in the log
        log.exception("failed")
        print(f"gwaslift {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


if __name__ == "__main__":
    sys.exit(main())
