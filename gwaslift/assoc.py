"""Per-SNP association tests with covariates: linear (quantitative) and logistic (binary).

The classic half of the comparison, built to equal ``plink2 --glm`` (v2.00a3.5) and to
run over variant chunks of a lazy :class:`~gwaslift.io.plink.Genotypes`.

Model, for each variant *j* separately::

    y ~ intercept + covariates + beta_j * g_j

``g_j`` is the dosage of A1 (.bim column 5, the counted allele; plink2 ``--glm`` with
``omit-ref`` reports the same A1 and the same sign). The intercept is always added.

Rules (documented here once):

* **Samples.** A sample whose phenotype or any covariate is missing (NaN) is dropped from
  every test, as plink2 does.
* **Missing genotypes** (``missing="drop"``, the default) are dropped *per variant*, exactly
  like plink2: each test uses only the samples observed at that variant, and the covariate
  fit is redone on that subset. This is done without a per-SNP loop: with ``Q`` an
  orthonormal basis of ``[1, covariates]`` and ``m_j`` the observed mask, the restricted
  Gram matrix is ``Q' diag(m_j) Q = I - sum over missing samples of q_i q_i'``, computed for
  a block of variants by one matrix product with the missingness indicators.
  ``missing="mean"`` instead fills a missing dosage with the variant's observed mean
  (REGENIE / Hail style); then ``n`` counts all samples. ``n`` is reported per variant
  either way, and ``a1_freq`` is always the A1 frequency among the *observed* samples used.
* **Linear**: closed-form OLS t-test, ``df = n - (covariates + 2)``; identical to plink2
  ``--glm`` linear.
* **Logistic**: maximum likelihood by Newton-Raphson, batched over a block of variants,
  started from the covariate-only (null) fit; Wald ``z = beta / se``, two-sided normal p.
  **Firth fallback**, plink2's default (``firth="fallback"``): before the fit, plink2's
  separation check (the cases or the controls carry no A1 allele, or no other allele, on
  the variant's observed samples: a rare variant seen only in cases, say); such a variant,
  and one whose Newton fit does not converge in ``max_iter`` steps or whose information
  matrix is singular, is refitted with Firth's penalized likelihood (finite whatever the
  data), Wald test from ``(X'WX)^-1`` at the Firth estimate, and flagged ``firth = True``.
  Our Firth fit runs until its score is below 1e-9 standard errors; plink2's stops
  earlier, so the two agree to ~1e-3 SE, not to its printed digits. One difference by
  design: where plink2 stops Newton at its iteration limit and prints the unfinished iterate with errcode
  ``UNFINISHED`` (quasi-separation, e.g. all carriers of one genotype are cases), we report
  the Firth fit. ``firth="no"`` is plink2's ``no-firth``: NaN with errcode
  ``SEPARATION`` or ``LOGISTIC_CONVERGE_FAIL``.
* **plink2's predictor limits** (``vif=50``, ``max_corr=0.999``, plink2's ``--vif`` and
  ``--max-corr`` defaults; plink2 ``CheckMaxCorrAndVif`` in ``plink2_glm_shared.cc``): the
  predictors are the genotype and the covariates, not the intercept, over the variant's
  observed samples (every sample used, founders or not, as plink2 --glm). A variant is NA
  when two predictors correlate with ``|r| > max_corr`` (``CORR_TOO_HIGH``), when the
  predictors are collinear there (``VIF_INFINITE``), or when a predictor's variance
  inflation factor (diagonal of the inverse correlation matrix) exceeds ``vif``
  (``VIF_TOO_HIGH``), tested in that order. ``VIF_INFINITE`` is also what a variant gets
  when its missing calls leave a covariate constant or covariates collinear (e.g. it failed
  in a whole genotyping batch and the batch dummy is a covariate): tested by a rank test
  relative to all samples, independent of the covariates' units and of the chunking.
  Covariates that break the limits on their own raise InputError (plink2 stops).
  A categorical covariate given to :func:`linear_gwas` loses its most common level, as in
  plink2: the genotype's VIF does not depend on that choice, the dummies' VIFs and
  correlations do (a SNP that failed in the most common batch is CORR_TOO_HIGH, two
  remaining dummies summing to 1, in plink2 and here).
* **Degenerate variants never crash**; their ``beta, se, stat, p`` are NaN and ``errcode``
  says why, with plink2's names: ``SAMPLE_CT<=PREDICTOR_CT`` (no residual degree of
  freedom), ``CONST_OMITTED_ALLELE`` (monomorphic among the samples used), the three codes
  above, ``RANK_DEFICIENT`` (the regression's own guard: the genotype's residual variance
  lost to rounding; not expected after the VIF test), ``SEPARATION`` and
  ``LOGISTIC_CONVERGE_FAIL`` (``firth="no"``) and ``FIRTH_CONVERGE_FAIL``.
  One code is gwaslift's own: ``ALL_MISSING`` (``n = 0``; plink2 reports that as
  ``SAMPLE_CT<=PREDICTOR_CT``). ``errcode`` is ``""`` for a normal result (plink2 writes
  ``.``).
* **Sex chromosomes and MT as plink2 --glm** (``x_sex=True``, the default, for a
  :class:`Genotypes`): on chrX sex (.fam column 5) is added as a covariate when both sexes
  are among the samples used (samples of unknown sex then leave the chrX tests; a male's
  hemizygous call counts 2, the .bed dosage, as plink2 counts it there); chrY is tested on
  males only; on chrY and MT alleles count 0/1 (haploid), so beta and SE are per haploid
  allele. Each class is its own regression over the same chunks. ``x_sex=False`` is
  plink2's ``no-x-sex``. Measured equal to plink2 v2.00a3.5 (OBS_CT, and beta to its
  printed digits), heterozygous calls on chrY / MT included (half an allele in both).
* **Bad input** raises :class:`~gwaslift.InputError`: a constant phenotype, a binary
  phenotype with one class, covariates collinear with the intercept or with each other
  (named), non-numeric covariates, misaligned sample IDs.
* p-values below the double range survive in ``log10_p = -log10 p``, computed in log
  space (``scipy.stats.t.logsf`` / ``norm.logsf``, computed with ``scipy.special``).

Chunks: the per-chunk kernel :func:`chunk_stats` is a pure function of the packed .bed
rows of one chunk and a small :class:`Design`; :func:`linear_gwas` maps it over the chunks
of ``genotypes.packed`` with ``dask.delayed``, so it runs unchanged on the local threaded
scheduler or on a ``dask.distributed`` cluster. Memory is bounded by the chunk size.
Results do not depend on the chunk size or the scheduler: bit for bit for linear models
on the numba kernel (each variant's sums are its own loop), and beyond floating-point
summation order elsewhere (measured differences ~1e-13 relative; BLAS sums in an order
that depends on the block shape). On the local threaded scheduler each chunk's BLAS calls
run single-threaded (the scheduler already uses every core).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._util import (LazyKernel, blas_threads, dask_compute, dask_scheduler, distinct_if_few, progress_bar,
                    progress_enabled)
from .errors import InputError
from .io.packed import BYTE_TO_CODES, CODE_TO_DOSAGE, unpack_codes
from .io.plink import default_variant_chunk

#: Columns of the sumstats table, in order.
SUMSTATS_COLUMNS = ["chrom", "pos", "snp", "a1", "a2", "a1_freq", "n", "beta", "se", "stat",
                    "p", "log10_p", "errcode", "firth"]

#: errcode strings (index = code stored in the kernel output); plink2's names (its
#: ``kGlmErrcodeStrs``) except ``ALL_MISSING``, which plink2 reports as
#: ``SAMPLE_CT<=PREDICTOR_CT`` (see the module docstring).
ERRCODES = ["", "ALL_MISSING", "CONST_OMITTED_ALLELE", "RANK_DEFICIENT", "SAMPLE_CT<=PREDICTOR_CT",
            "VIF_INFINITE", "LOGISTIC_CONVERGE_FAIL", "VIF_TOO_HIGH", "CORR_TOO_HIGH", "SEPARATION",
            "FIRTH_CONVERGE_FAIL"]
(_OK, _ALL_MISSING, _CONST, _RANK_DEF, _NO_DF, _VIF_INF, _NOCONV, _VIF_HIGH,
 _CORR_HIGH, _SEPARATION, _FIRTH_FAIL) = range(11)

#: ``firth`` choices of :func:`linear_gwas` (plink2's ``--glm firth-fallback`` / ``no-firth`` /
#: ``firth``).
FIRTH_MODES = ("fallback", "no", "always")

#: plink2 ``--glm`` defaults: ``--vif 50`` and ``--max-corr 0.999``.
VIF_DEFAULT = 50.0
MAX_CORR_DEFAULT = 0.999

#: Relative rank tolerance of the covariate system on a variant's observed samples:
#: singular (VIF_INFINITE) when the largest diagonal element of ``(Q' diag(m_j) Q)^-1``
#: exceeds its inverse, and a covariate counts as constant there when its observed
#: variance is below this fraction of its variance over all samples. ``Q`` is orthonormal
#: on all samples, so the matrix's eigenvalues lie in [0, 1] whatever the covariates'
#: units, and the downdate ``I - sum q_i q_i'`` that forms it is exact to a few 1e-16: an
#: exactly singular system shows ~1e-16, far below; a legitimate one this close (a
#: covariate direction with 1e-10 of its sum of squares on the observed samples) would
#: lose 6 digits to rounding.
_COVAR_RANK_TOL = 1e-10

#: A predictor VIF at or above this counts as infinite (VIF_INFINITE, plink2's singular
#: correlation matrix): the regression would lose half the double digits to cancellation.
_VIF_INFINITE = 1e8

#: Kernel output columns (float64): n, a1 count (sum of dosages), beta, se, stat, err code,
#: 1 where the result is a Firth fit (else 0).
_NSTAT = 7

#: Most variants per inner block: large enough to amortize numpy call overhead, small
#: enough that the (block x samples) float64 work arrays stay near the cache (measured
#: on 10,000 samples: 32 beats 8, 16, 64, 128 and 512).
SUB_BLOCK = 32


#: Most variants per inner block of a logistic fit on the numba kernels: with no (block x
#: samples) temporaries but the weights, larger blocks pay (the covariate block's GEMM
#: reuses each sample's products across more variants; measured on 10,000 samples, 64
#: beat 32 by 8% and tied 128).
LOGISTIC_SUB_BLOCK = 64


def _sub_block(design: "Design") -> int:
    """Variants per inner block for ``design``: SUB_BLOCK (LOGISTIC_SUB_BLOCK for a logistic
    model on the numba kernels), fewer for huge n (float64 work arrays <= ~4 MB, ~16 MB)."""
    n = max(design.n, 1)
    if design.model == "logistic" and LOGISTIC_KERNEL.get() is not None:
        return int(max(4, min(LOGISTIC_SUB_BLOCK, 2**21 // n)))
    return int(max(4, min(SUB_BLOCK, 2**19 // n)))

# byte -> the four samples' A1 dosages (missing -> 0) as float64, and missing flags as
# float64; viewed as one 32-byte item so that ``np.take`` decodes a byte per gather.
_BYTE_DOSAGE_F64 = np.nan_to_num(CODE_TO_DOSAGE.astype(np.float64)[BYTE_TO_CODES], nan=0.0)
_BYTE_DOSAGE_ITEM = np.ascontiguousarray(_BYTE_DOSAGE_F64).view("V32").ravel()
_BYTE_MISS_F64 = (BYTE_TO_CODES == 1).astype(np.float64)
_BYTE_MISS_ITEM = np.ascontiguousarray(_BYTE_MISS_F64).view("V32").ravel()
_BYTE_NMISS = (BYTE_TO_CODES == 1).sum(axis=1).astype(np.uint8)
_CODE_DOSAGE_F64 = np.nan_to_num(CODE_TO_DOSAGE.astype(np.float64), nan=0.0)


# --------------------------------------------------------------------------------------
# design: what every chunk needs, computed once
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    """The per-analysis constants a chunk kernel needs (small: O(n x c^2) floats).

    ``n`` samples used, ``c`` columns of ``Q`` (intercept + covariates, orthonormal).
    Arrays are over the *used* samples in ``sample_idx`` order.
    """

    model: str                 # "linear" or "logistic"
    missing: str               # "drop" or "mean"
    y: np.ndarray              # (n,) phenotype; 0/1 for logistic; linear only: (n, k) for
                               # k phenotypes tested in one pass (same samples)
    Q: np.ndarray              # (n, c) orthonormal basis of [1, covariates]
    tri: tuple                 # upper-triangle index pairs of a c x c matrix
    tri_products: TriProducts  # q_a q_b of each sample (the Gram operand; see its class)
    yy: float | np.ndarray     # sum of squared residual phenotype (linear; (k,) for k > 1)
    # logistic null fit (covariates only)
    a0: np.ndarray | None = None     # (c,) coefficients on Q
    w0: np.ndarray | None = None     # (n,) p0 (1 - p0)
    QwQ0: np.ndarray | None = None   # (c, c) Q' W0 Q
    Qr0: np.ndarray | None = None    # (c,) Q' (y - p0), the null score (~0)
    Qt: np.ndarray | None = None     # (c, n) Q transposed, C-contiguous (the numba kernels')
    S: np.ndarray | None = None      # (2c + 3, n) rows [Q', r0, 1, (Q * w0)', y]: the sums
                                     # of each genotype a logistic fit starts from
    offset_miss: np.ndarray | None = None  # (n,) eta offset forcing p = y where missing
    sample_idx: np.ndarray | None = None   # file sample positions (None: all, in order)
    n_file: int = 0                  # samples in the .bed rows
    # plink2's predictor checks (VIF / pairwise correlation), see _predictor_checks
    R1: np.ndarray | None = None     # (k, k) [1, C] = Q R, R1 = R[1:, 1:]
    R1_inv: np.ndarray | None = None  # (k, k) R1^-1
    vif: float = VIF_DEFAULT         # VIF_TOO_HIGH above this (inf: off)
    max_corr: float = MAX_CORR_DEFAULT  # CORR_TOO_HIGH above this |r| (inf: off)
    firth: str = "fallback"          # logistic: "fallback" (refit with Firth), "no", "always"
    # linear: [Q, y_resid (k columns)] transposed, zero rows up to a multiple of 4 (the
    # numba kernel's operand, _linear_packed, and the numpy path's), and each file sample's
    # design row (-1 unused; empty: all used in file order; None: a sample used twice,
    # which the kernel cannot map)
    Vt4: np.ndarray | None = None    # (p4, n)
    file_row: np.ndarray | None = None  # (n_file,) int64

    @property
    def n(self) -> int:
        return self.Q.shape[0]

    @property
    def c(self) -> int:
        return self.Q.shape[1]

    @property
    def k(self) -> int:
        """Phenotypes tested in one pass (the columns of a 2-D ``y``; linear only)."""
        return 1 if self.y.ndim == 1 else self.y.shape[1]

    @property
    def n_corr(self) -> int:
        """Columns of a missing call's correction row (:func:`_correction_rows`)."""
        T = len(self.tri[0])
        return T + self.c * self.k + self.k if self.model == "linear" else 2 * T + self.c + 1

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("gwaslift.Design", self.model, self.missing, tokenize(self.y), tokenize(self.Q),
                tokenize(self.sample_idx), self.n_file, self.vif, self.max_corr, self.firth)


def _tri_products(Q: np.ndarray, tri) -> np.ndarray:
    i, j = tri
    return Q[:, i] * Q[:, j]


#: Largest products matrix (n x T doubles) that :class:`TriProducts` keeps; beyond it the
#: products are formed per chunk of samples at each use, :data:`TRI_CHUNK_BYTES` at a
#: time. 500,000 samples with 42 covariates (T = 903) would need 3.6 GB.
TRI_STORE_BYTES = 256 * 2**20
TRI_CHUNK_BYTES = 8 * 2**20


def _sample_chunk(row_doubles: int) -> int:
    """Samples per chunk of rows of ``row_doubles`` float64 each (:data:`TRI_CHUNK_BYTES`)."""
    return max(64, TRI_CHUNK_BYTES // (8 * max(row_doubles, 1)))


class TriProducts:
    """The products ``q_a q_b`` (a <= b, pairs ``tri``) of each sample's row of the
    covariate basis ``Q`` (n, c): the operand ``K`` (n, T) of the weighted Gram matrices
    ``Q' diag(w) Q`` (``w @ K``, unpacked). Kept as one matrix while it is small (the GEMM
    then streams it), formed chunk by chunk otherwise, so that memory stays O(n c) for
    any number of covariates."""

    def __init__(self, Q: np.ndarray, tri, K: np.ndarray | None = None):
        self.Q, self.tri = Q, tri
        self.n, self.T = Q.shape[0], len(tri[0])
        if K is None and self.n * self.T * 8 <= TRI_STORE_BYTES:
            K = _tri_products(Q, tri)
        self.K = K

    def chunks(self):
        """``(start, stop, K[start:stop])`` over the samples."""
        if self.K is not None:
            yield 0, self.n, self.K
            return
        step = _sample_chunk(self.T)
        for s in range(0, self.n, step):
            e = min(s + step, self.n)
            yield s, e, _tri_products(self.Q[s:e], self.tri)

    def gram(self, W: np.ndarray) -> np.ndarray:
        """``W @ K`` (A, T) for weights ``W`` (A, n)."""
        out = np.zeros((len(W), self.T))
        for s, e, K in self.chunks():
            out += (K.T @ W[:, s:e].T).T  # this order: ~15% faster than W @ K
        return out

    def expand(self, V: np.ndarray) -> np.ndarray:
        """``V @ K.T`` (A, n) for triangle coefficients ``V`` (A, T)."""
        out = np.empty((len(V), self.n))
        for s, e, K in self.chunks():
            out[:, s:e] = V @ K.T
        return out


def _unpack_sym(vals: np.ndarray, c: int, tri) -> np.ndarray:
    """(B, T) upper-triangle values -> (B, c, c) symmetric matrices."""
    out = np.empty(vals.shape[:-1] + (c, c), dtype=np.float64)
    i, j = tri
    out[..., i, j] = vals
    out[..., j, i] = vals
    return out


def _orthonormal_basis(C: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(Q (n, c+1), R (c+1, c+1)) with [1, C] = Q R, Q orthonormal, Q[:, 0] constant;
    InputError naming collinear covariates."""
    from scipy.linalg import qr

    n = C.shape[0]
    # row-major, as C comes (a plain copy) and as Q is used; the Householder path below
    # makes its own column-major copy
    X = np.empty((n, 1 + (C.shape[1] if C.size else 0)))
    X[:, 0] = 1.0
    if C.size:
        X[:, 1:] = C
    labels = ["intercept", *names]
    # scale-free: unit-norm columns (the rank test and the conditioning bound)
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))  # no (n, p) temporary
    zero = norms == 0
    if zero.any():
        bad = [labels[k] for k in np.flatnonzero(zero)]
        raise InputError(f"covariate(s) {bad} are zero for every sample used")
    X /= norms
    fast = _cholesky_qr2(X, rank_tol=max(X.shape) * np.finfo(float).eps * 1e3)
    if fast is not None:
        Q, Rs = fast
        return Q, Rs * norms  # [1, C] = X diag(norms)
    # column-major, as LAPACK takes it: both factorizations below skip a transposed copy
    # (at 500,000 x 42 each took ~2x longer from row-major input; same results)
    Xs = np.asfortranarray(X)
    del X
    # remove the intercept first so that a constant covariate shows up as dependent on it
    R, piv = qr(Xs, mode="r", pivoting=True, overwrite_a=False)  # R only (its diagonal): no Q
    d = np.abs(np.diag(R))
    tol = max(Xs.shape) * np.finfo(float).eps * 1e3 * d[0]
    low = np.flatnonzero(d <= tol)
    dependent = []
    if len(low):
        # each dependent column with the columns it is a combination of (which one the
        # pivoting calls dependent is a matter of rounding: name the whole set)
        r = int(low[0])
        for k in low:
            x = np.linalg.solve(R[:r, :r], R[:r, k]) if r else np.zeros(0)
            big = np.abs(x) > 1e-8 * max(np.abs(x).max(initial=0.0), 1e-300)
            dependent += [labels[piv[k]], *(labels[piv[i]] for i in np.flatnonzero(big))]
    if dependent:
        # say which covariates are involved: the dependent ones and the intercept if a
        # covariate is constant among the samples used
        consts = [labels[k] for k in range(1, Xs.shape[1]) if np.ptp(Xs[:, k]) == 0]
        what = ("constant among the samples used (collinear with the intercept): " + ", ".join(consts)
                if consts else "linearly dependent: " + ", ".join(sorted(set(dependent), key=labels.index)))
        raise InputError(
            f"covariates are rank deficient: {what}. Drop or merge the redundant covariate(s) "
            "(e.g. one level of a one-hot categorical)."
        )
    Q, R = np.linalg.qr(Xs)
    return np.ascontiguousarray(Q), R * norms


#: largest condition number of the unit-norm covariate columns for which the basis comes
#: from Cholesky QR (twice): its orthogonality error after one pass is ~eps cond^2, which the
#: second pass takes to ~eps
CHOLESKY_QR_MAX_COND = 1e5


def _cholesky_qr2(Xs: np.ndarray, rank_tol: float):
    """(Q, R) with Xs = Q R, Q (n, p) C-contiguous with orthonormal columns, R upper
    triangular with a positive diagonal (so Q[:, 0] is Xs[:, 0] scaled: constant for the
    intercept), by Cholesky QR twice: two Gram products and two triangular solves, BLAS-3,
    instead of Householder QR's column sweeps (500,000 x 43: ~0.4 s against ~3 s for the
    pivoted rank test and the Householder Q). None when Xs is too ill-conditioned for it
    (condition number above :data:`CHOLESKY_QR_MAX_COND`, or such that a pivoted QR could
    call a column dependent at relative tolerance ``rank_tol``): the caller then takes the
    Householder path, with its rank test and error messages. Under the bound the rank test
    cannot fail: the last pivoted diagonal is at least the smallest singular value, which is
    at least the largest / cond."""
    from scipy.linalg import solve_triangular

    Q, R = Xs, None
    for _ in range(2):
        try:
            Rk = np.linalg.cholesky(Q.T @ Q).T
        except np.linalg.LinAlgError:
            return None
        if R is None:
            cond = np.linalg.cond(Rk)
            if not (cond <= CHOLESKY_QR_MAX_COND and cond * rank_tol < 1e-2):
                return None
        Q = Q @ solve_triangular(Rk, np.eye(len(Rk)))  # (n, p) C-contiguous
        R = Rk if R is None else Rk @ R
    return Q, R


def _corr_from_cov(S: np.ndarray) -> np.ndarray:
    """Covariance matrices (..., p, p) -> correlation matrices (unit diagonal)."""
    d = 1.0 / np.sqrt(np.einsum("...ii->...i", S))
    return S * d[..., :, None] * d[..., None, :]


def _check_covariates(R1: np.ndarray, names: list[str], vif: float, max_corr: float) -> None:
    """plink2's covariate-only check before any variant: InputError when two covariates
    correlate above ``max_corr`` (CORR_TOO_HIGH) or a covariate's VIF exceeds ``vif``
    (VIF_TOO_HIGH), naming the first offender in plink2's order; plink2 stops there too
    (``GlmFillAndTestCovars``). ``R1' R1`` is the centered Gram matrix of the covariates
    over the samples used."""
    k = R1.shape[0]
    if k < 2:
        return  # one covariate: no pair, VIF 1
    corr = _corr_from_cov(R1.T @ R1)
    # plink2 names the first offending pair / covariate in its loop order: rows i, j < i
    rows, cols = np.tril_indices(k, -1)
    high = np.flatnonzero(np.abs(corr[rows, cols]) > max_corr) if max_corr < 1 else []
    if len(high):
        i, j = int(cols[high[0]]), int(rows[high[0]])
        raise InputError(
            f"covariates {names[i]!r} and {names[j]!r} are too highly correlated "
            f"(r = {corr[i, j]:.6f}, max_corr = {max_corr}; plink2 --glm stops with CORR_TOO_HIGH). "
            "Remove the redundant covariate, or raise max_corr.")
    vifs = np.diag(np.linalg.inv(corr))
    if vifs.max() > vif:
        i = int(np.flatnonzero(vifs > vif)[0])
        raise InputError(
            f"covariate {names[i]!r} has variance inflation factor {vifs[i]:.4g} > vif = {vif} "
            "(collinear with the other covariates; plink2 --glm stops with VIF_TOO_HIGH). "
            "Remove a redundant covariate, or raise vif.")


def _null_logistic(Q: np.ndarray, y: np.ndarray, max_iter: int = 50) -> np.ndarray:
    """Covariate-only logistic fit on Q; returns the coefficients a0 (c,)."""
    a = np.zeros(Q.shape[1])
    ybar = float(np.mean(y))
    if 0 < ybar < 1:
        # start at the intercept-only fit (Q[:, 0] is constant): a Newton step or two fewer
        a[0] = np.log(ybar / (1 - ybar)) / Q[0, 0]
    for _ in range(max_iter):
        p = _expit(Q @ a)
        w = p * (1 - p)
        H = (Q * w[:, None]).T @ Q
        try:
            step = np.linalg.solve(H, Q.T @ (y - p))
        except np.linalg.LinAlgError:  # every weight ~0: fitted probabilities 0 or 1
            step = np.full_like(a, np.nan)
        if not np.all(np.isfinite(step)):
            break
        a += step
        if np.max(np.abs(step)) <= 1e-12 * max(1.0, np.max(np.abs(a))):
            break
    else:
        step = np.full_like(a, np.nan)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(step))):
        raise InputError(
            "the covariate-only logistic model does not converge: the covariates separate "
            f"cases from controls (e.g. a covariate level with only cases; {int(np.sum(y))} cases, "
            f"{len(y) - int(np.sum(y))} controls, {Q.shape[1]} design columns)")
    return a


def make_design(y: np.ndarray, C: np.ndarray, names: list[str], model: str, missing: str = "drop",
                sample_idx: np.ndarray | None = None, n_file: int = 0,
                vif: float = VIF_DEFAULT, max_corr: float = MAX_CORR_DEFAULT,
                firth: str = "fallback") -> Design:
    """Build the :class:`Design` for phenotype ``y`` (n,) and covariates ``C`` (n, k).

    Rows are the samples used (no NaN). ``model`` is "linear" or "logistic" (``y`` 0/1).
    A linear model also takes ``y`` (n, k): k phenotypes on the same samples, tested in
    one pass over the genotypes.
    ``vif`` / ``max_corr``: plink2's ``--vif`` / ``--max-corr`` limits; the covariates
    alone must pass them (InputError otherwise), and each variant is checked against them.
    ``firth``: what a logistic fit does on separation or non-convergence (:data:`FIRTH_MODES`).
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 and not (y.ndim == 2 and model == "linear"):
        raise ValueError(f"make_design: y must be (n,), or (n, k) for a linear model; got {y.shape}")
    C = np.asarray(C, dtype=np.float64).reshape(len(y), -1)
    Q, R = _orthonormal_basis(C, names)
    R1 = np.ascontiguousarray(R[1:, 1:])
    _check_covariates(R1, names, vif, max_corr)
    n, c = Q.shape
    tri = np.triu_indices(c)
    kw = {}
    if model == "linear":
        Y = y.reshape(n, -1)
        k = Y.shape[1]
        Y_r = Y - Q @ (Q.T @ Y)
        yy = np.array([Y_r[:, j] @ Y_r[:, j] for j in range(k)])
        yy = float(yy[0]) if y.ndim == 1 else yy
        # [Q, Y_r] transposed, the only copy kept (an (n, c + k + 1) V beside it was
        # 212 MB at 500,000 samples, 42 covariates and 10 phenotypes)
        Vt4 = np.zeros((-(-(c + k) // 4) * 4, n))
        Vt4[:c] = Q.T
        Vt4[c:c + k] = Y_r.T
        kw = dict(Vt4=Vt4, file_row=_file_rows(sample_idx, n_file))
    else:
        a0 = _null_logistic(Q, y)
        p0 = _expit(Q @ a0)
        w0 = p0 * (1 - p0)
        r0 = y - p0
        yy = 0.0
        # S's rows filled in place (stacking columns and transposing made two (n, 2c+3) copies)
        S = np.empty((2 * c + 3, n))
        S[:c] = Q.T
        S[c] = r0
        S[c + 1] = 1.0
        Qw0t = S[c + 2:2 * c + 2]
        np.multiply(S[:c], w0, out=Qw0t)
        S[-1] = y
        # Qt: S's first c rows (a C-contiguous view, not a second copy)
        kw = dict(a0=a0, w0=w0, QwQ0=Qw0t @ Q, Qr0=Q.T @ r0, Qt=S[:c], S=S,
                  offset_miss=np.where(y > 0.5, 1e4, -1e4))
    return Design(model=model, missing=missing, y=y, Q=Q, tri=tri,
                  tri_products=TriProducts(Q, tri), yy=yy,
                  sample_idx=None if sample_idx is None else np.asarray(sample_idx, np.int64),
                  n_file=int(n_file), R1=R1, R1_inv=np.linalg.inv(R1), vif=float(vif),
                  max_corr=float(max_corr), firth=firth, **kw)


def _correction_rows(design: Design, s: int, e: int) -> np.ndarray:
    """(e - s, design.n_corr): what each sample s..e-1 takes away from a variant's sums
    when its call is missing. Linear: ``[q_a q_b (a <= b), q_a y_j (per phenotype j),
    y_j^2]`` (``y_j`` the residual phenotypes); logistic, at the null fit: ``[w0 q_a q_b,
    r0 q_a, 0, q_a q_b]`` (the unweighted products for plink2's unweighted predictor
    checks). Formed when needed, chunk by chunk: as one (n, n_corr) matrix it took n c^2
    doubles (3.6 GB at 500,000 samples and 42 covariates)."""
    Q = design.Q[s:e]
    K = _tri_products(Q, design.tri)
    if design.model == "linear":
        c, k = design.c, design.k
        Y_r = design.Vt4[c:c + k, s:e].T
        return np.column_stack([K, *(Q * Y_r[:, [j]] for j in range(k)), Y_r ** 2])
    w0, r0 = design.w0[s:e], design.S[design.c, s:e]
    return np.column_stack([K * w0[:, None], Q * r0[:, None], np.zeros(e - s), K])


def _missing_corrections(miss: np.ndarray, design: Design) -> np.ndarray:
    """(B, design.n_corr): the correction rows summed over each variant's missing calls
    (``miss`` (B, n) 1.0 at a missing call), the numpy paths' ``miss @ rows``, formed per
    chunk of samples (chunks without a missing call skipped)."""
    out = np.zeros((len(miss), design.n_corr))
    step = _sample_chunk(design.n_corr)
    for s in range(0, design.n, step):
        m = miss[:, s:s + step]
        if m.any():
            out += m @ _correction_rows(design, s, s + m.shape[1])
    return out


def _file_rows(sample_idx, n_file: int) -> np.ndarray | None:
    """Each file sample's position among the samples used (-1: unused); an empty array
    when all are used in file order; None when a file sample is used twice."""
    if sample_idx is None:
        return np.empty(0, np.int64)
    sample_idx = np.asarray(sample_idx, np.int64)
    rows = np.full(n_file, -1, np.int64)
    rows[sample_idx] = np.arange(len(sample_idx))
    return rows if (rows >= 0).sum() == len(sample_idx) else None


# --------------------------------------------------------------------------------------
# kernels: arrays in, arrays out
# --------------------------------------------------------------------------------------
def _expit(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)) in place-friendly form (overflow to inf gives exactly 0)."""
    with np.errstate(over="ignore"):
        e = np.exp(np.negative(x, out=out), out=out)
    e += 1.0
    return np.reciprocal(e, out=e)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _solve_batched(A: np.ndarray, rhs: np.ndarray):
    """Solve A x = rhs for a batch; rows whose A is singular get NaN and a False flag."""
    try:
        return np.linalg.solve(A, rhs), np.ones(len(A), bool)
    except np.linalg.LinAlgError:
        out = np.full(rhs.shape, np.nan)
        ok = np.zeros(len(A), bool)
        for k in range(len(A)):  # rare path: locate the singular systems one by one
            try:
                out[k] = np.linalg.solve(A[k], rhs[k])
                ok[k] = True
            except np.linalg.LinAlgError:
                pass
        return out, ok


def _predictor_checks(err, A, b, s1, sst, nobs, design: Design) -> None:
    """plink2's per-variant predictor checks (``CheckMaxCorrAndVif``), vectorised; sets
    ``err`` (B,) in place where it is still OK.

    ``A`` (B, c, c): ``Q' diag(m) Q`` over each variant's observed samples, or None when
    no call is missing (then ``A = I``); ``b`` (B, c): ``Q' g``; ``s1``, ``sst``, ``nobs``
    (B,): sum, centered sum of squares and count of the observed dosages.

    The predictors are the genotype and the covariates (not the intercept), over the
    variant's observed samples (all of them: plink2 --glm does not restrict to founders).
    In plink2's order, the first failure is reported:

    1. ``CORR_TOO_HIGH``: two predictors with ``|r| > max_corr``. A covariate constant on
       the observed samples has no correlation and is skipped here, as in plink2 (NaN).
    2. ``VIF_INFINITE``: the predictors are collinear on the observed samples (a covariate
       constant there, e.g. the variant failed in a whole genotyping batch and that batch's
       dummy is a covariate; or the genotype a combination of covariates). Tested on ``A``
       itself, whose eigenvalues lie in [0, 1] whatever the covariates' units: singular
       when ``max diag A^-1`` (between ``1 / lambda_min`` and ``c / lambda_min``) exceeds
       ``1 / _COVAR_RANK_TOL``; and then when a VIF reaches :data:`_VIF_INFINITE`.
    3. ``VIF_TOO_HIGH``: a VIF (diagonal of the inverse correlation matrix) above ``vif``.

    Computed in the orthonormal basis, without forming or inverting any correlation
    matrix: with ``[1, C] = Q R``, ``R1 = R[1:, 1:]``, ``W = R1^-1``, ``a = A[:, 0]`` and
    ``M = (A^-1)[1:, 1:]`` (the inverse of the covariates' centered Gram in Q coordinates),
    the covariates' centered covariance on the observed samples is
    ``S = R1' (A - a a' / a_0)[1:, 1:] R1``, its covariance with the genotype
    ``R1' h`` with ``h = (b - a s1 / (nobs Q_00))[1:]``, the genotype's residual sum of
    squares ``sgg = sst - h' M h``, and the VIFs are ``sst / sgg`` (genotype) and
    ``S_jj ((W M W')_jj + (W M h)_j^2 / sgg)`` (covariate j; block inverse). The covariates'
    means never enter (no cancellation for an age-like covariate), and the only LAPACK
    call is one batched ``c x c`` inverse for variants with missing calls.
    """
    c = b.shape[1]
    k = c - 1
    idx = np.flatnonzero(err == _OK)
    if len(idx) == 0 or (k == 0 and A is None):
        return  # genotype alone and nothing missing: nothing to check (as plink2)
    R1, W = design.R1, design.R1_inv
    s1, sst, nobs = s1[idx], sst[idx], nobs[idx]
    tol = _COVAR_RANK_TOL
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if A is None:
            h = b[idx, 1:]
            Sd = np.broadcast_to((R1 * R1).sum(axis=0), h.shape)
            Scc = None  # the covariates' own correlations were checked once, in make_design
            sgg = sst - _rowdot(h, h)
            WMh = h @ W.T
            WMWd = np.broadcast_to((W * W).sum(axis=1), h.shape)
            singular = np.zeros(len(idx), bool)
        else:
            Ai = A[idx]
            Ainv, ok = _solve_batched(Ai, np.broadcast_to(np.eye(c), Ai.shape))
            dA = np.einsum("bii->bi", Ainv)
            # a singular A that LAPACK does not flag inverts to entries ~ +-1/eps
            singular = ~ok | ~(dA.max(axis=1) < 1.0 / tol) | ~(dA.min(axis=1) > 0.5)
            if k == 0:
                err[idx[singular]] = _VIF_INF
                return
            a = Ai[:, :, 0]
            Ac = Ai[:, 1:, 1:] - a[:, 1:, None] * a[:, None, 1:] / a[:, :1, None]
            Scc = R1.T @ Ac @ R1
            Sd = np.einsum("bii->bi", Scc)
            h = b[idx, 1:] - a[:, 1:] * (s1 / (nobs * design.Q[0, 0]))[:, None]
            M = Ainv[:, 1:, 1:]
            Mh = M @ h[:, :, None]
            sgg = sst - (h[:, None, :] @ Mh)[:, 0, 0]
            WMh = (W @ Mh)[..., 0]
            WMWd = ((W @ M) * W).sum(axis=-1)  # diag(W M W'); einsum is 4x slower here
        # correlations; a covariate with no variance left (relative to its variance on
        # all samples: rounding) gives NaN, ignored by the max as plink2 ignores it
        live = Sd > tol * (R1 * R1).sum(axis=0)
        inv_sd = np.where(live, 1.0 / np.sqrt(np.where(live, Sd, 1.0)), np.nan)
        r = np.abs(h @ R1) * inv_sd / np.sqrt(sst)[:, None]
        rmax = np.fmax.reduce(r, axis=1)
        if Scc is not None and k > 1:
            rc = np.abs(Scc) * inv_sd[:, :, None] * inv_sd[:, None, :]
            rc[:, np.arange(k), np.arange(k)] = np.nan
            rmax = np.fmax(rmax, np.fmax.reduce(rc.reshape(len(idx), -1), axis=1))
        corr_high = (rmax > design.max_corr) & (design.max_corr < 1)
        vif_g = sst / sgg
        vif_c = Sd * (WMWd + WMh * WMh / sgg[:, None])
        vmax = np.fmax(vif_g, vif_c.max(axis=1))
        inf = (singular | ~live.all(axis=1) | ~(sgg > 0) | ~(vmax < _VIF_INFINITE)
               | ~(vif_c.min(axis=1) > 0.5))
    err[idx] = np.where(corr_high, _CORR_HIGH,
                        np.where(inf, _VIF_INF, np.where(vmax > design.vif, _VIF_HIGH, _OK)))


def _basic_checks(nobs, s1, s2, c):
    """errcode per variant from counts alone (before any fit)."""
    err = np.zeros(len(nobs), np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        sst = s2 - s1 * s1 / nobs
    scale = np.maximum(s2, 1.0)
    err[~(sst > 1e-12 * scale)] = _CONST
    err[nobs - c - 1 <= 0] = _NO_DF
    err[nobs == 0] = _ALL_MISSING
    return err, sst


def linear_kernel(D: np.ndarray, miss: np.ndarray | None, design: Design) -> np.ndarray:
    """Per-variant OLS t-tests for one decoded block (the numpy path; chunk_stats runs
    the same statistics from the numba kernel's sums where it can, :func:`_linear_packed`).

    Parameters
    ----------
    D : (B, n) float64 A1 dosages of the used samples, 0 where missing.
    miss : (B, n) float64 missing indicators (1 = missing), or None when nothing is missing.
    design : Design with model "linear".

    Variants failing plink2's predictor checks (:func:`_predictor_checks`) are NaN with
    their errcode before any fit.

    Returns
    -------
    (B, k * _NSTAT) float64 (k = ``design.k`` phenotypes, each's columns in turn): n, a1
    count, beta, se, t, errcode index, firth flag.
    """
    B, n = D.shape
    c, k = design.c, design.k
    G = D @ design.Vt4[:c + k].T
    nmiss = np.zeros(B) if miss is None else miss.sum(axis=1, dtype=np.float64)
    corr = _missing_corrections(miss, design) if miss is not None and nmiss.any() else None
    return _linear_stats(G[:, :c], G[:, c:c + k], D.sum(axis=1), _rowdot(D, D), n - nmiss, corr, design)


def _linear_stats(b, gy, s1, s2, nobs, corr, design: Design) -> np.ndarray:
    """The OLS t-tests of a block from its per-variant sums over the observed samples.

    ``b`` (B, c): ``Q' g``; ``gy`` (B, k): ``g' y_resid`` of each of the ``design.k``
    phenotypes; ``s1``, ``s2``, ``nobs`` (B,): ``sum g``, ``sum g^2`` and the number of
    observed calls; ``corr`` (B, T + c k + k): the missing samples' summed correction
    rows, or None when no call is missing. The genotype's own quantities (its residual sum
    of squares, the predictor checks) are computed once for all phenotypes.
    Returns (B, k * _NSTAT) float64 as :func:`linear_kernel`.
    """
    B, c = b.shape
    gy = gy.reshape(B, -1)
    k = gy.shape[1]
    err, sst = _basic_checks(nobs, s1, s2, c)
    T = len(design.tri[0])
    yy0 = np.atleast_1d(design.yy)
    if corr is not None:
        # Gram of Q, Q'y and y'y over the observed samples: full-sample values minus the
        # missing samples' contributions (float64: float32 here costs ~1e-6 in beta)
        A = np.eye(c) - _unpack_sym(corr[:, :T], c, design.tri)
        u = -corr[:, T:T + c * k].reshape(B, k, c).transpose(0, 2, 1)  # (B, c, k)
        yy = yy0[None, :] - corr[:, T + c * k:T + c * k + k]
        _predictor_checks(err, A, b, s1, sst, nobs, design)
        # a singular system would "solve" to rounding noise that depends on the block
        # (LAPACK need not raise): give failed variants I, their result is NaN anyway
        A = np.where((err != _OK)[:, None, None], np.eye(c), A)
        sol, ok = _solve_batched(A, np.concatenate([b[:, :, None], u], axis=-1))
        err[~ok & (err == _OK)] = _VIF_INF
        xb, xu = sol[..., 0], sol[..., 1:]
    else:
        # A = I: the solution is (b, 0) itself (what LAPACK returns for I, bit for bit)
        _predictor_checks(err, None, b, s1, sst, nobs, design)
        u = xu = np.zeros((B, c, k))
        xb = b
        yy = np.broadcast_to(yy0, (B, k))
    with np.errstate(invalid="ignore", divide="ignore"):
        sgg = s2 - np.einsum("bi,bi->b", b, xb)
        sgy = gy - np.einsum("bi,bik->bk", b, xu)
        syy = yy - np.einsum("bik,bik->bk", u, xu)
        # last guard, against rounding only (the predictor checks already stop a genotype
        # VIF of 1e8): the genotype's residual sum of squares lost to cancellation
        # (plink2: its regression matrix fails to invert, RANK_DEFICIENT)
        err[(err == _OK) & ~(sgg > 1e-8 * sst)] = _RANK_DEF
        beta = sgy / sgg[:, None]
        df = nobs - c - 1
        rss = np.maximum(syy - beta * sgy, 0.0)
        se = np.sqrt(rss / df[:, None] / sgg[:, None])
        stat = beta / se
    out = np.zeros((B, k, _NSTAT))
    out[:, :, 0] = nobs[:, None]
    out[:, :, 1] = s1[:, None]
    out[:, :, 2], out[:, :, 3], out[:, :, 4] = beta, se, stat
    out[:, :, 5] = err[:, None]
    out[err != _OK, :, 2:5] = np.nan
    return out.reshape(B, k * _NSTAT)


def logistic_kernel(D: np.ndarray, miss: np.ndarray | None, design: Design,
                    max_iter: int = 25, tol: float = 1e-10, sep: np.ndarray | None = None,
                    pending: list | None = None) -> np.ndarray:
    """Per-variant logistic regression (Wald test) for one block, Newton-Raphson batched.

    Parameters as in :func:`linear_kernel` (``design.model == "logistic"``, y 0/1).
    Every variant starts at the null fit (covariate coefficients ``a0``, beta 0); the first
    Newton step uses the null fit's weights, shared by all variants, so it needs only
    per-variant sums (:func:`_start_sums`); each later step one score and information
    per variant still fitting (:func:`_score_info`; both on numba kernels where they
    load, the numpy path otherwise) -- first with the null fit's covariate block Q'WQ
    (O(n c) a step; at most :data:`MAX_FIXED_BLOCK_STEPS`, each halving the last; with
    :data:`FIXED_BLOCK_MIN_COLUMNS` design columns or more), then exact. Converged when
    an exact step moves every coefficient by less than ``tol * max(1, |coefficient|)``;
    the standard error comes from the information matrix of that step. plink2's
    predictor checks (:func:`_predictor_checks`, unweighted, as plink2) come first, as in
    linear, after plink2's separation check (:func:`_separated_from_sums`).

    Separated variants, and fits that do not converge or whose information matrix is
    singular, are refitted together with Firth's penalized likelihood
    (:func:`_fit_pending`, :func:`gwaslift.firth.firth_logistic_batch`) when
    ``design.firth == "fallback"`` (plink2's default ``firth-fallback``); a Firth fit
    that fails is ``FIRTH_CONVERGE_FAIL``. With ``"no"`` (plink2 ``no-firth``) they are
    NaN, errcode ``SEPARATION`` or ``LOGISTIC_CONVERGE_FAIL``. With ``"always"`` (plink2 ``--glm firth``) every variant
    is a Firth fit. ``sep`` (B,) bool: the separation verdicts when the caller made them
    (mean imputation judges the observed calls, not the imputed dosages). ``pending``: a
    list to append the Firth refits to instead of fitting them here, as ``(rows, dosages,
    observed mask or None)``, so that the caller fits a whole chunk's in one batch
    (:func:`_fit_pending`; their rows of the result are filled there).

    Returns (B, 7) float64: n, a1 count, beta, se, z, errcode index, Firth flag.
    """
    B, n = D.shape
    c = design.c
    tri = design.tri
    T = len(tri[0])
    # G: [Q'g, g'r0, sum g, g' W0 Q, sum_case g]; corr: correction rows summed over missing calls
    G, s2, hgg0, corr, nmiss, y_miss = _start_sums(D, miss, design)
    s1 = G[:, c + 1]
    has_miss = corr is not None
    nobs = n - nmiss
    err, sst = _basic_checks(nobs, s1, s2, c)
    if design.firth == "always":
        sep = np.ones(B, bool)  # every variant takes the Firth path (plink2 --glm firth)
    elif sep is None:
        sep = _separated_from_sums(G[:, -1], s1, nobs, design.y.sum() - y_miss)
    sep &= err == _OK
    if design.firth == "no":
        err[sep] = _SEPARATION
    # plink2's predictor checks on the unweighted observed Gram (last T columns of corr)
    A_obs = np.eye(c) - _unpack_sym(corr[:, -T:], c, tri) if has_miss else None
    _predictor_checks(err, A_obs, G[:, :c], s1, sst, nobs, design)

    # ---- step 0 at the null fit: weights w0 shared by all variants
    U = np.empty((B, c + 1))
    H = np.empty((B, c + 1, c + 1))
    H[:, :c, :c] = design.QwQ0
    U[:, :c] = design.Qr0
    if has_miss:
        H[:, :c, :c] -= _unpack_sym(corr[:, :T], c, tri)
        U[:, :c] -= corr[:, T:T + c]
    U[:, c] = G[:, c]
    hab = G[:, c + 2:2 * c + 2]
    H[:, :c, c] = hab
    H[:, c, :c] = hab
    H[:, c, c] = hgg0
    theta = np.zeros((B, c + 1))
    theta[:, :c] = design.a0

    active = np.flatnonzero((err == _OK) & ~sep)
    converged = np.zeros(B, bool)
    inv_bb = np.full(B, np.nan)
    eye_last = np.zeros((1, c + 1))
    eye_last[0, c] = 1.0
    # Two phases per variant. First, steps whose covariate block Q' W Q is the null fit's
    # (exact at the start, where every variant's weights are the null's), with the score and
    # the genotype rows of the information exact at the current point: each costs O(n c)
    # instead of the block's O(n c^2), and they converge linearly, fast, because a variant
    # moves the weights little. Then exact Newton steps (the block formed at the current
    # point), until an exact step meets the tolerance: the convergence test and the standard
    # error are exact Newton's, as before; most variants need one exact step instead of 2-3.
    # A fixed-block step that fails to shrink the step by half goes back to where it
    # started and continues exactly (a variant that moves the weights a lot).
    use_fixed = MAX_FIXED_BLOCK_STEPS > 0 and c >= FIXED_BLOCK_MIN_COLUMNS
    H_cc0 = H[:, :c, :c].copy() if use_fixed else None
    fixed = np.zeros(B, bool)      # in the fixed-block phase
    fixed[active] = use_fixed
    last = np.full(B, np.inf)      # size of the previous step, for the halving test
    before = theta.copy()          # where the last fixed-block step started
    n_exact = np.zeros(B, np.int64)
    n_fixed = np.zeros(B, np.int64)
    Hk, Uk = H[active], U[active]
    first = True                   # step 0: exact at the null fit for every variant
    while len(active):
        fx = np.zeros(len(active), bool) if first else fixed[active]
        if not first:
            Uk, Hk = _score_info(D, miss if has_miss else None, theta, active, design, exact=~fx)
            if fx.any():
                Hk[fx, :c, :c] = H_cc0[active[fx]]
        rhs = np.stack([Uk, np.broadcast_to(eye_last, Uk.shape)], axis=-1)
        sol, ok = _solve_batched(Hk, rhs)
        step = sol[..., 0]
        fine = ok & np.all(np.isfinite(step), axis=1)
        size = np.max(np.abs(step), axis=1)
        small = fine & np.all(np.abs(step) <= tol * np.maximum(1.0, np.abs(theta[active])), axis=1)
        # fixed-block rows: a step that does not halve the last one (or fails) is not taken;
        # the variant restarts exactly from where that previous step started
        stall = fx & ~small & (~fine | ~(size <= 0.5 * last[active]))
        if stall.any():
            back = active[stall]
            theta[back] = before[back]
            fixed[back] = False
        take = fine & ~stall
        ex = ~fx
        prior = theta[active]
        theta[active[take]] += step[take]
        before[active[fx & take]] = prior[fx & take]
        before[active[ex & take]] = theta[active[ex & take]]
        last[active] = size
        inv_bb[active[ex]] = sol[ex, c, 1]
        n_exact[active[ex]] += 1
        n_fixed[active[fx]] += 1
        # a fixed-block step within tolerance hands over to exact steps, which decide
        # convergence; so does a long run of them (slow but steady contraction)
        fixed[active[fx & (small | (n_fixed[active] >= MAX_FIXED_BLOCK_STEPS))]] = False
        done = ex & small
        converged[active[done]] = True
        # singular information (separation) or a diverging fit: stop and report failure
        dead = ex & (~fine | (np.abs(theta[active, c]) > 1e3) | (n_exact[active] > max_iter))
        active = active[~done & ~dead]
        first = False
    err[(err == _OK) & ~converged & ~sep] = _NOCONV
    beta = theta[:, c].copy()
    with np.errstate(invalid="ignore"):
        se = np.sqrt(inv_bb)
    err[(err == _OK) & ~sep & ~(se > 0)] = _NOCONV
    firth = np.zeros(B)
    own = []  # this block's refits, when the caller does not collect them
    if design.firth != "no":
        refit = np.flatnonzero(((err == _OK) & sep) | (err == _NOCONV))
        if len(refit):
            (own if pending is None else pending).append(
                (refit, D[refit], None if not has_miss else 1.0 - miss[refit]))
            firth[refit] = 1.0
    with np.errstate(invalid="ignore"):
        stat = beta / se
    out = np.column_stack([nobs, s1, beta, se, stat, err.astype(np.float64), firth])
    out[err != _OK, 2:5] = np.nan
    if own:
        _fit_pending(out, own, design)
    return out


def _separated(D, miss, nobs, design: Design) -> np.ndarray:
    """:func:`_separated_from_sums` from the dosages ``D`` and missing flags ``miss``."""
    y = design.y
    n_case = np.full(len(D), y.sum()) if miss is None else y.sum() - miss @ y
    return _separated_from_sums(D @ y, D.sum(axis=1), nobs, n_case)


def _separated_from_sums(a1_case, s1, nobs, n_case) -> np.ndarray:
    """plink2's separation check before a logistic fit (B,) bool: among the observed
    samples, the cases or the controls carry no A1 allele, or no other allele (then the
    maximum-likelihood genotype coefficient is infinite). plink2 reports such a variant as
    ``SEPARATION`` under ``no-firth`` and fits it with Firth under ``firth-fallback``.

    ``a1_case``, ``s1``: the A1 counts of the observed cases and of all observed samples;
    ``nobs``, ``n_case``: the numbers of observed samples and cases (all (B,); the counts
    are sums of integers in float64, exact)."""
    a1_ctrl = s1 - a1_case
    n_ctrl = nobs - n_case
    return (a1_case == 0) | (a1_ctrl == 0) | (2 * n_case - a1_case == 0) | (2 * n_ctrl - a1_ctrl == 0)


def _start_sums(D, miss, design):
    """The sums of each variant a logistic fit starts from (B = len(D)):

    ``G`` (B, 2c+3) = ``D @ design.S.T``: Q'g, g'r0, sum g, g' W0 Q, sum of g over cases;
    ``s2`` and ``hgg0`` (B,): sum g^2 and g' W0 g; ``corr`` (B, q): the sums of the
    correction rows (:func:`_correction_rows`) over each variant's missing calls, or None
    when the block has none; ``nmiss`` and ``y_miss`` (B,): missing calls, and cases among them.

    The numba kernel forms only the missing calls' correction rows (the numpy path's
    ``miss @ rows`` is a dense product over ~2c^2 columns, the cost of a Newton step).
    """
    B = len(D)
    kernel = LOGISTIC_START_KERNEL.get()
    if kernel is None:
        G = D @ design.S.T
        s2, hgg0 = _rowdot(D, D), (D * D) @ design.w0
        if miss is None:
            return G, s2, hgg0, None, np.zeros(B), np.zeros(B)
        nmiss = miss.sum(axis=1, dtype=np.float64)
        corr = _missing_corrections(miss, design) if nmiss.any() else None
        return G, s2, hgg0, corr, nmiss, miss @ design.y
    G = np.empty((B, design.S.shape[0]))
    s2w, KM, mcnt = np.empty((B, 2)), np.empty((B, design.n_corr)), np.empty((B, 2))
    kernel(np.ascontiguousarray(D), _NO_MISS if miss is None else np.ascontiguousarray(miss),
           design.S, design.w0, design.Q, design.S[design.c], G, s2w, KM, mcnt)
    nmiss = mcnt[:, 0]
    return G, s2w[:, 0], s2w[:, 1], (KM if nmiss.any() else None), nmiss, mcnt[:, 1]


def _score_info(D, miss, theta, active, design, exact=None):
    """Score (A, c+1) and information (A, c+1, c+1) at ``theta[active]`` of the variants
    ``D[active]`` (``miss``: their missing flags, or None when D has none). ``exact`` (A,)
    bool: the rows whose covariate block ``Q' W Q`` is formed (default all); the others'
    block is left unset, for the caller to fill.

    The numba kernel forms everything but the covariate block in one pass per variant
    (no (A, n) temporaries, no GIL); the covariate block ``Q' W Q`` is one GEMM over the
    weights it returns, ``W @ Kw``, which reuses each sample's ``q_k q_l`` products across
    the variants. The numpy path (:func:`_logistic_grad_hess`) is the same arithmetic.
    """
    exact = np.ones(len(active), bool) if exact is None else np.asarray(exact, bool)
    kernel = LOGISTIC_KERNEL.get()
    if kernel is None:
        return _logistic_grad_hess(D[active], None if miss is None else miss[active], theta[active],
                                   design, exact)
    c = design.c
    A = len(active)
    U, Hgc, Hgg = np.empty((A, c + 1)), np.empty((A, c)), np.empty(A)
    W = np.empty((A, design.n))
    M = _NO_MISS if miss is None else np.ascontiguousarray(miss)
    kernel(np.ascontiguousarray(D), M, design.Qt, design.y, np.ascontiguousarray(theta[active]),
           active.astype(np.int64), U, Hgc, Hgg, W)
    H = np.empty((A, c + 1, c + 1))
    _fill_covariate_blocks(H, W, exact, lambda w: _weighted_grams(w, design.tri_products, design.Qt), design)
    H[:, :c, c] = Hgc
    H[:, c, :c] = Hgc
    H[:, c, c] = Hgg
    return U, H


_NO_MISS = np.zeros((0, 0))


def _weighted_grams(W, products: TriProducts, Qt):
    """(A, T) upper triangles of ``Q' diag(W[a]) Q`` for weights W (A, n): the GEMM
    ``W @ K`` (:meth:`TriProducts.gram`) where the products K are stored and W has at least
    :data:`GRAM_GEMM_MIN_ROWS` rows, else the ``weighted_gram`` kernel (Qt (c, n)): forming
    K chunk by chunk at every call cost more than the kernel's arithmetic (100,000 samples,
    42 covariates, 20 rows: 0.38 s against 0.10 s)."""
    gram = GRAM_KERNEL.get()
    if gram is not None and (len(W) < GRAM_GEMM_MIN_ROWS or products.K is None):
        out = np.empty((len(W), products.T))
        gram(np.ascontiguousarray(W), Qt, out)
        return out
    return products.gram(W)


def _fill_covariate_blocks(H, W, exact, grams, design) -> None:
    """``H[a, :c, :c]`` = ``Q' diag(W[a]) Q`` for the rows ``exact`` (A,) bool of the weights
    W (A, n), by ``grams`` (weights -> upper triangles); the other rows are left as they
    are. W is not copied when every row is exact (the usual case)."""
    c, tri = design.c, design.tri
    if exact.all():
        H[:, :c, :c] = _unpack_sym(grams(W), c, tri)
    elif exact.any():
        H[exact, :c, :c] = _unpack_sym(grams(W[exact]), c, tri)


def _logistic_grad_hess(D, miss, theta, design, exact=None):
    """Score (B, c+1) and information (B, c+1, c+1) of the logistic model at theta
    (the numpy path of :func:`_score_info`; ``exact`` as there)."""
    c = design.c
    eta = theta[:, :c] @ design.Q.T
    eta += theta[:, c:] * D
    if miss is not None:
        # push missing samples to p == y exactly, so that they add nothing to score or
        # information (cheaper than masking r and w separately)
        eta += miss * design.offset_miss
    p = _expit(eta, out=eta)
    r = design.y - p
    w = p
    w -= p * p                      # p (1 - p), in place
    U = np.empty((len(D), c + 1))
    U[:, :c] = r @ design.Q
    U[:, c] = _rowdot(r, D)
    H = np.empty((len(D), c + 1, c + 1))
    # float64 throughout: a float32 covariate block was measured to move SEs by ~1e-6
    exact = np.ones(len(D), bool) if exact is None else np.asarray(exact, bool)
    _fill_covariate_blocks(H, w, exact, design.tri_products.gram, design)
    wD = w * D
    hab = wD @ design.Q
    H[:, :c, c] = hab
    H[:, c, :c] = hab
    H[:, c, c] = _rowdot(wD, D)
    return U, H


# --------------------------------------------------------------------------------------
# decoding chunks and the per-chunk pure function
# --------------------------------------------------------------------------------------
def decode_block(packed: np.ndarray, n_file: int, sample_idx: np.ndarray | None):
    """Packed .bed rows (B, ceil(n_file/4)) -> (D float64 (B, n), miss float64 (B, n) or None).

    ``D`` holds A1 dosages (.bim column 5) with 0 at missing calls; ``miss`` flags the
    missing calls (None when the block has none). ``sample_idx``: file positions of the
    samples used, in order, or None for all samples in file order.
    """
    packed = np.asarray(packed, dtype=np.uint8)
    B = packed.shape[0]
    if sample_idx is None:
        D = np.take(_BYTE_DOSAGE_ITEM, packed).view(np.float64).reshape(B, -1)[:, :n_file]
        # count missing calls per row from byte tables (padding bits of the last byte
        # excluded by decoding that byte exactly)
        full = n_file // 4
        nm = np.take(_BYTE_NMISS, packed[:, :full]).sum(axis=1, dtype=np.int64)
        if n_file % 4:
            nm += (BYTE_TO_CODES[packed[:, full]][:, : n_file % 4] == 1).sum(axis=1)
        miss = None
        if nm.any():
            miss = np.take(_BYTE_MISS_ITEM, packed).view(np.float64).reshape(B, -1)[:, :n_file]
        if n_file % 4:
            D = np.ascontiguousarray(D)
            if miss is not None:
                miss = np.ascontiguousarray(miss)
        return D, miss
    codes = unpack_codes(packed, n_file, sample_idx)
    D = _CODE_DOSAGE_F64[codes]
    m = codes == 1
    return D, (m.astype(np.float64) if m.any() else None)


def _keep_all_missing(out, nobs):
    """Mean imputation: a variant with no observed call stays ALL_MISSING (n = 0), not a
    test of n imputed samples. Sets and returns ``out`` (B, k * _NSTAT), C-contiguous."""
    allmiss = nobs == 0
    per_pheno = out.reshape(len(out), -1, _NSTAT)
    assert np.shares_memory(per_pheno, out)
    per_pheno[allmiss, :, 0] = 0
    per_pheno[allmiss, :, 2:5] = np.nan
    per_pheno[allmiss, :, 5] = _ALL_MISSING
    return out


def _kernel(D, miss, design, max_iter, pending=None):
    if design.missing == "mean" and miss is not None:
        # mean imputation: fill with the observed mean, then test as if nothing were missing
        nm = miss.sum(axis=1, dtype=np.float64)
        nobs = D.shape[1] - nm
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = D.sum(axis=1) / nobs
        # separation is judged on the observed calls: an imputed mean dosage in the other
        # class would make the MLE finite (and absurd) without any information
        sep = (_separated(D, miss, nobs, design)
               if design.model == "logistic" and design.firth != "always" else None)
        D = D + miss * np.nan_to_num(mu)[:, None]
        # the imputed A1 count over all n samples is n * mu: a1_freq stays the observed one
        out = (linear_kernel(D, None, design) if design.model == "linear"
               else logistic_kernel(D, None, design, max_iter=max_iter, sep=sep, pending=pending))
        return _keep_all_missing(out, nobs)
    if design.model == "linear":
        return linear_kernel(D, miss, design)
    return logistic_kernel(D, miss, design, max_iter=max_iter, pending=pending)


#: Firth refits fitted together at most (rows x samples elements): each (rows, samples)
#: float64 work array of the batch stays near 16 MB (it holds about a dozen).
FIRTH_BATCH_ELEMENTS = 1 << 21


def _blocks_with_pending_firth(blocks, out, design, max_iter):
    """Run :func:`_kernel` on ``(start, D, miss)`` blocks into ``out``, then the chunk's
    Firth refits in batches (one batch per block left most of them with ~2 variants,
    where the fit's fixed costs dominate: 1.8 s of a 6.2 s rare-variant run). Memory: the
    deferred rows are float64 copies, at most twice the chunk's float32 dosages (every
    variant deferred, ``firth="always"``)."""
    firth_later = design.model == "logistic" and design.firth != "no"
    pending = [] if firth_later else None
    for start, D, miss in blocks:
        k = len(pending) if firth_later else 0
        out[start:start + len(D)] = _kernel(D, miss, design, max_iter, pending)
        if firth_later:
            pending[k:] = [(rows + start, d, m) for rows, d, m in pending[k:]]
    if pending:
        _fit_pending(out, pending, design)
    return out


def _fit_pending(out, pending, design) -> None:
    """Fit the deferred Firth refits ``pending`` (see :func:`logistic_kernel`) and write
    their rows of ``out`` (beta, se, z, errcode)."""
    from .firth import firth_logistic_batch  # scipy.linalg, imported only when needed

    rows = np.concatenate([r for r, _, _ in pending])
    D = np.concatenate([d for _, d, _ in pending])
    M = None
    if any(m is not None for _, _, m in pending):
        M = np.concatenate([np.ones_like(d) if m is None else m for _, d, m in pending])
    step = max(1, FIRTH_BATCH_ELEMENTS // D.shape[1])
    for s in range(0, len(rows), step):
        sl = slice(s, s + step)
        beta, se, ok = firth_logistic_batch(design.Q, D[sl], None if M is None else M[sl], design.y,
                                            design.a0, design.tri_products, design.tri)
        r = rows[sl]
        with np.errstate(invalid="ignore"):
            out[r, 2:5] = np.column_stack([beta, se, beta / se])
        out[r, 5] = np.where(ok, _OK, _FIRTH_FAIL)
        out[r[~ok], 2:5] = np.nan


def chunk_stats(packed: np.ndarray, design: Design, max_iter: int = 25) -> np.ndarray:
    """The per-chunk pure function: packed .bed rows (B, bytes) -> (B, k * _NSTAT)
    statistics (k = ``design.k``; each phenotype's _NSTAT columns in turn).

    Linear models go through the numba kernel (:func:`_linear_packed`) where it loads;
    otherwise the chunk is decoded in blocks of at most :data:`SUB_BLOCK` variants. Each
    variant's result depends only on its own genotypes, so chunk sizes do not change
    results.
    """
    packed = np.asarray(packed)
    if design.model == "linear" and design.file_row is not None and LINEAR_KERNEL.get() is not None:
        return _linear_packed(packed, design)
    out = np.empty((packed.shape[0], design.k * _NSTAT))
    sb = _sub_block(design)
    blocks = ((s, *decode_block(packed[s:s + sb], design.n_file, design.sample_idx))
              for s in range(0, packed.shape[0], sb))
    return _blocks_with_pending_firth(blocks, out, design, max_iter)


#: Variants per call of the numba kernel: bounds its (block, ~c^2/2) outputs and the
#: (block, c, c) arrays of the statistics.
NUMBA_BLOCK = 1024


def _import_kernels():
    from . import _assoc_kernels
    return _assoc_kernels


#: The numba kernel ``_assoc_kernels.linear_sums`` (None from ``get()`` where it cannot be
#: loaded: the numpy path, :func:`linear_kernel`, then runs).
LINEAR_KERNEL = LazyKernel(lambda: _import_kernels(), "linear_sums")
#: The logistic fit's numba kernels: ``logistic_start_sums`` (None: :func:`_start_sums`'s
#: numpy path) and ``logistic_score_info`` (None: :func:`_logistic_grad_hess`).
LOGISTIC_START_KERNEL = LazyKernel(lambda: _import_kernels(), "logistic_start_sums")
LOGISTIC_KERNEL = LazyKernel(lambda: _import_kernels(), "logistic_score_info")
GRAM_KERNEL = LazyKernel(lambda: _import_kernels(), "weighted_gram")

#: Below this many variants still fitting in a block, their covariate blocks ``Q' W Q``
#: come from ``weighted_gram`` (~5 ns a sample and variant at c = 11) instead of the GEMM
#: ``W @ Kw``, which streams all of Kw however few rows W has (measured at 10,000
#: samples: 19 ns for one row, 5.3 for 8, 2.8 for 64).
GRAM_GEMM_MIN_ROWS = 8
#: fixed-covariate-block steps a logistic fit takes at most before its exact Newton steps
#: (each at least halves the step before it; a variant typically needs 3-6)
MAX_FIXED_BLOCK_STEPS = 30
#: design columns (intercept and covariates) from which a logistic fit takes fixed-block
#: steps: they save ~1.7 covariate blocks (n c^2 / 2) per variant for ~3-5 steps of O(n c)
#: each (more with missing calls), a gain only where c is large. Measured in process (best
#: of 3, 2 threads), with / without them, random covariates, case fraction 0.3:
#: 43 columns: 10,000 x 10,000 11.5 / 14.6 s (2% missing calls: 15.5 / 16.8 s), 100,000 x
#: 200 4.7 / 6.9 s, 500,000 x 200 19.5 / 25.3 s; 31 columns: 10,000 x 10,000 7.3 / 8.4 s
#: (missing: 9.8 / 9.4 s), 100,000 x 200 3.0 / 3.9 s; 21 columns: 10,000 x 10,000 4.3 /
#: 4.7 s but with missing calls 6.8 / 5.5 s; 11 columns: 2.6 / 2.5 s, missing 4.3 / 3.2 s
FIXED_BLOCK_MIN_COLUMNS = 32


def _linear_packed(packed: np.ndarray, design: Design) -> np.ndarray:
    """:func:`chunk_stats` for a linear model via the numba kernel: the per-variant sums
    straight from the packed rows, then :func:`_linear_stats`. Variants with and without
    missing calls take their own branch of it, so a variant's result never depends on
    its neighbours (the numpy path treats a whole block as having missing calls)."""
    kernel = LINEAR_KERNEL.get()
    B = packed.shape[0]
    c, k = design.c, design.k
    n = design.n
    out = np.empty((B, k * _NSTAT))
    p4, q = design.Vt4.shape[0], design.n_corr
    for s in range(0, B, NUMBA_BLOCK):
        blk = np.ascontiguousarray(packed[s:s + NUMBA_BLOCK], dtype=np.uint8)
        b = len(blk)
        G = np.empty((-(-b // 4) * 4, p4))
        KM, VM, cnt = np.empty((b, q)), np.empty((b, p4)), np.empty((b, 3), np.int64)
        kernel(blk, design.n_file, design.file_row, design.Vt4, c, k, G, KM, VM, cnt)
        G = G[:b]
        nm, s1, s2 = (cnt[:, k].astype(np.float64) for k in range(3))
        nobs = n - nm
        if design.missing == "mean":
            # each missing call filled with the variant's observed mean mu: the sums gain
            # mu times the missing samples' V rows (as linear_kernel on D + miss * mu)
            with np.errstate(invalid="ignore", divide="ignore"):
                mu = np.nan_to_num(s1 / nobs)
            G = G + mu[:, None] * VM
            s2 = s2 + nm * mu * mu
            s1 = s1 + nm * mu
            res = _keep_all_missing(
                _linear_stats(G[:, :c], G[:, c:c + k], s1, s2, np.full(b, float(n)), None, design), nobs)
        else:
            res = np.empty((b, k * _NSTAT))
            some = nm > 0
            for rows, corr in ((~some, None), (some, KM)):
                if rows.any():
                    res[rows] = _linear_stats(G[rows, :c], G[rows, c:c + k], s1[rows], s2[rows], nobs[rows],
                                              None if corr is None else corr[rows], design)
        out[s:s + b] = res
    return out


def dosage_chunk_stats(dosage: np.ndarray, design: Design, max_iter: int = 25) -> np.ndarray:
    """Like :func:`chunk_stats` for a float dosage block (n_all, B), NaN missing.

    Rows are all samples of the input array; ``design.sample_idx`` selects the used ones.
    """
    X = np.asarray(dosage, dtype=np.float64)
    if design.sample_idx is not None:
        X = X[design.sample_idx]
    out = np.empty((X.shape[1], design.k * _NSTAT))
    sb = _sub_block(design)

    def blocks():
        for s in range(0, X.shape[1], sb):
            blk = np.ascontiguousarray(X[:, s:s + sb].T)
            m = np.isnan(blk)
            yield s, np.where(m, 0.0, blk), (m.astype(np.float64) if m.any() else None)

    return _blocks_with_pending_firth(blocks(), out, design, max_iter)


# --------------------------------------------------------------------------------------
# input validation and alignment
# --------------------------------------------------------------------------------------
def _align(values, samples: pd.DataFrame | None, n: int, what: str):
    """Phenotype / covariates -> positional order of the genotype samples.

    Accepted: an array (n,) or (n, k) in sample order; a pandas object with the same
    RangeIndex as ``samples``; or a pandas object indexed by IID (or a (FID, IID)
    MultiIndex), matched to ``samples``. Samples absent from the index become NaN.
    """
    if isinstance(values, (pd.Series, pd.DataFrame)):
        idx = values.index
        if samples is not None and not isinstance(idx, pd.RangeIndex) and not (
            idx.dtype.kind in "iu" and idx.equals(samples.index)
        ):
            if isinstance(idx, pd.MultiIndex):
                if idx.nlevels != 2:
                    raise InputError(f"{what}: a MultiIndex must have two levels (FID, IID)")
                if idx.has_duplicates:
                    raise InputError(f"{what}: duplicate (FID, IID) in the index")
                keys = pd.MultiIndex.from_arrays([samples["fid"].astype(str), samples["iid"].astype(str)])
                values = values.copy()
                values.index = pd.MultiIndex.from_arrays(
                    [idx.get_level_values(0).astype(str), idx.get_level_values(1).astype(str)])
            else:
                if idx.has_duplicates:
                    raise InputError(f"{what}: duplicate sample IDs in the index, e.g. "
                                     f"{idx[idx.duplicated()][0]!r}")
                if samples["iid"].duplicated().any():
                    raise InputError(f"{what}: IIDs are not unique in the .fam; index by (FID, IID)")
                keys = pd.Index(samples["iid"].astype(str))
                values = values.copy()
                values.index = idx.astype(str)
            if not keys.isin(values.index).any():
                raise InputError(f"{what}: none of its sample IDs match the genotype samples "
                                 f"(first .fam IID {samples['iid'].iloc[0]!r}, first {what} ID {idx[0]!r})")
            return values.reindex(keys)
        if len(values) != n:
            raise InputError(f"{what} has {len(values)} rows but there are {n} genotype samples")
        return values.set_axis(range(n), axis=0)
    arr = np.asarray(values)
    if arr.shape[0] != n:
        raise InputError(f"{what} has {arr.shape[0]} rows but there are {n} genotype samples")
    return arr


def _phenotype_vector(phenotype, samples, n) -> np.ndarray:
    ph = _align(phenotype, samples, n, "phenotype")
    if isinstance(ph, pd.DataFrame):
        if ph.shape[1] != 1:
            raise InputError(f"phenotype must be one column, got {ph.shape[1]}: {list(ph.columns)}")
        ph = ph.iloc[:, 0]
    arr = np.asarray(ph)
    if arr.ndim != 1:
        raise InputError(f"phenotype must be one-dimensional, got shape {arr.shape}")
    try:
        return np.asarray(pd.to_numeric(pd.Series(arr), errors="raise"), dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError("phenotype must be numeric (NaN for missing)") from None


def _covariate_matrix(covariates, samples, n, used: np.ndarray | None = None):
    """(C (n, k) float64, names): covariates aligned, categorical ones one-hot encoded.

    A categorical column loses its most common level among the samples used (``used``:
    phenotype present, and complete covariates; ties to the first level), as plink2
    ``--glm`` does (``--split-cat-pheno omit-most``): a rare reference level would
    inflate the dummies' VIFs, and plink2's VIF limit would then see other predictors.
    """
    if covariates is None:
        return np.empty((n, 0)), []
    cov = _align(covariates, samples, n, "covariates")
    if not isinstance(cov, pd.DataFrame):
        arr = np.asarray(cov)
        arr = arr.reshape(n, -1)
        cov = pd.DataFrame(arr, columns=[f"covar{k + 1}" for k in range(arr.shape[1])])
    # text columns: object dtype (pandas 2) or pandas 3's default string dtype
    cats = [col for col in cov.columns
            if isinstance(cov[col].dtype, pd.CategoricalDtype) or cov[col].dtype == bool
            or pd.api.types.is_object_dtype(cov[col].dtype) or pd.api.types.is_string_dtype(cov[col].dtype)]
    if cats:
        # categorical columns -> one-hot indicators, the most common level dropped (the
        # intercept carries it); a missing category stays missing
        complete = cov.notna().all(axis=1).to_numpy()
        if used is not None:
            complete = complete & used  # not in place: pandas may hand out a read-only view
        for col in cats:
            s = cov[col]
            if s.dtype == bool:
                cov[col] = s.astype(float)
                continue
            dummies = pd.get_dummies(s, prefix=str(col), dtype=float)
            if dummies.shape[1]:
                counts = dummies[complete].sum(axis=0).to_numpy()
                dummies = dummies.drop(columns=dummies.columns[int(np.argmax(counts))])
            dummies[s.isna().to_numpy()] = np.nan
            cov = pd.concat([cov.drop(columns=[col]), dummies], axis=1)
    names = [str(col) for col in cov.columns]
    try:
        C = cov.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InputError(f"covariates must be numeric or categorical: {exc}") from None
    return C, names


def _choose_model(y: np.ndarray, model: str):
    """Return (model, y recoded): binary 1/2 -> 0/1."""
    if model not in ("auto", "linear", "logistic"):
        raise InputError(f"model must be 'auto', 'linear' or 'logistic', got {model!r}")
    vals = distinct_if_few(y, 2)  # quantitative traits: not sorted
    if len(vals) == 0:
        raise InputError("no sample has a non-missing phenotype and complete covariates")
    if len(vals) == 1:
        kind = "one class" if model == "logistic" or vals[0] in (0, 1, 2) else "a constant"
        raise InputError(f"the phenotype is constant ({vals[0]!r} for all {len(y)} samples used): "
                         f"{kind}, nothing to test")
    binary = len(vals) == 2 and (set(vals) <= {0.0, 1.0} or set(vals) <= {1.0, 2.0})
    if model == "auto":
        model = "logistic" if binary else "linear"
        if len(vals) == 2 and not binary:
            warnings.warn(f"phenotype has two values {list(vals)} not coded 0/1 or 1/2: "
                          "running linear regression", stacklevel=3)
    if model == "logistic":
        if not binary:
            vals = np.unique(y)
            raise InputError(f"logistic regression needs a 0/1 or 1/2 phenotype, got values "
                             f"{list(vals[:5])}{' ...' if len(vals) > 5 else ''}")
        y = y - vals[0]
    return model, y


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def linear_gwas(genotypes, phenotype, covariates=None, model: str = "auto", missing: str = "drop",
                chunk: int | None = None, progress: bool | None = None, max_iter: int = 25,
                vif: float = VIF_DEFAULT, max_corr: float = MAX_CORR_DEFAULT,
                firth: str = "fallback", x_sex: bool = True) -> pd.DataFrame:
    """Per-SNP linear or logistic regression with covariates (plink2 ``--glm`` equivalent).

    Parameters
    ----------
    genotypes : Genotypes or array (n_samples, n_variants)
        A :func:`gwaslift.read_plink` result (read lazily, chunk by chunk, from the packed
        .bed), or a numpy / Dask array of A1 dosages with NaN for missing calls.
    phenotype : array (n_samples,) or pandas Series
        Aligned with ``genotypes.samples`` by position, or by IID / (FID, IID) index.
        NaN = missing (the sample is dropped). Binary traits are coded 0/1 or 1/2.
    covariates : DataFrame (n_samples, k), array, or None
        Aligned like ``phenotype`` (PCs, age, sex, ...). Categorical / string columns are
        expanded to one-hot indicators (the most common level among the samples used
        dropped, as plink2). A sample with any NaN
        covariate is dropped. The intercept is always added.
    model : "auto", "linear" or "logistic"
        ``auto``: logistic when the phenotype has exactly two values coded 0/1 or 1/2.
    missing : "drop" or "mean"
        Missing genotypes: per-variant drop (plink2, default) or mean imputation.
    chunk : int, optional
        Variants per task (default: the genotypes' own chunking). Results do not depend on it.
    progress : bool or None
        Progress bar over chunks (None: only on a terminal).
    max_iter : int
        Newton iterations allowed per variant (logistic).
    vif : float
        plink2's ``--vif`` (default 50): a variant whose predictors (genotype and
        covariates, over its observed samples) include one with a variance inflation
        factor above this is NA, ``VIF_TOO_HIGH``; covariates alone above it raise
        InputError. ``np.inf`` turns the limit off.
    max_corr : float
        plink2's ``--max-corr`` (default 0.999): the same for a pairwise predictor
        correlation ``|r|`` above this (``CORR_TOO_HIGH``). ``1`` (or more) turns it off;
        exactly collinear predictors are ``VIF_INFINITE`` with both limits off.
    firth : "fallback", "no" or "always"
        Logistic only. ``"fallback"`` (plink2's default ``firth-fallback``): a variant
        whose cases or controls carry no A1 allele or no other allele (separation: no
        finite maximum-likelihood estimate), or whose Newton fit does not converge, is
        refitted with Firth's penalized likelihood (:mod:`gwaslift.firth`) and flagged in
        the ``firth`` column. ``"no"`` (plink2 ``no-firth``): such variants are NaN with
        errcode ``SEPARATION`` / ``LOGISTIC_CONVERGE_FAIL``. ``"always"`` (plink2 ``--glm
        firth``): every variant is a Firth fit (rare-variant studies). A Firth fit costs
        ~2.5 ms of CPU per variant at 10,000 samples (batched per chunk, numba kernels;
        linear in the sample count; benchmarks/results/firth.md): ~2.6x less than
        plink2's. In a cohort with many ultra-rare variants, filter on minor allele count
        first, as with plink2.
    x_sex : bool
        Sex chromosomes as plink2 ``--glm`` tests them (a :class:`Genotypes` input, with the
        .fam's sex): on chrX sex is added as a covariate (``SEX``, when both sexes are among
        the samples used; samples of unknown sex then leave the chrX tests), and chrY is
        tested on males only. ``False`` is plink2's ``no-x-sex`` (chrX without the sex
        covariate; chrY still males only). Arrays have no chromosomes: every variant is
        tested alike.

    Returns
    -------
    DataFrame, one row per variant: ``chrom, pos, snp, a1, a2, a1_freq, n, beta, se, stat,
    p, log10_p, errcode, firth`` (see the module docstring; ``firth`` is True where the
    result is a Firth fit); ``beta`` is per A1 allele (log odds
    ratio for logistic); ``stat`` is t (linear) or Wald z (logistic). ``attrs`` holds
    ``model``, ``covariates`` (names) and ``missing``.
    """
    _check_options(missing, vif, max_corr, firth)
    arr, samples, n_all = _genotype_input(genotypes)
    y = _phenotype_vector(phenotype, samples, n_all)
    C, names = _covariate_matrix(covariates, samples, n_all, used=np.isfinite(y))
    return _gwas(genotypes, arr, y[:, None], C, names, model=model, missing=missing, chunk=chunk,
                 progress=progress, max_iter=max_iter, vif=vif, max_corr=max_corr, firth=firth,
                 x_sex=x_sex)[0]


def linear_gwas_multi(genotypes, phenotypes, covariates=None, model: str = "auto", **kw) -> dict:
    """:func:`linear_gwas` of several phenotypes: ``{name: DataFrame}``, in column order,
    each equal to ``linear_gwas`` of that phenotype alone (same samples, same numbers).

    Quantitative phenotypes observed on the same samples (the same missing phenotypes;
    covariates alike) are tested in ONE pass over the genotypes, as plink2 ``--glm`` batches
    them: each genotype is decoded once, and its sums, its covariate fit and plink2's
    predictor checks serve every phenotype; only the ``g' y`` products and the t-tests are
    per phenotype. Binary phenotypes (logistic) and phenotypes with a missingness pattern
    of their own run one pass each.

    ``phenotypes``: a DataFrame (columns = phenotypes; aligned with ``genotypes.samples``
    like :func:`linear_gwas`'s ``phenotype``), or a 2-D array (names ``pheno1``, ...).
    ``covariates``, ``model`` and the other keyword arguments as :func:`linear_gwas`.
    """
    missing = kw.get("missing", "drop")
    _check_options(missing, kw.get("vif", VIF_DEFAULT), kw.get("max_corr", MAX_CORR_DEFAULT),
                   kw.get("firth", "fallback"))
    unknown = set(kw) - {"missing", "chunk", "progress", "max_iter", "vif", "max_corr", "firth", "x_sex"}
    if unknown:
        raise TypeError(f"linear_gwas_multi: unexpected keyword arguments {sorted(unknown)}")
    arr, samples, n_all = _genotype_input(genotypes)
    table = _align(phenotypes, samples, n_all, "phenotypes")
    if not isinstance(table, pd.DataFrame):
        table = np.asarray(table)
        table = pd.DataFrame(table.reshape(n_all, -1),
                             columns=[f"pheno{j + 1}" for j in range(table.reshape(n_all, -1).shape[1])])
    if table.shape[1] == 0:
        raise InputError("phenotypes: no column to test")
    names_p = [str(col) for col in table.columns]
    if len(set(names_p)) != len(names_p):
        raise InputError(f"phenotypes: duplicate column names {names_p}")
    ys = []
    for j in range(table.shape[1]):
        try:
            ys.append(_phenotype_vector(table.iloc[:, j], None, n_all))
        except InputError as e:
            raise InputError(f"phenotype {names_p[j]!r}: {e}") from None
    # group the phenotypes by the samples they use and by model: one pass per group
    groups: dict = {}
    covariate_matrices: dict = {}  # by the samples a phenotype uses (its reference levels)
    for j, y in enumerate(ys):
        used = np.isfinite(y)
        pattern = used.tobytes()
        if pattern not in covariate_matrices:
            covariate_matrices[pattern] = _covariate_matrix(covariates, samples, n_all, used=used)
        C, names = covariate_matrices[pattern]
        keep = used & np.all(np.isfinite(C), axis=1)
        try:
            kind, _ = _choose_model(y[keep], model)
        except InputError as e:
            raise InputError(f"phenotype {names_p[j]!r}: {e}") from None
        group = (pattern, kind) if kind == "linear" else (j,)
        groups.setdefault(group, (C, names, kind, []))[3].append(j)
    results = {}
    for C, names, kind, cols in groups.values():
        Y = np.column_stack([ys[j] for j in cols])
        # the model as chosen above (an "auto" choice is not made, nor warned about, twice)
        for j, res in zip(cols, _gwas(genotypes, arr, Y, C, names, model=kind, **kw)):
            res.attrs["phenotype"] = names_p[j]
            results[names_p[j]] = res
    return {name: results[name] for name in names_p}


def _check_options(missing, vif, max_corr, firth) -> None:
    if missing not in ("drop", "mean"):
        raise InputError(f"missing must be 'drop' or 'mean', got {missing!r}")
    if not vif >= 1:  # also rejects NaN
        raise InputError(f"vif must be >= 1 (np.inf: no limit), got {vif!r}")
    if not 0 < max_corr:
        raise InputError(f"max_corr must be > 0 (1: no limit), got {max_corr!r}")
    if firth not in FIRTH_MODES:
        raise InputError(f"firth must be one of {FIRTH_MODES}, got {firth!r}")


def _genotype_input(genotypes):
    """(array or None, samples table or None, number of samples) of a Genotypes or a
    (samples x variants) dosage array."""
    import dask.array as da

    from .io.plink import Genotypes

    if isinstance(genotypes, Genotypes):
        return None, genotypes.samples, genotypes.n_samples
    arr = genotypes if isinstance(genotypes, da.Array) else np.asarray(genotypes)
    if arr.ndim != 2:
        raise InputError(f"genotypes must be a Genotypes or a 2-D (samples x variants) array, "
                         f"got shape {arr.shape}")
    return arr, None, arr.shape[0]


def _gwas(genotypes, arr, Y, C, names, *, model="auto", missing="drop", chunk=None, progress=None,
          max_iter=25, vif=VIF_DEFAULT, max_corr=MAX_CORR_DEFAULT, firth="fallback",
          x_sex=True) -> list:
    """The tests of the k columns of ``Y`` (n_all, k) -- one pass when k > 1 (every column
    then a linear model) -- as a list of k :func:`linear_gwas` tables. A sample is used
    where every column of ``Y`` and ``C`` is finite."""
    import dask
    import dask.array as da

    is_geno = arr is None
    n_all = Y.shape[0]
    if is_geno and x_sex is not None:
        parts = _sex_chromosome_parts(genotypes, Y, C, names, x_sex)
        if parts is not None:
            # each class of chromosome is its own regression (other samples or covariates);
            # x_sex=None: the parts are not split again
            kw = dict(model=model, missing=missing, chunk=chunk, progress=progress, max_iter=max_iter,
                      vif=vif, max_corr=max_corr, firth=firth, x_sex=None)
            done = []
            for pos, YY, CC, nn, haploid in parts:
                res = _gwas(genotypes.subset(variants=pos), None, YY, CC, nn, **kw)
                if haploid:  # per haploid allele (0/1), as plink2: the dosage is 0/2
                    for r in res:
                        r["beta"] *= 2.0
                        r["se"] *= 2.0
                done.append((pos, res))
            order = np.argsort(np.concatenate([pos for pos, _ in done]), kind="stable")
            outs = []
            for j in range(Y.shape[1]):
                out = pd.concat([r[j] for _, r in done], ignore_index=True).iloc[order].reset_index(drop=True)
                out.attrs.update(done[0][1][j].attrs, covariates=list(names), x_sex=bool(x_sex))
                outs.append(out)
            return outs
    keep = np.all(np.isfinite(Y), axis=1) & np.all(np.isfinite(C), axis=1)
    chosen = [_choose_model(Y[keep, j], model) for j in range(Y.shape[1])]
    model = chosen[0][0]
    if len(chosen) > 1 and any(m != "linear" for m, _ in chosen):
        raise InputError("only quantitative phenotypes (linear models) are tested in one pass")
    y_used = chosen[0][1] if len(chosen) == 1 else np.column_stack([yj for _, yj in chosen])
    c = 1 + C.shape[1]
    if keep.sum() <= c + 1:
        raise InputError(f"only {int(keep.sum())} samples have a phenotype and complete covariates; "
                         f"need more than {c + 1} for {c} covariate columns + genotype")
    keep_pos = np.flatnonzero(keep)

    if is_geno:
        g = genotypes.with_chunks(chunk) if chunk is not None else genotypes
        file_idx = g.sample_idx[keep_pos]
        all_in_order = len(file_idx) == g.source.n_samples and np.array_equal(
            file_idx, np.arange(g.source.n_samples))
        design = make_design(y_used, C[keep], names, model, missing,
                             sample_idx=None if all_in_order else file_idx, n_file=g.source.n_samples,
                             vif=vif, max_corr=max_corr, firth=firth)
        blocks = g.packed.to_delayed().ravel()
        fn = chunk_stats
        variants = g.variants
    else:
        design = make_design(y_used, C[keep], names, model, missing,
                             sample_idx=None if keep.all() else keep_pos, n_file=n_all,
                             vif=vif, max_corr=max_corr, firth=firth)
        # default task size as for a .bed (~64 MiB of float32): a fixed 4,096 variants made
        # 3.3 GB float64 tasks at 100,000 samples
        darr = arr if isinstance(arr, da.Array) else da.from_array(
            arr, chunks=(n_all, chunk or default_variant_chunk(n_all)))
        if chunk is not None:
            darr = darr.rechunk((n_all, chunk))  # the caller asked for this task size
        darr = darr.rechunk({0: -1})  # a task needs all samples of its variants
        blocks = darr.to_delayed().ravel()
        fn = dosage_chunk_stats
        m = arr.shape[1]
        variants = pd.DataFrame({"chrom": [None] * m, "snp": [f"v{k}" for k in range(m)],
                                 "pos": np.zeros(m, np.int64), "a1": [None] * m, "a2": [None] * m})

    # load (or warn) once here, not in the first worker threads
    if is_geno and model == "linear":
        LINEAR_KERNEL.get()
    elif model == "logistic":
        LOGISTIC_START_KERNEL.get()
        LOGISTIC_KERNEL.get()
    d_design = dask.delayed(design, pure=True)
    tasks = [dask.delayed(fn, pure=True)(blk, d_design, max_iter) for blk in blocks]
    import dask.threaded

    local_threads = dask_scheduler(tasks[:1]) is dask.threaded.get
    with blas_threads(1) if local_threads and len(tasks) > 1 else contextlib.nullcontext():
        if progress_enabled(progress) and len(tasks) > 1:
            step = 8
            parts = []
            for s in progress_bar(range(0, len(tasks), step), total=-(-len(tasks) // step),
                                  desc=f"{model} GWAS", progress=progress):
                parts.extend(dask_compute(*tasks[s:s + step]))
        else:
            parts = dask_compute(*tasks)
    stats = np.concatenate(parts, axis=0) if parts else np.empty((0, design.k * _NSTAT))
    return [_label(stats[:, j * _NSTAT:(j + 1) * _NSTAT], variants, design, names, missing)
            for j in range(design.k)]


def _sex_chromosome_parts(genotypes, Y, C, names, x_sex: bool):
    """plink2 --glm's sex-chromosome and haploid rules as separate regressions: None when no
    variant is on chrX, chrY or MT; else ``[(variant positions, phenotypes (n, k), covariates,
    names, haploid)]`` for the other chromosomes (as given), chrX (``SEX`` added: 1 male, 2 female,
    NaN unknown, when ``x_sex`` and both sexes are among the samples used), chrY (males
    only: the others' phenotype NaN) and MT. ``haploid`` (Y, MT): plink2 counts alleles 0/1
    there, where the .bed dosage of a hemizygous call is 0/2, so beta and SE are per
    haploid allele (twice the dosage scale's). plink2 v2.00a3.5 measured: the same OBS_CT
    and betas."""
    chrom = genotypes.variants["chrom"].astype(str).to_numpy()
    on_x, on_y, on_mt = chrom == "X", chrom == "Y", chrom == "MT"
    if not (on_x.any() or on_y.any() or on_mt.any()):
        return None
    sex = pd.to_numeric(genotypes.samples["sex"], errors="coerce").to_numpy()
    male, female = sex == 1, sex == 2
    used = np.all(np.isfinite(Y), axis=1) & np.all(np.isfinite(C), axis=1)
    parts = []
    other = ~(on_x | on_y | on_mt)
    if other.any():
        parts.append((np.flatnonzero(other), Y, C, names, False))
    if on_x.any():
        add_sex = (x_sex and (male & used).any() and (female & used).any()
                   and not any(n.upper() == "SEX" for n in names))
        if add_sex:
            s = np.where(male, 1.0, np.where(female, 2.0, np.nan))
            parts.append((np.flatnonzero(on_x), Y, np.column_stack([C, s]), [*names, "SEX"], False))
        else:
            parts.append((np.flatnonzero(on_x), Y, C, names, False))
    if on_y.any():
        parts.append((np.flatnonzero(on_y), np.where(male[:, None], Y, np.nan), C, names, True))
    if on_mt.any():
        parts.append((np.flatnonzero(on_mt), Y, C, names, True))
    return parts


def _label(stats, variants, design, names, missing) -> pd.DataFrame:
    from scipy import special

    nobs = stats[:, 0]
    err = stats[:, 5].astype(np.int64)
    stat = stats[:, 4]
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = stats[:, 1] / (2 * nobs)
        if design.model == "linear":
            df = nobs - design.c - 1
            logp = _t_log_p(np.abs(stat), df)
        else:
            # scipy.stats.norm.logsf, from scipy.special (importing scipy.stats costs ~1 s)
            logp = np.log(2.0) + special.log_ndtr(-np.abs(stat))
    logp = np.minimum(logp, 0.0)
    out = pd.DataFrame({
        "chrom": variants["chrom"].to_numpy(),
        "pos": variants["pos"].to_numpy(),
        "snp": variants["snp"].to_numpy(),
        "a1": variants["a1"].to_numpy(),
        "a2": variants["a2"].to_numpy(),
        "a1_freq": freq,
        "n": nobs.astype(np.int64),
        "beta": stats[:, 2],
        "se": stats[:, 3],
        "stat": stat,
        "p": np.exp(logp),
        "log10_p": -logp / np.log(10.0),
        "errcode": np.asarray(ERRCODES, dtype=object)[err],
        "firth": stats[:, 6] > 0,
    })
    out.attrs.update(model=design.model, covariates=list(names), missing=missing)
    return out


def _t_log_p(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """log of the two-sided t-test p-value, finite even far below the double range.

    ``scipy.stats.t.logsf`` returns -inf once the p-value underflows (e.g. t = 750 with
    2,996 df); there we use p = I_x(df/2, 1/2), x = df / (df + t^2), whose log comes from
    the incomplete-beta continued fraction (Numerical Recipes ``betacf``, Lentz's method).
    """
    from scipy import special

    t = np.asarray(t, dtype=np.float64)
    df = np.broadcast_to(np.asarray(df, dtype=np.float64), t.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        # scipy.stats.t.logsf(t, df) is log(stdtr(df, -t)); scipy.special alone imports
        # in milliseconds, scipy.stats in ~1 s (a large part of a small GWAS run)
        logp = np.log(2.0) + np.log(special.stdtr(np.where(df > 0, df, np.nan), -t))
    fix = np.isneginf(logp) & np.isfinite(t) & (df > 0)
    if fix.any():
        logp[fix] = _t_log_p_cf(t[fix], df[fix])
    return logp


def _t_log_p_cf(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """log p (two-sided t test) = log I_x(df/2, 1/2), x = df/(df+t^2), by continued fraction.

    Accurate where x < (a + 1) / (a + b + 2), i.e. roughly t^2 > 3: always the case where
    the p-value underflows, the only place it is used.
    """
    from scipy import special

    a, b = df / 2.0, 0.5
    x = df / (df + t * t)
    log1mx = np.log(t * t) - np.log(df + t * t)
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0

    def guard(v):
        return np.where(np.abs(v) < tiny, tiny, v)

    c = np.ones_like(x)
    d = 1.0 / guard(1.0 - qab * x / qap)
    h = d.copy()
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 / guard(1.0 + aa * d)
        c = guard(1.0 + aa / c)
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 / guard(1.0 + aa * d)
        c = guard(1.0 + aa / c)
        delta = d * c
        h *= delta
        if np.all(np.abs(delta - 1.0) < 1e-15):
            break
    return a * np.log(x) + b * log1mx - special.betaln(a, b) - np.log(a) + np.log(h)


def genomic_inflation(p=None, *, log10_p=None) -> float:
    """lambda_GC: median chi-square (1 df) of the p-values / 0.454936... (its null median).

    Parameters
    ----------
    p : array of p-values, or a sumstats DataFrame (its ``log10_p`` column, else ``p``).
    log10_p : array of -log10 p (alternative to ``p``; tiny p-values are not lost).

    NaN entries are ignored. Returns NaN when no p-value is finite.
    """
    from scipy import special, stats as sps

    if isinstance(p, pd.DataFrame):
        if "log10_p" in p:
            p, log10_p = None, p["log10_p"]
        else:
            p = p["p"]
    if (p is None) == (log10_p is None):
        raise InputError("give exactly one of p or log10_p")
    if log10_p is not None:
        lg = np.asarray(log10_p, dtype=np.float64)
        lg = lg[np.isfinite(lg)]
        # chi2_1 = z^2 with z = Phi^-1(p / 2), evaluated from log p (no underflow)
        z = special.ndtri_exp(-lg * np.log(10.0) - np.log(2.0))
        chi2 = z * z
    else:
        pv = np.asarray(p, dtype=np.float64)
        pv = pv[np.isfinite(pv)]
        chi2 = sps.chi2.isf(pv, 1)
    if chi2.size == 0:
        return float("nan")
    return float(np.median(chi2) / sps.chi2.ppf(0.5, 1))
