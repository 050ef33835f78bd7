"""Hao-style simulated cohorts: structured genotypes, a trait with known causal SNPs, truth tables.

:func:`hao` writes an ordinary PLINK fileset (``{out}.bed/.bim/.fam``) plus

* ``{out}.truth.tsv``  -- one row per causal SNP: ``snp, chrom, pos, a1, a2, variant_index,
  beta, pair, expected_a1_freq`` (``pair`` is the pair id for epistatic traits, -1 otherwise);
* ``{out}.pop.tsv``    -- one row per sample, in .fam order: ``FID, IID, population, cluster,
  lambda, sigma2, genetic, S1..SK`` (S = the structure coordinates: spatial position, one-hot
  population membership or admixture proportions; ``population`` = the k-means cluster for
  the spatial scenario, the population for Balding-Nichols, the largest admixture component
  for PSD; ``genetic`` = the genetic value g below);
* ``{out}.pheno``      -- PLINK phenotype file ``FID IID trait``; binary traits coded 1 = control,
  2 = case (the plink2 convention), quantitative traits as floats. The same values are in
  column 6 of the .fam;
* ``{out}.sim.json``   -- the run's parameters and summary (see :class:`Simulation`).

Genotype model (Hao et al. 2016, as used in Sec. 3.1 of Sharma et al. 2020)
---------------------------------------------------------------------------
Every scenario writes the individual-specific A1 allele frequency as ``pi = Gamma @ S``
(``Gamma``: n_snps x K, ``S``: K x n_samples) and draws the A1 dosage
``x[n, m] ~ Binomial(2, pi[m, n])``, A1 being column 5 of the .bim (the counted allele,
as plink2 counts it). The scenarios differ in ``Gamma`` and ``S``:

``"spatial"`` (K = 3)
    ``Gamma[:, 0:2] ~ Uniform(0, 0.5)``, ``Gamma[:, 2] = 0.05``; ``S[0:2, n] ~ Beta(a, a)``
    (the sample's position on the unit square; small ``a`` pushes samples to the four
    corners), ``S[2, n] = 1``. (The paper prints ``Gamma[:, 2] = 0.5``, which would let
    ``pi`` exceed 1; following the project's notes on Hao et al. we use 0.05.) With these
    bounds ``Gamma S`` lies in [0.05, 1.05], so ``pi`` is truncated to [0.05, 0.95]: it stays
    a probability and keeps the intended range. Truncation touches only SNP/sample pairs
    with ``Gamma[m, 0] S[0, n] + Gamma[m, 1] S[1, n] > 0.9`` (about 0.3 % of them at a = 0.1;
    the realised fraction is reported as ``summary["pi_truncated_fraction"]``).
``"balding_nichols"`` (K = ``n_populations``)
    Ancestral frequency ``p_m ~ Uniform(0.1, 0.9)``; population frequencies
    ``Gamma[m, k] ~ Beta(p_m (1 - F) / F, (1 - p_m) (1 - F) / F)`` with ``F = fst``; every
    sample belongs to one population drawn uniformly, ``S[:, n]`` is its one-hot membership.
``"psd"`` (Pritchard-Stephens-Donnelly admixture, K = ``n_populations``)
    ``Gamma[m, k] ~ 0.9 * Uniform(0, 1)``; ``S[:, n] ~ Dirichlet(alpha, ..., alpha)``
    (admixture proportions; small ``alpha`` means nearly unadmixed samples).

Trait model
-----------
As in Sec. 3.1: the samples are clustered by k-means (K = 3, seeded, k-means++ starts) on
the columns of ``S`` (spatial: the two coordinates); clusters are numbered 1, 2, 3 in
decreasing lexicographic order of their centroids and ``lambda_n`` = the cluster number of
sample n. ``tau_k^2 ~ InverseGamma(3, 1)`` per cluster, ``sigma_n^2 = tau^2_{cluster(n)}`` and
``eps_n ~ N(0, sigma_n^2)``. ``n_causal`` SNPs are chosen uniformly at random. The linear
predictor is::

    eta_n = b0 + g_n + lambda_n + eps_n,     g_n = genetic value (below)

binary: ``y_n ~ Bernoulli(sigmoid(eta_n))``; quantitative: ``y_n = eta_n`` (with b0 = 0).

Centring (explicit): by default nothing is centred -- ``b0 = 0``, ``lambda`` takes the values
1, 2, 3 and the dosages enter uncentred, exactly as the paper writes the model. The case
fraction then depends strongly on the seed (about 0.4 to 0.97). ``case_fraction=t`` instead
solves (bisection on the monotone map) for the intercept ``b0`` such that the *expected* case
fraction ``mean_n sigmoid(eta_n)`` equals ``t``, given the drawn ``g``, ``lambda`` and ``eps``;
the realised fraction then differs from ``t`` by binomial noise only. The realised case
fraction is always reported (``summary["case_fraction"]``).

Genetic value ``g``:

* additive (``epistatic=False``): ``g_n = sum_c beta_c x[n, c]``, ``beta_c ~ N(0, effect_sd^2)``
  (the paper: ``effect_sd = 1``).
* ``epistatic="and"`` (or ``True``): the causal SNPs form ``n_causal / 2`` random pairs
  ``(a, b)`` with one effect ``beta_p ~ N(0, effect_sd^2)`` each;
  ``g_n = sum_p beta_p * 1[x_na >= 1] * 1[x_nb >= 1]`` -- an effect only when both SNPs carry
  A1. A per-SNP test still sees a (weakened) marginal effect.
* ``epistatic="product"``: same pairs, ``g_n = sum_p beta_p * z_na * z_nb`` with
  ``z_nc = x_nc - 2 pi[c, n]``, the dosage centred at its expectation given the sample's
  ancestry. Because ``E[z_nc | S] = 0`` and the two SNPs are independent given ``S``,
  ``E[g_n | x_na, S] = 0``: the SNP has no marginal effect on the linear predictor (exactly
  zero in expectation, for quantitative traits on ``y`` itself once ``lambda`` is
  accounted for), while the interaction ``x_a x_b`` is clear. For binary traits the logistic
  link leaves a second-order marginal effect (of order ``beta_p^2 sigmoid''``).

Streaming and reproducibility
-----------------------------
Genotypes are drawn and written in blocks of ``block_size`` SNPs; only one block
(n_samples x block_size) plus the causal columns is in memory, so 100k x 100k never holds
the full matrix. Each ingredient (variant table, Gamma and S, genotypes, causal SNPs and
effects, k-means, trait noise) has its own stream spawned from ``numpy.random.SeedSequence(seed)``,
and the genotype stream is consumed SNP by SNP, so the same seed gives byte-identical data
files whatever ``block_size`` is (sim.json records it), and the genotypes do not depend on the trait options.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._util import atomic_path, progress_bar
from .io.writer import PlinkWriter

SCENARIOS = ("spatial", "balding_nichols", "psd")
TRAITS = ("binary", "quantitative")
EPISTATIC_MODES = ("and", "product")
ALLELES = np.array(list("ACGT"))

#: Target bytes of the per-block working arrays (uniform draws, frequencies, dosages).
DEFAULT_BLOCK_BYTES = 64 * 2**20
#: Mean gap between neighbouring SNP positions (bp) within a chromosome.
MEAN_SNP_GAP_BP = 1000
#: Number of spawned random streams; their order is part of the file format, never reorder.
_STREAMS = ("variants", "structure", "genotypes", "causal", "kmeans", "noise")


@dataclass
class Simulation:
    """What :func:`hao` wrote and the truth behind it.

    Attributes
    ----------
    prefix : Path
        The fileset prefix (``prefix.bed`` etc.).
    paths : dict
        ``bed, bim, fam, truth, pop, pheno, json`` -> Path.
    truth : DataFrame
        One row per causal SNP, sorted by variant index: ``snp, chrom, pos, a1, a2,
        variant_index, beta, pair, expected_a1_freq``.
    samples : DataFrame
        One row per sample in .fam order: ``fid, iid, population, cluster, lambda, sigma2,
        genetic, S1..SK, trait`` (trait: 1/2 for binary, float for quantitative).
    gamma : ndarray
        float64 (n_snps, K): the per-population A1 frequencies (``pi = gamma @ S``).
    summary : dict
        Parameters and realised statistics: ``case_fraction`` (realised, binary only),
        ``target_case_fraction``, ``expected_case_fraction``, ``intercept``, ``tau2``, ...
    """

    prefix: Path
    paths: dict
    truth: pd.DataFrame
    samples: pd.DataFrame
    gamma: np.ndarray = field(repr=False)
    summary: dict

    @property
    def S(self) -> np.ndarray:
        """float64 (K, n_samples) structure matrix (as in ``pi = gamma @ S``)."""
        cols = [c for c in self.samples.columns if c.startswith("S") and c[1:].isdigit()]
        return self.samples[cols].to_numpy(dtype=np.float64).T

    def pi(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """A1 frequencies ``pi`` (truncated as simulated), float32 (stop - start, n_samples)."""
        bounds = tuple(self.summary["pi_bounds"])
        return allele_frequencies(self.gamma[start:stop], self.S, bounds)[0]

    def expected_a1_freq(self, sample_mask: np.ndarray | None = None, block: int = 1024) -> np.ndarray:
        """Expected A1 frequency per SNP, ``mean_n pi[m, n]`` over the (masked) samples; (n_snps,) float64.

        Computed in SNP blocks (memory O(n_samples x block)).
        """
        mask = slice(None) if sample_mask is None else np.asarray(sample_mask, dtype=bool)
        out = np.empty(len(self.gamma))
        for start in range(0, len(self.gamma), block):
            out[start:start + block] = self.pi(start, start + block)[:, mask].mean(axis=1, dtype=np.float64)
        return out


# ----------------------------------------------------------------------------- kernels


def spatial_structure(n_samples: int, n_snps: int, a: float, rng: np.random.Generator):
    """Spatial scenario: ``Gamma`` (n_snps, 3) and ``S`` (3, n_samples), float64."""
    gamma = np.empty((n_snps, 3))
    gamma[:, :2] = rng.uniform(0.0, 0.5, size=(n_snps, 2))
    gamma[:, 2] = 0.05
    S = np.ones((3, n_samples))
    S[:2] = rng.beta(a, a, size=(2, n_samples))
    return gamma, S


def balding_nichols_structure(n_samples: int, n_snps: int, fst: float, k: int, rng: np.random.Generator):
    """Balding-Nichols: ``Gamma`` (n_snps, k) population frequencies, ``S`` (k, n) one-hot."""
    p = rng.uniform(0.1, 0.9, size=n_snps)
    c = (1.0 - fst) / fst
    gamma = rng.beta((p * c)[:, None] * np.ones(k), ((1.0 - p) * c)[:, None] * np.ones(k))
    pop = rng.integers(0, k, size=n_samples)
    S = np.zeros((k, n_samples))
    S[pop, np.arange(n_samples)] = 1.0
    return gamma, S


def psd_structure(n_samples: int, n_snps: int, alpha: float, k: int, rng: np.random.Generator):
    """PSD admixture: ``Gamma`` (n_snps, k) ~ 0.9 U(0,1), ``S`` (k, n) Dirichlet(alpha) columns."""
    gamma = 0.9 * rng.uniform(0.0, 1.0, size=(n_snps, k))
    S = rng.dirichlet(np.full(k, alpha), size=n_samples).T
    return gamma, S


#: Bounds to which each scenario truncates pi (see the module docstring).
PI_BOUNDS = {"spatial": (0.05, 0.95), "balding_nichols": (0.0, 1.0), "psd": (0.0, 1.0)}


def allele_frequencies(gamma_block: np.ndarray, S: np.ndarray, bounds=(0.0, 1.0)):
    """``pi = gamma_block @ S`` truncated to ``bounds``: float32 (m, n), and the number truncated.

    Computed in float32 (it is compared with float32 uniforms) and summed term by term in a
    fixed order rather than by BLAS, whose kernel (and rounding) may change with the block
    shape: the files must not depend on ``block_size``.
    """
    g = np.asarray(gamma_block, dtype=np.float32)
    S = np.asarray(S, dtype=np.float32)
    pi = g[:, 0, None] * S[0][None, :]
    for k in range(1, S.shape[0]):
        pi += g[:, k, None] * S[k][None, :]
    lo, hi = np.float32(bounds[0]), np.float32(bounds[1])
    n_out = int(np.count_nonzero((pi < lo) | (pi > hi)))
    np.clip(pi, lo, hi, out=pi)
    return pi, n_out


def draw_genotypes(pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A1 dosages int8 (m, n) with ``x ~ Binomial(2, pi)``, ``pi`` float32 (m, n).

    Inverse CDF with one uniform per genotype: ``x = [u >= (1 - pi)^2] + [u >= 1 - pi^2]``
    (P(x = 0) = (1 - pi)^2, P(x <= 1) = 1 - pi^2). The uniforms are drawn with shape (m, n),
    SNP-major, so consecutive blocks consume the stream exactly as one big block would.
    """
    u = rng.random(pi.shape, dtype=np.float32)
    q = np.float32(1.0) - pi
    x = (u >= q * q).astype(np.int8)
    x += u >= np.float32(1.0) - pi * pi
    return x


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 10, max_iter: int = 300):
    """Seeded k-means (k-means++ starts, Lloyd iterations), best of ``n_init`` by inertia.

    ``points`` float (n, d). Returns ``labels`` int (n,) in 0..k-1 and ``centroids`` (k, d),
    with clusters numbered in decreasing lexicographic order of their centroids (so the
    numbering does not depend on which start won). An empty cluster keeps its centroid.
    """
    X = np.asarray(points, dtype=np.float64)
    n = X.shape[0]
    best = None
    for _ in range(n_init):
        c = np.empty((k, X.shape[1]))
        c[0] = X[rng.integers(n)]
        d2 = ((X - c[0]) ** 2).sum(1)
        for j in range(1, k):
            tot = d2.sum()
            idx = rng.choice(n, p=d2 / tot) if tot > 0 else rng.integers(n)
            c[j] = X[idx]
            d2 = np.minimum(d2, ((X - c[j]) ** 2).sum(1))
        labels = None
        for _ in range(max_iter):
            dist = ((X[:, None, :] - c[None, :, :]) ** 2).sum(2)
            new = dist.argmin(1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = labels == j
                if members.any():
                    c[j] = X[members].mean(0)
        inertia = ((X - c[labels]) ** 2).sum()
        if best is None or inertia < best[0] - 1e-12 * max(1.0, best[0]):
            best = (inertia, labels.copy(), c.copy())
    _, labels, c = best
    order = sorted(range(k), key=lambda j: tuple(-c[j]))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return remap[labels], c[order]


def genetic_value(x_causal: np.ndarray, pi_causal: np.ndarray, beta: np.ndarray, pairs: np.ndarray | None,
                  mode: str | None) -> np.ndarray:
    """Genetic value ``g`` (n,) from causal dosages ``x_causal`` (n, c) and frequencies (n, c).

    ``beta``: (c,) additive effects, or (c/2,) pair effects with ``pairs`` (c/2, 2) column
    indices into ``x_causal``; ``mode`` None (additive), ``"and"`` or ``"product"``.
    """
    x = x_causal.astype(np.float64)
    if mode is None:
        return x @ beta if x.shape[1] else np.zeros(x.shape[0])
    g = np.zeros(x.shape[0])
    for (i, j), b in zip(pairs, beta):
        if mode == "and":
            g += b * ((x[:, i] >= 1) & (x[:, j] >= 1))
        else:
            g += b * (x[:, i] - 2.0 * pi_causal[:, i]) * (x[:, j] - 2.0 * pi_causal[:, j])
    return g


def solve_intercept(eta: np.ndarray, target: float, tol: float = 1e-12) -> float:
    """Intercept ``b0`` with ``mean(sigmoid(eta + b0)) == target`` (bisection; monotone in b0)."""
    from scipy.special import expit

    lo, hi = -float(eta.max()) - 50.0, -float(eta.min()) + 50.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if expit(eta + mid).mean() < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    return 0.5 * (lo + hi)


def variant_table(n_snps: int, n_chrom: int, rng: np.random.Generator) -> pd.DataFrame:
    """``chrom, snp, cm, pos, a1, a2``: SNPs spread evenly over chromosomes 1..n_chrom,
    positions strictly increasing within a chromosome, random A/C/G/T alleles with a1 != a2."""
    n_chrom = max(1, min(n_chrom, n_snps))
    chrom = 1 + (np.arange(n_snps) * n_chrom) // n_snps
    gaps = rng.integers(1, 2 * MEAN_SNP_GAP_BP, size=n_snps)
    pos = np.empty(n_snps, dtype=np.int64)
    for c in range(1, n_chrom + 1):
        sel = chrom == c
        pos[sel] = np.cumsum(gaps[sel])
    a1 = rng.integers(0, 4, size=n_snps)
    a2 = (a1 + rng.integers(1, 4, size=n_snps)) % 4
    return pd.DataFrame({
        "chrom": chrom.astype(str), "snp": [f"snp{j}" for j in range(n_snps)], "cm": 0.0,
        "pos": pos, "a1": ALLELES[a1], "a2": ALLELES[a2],
    })


# ----------------------------------------------------------------------------- public


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def hao(n_samples: int, n_snps: int, a: float = 0.1, scenario: str = "spatial", trait: str = "binary",
        n_causal: int = 10, seed: int = 0, *, out, case_fraction: float | None = None,
        epistatic: bool | str = False, effect_sd: float = 1.0, fst: float = 0.1, alpha: float = 0.1,
        n_populations: int = 3, n_chrom: int = 10, block_size: int | None = None,
        progress: bool | None = None) -> Simulation:
    """Simulate a structured cohort and a trait; write PLINK files and truth tables.

    See the module docstring for the exact model (and its centring choice).

    Parameters
    ----------
    n_samples, n_snps
        Cohort size (samples ``ind0..``, FID = IID) and number of SNPs (``snp0..``).
    a
        Beta(a, a) parameter of the spatial scenario.
    scenario
        ``"spatial"``, ``"balding_nichols"`` (uses ``fst``, ``n_populations``) or ``"psd"``
        (uses ``alpha``, ``n_populations``).
    trait
        ``"binary"`` (written 1 = control, 2 = case) or ``"quantitative"``.
    n_causal
        Number of causal SNPs (even when ``epistatic``).
    seed
        Seed of every random choice; same seed -> identical data files (.bed, .bim, .fam,
        .pheno, .truth.tsv, .pop.tsv) for any ``block_size`` (sim.json records it).
    out
        Output prefix; writes ``out.bed/.bim/.fam/.truth.tsv/.pop.tsv/.pheno/.sim.json``.
    case_fraction
        Binary traits only: target expected case fraction, reached by an intercept; ``None``
        (default) = the paper's literal, uncentred model.
    epistatic
        ``False`` (additive), ``True``/``"and"`` or ``"product"`` (see module docstring).
    effect_sd
        Standard deviation of the causal effects (per SNP, or per pair when epistatic).
    n_chrom
        SNPs are spread evenly over chromosomes 1..n_chrom.
    block_size
        SNPs per generated block; default keeps the working arrays near 64 MiB.
    progress
        Progress bar over blocks (None: only on a terminal).

    Returns
    -------
    :class:`Simulation` (paths, truth table, per-sample table, Gamma, summary).
    """
    n_samples, n_snps, n_causal = int(n_samples), int(n_snps), int(n_causal)
    _check(n_samples >= 2, f"n_samples must be >= 2, got {n_samples}")
    _check(n_snps >= 1, f"n_snps must be >= 1, got {n_snps}")
    _check(scenario in SCENARIOS, f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    _check(trait in TRAITS, f"trait must be one of {TRAITS}, got {trait!r}")
    _check(0 <= n_causal <= n_snps, f"n_causal must be in 0..n_snps={n_snps}, got {n_causal}")
    mode = ("and" if epistatic else None) if isinstance(epistatic, bool) or epistatic is None else epistatic
    _check(mode is None or mode in EPISTATIC_MODES,
           f"epistatic must be False, True, 'and' or 'product', got {epistatic!r}")
    _check(mode is None or n_causal % 2 == 0, f"an epistatic trait needs an even n_causal, got {n_causal}")
    _check(case_fraction is None or trait == "binary", "case_fraction applies to binary traits only")
    _check(case_fraction is None or 0.0 < case_fraction < 1.0,
           f"case_fraction must be in (0, 1), got {case_fraction}")
    _check(a > 0, f"a must be > 0, got {a}")
    _check(0.0 < fst < 1.0, f"fst must be in (0, 1), got {fst}")
    _check(alpha > 0, f"alpha must be > 0, got {alpha}")
    _check(int(n_populations) >= 1, f"n_populations must be >= 1, got {n_populations}")
    # one PSD population gives every sample the same structure coordinates: k-means would
    # split them on rounding noise and shift some samples' trait by a cluster effect
    _check(scenario != "psd" or int(n_populations) >= 2, "the psd scenario needs n_populations >= 2")
    _check(isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0,
           f"seed must be a non-negative integer (it is recorded in sim.json), got {seed!r}")
    _check(effect_sd >= 0, f"effect_sd must be >= 0, got {effect_sd}")
    _check(int(n_chrom) >= 1, f"n_chrom must be >= 1, got {n_chrom}")
    if block_size is None:
        # per SNP and sample: 4 bytes of uniforms, 4 of pi, 8 of temporaries, 1 dosage, ~8 in
        # the encoder's temporaries
        block_size = max(1, DEFAULT_BLOCK_BYTES // (n_samples * 25))
    block_size = int(block_size)
    _check(block_size >= 1, f"block_size must be >= 1, got {block_size}")

    prefix = Path(os.fspath(out))
    rng = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(_STREAMS)))))

    variants = variant_table(n_snps, int(n_chrom), rng["variants"])
    if scenario == "spatial":
        gamma, S = spatial_structure(n_samples, n_snps, a, rng["structure"])
        population = None
        cluster_points = S[:2].T
    elif scenario == "balding_nichols":
        gamma, S = balding_nichols_structure(n_samples, n_snps, fst, int(n_populations), rng["structure"])
        population = S.argmax(0) + 1
        cluster_points = S.T
    else:
        gamma, S = psd_structure(n_samples, n_snps, alpha, int(n_populations), rng["structure"])
        population = S.argmax(0) + 1
        cluster_points = S.T

    # causal SNPs: drawn order defines the pairs (consecutive draws), stored sorted
    causal = rng["causal"].choice(n_snps, size=n_causal, replace=False) if n_causal else np.zeros(0, np.int64)
    n_effects = n_causal // 2 if mode else n_causal
    effects = rng["causal"].normal(0.0, effect_sd, size=n_effects)
    order = np.argsort(causal, kind="stable")
    causal_sorted = causal[order]
    slot = np.empty(n_causal, dtype=np.int64)
    slot[order] = np.arange(n_causal)  # column of each drawn SNP in the sorted causal matrix
    pairs = slot.reshape(-1, 2) if mode else None

    labels, _ = kmeans(cluster_points, 3, rng["kmeans"])
    cluster = labels + 1
    lam = cluster.astype(np.float64)
    if population is None:
        population = cluster
    tau2 = 1.0 / rng["noise"].gamma(3.0, 1.0, size=3)
    sigma2 = tau2[labels]
    eps = rng["noise"].normal(0.0, np.sqrt(sigma2))

    samples = pd.DataFrame({"fid": [f"ind{i}" for i in range(n_samples)]})
    samples["iid"] = samples["fid"]
    samples["father"], samples["mother"], samples["sex"] = "0", "0", 0

    paths = {ext: Path(f"{prefix}.{ext}") for ext in ("bed", "bim", "fam")}
    paths.update(truth=Path(f"{prefix}.truth.tsv"), pop=Path(f"{prefix}.pop.tsv"),
                 pheno=Path(f"{prefix}.pheno"), json=Path(f"{prefix}.sim.json"))

    x_causal = np.zeros((n_samples, n_causal), dtype=np.int8)
    pi_causal = np.zeros((n_samples, n_causal), dtype=np.float64)
    starts = range(0, n_snps, block_size)
    n_truncated = 0
    S32 = S.astype(np.float32)  # cast once, not per block
    with PlinkWriter(prefix, samples, variants) as writer:
        for start in progress_bar(starts, total=len(starts), desc="simulate", progress=progress):
            stop = min(start + block_size, n_snps)
            pi, n_out = allele_frequencies(gamma[start:stop], S32, PI_BOUNDS[scenario])
            n_truncated += n_out
            x = draw_genotypes(pi, rng["genotypes"])
            hit = np.flatnonzero((causal_sorted >= start) & (causal_sorted < stop))
            if hit.size:
                x_causal[:, hit] = x[causal_sorted[hit] - start].T
                pi_causal[:, hit] = pi[causal_sorted[hit] - start].T
            writer.write(x.T)  # (n_samples, m) view; the encoder transposes back, no copy
            del pi, x

        # ---- trait (needs only the causal columns kept above)
        beta_drawn = effects if mode else effects[order]  # additive: per sorted causal SNP
        g = genetic_value(x_causal, pi_causal, beta_drawn, pairs, mode)
        eta = g + lam + eps
        intercept = 0.0
        summary = {
            "scenario": scenario, "n_samples": n_samples, "n_snps": n_snps, "trait": trait,
            "n_causal": n_causal, "epistatic": mode or False, "effect_sd": effect_sd, "seed": seed,
            "a": a if scenario == "spatial" else None,
            "fst": fst if scenario == "balding_nichols" else None,
            "alpha": alpha if scenario == "psd" else None,
            "n_populations": 3 if scenario == "spatial" else int(n_populations),
            "block_size": block_size, "tau2": tau2.tolist(), "pi_bounds": list(PI_BOUNDS[scenario]),
            "pi_truncated_fraction": n_truncated / (n_samples * n_snps),
            "cluster_sizes": np.bincount(labels, minlength=3).tolist(),
            "centring": "none (literal model)" if case_fraction is None else "intercept solved for target case fraction",
        }
        if trait == "binary":
            from scipy.special import expit

            if case_fraction is not None:
                intercept = solve_intercept(eta, float(case_fraction))
            prob = expit(eta + intercept)
            y = (rng["noise"].random(n_samples) < prob).astype(np.float64)
            trait_values = y + 1.0  # plink: 1 control, 2 case
            summary.update(case_fraction=float(y.mean()), target_case_fraction=case_fraction,
                           expected_case_fraction=float(prob.mean()), n_cases=int(y.sum()))
        else:
            trait_values = eta
            summary.update(trait_mean=float(eta.mean()), trait_var=float(eta.var()),
                           genetic_var=float(g.var()))
        summary["intercept"] = intercept

        # ---- tables; written before the fileset is renamed into place, so a complete .bed
        # always comes with its truth
        samples["trait"] = trait_values
        writer.samples = samples
        pop = pd.DataFrame({"FID": samples["fid"], "IID": samples["iid"], "population": population,
                            "cluster": cluster, "lambda": lam, "sigma2": sigma2, "genetic": g})
        for k in range(S.shape[0]):
            pop[f"S{k + 1}"] = S[k]
        pair_id = np.full(n_causal, -1, dtype=np.int64)
        beta_col = np.zeros(n_causal)
        if mode:
            for p, (i, j) in enumerate(pairs):
                pair_id[[i, j]] = p
                beta_col[[i, j]] = effects[p]
        else:
            beta_col = effects[order]
        truth = variants.iloc[causal_sorted][["snp", "chrom", "pos", "a1", "a2"]].reset_index(drop=True)
        truth["variant_index"] = causal_sorted
        truth["beta"] = beta_col
        truth["pair"] = pair_id
        truth["expected_a1_freq"] = pi_causal.mean(axis=0)

        pheno = pd.DataFrame({"FID": samples["fid"], "IID": samples["iid"]})
        pheno["trait"] = trait_values.astype(np.int64) if trait == "binary" else trait_values
        for key, df in (("truth", truth), ("pop", pop), ("pheno", pheno)):
            with atomic_path(paths[key]) as tmp:
                df.to_csv(tmp, sep="\t", index=False)  # floats at full (round-trip) precision
        with atomic_path(paths["json"]) as tmp:
            tmp.write_text(json.dumps(summary, indent=1, default=float) + "\n")

    table = pop.rename(columns={"FID": "fid", "IID": "iid"})
    table["trait"] = trait_values
    return Simulation(prefix=prefix, paths=paths, truth=truth, samples=table, gamma=gamma, summary=summary)
