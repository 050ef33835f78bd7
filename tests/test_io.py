"""PLINK reading and writing, checked against plink2 and pandas-plink (independent readers)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gwaslift
from gwaslift import InputError
from gwaslift.io.packed import decode_dosage, encode_dosage, unpack_codes


def plink2_dosage(plink2, bfile: Path, tmp: Path) -> np.ndarray:
    """plink2 --export A counting the .bim column-5 allele (samples x variants, NaN missing)."""
    bim = pd.read_csv(f"{bfile}.bim", sep=r"\s+", header=None)
    bim[[1, 4]].to_csv(tmp / "a1.txt", sep="\t", header=False, index=False)
    plink2("--bfile", bfile, "--export", "A", "--export-allele", tmp / "a1.txt", "--out", tmp / "raw")
    raw = pd.read_csv(tmp / "raw.raw", sep=r"\s+")
    # the header names the counted allele: it must be column 5 of the .bim
    assert [c.rsplit("_", 1)[1] for c in raw.columns[6:]] == bim[4].astype(str).tolist()
    return raw.iloc[:, 6:].to_numpy(dtype=np.float64)


@pytest.fixture(scope="module")
def reference(dummy_bfile, plink2, tmp_path_factory):
    return plink2_dosage(plink2, dummy_bfile, tmp_path_factory.mktemp("ref"))


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_dosage_equals_plink2_export(dummy_bfile, reference, chunk):
    g = gwaslift.read_plink(dummy_bfile, variant_chunk=chunk)
    d = g.dosage.compute()
    assert d.dtype == np.float32 and d.shape == reference.shape
    assert np.isnan(d).sum() > 0, "the fixture must contain missing calls"
    np.testing.assert_array_equal(d, reference.astype(np.float32))


def test_dosage_equals_pandas_plink(dummy_bfile):
    from pandas_plink import read_plink1_bin

    g = gwaslift.read_plink(dummy_bfile)
    ref = read_plink1_bin(f"{dummy_bfile}.bed", ref="a0", verbose=False).values  # a0 = .bim col 5
    np.testing.assert_array_equal(g.dosage.compute(), ref)


def test_metadata(dummy_bfile):
    g = gwaslift.read_plink(str(dummy_bfile) + ".bed")  # a path with a suffix is accepted
    assert list(g.samples.columns) == ["fid", "iid", "father", "mother", "sex", "trait"]
    assert list(g.variants.columns) == ["chrom", "snp", "cm", "pos", "a1", "a2"]
    bim = pd.read_csv(f"{dummy_bfile}.bim", sep=r"\s+", header=None, dtype=str)
    assert g.variants.a1.tolist() == bim[4].tolist() and g.variants.a2.tolist() == bim[5].tolist()
    assert g.variants.pos.dtype == np.int64
    assert g.shape == (203, 120)
    assert g.packed.shape == (120, (203 + 3) // 4) and g.packed.dtype == np.uint8


def test_subset_is_lazy_and_correct(dummy_bfile, reference):
    g = gwaslift.read_plink(dummy_bfile, variant_chunk=16)
    rows = np.array([200, 3, 17, 4, 99])
    cols = np.zeros(120, bool)
    cols[[0, 5, 6, 7, 50, 119]] = True
    s = g.subset(samples=rows, variants=cols)
    assert s.samples.iid.tolist() == g.samples.iid.iloc[rows].tolist()
    np.testing.assert_array_equal(s.dosage.compute(), reference[rows][:, cols].astype(np.float32))
    # nested subsets compose
    s2 = s.subset(samples=[4, 0], variants=[5, 1])
    np.testing.assert_array_equal(s2.dosage.compute(), reference[rows[[4, 0]]][:, np.flatnonzero(cols)[[5, 1]]])
    np.testing.assert_array_equal(s2.read_dosage(0, 2), s2.dosage.compute())


def test_packed_rows_are_the_bed_bytes(dummy_bfile):
    g = gwaslift.read_plink(dummy_bfile, variant_chunk=9)
    raw = np.fromfile(f"{dummy_bfile}.bed", dtype=np.uint8)[3:].reshape(120, -1)
    np.testing.assert_array_equal(g.packed.compute(), raw)
    np.testing.assert_array_equal(g.subset(variants=[7, 2]).packed.compute(), raw[[7, 2]])


@pytest.mark.parametrize("block_rows", [1, 7, 120, 500])
def test_iter_packed_blocks_are_the_bed_bytes(dummy_bfile, block_rows):
    """iter_packed: the same rows as read_packed, in order, in blocks of at most block_rows;
    a contiguous range reuses one buffer (valid until the next block); scattered variants
    (and decoys) go through read_rows."""
    from gwaslift.decoys import with_decoys

    g = gwaslift.read_plink(dummy_bfile)
    raw = np.fromfile(f"{dummy_bfile}.bed", dtype=np.uint8)[3:].reshape(120, -1)
    for geno, want, start, stop in ((g, raw, 5, 117), (g.subset(variants=[7, 2, 3, 90]), raw[[7, 2, 3, 90]], 0, 4)):
        got, buffers = [], set()
        for off, rows in geno.iter_packed(start, stop, block_rows):
            assert off == sum(len(r) for r in got) and 0 < len(rows) <= block_rows
            got.append(rows.copy())
            buffers.add(rows.__array_interface__["data"][0])
        np.testing.assert_array_equal(np.concatenate(got), want[start:stop])
        if geno is g and stop - start > block_rows:
            assert len(buffers) == 1  # one reused buffer
    assert list(g.iter_packed(3, 3, 4)) == []
    dec = with_decoys(g, 5, seed=1)
    blocks = [rows.copy() for _, rows in dec.iter_packed(100, dec.n_variants, block_rows)]
    np.testing.assert_array_equal(np.concatenate(blocks), dec.read_packed(100, dec.n_variants))


def test_graph_is_small_and_picklable(dummy_bfile):
    """Tasks carry a path, not the data: a distributed worker opens the file itself."""
    g = gwaslift.read_plink(dummy_bfile, variant_chunk=10)
    assert len(pickle.dumps(dict(g.dosage.__dask_graph__()))) < 20_000


def test_encode_decode_roundtrip_property():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(st.integers(1, 13), st.integers(1, 5), st.integers(0, 2**32 - 1))
    def check(n, m, seed):
        rng = np.random.default_rng(seed)
        d = rng.integers(0, 3, size=(n, m)).astype(np.float32)
        d[rng.random((n, m)) < 0.2] = np.nan
        packed = encode_dosage(d)
        assert packed.shape == (m, (n + 3) // 4)
        np.testing.assert_array_equal(decode_dosage(packed, n), d)
        idx = rng.permutation(n)[: max(1, n // 2)]
        np.testing.assert_array_equal(decode_dosage(packed, n, idx), d[idx])
        assert unpack_codes(packed, n).shape == (m, n)

    check()


def test_written_files_read_by_plink2(tmp_path, plink2):
    rng = np.random.default_rng(3)
    n, m = 37, 23
    d = rng.integers(0, 3, size=(n, m)).astype(np.float32)
    d[rng.random((n, m)) < 0.05] = np.nan
    samples = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)],
                            "father": "0", "mother": "0", "sex": rng.integers(0, 3, n), "trait": rng.normal(size=n)})
    variants = pd.DataFrame({"chrom": "2", "snp": [f"rs{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(m) * 100 + 5, "a1": "A", "a2": "G"})
    gwaslift.write_plink(tmp_path / "w", d, samples, variants)
    np.testing.assert_array_equal(plink2_dosage(plink2, tmp_path / "w", tmp_path), d)
    back = gwaslift.read_plink(tmp_path / "w")
    np.testing.assert_allclose(back.samples.trait, samples.trait, rtol=1e-12)
    assert back.samples.iid.tolist() == samples.iid.tolist()


def test_write_subset_genotypes(dummy_bfile, reference, tmp_path):
    g = gwaslift.read_plink(dummy_bfile, variant_chunk=13)
    gwaslift.write_plink(tmp_path / "all", g)  # packed copy path
    assert Path(f"{tmp_path}/all.bed").read_bytes() == Path(f"{dummy_bfile}.bed").read_bytes()
    s = g.subset(samples=np.arange(0, 203, 2), variants=np.arange(0, 120, 3))
    gwaslift.write_plink(tmp_path / "sub", s)
    np.testing.assert_array_equal(gwaslift.read_plink(tmp_path / "sub").dosage.compute(),
                                  reference[::2, ::3].astype(np.float32))


def test_failed_write_leaves_nothing(tmp_path):
    samples = pd.DataFrame({"iid": ["a", "b"]})
    variants = pd.DataFrame({"chrom": "1", "snp": ["x", "y"], "cm": 0.0, "pos": [1, 2], "a1": "A", "a2": "C"})
    with pytest.raises(ValueError):
        gwaslift.write_plink(tmp_path / "bad", np.array([[0, 3], [1, 2]], float), samples, variants)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad input


@pytest.fixture
def fileset(dummy_bfile, tmp_path) -> Path:
    for ext in ("bed", "bim", "fam"):
        shutil.copy(f"{dummy_bfile}.{ext}", tmp_path / f"x.{ext}")
    return tmp_path / "x"


def edit_line(path: Path, index: int, edit) -> None:
    """Replace line ``index`` (0-based) of a text file by ``edit(line)``."""
    lines = path.read_text().splitlines()
    lines[index] = edit(lines[index])
    path.write_text("\n".join(lines) + "\n")


def set_field(line: str, field: int, value: str) -> str:
    f = line.split()
    f[field] = value
    return "\t".join(f)


def expect_error(prefix, *fragments):
    with pytest.raises(InputError) as info:
        gwaslift.read_plink(prefix)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, msg
    return msg


@pytest.mark.parametrize("ext", ["bed", "bim", "fam"])
def test_missing_file(fileset, ext):
    Path(f"{fileset}.{ext}").unlink()
    expect_error(fileset, f"x.{ext}", "not found")


def test_bad_magic(fileset):
    bed = Path(f"{fileset}.bed")
    data = bytearray(bed.read_bytes())
    data[0] = 0x00
    bed.write_bytes(bytes(data))
    expect_error(fileset, "x.bed", "magic", "0x6c 0x1b")


def test_sample_major_bed(fileset):
    bed = Path(f"{fileset}.bed")
    data = bytearray(bed.read_bytes())
    data[2] = 0x00
    bed.write_bytes(bytes(data))
    expect_error(fileset, "x.bed", "sample-major")


def test_bed_size_mismatch(fileset):
    bed = Path(f"{fileset}.bed")
    bed.write_bytes(bed.read_bytes()[:-5])
    expect_error(fileset, "x.bed", "does not match", "120 variants")
    # one variant too few in the .bim is also a size mismatch
    bim = Path(f"{fileset}.bim")
    lines = bim.read_text().splitlines()
    bim.write_text("\n".join(lines[:-1]) + "\n")
    bed.write_bytes(bed.read_bytes() + b"\x00" * 5)
    expect_error(fileset, "x.bed", "119 variants")


def test_malformed_bim_row(fileset):
    edit_line(Path(f"{fileset}.bim"), 9, lambda _: "1 snpX 0 12345 A")  # five fields
    expect_error(fileset, "x.bim", "line 10", "6 whitespace-separated fields")


def test_non_integer_position(fileset):
    edit_line(Path(f"{fileset}.bim"), 4, lambda line: set_field(line, 3, "12.5"))
    expect_error(fileset, "x.bim", "line 5", "integer base-pair position")


@pytest.mark.parametrize("field, value, what", [(3, "12a", "integer base-pair position"),
                                                 (3, "nan", "integer base-pair position"),
                                                 (2, "NA", "a number (centimorgans)")])
def test_text_in_a_numeric_bim_column(fileset, field, value, what):
    """The fast parser reads cm and pos as numbers: text there must still name the line."""
    edit_line(Path(f"{fileset}.bim"), 6, lambda line: set_field(line, field, value))
    expect_error(fileset, "x.bim", "line 7", what)


def test_malformed_fam_row(fileset):
    edit_line(Path(f"{fileset}.fam"), 2, lambda line: line + " extra")
    expect_error(fileset, "x.fam", "line 3")


def test_sex_codes_read_as_plink2(fileset, plink2, tmp_path):
    """1/M/m male, 2/F/f female, any other code unknown (0, -9, NA, 3, 1.0): as plink2's .psam
    says; codes other than the usual ones warn, naming the line."""
    codes = ["-9", "NA", "3", "M", "F", "m", "f", "0", "1", "2", "x", "1.0"]
    for k, c in enumerate(codes):
        edit_line(Path(f"{fileset}.fam"), k, lambda line, c=c: set_field(line, 4, c))
    with pytest.warns(UserWarning, match=r"x\.fam:3: 3 sample\(s\) have sex code '3'"):
        sex = gwaslift.read_plink(fileset).samples["sex"].to_numpy()[: len(codes)]
    plink2("--bfile", fileset, "--make-just-psam", "--out", tmp_path / "ref")
    ref = pd.read_csv(tmp_path / "ref.psam", sep="\t")["SEX"].fillna(0).astype(int).to_numpy()[: len(codes)]
    np.testing.assert_array_equal(sex, ref)
    np.testing.assert_array_equal(sex, [0, 0, 0, 1, 2, 1, 2, 0, 1, 2, 0, 0])


def test_duplicate_sample_ids(fileset):
    fam = Path(f"{fileset}.fam")
    fourth = fam.read_text().splitlines()[3]
    edit_line(fam, 10, lambda _: fourth)
    expect_error(fileset, "x.fam", "duplicate sample ID", "line 4")


def test_empty_fam(fileset):
    Path(f"{fileset}.fam").write_text("")
    expect_error(fileset, "x.fam", "no rows")


def test_input_error_is_value_error():
    assert issubclass(InputError, ValueError)


def test_dask_names_depend_on_chunking(dummy_bfile):
    """Views with other chunks must not share Dask keys (a distributed scheduler mixes them)."""
    g = gwaslift.read_plink(dummy_bfile, variant_chunk=7)
    h = g.with_chunks(30)
    assert g.packed.name != h.packed.name and g.dosage.name != h.dosage.name
    assert g.packed.name == gwaslift.read_plink(dummy_bfile, variant_chunk=7).packed.name


# ---------------------------------------------------------------- plink2 conventions on read


def _small_fileset(prefix: Path, n: int = 12, m: int = 6, seed: int = 0, bim_lines=None, fam_lines=None):
    """A fileset written by gwaslift's writer, then .bim/.fam lines replaced as given."""
    rng = np.random.default_rng(seed)
    d = rng.integers(0, 3, size=(n, m)).astype(np.float32)
    samples = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)],
                            "father": "0", "mother": "0", "sex": 1, "trait": np.nan})
    variants = pd.DataFrame({"chrom": "1", "snp": [f"rs{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(m) * 10 + 100, "a1": "A", "a2": "G"})
    gwaslift.write_plink(prefix, d, samples, variants)
    if bim_lines is not None:
        Path(f"{prefix}.bim").write_text("\n".join(bim_lines) + "\n")
    if fam_lines is not None:
        Path(f"{prefix}.fam").write_text("\n".join(fam_lines) + "\n")
    return d


def test_fam_trait_missing_spellings_match_plink2(tmp_path, plink2):
    """Any number equal to -9 is missing in column 6, as in phenotype files and plink2."""
    tokens = ["-9.0", "-9", "-9e0", "-9.000", "NA", "nan", "1.5", "-8.5", "2", "-90", "0.25", "NaN"]
    _small_fileset(tmp_path / "t", fam_lines=[f"f{i} i{i} 0 0 1 {t}" for i, t in enumerate(tokens)])
    g = gwaslift.read_plink(tmp_path / "t")
    plink2("--bfile", tmp_path / "t", "--make-just-psam", "--out", tmp_path / "ref")
    ref = pd.read_csv(tmp_path / "ref.psam", sep="\t", na_values=["NA"])["PHENO1"].to_numpy(dtype=float)
    np.testing.assert_array_equal(g.samples.trait.to_numpy(), ref)
    assert g.samples.trait.isna().sum() == 7  # -9.0 was read as the value -9 before


def test_fam_text_trait_warns_and_is_missing(fileset):
    fam = Path(f"{fileset}.fam")
    lines = [set_field(line, 5, "case" if k % 2 else "control") for k, line in enumerate(fam.read_text().splitlines())]
    fam.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"x\.fam, line 1: .*text such as 'control' on 203 of 203 lines"):
        g = gwaslift.read_plink(fileset)
    assert g.samples.trait.isna().all()


def _bump_mtime(path: Path, st) -> None:
    """Give ``path`` a modification time 1 s after ``st``'s (a rewrite within one clock tick
    of the filesystem could otherwise keep the old time)."""
    import os

    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_rewritten_bed_raises_not_stale_dosages(tmp_path):
    """A .bed rewritten in place (same size) after read_plink: every read path refuses it."""
    d = _small_fileset(tmp_path / "r", n=12, m=6)
    g = gwaslift.read_plink(tmp_path / "r", variant_chunk=2)
    sub = g.subset(variants=[4, 0, 2])  # not contiguous: the memmap path
    np.testing.assert_array_equal(g.read_dosage(0, 6), d)
    before = Path(f"{tmp_path}/r.bed").stat()
    # the same fileset with two samples swapped: same size, other dosages
    gwaslift.write_plink(tmp_path / "r", d[[1, 0, *range(2, 12)]], g.samples, g.variants)
    _bump_mtime(Path(f"{tmp_path}/r.bed"), before)
    assert Path(f"{tmp_path}/r.bed").stat().st_size == before.st_size
    for read in (lambda: g.read_dosage(0, 6), lambda: sub.read_dosage(0, 3), lambda: g.dosage.compute(),
                 lambda: sub.packed.compute(), lambda: pickle.loads(pickle.dumps(g.source)).read_rows(np.arange(2)),
                 lambda: list(g.iter_packed(0, 6, 4)), lambda: gwaslift.qc(g)):
        with pytest.raises(InputError, match=r"r\.bed: the \.bed changed since it was opened"):
            read()
    np.testing.assert_array_equal(gwaslift.read_plink(tmp_path / "r").read_dosage(0, 6), d[[1, 0, *range(2, 12)]])


def test_shrunk_or_removed_bed_raises_input_error(tmp_path):
    """A smaller rewrite (e.g. QC'd subset written over its input) or a removed .bed: InputError
    naming the file, not numpy's mmap ValueError."""
    d = _small_fileset(tmp_path / "s", n=12, m=6)
    g = gwaslift.read_plink(tmp_path / "s")
    sub = g.subset(variants=[5, 1])
    gwaslift.write_plink(tmp_path / "s", d[:, :3], g.samples, g.variants.iloc[:3])
    for read in (lambda: sub.read_dosage(0, 2), lambda: g.read_packed(0, 6), lambda: list(g.iter_packed(0, 6, 2))):
        with pytest.raises(InputError, match=r"s\.bed: the \.bed changed since it was opened \(size 21 -> 12 bytes\)"):
            read()
    Path(f"{tmp_path}/s.bed").unlink()
    with pytest.raises(InputError, match=r"s\.bed: the \.bed was removed"):
        sub.read_dosage(0, 2)


def test_negative_positions_are_excluded_like_plink2(tmp_path, plink2):
    bim = [f"1 rs{j} 0 {pos} A G" for j, pos in enumerate([-1, 200, 300, -5, 500, 600])]
    d = _small_fileset(tmp_path / "n", n=12, m=6, bim_lines=bim)
    with pytest.warns(UserWarning,
                      match=r"n\.bim: 2 variants with a negative.*'rs0' on line 1.*4 out of 6 variants loaded"):
        g = gwaslift.read_plink(tmp_path / "n", variant_chunk=3)
    plink2("--bfile", tmp_path / "n", "--make-bed", "--out", tmp_path / "ref")
    ref = pd.read_csv(tmp_path / "ref.bim", sep=r"\s+", header=None, dtype=str)
    assert g.variants.snp.tolist() == ref[1].tolist() == ["rs1", "rs2", "rs4", "rs5"]
    assert g.variant_idx.tolist() == [1, 2, 4, 5] and g.source.n_variants == 6
    np.testing.assert_array_equal(g.dosage.compute(), d[:, [1, 2, 4, 5]])
    np.testing.assert_array_equal(g.dosage.compute(), plink2_dosage(plink2, tmp_path / "ref", tmp_path))
    # written back, the excluded variants are gone from all three files
    gwaslift.write_plink(tmp_path / "w", g)
    np.testing.assert_array_equal(gwaslift.read_plink(tmp_path / "w").dosage.compute(), d[:, [1, 2, 4, 5]])
    Path(f"{tmp_path}/n.bim").write_text("\n".join(f"1 rs{j} 0 -{j + 1} A G" for j in range(6)) + "\n")
    expect_error(tmp_path / "n", "n.bim", "every variant has a negative base-pair position")


def test_chromosome_codes_named_like_plink2(tmp_path, plink2):
    codes = ["chr1", "CHR2", "01", "0", "23", "X", "chrx", "24", "chrY", "25", "XY", "26", "M", "chrMT", "mt"]
    _small_fileset(tmp_path / "c", n=8, m=len(codes),
                   bim_lines=[f"{c} rs{j} 0 {100 + j} A G" for j, c in enumerate(codes)])
    g = gwaslift.read_plink(tmp_path / "c")
    # plink2 refuses to write a .bed with split chromosomes; its sorted .pvar names them all
    plink2("--bfile", tmp_path / "c", "--make-pgen", "--sort-vars", "--out", tmp_path / "ref")
    lines = [line for line in (tmp_path / "ref.pvar").read_text().splitlines() if not line.startswith("##")]
    pvar = pd.DataFrame([line.split("\t") for line in lines[1:]], columns=lines[0].split("\t"))
    ref = dict(zip(pvar["ID"], pvar["#CHROM"]))
    assert g.variants.chrom.tolist() == [ref[s] for s in g.variants.snp]
    assert g.variants.chrom.tolist()[4:9] == ["X", "X", "X", "Y", "Y"]
    # contig names plink2 keeps as written (with --allow-extra-chr) stay as they are
    extra = ["chrUn_gl000220", "HLA", "chr"]
    assert gwaslift.io.plink.normalize_chrom(extra).tolist() == extra
