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
counts are three popcounts of bit masks, and the per-sample missing counts are added
"vertically": a word's missing-call mask is split into two words of 4-bit
counters (16 samples each) that add up to 15 rows, which are then folded into four words of
8-bit counters (8 samples each) that add up to 255 rows before they are spilled into the
int64 totals. Every step is the same few operations on every word, without branches, so the
word loop vectorizes: 1.4 ns a word on one AVX2 core (an earlier version, which visited
each missing call's bit with a branchy loop, took 4 ns; timed on 100,000 rows of 20,000
samples with 1% missing calls).
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


#: 4-bit counters take up to 15 rows, 8-bit counters 17 groups of 15 = 255 rows
_NIBBLE_ROWS = 15
_BYTE_GROUPS = 17
_M11 = np.uint64(0x1111111111111111)
_M0F = np.uint64(0x0F0F0F0F0F0F0F0F)


@nb.njit(nogil=True, cache=True)
def count_rows(packed, n_samples, var3, samp, select):
    """Add the counts of packed .bed rows into ``var3`` and ``samp``.

    ``packed`` (v, >= ceil(n_samples / 4)) uint8, rows over all file samples (any row
    stride or alignment); padding bits of the last byte are ignored. ``select``
    (ceil(n_samples / 32),) uint64: the samples counted, both bits of a sample's 2-bit slot
    set (:func:`selection_words`; all ones = every sample). ``var3`` (v, 3) int64 += het,
    hom A2, missing calls per variant over the selected samples (2-bit codes 10, 11, 01;
    00 = hom A1 is the rest, and what an unselected sample's code becomes). ``samp``
    (n_samples,) int64 += missing calls per sample (0 for unselected ones).
    """
    v = packed.shape[0]
    n_words = (n_samples + 31) // 32
    n_bytes = (n_samples + 3) // 4
    # each row is copied into an aligned word buffer (cheap, in L1), whatever the layout of
    # ``packed``; the last word's padding codes are cleared to 00, which counts as nothing
    buf = np.zeros(n_words, np.uint64)
    buf_bytes = buf.view(np.uint8)
    tail = n_samples - 32 * (n_words - 1)
    last_mask = ~np.uint64(0) if tail == 32 else (np.uint64(1) << np.uint64(2 * tail)) - np.uint64(1)
    # missing calls per sample: sample 32k + 2i in 4-bit counter i of nib_even[k], sample
    # 32k + 2i + 1 in nib_odd[k]; sample 32k + 4b + q in 8-bit counter b of bytes8[q, k]
    nib_even = np.zeros(n_words, np.uint64)
    nib_odd = np.zeros(n_words, np.uint64)
    bytes8 = np.zeros((4, n_words), np.uint64)
    r = 0
    while r < v:
        byte_end = min(v, r + _NIBBLE_ROWS * _BYTE_GROUPS)
        while r < byte_end:
            nib_end = min(byte_end, r + _NIBBLE_ROWS)
            while r < nib_end:
                row = packed[r]
                for b in range(n_bytes):
                    buf_bytes[b] = row[b]
                buf[n_words - 1] &= last_mask
                het = 0
                hom2 = 0
                miss = 0
                for k in range(n_words):
                    w = buf[k] & select[k]
                    lo = w & _M55
                    hi = (w >> np.uint64(1)) & _M55
                    m = lo & ~hi            # bit 2j: sample 32k + j is missing
                    het += _popcount(hi & ~lo)
                    hom2 += _popcount(hi & lo)
                    miss += _popcount(m)
                    nib_even[k] += m & _M11
                    nib_odd[k] += (m >> np.uint64(2)) & _M11
                var3[r, 0] += het
                var3[r, 1] += hom2
                var3[r, 2] += miss
                r += 1
            for k in range(n_words):  # nibbles -> bytes: counter i holds samples 2i (even)
                e = nib_even[k]       # or 2i + 1 (odd); its low/high nibble of byte b is
                o = nib_odd[k]        # sample 4b + 0/2 (even) or 4b + 1/3 (odd)
                bytes8[0, k] += e & _M0F
                bytes8[2, k] += (e >> np.uint64(4)) & _M0F
                bytes8[1, k] += o & _M0F
                bytes8[3, k] += (o >> np.uint64(4)) & _M0F
                nib_even[k] = 0
                nib_odd[k] = 0
        for k in range(n_words):  # bytes -> int64 totals (padding samples are all zero)
            for q in range(4):
                x = bytes8[q, k]
                if x != np.uint64(0):
                    for b in range(8):
                        i = 32 * k + 4 * b + q
                        if i < n_samples:
                            samp[i] += np.int64((x >> np.uint64(8 * b)) & np.uint64(255))
                    bytes8[q, k] = 0

