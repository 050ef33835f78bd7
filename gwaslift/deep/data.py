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


def decode_centred(store: torch.Tensor, idx: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Centred inputs (len(idx), v) float32 of store rows ``idx`` (see the module docstring).

    ``store`` is a sample-major packed store (S, ceil(v / 4)); ``center`` float32 (v,).
    """
    v = center.shape[0]
    d = _BYTE_TO_DOSAGE_T.to(store.device)[store[idx].long()].reshape(len(idx), -1)[:, :v]
    return torch.nan_to_num(d - center, nan=0.0)


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
            tmp[:, off:off + stop - start] = extract_codes(rows, fidx).T
            packed = pack_codes(tmp)
            out[:, b0:b0 + packed.shape[1]] |= packed
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return PackedStore(out, positions)


def check_variants(fit_variants, genotypes, what: str = "the genotypes") -> None:
    """Raise InputError unless ``genotypes.variants`` equal the fit's (snp, a1, a2, in order)."""
    a = fit_variants[["snp", "a1", "a2"]].astype(str).reset_index(drop=True)
    b = genotypes.variants[["snp", "a1", "a2"]].astype(str).reset_index(drop=True)
    if len(a) != len(b):
        raise InputError(f"{what} have {len(b)} variants but the model was trained on {len(a)}",
                         getattr(genotypes, "prefix", None) or None)
    bad = (a != b).any(axis=1).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"variant {i} differs from the model's: {tuple(b.iloc[i])} vs {tuple(a.iloc[i])} "
            "(the model needs the same SNPs, alleles (A1 = .bim column 5) and order)",
            getattr(genotypes, "prefix", None) or None)


def standardize_covariates(covariates, n_samples: int, mean, scale, names=None) -> np.ndarray | None:
    """Covariates (n_samples, n_covar) as float32, standardized with the fit's mean/scale."""
    if covariates is None:
        return None
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
    check_variants(fit.variants, genotypes)
    dev = torch.device(device)
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size and (positions.min() < 0 or positions.max() >= genotypes.n_samples):
        raise IndexError(f"positions must lie in 0..{genotypes.n_samples - 1}")
    if fit.covar_names and covariates is None:
        raise InputError(f"the model was trained with covariates {fit.covar_names}: pass covariates")
    cov = standardize_covariates(covariates, genotypes.n_samples, fit.covar_mean, fit.covar_scale,
                                 fit.covar_names) if fit.covar_names else None
    cov_t = torch.as_tensor(cov, device=dev) if cov is not None else None
    center = torch.as_tensor(np.asarray(fit.center, dtype=np.float32), device=dev)
    for pos, x in iter_batches(genotypes, positions, center, int(batch_size), dev,
                               max_stage_bytes=max_stage_bytes):
        c = cov_t[torch.as_tensor(pos, device=dev)] if cov_t is not None else None
        yield pos, x, c
