"""gwaslift.io.select and the command's --keep/--remove/--extract/--exclude/--chr: plink2's
ID-file layouts, its selections (the same samples and variants as plink2's --glm), and
clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gwaslift
from gwaslift import InputError
from gwaslift.cli import main
from gwaslift.io.select import chrom_mask, read_sample_ids, sample_mask, select, variant_mask
from gwaslift.io.sumstats import read_sumstats


@pytest.fixture(scope="module")
def bfile(tmp_path_factory):
    """60 samples in 3 families, FIDs 0, F1, F2 (IIDs repeat across families); 40 variants on
    chromosomes 1, 2, 3 and X, with one duplicated variant ID; a quantitative trait."""
    d = tmp_path_factory.mktemp("select")
    rng = np.random.default_rng(21)
    n, m = 60, 40
    samples = pd.DataFrame({"fid": ["0" if i < 20 else f"F{i // 20}" for i in range(n)],
                            "iid": [f"S{i % 20}" for i in range(n)],
                            "sex": rng.choice([1, 2], n), "trait": rng.normal(size=n)})
    chrom = ["1"] * 12 + ["2"] * 10 + ["3"] * 10 + ["X"] * 8
    snp = [f"rs{j}" for j in range(m)]
    snp[30] = snp[29]  # a duplicated ID on chromosome 3
    variants = pd.DataFrame({"chrom": chrom, "snp": snp, "cm": 0.0, "pos": np.arange(1, m + 1) * 1000,
                             "a1": "A", "a2": "G"})
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), size=(n, m)).astype(np.float32)
    G[rng.random((n, m)) < 0.03] = np.nan
    prefix = d / "s"
    gwaslift.write_plink(prefix, G, samples=samples, variants=variants)
    return prefix


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("lines, fids, iids", [
    (["#FID IID", "F0 S1", "F2 S3"], ["F0", "F2"], ["S1", "S3"]),
    (["FID\tIID\tPAT", "F0\tS1\t0"], ["F0"], ["S1"]),
    (["#IID SID", "S1 x", "S3 y"], None, ["S1", "S3"]),
    (["IID", "S1"], None, ["S1"]),
    (["F0 S1 0 0 1 -9", "F2 S3 0 0 2 -9"], ["F0", "F2"], ["S1", "S3"]),  # a .fam
    (["S1", "", "S3"], None, ["S1", "S3"]),  # one column: IIDs; blank lines skipped
])
def test_sample_id_file_layouts(tmp_path, lines, fids, iids):
    assert read_sample_ids(_write(tmp_path / "ids", lines)) == (fids, iids)


def test_iid_only_means_fid_0_as_plink2(bfile, tmp_path):
    g = gwaslift.read_plink(bfile)
    with pytest.warns(UserWarning, match="4 samples of other families share those IIDs"):
        by_iid = sample_mask(g, _write(tmp_path / "a", ["S1", "S2"]))
    assert list(g.samples.fid[by_iid]) == ["0", "0"]  # FID 0's S1 and S2 only (plink2 v2.00a3.5)
    by_pair = sample_mask(g, _write(tmp_path / "b", ["F1 S1", "F9 S2"]))  # F9 S2 is not in the .fam
    assert by_pair.sum() == 1 and g.samples.loc[by_pair, "fid"].item() == "F1"


def test_variant_ids_and_chromosomes(bfile, tmp_path):
    g = gwaslift.read_plink(bfile)
    m = variant_mask(g, _write(tmp_path / "v", ["rs0 rs5", "rs39", "rs_absent"]))
    assert list(g.variants.snp[m]) == ["rs0", "rs5", "rs39"]
    with pytest.warns(UserWarning, match=r"v2: variant ID 'rs29' names 2 variants.*all of them"):
        m = variant_mask(g, _write(tmp_path / "v2", ["rs1", "rs29"]))
    assert list(np.flatnonzero(m)) == [1, 29, 30]  # both rs29 (positions 29 and 30), as plink2
    assert chrom_mask(g, "2-3").sum() == 20
    assert chrom_mask(g, "chrX").sum() == 8 and chrom_mask(g, "23").sum() == 8
    assert chrom_mask(g, "1,X").sum() == 20
    with pytest.raises(InputError, match="not a range"):
        chrom_mask(g, "X-Y")


def test_empty_selections_and_bad_files_raise_naming_them(bfile, tmp_path):
    g = gwaslift.read_plink(bfile)
    with pytest.raises(InputError, match=r"nobody.*no samples remain after --keep"):
        select(g, keep=_write(tmp_path / "nobody", ["F9 S99"]))
    with pytest.raises(InputError, match="no variants remain after --chr 22"):
        select(g, chrom="22")
    with pytest.raises(InputError, match=r"missing_file.*cannot read"):
        select(g, extract=tmp_path / "missing_file")
    with pytest.raises(InputError, match=r"short.*line 2.*FID and IID"):
        select(g, keep=_write(tmp_path / "short", ["#FID IID", "F0"]))
    assert select(g) is g  # nothing asked: the same object


def test_gwas_selection_equals_plink2(bfile, tmp_path, plink2):
    """`gwaslift gwas` with all five flags tests the same variants on the same samples as
    plink2 --glm with the same flags: same IDs, OBS_CT, and betas to plink2's printed digits."""
    keep = _write(tmp_path / "keep.txt", ["#FID IID"] + [f"{fid} S{i}" for fid in ("0", "F1", "F2")
                                                          for i in range(18)])
    remove = _write(tmp_path / "remove.txt", ["S4", "S7"])  # IID only: FID 0's S4 and S7
    extract = _write(tmp_path / "extract.txt", [f"rs{j}" for j in range(0, 29)] + ["rs31", "rs35"])
    exclude = _write(tmp_path / "exclude.txt", ["rs3", "rs15"])
    # chrX left out: plink2 --glm adds sex as a covariate there (the README says so)
    flags = ["--keep", keep, "--remove", remove, "--extract", extract, "--exclude", exclude, "--chr", "1-2"]
    with pytest.warns(UserWarning, match="IIDs only"):
        rc = main(["gwas", "--bfile", str(bfile), "--out", str(tmp_path / "ours"), *map(str, flags)])
    assert rc == 0
    plink2("--bfile", bfile, *flags, "--glm", "allow-no-covars", "omit-ref", "--out", tmp_path / "ref")
    ours = read_sumstats(tmp_path / "ours.glm.linear")
    ref = read_sumstats(tmp_path / "ref.PHENO1.glm.linear")
    assert list(ours.snp) == list(ref.snp) and len(ours) == 11 + 9  # chr1 less rs3, chr2 less rs15
    np.testing.assert_array_equal(ours.n.to_numpy(), ref.n.to_numpy())
    assert ours.n.max() == 3 * 18 - 2  # 54 kept, less FID 0's S4 and S7
    np.testing.assert_allclose(ours.beta, ref.beta, rtol=5e-5, atol=1e-6)


def test_duplicated_listed_id_selects_all_as_plink2(bfile, tmp_path, plink2):
    ids = _write(tmp_path / "dup.txt", ["rs29", "rs31"])
    with pytest.warns(UserWarning, match="all of them are selected"):
        rc = main(["gwas", "--bfile", str(bfile), "--out", str(tmp_path / "ours"), "--extract", str(ids)])
    assert rc == 0
    plink2("--bfile", bfile, "--extract", ids, "--glm", "allow-no-covars", "omit-ref", "--out", tmp_path / "ref")
    ours = read_sumstats(tmp_path / "ours.glm.linear")
    ref = read_sumstats(tmp_path / "ref.PHENO1.glm.linear")
    assert list(ours.snp) == list(ref.snp) == ["rs29", "rs29", "rs31"]
    np.testing.assert_allclose(ours.beta, ref.beta, rtol=5e-5, atol=1e-6)


def test_a_leading_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    marked = tmp_path / "ids"
    marked.write_bytes(b"\xef\xbb\xbf" + "#FID IID\nF0 S1\nF2 S3\n".encode())
    assert read_sample_ids(marked) == (["F0", "F2"], ["S1", "S3"])
