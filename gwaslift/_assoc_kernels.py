"""numba kernel of the linear GWAS: one chunk's per-variant sums straight from packed .bed
rows (:func:`gwaslift.assoc.linear_kernel` computes the same from decoded blocks; the
statistics are computed from the sums in assoc.py).

A module of its own so that numba can cache the compiled kernel on disk (module-level
functions) and so that importing it is the one place that needs numba: assoc.py loads it
lazily (``_util.load_numba_module``) and keeps its numpy path where it cannot be loaded.

Why a kernel: the numpy path decodes blocks of 32 variants to float64 and hands
``D @ [Q, y, 1]`` to BLAS, whose GEMM is poorly blocked for this skinny shape (OpenBLAS ran
(32, 10,000) x (10,000, 13) at ~7 GFLOP/s on one core), and its many small numpy calls
hold the GIL, so that two Dask threads did not run in parallel; missing calls cost a dense
``(B, n) @ (n, ~c^2/2)`` product. Here one GIL-free pass decodes four variants into a
cache-sized float64 scratch, forms their dot products with ``V``'s columns four at a time
(16 independent sums: the loads of a dosage and of a ``V`` value are each used four
times), and adds the correction rows of the missing samples only.
"""

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
def linear_sums(packed, n_file, row, Vt, K, G, KM, VM, cnt):
    """Per-variant sums of one chunk over the samples used.

    Parameters
    ----------
    packed : (B, ceil(n_file / 4)) uint8, .bed rows.
    n_file : int, samples in the .bed rows.
    row : (n_file,) int64, the design row of each file sample (-1: not used); or a
        zero-length array when every file sample is used, in file order (n == n_file).
    Vt : (p4, n) float64, C-contiguous, ``p4`` a multiple of 4: the transposed columns to
        sum against the dosages (zero rows as padding).
    K : (n, q) float64, each sample's correction row, summed where its call is missing.

    Outputs (overwritten)
    ---------------------
    G : (B4, p4), ``B4`` = B rounded up to a multiple of 4: sum over observed samples of
        ``d_i Vt[:, i]`` (``d`` = A1 dosage); rows from B on are zero sums (scratch).
    KM : (B, q) sum over missing samples of ``K_i``.
    VM : (B, p4) sum over missing samples of ``Vt[:, i]``.
    cnt : (B, 3) int64: missing calls, sum of d, sum of d^2 (observed samples; exact).
    """
    B = packed.shape[0]
    p4, n = Vt.shape
    q = K.shape[1]
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
                for k in range(q):
                    KM[j, k] += K[r, k]
                for k in range(p4):
                    VM[j, k] += Vt[k, r]
