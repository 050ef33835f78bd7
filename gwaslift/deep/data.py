"""Moving packed 2-bit genotypes to the training device and decoding them there.

The fast path never builds a float genotype matrix on the host. Variant chunks of raw .bed
bytes (``Genotypes.read_packed``, host memory bounded by one chunk) are copied to the
device, the wanted samples' 2-bit codes are pulled out (:func:`extract_codes`, the kernel
of :func:`decode_packed_torch`) and *re-packed* four per byte, sample-major, into a compact
:class:`PackedStore` (S x ceil(v / 4) uint8, 1/16 of float32) holding only the staged
samples, in the staged order. Sample-major because a minibatch is a set of samples: it is
then a gather of whole contiguous rows, decoded on the device with one 256-entry byte
table straight into centred inputs::

    x[b, j] = dosage[b, j] - center[j]      (missing -> 0, i.e. imputed to the training mean)

Decoding is exact (integers and one subtraction), so a minibatch is bitwise the same
whatever the chunk size, whether the store holds all samples for all epochs ("resident")
or a block of them staged per epoch ("streaming", used when the packed matrix does not
fit the device budget).

Code table (as :mod:`gwaslift.io.packed`): 0 -> 2 (hom A1), 1 -> missing, 2 -> 1, 3 -> 0;
A1 = .bim column 5 is the counted allele.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..errors import InputError
from ..io.packed import BYTE_TO_DOSAGE, CODE_TO_DOSAGE
from . import kernels

#: A1 dosage of each 2-bit code (index = code), float32, NaN missing.
_CODE_TO_DOSAGE_T = torch.from_numpy(CODE_TO_DOSAGE.copy())
#: the four A1 dosages packed in each byte value, (256, 4) float32, NaN missing.
_BYTE_TO_DOSAGE_T = torch.from_numpy(np.ascontiguousarray(BYTE_TO_DOSAGE))


def _as_index(idx, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(idx, dtype=np.int64) if not torch.is_tensor(idx) else idx,
                           dtype=torch.int64, device=device)


def extract_codes(packed_u8: torch.Tensor, sample_idx: torch.Tensor) -> torch.Tensor:
    """2-bit codes (v, len(sample_idx)) uint8 of the given sample positions of packed rows (v, B)."""
    shifts = (2 * (sample_idx & 3)).to(torch.uint8)
    return (packed_u8[:, sample_idx >> 2] >> shifts) & 3


def extract_codes_by_sample(packed_u8: torch.Tensor, sample_idx: torch.Tensor) -> torch.Tensor:
    """The codes of :func:`extract_codes` transposed: (len(sample_idx), v) uint8, contiguous.

    Transposes the bytes first and then gathers whole rows (one per sample), which is 1.4-3.6x
    faster on the CPU than gathering along the byte axis and transposing the codes after.
    """
    shifts = (2 * (sample_idx & 3)).to(torch.uint8)
    return (packed_u8.T.contiguous().index_select(0, sample_idx >> 2) >> shifts[:, None]) & 3


def decode_packed_torch(packed_u8: torch.Tensor, n_file_samples: int,
                        sample_idx: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """A1 dosages from packed .bed rows, decoded on the rows' device.

    Parameters
    ----------
    packed_u8
        uint8 tensor (v, ceil(n_file_samples / 4)): .bed rows (or a :class:`PackedStore`).
    n_file_samples
        Samples packed in each row (rows are padded to whole bytes).
    sample_idx
        int positions (into the packed samples) to decode, in the wanted order; ``None`` = all.

    Returns
    -------
    float32 tensor (len(sample_idx), v), NaN for missing; equals
    :func:`gwaslift.io.packed.decode_dosage`.
    """
    packed_u8 = torch.as_tensor(packed_u8)
    if packed_u8.dtype != torch.uint8 or packed_u8.ndim != 2:
        raise ValueError("packed_u8 must be a 2-D uint8 tensor (variants x bytes)")
    dev = packed_u8.device
    if sample_idx is None:
        sample_idx = torch.arange(int(n_file_samples), device=dev)
    sample_idx = _as_index(sample_idx, dev)
    if sample_idx.numel() and (int(sample_idx.min()) < 0 or int(sample_idx.max()) >= n_file_samples):
        raise IndexError(f"sample index out of range 0..{n_file_samples - 1}")
    codes = extract_codes(packed_u8, sample_idx)
    return _CODE_TO_DOSAGE_T.to(dev)[codes.long()].T.contiguous()


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """Pack 2-bit codes (v, S) uint8 four per byte -> (v, ceil(S / 4)) uint8 (.bed layout)."""
    v, s = codes.shape
    pad = (-s) % 4
    if pad:
        codes = torch.cat([codes, torch.ones((v, pad), dtype=torch.uint8, device=codes.device)], 1)
    c = codes.reshape(v, -1, 4)
    return c[..., 0] | (c[..., 1] << 2) | (c[..., 2] << 4) | (c[..., 3] << 6)


#: (256, 8) float32: per byte value, the four A1 dosages with missing -> 0, then the four
#: observed flags (1 observed, 0 missing). One gather gives both halves of the decode.
_BYTE_TO_DOSAGE_OBS_T = torch.cat([torch.nan_to_num(_BYTE_TO_DOSAGE_T, nan=0.0),
                                   (~torch.isnan(_BYTE_TO_DOSAGE_T)).to(torch.float32)], 1).contiguous()
#: bytes decoded per block on the CPU: the (block, 8) gather buffer (256 KiB) stays in cache,
#: and every op on a block stays below torch's parallel grain, so no thread sync per block.
_CPU_BLOCK_BYTES = 8192
_POOL: ThreadPoolExecutor | None = None
#: CPU batches of at least this many genotypes are decoded by numba; smaller ones by torch ops,
#: so that a job that only ever decodes a few SNPs (DeepLIFT on an L1-sparse model) does not
#: pay numba's import and kernel load (~0.5 s once per process)
NUMBA_DECODE_MIN = 1 << 20


def _table(dev) -> torch.Tensor:
    return _BYTE_TO_DOSAGE_OBS_T if dev.type == "cpu" else _BYTE_TO_DOSAGE_OBS_T.to(dev)


def _decode_rows_cpu(rows: torch.Tensor, cp: torch.Tensor, out3: torch.Tensor, r0: int, r1: int) -> None:
    """out3[r0:r1] (r, Bf, 4) = dosage - center (missing -> 0) of packed rows[r0:r1, :Bf],
    block by block: int32 bytes -> (n, 8) table gather -> one addcmul into the output."""
    bf = out3.shape[1]
    cb = max(1, min(bf, _CPU_BLOCK_BYTES))
    rb = max(1, _CPU_BLOCK_BYTES // cb)
    table = _BYTE_TO_DOSAGE_OBS_T
    ibuf = torch.empty(rb * cb, dtype=torch.int32)
    gbuf = torch.empty(rb * cb, 8, dtype=torch.float32)
    for a0 in range(r0, r1, rb):
        a1 = min(r1, a0 + rb)
        for c0 in range(0, bf, cb):
            c1 = min(bf, c0 + cb)
            n = (a1 - a0) * (c1 - c0)
            ib = ibuf[:n]
            ib.view(a1 - a0, c1 - c0).copy_(rows[a0:a1, c0:c1])
            e = torch.index_select(table, 0, ib, out=gbuf[:n]).view(a1 - a0, c1 - c0, 8)
            # d - obs * center: d - c where observed, 0 + (-0) = 0 where missing (bitwise
            # the old ``nan_to_num(dosage - center)``: the products are by 1 and 0, exact)
            torch.addcmul(e[..., :4], e[..., 4:], cp[c0:c1], value=-1, out=out3[a0:a1, c0:c1])


def decode_centred_rows(rows: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Centred inputs (b, v) float32 of packed sample-major rows (b, >= ceil(v / 4)) uint8.

    ``x[i, j] = dosage[i, j] - center[j]`` with missing -> 0; ``center`` float32 (v,),
    finite. Bitwise equal to ``nan_to_num(dosage - center, nan=0)``. On the CPU one numba
    pass (rows split over the threads; without numba: the bytes decoded in cache-sized blocks
    straight into the output); elsewhere as one gather and one ``addcmul``.
    """
    v = center.shape[0]
    b = rows.shape[0]
    dev = rows.device
    bf = v // 4  # whole bytes; a last partial byte (v % 4 != 0) is decoded apart
    out = torch.empty((b, v), dtype=torch.float32, device=dev)
    if b == 0 or v == 0:
        return out
    if dev.type == "cpu" and b * v >= NUMBA_DECODE_MIN and kernels.available():
        # one numba pass (_numba_kernels.py), ~13x the torch path on 256 x 10,000
        kernels.kernel("decode_centred")(rows.contiguous().numpy(), center.contiguous().numpy(), CODE_TO_DOSAGE,
                                       out.numpy())
        return out
    cp = center[:4 * bf].view(bf, 4)
    out3 = out[:, :4 * bf].unflatten(1, (bf, 4))
    if dev.type == "cpu":
        rows = rows.contiguous()
        nt = min(torch.get_num_threads(), b)
        if nt > 1 and b * bf >= 16 * _CPU_BLOCK_BYTES:
            global _POOL
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gwaslift-decode")
            nt = min(nt, 2)
            step = -(-b // nt)
            futs = [_POOL.submit(_decode_rows_cpu, rows, cp, out3, r, min(b, r + step))
                    for r in range(0, b, step)]
            for f in futs:
                f.result()
        else:
            _decode_rows_cpu(rows, cp, out3, 0, b)
    elif bf:
        e = torch.nn.functional.embedding(rows[:, :bf].to(torch.int32), _table(dev))
        torch.addcmul(e[..., :4], e[..., 4:], cp, value=-1, out=out3)
    r = v - 4 * bf
    if r:
        e = _table(dev)[rows[:, bf].long()]
        out[:, 4 * bf:] = torch.addcmul(e[:, :r], e[:, 4:4 + r], center[4 * bf:], value=-1)
    return out


def _decode_centred_reference(store: torch.Tensor, idx: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """The plain decode (dosage table gather, subtraction, NaN -> 0); any center."""
    v = center.shape[0]
    d = _BYTE_TO_DOSAGE_T.to(store.device)[store[idx].long()].reshape(len(idx), -1)[:, :v]
    return torch.nan_to_num(d - center, nan=0.0)


def decode_centred(store: torch.Tensor, idx: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Centred inputs (len(idx), v) float32 of store rows ``idx`` (see the module docstring).

    ``store`` is a sample-major packed store (S, ceil(v / 4)); ``center`` float32 (v,).
    Bitwise equal to ``nan_to_num(dosage - center, nan=0)`` (a non-finite ``center`` takes
    that plain path, so NaN / inf centres behave exactly as there).
    """
    if center.dtype != torch.float32 or not bool(torch.isfinite(center).all()):
        return _decode_centred_reference(store, idx, center)
    return decode_centred_rows(store.index_select(0, torch.as_tensor(idx, device=store.device).long()), center)


@dataclass
class PackedStore:
    """Samples staged on a device, sample-major: row ``i`` of ``packed`` (n, ceil(v / 4))
    uint8 holds the codes of genotype position ``positions[i]``, variant ``j`` in byte
    ``j // 4`` at bits ``2 * (j % 4)`` (the .bed bit order, transposed)."""

    packed: torch.Tensor
    positions: np.ndarray

    @property
    def n(self) -> int:
        return len(self.positions)

    @property
    def nbytes(self) -> int:
        return self.packed.numel()


def packed_nbytes(n_variants: int, n_samples: int) -> int:
    """Bytes of a compact store of ``n_samples`` x ``n_variants``."""
    return int(n_samples) * ((int(n_variants) + 3) // 4)


def stage(genotypes, positions: np.ndarray, device, *, prefetch: bool = True) -> PackedStore:
    """Stream ``genotypes`` chunk by chunk to ``device`` and keep the codes of ``positions``.

    ``positions`` index ``genotypes.samples``. Host memory: one or two packed chunks
    (``genotypes.variant_chunk`` x ceil(N_file / 4) bytes; the next chunk is read by a
    background thread while the current one is re-packed).
    """
    positions = np.asarray(positions, dtype=np.int64)
    dev = torch.device(device)
    fidx = torch.as_tensor(genotypes.sample_idx[positions], dtype=torch.int64, device=dev)
    out = torch.zeros((len(positions), (genotypes.n_variants + 3) // 4), dtype=torch.uint8, device=dev)
    blocks = list(genotypes.variant_blocks())

    def read(b):
        return torch.from_numpy(genotypes.read_packed(*b))

    pool = ThreadPoolExecutor(max_workers=1) if prefetch and len(blocks) > 1 else None
    try:
        nxt = pool.submit(read, blocks[0]) if pool else None
        for i, (start, stop) in enumerate(blocks):
            rows = nxt.result() if pool else read((start, stop))
            if pool and i + 1 < len(blocks):
                nxt = pool.submit(read, blocks[i + 1])
            rows = rows.to(dev, non_blocking=True)
            # transpose to sample-major; a chunk may start inside a byte (start % 4 != 0):
            # its codes are OR-ed into the bits left free by the previous chunk
            off, b0 = start & 3, start >> 2
            tmp = torch.zeros((len(positions), (off + stop - start + 3) // 4 * 4), dtype=torch.uint8, device=dev)
            tmp[:, off:off + stop - start] = extract_codes_by_sample(rows, fidx)
            packed = pack_codes(tmp)
            out[:, b0:b0 + packed.shape[1]] |= packed
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return PackedStore(out, positions)


def _check_rows(fit_table, table, columns, noun: str, what: str, where, count_note: str, row_label: str,
                row_note: str) -> None:
    """InputError unless ``table[columns]`` equals ``fit_table[columns]`` row by row (as text):
    first the counts, then the first row that differs."""
    a = fit_table[columns].astype(str).reset_index(drop=True)
    b = table[columns].astype(str).reset_index(drop=True)
    if len(a) != len(b):
        raise InputError(f"{what} have {len(b)} {noun}s but the model was trained on {len(a)}{count_note}", where)
    bad = (a != b).any(axis=1).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{noun} {i} differs from the model's: {row_label}{tuple(b.iloc[i])} vs "
                         f"{tuple(a.iloc[i])} ({row_note})", where)


def check_variants(fit_variants, genotypes, what: str = "the genotypes") -> None:
    """Raise InputError unless ``genotypes.variants`` equal the fit's (snp, a1, a2, in order)."""
    _check_rows(fit_variants, genotypes.variants, ["snp", "a1", "a2"], "variant", what,
                getattr(genotypes, "prefix", None) or None, "", "",
                "the model needs the same SNPs, alleles (A1 = .bim column 5) and order")


def check_samples(fit_samples, genotypes, what: str = "the genotypes") -> None:
    """Raise InputError unless ``genotypes.samples`` equal the fit's (fid, iid, in order):
    the fit's split positions index those samples, so any other set or order would
    silently train or score other people."""
    _check_rows(fit_samples, genotypes.samples, ["fid", "iid"], "sample", what,
                getattr(genotypes, "prefix", None) or None,
                " (its split positions index the training samples, in order)", "(FID, IID) ",
                "the model's split positions index its samples, in order")


def standardize_covariates(covariates, n_samples: int, mean, scale, names=None) -> np.ndarray | None:
    """Covariates (n_samples, n_covar) as float32, standardized with the fit's mean/scale.
    A DataFrame's columns must be ``names`` (the fit's ``covar_names``), in order: the inputs
    are positional, and a swapped column would be scored as the other covariate."""
    if covariates is None:
        return None
    if names is not None and hasattr(covariates, "columns") and [str(c) for c in covariates.columns] != list(names):
        raise InputError(f"covariates have columns {[str(c) for c in covariates.columns]}, the model was "
                         f"trained with {list(names)} (same names, same order)")
    arr = np.asarray(covariates.to_numpy() if hasattr(covariates, "to_numpy") else covariates, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape[0] != n_samples:
        raise InputError(f"covariates have {arr.shape[0]} rows, expected one per sample ({n_samples})")
    if names is not None and arr.shape[1] != len(names):
        raise InputError(f"covariates have {arr.shape[1]} columns, the model expects {len(names)}: {names}")
    return ((arr - np.asarray(mean)) / np.asarray(scale)).astype(np.float32)


def iter_batches(genotypes, positions: np.ndarray, center: torch.Tensor, batch_size: int, device, *,
                 store: PackedStore | None = None, store_index: np.ndarray | None = None,
                 max_stage_bytes: int | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(pos (b,), x (b, v))`` centred batches of ``positions`` in the given order.

    With a resident ``store`` (``store_index[p]`` = store row of position ``p``) batches are
    gathered from it; otherwise ``positions`` are staged block by block (each block a pass
    over the file), a block holding a multiple of ``batch_size`` samples and at most
    ``max_stage_bytes`` packed bytes. Either way the batches are bitwise the same.
    """
    positions = np.asarray(positions, dtype=np.int64)
    dev = torch.device(device)
    if store is not None:
        for s in range(0, len(positions), batch_size):
            pos = positions[s:s + batch_size]
            idx = torch.as_tensor(store_index[pos], device=dev)
            yield pos, decode_centred(store.packed, idx, center)
        return
    per_sample = max(1, (genotypes.n_variants + 3) // 4)
    block = len(positions) if max_stage_bytes is None else max(1, int(max_stage_bytes) // per_sample)
    block = max(batch_size, (block // batch_size) * batch_size)
    for b0 in range(0, len(positions), block):
        blk = positions[b0:b0 + block]
        st = stage(genotypes, blk, dev)
        for s in range(0, len(blk), batch_size):
            idx = torch.arange(s, min(s + batch_size, len(blk)), device=dev)
            yield blk[s:s + batch_size], decode_centred(st.packed, idx, center)
        del st


def iter_fit_batches(fit, genotypes, positions, covariates=None, batch_size: int = 1024,
                     device="cpu", max_stage_bytes: int | None = 2**30):
    """Model inputs for ``positions`` (into ``genotypes.samples``), batch by batch.

    Yields ``(pos_np (b,), x (b, n_snps) float32 tensor, covar (b, n_covar) tensor | None)``
    on ``device``: ``x = dosage - fit.center`` with missing genotypes -> 0 (mean-imputed,
    then centred); covariates standardized with ``fit.covar_mean`` / ``fit.covar_scale``.
    Genotypes are staged on the device as packed bytes, at most ``max_stage_bytes`` at a
    time. Raises :class:`InputError` unless ``genotypes`` has the fit's variants (snp, a1,
    a2, in order), or when the fit has covariates and none are given.
    """
    dev, positions, cov_t, center = _fit_inputs(fit, genotypes, positions, covariates, device)
    for pos, x in iter_batches(genotypes, positions, center, int(batch_size), dev,
                               max_stage_bytes=max_stage_bytes):
        c = cov_t[torch.as_tensor(pos, device=dev)] if cov_t is not None else None
        yield pos, x, c


def _fit_inputs(fit, genotypes, positions, covariates, device):
    """Validated (device, positions, standardized covariates tensor | None, center tensor)."""
    check_variants(fit.variants, genotypes)
    dev = torch.device(device)
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size and (positions.min() < 0 or positions.max() >= genotypes.n_samples):
        raise IndexError(f"positions must lie in 0..{genotypes.n_samples - 1}")
    if fit.covar_names and covariates is None:
        raise InputError(f"the model was trained with covariates {fit.covar_names}: pass covariates")
    cov = standardize_covariates(covariates, genotypes.n_samples, fit.covar_mean, fit.covar_scale,
                                 fit.covar_names) if fit.covar_names else None
    bad = positions[~np.isfinite(cov[positions]).all(1)] if cov is not None else positions[:0]
    if len(bad):
        raise InputError(f"{len(bad)} of the samples asked for have a missing or non-finite covariate "
                         f"(first: sample {int(bad[0])}, {tuple(genotypes.samples[['fid', 'iid']].iloc[int(bad[0])])}); "
                         "the network needs every input", getattr(genotypes, "prefix", None) or None)
    cov_t = torch.as_tensor(cov, device=dev) if cov is not None else None
    center = torch.as_tensor(np.asarray(fit.center, dtype=np.float32), device=dev)
    return dev, positions, cov_t, center


def iter_fit_batches_snps(fit, genotypes, positions, snps, covariates=None, batch_size: int = 1024,
                          device="cpu", max_stage_bytes: int | None = 2**30):
    """:func:`iter_fit_batches` for only the SNP columns ``snps`` (increasing positions).

    Yields ``(pos_np (b,), x (b, len(snps)) float32, covar | None)``; ``x[:, t]`` is bitwise
    the column ``snps[t]`` that :func:`iter_fit_batches` gives. Only those variants' .bed
    rows are read, staged and decoded, so for models whose first layer uses few SNPs (L1
    fits) both the staging pass and the decode cost ``len(snps) / n_snps`` of the full ones.
    """
    dev, positions, cov_t, center = _fit_inputs(fit, genotypes, positions, covariates, device)
    snps = np.asarray(snps, dtype=np.int64)
    if snps.size and (np.any(np.diff(snps) <= 0) or snps[0] < 0 or snps[-1] >= genotypes.n_variants):
        raise IndexError(f"snps must be increasing positions in 0..{genotypes.n_variants - 1}")
    sub = genotypes.subset(variants=snps)
    center = center[torch.as_tensor(snps, device=dev)]
    for pos, x in iter_batches(sub, positions, center, int(batch_size), dev, max_stage_bytes=max_stage_bytes):
        c = cov_t[torch.as_tensor(pos, device=dev)] if cov_t is not None else None
        yield pos, x, c
