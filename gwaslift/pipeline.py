"""The end-to-end analysis: PLINK files in, a Miami plot and a report out.

:func:`analyze` runs the stages in the order of the house plan -- QC, PCA, linear GWAS with
the PCs (and user covariates), the network grid and model selection, re-training over fresh
seeds, DeepLIFT, null calibration -- and returns an :class:`Analysis`. ``Analysis.save`` writes
plain files (TSV, JSON, tensors; no pickles) that :func:`load` reads back. This module only
orchestrates: every number comes from the stage modules.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._util import atomic_path, check_writable_dir
from .errors import InputError

log = logging.getLogger("gwaslift")

#: The paper's grid (Sec. 4): h1 in {64, 128}, h2 in {128, 256}, L1 in {0.01, 0.1, 1, 10}.
PAPER_HIDDEN = [(64, 128), (64, 256), (128, 128), (128, 256)]
PAPER_L1 = [0.01, 0.1, 1.0, 10.0]

DEFAULTS = dict(
    maf=0.01, geno=0.01, mind=0.02, hwe=None,
    n_pcs=10, model="auto", missing="drop", firth="fallback",
    hidden=PAPER_HIDDEN, l1=PAPER_L1, seeds=[0, 1, 2, 3, 4], refit_seeds=[5, 6, 7, 8, 9],
    deep_covariates=True, epochs=100, patience=10, batch_size=256, lr=1e-3, l1_warmup=0, cross_fit=False,
    precision="float32", max_state_bytes=None, device="auto",
    samples="validation", reference="mean", rule="rescale",
    null="decoys", n_decoys=None, n_null=10, null_normalize="share", alpha=0.05,
    top_k=10,
    split_seed=0, seed=0,
)

TABLE_KEYS = ["chrom", "pos", "snp", "a1", "a2"]
#: significance of the DeepLIFT scores: decoy SNPs in refits of the selected model (default),
#: fits to permuted phenotypes, or none (see gwaslift.attribution).
NULL_KINDS = ("decoys", "permutation", "none")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, range)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def join_tables(sumstats: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per-SNP table with both methods side by side and their ranks (1 = strongest).

    ``rank_linear`` ranks by -log10 p (ties share the best rank); ``rank_deeplift`` by the
    aggregated mean |DeepLIFT| score. A SNP without a result -- p NaN, or a DeepLIFT score of
    exactly 0 (no network uses it: L1 pruned its weights) -- is not ranked among the others:
    all such SNPs share the last rank (the number of SNPs), so that they never enter a top k
    (with method "min" they would tie just below the last real score, inside the top 10
    when fewer than 10 SNPs have a nonzero score). Rows keep the sumstats' variant order.
    """
    dl_cols = [c for c in scores.columns if c.startswith("deeplift_")]
    if len(scores) == len(sumstats) and np.array_equal(scores.snp.to_numpy(), sumstats.snp.to_numpy()):
        # the same variants in the same order (both from one Genotypes): joined by row, which
        # also holds where IDs repeat (e.g. "." for unnamed variants, as plink2 allows)
        table = pd.concat([sumstats.reset_index(drop=True), scores[dl_cols].reset_index(drop=True)], axis=1)
    else:
        missing = set(scores.snp) ^ set(sumstats.snp)
        if missing:
            raise InputError(f"sumstats and scores cover different SNPs ({len(missing)} differ, e.g. "
                             f"{sorted(missing)[:3]}): were they computed on the same QC'd genotypes?")
        dup = sumstats.snp[sumstats.snp.duplicated()]
        if len(dup):
            raise InputError(f"the SNP IDs repeat ({dup.iloc[0]!r}, ...) and the two tables list the variants "
                             "in different orders: set unique IDs first (plink2 --set-all-var-ids)")
        # a left merge keeps the sumstats' (genomic) order; an outer merge would sort by SNP id
        table = sumstats.merge(scores[["snp", *dl_cols]], on="snp", how="left", validate="one_to_one")
    lp = table["log10_p"] if "log10_p" in table else -np.log10(table["p"])
    table["rank_linear"] = _rank_results(lp)
    table["rank_deeplift"] = _rank_results(table["deeplift_mean_abs"].where(table["deeplift_mean_abs"] > 0))
    return table


def _rank_results(values: pd.Series) -> pd.Series:
    """Rank 1 = largest (ties share the best rank); NaN -> the last rank, len(values)."""
    r = values.rank(ascending=False, method="min")
    return r.fillna(len(values)).astype(int)


@dataclass
class Analysis:
    """The result of :func:`analyze`.

    Attributes
    ----------
    sumstats : DataFrame -- linear/logistic GWAS (``chrom, pos, snp, a1, a2, a1_freq, n, beta,
        se, stat, p, log10_p``; A1 = .bim column 5, the counted allele).
    scores : DataFrame -- DeepLIFT scores keyed like the sumstats (``deeplift_*`` columns).
    table : DataFrame -- both joined, with ``rank_linear`` and ``rank_deeplift``.
    qc_report : DataFrame -- every removed sample and variant, and why.
    pcs : DataFrame -- the principal components used as covariates.
    selection : DataFrame -- one row per trained network: role, h1, h2, l1, seed, metrics.
    models : DeepFit or None -- the fitted networks (None when loaded without them).
    config : dict -- every option of the run (JSON), enough to repeat it.
    summary : dict -- cohort and run facts (sizes, case fraction, lambda_GC, timings...).
    """

    sumstats: pd.DataFrame
    scores: pd.DataFrame
    table: pd.DataFrame
    qc_report: pd.DataFrame
    pcs: pd.DataFrame
    selection: pd.DataFrame
    config: dict
    summary: dict
    models: object | None = None
    fwer_threshold: float | None = None
    figures: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- views
    def top(self, k: int = 10) -> pd.DataFrame:
        """The leading ``k`` SNPs of each method and where they agree.

        One row per SNP that is in the top ``k`` of either method, with both ranks and
        ``in_linear`` / ``in_deeplift`` / ``in_both`` flags, sorted by the better rank. A SNP
        with a DeepLIFT score of 0 or without a p is in no top list (:func:`join_tables`).
        """
        t = self.table
        in_lin = (t["rank_linear"] <= k) & t["log10_p"].notna()
        in_dl = (t["rank_deeplift"] <= k) & (t["deeplift_mean_abs"] > 0)
        sel = in_lin | in_dl
        out = t.loc[sel, [*TABLE_KEYS, "p", "log10_p", "deeplift_mean_abs", "rank_linear", "rank_deeplift",
                          *[c for c in ("deeplift_p", "deeplift_q") if c in t]]].copy()
        out["in_linear"], out["in_deeplift"] = in_lin[sel], in_dl[sel]
        out["in_both"] = out["in_linear"] & out["in_deeplift"]
        out["best_rank"] = out[["rank_linear", "rank_deeplift"]].min(axis=1)
        return out.sort_values(["best_rank", "rank_linear"]).drop(columns="best_rank").reset_index(drop=True)

    def miami(self, ax=None, **kwargs):
        """Miami plot: -log10 p above, mean |DeepLIFT| below (see :func:`gwaslift.plots.miami`)."""
        from . import plots

        thr = self.fwer_threshold_score()
        top = float(np.nanmax(self.scores["deeplift_mean_abs"])) if len(self.scores) else 0.0
        # a threshold far above every score would only squash the lower half: the report
        # states it instead
        kwargs.setdefault("threshold", thr if thr is not None and thr <= 1.5 * top else None)
        return plots.miami(self.sumstats, self.scores, ax=ax, **kwargs)

    def manhattan(self, ax=None, **kwargs):
        from . import plots

        return plots.manhattan(self.sumstats, ax=ax, **kwargs)

    def qq(self, ax=None, **kwargs):
        from . import plots

        return plots.qq(self.sumstats, ax=ax, **kwargs)

    def fwer_threshold_score(self) -> float | None:
        """The family-wise threshold in units of ``deeplift_mean_abs`` (None if not computed)."""
        return self.summary.get("deeplift_fwer_threshold_score")

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike, *, models: bool = True, figures: bool = True,
             report: bool = True) -> Path:
        """Write every table, the configuration, the models, figures and ``report.md``.

        Files: ``sumstats.glm.{linear|logistic}`` (plink2 style), ``sumstats.ssf.tsv``
        (GWAS-SSF), ``sumstats.tsv``, ``scores.tsv``, ``table.tsv``, ``qc_report.tsv``,
        ``pcs.tsv``, ``selection.tsv``, ``config.json``, ``summary.json``, ``models/``
        (tensors + JSON), ``miami|manhattan|qq.{png,pdf}``, ``report.md``. Each file is
        written under a temporary name and renamed.
        """
        from .io.sumstats import write_glm, write_gwas_ssf

        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        model = self.summary.get("model", "linear")
        write_glm(self.sumstats, d / f"sumstats.glm.{model}", model=model)
        write_gwas_ssf(self.sumstats, d / "sumstats.ssf.tsv", model=model)
        for name in ("sumstats", "scores", "table", "qc_report", "pcs", "selection"):
            _write_tsv(getattr(self, name), d / f"{name}.tsv")
        _write_json(self.config, d / "config.json")
        _write_json(self.summary, d / "summary.json")
        if models and self.models is not None:
            self.models.save(d / "models")
        if figures:
            self.figures = save_figures(self, d)
        if report:
            write_report(self, d)
        return d


def _write_tsv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="NA")


def _write_json(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True))


def _read_tsv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError("file not found (not a saved gwaslift analysis?)", path)
    # only "NA" (what _write_tsv writes for a missing value) is missing: an empty string stays one
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["NA"], dtype={"chrom": str, "snp": str, "a1": str, "a2": str,
                                              "fid": str, "iid": str, "id": str})


def load(path: str | os.PathLike, *, models: bool = True) -> Analysis:
    """Read an analysis written by :meth:`Analysis.save` (plain files only, nothing unpickled)."""
    d = Path(path)
    if not d.is_dir():
        raise InputError("not a directory (expected the output directory of an analysis)", d)
    try:
        config = json.loads((d / "config.json").read_text())
        summary = json.loads((d / "summary.json").read_text())
    except FileNotFoundError as exc:
        raise InputError("missing config.json/summary.json: not a saved gwaslift analysis", exc.filename) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"corrupt JSON ({exc.msg})", d) from None
    fit = None
    if models and (d / "models").is_dir():
        from .deep import load_fit

        fit = load_fit(d / "models")
    return Analysis(
        sumstats=_read_tsv(d / "sumstats.tsv"), scores=_read_tsv(d / "scores.tsv"),
        table=_read_tsv(d / "table.tsv"), qc_report=_read_tsv(d / "qc_report.tsv"),
        pcs=_read_tsv(d / "pcs.tsv"), selection=_read_tsv(d / "selection.tsv"),
        config=config, summary=summary, models=fit,
        fwer_threshold=summary.get("deeplift_fwer_threshold"),
    )


def save_figures(analysis: Analysis, d: Path) -> dict:
    """Miami, Manhattan and QQ plots as PNG and PDF in ``d``; returns {name: png path}."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = {}
    for name, size in (("miami", (14, 7)), ("manhattan", (14, 4.5)), ("qq", (5.5, 5.5))):
        fig, ax = plt.subplots(figsize=size)
        getattr(analysis, name)(ax=ax)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            target = d / f"{name}.{ext}"
            with atomic_path(target) as tmp:
                fig.savefig(tmp, dpi=150, format=ext)
        plt.close(fig)
        out[name] = d / f"{name}.png"
    return out


def _fmt(v) -> str:
    return "not computed" if v is None else f"{v:.4g}"


def _fmt_p(log10_p: float) -> str:
    """p from -log10 p, three significant digits; beyond float64's range too (p = 3.24e-668
    where the p column holds 0), as plink2 writes it."""
    if not np.isfinite(log10_p):
        return "NA"
    if log10_p < 300:
        return f"{10.0 ** -log10_p:.3g}"
    e = math.floor(log10_p) + 1
    mant = 10.0 ** (e - log10_p)
    if mant >= 9.995:  # rounds to 10.0: carry into the exponent
        mant, e = mant / 10.0, e - 1
    return f"{mant:.3g}e-{e}"


def _md_table(df: pd.DataFrame, floatfmt: str = "{:.3g}") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, (float, np.floating)):
                cells.append("NA" if np.isnan(v) else floatfmt.format(v))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _few_scored_lines(analysis: Analysis, k: int) -> list[str]:
    """A note when fewer than k SNPs have a nonzero DeepLIFT score (strong L1: the networks
    use only those SNPs; the others are in no top k, see join_tables)."""
    n_scored = int((analysis.table["deeplift_mean_abs"] > 0).sum())
    if n_scored >= k:
        return []
    return [f"Only {n_scored} SNPs have a nonzero DeepLIFT score (the networks' L1 penalty left no "
            f"weight on the others), so the DeepLIFT top-{k} list has {n_scored} SNPs.", ""]


def write_report(analysis: Analysis, d: Path) -> Path:
    """``report.md``: cohort, QC, GWAS, model selection, top hits of both methods, figures."""
    s = analysis.summary
    k = int(analysis.config.get("top_k", 10))
    qc = analysis.qc_report
    qc_counts = (qc.groupby(["kind", "reason"]).size().rename("removed").reset_index()
                 if len(qc) else pd.DataFrame({"kind": [], "reason": [], "removed": []}))
    sel = analysis.selection
    grid = sel[sel.role == "grid"]
    by_cfg = pd.DataFrame()
    if len(grid):
        metric = "val_loglik" if "val_loglik" in grid else grid.columns[-1]
        by_cfg = (grid.groupby(["h1", "h2", "l1"])[metric].agg(["mean", "std", "count"]).reset_index()
                  .sort_values("mean", ascending=False))
        by_cfg.columns = ["h1", "h2", "l1", f"{metric} mean", f"{metric} sd", "seeds"]
    top = analysis.top(k)
    both = top[top.in_both]
    lines = [
        "# gwaslift report",
        "",
        f"Input: `{s.get('bfile')}`; phenotype `{s.get('phenotype_name')}` ({s.get('model')} model).",
        "",
        "## Cohort and QC",
        "",
        f"- samples: {s.get('n_samples_input')} in the .fam, {s.get('n_samples_qc')} after QC, "
        f"{s.get('n_samples_analysed')} with a phenotype and every covariate",
        f"- variants: {s.get('n_variants_input')} in the .bim, {s.get('n_variants_qc')} after QC",
        "- QC filters: " + ", ".join(f"{k} {'off' if analysis.config.get(k) is None else analysis.config.get(k)}"
                                     for k in ("maf", "geno", "mind", "hwe")),
    ]
    if s.get("case_fraction") is not None:
        lines.append(f"- cases: {s.get('n_cases')} of {s.get('n_samples_analysed')} "
                     f"(case fraction {s['case_fraction']:.3f})")
    lines += ["", _md_table(qc_counts) if len(qc_counts) else "Nothing was removed by QC.", "",
              "## Linear GWAS", "",
              f"- {s.get('n_pcs')} principal components and {len(s.get('covariates', []))} covariates in total: "
              f"{', '.join(s.get('covariates', [])) or 'none'}",
              f"- genomic inflation lambda_GC = {s.get('lambda_gc', float('nan')):.3f}",
              f"- SNPs with p < 5e-8: {s.get('n_genome_wide')}", "",
              "## Deep model", "",
              f"- grid: {len(by_cfg)} configurations x {len(analysis.config.get('seeds', []))} seeds; "
              f"selected: h1={s.get('selected', {}).get('hidden', ['?'])[0]}, "
              f"h2={s.get('selected', {}).get('hidden', ['?', '?'])[1]}, l1={s.get('selected', {}).get('l1')}",
              f"- re-trained with seeds {analysis.config.get('refit_seeds')}"
              + (" (cross-fitted: seed j trained on every fold but fold j, one fold per seed)"
                 if analysis.config.get("cross_fit") else "") + "; DeepLIFT on the "
              f"{analysis.config.get('samples')} samples against the {analysis.config.get('reference')} reference "
              f"(max summation-to-delta error {s.get('deeplift_max_delta_error', float('nan')):.2e})",
              *_null_lines(analysis),
              "", _md_table(by_cfg) if len(by_cfg) else "", "",
              f"## Top {k} SNPs of each method", "",
              _md_table(top.assign(p=[_fmt_p(lp) for lp in top["log10_p"]])), "",
              f"In both top-{k} lists: {', '.join(both.snp) if len(both) else 'none'}.", "",
              *_few_scored_lines(analysis, k),
              *(["## Simulation truth", "", s["simulation_truth"], ""] if s.get("simulation_truth") else []),
              "## Figures", ""]
    for name in ("miami", "manhattan", "qq"):
        if (d / f"{name}.png").exists():
            lines.append(f"![{name}]({name}.png)")
            lines.append("")
    lines += ["## Run", "", f"Configuration: `config.json`. Wall time {s.get('wall_time_s', 0):.1f} s.", ""]
    target = d / "report.md"
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines))
    return target


def check_writable(out: str | os.PathLike) -> Path:
    """Create ``out`` (a directory) and check that files can be written there, before any work."""
    return check_writable_dir(out)


def _null_lines(analysis) -> list[str]:
    """The report's paragraph on the significance of the DeepLIFT scores."""
    s, alpha = analysis.summary, analysis.config.get("alpha", 0.05)
    kind = s.get("null", "permutation" if s.get("n_null") else "none")
    if kind == "decoys":
        tail = s.get("decoy_tail") or {}
        return [
            f"- significance from {s.get('n_decoys')} decoy SNPs (real SNPs with the samples shuffled, "
            f"trained alongside the real ones in refits of the selected configuration with the same seeds; "
            f"mean validation log-likelihood of those fits {_fmt(s.get('decoy_fit_val_loglik'))}): "
            f"SNPs at FDR <= {alpha}: {s.get('n_deeplift_fdr')}; above the family-wise threshold "
            f"(Bonferroni, alpha={alpha}): {s.get('n_deeplift_fwer')}. Each SNP's score in the decoy fits "
            "(`deeplift_decoy_fit`) is ranked among the decoys' scores of the same fits, so the null shares "
            "the networks' signal, L1 penalty and scale. Beyond the 10th-highest decoy the p-value comes "
            f"from a generalized Pareto fit to the top {tail.get('n_exc', '?')} decoy scores "
            f"(shape {_fmt(tail.get('xi'))}): an extrapolation. A SNP in LD with a causal SNP, or "
            "correlated with structure the PCs miss, is associated and is not a decoy-like null.",
        ]
    if kind == "permutation":
        return [
            f"- null calibration: {s.get('n_null')} permuted-phenotype fits; family-wise threshold "
            f"(alpha={alpha}): {_fmt(s.get('deeplift_fwer_threshold_score'))} "
            f"mean |DeepLIFT|; SNPs above it: {s.get('n_deeplift_fwer')}. The threshold (the "
            f"{1 - float(alpha):.0%} quantile of the null fits' largest score) "
            "controls the family-wise error under the global null, where the observed fit is "
            "exchangeable with the null fits; scores are compared as shares of each fit's total "
            "(`null_normalize`), which is conservative when real signal is present. The per-SNP "
            "`deeplift_p`/`deeplift_q` pool the null scores of all SNPs: trust them under the global "
            "null only -- with real signal and a strong L1 penalty the null networks lose almost every "
            "SNP while the observed network keeps some SNPs without effect alive, so their p-values "
            "can come out too small (`null=\"decoys\"` compares within the same networks). Read them "
            "as ranks.",
        ]
    return ["- no significance computed (`null=\"none\"`)."]


def _checkpoint_dir(out_dir, cfg: dict, bfile, pheno, covar) -> Path | None:
    """``out/checkpoints/<tag>``: one folder per set of options and inputs, so that a rerun
    into the same ``out`` with other options trains afresh (as plink2 overwrites an --out)
    instead of failing at the training stage, after QC, PCA and the GWAS, on checkpoints of
    another run; the same run resumes from its own."""
    if out_dir is None:
        return None
    import hashlib

    def ident(x):  # a path as it is named; in-memory data by its bytes
        if x is None or isinstance(x, (str, os.PathLike)):
            return None if x is None else str(x)
        if hasattr(x, "prefix"):
            return str(x.prefix)
        arr = np.asarray(x.to_numpy(dtype=float) if hasattr(x, "to_numpy") else x, dtype=float)
        return hashlib.sha256(arr.tobytes()).hexdigest() + str(list(getattr(x, "columns", [])))

    # the memory budget changes how many networks train at once, not what they become
    # (gwaslift.deep.train: bitwise the same members), so a rerun with another budget resumes
    cfg = {k: v for k, v in cfg.items() if k != "max_state_bytes"}
    key = json.dumps({"cfg": cfg, "inputs": [ident(bfile), ident(pheno), ident(covar)]}, sort_keys=True, default=str)
    return out_dir / "checkpoints" / hashlib.sha256(key.encode()).hexdigest()[:12]


def analyze(bfile, pheno=None, covar=None, out=None, *, pheno_name=None, covar_names=None,
            progress: bool | None = None, **options) -> Analysis:
    """Run the whole analysis on a PLINK fileset.

    Parameters
    ----------
    bfile : path prefix of the .bed/.bim/.fam (or a :class:`~gwaslift.io.Genotypes`).
    pheno : PLINK-style phenotype file, a Series/array aligned with the .fam, or None for
        the .fam's sixth column. ``pheno_name`` picks the column of a file.
    covar : PLINK-style covariate file (numeric and categorical columns), a DataFrame, or None.
        ``covar_names`` picks columns.
    out : output directory; when given, it is checked for writability *before* any
        computation and ``Analysis.save(out)`` runs at the end.
    options : any of :data:`DEFAULTS` -- QC thresholds (``maf, geno, mind, hwe``), ``n_pcs``,
        GWAS ``model``, ``missing`` rule and ``firth`` mode (:func:`gwaslift.linear_gwas`), the grid (``hidden, l1``), ``seeds`` and
        ``refit_seeds``, ``deep_covariates`` (feed PCs and covariates to the network as
        unpenalized inputs), training options (``epochs, patience, batch_size, lr, l1_warmup, device``,
        ``precision`` of the first-layer products, ``max_state_bytes`` for the networks trained
        at once -- :func:`gwaslift.deep.train`;
        ``cross_fit``: cross-fitted refits, one fold per refit seed -- :func:`gwaslift.deep.refit`;
        the decoy or permutation refits then use the same folds),
        DeepLIFT (``samples, reference, rule``), the significance of its scores (``null``:
        "decoys" (default; ``n_decoys`` decoy SNPs, default one per SNP -- see
        :func:`gwaslift.attribution.attribution_decoys`), "permutation" (``n_null``
        permuted-phenotype fits; ``null_normalize`` -- see
        :func:`gwaslift.attribution.null_calibrate`) or "none"; level ``alpha``),
        ``top_k``, ``split_seed``, ``seed``.
    """
    from . import deep
    from .assoc import genomic_inflation, linear_gwas
    from .attribution import attribution_decoys, attribution_null, deeplift
    from .io import read_plink
    from .io.pheno import as_phenotype, read_covar
    from .qc import qc
    from .structure import pca

    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"analyze() got unknown options: {', '.join(sorted(unknown))}")
    cfg = {**DEFAULTS, **options}
    if cfg["null"] not in NULL_KINDS:
        raise InputError(f"null must be one of {NULL_KINDS}, got {cfg['null']!r}")
    out_dir = check_writable(out) if out is not None else None
    t0 = time.perf_counter()
    timings = {}

    def stage(name):
        timings[name] = time.perf_counter()
        log.info("stage: %s", name)

    stage("read")
    g = bfile if hasattr(bfile, "dosage") else read_plink(bfile)
    y_all = as_phenotype(pheno, g, name=pheno_name)
    cov_all = None
    if covar is not None:
        cov_all = read_covar(covar, g, columns=covar_names) if isinstance(covar, (str, os.PathLike)) \
            else pd.DataFrame(covar).reset_index(drop=True)

    stage("qc")
    gq, qc_report = qc(g, maf=cfg["maf"], geno=cfg["geno"], mind=cfg["mind"], hwe=cfg["hwe"], progress=progress)
    keep = np.searchsorted(g.sample_idx, gq.sample_idx)  # positions of kept samples in g
    y = pd.Series(np.asarray(y_all, float)[keep], name=y_all.name)
    cov = cov_all.iloc[keep].reset_index(drop=True) if cov_all is not None else None
    if np.isfinite(y).sum() < 10:
        raise InputError(f"fewer than 10 samples with a phenotype after QC ({int(np.isfinite(y).sum())})",
                         pheno if isinstance(pheno, (str, os.PathLike)) else None)

    stage("pca")
    n_pcs = int(cfg["n_pcs"])
    pcs = pca(gq, k=n_pcs, seed=cfg["seed"], progress=progress) if n_pcs > 0 else \
        gq.samples[["fid", "iid"]].copy()
    pc_cols = [c for c in pcs.columns if c.startswith("PC")]
    clash = sorted(set(pc_cols) & set(cov.columns)) if cov is not None else []
    if clash:
        raise InputError(f"the covariates have columns {clash}, the names of the {n_pcs} PCs gwaslift computes: "
                         "to use the file's PCs pass n_pcs=0 (CLI --pcs 0), else rename them",
                         covar if isinstance(covar, (str, os.PathLike)) else None)
    covariates = pd.concat([pcs[pc_cols].reset_index(drop=True), cov], axis=1) if cov is not None \
        else pcs[pc_cols].reset_index(drop=True)
    covariates = covariates if covariates.shape[1] else None

    stage("gwas")
    sumstats = linear_gwas(gq, y, covariates, model=cfg["model"], missing=cfg["missing"], firth=cfg["firth"],
                           progress=progress)
    model = sumstats.attrs.get("model") or ("logistic" if set(np.unique(y[np.isfinite(y)])) <= {0.0, 1.0}
                                             else "linear")

    stage("train")
    deep_cov = covariates if cfg["deep_covariates"] else None
    fit = deep.train(gq, y, hidden=[tuple(h) for h in cfg["hidden"]], l1=list(cfg["l1"]), seeds=list(cfg["seeds"]),
                     refit_seeds=list(cfg["refit_seeds"]), covariates=deep_cov, device=cfg["device"],
                     epochs=cfg["epochs"], patience=cfg["patience"], batch_size=cfg["batch_size"],
                     lr=cfg["lr"], precision=cfg["precision"], l1_warmup=cfg["l1_warmup"],
                     cross_fit=cfg["cross_fit"], split_seed=cfg["split_seed"], progress=progress,
                     max_state_bytes=cfg["max_state_bytes"],
                     checkpoint_dir=_checkpoint_dir(out_dir, cfg, bfile, pheno, covar))

    stage("deeplift")
    from .deep.train import resolve_device

    device = str(resolve_device(cfg["device"]))
    # QC, PCA and the GWAS run on the default dask.distributed Client when there is one; the
    # DeepLIFT passes follow it on CPU (on a GPU they stay in this process, on the device)
    client = "auto" if device == "cpu" else None
    # the null fits are scored exactly as the observed fit
    scoring = dict(samples=cfg["samples"], reference=cfg["reference"], rule=cfg["rule"], covariates=deep_cov,
                   device=device, progress=progress, client=client)
    null = None
    if cfg["null"] == "decoys":
        null = attribution_decoys(gq, y, fit, n_decoys=cfg["n_decoys"], seed=cfg["seed"],
                                  max_state_bytes=cfg["max_state_bytes"], **scoring)
    elif cfg["null"] == "permutation" and int(cfg["n_null"]) > 0:
        null = attribution_null(gq, y, fit, n_null=int(cfg["n_null"]), seed=cfg["seed"],
                                max_state_bytes=cfg["max_state_bytes"], **scoring)
    res = deeplift(fit, gq, top_k=cfg["top_k"], null=null, alpha=cfg["alpha"], normalize=cfg["null_normalize"],
                   **scoring)
    scores = res.scores
    table = join_tables(sumstats, scores)

    stage("done")
    selected = fit.selected or {}
    # the samples both analyses use: a phenotype and every covariate (plink2's OBS_CT)
    finite = np.isfinite(y.to_numpy()) & (np.isfinite(covariates.to_numpy(dtype=float)).all(1)
                                          if covariates is not None else True)
    summary = {
        "bfile": str(getattr(g, "prefix", bfile)),
        "phenotype_name": str(y_all.name),
        "model": model,
        "n_samples_input": int(g.n_samples), "n_variants_input": int(g.n_variants),
        "n_samples_qc": int(gq.n_samples), "n_variants_qc": int(gq.n_variants),
        "n_samples_analysed": int(finite.sum()),
        "n_pcs": n_pcs, "covariates": list(covariates.columns) if covariates is not None else [],
        "lambda_gc": float(genomic_inflation(log10_p=sumstats["log10_p"].to_numpy())),
        "n_genome_wide": int((sumstats["log10_p"] > -np.log10(5e-8)).sum()),
        "selected": {"hidden": list(selected.get("hidden", [])), "l1": selected.get("l1"), "lr": selected.get("lr")},
        "deeplift_max_delta_error": float(res.max_delta_error),
        "null": cfg["null"],
        "n_null": int(cfg["n_null"]) if cfg["null"] == "permutation" else 0,
        "wall_time_s": time.perf_counter() - t0,
        "stage_start_s": {k: v - t0 for k, v in timings.items()},
    }
    if model == "logistic":
        summary["n_cases"] = int((y[finite] == 1).sum())
        summary["case_fraction"] = float((y[finite] == 1).mean())
    if cfg["null"] == "decoys":
        # p-values, q-values and the threshold are those of the decoy fits' scores (units of
        # deeplift_decoy_fit, not of deeplift_mean_abs): the plot draws no line for them
        summary["n_decoys"] = int(len(null.decoy))
        summary["decoy_tail"] = res.null.tail
        summary["decoy_fit_val_loglik"] = float(null.metrics["val_loglik"].mean())
        summary["n_deeplift_fdr"] = int(scores["deeplift_fdr"].sum())
        summary["n_deeplift_fwer"] = int(scores["deeplift_fwer"].sum())
        summary["deeplift_fwer_threshold_decoy_fit"] = res.fwer_threshold
    elif res.fwer_threshold is not None:
        # the threshold is in the units null_calibrate compared; the plot needs
        # deeplift_mean_abs units (a share times this fit's total score)
        total = float(scores["deeplift_mean_abs"].sum())
        share = cfg["null_normalize"] == "share"
        summary["deeplift_fwer_threshold"] = float(res.fwer_threshold)
        summary["deeplift_fwer_threshold_score"] = float(res.fwer_threshold * total) if share \
            else float(res.fwer_threshold)
        summary["n_deeplift_fwer"] = int(scores["deeplift_fwer"].sum()) if "deeplift_fwer" in scores else None
    analysis = Analysis(sumstats=sumstats, scores=scores, table=table, qc_report=qc_report,
                        pcs=pcs.reset_index(drop=True), selection=fit.metrics_table(), config=_jsonable(cfg),
                        summary=summary, models=fit,
                        fwer_threshold=res.fwer_threshold if cfg["null"] == "permutation" else None)
    if out_dir is not None:
        analysis.save(out_dir)
    return analysis
