"""Writing PLINK 1 binary filesets that plink2 reads.

:class:`PlinkWriter` streams variant blocks to disk (the simulator writes 100k x 100k
without holding the matrix); :func:`write_plink` writes an array or a (subset)
:class:`~gwaslift.io.plink.Genotypes` in one call. All three files are written under
temporary names and renamed only when the last block is in, so an interrupted run never
leaves a fileset that looks complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .packed import encode_dosage
from .plink import BED_MAGIC, BED_VARIANT_MAJOR, BIM_COLUMNS, FAM_COLUMNS, Genotypes


def _fam_text(samples: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=samples.index)
    n = len(samples)
    out["fid"] = samples["fid"].astype(str) if "fid" in samples else samples["iid"].astype(str)
    out["iid"] = samples["iid"].astype(str)
    out["father"] = samples["father"].astype(str) if "father" in samples else "0"
    out["mother"] = samples["mother"].astype(str) if "mother" in samples else "0"
    out["sex"] = samples["sex"].astype(int) if "sex" in samples else np.zeros(n, int)
    if "trait" in samples:
        t = pd.to_numeric(samples["trait"], errors="coerce")
        out["trait"] = [("-9" if np.isnan(v) else (str(int(v)) if float(v).is_integer() else repr(float(v)))) for v in t]
    else:
        out["trait"] = "-9"
    return out[FAM_COLUMNS]


def _bim_text(variants: pd.DataFrame) -> pd.DataFrame:
    out = variants[BIM_COLUMNS].copy()
    out["pos"] = out["pos"].astype(np.int64)
    return out


class PlinkWriter:
    """Stream a fileset to ``prefix.bed/.bim/.fam`` variant block by variant block.

    Use as a context manager::

        with PlinkWriter(prefix, samples, variants) as w:
            for block in blocks:          # (n_samples, m_block) A1 dosages, NaN missing
                w.write(block)

    The total number of variants written must equal ``len(variants)``; on any error the
    temporary files are removed and nothing appears under ``prefix``.
    """

    def __init__(self, prefix: str | os.PathLike, samples: pd.DataFrame, variants: pd.DataFrame):
        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.samples = samples
        self.variants = variants
        self.n_written = 0
        self._final = {ext: Path(f"{self.prefix}.{ext}") for ext in ("bed", "bim", "fam")}
        self._tmp = {ext: p.with_name(f".{p.name}.tmp-{os.getpid()}") for ext, p in self._final.items()}
        self._bed = None

    def __enter__(self) -> "PlinkWriter":
        self._bed = open(self._tmp["bed"], "wb")
        self._bed.write(BED_MAGIC + bytes([BED_VARIANT_MAJOR]))
        return self

    def write(self, dosage_block: np.ndarray) -> None:
        """Append variants: ``dosage_block`` is (n_samples, m_block) of 0/1/2/NaN A1 counts."""
        block = np.asarray(dosage_block)
        if block.ndim != 2 or block.shape[0] != len(self.samples):
            raise ValueError(f"block shape {block.shape} does not have {len(self.samples)} sample rows")
        self._bed.write(encode_dosage(block).tobytes())
        self.n_written += block.shape[1]

    def write_packed(self, packed_rows: np.ndarray) -> None:
        """Append already packed .bed rows (variants x ceil(n/4) uint8)."""
        self._bed.write(np.ascontiguousarray(packed_rows, dtype=np.uint8).tobytes())
        self.n_written += packed_rows.shape[0]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._bed.close()
            if exc_type is None:
                if self.n_written != len(self.variants):
                    raise ValueError(
                        f"wrote {self.n_written} variants but the variant table has {len(self.variants)}"
                    )
                _bim_text(self.variants).to_csv(self._tmp["bim"], sep="\t", header=False, index=False)
                _fam_text(self.samples).to_csv(self._tmp["fam"], sep=" ", header=False, index=False)
                for ext in ("bim", "fam", "bed"):
                    os.replace(self._tmp[ext], self._final[ext])
        finally:
            for p in self._tmp.values():
                if p.exists():
                    p.unlink()


def write_plink(prefix: str | os.PathLike, genotypes, samples: pd.DataFrame | None = None,
                variants: pd.DataFrame | None = None) -> Path:
    """Write a fileset.

    ``genotypes`` is either a :class:`Genotypes` (written as selected, block by block, with
    its own sample and variant tables; packed bytes are copied without decoding when all
    samples are kept) or an array (n_samples, n_variants) of A1 dosages with ``samples``
    and ``variants`` tables. Returns the prefix.
    """
    if isinstance(genotypes, Genotypes):
        g = genotypes
        with PlinkWriter(prefix, g.samples, g.variants) as w:
            for start, stop in g.variant_blocks():
                if g.all_samples:
                    w.write_packed(g.read_packed(start, stop))
                else:
                    w.write(g.read_dosage(start, stop))
        return Path(prefix)
    arr = np.asarray(genotypes)
    if samples is None or variants is None:
        raise ValueError("writing an array needs the samples and variants tables")
    with PlinkWriter(prefix, samples, variants) as w:
        w.write(arr)
    return Path(prefix)
