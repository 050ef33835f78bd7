"""Decoding PLINK 1 .bed bytes (the 2-bit packed genotype codes) on the CPU.

A variant-major .bed row holds ``ceil(N / 4)`` bytes for ``N`` samples; sample ``i`` sits
in byte ``i // 4`` at bits ``2 * (i % 4)`` and ``2 * (i % 4) + 1`` (low bits first). The
2-bit code ``c = (byte >> 2 * (i % 4)) & 3`` means:

====  ===========================================  =================
code  genotype                                     A1 dosage (ours)
====  ===========================================  =================
0     homozygous for the .bim column-5 allele (A1)  2
1     missing                                      NaN
2     heterozygous                                 1
3     homozygous for the .bim column-6 allele (A2)  0
====  ===========================================  =================

gwaslift counts A1 = .bim column 5, as plink2 does (``--export A``, ``--glm``). The torch
decoder in :mod:`gwaslift.deep.data` uses the same table; tests compare both with plink2.
"""

from __future__ import annotations

import numpy as np

#: A1 dosage of each 2-bit code (index = code).
CODE_TO_DOSAGE = np.array([2.0, np.nan, 1.0, 0.0], dtype=np.float32)

#: ``BYTE_TO_CODES[b, k]`` is the 2-bit code of the k-th sample packed in byte ``b``.
BYTE_TO_CODES = ((np.arange(256, dtype=np.uint16)[:, None] >> (2 * np.arange(4))) & 3).astype(
    np.uint8
)

#: ``BYTE_TO_DOSAGE[b]`` holds the four A1 dosages packed in byte ``b`` (float32, NaN missing).
BYTE_TO_DOSAGE = CODE_TO_DOSAGE[BYTE_TO_CODES]


def bytes_per_variant(n_samples: int) -> int:
    """Bytes a variant occupies in a .bed file: ``ceil(n_samples / 4)``."""
    return (int(n_samples) + 3) // 4


def unpack_codes(packed: np.ndarray, n_samples: int, sample_idx: np.ndarray | None = None) -> np.ndarray:
    """2-bit codes of selected samples.

    Parameters
    ----------
    packed
        uint8 array (n_variants, ceil(n_samples / 4)): .bed rows.
    n_samples
        Number of samples in the file (the rows are padded to whole bytes).
    sample_idx
        int array of file sample indices to keep, in the wanted order; ``None`` = all.

    Returns
    -------
    uint8 array (n_variants, n_selected) of codes 0..3 (see the module table).
    """
    packed = np.asarray(packed, dtype=np.uint8)
    if sample_idx is None:
        codes = BYTE_TO_CODES[packed].reshape(packed.shape[0], -1)
        return codes[:, :n_samples]
    sample_idx = np.asarray(sample_idx, dtype=np.int64)
    shifts = (2 * (sample_idx & 3)).astype(np.uint8)
    return (packed[:, sample_idx >> 2] >> shifts) & np.uint8(3)


def decode_dosage(packed: np.ndarray, n_samples: int, sample_idx: np.ndarray | None = None) -> np.ndarray:
    """A1 dosages, samples x variants, from packed .bed rows.

    Parameters are those of :func:`unpack_codes`. Returns a C-contiguous float32 array
    (n_selected_samples, n_variants) with NaN for missing genotypes.
    """
    packed = np.asarray(packed, dtype=np.uint8)
    if sample_idx is None:
        dos = BYTE_TO_DOSAGE[packed].reshape(packed.shape[0], -1)[:, :n_samples]
    else:
        dos = CODE_TO_DOSAGE[unpack_codes(packed, n_samples, sample_idx)]
    return np.ascontiguousarray(dos.T)


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """Pack 2-bit codes (n_variants, n_samples) uint8 into .bed rows (n_variants, ceil(n / 4));
    padding bits are 0, as PLINK writes them. The inverse of :func:`unpack_codes`."""
    codes = np.asarray(codes, dtype=np.uint8)
    m, n = codes.shape
    padded = np.zeros((m, bytes_per_variant(n) * 4), dtype=np.uint8)
    padded[:, :n] = codes
    c = padded.reshape(m, -1, 4)
    return (c[..., 0] | (c[..., 1] << 2) | (c[..., 2] << 4) | (c[..., 3] << 6)).astype(np.uint8)


def encode_dosage(dosage: np.ndarray) -> np.ndarray:
    """Pack A1 dosages into .bed rows (the inverse of :func:`decode_dosage`).

    Parameters
    ----------
    dosage
        array (n_samples, n_variants) of 0, 1, 2 (A1 counts) or NaN (missing). Any other
        value raises ``ValueError``: hard calls only.

    Returns
    -------
    uint8 array (n_variants, ceil(n_samples / 4)); padding bits are 0, as PLINK writes them.
    """
    dosage = np.asarray(dosage)
    d = dosage.T
    missing = np.isnan(d) if np.issubdtype(d.dtype, np.floating) else np.zeros(d.shape, bool)
    filled = np.where(missing, 0, d)
    if not np.all(np.isin(filled, (0, 1, 2))):
        raise ValueError("dosages to write must be 0, 1, 2 or NaN (hard calls)")
    # 2 -> 0, 1 -> 2, 0 -> 3, missing -> 1
    lut = np.array([3, 2, 0], dtype=np.uint8)
    c = lut[filled.astype(np.int64)]
    c[missing] = 1
    return pack_codes(c)
