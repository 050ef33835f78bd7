"""Reading PLINK 1 binary filesets (.bed/.bim/.fam) lazily.

Data contract (what :func:`read_plink` returns, see :class:`Genotypes`):

* orientation: samples x variants for dosages; variants x bytes for the packed matrix;
* dtype: float32 dosages, NaN for a missing call; uint8 packed bytes;
* counted allele: A1 = column 5 of the .bim, exactly as plink2 counts it
  (``--export A``, ``--freq`` ALT, ``--glm`` A1 when A1 is ALT);
* laziness: nothing but the .bim/.fam text is read until a chunk is computed; each task
  opens the .bed by path and reads only its own variants' bytes, so graphs are small and
  ship to ``dask.distributed`` workers without copying the file; each open checks that the
  .bed still has the size and modification time it had at :func:`read_plink` (a rewritten
  .bed raises :class:`InputError`, never stale rows);
* read as plink2 reads: .bim variants with a negative position are skipped, chromosome codes
  are named as plink2 names them (``23`` -> ``X``, ``chr1`` -> ``1``), .fam traits follow the
  missing-value rule of phenotype files.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .packed import bytes_per_variant, decode_dosage
from .pheno import parse_values

BED_MAGIC = b"\x6c\x1b"
BED_VARIANT_MAJOR = 0x01
BED_HEADER_BYTES = 3

FAM_COLUMNS = ["fid", "iid", "father", "mother", "sex", "trait"]
BIM_COLUMNS = ["chrom", "snp", "cm", "pos", "a1", "a2"]

#: Default target size of one decoded dosage chunk (float32 bytes): big enough that the
#: per-task overhead is negligible, small enough that a few chunks fit in any worker.
DEFAULT_CHUNK_BYTES = 64 * 2**20


def _fast_table(path: Path, columns: list[str], numeric: tuple[int, ...] = ()) -> pd.DataFrame | None:
    """Parse a whitespace-separated 6-column file with pandas' C parser, or return None when
    anything looks off (then :func:`_split_rows` finds and names the bad line). Columns
    ``numeric`` are parsed as float64 by the parser itself (a text value there also means
    None); the others are strings."""
    dtype = {k: (np.float64 if k in numeric else str) for k in range(7)}
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=dtype, engine="c", na_filter=False,
                         skip_blank_lines=True, names=range(7))
    except Exception:  # ragged rows, undecodable bytes, ...: let the slow path explain
        return None
    if df.shape[0] == 0 or (df[6] != "").any() or (df[5] == "").any() or df[list(numeric)].isna().any().any():
        return None
    df = df.iloc[:, :6]
    df.columns = columns
    return df


def _split_rows(path: Path, n_fields: int, what: str) -> list[list[str]]:
    """Whitespace-split the non-empty lines of a .fam/.bim file, checking the field count."""
    rows = []
    try:
        with open(path, encoding="utf-8-sig") as fh:  # a leading byte-order mark dropped, as pandas does
            for lineno, line in enumerate(fh, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != n_fields:
                    raise InputError(
                        f"expected {n_fields} whitespace-separated fields in a {what} row, "
                        f"found {len(fields)}: {line.strip()[:80]!r}",
                        path,
                        lineno,
                    )
                rows.append(fields)
    except UnicodeDecodeError as exc:
        raise InputError(f"not a text {what} file ({exc.reason})", path) from None
    if not rows:
        raise InputError(f"the {what} file holds no rows", path)
    return rows


def read_fam(path: str | os.PathLike) -> pd.DataFrame:
    """Read a .fam file: one row per sample, columns ``fid, iid, father, mother, sex, trait``.

    ``sex`` is int8 (1 male, 2 female, 0 unknown: plink2 reads 1/M/m as male, 2/F/f as
    female and any other code, e.g. 0, -9, NA, as unknown); ``trait`` is float with NaN for the PLINK
    missing codes, by the rule of phenotype files (:func:`gwaslift.io.pheno.parse_values`):
    any number equal to -9 (``-9``, ``-9.0``), ``NA``, ``nan`` in any letter case. A text
    trait (``case``/``control``) warns and reads as missing for every sample. Duplicate
    (FID, IID) pairs raise :class:`InputError`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found (expected the .fam of the fileset)", path)
    fam = _fast_table(path, FAM_COLUMNS)
    if fam is None:
        fam = pd.DataFrame(_split_rows(path, 6, ".fam"), columns=FAM_COLUMNS)
    # plink2's reading of column 5: 1/M/m male, 2/F/f female, anything else unknown (0, -9,
    # NA, 3, 1.0, ...); an unusual code is worth a warning, since it may be a shifted column
    # (each distinct code looked up once: a few codes for 500,000 samples)
    codes, tok = pd.factorize(fam["sex"].astype(str).to_numpy())
    tok = np.asarray(tok, dtype=object)
    sex = np.zeros(len(tok), dtype=np.int8)
    sex[np.isin(tok, ["1", "M", "m"])] = 1
    sex[np.isin(tok, ["2", "F", "f"])] = 2
    sex = sex[codes]
    odd = ~np.isin(tok, ["0", "1", "2", "M", "m", "F", "f", "-9", "NA", "na", "nan"])[codes]
    if odd.any():
        i = int(np.flatnonzero(odd)[0])
        warnings.warn(f"{path}:{i + 1}: {int(odd.sum())} sample(s) have sex code {fam['sex'].iat[i]!r} or another one "
                      "plink2 reads as unknown (1/M male, 2/F female): read as unknown", UserWarning, stacklevel=2)
    fam["sex"] = sex
    # the same missing-value rule as phenotype files (-9 in any numeric spelling, NA, nan)
    trait, text = parse_values(fam["trait"].to_numpy())
    if text.any():
        # plink2 reads a text column 6 as a categorical phenotype, which it cannot use as a
        # trait either (--glm skips it), and it still reads the genotypes. So we warn instead
        # of refusing the fileset: its .bed/.bim are fine with a phenotype from --pheno.
        i = int(np.flatnonzero(text)[0])
        warnings.warn(
            f"{path}, line {i + 1}: the .fam phenotype (column 6) holds text such as "
            f"{fam['trait'].iat[i]!r} on {int(text.sum())} of {len(text)} lines (plink2 reads it as a "
            "categorical phenotype); the .fam trait is set to missing for every sample. Give the "
            "phenotype in a --pheno file (case/control coded 1/2) or recode column 6.",
            stacklevel=3,
        )
        trait = np.full(len(trait), np.nan)
    fam["trait"] = trait
    dup = fam.duplicated(subset=["fid", "iid"], keep=False)
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(
            f"duplicate sample ID (FID {fam.fid[i]!r}, IID {fam.iid[i]!r}); sample IDs must be unique",
            path,
            i + 1,
        )
    return fam


#: plink2's names for the numeric codes of the human sex chromosomes and mitochondria (its
#: default chromosome set), and for the other spellings it accepts (case-insensitive).
_CHROM_NUMBERS = {23: "X", 24: "Y", 25: "XY", 26: "MT"}
_CHROM_WORDS = {"X": "X", "Y": "Y", "XY": "XY", "MT": "MT", "M": "MT"}
_CHROM_NUMBER = re.compile(r"[0-9]+")


def _chrom_name(code: str) -> str:
    core = code[3:] if code[:3].lower() == "chr" else code
    if _CHROM_NUMBER.fullmatch(core):
        k = int(core)
        return _CHROM_NUMBERS.get(k, str(k))
    return _CHROM_WORDS.get(core.upper(), code)


def normalize_chrom(codes) -> np.ndarray:
    """Chromosome names as plink2 writes them (object array of str, same length as ``codes``).

    A leading ``chr`` (any case) and leading zeros go (``chr01`` -> ``1``); ``23``, ``24``,
    ``25``, ``26`` become ``X``, ``Y``, ``XY``, ``MT`` (the human set, plink2's default), as do
    ``x``, ``chrY``, ``M``, ``chrM``, ``mt`` ...; any other name (a contig such as
    ``chrUn_gl000220``, a number above 26) is kept as written.
    """
    inverse, uniq = pd.factorize(pd.Series(codes, dtype=object).astype(str))
    # a handful of distinct codes even for a million variants: name each once
    names = np.array([_chrom_name(str(u)) for u in uniq], dtype=object)
    return names[inverse]


def read_bim(path: str | os.PathLike) -> pd.DataFrame:
    """Read a .bim file: one row per variant of the file, columns ``chrom, snp, cm, pos, a1, a2``.

    ``a1`` is column 5 (the counted allele), ``a2`` column 6. ``chrom`` is a string named as
    plink2 names it (:func:`normalize_chrom`: ``"1"``, ``"X"`` for ``23`` or ``chrX``, ``"MT"``);
    ``pos`` is int64 base pairs; ``cm`` float centimorgans. Rows with a negative position (the
    PLINK 1 mark of an excluded variant) are returned too: :func:`read_plink` drops them.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found (expected the .bim of the fileset)", path)
    # cm and pos parsed as numbers by the C parser (3x faster than converting text: 0.29 s
    # of 0.72 s at 500,000 variants); anything unparsable takes the slow path, which names it
    bim = _fast_table(path, BIM_COLUMNS, numeric=(2, 3))
    if bim is None:
        bim = pd.DataFrame(_split_rows(path, 6, ".bim"), columns=BIM_COLUMNS)
    for col, kind in (("cm", "a number (centimorgans)"), ("pos", "an integer base-pair position")):
        num = bim[col] if bim[col].dtype == np.float64 else pd.to_numeric(bim[col], errors="coerce")
        bad = num.isna()
        if col == "pos":
            bad |= num.notna() & (num != np.floor(num.fillna(0)))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"column {BIM_COLUMNS.index(col) + 1} must be {kind}, found {bim[col].iloc[i]!r}",
                             path, i + 1)
        bim[col] = num.astype(np.int64 if col == "pos" else np.float64)
    bim["chrom"] = normalize_chrom(bim["chrom"].to_numpy())
    return bim


def check_bed(path: str | os.PathLike, n_samples: int, n_variants: int) -> None:
    """Check the .bed header (magic bytes, variant-major mode) and its size against the counts."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found (expected the .bed of the fileset)", path)
    with open(path, "rb") as fh:
        head = fh.read(BED_HEADER_BYTES)
    if len(head) < BED_HEADER_BYTES or head[:2] != BED_MAGIC:
        raise InputError(
            "not a PLINK 1 .bed file: the first two bytes must be 0x6c 0x1b "
            f"(found {head[:2].hex() or 'nothing'})",
            path,
        )
    if head[2] != BED_VARIANT_MAJOR:
        mode = "sample-major (the old PLINK 0.99 layout)" if head[2] == 0 else f"unknown ({head[2]:#04x})"
        raise InputError(
            f"the .bed is in {mode} mode; only variant-major .bed files are supported "
            "(convert with plink --make-bed)",
            path,
        )
    expected = BED_HEADER_BYTES + n_variants * bytes_per_variant(n_samples)
    actual = path.stat().st_size
    if actual != expected:
        raise InputError(
            f"size {actual} bytes does not match the .bim and .fam: {n_variants} variants x "
            f"{bytes_per_variant(n_samples)} bytes ({n_samples} samples) + 3 = {expected} bytes",
            path,
        )


@dataclass(frozen=True)
class BedSource:
    """Where a fileset's genotype bytes live: the .bed path and its dimensions.

    Small and picklable: tasks carry this, not the data, and open the file themselves.
    ``size`` (bytes) and ``mtime_ns`` are the .bed's as :func:`read_plink` found them; every
    read checks the file it opened against them, so that a .bed rewritten in place (e.g.
    ``gwaslift qc --out`` = ``--bfile``, even with the same size) raises
    :class:`InputError` instead of returning other samples' or variants' genotypes.
    """

    bed: str
    n_samples: int
    n_variants: int
    size: int
    mtime_ns: int

    @property
    def row_bytes(self) -> int:
        return bytes_per_variant(self.n_samples)

    def _open(self):
        """The .bed opened for reading, checked to be the file that was read at open time.

        The check is an ``fstat`` of the descriptor just opened (no extra path lookup, so it
        describes exactly the bytes about to be read, even if the path is replaced meanwhile):
        one per task, negligible beside the read itself. It runs wherever the task runs (a
        ``dask.distributed`` worker included), against the values carried by this object.
        """
        try:
            fh = open(self.bed, "rb")
        except FileNotFoundError:
            raise InputError("the .bed was removed since it was opened (open the fileset again "
                             "with read_plink)", self.bed) from None
        st = os.fstat(fh.fileno())
        if st.st_size != self.size or st.st_mtime_ns != self.mtime_ns:
            fh.close()
            what = (f"size {self.size} -> {st.st_size} bytes" if st.st_size != self.size
                    else f"same size, modification time moved by {(st.st_mtime_ns - self.mtime_ns) / 1e9:+.3f} s")
            raise InputError(
                f"the .bed changed since it was opened ({what}); its rows no longer match the "
                ".bim/.fam read then. Open the fileset again with read_plink (and write filtered "
                "filesets to a new prefix)",
                self.bed,
            )
        return fh

    def read_rows(self, variant_idx: np.ndarray) -> np.ndarray:
        """Packed rows (len(variant_idx), row_bytes) uint8 of the given file variant indices.

        Raises :class:`InputError` when the .bed changed since :func:`read_plink` (size or
        modification time differ) or was removed.
        """
        variant_idx = np.asarray(variant_idx, dtype=np.int64)
        with self._open() as fh:
            if len(variant_idx) and variant_idx[-1] - variant_idx[0] == len(variant_idx) - 1 \
                    and np.all(np.diff(variant_idx) == 1):
                # contiguous run (the usual case): one sequential read into a fresh buffer
                count = len(variant_idx) * self.row_bytes
                fh.seek(BED_HEADER_BYTES + int(variant_idx[0]) * self.row_bytes)
                out = np.fromfile(fh, dtype=np.uint8, count=count)
                if out.size != count:
                    raise InputError("the .bed is shorter than expected (changed since it was opened?)", self.bed)
                return out.reshape(len(variant_idx), self.row_bytes)
            if not len(variant_idx):
                return np.empty((0, self.row_bytes), dtype=np.uint8)
            mm = np.memmap(fh, dtype=np.uint8, mode="r", offset=BED_HEADER_BYTES,
                           shape=(self.n_variants, self.row_bytes))
            out = mm[variant_idx]
            del mm
            return out

    def iter_rows(self, variant_idx: np.ndarray, block_rows: int):
        """Yield ``(offset, rows)``: the packed rows of ``variant_idx[offset:offset + k]``,
        (k, row_bytes) uint8 with k <= ``block_rows``, in order.

        For streaming passes that use each block at once (the QC count): the file is opened
        (and checked, as by :meth:`read_rows`) once, and contiguous runs are read into ONE
        reused buffer, so a block is still in the CPU cache when it is used and no fresh
        memory is faulted in per block. ``rows`` is overwritten by the next block: copy it
        to keep it. Non-contiguous indices go through :meth:`read_rows` block by block.
        """
        variant_idx = np.asarray(variant_idx, dtype=np.int64)
        block_rows = max(1, int(block_rows))
        n = len(variant_idx)
        if n == 0:
            return
        if not (variant_idx[-1] - variant_idx[0] == n - 1 and np.all(np.diff(variant_idx) == 1)):
            for a in range(0, n, block_rows):
                yield a, self.read_rows(variant_idx[a:a + block_rows])
            return
        buf = np.empty((min(block_rows, n), self.row_bytes), dtype=np.uint8)
        with self._open() as fh:
            fh.seek(BED_HEADER_BYTES + int(variant_idx[0]) * self.row_bytes)
            for a in range(0, n, block_rows):
                rows = buf[: min(block_rows, n - a)]
                view = memoryview(rows.reshape(-1))
                got = 0
                while got < view.nbytes:  # readinto may return short counts
                    k = fh.readinto(view[got:])
                    if not k:
                        raise InputError("the .bed is shorter than expected (changed since it was opened?)",
                                         self.bed)
                    got += k
                yield a, rows

    def __dask_tokenize__(self):
        return ("gwaslift.BedSource", self.bed, self.n_samples, self.n_variants, self.size, self.mtime_ns)


class _PackedProxy:
    """Array-like view (variants x bytes) of the packed rows, for ``dask.array.from_array``."""

    def __init__(self, source: BedSource, variant_idx: np.ndarray):
        self.source = source
        self.variant_idx = variant_idx
        self.shape = (len(variant_idx), source.row_bytes)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 2

    def __getitem__(self, key):
        vkey, bkey = key
        rows = self.source.read_rows(self.variant_idx[vkey])
        return rows[:, bkey]

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("gwaslift.packed", tokenize(self.source), tokenize(self.variant_idx))


class _DosageProxy:
    """Array-like view (samples x variants, float32) decoding .bed rows on access."""

    def __init__(self, source: BedSource, sample_idx: np.ndarray, variant_idx: np.ndarray):
        self.source = source
        self.sample_idx = sample_idx
        self.variant_idx = variant_idx
        self.all_samples = len(sample_idx) == source.n_samples and np.array_equal(
            sample_idx, np.arange(source.n_samples)
        )
        self.shape = (len(sample_idx), len(variant_idx))
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __getitem__(self, key):
        skey, vkey = key
        rows = self.source.read_rows(self.variant_idx[vkey])
        if self.all_samples and skey == slice(None, None, None):
            return decode_dosage(rows, self.source.n_samples)
        return decode_dosage(rows, self.source.n_samples, self.sample_idx[skey])

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("gwaslift.dosage", tokenize(self.source), tokenize(self.sample_idx), tokenize(self.variant_idx))


def default_variant_chunk(n_samples: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Variants per chunk so that one float32 dosage chunk is about ``chunk_bytes``."""
    return int(max(1, min(65536, chunk_bytes // (4 * max(1, n_samples)))))


@dataclass(frozen=True)
class Genotypes:
    """A lazily read PLINK fileset, possibly subset to some samples and variants.

    Attributes
    ----------
    samples : DataFrame
        One row per selected sample (``fid, iid, father, mother, sex, trait``), index 0..n-1.
    variants : DataFrame
        One row per selected variant (``chrom, snp, cm, pos, a1, a2``), index 0..m-1.
        ``a1`` (.bim column 5) is the counted allele.
    source : BedSource
        The .bed behind the data.
    sample_idx, variant_idx : int64 arrays
        Positions of the selected samples / variants in the .fam / .bim files.
    variant_chunk : int
        Variants per Dask chunk of ``dosage`` and ``packed``. Results never depend on it.

    Properties ``dosage`` (samples x variants float32, NaN missing, A1 counts) and
    ``packed`` (variants x ceil(N_file / 4) uint8, the raw .bed rows over *all* samples of
    the file; ``sample_idx`` says which of them are selected) are lazy Dask arrays.
    """

    samples: pd.DataFrame
    variants: pd.DataFrame
    source: BedSource
    sample_idx: np.ndarray
    variant_idx: np.ndarray
    variant_chunk: int
    prefix: str = ""
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def n_samples(self) -> int:
        return len(self.sample_idx)

    @property
    def n_variants(self) -> int:
        return len(self.variant_idx)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_samples, self.n_variants)

    @property
    def all_samples(self) -> bool:
        """True when every sample of the file is selected, in file order (fast packed paths)."""
        return self.n_samples == self.source.n_samples and bool(
            np.array_equal(self.sample_idx, np.arange(self.source.n_samples))
        )

    @property
    def dosage(self):
        """Lazy Dask array (n_samples, n_variants) float32 of A1 dosages, NaN for missing."""
        import dask.array as da

        proxy = _DosageProxy(self.source, self.sample_idx, self.variant_idx)
        return da.from_array(
            proxy,
            chunks=(self.n_samples, self.variant_chunk),
            asarray=False,
            lock=False,
            fancy=False,
            meta=np.empty((0, 0), np.float32),
            # the chunking is part of the name: two views with other chunks must never share
            # keys (a distributed scheduler would mix their blocks)
            name="dosage-" + _token((proxy, self.variant_chunk)),
        )

    @property
    def packed(self):
        """Lazy Dask array (n_variants, ceil(N_file / 4)) uint8 of raw .bed rows."""
        import dask.array as da

        proxy = _PackedProxy(self.source, self.variant_idx)
        return da.from_array(
            proxy,
            chunks=(self.variant_chunk, self.source.row_bytes),
            asarray=False,
            lock=False,
            fancy=False,
            meta=np.empty((0, 0), np.uint8),
            name="packed-" + _token((proxy, self.variant_chunk)),
        )

    def variant_blocks(self):
        """Yield ``(start, stop)`` variant ranges of one chunk each (for explicit loops)."""
        for start in range(0, self.n_variants, self.variant_chunk):
            yield start, min(start + self.variant_chunk, self.n_variants)

    def read_packed(self, start: int, stop: int) -> np.ndarray:
        """Packed rows of selected variants ``start:stop`` (uint8, (stop-start, row_bytes))."""
        return self.source.read_rows(self.variant_idx[start:stop])

    def iter_packed(self, start: int, stop: int, block_rows: int):
        """Yield ``(offset, rows)`` over selected variants ``start:stop`` in blocks of at most
        ``block_rows`` packed rows (``offset`` from ``start``); each ``rows`` array is reused
        for the next block (see ``BedSource.iter_rows``)."""
        return self.source.iter_rows(self.variant_idx[start:stop], block_rows)

    def read_dosage(self, start: int, stop: int) -> np.ndarray:
        """Dosages of selected variants ``start:stop`` for the selected samples, decoded now."""
        rows = self.read_packed(start, stop)
        idx = None if self.all_samples else self.sample_idx
        return decode_dosage(rows, self.source.n_samples, idx)

    def subset(self, samples=None, variants=None) -> "Genotypes":
        """A lazy subset. ``samples``/``variants``: boolean masks or integer positions
        (relative to this object, not the file), or ``None`` to keep all."""
        s = self._positions(samples, self.n_samples, "samples")
        v = self._positions(variants, self.n_variants, "variants")
        return replace(
            self,
            samples=self.samples.iloc[s].reset_index(drop=True),
            variants=self.variants.iloc[v].reset_index(drop=True),
            sample_idx=self.sample_idx[s],
            variant_idx=self.variant_idx[v],
        )

    def with_chunks(self, variant_chunk: int) -> "Genotypes":
        """The same genotypes with another number of variants per chunk."""
        if int(variant_chunk) < 1:
            raise ValueError("variant_chunk must be >= 1")
        return replace(self, variant_chunk=int(variant_chunk))

    @staticmethod
    def _positions(sel, n: int, what: str) -> np.ndarray:
        if sel is None:
            return np.arange(n)
        sel = np.asarray(sel)
        if sel.dtype == bool:
            if sel.shape != (n,):
                raise ValueError(f"boolean {what} mask has shape {sel.shape}, expected ({n},)")
            return np.flatnonzero(sel)
        sel = sel.astype(np.int64)
        if sel.size and (sel.min() < -n or sel.max() >= n):
            raise IndexError(f"{what} position out of range 0..{n - 1}")
        return np.where(sel < 0, sel + n, sel)

    def __repr__(self) -> str:
        return f"Genotypes({self.prefix!r}: {self.n_samples} samples x {self.n_variants} variants)"


def _token(obj) -> str:
    from dask.base import tokenize

    return tokenize(obj)


def _strip_prefix(prefix: str | os.PathLike) -> Path:
    p = Path(prefix)
    if p.suffix in (".bed", ".bim", ".fam"):
        return p.with_suffix("")
    return p


def read_plink(prefix: str | os.PathLike, *, variant_chunk: int | None = None) -> Genotypes:
    """Open a PLINK 1 binary fileset lazily.

    Parameters
    ----------
    prefix
        Path prefix of ``prefix.bed``, ``prefix.bim``, ``prefix.fam`` (a path ending in one
        of those suffixes is accepted too).
    variant_chunk
        Variants per Dask chunk; by default about 64 MiB of float32 dosages per chunk.

    Returns
    -------
    Genotypes
        See its docstring: ``dosage`` counts A1 (.bim column 5), NaN for missing.

    Raises
    ------
    InputError
        A missing file, malformed .bim/.fam rows, duplicate sample IDs, a .bed without the
        PLINK magic bytes or in sample-major mode, a .bed size that does not match, or a
        .bim whose every position is negative.

    Variants with a negative .bim position are skipped with a warning, as plink2 skips them
    (``variants`` and ``variant_idx`` hold the others; ``source.n_variants`` counts all
    rows of the file). Chromosome names follow plink2 (:func:`normalize_chrom`).
    """
    base = _strip_prefix(prefix)
    bed, bim, fam = (Path(f"{base}.{ext}") for ext in ("bed", "bim", "fam"))
    for p in (bed, bim, fam):
        if not p.is_file():
            raise InputError(f"file not found (PLINK fileset {str(base)!r} needs .bed, .bim and .fam)", p)
    samples = read_fam(fam)
    variants = read_bim(bim)
    check_bed(bed, len(samples), len(variants))
    st = bed.stat()
    source = BedSource(str(bed.resolve()), len(samples), len(variants), st.st_size, st.st_mtime_ns)
    # a negative bp position marks an excluded variant (PLINK 1); plink2 skips such variants
    # at load ("4 out of 5 variants loaded"). Their .bed rows stay in the file: variant_idx
    # keeps pointing at the right rows, and source.n_variants is the file's count.
    keep = variants["pos"].to_numpy() >= 0
    variant_idx = np.flatnonzero(keep).astype(np.int64)
    if not keep.all():
        first = int(np.flatnonzero(~keep)[0])
        if not keep.any():
            raise InputError(
                f"every variant has a negative base-pair position (the PLINK mark of an excluded "
                f"variant), e.g. {variants.snp[first]!r} on line {first + 1}; no variant to load",
                bim,
            )
        warnings.warn(
            f"{bim}: {int((~keep).sum())} variants with a negative base-pair position (the PLINK "
            f"mark of an excluded variant, e.g. {variants.snp[first]!r} on line {first + 1}) are "
            f"skipped, as plink2 does: {len(variant_idx)} out of {len(keep)} variants loaded",
            stacklevel=2,
        )
        variants = variants[keep].reset_index(drop=True)
    chunk = variant_chunk if variant_chunk is not None else default_variant_chunk(len(samples))
    return Genotypes(
        samples=samples,
        variants=variants,
        source=source,
        sample_idx=np.arange(len(samples), dtype=np.int64),
        variant_idx=variant_idx,
        variant_chunk=int(chunk),
        prefix=str(base),
    )
