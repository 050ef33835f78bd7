"""numba kernels of the per-variant regressions.

* :func:`linear_sums`: one chunk's per-variant sums of the linear GWAS straight from packed
  .bed rows (:func:`gwaslift.assoc.linear_kernel` computes the same from decoded blocks;
  the statistics are computed from the sums in assoc.py).
* :func:`logistic_start_sums` and :func:`logistic_score_info`: the sums a logistic fit
  starts from, and one Newton iteration's score and information, per variant of a decoded
  block (``assoc._start_sums`` and ``assoc._score_info``; the numpy path is
  ``assoc._logistic_grad_hess``).

A module of its own so that numba can cache the compiled kernels on disk (module-level
functions) and so that importing it is the one place that needs numba: assoc.py loads it
lazily (``_util.load_numba_module``) and keeps its numpy path where it cannot be loaded.

Why kernels: the numpy path decodes blocks of 32 variants to float64 and hands
``D @ [Q, y, 1]`` to BLAS, whose GEMM is poorly blocked for this skinny shape (OpenBLAS ran
(32, 10,000) x (10,000, 13) at ~7 GFLOP/s on one core), and its many small numpy calls
hold the GIL, so that two Dask threads did not run in parallel; missing calls cost a dense
``(B, n) @ (n, ~c^2/2)`` product. The linear kernel makes one GIL-free pass that decodes
four variants into a cache-sized float64 scratch, forms their dot products with ``V``'s
columns four at a time (16 independent sums: the loads of a dosage and of a ``V`` value
are each used four times), and adds the correction rows of the missing samples only. A
logistic Newton iteration made ~10 passes over (block, n) arrays in numpy (linear
predictor, expit, residual, weights, their products with Q and the genotype); the kernel
makes them in one pass over cache-sized tiles of samples, and leaves only the covariate
block ``Q' W Q`` to a BLAS GEMM.
"""

import math

import numba as nb
import numpy as np

#: A1 dosage of each 2-bit .bed code (io/packed.py's table), 0 for a missing call (code 1).
_DOSAGE = np.array([2.0, 0.0, 1.0, 0.0])

# reassoc lets LLVM vectorize the sums (several partial sums per accumulator); their order is
# fixed by n alone, so a variant's sums do not depend on the chunk or the other variants of
# its group of four
_FAST = {"reassoc", "contract"}


@nb.njit(inline="always", fastmath=_FAST)
def _dot4x4(d0, d1, d2, d3, w0, w1, w2, w3):
    """The 16 dot products of four dosage rows with four V columns (all length n)."""
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = 0.0
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = 0.0
    for i in range(d0.shape[0]):
        x0, x1, x2, x3 = d0[i], d1[i], d2[i], d3[i]
        v0, v1, v2, v3 = w0[i], w1[i], w2[i], w3[i]
        a00 += x0 * v0
        a01 += x0 * v1
        a02 += x0 * v2
        a03 += x0 * v3
        a10 += x1 * v0
        a11 += x1 * v1
        a12 += x1 * v2
        a13 += x1 * v3
        a20 += x2 * v0
        a21 += x2 * v1
        a22 += x2 * v2
        a23 += x2 * v3
        a30 += x3 * v0
        a31 += x3 * v1
        a32 += x3 * v2
        a33 += x3 * v3
    return (a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33)


#: ``_BYTE_DOSAGE[b]``: the four A1 dosages packed in byte ``b`` (0 where missing);
#: ``_BYTE_COUNTS[b]``: its numbers of codes 0 (hom A1), 1 (missing), 2 (het), 3.
_BYTE_CODES = (np.arange(256)[:, None] >> (2 * np.arange(4))) & 3
_BYTE_DOSAGE = _DOSAGE[_BYTE_CODES]
_BYTE_COUNTS = (_BYTE_CODES[:, :, None] == np.arange(4)).sum(axis=1).astype(np.int64)


@nb.njit(inline="always")
def _decode_row(packed_row, n_file, row, d, miss):
    """Decode one .bed row into ``d`` (n,) float64 (A1 dosage, 0 where missing); the design
    rows of the missing samples go to ``miss``. Returns (missing calls, hets, hom A1).

    Branch-free but for missing calls (rare): genotype codes are unpredictable, and a
    branch per sample on them cost ~8 ns a genotype in mispredictions."""
    nm = 0
    het = 0
    hom = 0
    if row.shape[0] == 0:
        full = n_file >> 2
        for b in range(full):
            byte = packed_row[b]
            for s in range(4):
                d[4 * b + s] = _BYTE_DOSAGE[byte, s]
            hom += _BYTE_COUNTS[byte, 0]
            het += _BYTE_COUNTS[byte, 2]
            if _BYTE_COUNTS[byte, 1] > 0:
                for s in range(4):
                    if _BYTE_CODES[byte, s] == 1:
                        miss[nm] = 4 * b + s
                        nm += 1
        for i in range(4 * full, n_file):  # the last byte's samples (not its padding)
            nm, is_het, is_hom = _decode_sample(packed_row, i, i, d, miss, nm)
            het += is_het
            hom += is_hom
    else:
        for i in range(n_file):
            if row[i] >= 0:
                nm, is_het, is_hom = _decode_sample(packed_row, i, row[i], d, miss, nm)
                het += is_het
                hom += is_hom
    return nm, het, hom


@nb.njit(inline="always")
def _decode_sample(packed_row, i, r, d, miss, nm):
    """File sample ``i`` of a .bed row into ``d[r]``; a missing call appends ``r`` to
    ``miss[nm:]``. Returns (new nm, is het, is hom A1)."""
    code = (packed_row[i >> 2] >> (2 * (i & 3))) & 3
    d[r] = _DOSAGE[code]
    if code == 1:
        miss[nm] = r
        nm += 1
    return nm, code == 2, code == 0


@nb.njit(nogil=True, cache=True, fastmath=_FAST)
def linear_sums(packed, n_file, row, Vt, c, k, G, KM, VM, cnt):
    """Per-variant sums of one chunk over the samples used.

    Parameters
    ----------
    packed : (B, ceil(n_file / 4)) uint8, .bed rows.
    n_file : int, samples in the .bed rows.
    row : (n_file,) int64, the design row of each file sample (-1: not used); or a
        zero-length array when every file sample is used, in file order (n == n_file).
    Vt : (p4, n) float64, C-contiguous, ``p4`` a multiple of 4: the transposed columns to
        sum against the dosages: ``c`` covariate-basis rows ``q``, then ``k`` residual
        phenotype rows ``y`` (zero rows as padding).

    Outputs (overwritten)
    ---------------------
    G : (B4, p4), ``B4`` = B rounded up to a multiple of 4: sum over observed samples of
        ``d_i Vt[:, i]`` (``d`` = A1 dosage); rows from B on are zero sums (scratch).
    KM : (B, T + c k + k), T = c (c + 1) / 2: sum over missing samples of their linear
        correction rows (``assoc._correction_rows``): ``q_a q_b`` (a <= b, row-major upper
        triangle), ``q_a y_j`` (phenotype by phenotype), ``y_j^2``; formed from the sample's
        column of Vt (the same products as stored rows, summed in the same order).
    VM : (B, p4) sum over missing samples of ``Vt[:, i]``.
    cnt : (B, 3) int64: missing calls, sum of d, sum of d^2 (observed samples; exact).
    """
    B = packed.shape[0]
    p4, n = Vt.shape
    T = c * (c + 1) // 2
    v = np.empty(c + k)
    # four separate scratch rows: as views of one 2-D array LLVM did not vectorize the
    # dot products (4x slower)
    d0, d1, d2, d3 = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    miss = np.empty((4, n), np.int64)
    nms = np.zeros(4, np.int64)
    for j0 in range(0, B, 4):
        nv = min(4, B - j0)
        for t in range(4):
            dt = d0 if t == 0 else d1 if t == 1 else d2 if t == 2 else d3
            if t < nv:
                nm, het, hom = _decode_row(packed[j0 + t], n_file, row, dt, miss[t])
                nms[t] = nm
                cnt[j0 + t, 0] = nm
                cnt[j0 + t, 1] = het + 2 * hom
                cnt[j0 + t, 2] = het + 4 * hom
            else:
                dt[:] = 0.0  # a short last group: sums of zeros, not written out
        for k0 in range(0, p4, 4):
            s = _dot4x4(d0, d1, d2, d3, Vt[k0], Vt[k0 + 1], Vt[k0 + 2], Vt[k0 + 3])
            # constant tuple indices: a loop over s[4 * t + ...] stopped LLVM from
            # vectorizing the dot products (3x slower)
            G[j0, k0], G[j0, k0 + 1], G[j0, k0 + 2], G[j0, k0 + 3] = s[0], s[1], s[2], s[3]
            G[j0 + 1, k0], G[j0 + 1, k0 + 1], G[j0 + 1, k0 + 2], G[j0 + 1, k0 + 3] = s[4], s[5], s[6], s[7]
            G[j0 + 2, k0], G[j0 + 2, k0 + 1], G[j0 + 2, k0 + 2], G[j0 + 2, k0 + 3] = s[8], s[9], s[10], s[11]
            G[j0 + 3, k0], G[j0 + 3, k0 + 1], G[j0 + 3, k0 + 2], G[j0 + 3, k0 + 3] = s[12], s[13], s[14], s[15]
        for t in range(nv):
            j = j0 + t
            KM[j, :] = 0.0
            VM[j, :] = 0.0
            for m in range(nms[t]):
                r = miss[t, m]
                for a in range(c + k):
                    v[a] = Vt[a, r]
                u = 0
                for a in range(c):
                    for b in range(a, c):
                        KM[j, u] += v[a] * v[b]
                        u += 1
                for h in range(k):
                    for a in range(c):
                        KM[j, T + h * c + a] += v[a] * v[c + h]
                for h in range(k):
                    KM[j, T + c * k + h] += v[c + h] * v[c + h]
                for a in range(p4):
                    VM[j, a] += Vt[a, r]


# --------------------------------------------------------------------------------------
# logistic regression: one Newton iteration's score and information, fused per variant
# --------------------------------------------------------------------------------------
#: Samples per tile of the fused logistic pass: the tile's work arrays (a few x 8 KB) and
#: the c rows of Q^T it reads stay in L1/L2.
_TILE = 512

# exp by Cody-Waite reduction: exp(x) = 2^k exp(r), |r| <= ln(2)/2, exp(r) by its Taylor
# polynomial to degree 13 (truncation < 1e-17 relative), 2^k built from its exponent bits.
# libm's exp is a call per element that LLVM cannot vectorize; this is plain arithmetic
# that it can, and agrees with numpy's exp to a few ulp (tested).
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_EXP_CLAMP = 708.0   # exp(+-708) and 2^k are normal doubles; expit there is 0 or 1 to ~1e-308


@nb.njit(inline="always", fastmath=_FAST)
def _dot1x4(d, s0, s1, s2, s3):
    """The dot products of one row ``d`` with four rows (all length n)."""
    a0 = a1 = a2 = a3 = 0.0
    for i in range(d.shape[0]):
        x = d[i]
        a0 += x * s0[i]
        a1 += x * s1[i]
        a2 += x * s2[i]
        a3 += x * s3[i]
    return a0, a1, a2, a3


#: Horner coefficients, highest power first: exp(r) = 1 + r * (1 + r/2 + ... + r^12/13!)
#: and atanh(s) / s = 1 + s^2/3 + ... + s^22/23
_EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(13, 0, -1))
_ATANH_SERIES = tuple(1.0 / k for k in range(23, 0, -2))


@nb.njit(inline="always", fastmath=_FAST)
def _horner(coefs, x):
    """coefs[0] x^(n-1) + ... + coefs[n-1] by Horner's rule (a constant tuple: unrolled)."""
    p = coefs[0]
    for i in range(1, len(coefs)):
        p = p * x + coefs[i]
    return p


@nb.njit(inline="always", fastmath=_FAST)
def _exp_tile(x, e, kbits, kval, m):
    """e[:m] = exp(x[:m]) (x clamped to +-708); ``kbits`` (int64) and ``kval`` (its float64
    view) are scratch of the same length."""
    for t in range(m):
        v = min(max(x[t], -_EXP_CLAMP), _EXP_CLAMP)
        k = np.floor(v * _LOG2E + 0.5)
        r = v - k * _LN2_HI - k * _LN2_LO
        e[t] = _horner(_EXP_TAYLOR, r) * r + 1.0
        kbits[t] = (np.int64(k) + 1023) << 52
    for t in range(m):
        e[t] *= kval[t]


@nb.njit(inline="always", fastmath=_FAST)
def _add_q_combination(acc, w, Qt, kq, i0, m):
    """acc[:m] += sum_{k < kq} w[k] q_k over samples i0 .. i0 + m - 1 (q_k = Qt[k]). Four
    covariates per pass over the tile: fewer loads and stores of acc. Tile views
    throughout: indices from range() alone let LLVM vectorize the loops (an index like
    i0 + t keeps numba's negative-index check)."""
    k4 = kq - kq % 4
    for k in range(0, k4, 4):
        w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        q0, q1 = Qt[k, i0:i0 + m], Qt[k + 1, i0:i0 + m]
        q2, q3 = Qt[k + 2, i0:i0 + m], Qt[k + 3, i0:i0 + m]
        for t in range(m):
            acc[t] += w0 * q0[t] + w1 * q1[t] + w2 * q2[t] + w3 * q3[t]
    for k in range(k4, kq):
        wk = w[k]
        qt = Qt[k, i0:i0 + m]
        for t in range(m):
            acc[t] += wk * qt[t]


@nb.njit(inline="always", fastmath=_FAST)
def _eta_tile(theta, a, Qt, i0, m, gt, eta):
    """eta[:m] = theta[a, c] g + sum_k theta[a, k] q_k over samples i0 .. i0 + m - 1
    (``gt``: the tile's genotypes)."""
    c = Qt.shape[0]
    bg = theta[a, c]
    for t in range(m):
        eta[t] = bg * gt[t]
    _add_q_combination(eta, theta[a], Qt, c, i0, m)


@nb.njit(inline="always", fastmath=_FAST)
def _add_q_dots(x, Qt, i0, m, out, a):
    """out[a, k] += sum_t x[t] Qt[k, i0 + t] for every covariate k (four per pass)."""
    c = Qt.shape[0]
    k4 = c - c % 4
    xm = x[:m]
    for k in range(0, k4, 4):
        s = _dot1x4(xm, Qt[k, i0:i0 + m], Qt[k + 1, i0:i0 + m], Qt[k + 2, i0:i0 + m],
                    Qt[k + 3, i0:i0 + m])
        out[a, k] += s[0]
        out[a, k + 1] += s[1]
        out[a, k + 2] += s[2]
        out[a, k + 3] += s[3]
    for k in range(k4, c):
        qt = Qt[k, i0:i0 + m]
        acc = 0.0
        for t in range(m):
            acc += xm[t] * qt[t]
        out[a, k] += acc


# error_model="numpy": no ZeroDivisionError check per division, which kept the loop scalar
@nb.njit(nogil=True, cache=True, fastmath=_FAST, error_model="numpy")
def logistic_score_info(D, M, Qt, y, theta, idx, U, Hgc, Hgg, W):
    """Score and information of the logistic model for each variant ``idx[a]`` at
    ``theta[a]``, except the covariate block of the information (``W @ K``, left to BLAS's
    GEMM, which reuses each sample's ``q_k q_l`` products across variants, or to
    :func:`weighted_gram` for a few variants).

    Parameters
    ----------
    D : (B, n) float64, A1 dosages (0 at missing calls).
    M : (B, n) float64, 1 at missing calls (they add nothing); (0, 0) when none in D.
    Qt : (c, n) float64, C-contiguous: the orthonormal covariate basis, transposed.
    y : (n,) float64, 0/1 phenotype.
    theta : (A, c + 1) coefficients (on Q's columns, then the genotype's).
    idx : (A,) int64, the rows of D to fit.

    Outputs (overwritten), row a for variant ``idx[a]``
    ---------------------------------------------------
    U : (A, c + 1) score: Q'(y - p), then g'(y - p).
    Hgc : (A, c) g' W Q; Hgg : (A,) g' W g.
    W : (A, n) weights p (1 - p), 0 at missing calls (the caller's ``W @ K`` is Q' W Q).

    Each variant's sums run in a fixed order set by n alone: a variant's result does not
    depend on the others fitted with it.
    """
    c, n = Qt.shape
    has_m = M.shape[0] > 0
    eta = np.empty(_TILE)
    e = np.empty(_TILE)
    kbits = np.empty(_TILE, np.int64)
    kval = kbits.view(np.float64)
    r = np.empty(_TILE)
    wd = np.empty(_TILE)
    A = idx.shape[0]
    U[:, :] = 0.0
    Hgc[:, :] = 0.0
    Hgg[:] = 0.0
    # samples outermost, variants inside: a tile's rows of Q^T (c x 4 KB) serve every
    # variant from cache (variant-outer streamed all of Q^T per variant: 8.8 MB at n =
    # 100,000, which made the pass memory-bound). Each variant's sums still run in tile
    # order, so its result does not depend on the others.
    for i0 in range(0, n, _TILE):
        m = min(_TILE, n - i0)
        yt = y[i0:i0 + m]
        for a in range(A):
            j = idx[a]
            dt = D[j, i0:i0 + m]
            _eta_tile(theta, a, Qt, i0, m, dt, eta)
            for t in range(m):
                eta[t] = -eta[t]
            _exp_tile(eta, e, kbits, kval, m)   # e = exp(-eta)
            for t in range(m):
                p = 1.0 / (1.0 + e[t])
                r[t] = yt[t] - p
                wd[t] = p * p * e[t]            # p (1 - p) without the cancellation near p = 1
            if has_m:  # missing calls add nothing (a loop of its own: branch-free loops vectorize)
                mt = M[j, i0:i0 + m]
                for t in range(m):
                    obs = 1.0 - mt[t]
                    r[t] *= obs
                    wd[t] *= obs
            wt = W[a, i0:i0 + m]
            for t in range(m):
                wt[t] = wd[t]
                wd[t] *= dt[t]
            _add_q_dots(r, Qt, i0, m, U, a)
            _add_q_dots(wd, Qt, i0, m, Hgc, a)
            ug = 0.0
            hgg = 0.0
            for t in range(m):
                ug += r[t] * dt[t]
                hgg += wd[t] * dt[t]
            U[a, c] += ug
            Hgg[a] += hgg


#: Most variants whose (c4, c4) sums :func:`weighted_gram` holds at once (bytes): bounds
#: its accumulators for any covariate count.
_GRAM_ACC_BYTES = 2**21


@nb.njit(nogil=True, cache=True, fastmath=_FAST)
def weighted_gram(W, Qt, out):
    """Per-row weighted Gram matrices: ``out[a]`` = upper triangle (row-major, as
    ``np.triu_indices(c)``) of ``Q' diag(W[a]) Q``.

    W : (A, n) float64 weights; Qt : (c, n) float64, C-contiguous; out : (A, c (c + 1) / 2).

    Each tile of samples of Q is read once for a group of variants (it stays in cache while
    each variant's weighted rows are formed and multiplied), so Q is streamed from memory
    once per group, not once per variant: at 500,000 samples and 42 covariates Q is 168 MB
    (measured 70 -> 48-53 ns a sample and variant). A variant's sums are added in the same
    order whatever the group, so its result does not depend on the other rows of W. Where
    the products ``q_k q_l`` are not stored (:class:`gwaslift.assoc.TriProducts` beyond its
    memory cap) this beats forming them for a GEMM (measured 3-4x at 100,000 samples).
    """
    A, n = W.shape
    c = Qt.shape[0]
    c4 = -(-c // 4) * 4
    wq = np.zeros((c4, _TILE))  # rows from c on stay zero (padding of the last group)
    group = max(1, min(A, _GRAM_ACC_BYTES // (8 * c4 * c4)))
    acc = np.empty((group, c4, c4))
    for a0 in range(0, A, group):
        g = min(group, A - a0)
        acc[:, :, :] = 0.0
        for i0 in range(0, n, _TILE):
            m = min(_TILE, n - i0)
            for u in range(g):
                wt = W[a0 + u, i0:i0 + m]
                for k in range(c):
                    qk = Qt[k, i0:i0 + m]
                    row = wq[k]
                    for t in range(m):
                        row[t] = wt[t] * qk[t]
                # 4 x 4 blocks of the upper triangle (16 sums per pass: each load used
                # four times); past the last row of Q the last one repeats, and is not
                # written
                for k0 in range(0, c, 4):
                    for l0 in range(k0, c, 4):
                        r = _dot4x4(wq[k0, :m], wq[k0 + 1, :m], wq[k0 + 2, :m], wq[k0 + 3, :m],
                                    Qt[l0, i0:i0 + m], Qt[min(l0 + 1, c - 1), i0:i0 + m],
                                    Qt[min(l0 + 2, c - 1), i0:i0 + m], Qt[min(l0 + 3, c - 1), i0:i0 + m])
                        # constant tuple indices (a loop over r[4 * u + v] kept the dot
                        # products from vectorizing in linear_sums)
                        acc[u, k0, l0] += r[0]
                        acc[u, k0, l0 + 1] += r[1]
                        acc[u, k0, l0 + 2] += r[2]
                        acc[u, k0, l0 + 3] += r[3]
                        acc[u, k0 + 1, l0] += r[4]
                        acc[u, k0 + 1, l0 + 1] += r[5]
                        acc[u, k0 + 1, l0 + 2] += r[6]
                        acc[u, k0 + 1, l0 + 3] += r[7]
                        acc[u, k0 + 2, l0] += r[8]
                        acc[u, k0 + 2, l0 + 1] += r[9]
                        acc[u, k0 + 2, l0 + 2] += r[10]
                        acc[u, k0 + 2, l0 + 3] += r[11]
                        acc[u, k0 + 3, l0] += r[12]
                        acc[u, k0 + 3, l0 + 1] += r[13]
                        acc[u, k0 + 3, l0 + 2] += r[14]
                        acc[u, k0 + 3, l0 + 3] += r[15]
        for u in range(g):
            t = 0
            for k in range(c):
                for l in range(k, c):
                    out[a0 + u, t] = acc[u, k, l]
                    t += 1


# error_model="numpy": see logistic_score_info
@nb.njit(nogil=True, cache=True, fastmath=_FAST, error_model="numpy")
def logistic_start_sums(D, M, S, w0, Q, r0, G, s2w, KM, mcnt):
    """Per-variant sums a logistic fit needs before its first Newton step (the step at
    the covariate-only fit, whose weights ``w0`` every variant shares).

    Parameters
    ----------
    D : (B, n) float64 dosages (0 at missing calls); M : (B, n) float64, 1 at missing
        calls, or (0, 0) when none in D.
    S : (p, n) float64, C-contiguous: the rows to sum against each dosage row; the last
        one is the 0/1 phenotype.
    w0, r0 : (n,) float64, null-fit weights and residuals; Q : (n, c) float64, the
        orthonormal covariate basis (C-contiguous).

    Outputs (overwritten)
    ---------------------
    G : (B, p) ``D @ S.T``.
    s2w : (B, 2) sum of d^2 and sum of w0 d^2.
    KM : (B, 2T + c + 1), T = c (c + 1) / 2, sums over the variant's missing calls of
        the logistic correction rows (``assoc._correction_rows``): ``w0 q_a q_b`` (a <= b,
        row-major upper triangle), ``r0 q_a``, 0, ``q_a q_b``. Formed from the sample's row
        of Q (88 bytes at c = 11, in cache) rather than read from a stored row (over 1 KB).
    mcnt : (B, 2) number of missing calls and the sum of y over them.

    Fixed summation order per variant (set by n), as in :func:`logistic_score_info`.
    """
    B, n = D.shape
    p = S.shape[0]
    c = Q.shape[1]
    T = c * (c + 1) // 2
    y = S[p - 1]
    has_m = M.shape[0] > 0
    zero = np.zeros(_TILE)
    accW, accK, accR = np.empty((c, c)), np.empty((c, c)), np.empty(c)
    where = np.empty(n, np.int64)
    G[:, :] = 0.0
    s2w[:, :] = 0.0
    # samples outermost (tiles of S's rows serve every variant from cache, as in
    # logistic_score_info); four variants against four rows at a time: each load is used
    # four times
    for i0 in range(0, n, _TILE):
        m = min(_TILE, n - i0)
        for j0 in range(0, B, 4):
            nv = min(4, B - j0)
            d0 = D[j0, i0:i0 + m]
            d1 = D[j0 + 1, i0:i0 + m] if nv > 1 else zero[:m]
            d2 = D[j0 + 2, i0:i0 + m] if nv > 2 else zero[:m]
            d3 = D[j0 + 3, i0:i0 + m] if nv > 3 else zero[:m]
            for k in range(0, p, 4):
                # past the last row the last one repeats; those sums are not written
                s = _dot4x4(d0, d1, d2, d3, S[k, i0:i0 + m], S[min(k + 1, p - 1), i0:i0 + m],
                            S[min(k + 2, p - 1), i0:i0 + m], S[min(k + 3, p - 1), i0:i0 + m])
                for t in range(nv):
                    for u in range(min(4, p - k)):
                        G[j0 + t, k + u] += s[4 * t + u]
        wt = w0[i0:i0 + m]
        for j in range(B):
            dt = D[j, i0:i0 + m]
            dd = 0.0
            ddw = 0.0
            for t in range(m):
                x = dt[t] * dt[t]
                dd += x
                ddw += x * wt[t]
            s2w[j, 0] += dd
            s2w[j, 1] += ddw
    for j in range(B):
        nm = 0.0
        ym = 0.0
        accW[:, :] = 0.0
        accK[:, :] = 0.0
        accR[:] = 0.0
        if has_m:
            mj = M[j]
            nmi = 0
            for i in range(n):  # the missing calls' samples first: a tight scan
                if mj[i] != 0.0:
                    where[nmi] = i
                    nmi += 1
            for m in range(nmi):
                i = where[m]
                nm += 1.0
                ym += y[i]
                qi = Q[i]
                wi = w0[i]
                ri = r0[i]
                for a in range(c):  # full c x c outer products: fixed-length loops vectorize
                    qa = qi[a]
                    accR[a] += ri * qa
                    wqa = wi * qa
                    for b in range(c):
                        accW[a, b] += wqa * qi[b]
                        accK[a, b] += qa * qi[b]
        t = 0
        for a in range(c):
            KM[j, T + a] = accR[a]
            for b in range(a, c):
                KM[j, t] = accW[a, b]
                KM[j, T + c + 1 + t] = accK[a, b]
                t += 1
        KM[j, T + c] = 0.0
        mcnt[j, 0] = nm
        mcnt[j, 1] = ym


# --------------------------------------------------------------------------------------
# Firth's penalized logistic regression: the two per-sample passes of one evaluation
# --------------------------------------------------------------------------------------
_SQRT2 = 1.4142135623730951
_LN2 = 0.6931471805599453


@nb.njit(inline="always", fastmath=_FAST)
def _log1p_unit(e):
    """log(1 + e) for e in [0, 1], to 4 ulp (tested), in plain arithmetic that vectorizes: with
    u = 1 + e in [1, 2], log(u) = k ln 2 + log(m) (m = u or u / 2, in [1/sqrt 2, sqrt 2])
    by the atanh series of s = (m - 1) / (m + 1), |s| <= 0.172, to s^23; then the
    correction -((u - 1) - e) / u restores the bits of e that u = 1 + e rounded off."""
    u = 1.0 + e
    big = u > _SQRT2
    m = u * 0.5 if big else u
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    lg = 2.0 * s * _horner(_ATANH_SERIES, s2) + (_LN2 if big else 0.0)
    return lg - ((u - 1.0) - e) / u


# error_model="numpy": see logistic_score_info
@nb.njit(nogil=True, cache=True, fastmath=_FAST, error_model="numpy")
def firth_pass1(G, O, Qt, y, theta, loglik, Hgc, Hgg, W, P):
    """Per-variant sums of the logistic likelihood at ``theta`` for Firth's fit
    (``gwaslift.firth.firth_logistic_batch``): the log-likelihood and the information
    except its covariate block (``Q' W Q``, from the weights ``W``, as in
    :func:`logistic_score_info`).

    G : (b, n) float64 dosages (orthogonalized); O : (b, n) float64, 1 where observed, 0
    where missing, or (0, 0) when all are observed; Qt : (c, n); y : (n,) 0/1;
    theta : (b, c + 1).
    Outputs: loglik (b,), Hgc (b, c) = g' W Q, Hgg (b,) = g' W g, W (b, n) weights
    p (1 - p) (0 where missing), P (b, n) fitted probabilities (for :func:`firth_pass2`).
    """
    b, n = G.shape
    c = Qt.shape[0]
    has_o = O.shape[0] > 0
    eta = np.empty(_TILE)
    e = np.empty(_TILE)
    kbits = np.empty(_TILE, np.int64)
    kval = kbits.view(np.float64)
    ll = np.empty(_TILE)
    wd = np.empty(_TILE)
    Hgc[:, :] = 0.0
    loglik[:] = 0.0
    Hgg[:] = 0.0
    for i0 in range(0, n, _TILE):  # samples outermost, as in logistic_score_info
        m = min(_TILE, n - i0)
        yt = y[i0:i0 + m]
        for a in range(b):
            gt = G[a, i0:i0 + m]
            _eta_tile(theta, a, Qt, i0, m, gt, eta)
            for t in range(m):
                ll[t] = -abs(eta[t])
            _exp_tile(ll, e, kbits, kval, m)      # e = exp(-|eta|), in (0, 1]
            pt = P[a, i0:i0 + m]
            wt = W[a, i0:i0 + m]
            for t in range(m):
                et = e[t]
                inv = 1.0 / (1.0 + et)
                x = eta[t]
                pos = x >= 0.0
                p = inv if pos else et * inv          # expit(eta) from the same exp
                pt[t] = p
                wt[t] = et * inv * inv                # p (1 - p)
                # y log p + (1 - y) log(1 - p) = y eta - softplus(eta)
                ll[t] = yt[t] * x - (_log1p_unit(et) + (x if pos else 0.0))
            if has_o:
                ot = O[a, i0:i0 + m]
                for t in range(m):
                    ll[t] *= ot[t]
                    wt[t] *= ot[t]
            lsum = 0.0
            for t in range(m):
                lsum += ll[t]
                wd[t] = wt[t] * gt[t]
            _add_q_dots(wd, Qt, i0, m, Hgc, a)
            hgg = 0.0
            for t in range(m):
                hgg += wd[t] * gt[t]
            loglik[a] += lsum
            Hgg[a] += hgg


@nb.njit(nogil=True, cache=True, fastmath=_FAST, error_model="numpy")
def firth_pass2(G, O, Qt, y, P, W, Linv, U):
    """Firth's modified score ``U* = X' (y - p + h (1/2 - p))`` per variant, ``h`` the
    diagonal of the weighted hat matrix: ``h_i = w_i ||Linv x_i||^2``, ``x_i = (q_i, g_i)``,
    ``Linv`` the inverse of the Cholesky factor of ``X' W X``.

    G, O, Qt, y : as :func:`firth_pass1`; P, W : its outputs; Linv : (b, c + 1, c + 1)
    lower triangular (zero where ``X' W X`` is not positive definite: then h = 0).
    Output: U (b, c + 1), on Q's columns then the genotype.
    """
    b, n = G.shape
    c = Qt.shape[0]
    p1 = c + 1
    has_o = O.shape[0] > 0
    z = np.empty(_TILE)
    quad = np.empty(_TILE)
    r = np.empty(_TILE)
    U[:, :] = 0.0
    for i0 in range(0, n, _TILE):  # samples outermost, as in logistic_score_info
        m = min(_TILE, n - i0)
        yt = y[i0:i0 + m]
        for a in range(b):
            L = Linv[a]
            gt = G[a, i0:i0 + m]
            for t in range(m):
                quad[t] = 0.0
            # ||Linv x||^2 row by row of Linv: z_j = sum_{k <= j} Linv[j, k] x_k
            for j in range(p1):
                for t in range(m):
                    z[t] = 0.0
                _add_q_combination(z, L[j], Qt, min(j + 1, c), i0, m)  # row j's covariate columns
                if j == c:
                    lg = L[c, c]
                    for t in range(m):
                        z[t] += lg * gt[t]
                for t in range(m):
                    quad[t] += z[t] * z[t]
            pt = P[a, i0:i0 + m]
            wt = W[a, i0:i0 + m]
            for t in range(m):
                r[t] = yt[t] - pt[t] - wt[t] * quad[t] * (pt[t] - 0.5)
            if has_o:
                ot = O[a, i0:i0 + m]
                for t in range(m):
                    r[t] *= ot[t]
            _add_q_dots(r, Qt, i0, m, U, a)
            su = 0.0
            for t in range(m):
                su += r[t] * gt[t]
            U[a, c] += su
