"""numba kernel of the QC counting pass: genotype counts per variant and missing calls per
sample, straight from packed .bed rows (:func:`gwaslift.qc.count_packed`'s fast path; its
numpy path computes the same with lookup tables and is kept where numba cannot load).

A module of its own so that numba can cache the compiled kernel on disk and so that
importing it is the one place that needs numba (qc.py loads it lazily through
``_util.load_numba_module``).

Why a kernel: the numpy path looks every 16-bit word up in a 512 KiB table and then sums
per-sample missing calls in nibbles, several passes over each chunk in calls that hold the
GIL; it ran at ~0.5 GB of .bed a second on two threads against plink2's ~2 GB/s. Here one
GIL-free pass reads each row as 64-bit words (32 samples): the het, hom-A2 and missing
counts are three popcounts of bit masks, and a sample's missing count is touched only
where a word has a missing call (~1-2% of calls).
"""

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic

_M55 = np.uint64(0x5555555555555555)


@intrinsic
def _ctpop(typingctx, x):
    """LLVM's ctpop on a uint64 (one popcnt instruction; numba has no popcount of its own,
    and LLVM did not recognise the bit-trick version here)."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return types.uint64(types.uint64), codegen


@nb.njit(inline="always")
def _popcount(x):
    """Set bits of a uint64, as int64."""
    return np.int64(_ctpop(x))


@nb.njit(inline="always")
def _word(row, b):
    """The little-endian uint64 of row[b:b+8] (LLVM merges the byte loads into one)."""
    w = np.uint64(0)
    for k in range(8):
        w |= np.uint64(row[b + k]) << np.uint64(8 * k)
    return w


@nb.njit(nogil=True, cache=True)
def count_rows(packed, n_samples, var3, samp):
    """Add the counts of packed .bed rows into ``var3`` and ``samp``.

    ``packed`` (v, >= ceil(n_samples / 4)) uint8, rows over all file samples; padding bits
    of the last byte are ignored. ``var3`` (v, 3) int64 += het, hom A2, missing calls per
    variant (2-bit codes 10, 11, 01; 00 = hom A1 is the rest). ``samp`` (n_samples,)
    int64 += missing calls per sample.
    """
    v = packed.shape[0]
    n_words = n_samples // 32          # 64-bit words of 32 real samples each
    for r in range(v):
        row = packed[r]
        het = 0
        hom2 = 0
        miss = 0
        for k in range(n_words):
            w = _word(row, 8 * k)
            lo = w & _M55
            hi = (w >> np.uint64(1)) & _M55
            het += _popcount(hi & ~lo)
            hom2 += _popcount(hi & lo)
            m = lo & ~hi
            while m != np.uint64(0):   # each missing call: its bit index, then clear it
                bit = _popcount((m & (~m + np.uint64(1))) - np.uint64(1))
                samp[32 * k + (bit >> 1)] += 1
                miss += 1
                m &= m - np.uint64(1)
        for i in range(32 * n_words, n_samples):  # the last samples, not the padding
            code = (row[i >> 2] >> (2 * (i & 3))) & 3
            if code == 2:
                het += 1
            elif code == 3:
                hom2 += 1
            elif code == 1:
                miss += 1
                samp[i] += 1
        var3[r, 0] += het
        var3[r, 1] += hom2
        var3[r, 2] += miss
