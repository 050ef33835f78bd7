"""Phenotype and covariate files (PLINK style), aligned to the samples of a fileset.

File format (what plink 1.9 / plink2 accept for ``--pheno`` / ``--covar``):

* fields separated by whitespace; when the first line holds a tab, by single tabs, so that an
  empty field (two tabs in a row) is a missing value;
* a header ``FID IID name ...`` or ``#FID IID name ...``: samples are matched on the pair
  (FID, IID); a column ``SID`` right after ``IID`` is ignored (plink2 .psam style);
* a header ``#IID name ...`` (or ``IID name ...``): there is no FID column, so samples are
  matched on IID alone, which must then be unique among the genotype samples;
* no header: ``FID IID v1 v2 ...`` as plink 1 allowed; the value columns are named
  ``PHENO1, PHENO2, ...`` (:func:`read_pheno`) or ``COVAR1, COVAR2, ...`` (:func:`read_covar`);
* ``FID``, ``IID``, ``SID``, ``PAT``, ``MAT`` are never value columns (plink2 refuses them as
  phenotype/covariate names): skipped by default, an error when named;
* lines starting with ``##`` are comments and skipped, as are blank lines;
* missing values: ``-9`` (any spelling whose number is -9, e.g. ``-9.0``), ``NA``, ``nan``
  (any case) and the empty field. In the PLINK case/control coding 1/2, ``0`` is missing too;
  values 0/1 only are read as 0 = control, 1 = case, with a warning (plink2 without ``--1``
  reads them as 0 = missing, 1 = control; see :func:`code_binary`).

Numbers: every value is the double Python's ``float(token)`` gives (correctly rounded, as
plink2 reads it), read by the numba kernels of :mod:`gwaslift.io._text_kernels` (pandas'
round-trip parser where numba cannot load).

Alignment: the result has one row per sample of ``genotypes.samples`` in that order (index =
``genotypes.samples.index``). Samples absent from the file get NaN and are listed in
``.attrs["missing_ids"]`` (and counted in a warning); file rows that match no sample are
ignored and counted in ``.attrs["n_unmatched_rows"]``. A file matching no sample at all, a
duplicate ID, an unknown column, or a non-numeric phenotype value raises
:class:`gwaslift.InputError` naming the file (and the line where there is one).
"""

from __future__ import annotations

import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .._util import LazyKernel, distinct_if_few
from ..errors import InputError

#: Missing-value spellings (compared case-insensitively); numbers equal to -9 are missing too.
MISSING_TOKENS = frozenset({"", "na", "nan", "-9"})

#: Header names that are never a phenotype or covariate: plink2 refuses them (its
#: ``IsReservedPhenoName``, case-sensitive as there). ``SEX`` is allowed, as in plink2.
RESERVED_COLUMNS = ("FID", "IID", "SID", "PAT", "MAT")


class SampleIDs(tuple):
    """Immutable tuple of ``(fid, iid)`` pairs kept in ``.attrs``.

    pandas deep-copies ``.attrs`` on every operation on the Series/DataFrame; this tuple is
    immutable, so the copy returns itself instead of copying every ID (which would make
    arithmetic on a phenotype of a large cohort slow).
    """

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self


@dataclass
class _Table:
    """A parsed file: IDs, value columns (strings), original line numbers."""

    path: Path
    fid: np.ndarray | None  # None when the header is #IID only
    iid: np.ndarray
    columns: list[str]
    # one array per value column: float64 (every value a number; NaN = missing code, -9
    # included; +-inf kept so that it can be reported) or object (some text: str tokens,
    # None = missing code)
    data: list[np.ndarray]
    lines: np.ndarray  # (rows,) 1-based line numbers in the file
    # the rows' sample keys (pd.Index, checked unique), built by the first _align and then
    # shared by every copy of this table (the cache hands out copies of one parse)
    keys: dict = field(default_factory=dict, repr=False, compare=False)


# --------------------------------------------------------------------------------------------
# parsing


_IRREGULAR_LINE = re.compile(r"\n[ \t]*(?:\n|##|$)")  # a blank or comment line after the first (pandas' reader)
_NON_BLANK = re.compile(rb"[^ \t\n]")
_UTF8_BOM = b"\xef\xbb\xbf"  # as Python's "utf-8-sig" codec strips it


#: Parsed files kept for reuse (a few: a biobank phenotype file of 500,000 rows x 10 columns
#: takes ~0.6 s to parse and ~100 MB to hold), by path, size, modification time and inode.
_PARSED: "OrderedDict[tuple, _Table]" = OrderedDict()
_PARSED_MAX = 2
_PARSED_LOCK = threading.Lock()


def _parse(path: str | os.PathLike, default_prefix: str) -> _Table:
    """The parsed file (:func:`_parse_file`), reused while the file is unchanged: `gwaslift
    gwas` reads one phenotype per column of the same file (11 parses of a 10-phenotype
    file before). The cached table's arrays are read-only, so a caller cannot edit another
    caller's table."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, default_prefix)
    with _PARSED_LOCK:
        hit = _PARSED.get(key)
        if hit is not None:
            _PARSED.move_to_end(key)
            return replace(hit, path=path)  # messages name the path as the caller gave it
    table = _parse_file(path, default_prefix)
    for arr in (table.fid, table.iid, table.lines, *table.data):
        if arr is not None:
            arr.flags.writeable = False
    with _PARSED_LOCK:
        _PARSED[key] = table
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return table


def _parse_file(path: Path, default_prefix: str) -> _Table:
    # the file stays bytes: the numba reader works on them in place, and a 500,000-row file
    # (~100 MB) is not also held as str, sliced and re-encoded (~300 MB and ~0.3 s before)
    raw = path.read_bytes()
    if raw.startswith(_UTF8_BOM):
        # a byte-order mark (spreadsheet and Windows exports) is not part of the first
        # field: left in, it would hide a '#FID' header and make it a row of data
        raw = raw[len(_UTF8_BOM):]
    is_ascii = raw.isascii()
    if not is_ascii:
        try:
            raw.decode("utf-8")  # validated as a whole, as reading it as text did
        except UnicodeDecodeError as exc:
            raise InputError(f"not a text file ({exc.reason})", path) from None
    if b"\r" in raw:  # CRLF or CR line ends, as text mode's universal newlines read them
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    # the first line that is neither blank nor a ## comment, found without splitting the file
    pos, first = 0, 0
    while True:
        if pos >= len(raw):
            raise InputError("the file holds no rows", path)
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end
        line = raw[pos:end].decode("utf-8")
        if line.strip() and not line.lstrip().startswith("##"):
            break
        pos, first = end + 1, first + 1
    use_tabs = "\t" in line

    def split(line: str) -> list[str]:
        if use_tabs:
            # strip spaces (not tabs) at the ends: a trailing empty field is a missing value
            return [f.strip() for f in line.strip(" ").split("\t")]
        return line.split()

    head = split(line)
    head_tokens = [h.lstrip("#") if j == 0 else h for j, h in enumerate(head)]
    upper = [h.upper() for h in head_tokens]
    has_header = head[0].startswith("#") or upper[:2] == ["FID", "IID"] or upper[:1] == ["IID"]
    if has_header:
        if upper[:2] == ["FID", "IID"]:
            n_id = 2
        elif upper[:1] == ["IID"]:
            n_id = 1
        else:
            raise InputError(
                f"the header must start with 'FID IID', '#FID IID' or '#IID', found {line.strip()[:80]!r}",
                path,
                first + 1,
            )
        n_skip = n_id + (1 if len(upper) > n_id and upper[n_id] == "SID" else 0)
        columns = head_tokens[n_skip:]
        body_start, body_line = end + 1, first + 1
    else:
        n_id, n_skip = 2, 2
        if len(head) < 2:
            raise InputError(
                f"expected 'FID IID value ...' fields (no header line), found {line.strip()[:80]!r}",
                path,
                first + 1,
            )
        columns = [f"{default_prefix}{k}" for k in range(1, len(head) - 1)]
        body_start, body_line = pos, first
    width = len(head)
    if not columns:
        raise InputError("the file has ID columns but no value columns", path, first + 1)
    if len(set(columns)) != len(columns):
        name = next(c for c in columns if columns.count(c) > 1)
        raise InputError(f"column name {name!r} appears twice in the header", path, first + 1)

    # the body: raw[body_start:body_end], trailing newlines left out
    body_start = min(body_start, len(raw))
    body_end = len(raw)
    while body_end > body_start and raw[body_end - 1] == 10:
        body_end -= 1
    parsed = None
    if _NON_BLANK.search(raw, body_start, body_end):
        # the usual file: one data row per line from here on (the readers decline otherwise)
        n = raw.count(b"\n", body_start, body_end) + 1
        data_lines = np.arange(body_line, body_line + n, dtype=np.int64)
        kernels = _text_kernels()
        if kernels is not None:
            parsed = _read_numba(kernels, raw, body_start, body_end, is_ascii, n, width, n_skip, use_tabs)
        else:
            body = raw[body_start:body_end].decode("utf-8")
            if not _IRREGULAR_LINE.search("\n" + body):
                parsed = _read_fast(body, n, width, n_skip, use_tabs)
            del body
    if parsed is None:
        # exact path: splits line by line, skips blank and ## lines, names the first
        # malformed line
        body = raw[body_start:body_end].decode("utf-8")
        del raw
        rows, kept = [], []
        for i, text_line in enumerate(body.split("\n"), start=body_line):
            if not text_line.strip() or text_line.lstrip().startswith("##"):
                continue
            fields = split(text_line)
            if len(fields) != width:
                raise InputError(
                    f"expected {width} fields (as in {'the header' if has_header else 'the first line'}), "
                    f"found {len(fields)}: {text_line.strip()[:80]!r}",
                    path,
                    i + 1,
                )
            rows.append(fields)
            kept.append(i)
        if not rows:
            raise InputError("the file has a header but no data rows", path)
        arr = np.array(rows, dtype=object)
        ids = [arr[:, k] for k in range(n_skip)]
        data = [_canonical(arr[:, k]) for k in range(n_skip, width)]
        data_lines = np.asarray(kept, dtype=np.int64)
    else:
        ids, data = parsed
    fid = ids[0] if n_id == 2 else None
    iid = ids[n_id - 1]
    return _Table(path, fid, iid, list(columns), data, data_lines + 1)


def _case_variants(word: str) -> list[str]:
    out = [""]
    for ch in word:
        out = [o + c for o in out for c in {ch.lower(), ch.upper()}]
    return out


#: what pandas' parser must read as NaN: the missing codes in any letter case
_NA_SPELLINGS = sorted({"", "-9", *_case_variants("na"), *_case_variants("nan")})


def _import_text_kernels():
    from . import _text_kernels
    return _text_kernels


#: the table reader's numba kernels (``get()`` None where numba cannot load: pandas' parser)
_SCAN_KERNEL = LazyKernel(lambda: _import_text_kernels(), "scan_table")


def _text_kernels():
    """The module of text kernels, or None where it cannot be loaded."""
    return None if _SCAN_KERNEL.get() is None else _import_text_kernels()


#: whitespace that Python's str.split() separates on, outside ASCII (the line-by-line path
#: handles files holding it; ASCII control whitespace is caught by the kernel), as UTF-8
#: byte sequences: searched in the file's bytes, which are not decoded a second time
_UNICODE_SPACE = re.compile(b"|".join(
    re.escape(chr(u).encode("utf-8"))
    for u in (0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)))

#: longest ID (in bytes) copied through a padded byte matrix; longer ones are sliced one by one
_PAD_MAX = 64


def _read_numba(tk, raw: bytes, start: int, stop: int, is_ascii: bool, n: int, width: int, n_skip: int,
                use_tabs: bool):
    """The ``n`` data rows in ``raw[start:stop]`` (UTF-8, validated) read by the numba
    kernels (:mod:`._text_kernels`): ``(id columns as str arrays, value columns as in
    _Table)``, each value equal to ``float(token)`` under the missing-value rule of
    :func:`parse_values`.

    One pass finds the fields and converts every numeric field; tokens the kernel does not
    convert itself (rare: undecidable roundings, subnormals, ``inf``, text) go through
    Python, and a column holding text is read as tokens (:func:`_canonical`). Returns None
    whenever the result might differ from splitting line by line (a row with another field
    count, spaces in a tab-separated file, whitespace other than space and tab, a NUL), so
    that the caller's exact path takes over and reports the line.
    """
    if (use_tabs and raw.find(b" ", start, stop) >= 0) or raw.find(b"\x00", start, stop) >= 0:
        return None
    if not is_ascii and _UNICODE_SPACE.search(raw, start, stop):
        return None
    buf = np.frombuffer(raw, dtype=np.uint8, count=stop - start, offset=start)  # no copy
    nv = width - n_skip
    line_start = np.empty(n + 1, np.int64)
    values = np.empty((n, nv))
    status = np.empty((n, nv), np.uint8)
    if tk.scan_table(buf, n, width, n_skip, use_tabs, tk.POW10_HI, tk.POW10_LO, line_start, values, status) != 0:
        return None

    def strings(field: int, rows=None) -> np.ndarray:
        starts, ends = np.empty(n, np.int64), np.empty(n, np.int64)
        tk.field_bounds(buf, line_start, field, use_tabs, starts, ends)
        if rows is not None:
            starts, ends = starts[rows], ends[rows]
        longest = int((ends - starts).max()) if len(starts) else 0
        if 0 < longest <= _PAD_MAX:
            padded = np.empty((len(starts), longest), np.uint8)
            tk.pad_fields(buf, starts, ends, longest, padded)
            packed = padded.view(f"S{longest}").ravel()
            text = packed.astype(f"U{longest}") if is_ascii else np.char.decode(packed, "utf-8")
            return text.astype(object)
        return np.array([raw[start + s:start + e].decode("utf-8") for s, e in zip(starts.tolist(), ends.tolist())]
                        or [], dtype=object)

    ids = [strings(k) for k in range(n_skip)]
    data = []
    for j in range(nv):
        col = np.ascontiguousarray(values[:, j])
        st = status[:, j]
        odd = np.flatnonzero(st >= tk.FALLBACK)
        if len(odd):
            every = len(odd) == n  # a text column: all its tokens, sliced once
            tokens = strings(n_skip + j) if every else strings(n_skip + j, odd)
            fallback = st[odd] == tk.FALLBACK
            # valid decimal syntax the kernel could not round with certainty: Python's float
            col[odd[fallback]] = [float(t) for t in tokens[fallback]]
            # everything else under Python's rules (inf, 1_000, text)
            other, text = parse_values(tokens[~fallback])
            if text.any():
                data.append(_canonical(tokens if every else strings(n_skip + j)))  # kept as tokens
                continue
            col[odd[~fallback]] = other
        col[col == -9] = np.nan
        data.append(col)
    return ids, data


def _read_fast(body: str, n: int, width: int, n_skip: int, use_tabs: bool):
    """The ``n`` data rows in ``body`` parsed by pandas' C parser (where numba cannot load):
    ``(id columns as str arrays, value columns as in _Table)``.

    Returns None whenever the result might differ from splitting line by line (a row with
    another field count, spaces inside a tab-separated file, a parser complaint), so that
    the caller's exact path takes over and reports the line.
    """
    import csv
    import io

    if use_tabs:
        if " " in body or body.count("\t") != n * (width - 1):
            return None
    else:
        # number of fields = number of non-blank runs (pandas would pad a short row silently)
        b = np.frombuffer(("\n" + body).encode("utf-8"), dtype=np.uint8)
        blank = (b == 32) | (b == 9) | (b == 10)
        n_fields = int(np.count_nonzero(blank[:-1] & ~blank[1:]))
        del b, blank
        if n_fields != n * width:
            return None
    try:
        df = pd.read_csv(
            io.StringIO(body), sep="\t" if use_tabs else r"\s+", header=None, names=list(range(width)),
            dtype={k: str for k in range(n_skip)}, keep_default_na=False,
            na_values={k: _NA_SPELLINGS for k in range(n_skip, width)},
            float_precision="round_trip",  # the same doubles as Python's float(token)
            quoting=csv.QUOTE_NONE, skip_blank_lines=False, engine="c",
        )
    except (pd.errors.ParserError, ValueError):
        return None
    if df.shape != (n, width):
        return None
    ids = [df[k].to_numpy(dtype=object) for k in range(n_skip)]
    data = []
    for k in range(n_skip, width):
        col = df[k]
        if col.dtype.kind in "fiu":
            v = col.to_numpy(dtype=np.float64, copy=True)  # written below: never a read-only view
            v[v == -9] = np.nan
            data.append(v)
        else:
            data.append(_canonical(col.to_numpy(dtype=object)))
    return ids, data


def parse_values(tokens) -> tuple[np.ndarray, np.ndarray]:
    """Numbers of text fields under the PLINK missing-value rule: the one place it is coded
    (phenotype/covariate files here, the .fam trait in :func:`gwaslift.io.plink.read_fam`).

    Parameters
    ----------
    tokens
        array-like (n,) of str; ``None`` or a float NaN counts as missing.

    Returns
    -------
    values : float64 array (n,)
        The numbers; NaN for a missing code -- a spelling in :data:`MISSING_TOKENS` in any
        letter case, or any number equal to -9 (``-9``, ``-9.0``, ``-9e0``, as plink2 reads
        them) -- and for text. ``+-inf`` are kept so that callers can report them.
    text : bool array (n,)
        True where the token is neither a missing code nor a number (e.g. ``case``).
    """
    tokens = np.asarray(tokens, dtype=object).ravel()
    # each distinct token is read once: a .fam trait column of 500,000 samples holds a
    # handful (-9, 1, 2), so this is ~20x faster there than reading every token
    if pd.api.types.infer_dtype(tokens, skipna=True) in ("string", "empty"):
        codes, distinct = pd.factorize(tokens, use_na_sentinel=True)
    else:  # other objects (numbers, bools): equal hashes (1, 1.0, True) must not merge
        codes, distinct = np.arange(len(tokens)), tokens
    m = len(distinct)
    s = ["" if t is None or (isinstance(t, float) and math.isnan(t)) else str(t) for t in distinct]
    values = np.full(m + 1, np.nan)  # the last slot: None / NaN tokens (code -1)
    text = np.zeros(m + 1, dtype=bool)
    for i, t in enumerate(s):
        if t.lower() in MISSING_TOKENS:
            continue
        try:
            values[i] = float(t)  # correctly rounded (pandas' default C parser can be an ulp off)
        except ValueError:
            text[i] = True
    values[values == -9] = np.nan
    return values[codes], text[codes]


def _canonical(tokens: np.ndarray) -> np.ndarray:
    """A value column from its tokens: float64 when every non-missing token is a number
    (missing codes and -9 -> NaN), else object (str tokens, None for a missing code)."""
    values, text = parse_values(tokens)
    if not text.any():
        return values
    # some text: keep every non-missing token as written (numbers too: they are levels of a
    # categorical covariate, or the value a phenotype error message quotes)
    missing = np.isnan(values) & ~text
    return np.array([None if m else str(t) for t, m in zip(tokens, missing)], dtype=object)


def _numeric(table: _Table, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Values of column ``j``: float64 with NaN for missing, and a mask of bad entries
    (text, or an infinite number; NaN in the values)."""
    col = table.data[j]
    if col.dtype.kind == "f":
        bad = np.isinf(col)
    else:
        col, text = parse_values(col)
        bad = text | np.isinf(col)
    return np.where(bad, np.nan, col), bad


def _token(table: _Table, j: int, i: int) -> str:
    """The text of row ``i`` column ``j`` as written (numbers re-formatted)."""
    v = table.data[j][i]
    return v if isinstance(v, str) else repr(float(v))


# --------------------------------------------------------------------------------------------
# alignment


def _samples_of(genotypes) -> pd.DataFrame:
    samples = getattr(genotypes, "samples", genotypes)
    if not isinstance(samples, pd.DataFrame) or not {"fid", "iid"} <= set(samples.columns):
        raise TypeError("genotypes must be a gwaslift.Genotypes or a DataFrame with fid and iid columns")
    return samples


def _align(table: _Table, samples: pd.DataFrame) -> tuple[np.ndarray, SampleIDs, int]:
    """Row of the file for each sample (-1 when absent), the absent IDs, unmatched row count."""
    path = table.path
    what = "(FID, IID)" if table.fid is not None else "IID"
    keys = table.keys.get("index")
    if keys is None:
        keys = _file_keys(table, what)
        table.keys["index"] = keys
    fam_fid = samples["fid"].astype(str).to_numpy()
    fam_iid = samples["iid"].astype(str).to_numpy()
    if table.fid is not None:
        target = sample_pair_index(fam_fid, fam_iid)
    else:
        target = pd.Index(fam_iid)
        if target.has_duplicates:
            d = target[target.duplicated()][0]
            raise InputError(
                f"the file has an IID-only header (#IID) but IID {d!r} is shared by several "
                "genotype samples (different FIDs); add an FID column to the file",
                path,
            )
    rows = keys.get_indexer(target)
    matched = rows >= 0
    n_matched = int(matched.sum())
    if n_matched == 0:
        ex_file = keys[0].replace("\x00", " ")
        ex_fam = target[0].replace("\x00", " ") if len(target) else None
        raise InputError(
            f"no row matches a genotype sample by {what} (file has {len(keys)} rows, e.g. "
            f"{ex_file!r}; the genotypes have {len(target)} samples, e.g. {ex_fam!r})",
            path,
        )
    absent = np.flatnonzero(~matched)
    missing_ids = SampleIDs((fam_fid[i], fam_iid[i]) for i in absent)
    n_unmatched = len(keys) - n_matched
    if len(absent):
        warnings.warn(
            f"{path}: {len(absent)} of {len(target)} genotype samples are absent from the file "
            f"and set to missing (e.g. FID {fam_fid[absent[0]]!r} IID {fam_iid[absent[0]]!r})",
            stacklevel=3,
        )
    return rows, missing_ids, n_unmatched


def _file_keys(table: _Table, what: str) -> pd.Index:
    """The file rows' sample keys ((FID, IID) pairs, or IIDs), checked unique."""
    if table.fid is not None:
        keys = sample_pair_index(table.fid, table.iid)
    else:
        keys = pd.Index(table.iid.astype(str))
    if not keys.is_unique:  # the hash table built here serves get_indexer afterwards
        j = int(np.flatnonzero(keys.duplicated())[0])
        first = int(np.flatnonzero(keys == keys[j])[0])
        key = (table.fid[j], table.iid[j]) if table.fid is not None else table.iid[j]
        raise InputError(
            f"duplicate sample {what} {key!r} (first on line {table.lines[first]}); each sample may appear once",
            table.path,
            int(table.lines[j]),
        )
    return keys


def sample_pair_index(fid: np.ndarray, iid: np.ndarray) -> pd.Index:
    """One string key per (FID, IID) pair; NUL cannot occur in a text ID (much faster than a
    MultiIndex for hundreds of thousands of samples)."""
    return pd.Index(pd.Series(fid, dtype=object).astype(str) + "\x00" + pd.Series(iid, dtype=object).astype(str))


def _take(col: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.full(len(rows), np.nan)
    ok = rows >= 0
    out[ok] = col[rows[ok]]
    return out


def _expand_ranges(table: _Table, columns) -> list:
    """Requested columns with plink2's ranges expanded: ``A-B`` (not itself a column, A and B
    both columns) stands for the columns from A to B in the file's order, inclusive
    (``--covar-name PC1-PC10``; plink2 v2.00a3.5 reads it by position too, measured)."""
    out = []
    for c in columns:
        if isinstance(c, str) and c not in table.columns and "-" in c:
            for i in (k for k, ch in enumerate(c) if ch == "-"):
                lo, hi = c[:i], c[i + 1:]
                if lo in table.columns and hi in table.columns:
                    a, b = table.columns.index(lo), table.columns.index(hi)
                    if a > b:
                        raise InputError(f"column range {c!r}: {hi!r} comes before {lo!r} in the header",
                                         table.path)
                    out.extend(table.columns[a:b + 1])
                    break
            else:
                out.append(c)  # not a range: reported as an unknown column
        else:
            out.append(c)
    return out


def _pick_column(table: _Table, column, kind: str) -> int:
    if isinstance(column, (int, np.integer)) and not isinstance(column, bool):
        # 1-based like plink's --mpheno
        if not 1 <= column <= len(table.columns):
            raise InputError(
                f"{kind} column number {column} is out of range 1..{len(table.columns)} "
                f"(available columns: {', '.join(table.columns)})",
                table.path,
            )
        j = int(column) - 1
    elif column not in table.columns:
        raise InputError(
            f"no {kind} column {column!r}; available columns: {', '.join(table.columns)}",
            table.path,
        )
    else:
        j = table.columns.index(column)
    if table.columns[j] in RESERVED_COLUMNS:
        # plink2's own message (--pheno-name / --covar-name PAT)
        raise InputError(
            f"{table.columns[j]!r} cannot be used as a phenotype/covariate name "
            f"({', '.join(RESERVED_COLUMNS)} are sample ID / parent fields)",
            table.path,
        )
    return j


def _default_columns(table: _Table, kind: str) -> list[int]:
    """Value columns usable by default: all but the reserved names (:data:`RESERVED_COLUMNS`).

    plink2 stops with an error when it would load such a column (e.g. a .psam passed as
    ``--pheno`` without ``--pheno-name``); we skip it instead, with a warning, and give the
    result of naming the remaining columns (what plink2 then does).
    """
    skipped = [c for c in table.columns if c in RESERVED_COLUMNS]
    keep = [j for j, c in enumerate(table.columns) if c not in RESERVED_COLUMNS]
    if not keep:
        raise InputError(
            f"no {kind} column: {', '.join(skipped)} cannot be used as phenotype/covariate names "
            f"({', '.join(RESERVED_COLUMNS)} are sample ID / parent fields)",
            table.path,
        )
    if skipped:
        warnings.warn(
            f"{table.path}: column(s) {', '.join(skipped)} are sample ID / parent fields (as in a "
            f".psam), not {kind}s; skipped (plink2 refuses them as phenotype/covariate names)",
            stacklevel=3,
        )
    return keep


# --------------------------------------------------------------------------------------------
# case/control coding


def code_binary(values: np.ndarray, binary: bool | None = None,
                source: str | os.PathLike | None = None) -> tuple[np.ndarray, bool, str | None]:
    """Recognise a PLINK case/control coding.

    ``values`` is float with NaN missing. Rules (on the non-missing values):

    * ``{0, 1}`` with a 0 present: 0 = control, 1 = case, kept as is (coding ``"0/1"``). When
      the values come from a file (``source`` given: its name is in the message) this warns
      once: plink2 reads the same file, without ``--1``, as 0 = missing, 1 = control (no case);
    * values within ``{0, 1, 2}`` otherwise: PLINK 1/2 coding, 1 = control -> 0, 2 = case -> 1,
      0 = missing -> NaN (coding ``"1/2"``); a warning is issued when zeros become missing
      beside both 1 and 2;
    * anything else: quantitative (coding ``None``).

    ``binary=None`` calls a trait binary when its values fall within ``{0, 1, 2}`` and take
    at least two distinct values; ``binary=True`` requires them within ``{0, 1, 2}`` (else
    ``ValueError``); ``binary=False`` returns the values unchanged. In-memory values
    (``source=None``) are taken in the Python convention 0/1 without a warning.

    Returns ``(coded values float64, is_binary, coding)``.
    """
    values = np.asarray(values, dtype=np.float64)
    if binary is False:
        return values, False, None
    # a quantitative trait shows a 4th value at once; only <= 3 distinct values are collected
    obs = distinct_if_few(values[~np.isnan(values)], 3)
    within = bool(np.isin(obs, (0.0, 1.0, 2.0)).all())
    if binary is None and not (within and len(obs) >= 2):
        return values, False, None
    if not within:
        obs = np.unique(values[~np.isnan(values)])  # the message lists the smallest bad values
        bad = obs[~np.isin(obs, (0.0, 1.0, 2.0))][:5]
        raise ValueError(
            f"a case/control trait must be coded 1/2 (0 or -9 missing) or 0/1; found values {bad.tolist()}"
        )
    if 0.0 in obs and 2.0 not in obs:
        if source is not None:
            # the file means to be 0/1 (we keep that rule), but the same file gives plink2
            # --glm no cases at all: say so, since results would not match plink2's
            warnings.warn(
                f"{source}: case/control values 0/1 read as 0 = control, 1 = case "
                f"({int((values == 1).sum())} cases, {int((values == 0).sum())} controls); plink2 "
                "reads this file as 1 = control, 0 = missing unless run with --1. Recode to 1/2 "
                "(1 control, 2 case) to read it the same way in both",
                stacklevel=3,
            )
        return values, True, "0/1"
    out = values.copy()
    if 0.0 in obs and 1.0 in obs and 2.0 in obs:
        warnings.warn(
            f"{int((values == 0).sum())} zeros beside 1/2 case/control codes are read as missing "
            "(PLINK coding: 1 control, 2 case, 0 missing); pass binary=False for a quantitative trait",
            stacklevel=3,
        )
    out[values == 0] = np.nan
    out[values == 1] = 0.0
    out[values == 2] = 1.0
    return out, True, "1/2"


# --------------------------------------------------------------------------------------------
# public


def quantile_normalize(values) -> np.ndarray:
    """plink2's ``--pheno-quantile-normalize`` of one quantitative trait: each finite value
    becomes the standard-normal quantile of ``(rank - 1/2) / n`` (``n`` finite values; tied
    values share their average rank), keeping only the rank order; NaN stays NaN. Measured
    equal to plink2 v2.00a3.5 (a GWAS of the transformed trait, to plink2's printed digits).
    Returns float64 of the input's shape."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    y = np.asarray(values, dtype=np.float64)
    out = np.full(y.shape, np.nan)
    ok = np.isfinite(y)
    if ok.any():
        out[ok] = ndtri((rankdata(y[ok], method="average") - 0.5) / ok.sum())
    return out


def phenotype_columns(path: str | os.PathLike, names: list[str] | None = None) -> list[str]:
    """The phenotype columns of a PLINK-style file that plink2's ``--glm`` analyses.

    ``names`` None (no ``--pheno-name``): every value column but the reserved ID / parent
    names (skipped with a warning, as :func:`read_pheno` does) and ``SEX`` (the sample's
    sex; kept when it is the only column). Else ``names`` with plink2's ranges expanded
    (``q1-q5``: the columns from q1 to q5 in the file's order), each checked to exist.
    Headerless files name theirs ``PHENO1, PHENO2, ...``."""
    table = _parse(path, "PHENO")
    if names is not None:
        return [table.columns[_pick_column(table, c, "phenotype")] for c in _expand_ranges(table, names)]
    return [table.columns[k] for k in _phenotype_indices(table)]


def _phenotype_indices(table: _Table) -> list[int]:
    """The value columns that are phenotypes by default: not the reserved names
    (:func:`_default_columns`) and not ``SEX`` (a .psam's, or a file listing sex before the
    traits: the sample's sex, not a trait), unless it is the only column."""
    keep = _default_columns(table, "phenotype")
    return [k for k in keep if table.columns[k] != "SEX"] or keep


def read_pheno(path: str | os.PathLike, genotypes, column: str | int | None = None,
               binary: bool | None = None) -> pd.Series:
    """Read one phenotype from a PLINK-style file, aligned to ``genotypes.samples``.

    Parameters
    ----------
    path
        Phenotype file (see the module docstring for the accepted layouts).
    genotypes
        A :class:`gwaslift.Genotypes` (or its ``samples`` DataFrame with ``fid, iid``).
    column
        Column name, or its 1-based number among the value columns (like plink's
        ``--mpheno``); ``None`` takes the first value column that is neither a reserved
        name (:data:`RESERVED_COLUMNS`: skipped with a warning) nor ``SEX`` (unless it is the
        only one), so that a .psam gives its first trait. A reserved name raises
        :class:`InputError`, as in plink2.
    binary
        ``None`` detects a case/control trait (see :func:`code_binary`); ``True`` requires one;
        ``False`` reads the values as quantitative.

    Returns
    -------
    Series
        float64, length ``n_samples``, index = ``genotypes.samples.index``, name = the column.
        Case/control traits are 0 (control) / 1 (case). NaN for missing values and for samples
        absent from the file. ``.attrs``: ``path`` (str), ``missing_ids`` (tuple of
        ``(fid, iid)`` of samples absent from the file), ``n_unmatched_rows`` (file rows
        matching no sample, ignored), ``binary`` (bool), ``coding`` (``"1/2"``, ``"0/1"`` or
        None), ``n_missing`` (NaN count in the result).

    Raises
    ------
    InputError
        Missing file, malformed rows, duplicate IDs (with the line), an unknown column (the
        message lists the available ones), a non-numeric value (file, line and value), a file
        matching no sample, or ``binary=True`` with values outside the case/control codes.
    """
    samples = _samples_of(genotypes)
    table = _parse(path, "PHENO")
    if column is None:
        # the first phenotype (SEX only when alone or named: plink2 would load it as a
        # phenotype beside the others)
        j, *others = _phenotype_indices(table)
        if others:
            # plink2 would analyse them all: say which one this is
            warnings.warn(f"{table.path}: {len(others) + 1} phenotype columns; using the first, "
                          f"{table.columns[j]!r} (name another with column= / --pheno-name; "
                          "`gwaslift gwas` tests them all, as plink2 --glm)", UserWarning, stacklevel=2)
    else:
        j = _pick_column(table, column, "phenotype")
    return _phenotype_columns(table, [j], samples, binary)[0]


def read_pheno_columns(path: str | os.PathLike, genotypes, columns: list,
                       binary: bool | None = None) -> list[pd.Series]:
    """:func:`read_pheno` of each of ``columns`` (names or 1-based numbers), the file
    matched to the samples once (``gwaslift gwas`` with several phenotypes: ~80 ms per
    phenotype saved at 500,000 samples). Every column is checked before any is returned."""
    samples = _samples_of(genotypes)
    table = _parse(path, "PHENO")
    return _phenotype_columns(table, [_pick_column(table, c, "phenotype") for c in columns], samples, binary)


def _phenotype_columns(table: _Table, picked: list[int], samples: pd.DataFrame, binary) -> list[pd.Series]:
    """Columns ``picked`` of ``table`` on the samples, coded: every column checked (an
    InputError naming the line of its first value that is neither a finite number nor a
    missing code) before the file is matched to the samples, once."""
    numeric = []
    for j in picked:
        num, bad = _numeric(table, j)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"phenotype {table.columns[j]!r} must be a finite number (or -9/NA/nan for missing), "
                f"found {_token(table, j, k)!r}",
                table.path,
                int(table.lines[k]),
            )
        numeric.append(num)
    rows, missing_ids, n_unmatched = _align(table, samples)
    out = []
    for j, num in zip(picked, numeric):
        name = table.columns[j]
        try:
            values, is_binary, coding = code_binary(_take(num, rows), binary, source=table.path)
        except ValueError as exc:
            raise InputError(f"phenotype {name!r}: {exc}", table.path) from None
        series = pd.Series(values, index=samples.index, name=name, dtype=np.float64)
        series.attrs.update(path=str(table.path), missing_ids=missing_ids, n_unmatched_rows=n_unmatched,
                            binary=is_binary, coding=coding, n_missing=int(np.isnan(values).sum()))
        out.append(series)
    return out


def _fmt_level(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _natural_levels(levels: list[str]) -> list[str]:
    """Sort category levels numerically when they all read as numbers, else as text."""
    try:
        return sorted(levels, key=float)
    except ValueError:
        return sorted(levels)


def read_covar(path: str | os.PathLike, genotypes, columns: str | list[str] | None = None,
               categorical: str | list[str] | None = None) -> pd.DataFrame:
    """Read covariates from a PLINK-style file, aligned to ``genotypes.samples``.

    Parameters
    ----------
    path
        Covariate file (see the module docstring for the accepted layouts).
    genotypes
        A :class:`gwaslift.Genotypes` (or its ``samples`` DataFrame with ``fid, iid``).
    columns
        Names of the columns to keep (in this order); ``None`` keeps all but the reserved
        names (:data:`RESERVED_COLUMNS`, skipped with a warning; ``SEX`` is kept, as plink2
        keeps it). Naming a reserved column raises :class:`InputError`, as in plink2.
    categorical
        Names of columns to treat as categorical even though they are numeric (e.g. a batch
        number). Columns holding any non-numeric value are categorical anyway.

    Returns
    -------
    DataFrame
        float64 columns, one row per sample, index = ``genotypes.samples.index``. Numeric
        columns keep their name. A categorical column ``c`` with levels ``l0 < l1 < ...``
        (sorted numerically when all numeric, else as text) becomes one 0/1 indicator
        column ``"c=l1"``, ``"c=l2"``, ... per level but the reference: the most common level
        among the matched samples (ties: the first), dropped so that the columns are not
        collinear with the intercept, as plink2 --glm does; a missing value is NaN in all of
        them. A categorical column with a single level adds no column (warning).
        ``.attrs``: ``path``, ``missing_ids``, ``n_unmatched_rows`` (as in :func:`read_pheno`),
        ``categorical`` (dict: column -> its levels, reference first), ``n_missing`` (rows
        with any NaN).

    Raises
    ------
    InputError
        As :func:`read_pheno` (an unknown name in ``columns`` or ``categorical`` lists the
        available columns).
    """
    samples = _samples_of(genotypes)
    table = _parse(path, "COVAR")
    if isinstance(columns, str):
        columns = [columns]
    if isinstance(categorical, str):
        categorical = [categorical]
    keep = _default_columns(table, "covariate") if columns is None else [
        _pick_column(table, c, "covariate") for c in _expand_ranges(table, columns)]
    cat_set = set()
    for c in categorical or []:
        cat_set.add(table.columns[_pick_column(table, c, "covariate")])
    rows, missing_ids, n_unmatched = _align(table, samples)
    ok = rows >= 0
    data: dict[str, np.ndarray] = {}
    levels_of: dict[str, list[str]] = {}
    for j in keep:
        name = table.columns[j]
        col = table.data[j]
        if col.dtype.kind == "f":
            inf = np.flatnonzero(np.isinf(col))
            if len(inf):
                raise InputError(f"covariate {name!r} must be finite, found {_token(table, j, int(inf[0]))!r}",
                                 table.path, int(table.lines[inf[0]]))
            if name not in cat_set:
                data[name] = _take(col, rows)
                continue
            # a number used as a category (batch 1, 2, 10): level names without a trailing .0
            tokens = np.array([None if np.isnan(v) else _fmt_level(v) for v in col], dtype=object)
        else:
            tokens = col
        # categorical: levels from the rows that match a sample (what the model will see)
        aligned = np.full(len(rows), None, dtype=object)
        aligned[ok] = tokens[rows[ok]]
        is_missing = np.equal(aligned, None)
        levels = _natural_levels([str(v) for v in pd.unique(aligned[~is_missing])])
        if len(levels) > 1:
            # the reference (dropped) level is the most common one, ties to the first, as
            # plink2 --glm splits categorical covariates (and as assoc._covariate_matrix)
            counts = [int(np.sum(aligned == lev)) for lev in levels]
            ref = levels[int(np.argmax(counts))]
            levels = [ref] + [lev for lev in levels if lev != ref]
        levels_of[name] = levels
        if len(levels) < 2:
            warnings.warn(f"{table.path}: categorical covariate {name!r} has {len(levels)} level(s); "
                          "it adds no column", stacklevel=2)
        for lev in levels[1:]:
            col = (aligned == lev).astype(np.float64)
            col[is_missing] = np.nan
            data[f"{name}={lev}"] = col
    out = pd.DataFrame(data, index=samples.index, dtype=np.float64)
    out.attrs.update(path=str(table.path), missing_ids=missing_ids, n_unmatched_rows=n_unmatched,
                     categorical=levels_of, n_missing=int(out.isna().any(axis=1).sum()))
    return out


def as_phenotype(obj, genotypes, binary: bool | None = None, name: str | None = None) -> pd.Series:
    """A phenotype aligned to ``genotypes.samples``, from a file or from memory.

    ``obj`` may be:

    * a path: read with :func:`read_pheno` (its first phenotype column unless ``name`` is given);
    * ``None``: the ``trait`` column of the .fam (PLINK's sixth column; missing already NaN);
    * a Series indexed like ``genotypes.samples`` (same index, any order: reindexed), or indexed
      by ``(fid, iid)`` pairs (a 2-level MultiIndex: aligned by ID, absent samples NaN);
    * an array of length ``n_samples`` in sample order.

    In-memory values are not scanned for -9 (use NaN), but case/control codes are recognised
    as in :func:`code_binary` (a 0/1 .fam trait warns as a 0/1 file does; in-memory 0/1
    does not). A Series from :func:`read_pheno` passes through unchanged (same values and
    ``.attrs``). Returns a float64 Series as :func:`read_pheno` does.
    """
    samples = _samples_of(genotypes)
    if isinstance(obj, (str, os.PathLike)):
        return read_pheno(obj, genotypes, column=name, binary=binary)
    source = None  # a file behind in-memory values: the .fam (0/1 codes then warn)
    if obj is None:
        obj = samples["trait"].rename(name or "trait")
        prefix = getattr(genotypes, "prefix", "")
        source = f"{prefix}.fam column 6" if prefix else "the .fam column 6"
    if isinstance(obj, pd.Series) and isinstance(obj.attrs.get("binary"), bool) and "coding" in obj.attrs \
            and obj.index.equals(samples.index) and binary in (None, obj.attrs["binary"]):
        # already read and coded (read_pheno / as_phenotype): pass through
        return obj.astype(np.float64)
    if isinstance(obj, pd.DataFrame):
        if obj.shape[1] != 1:
            raise InputError(f"a phenotype must be one column; got a table with columns {list(obj.columns)}")
        obj = obj.iloc[:, 0]
    attrs = {}
    missing_ids: tuple = SampleIDs()
    if isinstance(obj, pd.Series):
        label = name or (str(obj.name) if obj.name is not None else "phenotype")
        if isinstance(obj.index, pd.MultiIndex) and obj.index.nlevels == 2:
            target = pd.MultiIndex.from_arrays([samples["fid"].astype(str), samples["iid"].astype(str)])
            src = pd.MultiIndex.from_arrays([obj.index.get_level_values(0).astype(str),
                                             obj.index.get_level_values(1).astype(str)])
            if src.has_duplicates:
                raise InputError(f"phenotype {label!r}: duplicate (FID, IID) {src[src.duplicated()][0]!r}")
            rows = src.get_indexer(target)
            if (rows < 0).all():
                raise InputError(f"phenotype {label!r}: no (FID, IID) matches a genotype sample")
            vals = obj.to_numpy()
            values = np.where(rows >= 0, vals[np.maximum(rows, 0)], np.nan)
            absent = np.flatnonzero(rows < 0)
            missing_ids = SampleIDs(zip(samples["fid"].to_numpy()[absent], samples["iid"].to_numpy()[absent]))
            attrs["n_unmatched_rows"] = int(len(src) - (rows >= 0).sum())
        else:
            if obj.index.has_duplicates or not obj.index.sort_values().equals(samples.index.sort_values()):
                raise InputError(
                    f"phenotype {label!r}: a Series must be indexed like genotypes.samples "
                    f"({len(samples)} rows) or by (fid, iid); got {len(obj)} rows")
            values = obj.reindex(samples.index).to_numpy()
            attrs["n_unmatched_rows"] = 0
    else:
        label = name or "phenotype"
        values = np.asarray(obj)
        if values.ndim != 1 or len(values) != len(samples):
            raise InputError(
                f"phenotype {label!r}: expected a 1-D array of {len(samples)} values (one per sample), "
                f"got shape {values.shape}")
        attrs["n_unmatched_rows"] = 0
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"phenotype {label!r} must be numeric") from None
    if np.isinf(values).any():
        raise InputError(f"phenotype {label!r} holds infinite values")
    try:
        values, is_binary, coding = code_binary(values, binary, source=source)
    except ValueError as exc:
        raise InputError(f"phenotype {label!r}: {exc}") from None
    out = pd.Series(values, index=samples.index, name=label, dtype=np.float64)
    out.attrs.update(path=None, missing_ids=missing_ids, binary=is_binary, coding=coding,
                     n_missing=int(np.isnan(values).sum()), **attrs)
    return out


__all__ = ["MISSING_TOKENS", "RESERVED_COLUMNS", "SampleIDs", "as_phenotype", "code_binary", "parse_values",
           "read_covar", "read_pheno", "read_pheno_columns"]
