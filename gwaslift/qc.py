"""Quality control: genotype counts, allele frequencies, call rates, HWE, filters, imputation.

Everything here is computed from the packed 2-bit .bed bytes in one pass over the variant
chunks of a :class:`~gwaslift.io.Genotypes`, never from decoded float dosages:

* :func:`genotype_counts` -- per variant the number of hom-A1 / het / hom-A2 / missing calls
  and per sample the number of missing calls (integers, so results are exactly the same
  for any ``variant_chunk``);
* :func:`allele_stats` / :func:`sample_missingness` / :func:`qc_stats` -- those counts
  labelled as DataFrames (A1 = .bim column 5, the counted allele; ``a1_freq`` is the A1
  frequency among observed alleles, as plink2 ``--freq`` ALT_FREQS when ALT = A1);
* :func:`hwe_exact` -- the Hardy-Weinberg exact test of Wigginton, Cutler & Abecasis (2005),
  as plink2 ``--hardy`` / ``--hwe`` compute it (two-sided, optional mid-p);
* :func:`qc` -- the sample and variant filters in plink2's order;
* :func:`impute_mean` -- the project's single imputation rule for missing dosages.

All selected samples enter every statistic (plink2 restricts ``--freq``/``--hardy`` to
founders unless ``--nonfounders`` is given; that makes no difference when the .fam lists
no parents). Sex chromosomes follow plink2 (checked against plink2 v2.00a3.5 on .bed input;
sex from the .fam: 1 male, 2 female, else unknown; chromosome codes by :func:`chrom_class`):

* ``--freq``/``--maf``: on chrX males are haploid (one allele; a male het counts half an A1),
  females and unknown sex diploid; on chrY only males count, haploid; MT is haploid for all.
* ``--missing``/``--mind``: a non-male's chrY calls count neither as missing nor as called.
* ``--geno``: on chrY the missing fraction is over males only.
* ``--hardy``/``--hwe``: chrX uses the Graffelman-Weir exact test (:func:`hwe_exact_x`;
  females and males, male hets and unknown sex left out); chrY and MT are not tested.
* XY/25 (PAR) and every other chromosome are diploid; plink2 also treats het calls on
  haploid chromosomes as present (not missing) for .bed input, and so does this module.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ._util import LazyKernel, dask_compute, progress_enabled
from .io.packed import unpack_codes
from .io.plink import Genotypes, normalize_chrom

__all__ = [
    "CHROM_DIPLOID", "CHROM_MT", "CHROM_X", "CHROM_Y", "COUNT_COLUMNS", "GenotypeCounts", "SexChromCounts",
    "allele_frequency", "allele_stats", "chrom_class", "count_packed", "genotype_counts", "hwe_exact",
    "hwe_exact_x", "impute_mean", "qc", "qc_stats", "sample_missingness", "sex_chrom_counts",
]

#: Column order of the per-variant count matrix returned by the kernels.
COUNT_COLUMNS = ("n_hom_a1", "n_het", "n_hom_a2", "n_missing")

# Lane layout of the 16-bit lookup tables (one uint16 word = 8 samples' 2-bit codes):
# per-variant table: het count in bits 0-15, hom-A2 in 16-31, missing in 32-47. A word adds
# at most 8 to a lane, so up to 8191 words (65,528 samples) can be summed before a lane
# could overflow into the next one.
_VARIANT_LANE_WORDS = 8191
# Missing calls per sample are summed in 4-bit nibbles over at most 15 variants at a time.
_NIBBLE_ROWS = 15
# Target size of one working buffer: about half of a core's L2 cache.
_BUFFER_BYTES = 1 << 19


@functools.lru_cache(maxsize=1)
def _word_tables() -> np.ndarray:
    """Per-variant lookup table: uint64 of length 65536, indexed by a little-endian uint16
    word holding the 2-bit codes of 8 consecutive samples (code table in io.packed); entry =
    het count | hom-A2 count << 16 | missing count << 32."""
    w = np.arange(65536, dtype=np.uint32)
    codes = (w[:, None] >> (2 * np.arange(8, dtype=np.uint32))) & 3  # (65536, 8)
    het = (codes == 2).sum(1).astype(np.uint64)
    hom_a2 = (codes == 3).sum(1).astype(np.uint64)
    miss = (codes == 1).sum(1).astype(np.uint64)
    return het | (hom_a2 << np.uint64(16)) | (miss << np.uint64(32))


def _count_words(words: np.ndarray, var_out: np.ndarray) -> None:
    """Add the per-variant counts of a (v, W) uint16 array of packed words into ``var_out``
    ((v, 3) int64: het, hom-A2, missing). Codes in padding positions must be 0 (hom A1),
    which adds to none of the three."""
    v, n_words = words.shape
    if v == 0 or n_words == 0:
        return
    variant_lut = _word_tables()
    rows = int(max(1, _BUFFER_BYTES // (8 * n_words)))
    buf = np.empty((min(rows, v), n_words), dtype=np.uint64)
    segments = range(0, n_words, _VARIANT_LANE_WORDS)
    # lane totals per variant and row segment; the lanes are split apart once at the end
    tots = np.empty((v, len(segments)), dtype=np.uint64)
    for r0 in range(0, v, rows):
        blk = words[r0: r0 + rows]
        g = buf[: blk.shape[0]]
        np.take(variant_lut, blk, out=g, mode="clip")
        # sum the lanes along the row in segments short enough that no lane overflows
        for si, c0 in enumerate(segments):
            np.sum(g[:, c0: c0 + _VARIANT_LANE_WORDS], axis=1, dtype=np.uint64,
                   out=tots[r0: r0 + len(blk), si])
    mask16 = np.uint64(0xFFFF)
    for lane in range(3):
        var_out[:, lane] += ((tots >> np.uint64(16 * lane)) & mask16).sum(axis=1, dtype=np.int64)


def _missing_per_sample(packed: np.ndarray, out: np.ndarray) -> None:
    """Add the missing-call count of each of the ``4 * nb`` samples packed in a (v, nb) uint8
    array (all bytes full) into ``out`` ((4 * nb,) int64).

    Bit trick instead of a table: ``m = x & ~(x >> 1)`` has bit 2k set exactly when sample k
    of the byte is missing (code 01). ``m & 0x11`` and ``(m >> 2) & 0x11`` put two samples
    each in the two nibbles of a byte; nibbles can be summed over 15 variants without
    overflow, in uint8 (vectorised adds), before they are widened.
    """
    v, nb = packed.shape
    if v == 0 or nb == 0:
        return
    group = _NIBBLE_ROWS
    rows = group * int(max(1, min(17, _BUFFER_BYTES // (group * nb))))
    rows = min(rows, group * -(-v // group))
    m = np.empty((rows, nb), dtype=np.uint8)
    part = np.empty((rows, nb), dtype=np.uint8)
    acc = np.zeros((4, nb), dtype=np.int64)
    for r0 in range(0, v, rows):
        blk = packed[r0: r0 + rows]
        r = len(blk)
        mm, pp = m[:r], part[:r]
        # in place (no temporaries): mm = blk & ~(blk >> 1)
        np.right_shift(blk, np.uint8(1), out=mm)
        np.invert(mm, out=mm)
        np.bitwise_and(mm, blk, out=mm)
        np.bitwise_and(mm, np.uint8(0x11), out=pp)  # samples 0 (low nibble) and 2 (high)
        np.right_shift(mm, np.uint8(2), out=mm)
        np.bitwise_and(mm, np.uint8(0x11), out=mm)  # samples 1 and 3
        n_full = (r // group) * group
        for lanes, arr in (((0, 2), pp), ((1, 3), mm)):
            sums = [arr[:n_full].reshape(-1, group, nb).sum(axis=1, dtype=np.uint8)]
            if n_full < r:
                sums.append(arr[n_full:].sum(axis=0, dtype=np.uint8)[None, :])
            for s in sums:
                acc[lanes[0]] += (s & np.uint8(15)).sum(axis=0, dtype=np.int64)
                acc[lanes[1]] += (s >> np.uint8(4)).sum(axis=0, dtype=np.int64)
    out += acc.T.reshape(-1)


def _pack_codes(codes: np.ndarray) -> np.ndarray:
    """Pack (v, n) 2-bit codes (uint8) into (v, ceil(n / 8)) little-endian uint16 words, the
    .bed layout, padding with code 0 (hom A1), which the per-variant lanes do not count."""
    v, n = codes.shape
    n_words = (n + 7) // 8
    padded = np.zeros((v, n_words * 8), dtype=np.uint8)
    padded[:, :n] = codes
    padded = padded.reshape(v, n_words * 2, 4)
    packed = padded[..., 0] | (padded[..., 1] << np.uint8(2))
    packed |= padded[..., 2] << np.uint8(4)
    packed |= padded[..., 3] << np.uint8(6)
    return packed.view("<u2")


def count_packed(packed: np.ndarray, n_samples: int, sample_idx: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Genotype counts of packed .bed rows, without decoding to floats.

    Parameters
    ----------
    packed
        uint8 array (n_variants, ceil(n_samples / 4)): raw .bed rows over all file samples.
        The padding bits of each row's last byte may hold anything: they are ignored.
    n_samples
        Number of samples in the file.
    sample_idx
        int array of file sample indices to count, in the wanted order; ``None`` = all
        samples in file order. The numba kernel counts any subset without repeats at the
        speed of the whole file (the others' codes are masked out); a sample listed twice,
        or a missing numba, takes the numpy path.

    Returns
    -------
    variant_counts : int64 array (n_variants, 4)
        Columns :data:`COUNT_COLUMNS`: hom A1 (.bim column 5), het, hom A2, missing.
    sample_missing : int64 array (n_selected,)
        Missing calls per selected sample over these variants.
    """
    packed = np.asarray(packed, dtype=np.uint8)
    v = packed.shape[0]
    if sample_idx is not None:
        sample_idx = np.asarray(sample_idx, dtype=np.int64)
    kernel = COUNT_KERNEL.get()
    select = _selection_words(n_samples, sample_idx) if kernel is not None else None
    if select is not None:
        var3 = np.zeros((v, 3), dtype=np.int64)
        samp = np.zeros(n_samples, dtype=np.int64)
        kernel(packed, n_samples, var3, samp, select)
        if sample_idx is None:
            return _with_hom_a1(var3, n_samples), samp
        return _with_hom_a1(var3, len(sample_idx)), samp[sample_idx]
    # the numpy path (numba unavailable, or a sample listed twice)
    if sample_idx is not None:
        n_sel = len(sample_idx)
        keep = np.zeros(n_samples, dtype=bool)
        keep[sample_idx] = True
        if int(keep.sum()) == n_sel and n_sel > n_samples - n_sel:
            # a large subset without repeats: count everyone on the fast path and subtract the
            # (fewer) left-out samples -- integer counts, so this is exact
            counts, samp = count_packed(packed, n_samples)
            if n_sel < n_samples:
                drop, _ = count_packed(packed, n_samples, np.flatnonzero(~keep))
                counts = counts - drop
            return counts, samp[sample_idx]
        # small subset: gather the selected samples' codes (uint8), then re-pack them densely
        words = _pack_codes(unpack_codes(packed, n_samples, sample_idx))
        tail = None
    else:
        n_sel = int(n_samples)
        full = n_sel // 8  # words holding 8 real samples each
        main = packed[:, : 2 * full]
        if main.strides[0] % 2 or main.ctypes.data % 2 or main.strides[-1] != 1:
            # the uint16 view needs 2-byte aligned rows: copy an odd row stride away
            main = np.ascontiguousarray(main)
        words = main.view("<u2") if full else np.zeros((v, 0), "<u2")
        tail = None
        n_tail = n_sel - 8 * full
        if n_tail:
            # the last (partial) word: clear the padding bits, so stray bits count as nothing
            lo = packed[:, 2 * full].astype(np.uint16)
            hi = packed[:, 2 * full + 1].astype(np.uint16) if n_tail > 4 else np.zeros_like(lo)
            valid = np.uint16((1 << (2 * n_tail)) - 1)
            tail = ((lo | (hi << np.uint16(8))) & valid)[:, None]
    var3 = np.zeros((v, 3), dtype=np.int64)
    _count_words(words, var3)
    samp = np.zeros(8 * words.shape[1], dtype=np.int64)
    if words.shape[1]:
        # '<u2' words viewed as bytes are the .bed byte order again (4 samples per byte)
        _missing_per_sample(words.view(np.uint8), samp)
    if tail is not None:
        _count_words(tail, var3)
        tail_codes = (tail >> (2 * np.arange(n_tail, dtype=np.uint16))) & np.uint16(3)
        samp = np.concatenate([samp, (tail_codes == 1).sum(axis=0)])
    return _with_hom_a1(var3, n_sel), samp[:n_sel]


def _selection_words(n_samples: int, sample_idx: np.ndarray | None) -> np.ndarray | None:
    """The counting kernel's ``select`` words: (ceil(n_samples / 32),) uint64 with both bits
    of each selected sample's 2-bit slot set (all samples for ``None``); None when a sample
    is listed twice (the kernel counts each sample once: the numpy gather path then runs)."""
    n_words = (int(n_samples) + 31) // 32
    if sample_idx is None:
        return np.full(n_words, np.uint64(0xFFFFFFFFFFFFFFFF))
    chosen = np.zeros(32 * n_words, dtype=bool)
    chosen[sample_idx] = True
    if int(chosen.sum()) != len(sample_idx):
        return None
    # sample i owns bits 2i and 2i + 1 of its row read as little-endian 64-bit words
    return np.packbits(np.repeat(chosen, 2), bitorder="little").view("<u8").astype(np.uint64)


def _with_hom_a1(var3: np.ndarray, n: int) -> np.ndarray:
    """(v, 3) het, hom A2, missing -> (v, 4) counts in :data:`COUNT_COLUMNS` order."""
    counts = np.empty((len(var3), 4), dtype=np.int64)
    counts[:, 1:] = var3
    counts[:, 0] = n - var3.sum(axis=1)
    return counts


def _import_kernels():
    from . import _qc_kernels
    return _qc_kernels


#: The numba kernel ``_qc_kernels.count_rows`` (None from ``get()`` where it cannot be
#: loaded: :func:`count_packed`'s numpy path then runs).
COUNT_KERNEL = LazyKernel(lambda: _import_kernels(), "count_rows")


@dataclass(frozen=True)
class GenotypeCounts:
    """Result of one counting pass (see :func:`genotype_counts`).

    variant : int64 array (n_variants, 4) -- hom A1, het, hom A2, missing (:data:`COUNT_COLUMNS`).
    sample_missing : int64 array (n_samples,) -- missing calls per selected sample.
    """

    variant: np.ndarray
    sample_missing: np.ndarray

    @property
    def n_samples(self) -> int:
        return len(self.sample_missing)

    @property
    def n_variants(self) -> int:
        return len(self.variant)


def _distributed_client():
    """The default dask.distributed Client, or None (then dask's threaded scheduler runs)."""
    if "distributed" not in sys.modules:
        # no Client can exist before distributed is imported, and importing it only to ask
        # costs 0.2-0.3 s, as much as a QC counting pass over a 2.5 GB .bed
        return None
    try:
        from distributed import default_client
    except ImportError:  # distributed is optional
        return None
    try:
        return default_client()
    except ValueError:
        return None


def genotype_counts(genotypes: Genotypes, progress: bool | None = None) -> GenotypeCounts:
    """Count genotypes of every variant and missing calls of every sample in ONE pass.

    Builds one task per range of variants (each reads its own .bed rows, a few MB at a
    time) and computes them with the active Dask scheduler (threads by default, a
    ``dask.distributed`` Client when one is the default). Counts are integers, so the result
    does not depend on ``variant_chunk`` or on the task split.
    """
    import dask

    if not isinstance(genotypes, Genotypes):
        raise TypeError(f"expected a gwaslift Genotypes, got {type(genotypes).__name__}")
    n, m = genotypes.shape
    if m == 0:
        return GenotypeCounts(np.zeros((0, 4), np.int64), np.zeros(n, np.int64))
    sample_idx = None if genotypes.all_samples else genotypes.sample_idx
    # Each task reads its variant range itself, a cache-sized block at a time into one reused
    # buffer, and counts the block at once (_count_variant_range): its memory is that buffer,
    # whatever the task's length. Tasks of about COUNT_TASK_BYTES of .bed rows keep Dask's
    # per-task cost small, yet give each thread several tasks; integer counts do not depend
    # on the split.
    task_rows = count_task_rows(genotypes)
    # one key each for the source, the variant and the sample index arrays, referenced by
    # every task (not copied into each)
    source = dask.delayed(genotypes.source, pure=True)
    variant_idx = dask.delayed(genotypes.variant_idx, pure=True)
    idx = dask.delayed(sample_idx, pure=True) if sample_idx is not None else None
    COUNT_KERNEL.get()  # load (or warn) once here, not in the first worker threads
    count = dask.delayed(_count_variant_range, pure=True, nout=2)
    parts = [count(source, variant_idx, a, min(a + task_rows, m), idx) for a in range(0, m, task_rows)]
    variant = dask.delayed(np.concatenate, pure=True)([p[0] for p in parts], axis=0)
    # per-sample counts: a tree of sums, so only a few n-vectors are alive at a time
    sample = [p[1] for p in parts]
    add = dask.delayed(_sum_arrays, pure=True)
    while len(sample) > 1:
        sample = [add(*sample[i: i + _FAN_IN]) for i in range(0, len(sample), _FAN_IN)]
    if _distributed_client() is None and progress_enabled(progress):
        with _tqdm_callback("QC counts"):
            variant, sample_missing = dask_compute(variant, sample[0])
    else:
        variant, sample_missing = dask_compute(variant, sample[0])
    return GenotypeCounts(variant, sample_missing)


_FAN_IN = 8
#: Most bytes of packed .bed rows per counting task (see :func:`genotype_counts`).
COUNT_TASK_BYTES = 64 * 2**20
#: Bytes of .bed rows read and counted at a time inside a task (the reused read buffer).
COUNT_BLOCK_BYTES = 4 * 2**20
# at least this many counting tasks per thread when the file allows (load balance)
_TASKS_PER_THREAD = 4


def _n_threads() -> int:
    """Threads of Dask's local scheduler (its default pool: one per CPU)."""
    import dask

    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


def count_task_rows(genotypes: Genotypes) -> int:
    """Variants per counting task of :func:`genotype_counts`: at least one ``variant_chunk``,
    at most COUNT_TASK_BYTES of .bed rows, and short enough for _TASKS_PER_THREAD tasks per
    thread of the local scheduler where the file is long enough."""
    per_thread = -(-genotypes.n_variants // (_TASKS_PER_THREAD * _n_threads()))
    longest = COUNT_TASK_BYTES // genotypes.source.row_bytes
    return max(1, min(longest, max(per_thread, genotypes.variant_chunk)))


def _count_variant_range(source, variant_idx: np.ndarray, start: int, stop: int,
                         sample_idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`count_packed` of the file variants ``variant_idx[start:stop]`` of ``source``
    (a BedSource), read and counted COUNT_BLOCK_BYTES at a time: (stop - start, 4) int64
    counts and the selected samples' missing calls."""
    n_file = source.n_samples
    block = max(1, COUNT_BLOCK_BYTES // source.row_bytes)
    kernel = COUNT_KERNEL.get()
    select = _selection_words(n_file, sample_idx) if kernel is not None else None
    n_sel = n_file if sample_idx is None else len(sample_idx)
    if select is not None:
        var3 = np.zeros((stop - start, 3), dtype=np.int64)
        samp = np.zeros(n_file, dtype=np.int64)
        for off, rows in source.iter_rows(variant_idx[start:stop], block):
            kernel(rows, n_file, var3[off: off + len(rows)], samp, select)
        return _with_hom_a1(var3, n_sel), samp if sample_idx is None else samp[sample_idx]
    samp = np.zeros(n_sel, dtype=np.int64)
    counts = np.empty((stop - start, 4), dtype=np.int64)
    for off, rows in source.iter_rows(variant_idx[start:stop], block):
        c, s = count_packed(rows, n_file, sample_idx)
        counts[off: off + len(c)] = c
        samp += s
    return counts, samp


def _sum_arrays(*arrays: np.ndarray) -> np.ndarray:
    """Elementwise sum of equally shaped arrays (a node of the per-sample reduction tree)."""
    total = arrays[0].copy()
    for a in arrays[1:]:
        total += a
    return total


def _tqdm_callback(desc: str):
    """A Dask local-scheduler callback showing a tqdm bar of finished tasks on stderr."""
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    class _Bar(Callback):
        def _start_state(self, dsk, state):
            total = sum(len(state[k]) for k in ("ready", "waiting"))
            self._bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)

        def _posttask(self, key, result, dsk, state, worker_id):
            self._bar.update(1)

        def _finish(self, dsk, state, errored):
            self._bar.close()

    return _Bar()


# ----------------------------------------------------------------------------- statistics

def allele_frequency(counts: np.ndarray) -> np.ndarray:
    """A1 frequency among observed alleles from (v, 4) counts; NaN where nothing is observed."""
    counts = np.asarray(counts)
    n_obs = counts[:, :3].sum(axis=1)
    a1 = 2 * counts[:, 0] + counts[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_obs > 0, a1 / np.maximum(2 * n_obs, 1), np.nan)


def _log_het_norm(n, n_rare):
    """log of the constant n! n_rare! (2n - n_rare)! / (2n)! of :func:`_log_het_prob`."""
    from scipy.special import gammaln

    return gammaln(n + 1.0) + gammaln(n_rare + 1.0) + gammaln(2 * n - n_rare + 1.0) - gammaln(2 * n + 1.0)


def _log_het_prob(k, n, n_rare, h0, norm):
    """log P(het = h0 + 2k | n individuals, n_rare copies of the rarer allele), normalised:
    P(h) = 2^h n! n_rare! (2n - n_rare)! / (hom_rare! h! hom_common! (2n)!); ``norm`` is
    :func:`_log_het_norm` (n, n_rare)."""
    from scipy.special import gammaln

    h = h0 + 2 * k
    hom_r = (n_rare - h) // 2
    hom_c = n - h - hom_r
    return norm + h * _LN2 - gammaln(hom_r + 1.0) - gammaln(h + 1.0) - gammaln(hom_c + 1.0)


def _het_distribution(n, n_rare):
    """The HWE het-count distributions of rows (n individuals, n_rare > 0 copies of the rarer
    allele): het count h = h0 + 2k for k in [0, k_end). Returns (h0, k_end, lp, k_mode):
    ``lp(k, sel)`` the log P of index k for the rows ``sel``; ``k_mode`` the mode, the first
    k where P(k+1) / P(k) = 4 hom_r hom_c / ((h+1)(h+2)) drops below 1 (log-concave)."""
    h0 = n_rare % 2
    k_end = (n_rare - h0) // 2 + 1
    norm = _log_het_norm(n, n_rare)

    def lp(k, sel):
        return _log_het_prob(k, n[sel], n_rare[sel], h0[sel], norm[sel])

    def falling(k, sel):
        h = h0[sel] + 2 * k
        hom_r = (n_rare[sel] - h) // 2
        hom_c = n[sel] - h - hom_r
        return 4.0 * hom_r * hom_c < (h + 1.0) * (h + 2.0)

    k_mode = _first_true(falling, np.zeros(len(n), dtype=np.int64), k_end - 1)
    return h0, k_end, lp, k_mode


def _first_true(pred, lo, hi):
    """Vectorised binary search: per element, the first k in [lo, hi) where the monotone
    ``pred(k, sel)`` (false ... true) holds, or hi if none; pred is never called at hi."""
    lo = lo.copy()
    hi = hi.copy()
    while True:
        active = np.flatnonzero(lo < hi)
        if len(active) == 0:
            return lo
        mid = (lo[active] + hi[active]) // 2
        p = pred(mid, active)
        hi[active] = np.where(p, mid, hi[active])
        lo[active] = np.where(p, lo[active], mid + 1)


_LN2 = float(np.log(2.0))

# Tail terms more than exp(-_HWE_WINDOW) below the observed probability are left out: there
# are at most n of them, so together they change the p-value by < n * 4e-18 relative.
_HWE_WINDOW = 40.0
# Heterozygote counts whose probability is within this relative distance of the observed
# one count as equally likely (in the tail), so that exact ties are not lost to rounding.
_HWE_TIE = 1e-7
# Sum the central part (p = 1 - central) instead of the tails only when p >= P(observed)
# >= this: the normalising constant is good to ~1e-12 relative, so 1 - central keeps p to
# better than 1e-9 relative.
_HWE_CENTRAL_MIN_P = 1e-3
_HWE_BATCH_TERMS = 1 << 21


def _sum_ranges(lp, size, var, start, stop, bound, below):
    """Per variant: sum of exp(lp(k)) over the ranges [start, stop] (inclusive; empty when
    stop < start) of the variants ``var``, counting only terms with lp <= bound (below=True)
    or lp > bound (below=False); returns an array of ``size`` (zero elsewhere). ``var`` holds
    distinct indices. Ranges are evaluated flattened, in batches of bounded size."""
    out = np.zeros(size)
    lens = np.maximum(stop - start + 1, 0)
    keep = lens > 0
    var, start, lens, bound = var[keep], start[keep], lens[keep], bound[keep]
    i = 0
    while i < len(var):
        cum = np.cumsum(lens[i:])
        j = i + max(1, int(np.searchsorted(cum, _HWE_BATCH_TERMS, side="right")))
        ln = lens[i:j]
        rep = np.repeat(np.arange(i, j), ln)
        offs = np.arange(ln.sum()) - np.repeat(np.cumsum(ln) - ln, ln)
        f = lp(start[rep] + offs, var[rep])
        ok = (f <= bound[rep]) if below else (f > bound[rep])
        terms = np.where(ok, np.exp(np.minimum(f, 0.0)), 0.0)
        out[var[i:j]] += np.add.reduceat(terms, np.cumsum(ln) - ln)
        i = j
    return out


#: Variants per block of :func:`hwe_exact`. Its vectorised search keeps about 2-3 KB of
#: temporaries per variant in flight (tracemalloc peak: ~300 MB for 100,000 variants at
#: once, ~60 MB in blocks of 8192, no slower), so blocks bound the working memory whatever
#: the number of variants. Each variant's p-value is computed on its own, so the result is
#: bitwise the same for any block size.
HWE_BLOCK_VARIANTS = 8192


def hwe_exact(n_hom_a1, n_het, n_hom_a2, midp: bool = False) -> np.ndarray:
    """Hardy-Weinberg exact test p-values (Wigginton, Cutler & Abecasis 2005), vectorised.

    The p-value is the total probability, given the number of individuals and allele
    counts, of all heterozygote counts no more likely than the observed one (two-sided, as
    plink2 ``--hardy`` P). With ``midp=True`` the counts exactly as likely as the observed
    one count half (plink2 ``--hardy midp``).

    Parameters are int arrays of equal length (genotype counts per variant). Returns float64
    p-values; NaN where no genotype is observed, 1.0 (mid-p: 0.5) for monomorphic variants,
    as plink2 reports them. P-values
    below about 1e-300 lose precision and may underflow to 0.

    The distribution of the heterozygote count is log-concave, so the terms no more likely
    than the observed one form two tails, found by binary search; only the tail terms within
    a factor exp(-40) of the observed probability are summed (or, for large p, the central
    terms, p = 1 - central), so the cost per variant is small and independent of n for
    strong departures from HWE. Variants are processed ``HWE_BLOCK_VARIANTS`` at a time,
    so the working memory is bounded (a few KB per variant of one block) and the result
    does not depend on the block size.
    """
    hom1 = np.asarray(n_hom_a1, dtype=np.int64).ravel()
    het = np.asarray(n_het, dtype=np.int64).ravel()
    hom2 = np.asarray(n_hom_a2, dtype=np.int64).ravel()
    if not (hom1.shape == het.shape == hom2.shape):
        raise ValueError("hwe_exact: the three count arrays must have the same length")
    if (hom1 < 0).any() or (het < 0).any() or (hom2 < 0).any():
        raise ValueError("hwe_exact: genotype counts must be non-negative")
    block = max(1, int(HWE_BLOCK_VARIANTS))
    p = np.empty(len(hom1))
    for s in range(0, len(hom1), block):
        e = s + block
        p[s:e] = _hwe_exact_block(hom1[s:e], het[s:e], hom2[s:e], midp)
    return p


def _hwe_exact_block(hom1: np.ndarray, het: np.ndarray, hom2: np.ndarray, midp: bool) -> np.ndarray:
    """:func:`hwe_exact` of one block of validated int64 counts (v,) -> float64 p (v,)."""
    n = hom1 + het + hom2
    n_rare = np.minimum(2 * hom1 + het, 2 * hom2 + het)
    p = np.full(len(n), np.nan)
    # monomorphic: the observed count is the only possible one (mid-p: half of it)
    p[(n > 0) & (n_rare == 0)] = 0.5 if midp else 1.0
    todo = np.flatnonzero(n_rare > 0)
    if len(todo) == 0:
        return p
    n, n_rare, het = n[todo], n_rare[todo], het[todo]
    h0, k_end, lp, k_mode = _het_distribution(n, n_rare)
    k_obs = (het - h0) // 2
    nv = len(n)
    everyone = np.arange(nv)
    zeros = np.zeros(nv, dtype=np.int64)
    f_obs = lp(k_obs, everyone)
    tie = f_obs + _HWE_TIE
    cut = f_obs - _HWE_WINDOW
    left = k_obs <= k_mode  # observed on the rising side (or at the mode)
    # the tail on the other side of the mode starts where P drops back to <= P(observed)
    # (the mode itself belongs to it when it ties with the observed count)
    right_start = np.where(left, _first_true(lambda k, s: lp(k, s) <= tie[s],
                                             k_mode + (k_obs == k_mode), k_end), k_obs)
    left_stop = np.where(left, k_obs, _first_true(lambda k, s: lp(k, s) > tie[s], zeros, k_mode + 1) - 1)
    # tails truncated where their terms fall below exp(-_HWE_WINDOW) * P(observed)
    left_from = _first_true(lambda k, s: lp(k, s) >= cut[s], zeros, np.maximum(left_stop, 0))
    right_to = _first_true(lambda k, s: lp(k, s) < cut[s], right_start, k_end) - 1
    n_tail_terms = np.maximum(left_stop - left_from + 1, 0) + np.maximum(right_to - right_start + 1, 0)
    n_central = right_start - left_stop - 1
    central = (n_central < n_tail_terms) & (f_obs >= np.log(_HWE_CENTRAL_MIN_P))

    out = np.empty(nv)
    c = np.flatnonzero(central)
    t = np.flatnonzero(~central)
    if len(c):
        mass = _sum_ranges(lp, nv, c, left_stop[c] + 1, right_start[c] - 1, tie[c], below=False)
        out[c] = 1.0 - mass[c]
    if len(t):
        tails = (_sum_ranges(lp, nv, t, left_from[t], left_stop[t], tie[t], below=True)
                 + _sum_ranges(lp, nv, t, right_start[t], right_to[t], tie[t], below=True))
        out[t] = tails[t]
    if midp:
        # mid-p halves every count as likely as the observed one; by log-concavity at most one
        # other count ties with it: a neighbour (a flat mode) or the other tail's first term
        other = np.where(left, right_start, left_stop)
        n_ties = np.ones(nv)
        for k in (k_obs - 1, k_obs + 1, other):
            ok = (k >= 0) & (k < k_end) & (k != k_obs)
            kk = np.where(ok, k, k_obs)
            ok &= np.abs(lp(kk, everyone) - f_obs) <= _HWE_TIE
            n_ties = np.where(ok, 2.0, n_ties)
        out = out - 0.5 * n_ties * np.exp(f_obs)
    p[todo] = np.clip(out, 0.0, 1.0)
    return p


# ----------------------------------------------------------------------------- sex chromosomes

#: Chromosome classes of :func:`chrom_class` (plink's codes: X = 23, Y = 24, XY = 25 the
#: pseudo-autosomal region, MT = 26; any 'chr' prefix ignored).
CHROM_DIPLOID, CHROM_X, CHROM_Y, CHROM_MT = 0, 1, 2, 3
_CHROM_CLASSES = {"X": CHROM_X, "Y": CHROM_Y, "MT": CHROM_MT}


def chrom_class(chrom) -> np.ndarray:
    """int8 array (n_variants,): :data:`CHROM_X`, :data:`CHROM_Y`, :data:`CHROM_MT` or
    :data:`CHROM_DIPLOID` (autosomes, XY/25 = PAR, anything else) for .bim chromosome codes,
    read as plink does (:func:`gwaslift.io.plink.normalize_chrom`: X/23, Y/24, MT/M/26,
    case-insensitive, optional 'chr' prefix and leading zeros)."""
    names = pd.Series(normalize_chrom(np.asarray(chrom, dtype=object)))
    return names.map(_CHROM_CLASSES).fillna(CHROM_DIPLOID).to_numpy(dtype=np.int8)


def _sex_masks(genotypes: Genotypes) -> tuple[np.ndarray, np.ndarray]:
    """(male, female) bool arrays (n_samples,) from the .fam sex column (1 male, 2 female;
    anything else is unknown sex, which plink2 counts as neither)."""
    s = genotypes.samples
    if "sex" not in s.columns:
        z = np.zeros(len(s), dtype=bool)
        return z, z.copy()
    sex = pd.to_numeric(s["sex"], errors="coerce").to_numpy()
    return sex == 1, sex == 2


@dataclass(frozen=True)
class SexChromCounts:
    """Genotype counts split by sex on chrX / chrY (see :func:`sex_chrom_counts`).

    kind : int8 (n_variants,) -- :func:`chrom_class` of each variant.
    male, female : bool (n_samples,) -- .fam sex 1 / 2 (the rest: unknown sex).
    x_male, x_female : int64 (n_x, 4) -- counts (:data:`COUNT_COLUMNS`) of the chrX variants
        (in file order, ``kind == CHROM_X``) among males / females.
    y_male : int64 (n_y, 4) -- counts of the chrY variants among males.
    y_sample_missing : int64 (n_samples,) -- missing calls per sample on chrY.
    """

    kind: np.ndarray
    male: np.ndarray
    female: np.ndarray
    x_male: np.ndarray
    x_female: np.ndarray
    y_male: np.ndarray
    y_sample_missing: np.ndarray

    @property
    def has_special(self) -> bool:
        """Whether any variant is on X, Y or MT (else every rule is the diploid one)."""
        return bool((self.kind != CHROM_DIPLOID).any())


def sex_chrom_counts(genotypes: Genotypes, progress: bool | None = None) -> SexChromCounts:
    """Counts that plink2's sex-chromosome rules need, from extra passes over the chrX and
    chrY variants only (none when there are none): chrX counts among males and females,
    chrY counts among males, and per-sample missing calls on chrY."""
    kind = chrom_class(genotypes.variants["chrom"].to_numpy())
    male, female = _sex_masks(genotypes)
    n = genotypes.n_samples

    def counts_of(samples, variants):
        if len(variants) == 0 or not samples.any():
            return np.zeros((len(variants), 4), np.int64)
        return genotype_counts(genotypes.subset(samples=samples, variants=variants), progress=progress).variant

    x = np.flatnonzero(kind == CHROM_X)
    y = np.flatnonzero(kind == CHROM_Y)
    y_missing = np.zeros(n, np.int64)
    if len(y):
        y_missing = genotype_counts(genotypes.subset(variants=y), progress=progress).sample_missing
    return SexChromCounts(kind, male, female, counts_of(male, x), counts_of(female, x),
                          counts_of(male, y), y_missing)


@dataclass(frozen=True)
class _PlinkCounts:
    """Per-variant statistics under plink2's ploidy rules (built by :func:`_plink_counts`).

    counts : (v, 4) -- genotype counts over the samples that count (chrY: males only).
    n_eligible : (v,) -- samples that count (chrY: males; else all).
    a1_units, total_units : (v,) int64 -- A1 copies and observed alleles, in half-allele
        units on X/Y/MT rows (a diploid call is 4 units, a haploid call 2, a haploid het 1
        A1 unit: plink2 counts a male het on X as half an A1 allele), NOT used elsewhere.
    freq : (v,) float64 -- A1 frequency among observed alleles (as plink2 --freq).
    """

    counts: np.ndarray
    n_eligible: np.ndarray
    a1_units: np.ndarray
    total_units: np.ndarray
    freq: np.ndarray


def _plink_counts(counts: np.ndarray, n: int, sc: SexChromCounts | None) -> _PlinkCounts:
    """plink2's counting per variant: diploid rows exactly as before (so autosome-only data
    give bitwise the old results); chrX: males haploid, females and unknown sex diploid;
    chrY: males only, haploid; MT: everyone haploid (plink2 --freq / --missing / --geno)."""
    counts = np.asarray(counts)
    n_obs = counts[:, :3].sum(axis=1)
    a1 = 2 * (2 * counts[:, 0] + counts[:, 1])
    total = 4 * n_obs
    n_eligible = np.full(len(counts), n, dtype=np.int64)
    freq = allele_frequency(counts)
    if sc is None or not sc.has_special:
        return _PlinkCounts(counts, n_eligible, a1, total, freq)
    counts = counts.copy()
    special = np.flatnonzero(sc.kind != CHROM_DIPLOID)

    def hap(c):  # haploid units: hom = 2, het = 1
        return 2 * c[:, 0] + c[:, 1], 2 * c[:, :3].sum(axis=1)

    def dip(c):
        return 2 * (2 * c[:, 0] + c[:, 1]), 4 * c[:, :3].sum(axis=1)

    x = np.flatnonzero(sc.kind == CHROM_X)
    if len(x):
        (ma, mt), (da, dt) = hap(sc.x_male), dip(counts[x] - sc.x_male)
        a1[x], total[x] = ma + da, mt + dt
    y = np.flatnonzero(sc.kind == CHROM_Y)
    if len(y):
        counts[y] = sc.y_male
        a1[y], total[y] = hap(sc.y_male)
        n_eligible[y] = int(sc.male.sum())
    mt_rows = np.flatnonzero(sc.kind == CHROM_MT)
    if len(mt_rows):
        a1[mt_rows], total[mt_rows] = hap(counts[mt_rows])
    with np.errstate(invalid="ignore", divide="ignore"):
        freq[special] = np.where(total[special] > 0, a1[special] / np.maximum(total[special], 1), np.nan)
    return _PlinkCounts(counts, n_eligible, a1, total, freq)


def _hwe_p(counts: np.ndarray, sc: SexChromCounts | None, midp: bool) -> np.ndarray:
    """plink2's HWE p per variant: the exact test on all samples for diploid chromosomes;
    on chrX the Graffelman-Weir exact test (:func:`hwe_exact_x`: females diploid, males
    haploid, male hets and unknown sex left out); NaN on chrY and MT (not tested)."""
    p = hwe_exact(counts[:, 0], counts[:, 1], counts[:, 2], midp=midp)
    if sc is None or not sc.has_special:
        return p
    x = np.flatnonzero(sc.kind == CHROM_X)
    if len(x):
        f, mm = sc.x_female, sc.x_male
        p[x] = hwe_exact_x(f[:, 0], f[:, 1], f[:, 2], mm[:, 0], mm[:, 2], midp=midp)
    p[np.isin(sc.kind, (CHROM_Y, CHROM_MT))] = np.nan
    return p


def _log_hypergeom(k, n_male, n_a1, n_alleles):
    """log P(k of the n_a1 A1 copies fall on the n_male male alleles), the other n_alleles -
    n_male alleles being the females' (hypergeometric)."""
    from scipy.special import gammaln

    nf2 = n_alleles - n_male
    return (gammaln(n_male + 1.0) - gammaln(k + 1.0) - gammaln(n_male - k + 1.0)
            + gammaln(nf2 + 1.0) - gammaln(n_a1 - k + 1.0) - gammaln(nf2 - n_a1 + k + 1.0)
            - gammaln(n_alleles + 1.0) + gammaln(n_a1 + 1.0) + gammaln(n_alleles - n_a1 + 1.0))


def _het_mass_below(n, n_rare, thr, cut):
    """Per row of the HWE het-count distribution (n individuals, n_rare copies of the rarer
    allele): (mass of the het counts with log P <= thr, ignoring terms below ``cut``;
    mass of the counts with |log P - thr| <= 2 _HWE_TIE, i.e. tied with the threshold).
    Rows are independent and vectorised; log-concavity makes the counts at or below the
    threshold two tails around the mode, found by binary search."""
    nv = len(n)
    out = np.zeros(nv)
    ties = np.zeros(nv)
    if nv == 0:
        return out, ties
    mono = n_rare == 0  # a single possible count, of probability 1
    out[mono] = (thr[mono] >= 0.0).astype(float)
    ties[mono] = (np.abs(thr[mono]) <= 2 * _HWE_TIE).astype(float)
    r = np.flatnonzero(~mono)
    if len(r) == 0:
        return out, ties
    n, n_rare, thr, cut = n[r], n_rare[r], thr[r], cut[r]
    h0, k_end, lp, k_mode = _het_distribution(n, n_rare)
    m = len(r)
    zeros = np.zeros(m, dtype=np.int64)
    every = np.arange(m)
    whole = lp(k_mode, every) <= thr  # even the most likely count is at or below thr
    # nondecreasing on [0, k_mode], nonincreasing on [k_mode, k_end)
    left_stop = _first_true(lambda k, s: lp(k, s) > thr[s], zeros, k_mode) - 1
    right_start = _first_true(lambda k, s: lp(k, s) <= thr[s], k_mode, k_end)
    left_from = _first_true(lambda k, s: lp(k, s) >= cut[s], zeros, np.maximum(left_stop + 1, 0))
    right_to = _first_true(lambda k, s: lp(k, s) < cut[s], right_start, k_end) - 1
    n_tail = np.maximum(left_stop - left_from + 1, 0) + np.maximum(right_to - right_start + 1, 0)
    n_central = right_start - left_stop - 1
    # 1 - central only where the tail holds a term >= _HWE_CENTRAL_MIN_P (no cancellation)
    edge = np.full(m, -np.inf)
    for k in (left_stop, right_start):
        ok = (k >= 0) & (k < k_end)
        edge = np.where(ok, np.maximum(edge, lp(np.where(ok, k, 0), every)), edge)
    central = ~whole & (n_central < n_tail) & (edge >= np.log(_HWE_CENTRAL_MIN_P))
    res = np.where(whole, 1.0, 0.0)
    c = np.flatnonzero(central)
    t = np.flatnonzero(~central & ~whole)
    if len(c):
        res[c] = 1.0 - _sum_ranges(lp, m, c, left_stop[c] + 1, right_start[c] - 1, thr[c], below=False)[c]
    if len(t):
        res[t] = (_sum_ranges(lp, m, t, left_from[t], left_stop[t], thr[t], below=True)
                  + _sum_ranges(lp, m, t, right_start[t], right_to[t], thr[t], below=True))[t]
    # ties: by log-concavity only the counts next to the threshold crossings can tie
    tie = np.zeros(m)
    seen = []
    for k in (left_stop - 1, left_stop, right_start, right_start + 1, k_mode):
        ok = (k >= 0) & (k < k_end)
        for s in seen:
            ok &= k != s
        seen.append(k)
        kk = np.where(ok, k, 0)
        f = lp(kk, every)
        ok &= (f <= thr) & (f >= thr - 2 * _HWE_TIE)
        tie += np.where(ok, np.exp(np.minimum(f, 0.0)), 0.0)
    out[r], ties[r] = res, tie
    return out, ties


#: Rows (male A1 counts) evaluated at once by :func:`hwe_exact_x`, bounding its memory.
_HWE_X_BATCH_ROWS = 1 << 16


def hwe_exact_x(f_hom_a1, f_het, f_hom_a2, m_a1, m_a2, midp: bool = False) -> np.ndarray:
    """chrX Hardy-Weinberg exact test of Graffelman & Weir (2016), as plink2 ``--hardy``
    (.hardy.x P) and ``--hwe`` compute it on chrX: females diploid, males haploid.

    Given the number of females, males and A1 copies, a table (male A1 count k, female het
    count h) has probability P(k) P(h | k): hypergeometric for the males' share of the A1
    copies, times the usual HWE het distribution of the females given theirs. The p-value
    is the total probability of the tables no more likely than the observed one (mid-p:
    tables tied with it count half, except in its own row, as plink2 does on chrX). Inputs are int arrays (female genotype counts, male A1 / A2
    haploid counts; male hets and unknown-sex samples must be left out, as plink2 does);
    returns float64 p, NaN where nothing is observed, 1.0 (mid-p 0.5) if monomorphic.
    Rows k whose P(k) is below exp(-40) P(observed) are skipped, and within a row the
    terms below that level, so p is good to ~1e-15 relative; cost grows with the number
    of males within that window times log(n).
    """
    fa = np.asarray(f_hom_a1, dtype=np.int64).ravel()
    fh = np.asarray(f_het, dtype=np.int64).ravel()
    fb = np.asarray(f_hom_a2, dtype=np.int64).ravel()
    ma = np.asarray(m_a1, dtype=np.int64).ravel()
    mb = np.asarray(m_a2, dtype=np.int64).ravel()
    if not (fa.shape == fh.shape == fb.shape == ma.shape == mb.shape):
        raise ValueError("hwe_exact_x: the five count arrays must have the same length")
    if min(a.min(initial=0) for a in (fa, fh, fb, ma, mb)) < 0:
        raise ValueError("hwe_exact_x: genotype counts must be non-negative")
    nf = fa + fh + fb
    nm = ma + mb
    n_alleles = 2 * nf + nm
    n_a1 = 2 * fa + fh + ma
    p = np.full(len(fa), np.nan)
    mono = (n_alleles > 0) & ((n_a1 == 0) | (n_a1 == n_alleles))
    p[mono] = 0.5 if midp else 1.0
    todo = np.flatnonzero((n_alleles > 0) & ~mono)
    if len(todo) == 0:
        return p
    nf, nm, n_alleles, n_a1 = nf[todo], nm[todo], n_alleles[todo], n_a1[todo]
    ma, fh = ma[todo], fh[todo]
    nv = len(todo)

    # observed log-probability
    fa1 = n_a1 - ma  # A1 copies on females
    rare = np.minimum(fa1, 2 * nf - fa1)
    h0 = rare % 2
    l_obs = (_log_hypergeom(ma, nm, n_a1, n_alleles)
             + _log_het_prob((fh - h0) // 2, nf, rare, h0, _log_het_norm(nf, rare)))
    # rows k in [k_lo, k_hi] (feasible male A1 counts) with log P(k) >= l_obs - _HWE_WINDOW
    k_lo = np.maximum(0, n_a1 - 2 * nf)
    k_hi = np.minimum(nm, n_a1)
    every = np.arange(nv)

    def lk(k, s):
        return _log_hypergeom(k, nm[s], n_a1[s], n_alleles[s])

    def k_falling(k, s):  # P(k + 1) < P(k)
        return (nm[s] - k) * (n_a1[s] - k) < (k + 1) * (2 * nf[s] - n_a1[s] + k + 1)

    k_mode = _first_true(k_falling, k_lo, k_hi)
    floor = l_obs - _HWE_WINDOW
    r_lo = _first_true(lambda k, s: lk(k, s) >= floor[s], k_lo, k_mode)
    r_hi = _first_true(lambda k, s: lk(k, s) < floor[s], k_mode, k_hi + 1) - 1
    # sum over the rows, flattened across variants, in batches of bounded size
    total = np.zeros(nv)
    tied = np.zeros(nv)
    lens = r_hi - r_lo + 1
    i = 0
    while i < nv:
        cum = np.cumsum(lens[i:])
        j = i + max(1, int(np.searchsorted(cum, _HWE_X_BATCH_ROWS, side="right")))
        ln = lens[i:j]
        var = np.repeat(np.arange(i, j), ln)
        k = r_lo[var] + (np.arange(ln.sum()) - np.repeat(np.cumsum(ln) - ln, ln))
        lpk = lk(k, var)
        f1 = n_a1[var] - k
        rr = np.minimum(f1, 2 * nf[var] - f1)
        thr = l_obs[var] + _HWE_TIE - lpk
        mass, tie = _het_mass_below(nf[var], rr, thr, thr - _HWE_TIE - _HWE_WINDOW)
        w = np.exp(lpk)
        total += np.bincount(var, weights=w * mass, minlength=nv)
        # mid-p: plink2 halves the tables tied with the observed one in the other rows, but
        # in the observed row only the observed table (checked against --hardy midp)
        tied += np.bincount(var, weights=np.where(k == ma[var], 0.0, w * tie), minlength=nv)
        i = j
    if midp:
        total = total - 0.5 * (tied + np.exp(l_obs))
    p[todo] = np.clip(total, 0.0, 1.0)
    return p


def _variant_table(genotypes: Genotypes, counts: np.ndarray, hwe: bool, midp: bool,
                   sc: SexChromCounts | None = None) -> pd.DataFrame:
    v = genotypes.variants
    pc = _plink_counts(counts, genotypes.n_samples, sc)
    c = pc.counts
    n_obs = c[:, :3].sum(axis=1)
    freq = pc.freq
    with np.errstate(invalid="ignore", divide="ignore"):
        call_rate = np.where(pc.n_eligible > 0, n_obs / np.maximum(pc.n_eligible, 1), np.nan)
    # copy=False: the columns are not consolidated into 2-D blocks, which took 0.2 s of
    # copying at 500,000 variants; the .bim columns are copied here instead (pointer copies),
    # and the count columns are copied out of ``counts``, so that editing the table never
    # edits ``genotypes.variants`` or a caller's GenotypeCounts
    df = pd.DataFrame({
        **{col: v[col].to_numpy(copy=True) for col in ("chrom", "pos", "snp", "a1", "a2")},
        "a1_freq": freq,
        "maf": np.minimum(freq, 1.0 - freq),
        "n_obs": n_obs,
        "n_missing": c[:, 3].copy(),
        "call_rate": call_rate,
        "n_hom_a1": c[:, 0].copy(),
        "n_het": c[:, 1].copy(),
        "n_hom_a2": c[:, 2].copy(),
    }, copy=False)
    if hwe:
        df["hwe_p"] = _hwe_p(counts, sc, midp)
    return df


def _sample_missing_plink(genotypes: Genotypes, sample_missing: np.ndarray,
                          sc: SexChromCounts | None) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (missing calls, variants counted) as plink2 --missing / --mind count them:
    chrY calls count for males only (a female has no Y), for everyone else neither in the
    numerator nor in the denominator."""
    m = genotypes.n_variants
    miss = np.asarray(sample_missing, dtype=np.int64)
    den = np.full(len(miss), m, dtype=np.int64)
    if sc is not None:
        n_y = int((sc.kind == CHROM_Y).sum())
        if n_y:
            miss = np.where(sc.male, miss, miss - sc.y_sample_missing)
            den = np.where(sc.male, m, m - n_y)
    return miss, den


def _sample_table(genotypes: Genotypes, sample_missing: np.ndarray,
                  sc: SexChromCounts | None = None) -> pd.DataFrame:
    s = genotypes.samples
    miss, den = _sample_missing_plink(genotypes, sample_missing, sc)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(den > 0, miss / np.maximum(den, 1), np.nan)
    return pd.DataFrame({
        "fid": s["fid"].to_numpy(),
        "iid": s["iid"].to_numpy(),
        "n_missing": miss,
        "n_variants": den,
        "missing_frac": frac,
        "call_rate": 1.0 - frac,
    })


def _check_counts(genotypes: Genotypes, counts: GenotypeCounts | None, progress) -> GenotypeCounts:
    if counts is None:
        return genotype_counts(genotypes, progress=progress)
    if counts.variant.shape != (genotypes.n_variants, 4) or counts.n_samples != genotypes.n_samples:
        raise ValueError(
            f"counts are for {counts.n_samples} samples x {counts.n_variants} variants, "
            f"genotypes are {genotypes.n_samples} x {genotypes.n_variants}"
        )
    return counts


def allele_stats(genotypes: Genotypes, *, hwe: bool = False, midp: bool = False,
                 counts: GenotypeCounts | None = None, progress: bool | None = None) -> pd.DataFrame:
    """Per-variant allele frequencies, call rates and genotype counts.

    Returns one row per variant of ``genotypes``: ``chrom, pos, snp, a1, a2`` (A1 = .bim
    column 5, the counted allele), ``a1_freq`` (A1 frequency among observed alleles; NaN if
    none is observed; plink2's ploidy on X/Y/MT, see the module docstring), ``maf``,
    ``n_obs`` (samples with a call), ``n_missing``, ``call_rate`` (n_obs / n_samples),
    ``n_hom_a1, n_het, n_hom_a2`` (on chrY all of these over males only) and, with
    ``hwe=True``, ``hwe_p`` (:func:`hwe_exact`; chrX :func:`hwe_exact_x`; NaN on Y / MT). ``counts`` reuses a :func:`genotype_counts` result instead of
    reading the genotypes again.
    """
    counts = _check_counts(genotypes, counts, progress)
    return _variant_table(genotypes, counts.variant, hwe, midp, sex_chrom_counts(genotypes, progress))


def sample_missingness(genotypes: Genotypes, *, counts: GenotypeCounts | None = None,
                       progress: bool | None = None) -> pd.DataFrame:
    """Per-sample missing calls: ``fid, iid, n_missing, n_variants, missing_frac, call_rate``
    (as plink2 ``--missing`` .smiss MISSING_CT, OBS_CT, F_MISS)."""
    counts = _check_counts(genotypes, counts, progress)
    return _sample_table(genotypes, counts.sample_missing, sex_chrom_counts(genotypes, progress))


def qc_stats(genotypes: Genotypes, *, hwe: bool = False, midp: bool = False,
             progress: bool | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`allele_stats` and :func:`sample_missingness` from a single pass."""
    counts = genotype_counts(genotypes, progress=progress)
    sc = sex_chrom_counts(genotypes, progress)
    return (_variant_table(genotypes, counts.variant, hwe, midp, sc),
            _sample_table(genotypes, counts.sample_missing, sc))


# ----------------------------------------------------------------------------- filters

#: Relative slack on thresholds, so that a fraction equal to the threshold in decimal
#: (e.g. 2 missing of 100 with geno=0.02) is kept despite binary rounding.
_EPS = 1e-9

REPORT_COLUMNS = ["kind", "index", "fid", "id", "reason", "value", "threshold"]


def _check_threshold(name: str, value, upper: float = 1.0):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"qc: {name} must be a number or None, got {value!r}") from None
    if not (0.0 <= value <= upper):
        raise ValueError(f"qc: {name} must lie in [0, {upper}], got {value}")
    return value


def qc(genotypes: Genotypes, maf: float | None = 0.01, geno: float | None = 0.01,
       mind: float | None = 0.02, hwe: float | None = None, *, midp: bool = False,
       drop_monomorphic: bool = True, counts: GenotypeCounts | None = None,
       progress: bool | None = None) -> tuple[Genotypes, pd.DataFrame]:
    """Filter samples and variants as plink2 ``--mind --geno --hwe --maf`` would.

    Order (plink2's): samples with a missing-call fraction > ``mind`` are removed first;
    the variant statistics are then taken over the kept samples, and variants are removed
    whose missing fraction > ``geno``, whose HWE exact p-value < ``hwe``
    (:func:`hwe_exact`, mid-p with ``midp=True``), or whose minor allele frequency <
    ``maf``. Variants without an observed copy of both alleles (monomorphic, or nothing
    observed) are removed too unless ``drop_monomorphic=False`` (plink2's filters alone,
    as before ``--glm``, which reports such a variant CONST_OMITTED_ALLELE). A threshold of
    ``None`` disables that filter. ``counts``: a :func:`genotype_counts` result of the same
    ``genotypes`` to start from instead of a counting pass (share one pass with
    :func:`allele_stats` / :func:`sample_missingness`).

    Returns
    -------
    filtered : Genotypes
        A lazy subset of ``genotypes`` (nothing decoded); ``meta["qc"]`` holds the
        thresholds and counts removed.
    report : DataFrame
        One row per removed sample or variant: ``kind`` ("sample" or "variant"), ``index``
        (position in the input ``genotypes``), ``fid`` (samples; "" for variants), ``id``
        (IID or variant ID), ``reason`` (the first failing filter in the order above:
        mind, geno, hwe, maf, monomorphic), ``value`` (the statistic that failed: missing
        fraction, HWE p, MAF, A1 frequency) and ``threshold`` (NaN for monomorphic).
    """
    if not isinstance(genotypes, Genotypes):
        raise TypeError(f"qc expects a gwaslift Genotypes, got {type(genotypes).__name__}")
    maf = _check_threshold("maf", maf, 0.5)
    geno = _check_threshold("geno", geno)
    mind = _check_threshold("mind", mind)
    hwe = _check_threshold("hwe", hwe)
    n, m = genotypes.shape

    counts = _check_counts(genotypes, counts, progress)
    sc = sex_chrom_counts(genotypes, progress)
    # --mind (a non-male's chrY calls count neither as missing nor as called)
    keep_s = np.ones(n, dtype=bool)
    sample_rows = pd.DataFrame(columns=REPORT_COLUMNS)
    if mind is not None and m > 0:
        s_miss, s_den = _sample_missing_plink(genotypes, counts.sample_missing, sc)
        bad = s_miss > mind * s_den * (1 + _EPS)
        keep_s = ~bad
        i = np.flatnonzero(bad)
        sample_rows = pd.DataFrame({
            "kind": "sample", "index": i, "fid": genotypes.samples["fid"].to_numpy()[i],
            "id": genotypes.samples["iid"].to_numpy()[i], "reason": "mind",
            "value": s_miss[i] / s_den[i], "threshold": mind,
        }, columns=REPORT_COLUMNS)
    variant = counts.variant
    if not keep_s.all():
        # the variant statistics on the kept samples: subtract the removed samples' counts
        # when they are the minority (a cheaper pass), else recount the kept ones
        if (~keep_s).sum() <= keep_s.sum():
            variant = variant - genotype_counts(genotypes.subset(samples=~keep_s), progress=progress).variant
        else:
            variant = genotype_counts(genotypes.subset(samples=keep_s), progress=progress).variant
        if sc.has_special:
            sc = sex_chrom_counts(genotypes.subset(samples=keep_s), progress)
    n_kept = int(keep_s.sum())

    n_obs = variant[:, :3].sum(axis=1)
    freq = allele_frequency(variant)
    minor = np.minimum(2 * variant[:, 0] + variant[:, 1], 2 * variant[:, 2] + variant[:, 1])
    # sex chromosomes: plink2's ploidy (half-allele units, see _plink_counts); chrY: males
    # only, in the numerator and the denominator of --geno
    pc = _plink_counts(variant, n_kept, sc) if sc.has_special else None
    v_missing = variant[:, 3]
    v_den = np.full(m, n_kept, dtype=np.int64)
    if pc is not None:
        special = sc.kind != CHROM_DIPLOID
        freq = pc.freq
        minor_u = np.minimum(pc.a1_units, pc.total_units - pc.a1_units)
        v_missing = pc.counts[:, 3]
        v_den = pc.n_eligible
    failed = np.zeros(m, dtype=bool)
    reason = np.empty(m, dtype=object)
    value = np.full(m, np.nan)
    threshold = np.full(m, np.nan)

    def mark(mask, name, val, thr):
        new = mask & ~failed
        reason[new] = name
        value[new] = val[new]
        threshold[new] = thr
        failed[:] |= new

    if geno is not None:
        if pc is None:
            mark(variant[:, 3] > geno * n_kept * (1 + _EPS), "geno",
                 variant[:, 3] / max(n_kept, 1), geno)
        else:
            mark(v_missing > geno * v_den * (1 + _EPS), "geno", v_missing / np.maximum(v_den, 1), geno)
    if hwe is not None:
        # chrX: Graffelman-Weir; chrY / MT: not tested (p NaN never fails)
        p = _hwe_p(variant, sc, midp)
        mark(p < hwe * (1 - _EPS), "hwe", p, hwe)
    if maf is not None:
        fail = (n_obs > 0) & (minor < maf * 2 * n_obs * (1 - _EPS))
        if pc is not None:
            fail = np.where(special, (pc.total_units > 0) & (minor_u < maf * pc.total_units * (1 - _EPS)), fail)
        mark(fail, "maf", np.minimum(freq, 1 - freq), maf)
    if drop_monomorphic:
        mark(np.where(special, minor_u == 0, minor == 0) if pc is not None else minor == 0,
             "monomorphic", freq, np.nan)

    j = np.flatnonzero(failed)
    variant_rows = pd.DataFrame({
        "kind": "variant", "index": j, "fid": "", "id": genotypes.variants["snp"].to_numpy()[j],
        "reason": reason[j], "value": value[j], "threshold": threshold[j],
    }, columns=REPORT_COLUMNS)
    parts = [df for df in (sample_rows, variant_rows) if len(df)]
    report = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REPORT_COLUMNS)
    for col in ("kind", "fid", "id", "reason"):
        report[col] = report[col].astype(object)
    report["index"] = report["index"].astype(np.int64)
    report["value"] = report["value"].astype(np.float64)
    report["threshold"] = report["threshold"].astype(np.float64)

    out = genotypes.subset(samples=keep_s, variants=~failed)
    summary = {
        "maf": maf, "geno": geno, "mind": mind, "hwe": hwe, "midp": midp,
        "n_samples_in": n, "n_variants_in": m,
        "n_samples_removed": int(n - n_kept), "n_variants_removed": int(failed.sum()),
    }
    out = replace(out, meta={**genotypes.meta, "qc": summary})
    return out, report


# ----------------------------------------------------------------------------- imputation

def impute_mean(dosage, a1_freq=None):
    """THE imputation rule of gwaslift: a missing dosage becomes the mean observed dosage.

    For variant j the mean of the observed A1 dosages is ``2 * a1_freq[j]`` (``a1_freq`` =
    A1 frequency among the observed calls of the same samples, as in :func:`allele_stats`),
    so every NaN in column j is replaced by ``2 * a1_freq[j]``. Every module that needs
    complete dosages (PCA, association, the deep model, DeepLIFT references) calls this
    function and applies no other rule.

    Parameters
    ----------
    dosage
        float array (n_samples, n_variants) of A1 dosages with NaN for missing: numpy, or a
        Dask array (then the result is a lazy Dask array too).
    a1_freq
        float array (n_variants,) of A1 frequencies; ``None`` takes them from the observed
        values of ``dosage`` itself (``nanmean / 2`` per column).

    Returns
    -------
    A new array of the same shape and dtype without NaN. Raises ``ValueError`` (when
    computed, for Dask input) if a column with missing values has no frequency (no
    observed call and no ``a1_freq`` given): such variants must be removed first, as
    :func:`qc` always does.
    """
    if dosage.ndim != 2:
        raise ValueError(f"impute_mean: dosage must be 2-D (samples x variants), got shape {dosage.shape}")
    if a1_freq is not None:
        a1_freq = np.asarray(a1_freq, dtype=np.float64)
        if a1_freq.shape != (dosage.shape[1],):
            raise ValueError(f"impute_mean: a1_freq has shape {a1_freq.shape}, expected ({dosage.shape[1]},)")
    if isinstance(dosage, np.ndarray):
        mean = 2.0 * a1_freq if a1_freq is not None else _nanmean_columns(dosage)
        return _impute_block(dosage, mean[None, :])
    import dask.array as da

    dosage = da.asarray(dosage)
    if a1_freq is not None:
        # one frequency chunk per dosage variant chunk, so that blocks pair up
        mean = da.from_array(2.0 * a1_freq, chunks=(dosage.chunks[1],))
    elif dosage.numblocks[0] == 1:  # all samples in each block: per-block column means
        mean = da.map_blocks(_nanmean_columns, dosage, drop_axis=0, dtype=np.float64)
    else:  # samples split over chunks: a full column reduction
        mean = da.nanmean(dosage.astype(np.float64), axis=0)
    return da.map_blocks(_impute_block, dosage, mean[None, :], dtype=dosage.dtype)


def _nanmean_columns(dosage: np.ndarray) -> np.ndarray:
    """Column means of the observed values (NaN for a column without any), float64."""
    obs = ~np.isnan(dosage)
    n = obs.sum(axis=0)
    total = np.where(obs, dosage, 0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _impute_block(dosage: np.ndarray, mean_row: np.ndarray) -> np.ndarray:
    """Replace NaN in each column of ``dosage`` by ``mean_row[0, j]`` (the kernel of
    :func:`impute_mean`)."""
    missing = np.isnan(dosage)
    no_mean = np.isnan(mean_row[0])
    if no_mean.any() and missing[:, no_mean].any():
        raise ValueError("impute_mean: a variant with missing dosages has no observed call "
                         "(no A1 frequency); remove it first (gwaslift.qc drops such variants)")
    return np.where(missing, mean_row.astype(dosage.dtype), dosage)

