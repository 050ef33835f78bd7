"""Pairwise interaction scan: the product of every SNP pair tested against the phenotype.

Why it exists: a pair of SNPs whose effect is the product of their centred dosages has no
marginal effect, so neither a per-SNP test nor a network whose L1-pruned first layer learns
from per-SNP gradients finds it (simulations/RESULTS.md: both at chance). A test of every
pair's product does, at a cost of ``2 n m^2`` flops for ``m`` SNPs and ``n`` samples. The
scan ranks pairs; :mod:`simulations.recall_study` uses its top pairs as candidate inputs of
the deep model, so that the network (and DeepLIFT) can weigh the pairs against each other.

Statistic, per pair ``a < b``, on the samples used (``samples``, minus any with a missing
phenotype or covariate; ``n`` of them)::

    Q      orthonormal basis of [1, covariates]                      (n, k)
    r      = y - Q Q'y                 phenotype residual (binary 0/1: linear-probability)
    x_j    A1 dosage of SNP j, missing -> mean observed dosage (qc.impute_mean)
    z_j    = (x_j - Q Q'x_j) / sd      dosage residual, scaled to unit mean square
    w_ab   = z_a * z_b                 (elementwise over samples)
    T_ab   = sum_n r_n w_ab,n / sqrt(sum_n r_n^2 w_ab,n^2)
    p_ab   = 2 * Phi(-|T_ab|)          (normal approximation; also as -log10 p)

``T`` is the score statistic for adding ``w_ab`` to the regression of ``y`` on the covariates
(up to the projection of ``w_ab`` on them), with the heteroscedasticity-robust (sandwich)
variance, ~N(0, 1) when ``y`` does not depend on the pair given the covariates. Why robust:
the residual variance is rarely the same for every sample -- p(1 - p) for a binary trait,
noise that differs between populations, additive effects of other SNPs left in ``r`` -- and
a pooled ``s2 sum w^2`` then mis-states the variance of ``sum r w`` (on simulated cohorts: sd
of T 0.71 for a binary trait with 97% cases, 1.06-1.24 for quantitative ones, against 0.98-1.03
with the sandwich). The denominator is separable, ``(z_a^2 r^2)' z_b^2``, so it costs one
matrix product per block pair, as the pooled one did. Why the *genotypes* are residualized on the covariates as well: with
population structure both dosages track ancestry, so the product of globally centred
dosages tracks it too and every pair looks associated. On a simulated 10,000 x 10,000
cohort (spatial structure, 5,000 samples, 10 PCs) the largest |T| among pairs without an
effect was 22 with the phenotype alone residualized, and 6.3 with both (about what 5e7
independent N(0, 1) draws give).

SNPs in LD with each other share a product with their squares, so on real data a SNP with a
non-additive marginal effect makes its LD neighbours' pairs look interacting: pass
``min_distance_bp`` to skip pairs on the same chromosome closer than that.

Work is in blocks of ``block_variants`` SNPs, as torch matrix products on ``device`` (CUDA
when present). Memory: the residuals of two blocks (``n x block_variants`` float32 each, on
the device) and their ``block_variants^2`` products, plus float64 working copies of one
block while its residuals are formed (about ``24 n block_variants`` bytes). The products are
float32: ``T`` agrees with a float64 computation to about 1e-5 relative (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._util import progress_bar
from .assoc import _covariate_matrix, _phenotype_vector
from .errors import InputError
from .qc import impute_mean

#: SNPs per block of the scan: two (n, block) float32 blocks and (block, block) products.
DEFAULT_BLOCK_VARIANTS = 2048


@dataclass
class PairScan:
    """Result of :func:`pair_scan`.

    pairs : DataFrame, the ``top`` pairs by |stat| (largest first; ties by index): ``snp_a,
        snp_b, index_a, index_b`` (variant positions in the genotypes, a < b), ``chrom_a, pos_a,
        chrom_b, pos_b, stat, p, log10_p`` (``-log10 p``, finite where ``p`` underflows).
    snps : DataFrame, one row per variant: ``snp, max_abs_stat`` (largest |stat| over the SNP's
        pairs; NaN for a SNP without variance), ``partner`` (the variant position of that
        pair's other SNP; -1 if none) and ``partner_snp`` (its ID; "" if none).
    n_samples : samples used; n_covariates : columns of [1, covariates]; n_pairs : pairs tested.
    """

    pairs: pd.DataFrame
    snps: pd.DataFrame
    n_samples: int
    n_covariates: int
    n_pairs: int



def _block_residuals(genotypes, start, stop, rows, Q):
    """Scaled dosage residuals z (n, stop - start) float32 of variants start:stop on ``rows``,
    and a mask of variants with variance (the others' z is 0)."""
    x = genotypes.read_dosage(start, stop)[rows].astype(np.float64)
    observed = ~np.isnan(x)
    if not observed.any(0).all():
        bad = genotypes.variants["snp"].iloc[start + int(np.flatnonzero(~observed.any(0))[0])]
        raise InputError(f"variant {bad!r} has no observed call among the samples scanned; remove it "
                         "first (gwaslift.qc)", genotypes.prefix + ".bed" if genotypes.prefix else None)
    u = impute_mean(x)
    u -= Q @ (Q.T @ u)
    ms = np.einsum("ij,ij->j", u, u) / u.shape[0]
    ok = ms > 1e-10  # a monomorphic SNP leaves only rounding (dosages are O(1))
    z = np.where(ok, u / np.sqrt(np.where(ok, ms, 1.0)), 0.0)
    return z.astype(np.float32), ok


def pair_scan(genotypes, phenotype, covariates=None, *, samples=None, top: int = 1000,
              min_distance_bp: int | None = None, block_variants: int = DEFAULT_BLOCK_VARIANTS,
              device="auto", progress=None) -> PairScan:
    """Test the product of every pair of variants against ``phenotype`` (module docstring).

    Parameters
    ----------
    genotypes : Genotypes
        The variants to pair (all ``m (m - 1) / 2`` pairs are tested; subset it first to scan a
        candidate set). A1 = .bim column 5.
    phenotype : Series or array (n_samples,)
        Aligned with ``genotypes.samples`` (or indexed by IID); NaN samples are left out.
        Binary 0/1 (or 1/2) traits are used as numbers: a linear-probability screen.
    covariates : DataFrame or array (n_samples, k), optional
        E.g. PCs; both the phenotype and every dosage are residualized on them. Samples with
        a missing covariate are left out.
    samples : int positions or boolean mask, optional
        The samples to use (e.g. a training split), default all.
    top : int
        Number of pairs returned in ``pairs``.
    min_distance_bp : int, optional
        Skip pairs on the same chromosome whose positions differ by less than this (LD).
    block_variants, device, progress
        Block size (memory: module docstring), torch device ("auto": CUDA when present),
        progress bar over block pairs.
    """
    import torch
    from scipy.stats import norm

    from .deep.train import resolve_device

    n_all = genotypes.n_samples
    y = _phenotype_vector(phenotype, genotypes.samples, n_all)
    C, _ = _covariate_matrix(covariates, genotypes.samples, n_all)
    use = np.zeros(n_all, bool)
    use[np.arange(n_all) if samples is None else _sample_positions(samples, n_all)] = True
    use &= ~np.isnan(y) & ~np.isnan(C).any(1)
    rows = np.flatnonzero(use)
    design = np.c_[np.ones(len(rows)), C[rows]]
    Q, R = np.linalg.qr(design)
    k = int((np.abs(np.diag(R)) > 1e-10 * max(1.0, np.abs(np.diag(R)).max())).sum())
    if len(rows) <= k + 2:
        raise InputError(f"pair_scan needs more samples than covariates + 2; {len(rows)} usable samples "
                         f"for {k} covariate columns")
    Q = Q[:, :k] if k == design.shape[1] else np.linalg.svd(design, full_matrices=False)[0][:, :k]
    r = y[rows] - Q @ (Q.T @ y[rows])
    if not float(r @ r) > 1e-12 * float(y[rows] @ y[rows]):  # constant, or explained by the covariates
        raise InputError("the phenotype has no variance left after the covariates")
    if int(top) < 1 or int(block_variants) < 1:
        raise InputError("top and block_variants must be >= 1")

    dev = resolve_device(device)  # "auto": CUDA when present, else CPU
    m = genotypes.n_variants
    chrom = genotypes.variants["chrom"].astype(str).to_numpy()
    pos = genotypes.variants["pos"].to_numpy(np.int64)
    rt = torch.as_tensor(r.astype(np.float32), device=dev)
    r2t = rt * rt
    acc = _Accumulator(m, int(top))
    blocks = [(s, min(s + int(block_variants), m)) for s in range(0, m, int(block_variants))]
    block_pairs = [(i, j) for i in range(len(blocks)) for j in range(i, len(blocks))]
    current = None  # (block index, z, ok, z*r transposed, z^2 r^2 transposed) of the outer block
    for i, j in progress_bar(block_pairs, total=len(block_pairs), desc="pair scan: block pairs",
                             progress=progress):
        (s0, e0), (s1, e1) = blocks[i], blocks[j]
        if current is None or current[0] != i:
            zi, oki = _block_residuals(genotypes, s0, e0, rows, Q)
            zi = torch.as_tensor(zi, device=dev)
            current = (i, zi, oki, (zi * rt[:, None]).T.contiguous(), (zi * zi * r2t[:, None]).T.contiguous())
        _, zi, oki, zi_r, zi_sq_r2 = current
        if j == i:
            zj, okj = zi, oki
        else:
            zj, okj = _block_residuals(genotypes, s1, e1, rows, Q)
            zj = torch.as_tensor(zj, device=dev)
        den = (zi_sq_r2 @ (zj * zj)).double()  # sum_n r_n^2 w_n^2: the sandwich variance
        stat = ((zi_r @ zj).double() / torch.sqrt(den)).cpu().numpy()
        ia = np.arange(s0, e0)[:, None]
        ib = np.arange(s1, e1)[None, :]
        valid = oki[:, None] & okj[None, :] & (den.cpu().numpy() > 0) & (ia < ib)
        if min_distance_bp:
            valid &= ~((chrom[ia] == chrom[ib]) & (np.abs(pos[ia] - pos[ib]) < int(min_distance_bp)))
        acc.add(stat, valid, ia[:, 0], ib[0])
    a, b, t = acc.a, acc.b, acc.stat
    snp = genotypes.variants["snp"].to_numpy()
    pairs = pd.DataFrame({
        "snp_a": snp[a], "snp_b": snp[b], "index_a": a, "index_b": b,
        "chrom_a": chrom[a], "pos_a": pos[a], "chrom_b": chrom[b], "pos_b": pos[b],
        "stat": t, "p": 2 * norm.sf(np.abs(t)),
        "log10_p": -(np.log(2) + norm.logsf(np.abs(t))) / np.log(10),  # p underflows beyond |T| ~ 38
    })
    partner_snp = np.where(acc.partner >= 0, snp[np.maximum(acc.partner, 0)], "")
    snps = pd.DataFrame({"snp": snp, "max_abs_stat": acc.best, "partner": acc.partner, "partner_snp": partner_snp})
    return PairScan(pairs=pairs, snps=snps, n_samples=len(rows), n_covariates=k, n_pairs=acc.n_pairs)


class _Accumulator:
    """The running result of the scan over block pairs: the ``top`` pairs by |stat| (ties
    by (a, b), so the result does not depend on the block size), each SNP's largest |stat|
    and its partner, and the number of pairs tested."""

    def __init__(self, m: int, top: int):
        self.top = top
        self.stat = np.empty(0)
        self.a = np.empty(0, np.int64)
        self.b = np.empty(0, np.int64)
        self.best = np.full(m, np.nan)
        self.partner = np.full(m, -1, np.int64)
        self.n_pairs = 0

    def add(self, stat, valid, ia, ib):
        """One block of statistics ``stat`` (len(ia), len(ib)) for variants ``ia`` x ``ib``;
        ``valid`` marks the pairs tested."""
        self.n_pairs += int(valid.sum())
        a = np.where(valid, np.abs(stat), -np.inf)
        for snps, axis, other in ((ia, 1, ib), (ib, 0, ia)):
            arg = a.argmax(axis)
            val = np.take_along_axis(a, np.expand_dims(arg, axis), axis).reshape(-1)
            better = np.isfinite(val) & ~(val <= self.best[snps])  # NaN best: first value wins
            self.best[snps[better]] = val[better]
            self.partner[snps[better]] = other[arg[better]]
        flat = a.reshape(-1)
        k = min(self.top, int(np.isfinite(flat).sum()))
        if not k:
            return
        sel = np.argpartition(-flat, k - 1)[:k]
        rr, cc = np.unravel_index(sel, a.shape)
        self.stat = np.r_[self.stat, stat[rr, cc]]
        self.a = np.r_[self.a, ia[rr]]
        self.b = np.r_[self.b, ib[cc]]
        order = np.lexsort((self.b, self.a, -np.abs(self.stat)))[:self.top]
        self.stat, self.a, self.b = self.stat[order], self.a[order], self.b[order]


def _sample_positions(sel, n: int) -> np.ndarray:
    from .io.plink import Genotypes

    return Genotypes._positions(sel, n, "samples")
