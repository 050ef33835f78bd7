"""Simulation recall study (Sharma et al. 2020, Sec. 4.1 / Table 1), resumable.

Protocol (defaults in ``simulations/config.json``; CLI flags shrink it):

1. Datasets: for every trait type, ``a`` and seed, :func:`gwaslift.simulate.hao` (spatial
   scenario, ``n_samples x n_snps``, ``n_causal`` causal SNPs; trait options from
   ``trait_specs``: binary, quantitative, epistatic "product" = centred pair products with
   no marginal effect, epistatic "and").
2. Linear GWAS per SNP (:func:`gwaslift.linear_gwas`, logistic for binary traits) without
   covariates and with ``n_pcs`` PCs (:func:`gwaslift.pca`); score = -log10 p.
3. Deep model: every dataset's grid (``hidden x l1``) is trained with ``grid_seeds``
   (:func:`gwaslift.deep.train`, seeded 50/25/25 split). Selection per (trait, a): the
   configuration with the highest validation log-likelihood averaged over all datasets of
   that ``a`` and all grid seeds. The selected configuration is re-trained on each dataset
   with the fresh ``refit_seeds`` (:func:`gwaslift.deep.refit`) and scored with
   :func:`gwaslift.deeplift` (validation samples, training-mean reference, Rescale).
4. Metrics per dataset and method: recall@``top_k`` (the top_k SNPs called causal; ties
   broken by SNP order) and average precision (auPRC) over all SNPs. DeepLIFT is scored
   two ways: ``deeplift_seed`` = each refit seed alone, recall averaged over seeds (the
   paper's 25 runs per a), and ``deeplift_mean`` = mean |DeepLIFT| over the refit seeds
   (gwaslift's aggregate). For epistatic traits: which causal pairs have both SNPs in a
   method's top_k.
5. Optional (``screen`` = K > 0, not the paper's model): the network sees only candidate SNPs
   chosen on the training split, the SNPs of the K strongest pairs of
   :func:`gwaslift.epistasis.pair_scan` plus the K SNPs with the smallest per-SNP p, both with
   ``n_pcs`` PCs; SNPs outside score lowest. The pair scan alone (each SNP scored by its
   strongest pair) is then reported as a method of its own (``pair_scan``).

Cache (``--cache``, default simulations/cache/, git-ignored): one folder per dataset named
by its parameters plus a hash of them; inside, one file per finished step, named by a hash
of the step's parameters (linear*.tsv, grid-*.tsv, deeplift-*.tsv + .json). A rerun reads
finished steps and trains only what is missing; the deep model's checkpoints make an
interrupted grid resume member by member. Results: ``simulations/RESULTS.md``.

Run: ``python simulations/recall_study.py`` (the full protocol) or e.g.
``python simulations/recall_study.py --n-samples 4000 --n-snps 4000 --a 0.1 1 --seeds 0 1
--traits binary epistatic_product --grid small --grid-seeds 0 --refit-seeds 5 6 --epochs 10``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "config.json"
METHODS = ("deeplift_seed", "deeplift_mean", "linear", "linear_pcs")
#: with ``screen``: the pair scan alone (each SNP scored by its strongest pair), beside the rest
SCREEN_METHODS = METHODS + ("pair_scan",)
METHOD_NAMES = {"deeplift_seed": "DeepLIFT (per seed)", "deeplift_mean": "DeepLIFT (seed mean)",
                "linear": "linear", "linear_pcs": "linear + PCs", "pair_scan": "pair scan"}


# ===================================================================== metrics
def average_precision(scores, labels) -> float:
    """Area under the precision-recall curve as average precision.

    ``AP = sum_t (R_t - R_{t-1}) P_t`` over the distinct score thresholds ``t`` in
    decreasing order, where a SNP is called positive when its score is >= t (tied SNPs
    enter together). ``scores`` (m,) float, larger = more likely causal, NaN = lowest;
    ``labels`` (m,) bool. Returns NaN when there is no positive.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D of one length, got {s.shape} and {y.shape}")
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    s = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # last row of each tie group
    precision = tp[last] / (last + 1.0)
    recall = tp[last] / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def top_k(scores, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores (ties by index order), leaving out NaN and scores
    <= 0: a SNP that no network uses (DeepLIFT score 0) is never "called causal", so fewer
    than ``k`` indices come back when fewer SNPs are scored."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isnan(s), -np.inf, s)
    top = np.argsort(-s, kind="mergesort")[:k]
    return top[s[top] > 0]


def recall_at_k(scores, labels, k: int) -> float:
    """Fraction of the positives among the top ``k`` scores."""
    y = np.asarray(labels, dtype=bool)
    return float(y[top_k(scores, k)].sum() / max(int(y.sum()), 1))


def pairs_found(scores, truth: pd.DataFrame, k: int) -> tuple[list[int], list[int]]:
    """Epistatic pairs (``truth.pair`` >= 0; ``truth.variant_index``) with both SNPs in the
    top ``k`` (first list) and with exactly one of them (second list)."""
    top = set(top_k(scores, k).tolist())
    both, one = [], []
    for p, grp in truth[truth["pair"] >= 0].groupby("pair"):
        hits = sum(int(v) in top for v in grp["variant_index"])
        (both if hits == 2 else one if hits == 1 else []).append(int(p))
    return both, one


# ===================================================================== cache helpers
def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _write_json(path: Path, obj) -> None:
    from gwaslift._util import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1, sort_keys=True, default=float) + "\n")


def _write_tsv(path: Path, df: pd.DataFrame) -> None:
    from gwaslift._util import atomic_path

    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)


class Log:
    """Steps read from the cache (``hits``) and computed (``computed``), by step id
    ``<dataset folder>/<result file>``. Computed steps' seconds are appended to
    ``<cache>/timings.tsv`` so a report can sum the compute time of cached steps too."""

    def __init__(self, cache: Path, verbose: bool = True):
        self.cache, self.verbose, self.hits, self.computed = Path(cache), verbose, [], []

    def hit(self, step):
        self.hits.append(step)

    def did(self, step, seconds, note=""):
        self.computed.append(step)
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.cache / "timings.tsv", "a") as fh:
            fh.write(f"{step}\t{seconds:.3f}\t{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        if self.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {step} {note}: {seconds:.1f} s", flush=True)

    def compute_seconds(self) -> float:
        """Seconds spent computing the steps this run used (latest timing of each step)."""
        path = self.cache / "timings.tsv"
        if not path.exists():
            return float("nan")
        t = pd.read_csv(path, sep="\t", header=None, names=["step", "seconds", "when"])
        last = t.groupby("step")["seconds"].last()
        return float(last.reindex(sorted(set(self.hits) | set(self.computed))).fillna(0).sum())


# ===================================================================== one dataset
class Dataset:
    """One simulated cohort in the cache: ``root`` folder, ``prefix`` of its PLINK files."""

    def __init__(self, cfg: dict, trait: str, a: float, seed: int, cache: Path):
        self.trait, self.a, self.seed = trait, float(a), int(seed)
        self.sim_params = dict(n_samples=int(cfg["n_samples"]), n_snps=int(cfg["n_snps"]),
                               n_causal=int(cfg["n_causal"]), scenario=cfg["scenario"], a=self.a,
                               seed=self.seed, **cfg["trait_specs"][trait])
        name = (f"{trait}-n{cfg['n_samples']}-m{cfg['n_snps']}-c{cfg['n_causal']}-a{self.a:g}-s{self.seed}-"
                f"{_hash(self.sim_params)}")
        self.root = Path(cache) / name
        self.prefix = self.root / "sim"

    def simulate(self, log: Log):
        from gwaslift.simulate import hao

        if Path(f"{self.prefix}.sim.json").exists() and Path(f"{self.prefix}.truth.tsv").exists():
            log.hit(f"{self.root.name}/simulate")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        t = time.time()
        p = dict(self.sim_params)
        hao(p.pop("n_samples"), p.pop("n_snps"), out=self.prefix, progress=False, **p)
        log.did(f"{self.root.name}/simulate", time.time() - t)

    def load(self):
        import gwaslift

        g = gwaslift.read_plink(self.prefix)
        y = gwaslift.read_pheno(f"{self.prefix}.pheno", g)
        return g, y

    @property
    def truth(self) -> pd.DataFrame:
        return pd.read_csv(f"{self.prefix}.truth.tsv", sep="\t")

    # ---------------------------------------------------------------- linear GWAS
    def linear(self, n_pcs: int, log: Log) -> pd.DataFrame:
        """``snp, score`` (= -log10 p; NaN for a failed test) without (n_pcs=0) or with PCs."""
        import gwaslift

        path = self.root / (f"linear_pcs{n_pcs}.tsv" if n_pcs else "linear.tsv")

        def compute():
            g, y = self.load()
            ss = gwaslift.linear_gwas(g, y, self.pcs(n_pcs, log) if n_pcs else None)
            return pd.DataFrame({"snp": ss["snp"], "score": ss["log10_p"]})

        return self._cached_tsv(path, compute, log)

    def pcs(self, n_pcs: int, log: Log) -> pd.DataFrame:
        """The first ``n_pcs`` principal components (``PC1..``), one row per sample (cached)."""
        import gwaslift

        path = self.root / f"pcs{n_pcs}.tsv"
        return self._cached_tsv(path, lambda: gwaslift.pca(self.load()[0], k=n_pcs).filter(like="PC")
                                .reset_index(drop=True), log)

    def _cached_tsv(self, path: Path, compute, log: Log) -> pd.DataFrame:
        """The table at ``path`` if a run already wrote it, else ``compute()`` written there."""
        if path.exists():
            log.hit(f"{self.root.name}/{path.name}")
            return pd.read_csv(path, sep="\t")
        t = time.time()
        out = compute()
        _write_tsv(path, out)
        log.did(f"{self.root.name}/{path.name}", time.time() - t)
        return out

    def _deep_inputs(self, train_opts: dict, log: Log):
        """``(opts, covariates, genotypes, split, positions)`` of the deep model: ``train_opts``
        without the study's own keys; the PCs the network takes as unpenalized covariates
        (None for the paper's network, which has none); the genotypes it sees (all SNPs, or
        with ``screen`` the candidate SNPs of :meth:`screen`); the split to train on (None:
        train()'s own, which is the same one); ``positions`` of its SNPs among all (None = all)."""
        opts = dict(train_opts)
        n_pcs = int(opts.pop("deep_pcs", 0))
        k = int(opts.pop("screen", 0))
        cov = self.pcs(n_pcs, log) if n_pcs else None
        g, y = self.load()
        if not k:
            return opts, cov, g, None, None
        split = self.split(int(opts["split_seed"]))
        cand = self.screen(k, int(opts.pop("screen_pcs")), split, log)
        positions = np.flatnonzero(cand["candidate"].to_numpy())
        return opts, cov, g.subset(variants=positions), split, positions

    def split(self, split_seed: int):
        """The deep model's 50/25/25 split, as :func:`gwaslift.deep.train` makes it."""
        from gwaslift import deep
        from gwaslift.deep.train import _phenotype

        g, y = self.load()
        yy, trait = _phenotype(g, y, None)
        return deep.make_split(yy, split_seed, stratify=(trait == "binary"))

    def screen(self, k: int, n_pcs: int, split, log: Log) -> pd.DataFrame:
        """Candidate inputs of the deep model, chosen on the training split only: the SNPs of
        the ``k`` strongest pairs of :func:`gwaslift.epistasis.pair_scan` plus the ``k`` SNPs
        with the smallest per-SNP p (:func:`gwaslift.linear_gwas`), both adjusted for
        ``n_pcs`` PCs. ``snp, pair_stat`` (the SNP's largest pair |T|), ``candidate`` (bool)."""
        import gwaslift
        from gwaslift.epistasis import pair_scan

        path = self.root / f"screen-k{k}-pcs{n_pcs}-{_hash(split.train.tolist())}.tsv"

        def compute():
            g, y = self.load()
            yv = y.to_numpy(dtype=np.float64)
            pcs = self.pcs(n_pcs, log).to_numpy() if n_pcs else None
            scan = pair_scan(g, yv, pcs, samples=split.train, top=k, progress=False)
            tr = np.sort(split.train)
            lin = gwaslift.linear_gwas(g.subset(samples=tr), yv[tr], None if pcs is None else pcs[tr])
            marginal = np.argsort(-np.nan_to_num(lin["log10_p"].to_numpy(), nan=-np.inf), kind="mergesort")[:k]
            cand = np.zeros(g.n_variants, bool)
            cand[marginal] = True
            cand[scan.pairs["index_a"].to_numpy()] = True
            cand[scan.pairs["index_b"].to_numpy()] = True
            _write_tsv(path.with_name(path.stem + "-pairs.tsv"), scan.pairs)
            return pd.DataFrame({"snp": scan.snps["snp"], "pair_stat": scan.snps["max_abs_stat"], "candidate": cand})

        return self._cached_tsv(path, compute, log)

    # ---------------------------------------------------------------- deep grid
    def grid(self, train_opts: dict, grid: dict, grid_seeds, log: Log) -> pd.DataFrame:
        """Validation metrics of every (configuration, grid seed); also saves the fit's
        split/centering (no member weights) for the refit."""
        from gwaslift import deep

        key = _hash(dict(train_opts, grid=grid, grid_seeds=list(grid_seeds)))
        path = self.root / f"grid-{key}.tsv"
        skeleton = self.root / f"grid-{key}-fit"
        if path.exists() and (skeleton / "fit.json").exists():
            log.hit(f"{self.root.name}/{path.name}")
            return pd.read_csv(path, sep="\t")
        t = time.time()
        _, y = self.load()
        opts, cov, g, split, _ = self._deep_inputs(train_opts, log)
        if split is not None:
            opts["split"] = split
        ckpt = self.root / f"grid-{key}-ckpt"
        fit = deep.train(g, y, hidden=[tuple(h) for h in grid["hidden"]], l1=grid["l1"], seeds=list(grid_seeds),
                         covariates=cov, checkpoint_dir=ckpt, progress=False, device="auto", **opts)
        tab = fit.metrics_table()
        tab = tab[[c for c in tab.columns if np.ndim(tab[c].iloc[0]) == 0]]
        if skeleton.exists():
            shutil.rmtree(skeleton)
        replace(fit, members=[], selected=None).save(skeleton)
        _write_tsv(path, tab)
        shutil.rmtree(ckpt, ignore_errors=True)  # the metrics are all the selection needs
        log.did(f"{self.root.name}/{path.name}", time.time() - t, f"grid, {len(tab)} fits")
        return tab

    # ---------------------------------------------------------------- refit + DeepLIFT
    def deeplift(self, train_opts: dict, grid: dict, grid_seeds, config: dict, refit_seeds, samples: str,
                 log: Log, cross_fit: bool = False) -> pd.DataFrame:
        """Per-SNP mean |DeepLIFT| of the refit members: ``snp, score`` (mean over seeds) and
        one ``seed<k>`` column per refit seed. ``cross_fit``: the refits are cross-fitted
        (:func:`gwaslift.deep.refit`, one fold per refit seed) and scored on ``samples``."""
        import gwaslift
        from gwaslift import deep

        gkey = _hash(dict(train_opts, grid=grid, grid_seeds=list(grid_seeds)))
        key = dict(grid=gkey, config=config, refit_seeds=list(refit_seeds), samples=samples)
        # only when used: the cache keys of the paper's refits stay as they were
        key = _hash(dict(key, cross_fit=True) if cross_fit else key)
        path = self.root / f"deeplift-{key}.tsv"
        if path.exists():
            log.hit(f"{self.root.name}/{path.name}")
            return pd.read_csv(path, sep="\t")
        t = time.time()
        _, y = self.load()
        _, cov, g, _, positions = self._deep_inputs(train_opts, log)
        skeleton = deep.load_fit(self.root / f"grid-{gkey}-fit")
        cfg = {"hidden": tuple(config["hidden"]), "l1": float(config["l1"]), "lr": float(config["lr"])}
        ckpt = self.root / f"deeplift-{key}-ckpt"
        fit = deep.refit(g, y, skeleton, seeds=list(refit_seeds), config=cfg, covariates=cov, checkpoint_dir=ckpt,
                         progress=False, device="auto", cross_fit=cross_fit)
        res = gwaslift.deeplift(fit, g, samples=samples, members="refit", covariates=cov, progress=False)
        # one row per SNP of the dataset: SNPs the network did not see (screen) score NaN (= lowest)
        n_all = self.load()[0].n_variants
        at = np.arange(n_all) if positions is None else positions

        def full(values):
            v = np.full(n_all, np.nan)
            v[at] = values
            return v

        out = pd.DataFrame({"snp": self.load()[0].variants["snp"],
                            "score": full(res.scores["deeplift_mean_abs"].to_numpy())})
        for s, row in zip(refit_seeds, res.member_mean_abs):
            out[f"seed{int(s)}"] = full(np.asarray(row))
        _write_json(self.root / f"deeplift-{key}.json",
                    {"config": {**cfg, "hidden": list(cfg["hidden"])}, "refit_seeds": list(map(int, refit_seeds)),
                     "metrics": fit.metrics_table().query("role == 'refit'")
                     [["seed", "fold", "val_loglik", "es_loss", "best_epoch", "n_nonzero_snps"]].to_dict("records"),
                     "max_delta_error": res.max_delta_error})
        _write_tsv(path, out)
        shutil.rmtree(ckpt, ignore_errors=True)
        log.did(f"{self.root.name}/{path.name}", time.time() - t, f"refit {len(refit_seeds)} seeds + DeepLIFT")
        return out


# ===================================================================== the study
def train_options(cfg: dict) -> dict:
    opts = dict(epochs=int(cfg["epochs"]), patience=int(cfg["patience"]), batch_size=int(cfg["batch_size"]),
                lr=float(cfg["lr"]), split_seed=int(cfg["split_seed"]))
    # only when used: the cache keys of runs without a warm-up stay as they were
    if int(cfg.get("l1_warmup", 0)):
        opts["l1_warmup"] = int(cfg["l1_warmup"])
    if int(cfg.get("deep_pcs", 0)):  # PCs as unpenalized network inputs (not the paper's model)
        opts["deep_pcs"] = int(cfg["deep_pcs"])
    if int(cfg.get("screen", 0)):  # the network sees only screened candidate SNPs (not the paper's model)
        opts["screen"] = int(cfg["screen"])
        opts["screen_pcs"] = int(cfg["n_pcs"])
    return opts


def deeplift_samples(cfg: dict) -> str:
    """Samples DeepLIFT scores: ``deeplift_samples``, except "all" for cross-fitted refits
    (every sample is a training sample of most of their members; there is no shared
    held-out set)."""
    return "all" if cfg.get("cross_fit", False) else cfg["deeplift_samples"]


def select_config(tables: list[pd.DataFrame]) -> tuple[dict, pd.DataFrame]:
    """Best configuration by validation log-likelihood averaged over datasets and seeds."""
    tab = pd.concat(tables, ignore_index=True)
    mean = tab.groupby(["h1", "h2", "l1", "lr"])["val_loglik"].agg(["mean", "count"]).reset_index()
    best = mean.loc[mean["mean"].idxmax()]
    return ({"hidden": [int(best.h1), int(best.h2)], "l1": float(best.l1), "lr": float(best.lr)},
            mean.sort_values("mean", ascending=False))


def run_study(cfg: dict, cache: Path, verbose: bool = True, threads: int | None = None):
    """Run (or resume) the study. Returns ``(per_dataset, selections, log)``:
    ``per_dataset`` one row per (trait, a, seed, method) with ``recall``, ``auprc``,
    ``pairs_both``, ``pairs_one``; ``selections`` per (trait, a) the chosen configuration."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    log = Log(cache, verbose)
    grid = cfg["grids"][cfg["grid"]] if isinstance(cfg["grid"], str) else cfg["grid"]
    opts = train_options(cfg)
    k = int(cfg["top_k"])
    rows, selections = [], []
    for trait in cfg["traits"]:
        if trait not in cfg["trait_specs"]:
            raise SystemExit(f"unknown trait {trait!r}; config trait_specs has {sorted(cfg['trait_specs'])}")
        for a in cfg["a"]:
            sets = [Dataset(cfg, trait, a, s, cache) for s in cfg["seeds"]]
            tables = []
            for ds in sets:  # phase 1: data, linear GWAS, grid
                ds.simulate(log)
                ds.linear(0, log)
                ds.linear(int(cfg["n_pcs"]), log)
                tab = ds.grid(opts, grid, cfg["grid_seeds"], log)
                tables.append(tab.assign(dataset=ds.root.name))
            chosen, ranking = select_config(tables)
            selections.append({"trait": trait, "a": float(a), "config": chosen,
                               "val_loglik": float(ranking["mean"].iloc[0]),
                               "n_fits": int(ranking["count"].iloc[0]), "ranking": ranking})
            for ds in sets:  # phase 2: refit the selected configuration, DeepLIFT, metrics
                dl = ds.deeplift(opts, grid, cfg["grid_seeds"], chosen, cfg["refit_seeds"],
                                 deeplift_samples(cfg), log, cross_fit=bool(cfg.get("cross_fit", False)))
                truth = ds.truth
                n_snps = len(dl)
                labels = np.zeros(n_snps, dtype=bool)
                labels[truth["variant_index"].to_numpy()] = True
                lin = ds.linear(0, log)
                linp = ds.linear(int(cfg["n_pcs"]), log)
                scored = {"deeplift_mean": [dl["score"].to_numpy()],
                          "deeplift_seed": [dl[f"seed{int(s)}"].to_numpy() for s in cfg["refit_seeds"]],
                          "linear": [lin["score"].to_numpy()], "linear_pcs": [linp["score"].to_numpy()]}
                if "screen" in opts:
                    cand = ds.screen(opts["screen"], opts["screen_pcs"], ds.split(opts["split_seed"]), log)
                    scored["pair_scan"] = [cand["pair_stat"].to_numpy()]
                for method, score_list in scored.items():
                    for j, sc in enumerate(score_list):
                        both, one = pairs_found(sc, truth, k)
                        rows.append({"trait": trait, "a": float(a), "seed": ds.seed, "method": method,
                                     "run": j, "recall": recall_at_k(sc, labels, k),
                                     "auprc": average_precision(sc, labels),
                                     "pairs_both": both, "pairs_one": one,
                                     "n_pairs": int((truth["pair"] >= 0).sum() // 2)})
    return pd.DataFrame(rows), selections, log


# ===================================================================== report
def _fmt_pct(x):
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.0f}%"


def summarize(per: pd.DataFrame) -> pd.DataFrame:
    """Mean (and SD over runs) of recall and auPRC per trait, a, method."""
    g = per.groupby(["trait", "a", "method"])
    return pd.DataFrame({"recall": g["recall"].mean(), "recall_sd": g["recall"].std(ddof=1),
                         "auprc": g["auprc"].mean(), "runs": g["recall"].size()}).reset_index()


def is_paper_protocol(cfg: dict, paper: dict) -> bool:
    keys = ("n_samples", "n_snps", "n_causal", "a", "seeds", "grid", "grid_seeds", "refit_seeds", "epochs")
    model = ("l1_warmup", "deep_pcs", "screen", "cross_fit", "deeplift_samples")  # changes to the paper's model
    return all(cfg[k] == paper[k] for k in keys) and all(cfg.get(k, 0) == paper.get(k, 0) for k in model)


def write_results(path: Path, cfg: dict, paper_cfg: dict, per: pd.DataFrame, selections, command: str,
                  wall_s: float, log: Log) -> str:
    from gwaslift._util import atomic_path

    summ = summarize(per)
    methods = SCREEN_METHODS if int(cfg.get("screen", 0)) else METHODS
    reduced = not is_paper_protocol(cfg, paper_cfg)
    grid = cfg["grids"][cfg["grid"]] if isinstance(cfg["grid"], str) else cfg["grid"]
    L = ["# Simulation recall study (Sharma et al. 2020, Sec. 4.1 / Table 1)", ""]
    if reduced:
        L += ["**REDUCED RUN -- not the paper protocol.** These numbers come from a smaller study than "
              "Sec. 4.1 or from a changed model (see the parameters below) and must not be read as the "
              "paper-protocol result. "
              "The full protocol runs with one command:", "",
              "```bash", "python simulations/recall_study.py --threads 2   # config.json defaults: the full protocol",
              "```", ""]
    L += ["## What ran", "",
          "```bash", command, "```", "",
          f"- samples x SNPs: {cfg['n_samples']} x {cfg['n_snps']}, causal SNPs: {cfg['n_causal']}, "
          f"scenario: {cfg['scenario']}",
          f"- a: {cfg['a']}; dataset seeds: {cfg['seeds']}; traits: "
          + ", ".join(f"{t} (`hao({json.dumps(cfg['trait_specs'][t])})`)" for t in cfg["traits"]),
          f"- grid `{cfg['grid'] if isinstance(cfg['grid'], str) else 'custom'}`: hidden {grid['hidden']} x "
          f"L1 {grid['l1']}, grid seeds {cfg['grid_seeds']}, refit seeds {cfg['refit_seeds']}",
          f"- training: epochs {cfg['epochs']}, patience {cfg['patience']}, batch {cfg['batch_size']}, "
          f"lr {cfg['lr']}, split 50/25/25 (split seed {cfg['split_seed']}), proximal L1"
          + (f" with a {cfg['l1_warmup']}-epoch warm-up" if int(cfg.get("l1_warmup", 0)) else "")
          + (f"; the network also takes {cfg['deep_pcs']} PCs as unpenalized inputs"
             if int(cfg.get("deep_pcs", 0)) else "")
          + (f"; the network sees only the candidate SNPs of a screen on the training split (the SNPs of "
             f"the {cfg['screen']} strongest pairs of `gwaslift.epistasis.pair_scan` plus the {cfg['screen']} "
             f"smallest per-SNP p, both with {cfg['n_pcs']} PCs); the others score lowest"
             if int(cfg.get("screen", 0)) else "")
          + (f"; the {len(cfg['refit_seeds'])} refits are cross-fitted: the samples of the split are dealt "
             f"into {len(cfg['refit_seeds'])} folds and refit seed j trains on every fold but fold j, "
             "early-stopping on fold j" if cfg.get("cross_fit", False) else ""),
          f"- DeepLIFT: Rescale, training-mean reference, {deeplift_samples(cfg)} samples; top "
          f"{cfg['top_k']} called causal; linear GWAS with {cfg['n_pcs']} PCs",
          f"- machine: {platform.node() or 'unknown'}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads {_threads()}, device {_device()}",
          f"- wall time of this invocation: {wall_s / 60:.1f} min ({len(log.computed)} steps computed, "
          f"{len(log.hits)} read from the cache); compute time of all steps used, including cached ones "
          f"from earlier invocations on this machine: {log.compute_seconds() / 60:.1f} min", "",
          "Recall = causal SNPs among the top 10 / causal SNPs. `DeepLIFT (per seed)` scores each refit "
          "seed's network alone and averages the recall over datasets x seeds (the paper's 25 runs per a); "
          "`DeepLIFT (seed mean)` ranks by mean |DeepLIFT| over the refit seeds (gwaslift's aggregate). "
          "auPRC = average precision over all SNPs (independent of the cut at 10). The paper's numbers "
          "are its Table 1 (binary trait, 10,000 x 10,000) and are printed only as a reference.", ""]
    for trait in cfg["traits"]:
        L += [f"## Trait: {trait}", "",
              "| a | paper recall | " + " | ".join(f"{METHOD_NAMES[m]} recall" for m in methods)
              + " | " + " | ".join(f"{METHOD_NAMES[m]} auPRC" for m in methods) + " | selected (h1 x h2, L1) | paper arch |",
              "|---" * (4 + 2 * len(methods)) + "|"]
        for a in cfg["a"]:
            sel = next(s for s in selections if s["trait"] == trait and s["a"] == float(a))
            cells = [f"{a:g}", _fmt_pct(cfg["paper_recall"].get(_akey(a))) if trait.startswith("binary") else "--"]
            for field in ("recall", "auprc"):
                for m in methods:
                    r = summ[(summ.trait == trait) & (summ.a == float(a)) & (summ.method == m)]
                    if field == "recall":
                        sd = r["recall_sd"].iloc[0]
                        cells.append(f"{100 * r['recall'].iloc[0]:.0f}%"
                                     + (f" ± {100 * sd:.0f} (n={int(r['runs'].iloc[0])})" if not np.isnan(sd) else ""))
                    else:
                        cells.append(f"{r['auprc'].iloc[0]:.2f}")
            c = sel["config"]
            cells.append(f"{c['hidden'][0]}x{c['hidden'][1]}, {c['l1']:g} (val loglik {sel['val_loglik']:.4f}, "
                         f"{sel['n_fits']} fits)")
            cells.append(cfg.get("paper_arch", {}).get(_akey(a), "") if trait.startswith("binary") else "--")
            L.append("| " + " | ".join(cells) + " |")
        L.append("")
        sub = per[(per.trait == trait) & (per.n_pairs > 0) & (per.method != "deeplift_seed")]
        if len(sub):
            L += [f"Epistatic pairs ({int(sub.n_pairs.iloc[0])} per dataset): pair ids with **both** SNPs "
                  "in the method's top 10 (and, after `/`, pairs with exactly one SNP there).", "",
                  "| a | seed | " + " | ".join(METHOD_NAMES[m] for m in methods if m != "deeplift_seed") + " |",
                  "|---|---|" + "---|" * (len(methods) - 1)]
            for (a, seed), grp in sub.groupby(["a", "seed"]):
                cells = [f"{a:g}", str(seed)]
                for m in methods:
                    if m == "deeplift_seed":
                        continue
                    r = grp[grp.method == m].iloc[0]
                    cells.append(f"{sorted(r.pairs_both) or '{}'} / {sorted(r.pairs_one) or '{}'}")
                L.append("| " + " | ".join(cells) + " |")
            ps = per[(per.trait == trait) & (per.n_pairs > 0)]
            tot = ps.groupby("method").apply(lambda d: (d.pairs_both.map(len).sum(), d.n_pairs.sum()),
                                             include_groups=False)
            L += ["", "Pairs found together, all datasets: " + "; ".join(
                f"{METHOD_NAMES[m]} {tot[m][0]}/{tot[m][1]}" for m in methods if m in tot.index)
                + " (DeepLIFT per seed: summed over refit seeds).", ""]
    L += ["## Per-dataset numbers", "", "| trait | a | seed | method | runs | recall | auPRC |",
          "|---|---|---|---|---|---|---|"]
    for (trait, a, seed, m), grp in per.groupby(["trait", "a", "seed", "method"], sort=False):
        L.append(f"| {trait} | {a:g} | {seed} | {METHOD_NAMES[m]} | {len(grp)} | "
                 f"{100 * grp.recall.mean():.0f}% | {grp.auprc.mean():.3f} |")
    L += ["", "Grid ranking per (trait, a) (mean validation log-likelihood over datasets x grid seeds):", ""]
    for s in selections:
        r = s["ranking"]
        L.append(f"- {s['trait']}, a={s['a']:g}: " + "; ".join(
            f"{int(x.h1)}x{int(x.h2)} L1 {x.l1:g}: {x['mean']:.4f}" for _, x in r.iterrows()))
    text = "\n".join(L) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return text


def _akey(a) -> str:
    return f"{float(a):g}" if float(a) not in (1.0,) else "1.0"


def _threads():
    import torch

    return torch.get_num_threads()


def _device():
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


# ===================================================================== CLI
def load_config(path=DEFAULT_CONFIG) -> dict:
    return json.loads(Path(path).read_text())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--n-samples", type=int)
    p.add_argument("--n-snps", type=int)
    p.add_argument("--n-causal", type=int)
    p.add_argument("--a", type=float, nargs="+")
    p.add_argument("--seeds", type=int, nargs="+", help="dataset seeds")
    p.add_argument("--traits", nargs="+")
    p.add_argument("--grid", choices=("small", "paper", "sparse"))
    p.add_argument("--grid-seeds", type=int, nargs="+")
    p.add_argument("--refit-seeds", type=int, nargs="+")
    p.add_argument("--epochs", type=int)
    p.add_argument("--patience", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--l1-warmup", type=int, help="epochs of L1 warm-up (gwaslift.deep.train l1_warmup; 0 = none)")
    p.add_argument("--deep-pcs", type=int, help="PCs fed to the network as unpenalized inputs (0 = none, the paper)")
    p.add_argument("--screen", type=int, help="K: the network sees only the SNPs of the K strongest pairs of a "
                   "pairwise scan and the K strongest per-SNP tests, on the training split (0 = all SNPs, the paper)")
    p.add_argument("--deeplift-samples", choices=("validation", "all"),
                   help="samples DeepLIFT scores (default: config.json, the validation split; cross-fit: all)")
    p.add_argument("--cross-fit", action="store_true", default=None,
                   help="cross-fitted refits, one fold per refit seed (gwaslift.deep.refit cross_fit; not the paper)")
    p.add_argument("--cache", default=str(HERE / "cache"))
    p.add_argument("--out", default=str(HERE / "RESULTS.md"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def config_from_args(args) -> tuple[dict, dict]:
    paper = load_config(args.config)
    cfg = dict(paper)
    for flag, key in (("n_samples", "n_samples"), ("n_snps", "n_snps"), ("n_causal", "n_causal"), ("a", "a"),
                      ("seeds", "seeds"), ("traits", "traits"), ("grid", "grid"), ("grid_seeds", "grid_seeds"),
                      ("refit_seeds", "refit_seeds"), ("epochs", "epochs"), ("patience", "patience"), ("lr", "lr"),
                      ("l1_warmup", "l1_warmup"), ("deep_pcs", "deep_pcs"), ("screen", "screen"),
                      ("cross_fit", "cross_fit"), ("deeplift_samples", "deeplift_samples")):
        v = getattr(args, flag)
        if v is not None:
            cfg[key] = v
    return cfg, paper


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg, paper = config_from_args(args)
    t0 = time.time()
    per, selections, log = run_study(cfg, Path(args.cache), verbose=not args.quiet, threads=args.threads)
    wall = time.time() - t0
    argv = sys.argv[1:] if argv is None else list(argv)
    command = "python simulations/recall_study.py " + " ".join(shlex.quote(a) for a in argv)
    text = write_results(Path(args.out), cfg, paper, per, selections, command, wall, log)
    if not args.quiet:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
