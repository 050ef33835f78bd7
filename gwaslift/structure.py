"""Principal components of the standardized genotypes (population structure), out of core.

What is computed
----------------
With ``p_j`` the frequency of A1 (.bim column 5) among the observed calls of variant ``j``,
each genotype is standardized as plink2 ``--pca`` does::

    x_ij = (dosage_ij - 2 p_j) / sqrt(2 p_j (1 - p_j))      (0 for a missing call)

i.e. missing calls are mean-imputed (0 after centring), which is plink2
``--pca meanimpute`` (and what ``--pca approx`` always does; exact ``--pca`` without
``meanimpute`` instead rescales each sample pair by its jointly observed variants, so on
data with missing calls its eigenvalues differ slightly). Monomorphic and all-missing
variants contribute 0 but still count in ``M``, exactly as plink2 counts them. The PCs are
the top-``k`` unit eigenvectors (over samples) of the GRM ``K = X X^T / M``
(samples x samples, never formed); the eigenvalues are those of ``K``, on plink2's
``.eigenval`` scale.

How
---
Randomized block Krylov iteration (Halko, Martinsson & Tropp 2011; Musco & Musco 2015)
on ``K' = X X^T`` started in sample space: ``l = k + oversample`` random orthonormal
columns ``Q_0`` (n x l); pass ``i`` over the variant chunks accumulates ``Y_i = X X^T Q_i``
chunk by chunk (``Z = X_c^T Q_i``, ``Y += X_c Z``), and the next block ``Q_{i+1}`` is
``Y_i`` orthonormalized against all earlier blocks. After ``n_iter`` passes a
Rayleigh-Ritz step on the whole basis ``[Q_0 .. Q_{n_iter-1}]`` (its images are the
``Y_i`` already computed, so no extra pass) gives the eigenpairs: the Krylov space of
dimension ``n_iter * l`` converges much faster than plain subspace iteration on the same
passes. One cheaper pass before the others counts genotypes per variant for the
frequencies. Each pass is a Dask graph over the raw .bed bytes (``Genotypes.packed``
chunks), decoded straight to standardized float32 values by a per-variant 256-entry byte
table, so the memory is one chunk per worker plus ``2 * n_iter`` n x l float64 blocks;
the graph runs unchanged on a ``dask.distributed`` Client.

Results do not depend on ``variant_chunk`` beyond float32 rounding (the per-chunk partial
products are summed in float64 in a fixed tree order).

Sign convention: each PC is flipped so that the sample with the largest absolute loading
is positive (scikit-learn's ``svd_flip`` rule), so the output is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ._util import blas_threads, dask_compute, progress_bar
from .errors import InputError
from .io.packed import BYTE_TO_CODES, unpack_codes

#: ``BYTE_CODE_COUNTS[b, c]``: how many of the four 2-bit codes packed in byte ``b`` equal ``c``.
BYTE_CODE_COUNTS = np.stack([(BYTE_TO_CODES == c).sum(axis=1) for c in range(4)], axis=1).astype(np.int64)

#: A1 dosage of each 2-bit code, with the missing code (1) as 0 (it is masked out anyway).
_CODE_DOSAGE0 = np.array([2.0, 0.0, 1.0, 0.0])

#: Bytes of float32 standardized genotypes decoded at once inside a chunk (cache-sized).
SLAB_BYTES = 4 * 2**20


# --------------------------------------------------------------------------------------
# kernels (numpy in, numpy out)
# --------------------------------------------------------------------------------------

def standardization_table(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardized value of each genotype code, per variant, from the code counts.

    Parameters
    ----------
    counts
        int (m, 4) counts of codes 0..3: hom A1, missing, het, hom A2 (.bim column 5 = A1).

    Returns
    -------
    values : float32 (m, 4)
        ``values[j, c]`` = ``(dosage(c) - 2 p_j) / sqrt(2 p_j (1 - p_j))`` for the observed
        codes and 0 for the missing code 1; an all-zero row for monomorphic or all-missing
        variants (they carry no information about structure).
    sumsq : float64 (m,)
        ``sum_i x_ij^2`` over samples (the variant's contribution to ``trace(X X^T)``).
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_obs = counts[:, 0] + counts[:, 2] + counts[:, 3]
    a1 = 2 * counts[:, 0] + counts[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = a1 / (2 * n_obs)
        var = 2 * p * (1 - p)
        ok = (n_obs > 0) & (var > 0)
        w = np.where(ok, 1 / np.sqrt(np.where(ok, var, 1.0)), 0.0)
    mu = np.where(ok, 2 * p, 0.0)
    values = (_CODE_DOSAGE0[None, :] - mu[:, None]) * w[:, None]
    values[:, 1] = 0.0  # missing call: mean-imputed, i.e. 0 after centring
    sumsq = (counts * values**2).sum(axis=1)
    return values.astype(np.float32), sumsq


def decode_standardized(packed: np.ndarray, values: np.ndarray, n_file: int,
                        sample_idx: np.ndarray | None = None) -> np.ndarray:
    """Standardized genotypes, variants x samples, straight from .bed bytes.

    Parameters
    ----------
    packed
        uint8 (m_block, ceil(n_file / 4)) .bed rows.
    values
        float32 (m_block, 4) from :func:`standardization_table`.
    n_file, sample_idx
        File positions of the selected samples, or ``None`` for all samples in file order.

    Returns
    -------
    float32 (m_block, n) C-contiguous. With ``sample_idx=None`` the width is padded to
    ``4 * ceil(n_file / 4)`` (the padding columns hold junk: callers multiply them by zero
    rows, which is cheaper than copying the matrix to drop them).
    """
    packed = np.asarray(packed, dtype=np.uint8)
    m = packed.shape[0]
    values = np.asarray(values, dtype=np.float32)
    if sample_idx is not None:
        codes = unpack_codes(packed, n_file, sample_idx).astype(np.int32)
        codes += 4 * np.arange(m, dtype=np.int32)[:, None]
        return np.take(values.ravel(), codes)
    # per-variant byte table: byte b of variant j -> its four standardized values, so the
    # decode is a single gather of 16-byte rows (no float arithmetic per genotype)
    table = values[:, BYTE_TO_CODES].reshape(-1, 4)
    idx = packed.astype(np.int32)
    idx += 256 * np.arange(m, dtype=np.int32)[:, None]
    return np.take(table, idx, axis=0).reshape(m, -1)


def block_gram_product(packed: np.ndarray, values: np.ndarray, q: np.ndarray, n_file: int,
                       sample_idx: np.ndarray | None = None) -> np.ndarray:
    """``X_c X_c^T Q`` for one chunk of variants.

    Parameters
    ----------
    packed, values, n_file, sample_idx
        As in :func:`decode_standardized`.
    q
        float (n, l), n = number of selected samples.

    Returns
    -------
    float64 (n, l).
    """
    n, l = q.shape
    width = n if sample_idx is not None else 4 * packed.shape[1]
    qq = np.zeros((width, l), dtype=np.float32)
    qq[:n] = q  # zero rows for the padding columns of the decoded rows
    y = np.zeros((width, l), dtype=np.float64)
    # decode and multiply a few MiB of variants at a time: the slab stays in cache for both
    # products instead of a whole float32 chunk making three trips through memory
    step = max(32, SLAB_BYTES // (4 * width))
    for a in range(0, packed.shape[0], step):
        xt = decode_standardized(packed[a:a + step], values[a:a + step], n_file, sample_idx)
        y += xt.T @ (xt @ qq)  # X_s (X_s^T Q), (width, l)
    return y[:n]


def _tree_sum(parts, fan_in: int = 8):
    """Sum Dask delayed arrays in a tree (bounded memory, order independent of scheduler)."""
    import dask

    add = dask.delayed(_sum_arrays, pure=True)
    while len(parts) > 1:
        parts = [add(*parts[i:i + fan_in]) for i in range(0, len(parts), fan_in)]
    return parts[0]


def _sum_arrays(*arrays):
    out = np.array(arrays[0], dtype=np.float64, copy=True)
    for a in arrays[1:]:
        out += a
    return out


def _orthonormal(y: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(y)
    return q


def _next_block(basis: np.ndarray, y: np.ndarray, width: int) -> np.ndarray:
    """Orthonormal (n, width) block spanning ``y`` with the span of ``basis`` removed.

    A Householder QR of ``[basis, y]`` returns columns orthonormal to machine precision
    even when ``y`` lies almost inside ``span(basis)`` (a converged Krylov space), where
    Gram-Schmidt on the tiny residual would lose orthogonality.
    """
    full, _ = np.linalg.qr(np.hstack([basis, y]))
    return full[:, basis.shape[1]:basis.shape[1] + width]


def _rayleigh_ritz(basis: np.ndarray, images: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` Ritz pairs of a symmetric operator ``A`` on an orthonormal ``basis``.

    ``basis`` (n, d) orthonormal, ``images = A @ basis`` (n, d). Returns ``(theta, u)``:
    ``k`` Ritz values, largest first, and the Ritz vectors (n, k), unit norm.
    """
    t = basis.T @ images
    theta, v = np.linalg.eigh((t + t.T) / 2)
    order = np.argsort(theta)[::-1][:k]
    return theta[order], basis @ v[:, order]


def flip_signs(u: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-|value| entry is positive (first one on ties)."""
    u = np.array(u, copy=True)
    rows = np.argmax(np.abs(u), axis=0)
    signs = np.sign(u[rows, np.arange(u.shape[1])])
    signs[signs == 0] = 1
    return u * signs


# --------------------------------------------------------------------------------------
# public wrapper
# --------------------------------------------------------------------------------------

def _check_int(name: str, value, minimum: int, where) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {value!r}", where)
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}", where)
    return int(value)


def pca(genotypes, k: int = 10, *, ld_thin: int | None = None, n_iter: int = 5,
        oversample: int = 10, seed: int = 0, progress: bool | None = None) -> pd.DataFrame:
    """Top-``k`` principal components of the standardized genotypes (plink2 ``--pca`` scale).

    Parameters
    ----------
    genotypes : Genotypes
        From :func:`gwaslift.read_plink` (possibly subset). Read lazily, chunk by chunk
        (``genotypes.variant_chunk`` variants at a time).
    k
        Number of PCs; ``1 <= k < n_samples`` and ``k <= n_variants`` used.
    ld_thin
        ``None`` (use every variant) or an integer ``s >= 1``: keep every ``s``-th variant
        (positions 0, s, 2s, ... of ``genotypes.variants``). This is plain thinning, not r2
        pruning: it cuts the cost by ``s`` and dilutes LD blocks; for r2-based pruning run
        ``plink2 --indep-pairwise`` and pass ``genotypes.subset(variants=...)``.
    n_iter
        Block Krylov passes (each one read of the genotypes; one more cheap pass counts
        genotypes first). 5 is ample when the leading eigenvalues stand clear of the noise
        bulk (structure PCs); raise it for PCs near the bulk, which converge slowly (and
        are not stable between tools anyway).
    oversample
        Extra columns beyond ``k`` per block (``l = k + oversample``, capped at the number
        of samples); the Krylov basis has ``n_iter * l`` columns.
    seed
        Seed of the random start; the same seed gives the same result.
    progress
        Progress bar over passes (``None``: only on a terminal).

    Returns
    -------
    DataFrame indexed like ``genotypes.samples`` with columns ``fid, iid, PC1..PCk``: unit
    eigenvectors over samples (as in plink2's ``.eigenvec``), signs fixed so that the
    largest-|loading| sample is positive. ``attrs``: ``eigenvalues`` (list of k floats,
    GRM ``X X^T / M`` eigenvalues, plink2 ``.eigenval`` scale), ``variance_explained``
    (eigenvalue / trace of the GRM), ``n_variants`` (``M``), ``n_polymorphic``,
    ``n_iter``, ``oversample``, ``seed``, ``ld_thin``.

    Raises
    ------
    InputError
        ``k`` out of range, bad ``n_iter``/``oversample``/``ld_thin``, or fewer than ``k``
        polymorphic variants.
    """

    if not all(hasattr(genotypes, a) for a in ("packed", "samples", "sample_idx", "source")):
        raise InputError(f"pca needs a Genotypes object from gwaslift.read_plink, got {type(genotypes).__name__}")
    where = genotypes.prefix or None
    n = genotypes.n_samples
    k = _check_int("k", k, 1, where)
    n_iter = _check_int("n_iter", n_iter, 1, where)
    oversample = _check_int("oversample", oversample, 0, where)
    if k >= n:
        raise InputError(f"k = {k} PCs need more than k samples; the genotypes have {n}", where)
    if ld_thin is not None:
        ld_thin = _check_int("ld_thin", ld_thin, 1, where)
        genotypes = genotypes.subset(variants=np.arange(0, genotypes.n_variants, ld_thin))
    m = genotypes.n_variants
    if k > m:
        raise InputError(f"k = {k} PCs need at least k variants; {m} are used", where)

    passes = progress_bar(range(n_iter + 1), total=n_iter + 1, desc="pca passes", progress=progress)
    passes = iter(passes)

    with blas_threads(1):
        return _pca_passes(genotypes, k, n_iter, oversample, seed, ld_thin, passes, where)


def _pca_passes(genotypes, k, n_iter, oversample, seed, ld_thin, passes, where) -> pd.DataFrame:
    """The passes of :func:`pca` over validated input (see there)."""
    import dask

    n, m = genotypes.shape
    n_file = genotypes.source.n_samples
    sidx = None
    if not genotypes.all_samples:
        # one graph key for the sample positions, not a copy embedded in every task
        sidx = dask.delayed(np.asarray(genotypes.sample_idx), pure=True)
    blocks = list(genotypes.packed.to_delayed().ravel())
    bounds = list(genotypes.variant_blocks())

    # pass 0: genotype counts (the QC counting pass, one home for it) -> standardization tables
    next(passes)
    from .qc import genotype_counts

    hom_a1, het, hom_a2, missing = genotype_counts(genotypes, progress=False).variant.T
    values, sumsq = standardization_table(np.stack([hom_a1, missing, het, hom_a2], axis=1))
    n_poly = int(np.count_nonzero(values.any(axis=1)))
    if n_poly < k:
        raise InputError(f"only {n_poly} polymorphic variants; {k} PCs need at least {k}", where)
    value_blocks = [values[a:b] for a, b in bounds]

    rng = np.random.default_rng(seed)
    l = min(k + oversample, n)
    q = _orthonormal(rng.standard_normal((n, l)))
    product = dask.delayed(block_gram_product, pure=True)
    basis, images = [], []  # orthonormal blocks Q_i and their images K' Q_i (K' = X X^T)
    for i, _ in enumerate(passes):
        qd = dask.delayed(q.astype(np.float32), pure=True)
        parts = [product(b, v, qd, n_file, sidx) for b, v in zip(blocks, value_blocks)]
        (y,) = dask_compute(_tree_sum(parts))
        basis.append(q)
        images.append(y)
        dim = sum(b.shape[1] for b in basis)
        if i == n_iter - 1 or dim >= n:
            break
        q = _next_block(np.hstack(basis), y, min(l, n - dim))
    eigenvalues, u = _rayleigh_ritz(np.hstack(basis), np.hstack(images), k)
    u = flip_signs(u)
    eigenvalues = eigenvalues / m
    trace = float(sumsq.sum()) / m

    cols = [f"PC{i + 1}" for i in range(k)]
    out = pd.DataFrame(u, index=genotypes.samples.index, columns=cols)
    out.insert(0, "iid", genotypes.samples["iid"].to_numpy())
    out.insert(0, "fid", genotypes.samples["fid"].to_numpy())
    out.attrs.update(
        eigenvalues=[float(x) for x in eigenvalues],
        variance_explained=[float(x / trace) if trace > 0 else math.nan for x in eigenvalues],
        n_variants=int(m),
        n_polymorphic=n_poly,
        n_iter=n_iter,
        oversample=oversample,
        seed=seed,
        ld_thin=ld_thin,
    )
    return out
