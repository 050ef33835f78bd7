"""Phenotype / covariate files: layouts, alignment to the .fam, codings, bad input.

The independent reference is plink2 itself: it reads the same file with ``--pheno`` and
writes the values aligned to the .fam order (``--make-just-psam``).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest

from gwaslift import InputError, read_plink, write_plink
from gwaslift.io.pheno import as_phenotype, code_binary, read_covar, read_pheno

N = 30


@pytest.fixture(scope="module")
def geno(tmp_path_factory):
    """30 samples in 6 families; IIDs 'a' and 'b' repeat across families (only FID tells them apart)."""
    rng = np.random.default_rng(3)
    fid = [f"F{i // 5}" for i in range(N)]
    iid = [f"S{i}" for i in range(N)]
    iid[0], iid[5] = "a", "a"
    iid[1], iid[6] = "b", "b"
    samples = pd.DataFrame({"fid": fid, "iid": iid, "sex": 0, "trait": np.nan})
    variants = pd.DataFrame({"chrom": "1", "snp": [f"v{j}" for j in range(4)], "cm": 0.0,
                             "pos": np.arange(1, 5) * 100, "a1": "A", "a2": "C"})
    prefix = tmp_path_factory.mktemp("ph") / "g"
    write_plink(prefix, rng.integers(0, 3, (N, 4)).astype(float), samples, variants)
    return read_plink(prefix)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def _ids(g):
    return list(zip(g.samples.fid, g.samples.iid))


# ---------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("layout", ["FID IID", "#FID IID", "headerless", "tabs"])
def test_layouts_read_the_same_values(tmp_path, geno, layout):
    rng = np.random.default_rng(1)
    y = rng.normal(size=N).round(4)
    order = rng.permutation(N)  # file order differs from the .fam
    ids = _ids(geno)
    sep = "\t" if layout == "tabs" else " "
    lines = [] if layout == "headerless" else [sep.join(["#FID" if layout.startswith("#") else "FID", "IID", "ht", "w"])]
    lines += [sep.join([ids[i][0], ids[i][1], str(y[i]), str(2 * y[i])]) for i in order]
    f = _write(tmp_path / "p.txt", lines)
    with pytest.warns(UserWarning, match="2 phenotype columns; using the first"):
        s = read_pheno(f, geno)  # named columns read without a warning below
    np.testing.assert_array_equal(s.to_numpy(), y)
    assert s.index.equals(geno.samples.index)
    assert s.name == ("PHENO1" if layout == "headerless" else "ht")
    w = read_pheno(f, geno, column="PHENO2" if layout == "headerless" else "w")
    np.testing.assert_array_equal(w.to_numpy(), 2 * y)
    np.testing.assert_array_equal(read_pheno(f, geno, column=2).to_numpy(), 2 * y)  # 1-based like --mpheno
    assert s.attrs["binary"] is False and s.attrs["missing_ids"] == () and s.attrs["n_unmatched_rows"] == 0
    assert s.attrs["path"] == str(f)


def test_iid_only_header_matches_on_iid(tmp_path, dummy_bfile):
    g = read_plink(dummy_bfile)
    rng = np.random.default_rng(2)
    y = rng.normal(size=g.n_samples).round(3)
    order = rng.permutation(g.n_samples)
    f = _write(tmp_path / "p.txt", ["#IID\tbmi"] + [f"{g.samples.iid[i]}\t{y[i]}" for i in order])
    np.testing.assert_array_equal(read_pheno(f, g).to_numpy(), y)


def test_iid_only_header_with_ambiguous_iids_is_an_error(tmp_path, geno):
    f = _write(tmp_path / "p.txt", ["#IID y", "a 1.5", "S2 2.5"])
    with pytest.raises(InputError, match=r"p\.txt.*IID 'a'.*several"):
        read_pheno(f, geno)


def test_fid_disambiguates_repeated_iids(tmp_path, geno):
    f = _write(tmp_path / "p.txt", ["FID IID y"] + [f"{fi} {ii} {k}.5" for k, (fi, ii) in enumerate(_ids(geno))][::-1])
    s = read_pheno(f, geno)
    np.testing.assert_array_equal(s.to_numpy(), np.arange(N) + 0.5)


def test_alignment_matches_plink2(tmp_path, dummy_bfile, plink2):
    """Shuffled file, missing codes, extra rows, absent samples: same values as plink2 reads."""
    g = read_plink(dummy_bfile)
    rng = np.random.default_rng(5)
    y = rng.normal(size=g.n_samples).round(5).astype(object)
    y[rng.choice(g.n_samples, 15, replace=False)] = "-9"
    y[rng.choice(g.n_samples, 5, replace=False)] = "NA"
    keep = rng.permutation(g.n_samples)[:-12]  # 12 samples absent
    lines = ["#FID IID q"] + [f"{g.samples.fid[i]} {g.samples.iid[i]} {y[i]}" for i in keep]
    lines += ["0 stranger1 1.0", "7 per0 2.0"]  # match no sample
    f = _write(tmp_path / "p.txt", lines)
    with pytest.warns(UserWarning, match="12 of 203 genotype samples are absent"):
        s = read_pheno(f, g)
    plink2("--bfile", dummy_bfile, "--pheno", f, "--make-just-psam", "--out", tmp_path / "ref")
    ref = pd.read_csv(tmp_path / "ref.psam", sep="\t", na_values=["NA"]).rename(columns={"#IID": "IID"})
    assert list(ref["IID"]) == list(g.samples.iid)
    np.testing.assert_allclose(s.to_numpy(), ref["q"].to_numpy(dtype=float), rtol=0, atol=0, equal_nan=True)
    absent = set(np.setdiff1d(np.arange(g.n_samples), keep))
    assert set(s.attrs["missing_ids"]) == {(g.samples.fid[i], g.samples.iid[i]) for i in absent}
    assert s.attrs["n_unmatched_rows"] == 2


def test_case_control_12_matches_plink2(tmp_path, dummy_bfile, plink2):
    g = read_plink(dummy_bfile)
    rng = np.random.default_rng(6)
    codes = rng.choice(["1", "2", "0", "-9", "NA"], size=g.n_samples, p=[0.45, 0.45, 0.04, 0.03, 0.03])
    f = _write(tmp_path / "cc.txt", ["FID IID cc"] + [f"0 {g.samples.iid[i]} {codes[i]}" for i in range(g.n_samples)])
    with pytest.warns(UserWarning, match="zeros beside 1/2"):
        s = read_pheno(f, g)
    assert s.attrs["binary"] is True and s.attrs["coding"] == "1/2"
    plink2("--bfile", dummy_bfile, "--pheno", f, "--make-just-psam", "--out", tmp_path / "ref")
    ref = pd.read_csv(tmp_path / "ref.psam", sep="\t", na_values=["NA"])["cc"].to_numpy(dtype=float)
    np.testing.assert_array_equal(s.to_numpy(), ref - 1)  # plink2 writes 1/2, we 0/1
    assert set(np.unique(s.dropna())) == {0.0, 1.0}


@pytest.mark.parametrize(
    "tokens, binary, expected, coding",
    [
        (["1", "2", "2", "-9"], None, [0, 1, 1, np.nan], "1/2"),
        (["0", "1", "1", "NA"], None, [0, 1, 1, np.nan], "0/1"),
        (["0", "1", "nan", "0"], None, [0, 1, np.nan, 0], "0/1"),
        (["1", "1", "1", "2"], None, [0, 0, 0, 1], "1/2"),
        (["0", "1", "2", "3"], None, [0, 1, 2, 3], None),  # quantitative
        (["0.5", "1", "2", ""], None, [0.5, 1, 2, np.nan], None),
        (["1", "2", "2", "1"], False, [1, 2, 2, 1], None),  # forced quantitative
        (["1", "1", "1", "-9.0"], True, [0, 0, 0, np.nan], "1/2"),
    ],
)
def test_codings(tmp_path, geno, tokens, binary, expected, coding):
    ids = _ids(geno)[:4]
    f = _write(tmp_path / "p.tsv", ["FID\tIID\ty"] + [f"{a}\t{b}\t{t}" for (a, b), t in zip(ids, tokens)])
    s = _quiet(read_pheno, f, geno, binary=binary)
    np.testing.assert_array_equal(s.to_numpy()[:4], np.asarray(expected, float))
    assert s.attrs["binary"] is (coding is not None)
    assert s.attrs["coding"] == coding
    assert s.isna()[4:].all() and len(s.attrs["missing_ids"]) == N - 4


def test_forced_binary_with_other_values_is_an_error(tmp_path, geno):
    ids = _ids(geno)
    f = _write(tmp_path / "p.txt", ["FID IID y"] + [f"{a} {b} {k % 4}" for k, (a, b) in enumerate(ids)])
    with pytest.raises(InputError, match=r"p\.txt.*case/control.*\[3\.0\]"):
        read_pheno(f, geno, binary=True)


# ---------------------------------------------------------------------------------- covariates


def test_covariates_numeric_and_one_hot(tmp_path, geno):
    rng = np.random.default_rng(9)
    ids = _ids(geno)
    age = rng.integers(20, 80, N)
    site = rng.choice(["north", "south", "west"], N)
    batch = rng.choice(["1", "2", "10"], N)
    site[3] = "NA"
    order = rng.permutation(N)[:-2]  # two samples absent
    lines = ["#FID\tIID\tage\tsite\tbatch"] + [f"{ids[i][0]}\t{ids[i][1]}\t{age[i]}\t{site[i]}\t{batch[i]}" for i in order]
    f = _write(tmp_path / "c.tsv", lines)
    with pytest.warns(UserWarning, match="2 of 30"):
        c = read_covar(f, geno, categorical=["batch"])
    absent = np.setdiff1d(np.arange(N), order)
    present = np.setdiff1d(order, [3])
    # the reference (no column) is the most common level among the matched samples, ties to
    # the first in natural order (plink2 --glm's choice: test_covariate_reference_level_is_plink2s)
    def levels(col, natural, rows):
        vals, cnt = np.unique(col[rows], return_counts=True)
        ref = max(natural, key=lambda lev: (dict(zip(vals, cnt)).get(lev, 0), -natural.index(lev)))
        return [ref] + [lev for lev in natural if lev != ref]
    site_lv = levels(site, ["north", "south", "west"], present)
    batch_lv = levels(batch, ["1", "2", "10"], order)
    assert list(c.columns) == ["age"] + [f"site={v}" for v in site_lv[1:]] + [f"batch={v}" for v in batch_lv[1:]]
    assert (c.dtypes == np.float64).all()
    np.testing.assert_array_equal(c["age"].to_numpy()[present], age[present])
    s1, b1 = site_lv[1], batch_lv[1]
    np.testing.assert_array_equal(c[f"site={s1}"].to_numpy()[present], (site[present] == s1).astype(float))
    np.testing.assert_array_equal(c[f"batch={b1}"].to_numpy()[present], (batch[present] == b1).astype(float))
    site_cols = [f"site={v}" for v in site_lv[1:]]
    assert c.loc[3, site_cols].isna().all() and c.loc[3, "age"] == age[3]
    assert c.loc[absent].isna().all().all()
    assert c.attrs["categorical"] == {"site": site_lv, "batch": batch_lv}
    # reference level rows are all-zero; each present row has at most one indicator
    ind = c[site_cols].to_numpy()[present]
    assert set(ind.sum(axis=1)) <= {0.0, 1.0}
    # batch read as a number unless declared categorical; columns selects and orders
    c2 = _quiet(read_covar, f, geno, columns=["batch", "age"])
    assert list(c2.columns) == ["batch", "age"]
    np.testing.assert_array_equal(c2["batch"].to_numpy()[present], batch[present].astype(float))


def test_headerless_covariates_are_named_covar(tmp_path, geno):
    ids = _ids(geno)
    f = _write(tmp_path / "c.txt", [f"{a} {b} {k} {-k} -9" for k, (a, b) in enumerate(ids)])
    c = read_covar(f, geno)
    assert list(c.columns) == ["COVAR1", "COVAR2", "COVAR3"]
    expected = -np.arange(N, dtype=float)
    expected[9] = np.nan  # -9 is the missing code in covariates too
    np.testing.assert_array_equal(c["COVAR2"], expected)
    assert c["COVAR3"].isna().all()


def test_attrs_survive_arithmetic_cheaply(tmp_path, geno):
    f = _write(tmp_path / "p.txt", ["FID IID y", f"{_ids(geno)[2][0]} {_ids(geno)[2][1]} 1.5"])
    s = _quiet(read_pheno, f, geno)
    t = s * 2
    assert t.attrs["missing_ids"] is s.attrs["missing_ids"]  # immutable: not copied per operation
    assert copy.deepcopy(s).attrs["missing_ids"] == s.attrs["missing_ids"]
    assert len(s.attrs["missing_ids"]) == N - 1


# ---------------------------------------------------------------------------------- as_phenotype


def test_as_phenotype(tmp_path, geno):
    ids = _ids(geno)
    y = np.arange(N, dtype=float)
    f = _write(tmp_path / "p.txt", ["FID IID y"] + [f"{a} {b} {v}" for (a, b), v in zip(ids, y)])
    s = read_pheno(f, geno)
    assert as_phenotype(s, geno) is not None and as_phenotype(s, geno).attrs == s.attrs
    np.testing.assert_array_equal(as_phenotype(f, geno).to_numpy(), y)
    np.testing.assert_array_equal(as_phenotype(y, geno).to_numpy(), y)
    np.testing.assert_array_equal(as_phenotype(pd.Series(y).iloc[::-1], geno).to_numpy(), y)
    mi = pd.Series(y[::-1], index=pd.MultiIndex.from_tuples(ids[::-1]))
    np.testing.assert_array_equal(as_phenotype(mi, geno).to_numpy(), y)
    cc = as_phenotype(np.where(y % 2 == 0, 1.0, 2.0), geno)
    assert cc.attrs["binary"] and set(cc.unique()) == {0.0, 1.0}
    with pytest.raises(InputError, match="30 values"):
        as_phenotype(y[:-1], geno)
    with pytest.raises(InputError, match="indexed like"):
        as_phenotype(pd.Series(y, index=np.arange(N) + 100), geno)


# ---------------------------------------------------------------------------------- bad input


def test_no_matching_sample_names_the_file(tmp_path, geno):
    f = _write(tmp_path / "nomatch.txt", ["FID IID y", "X1 Y1 1.0", "X2 Y2 2.0"])
    with pytest.raises(InputError, match=r"nomatch\.txt.*no row matches"):
        read_pheno(f, geno)
    with pytest.raises(InputError, match=r"nomatch\.txt.*no row matches"):
        read_covar(f, geno)


def test_duplicate_ids_name_the_line(tmp_path, geno):
    a, b = _ids(geno)[3]
    f = _write(tmp_path / "dup.txt", ["FID IID y", f"{a} {b} 1", "F5 S25 2", "", f"{a} {b} 3"])
    with pytest.raises(InputError, match=r"dup\.txt, line 5: duplicate.*first on line 2"):
        read_pheno(f, geno)


def test_unknown_column_lists_available(tmp_path, geno):
    f = _write(tmp_path / "cols.txt", ["FID IID height weight", "F0 a 1 2"])
    with pytest.raises(InputError, match=r"cols\.txt.*'bmi'.*available columns: height, weight"):
        read_pheno(f, geno, column="bmi")
    with pytest.raises(InputError, match=r"cols\.txt.*'bmi'.*height, weight"):
        read_covar(f, geno, columns=["height", "bmi"])
    with pytest.raises(InputError, match=r"cols\.txt.*'bmi'"):
        read_covar(f, geno, categorical="bmi")
    with pytest.raises(InputError, match=r"cols\.txt.*out of range 1\.\.2"):
        read_pheno(f, geno, column=3)


def test_non_numeric_phenotype_names_line_and_value(tmp_path, geno):
    f = _write(tmp_path / "txt.txt", ["FID IID y", "F0 a 1.5", "F0 b tall", "F0 S2 2"])
    with pytest.raises(InputError, match=r"txt\.txt, line 3: .*'tall'"):
        read_pheno(f, geno)


@pytest.mark.parametrize(
    "lines, message",
    [
        (["FID IID y", "F0 a 1 2"], r"line 2: expected 3 fields.*found 4"),
        ([], r"no rows"),
        (["FID IID y"], r"no data rows"),
        (["FID IID", "F0 a"], r"no value columns"),
        (["#ID y", "F0 1"], r"header must start"),
        (["FID IID y y", "F0 a 1 2"], r"'y' appears twice"),
        (["FID IID y", "F0 a inf"], r"line 2: .*'inf'"),
    ],
)
def test_malformed_files(tmp_path, geno, lines, message):
    f = tmp_path / "bad.txt"
    f.write_text("\n".join(lines) + ("\n" if lines else ""))
    with pytest.raises(InputError, match=r"bad\.txt.*" + message):
        read_pheno(f, geno)


def test_missing_file(tmp_path, geno):
    with pytest.raises(InputError, match=r"nope\.txt: file not found"):
        read_pheno(tmp_path / "nope.txt", geno)


def test_code_binary_kernel():
    v = np.array([1, 2, np.nan, 2.0])
    out, is_bin, coding = code_binary(v)
    np.testing.assert_array_equal(out, [0, 1, np.nan, 1])
    assert is_bin and coding == "1/2"
    out, is_bin, _ = code_binary(np.array([5.0, 5.0]))
    assert not is_bin


def test_fast_and_line_by_line_parsers_agree(tmp_path, geno):
    """Blank lines, ## comments, CRLF and spaces around tabs take the line-by-line path;
    the values must be the same as from the plain file (pandas' parser)."""
    rng = np.random.default_rng(11)
    ids = _ids(geno)
    vals = rng.normal(size=(N, 2)) * 10.0 ** rng.integers(-3, 4, (N, 2))
    tok = np.array([[repr(float(v)) for v in row] for row in vals], dtype=object)
    tok[4, 0], tok[7, 1], tok[9, 0] = "NA", "", "-9.0"
    site = rng.choice(["u", "v"], N)
    rows = [[a, b, t0, t1, s] for (a, b), (t0, t1), s in zip(ids, tok, site)]
    plain = _write(tmp_path / "plain.tsv", ["FID\tIID\tx\ty\tsite"] + ["\t".join(r) for r in rows])
    odd_lines = ["## a comment", "FID \tIID\tx\t y\tsite"]
    for k, r in enumerate(rows):
        odd_lines.append(" \t ".join(r))
        if k % 7 == 0:
            odd_lines += ["", "## another"]
    odd = tmp_path / "odd.tsv"
    odd.write_bytes(("\r\n".join(odd_lines) + "\r\n").encode())
    a, b = read_covar(plain, geno), read_covar(odd, geno)
    pd.testing.assert_frame_equal(a, b)
    expected = vals[:, 0].copy()
    expected[[4, 9]] = np.nan
    np.testing.assert_array_equal(a["x"].to_numpy(), expected)  # exact doubles, as float(token)
    minor = "u" if (site == "v").sum() >= (site == "u").sum() else "v"  # the column is the less common level
    assert np.isnan(a.loc[7, "y"]) and list(a.columns) == ["x", "y", f"site={minor}"]
    pd.testing.assert_series_equal(read_pheno(plain, geno, "y"), read_pheno(odd, geno, "y"))


def test_text_columns_sid_and_bool_like_values(tmp_path, geno):
    """A SID column after IID is not a value; in a text column, -9.0 is still missing and
    True/False are categories (never silently 1/0)."""
    ids = _ids(geno)[:4]
    f = _write(tmp_path / "c.txt", ["#FID IID SID smoker grp"]
               + [f"{a} {b} s{k} {sm} {g}" for k, ((a, b), sm, g) in
                  enumerate(zip(ids, ["True", "False", "NA", "True"], ["-9.0", "b", "a", "b"]))])
    c = _quiet(read_covar, f, geno)
    assert list(c.columns) == ["smoker=False", "grp=a"]  # True and b are the most common: the references
    np.testing.assert_array_equal(c["smoker=False"].to_numpy()[:4], [0, 1, np.nan, 0])
    np.testing.assert_array_equal(c["grp=a"].to_numpy()[:4], [np.nan, 0, 1, 0])
    assert c.attrs["categorical"] == {"smoker": ["True", "False"], "grp": ["b", "a"]}


def test_covariate_reference_level_is_plink2s(tmp_path, dummy_bfile, plink2):
    """plink2 --glm drops a categorical covariate's most common level (here b, not the first
    level a): read_covar's indicator columns are the covariate rows plink2 reports."""
    g = read_plink(dummy_bfile)
    rng = np.random.default_rng(4)
    lv = rng.choice(["a", "b", "c"], size=g.n_samples, p=[0.2, 0.5, 0.3])
    ids = _ids(g)
    cov = _write(tmp_path / "cov.txt", ["#FID IID batch"] + [f"{a} {b} {v}" for (a, b), v in zip(ids, lv)])
    ph = _write(tmp_path / "y.txt", ["#FID IID y"] + [f"{a} {b} {rng.normal():.6f}" for a, b in ids])
    plink2("--bfile", dummy_bfile, "--pheno", ph, "--covar", cov, "--glm", "--out", tmp_path / "o")
    tests = pd.read_csv(tmp_path / "o.y.glm.linear", sep="\t")["TEST"]
    assert sorted(set(tests) - {"ADD"}) == list(read_covar(cov, g).columns) == ["batch=a", "batch=c"]


# ---------------------------------------------------------------------------------- plink2 rules


def test_parse_values_is_the_missing_rule_of_files_and_fam(tmp_path, geno):
    """One rule: a token is missing in a phenotype file exactly when it is in a .fam."""
    from gwaslift.io.pheno import parse_values
    from gwaslift.io.plink import read_fam

    tokens = ["-9.0", "-9", "-9e0", "NA", "na", "NaN", "nan", "1.5", "-90", "2", "inf", "-9.5"]
    values, text = parse_values(np.array(tokens + ["case", None], dtype=object))
    np.testing.assert_array_equal(values, [np.nan] * 7 + [1.5, -90, 2, np.inf, -9.5, np.nan, np.nan])
    assert text.tolist() == [False] * 12 + [True, False]
    ids = _ids(geno)[:len(tokens)]
    fam = _write(tmp_path / "t.fam", [f"{a} {b} 0 0 1 {t}" for (a, b), t in zip(ids, tokens)])
    np.testing.assert_array_equal(read_fam(fam).trait.to_numpy(), values[:len(tokens)])
    ph = _write(tmp_path / "t.txt", ["FID IID y"] + [f"{a} {b} {t}" for (a, b), t in zip(ids, tokens) if t != "inf"])
    s = _quiet(read_pheno, ph, geno, binary=False)
    np.testing.assert_array_equal(s.to_numpy()[:len(tokens)], np.where(np.isinf(values), np.nan, values)[:len(tokens)])


def _psam(path, ids, sex_first=False):
    """A plink2 .psam (FID IID PAT MAT SEX T2D) used as a phenotype/covariate file."""
    rows = [f"{a}\t{b}\t0\t0\t{1 + k % 2}\t{1 + (k // 2) % 2}" for k, (a, b) in enumerate(ids)]
    return _write(path, ["#FID\tIID\tPAT\tMAT\tSEX\tT2D"] + rows)


def test_psam_columns_pat_mat_are_never_phenotypes(tmp_path, dummy_bfile, plink2):
    g = read_plink(dummy_bfile)
    f = _psam(tmp_path / "s.psam", _ids(g))
    with pytest.warns(UserWarning, match=r"s\.psam: column\(s\) PAT, MAT are sample ID / parent fields"):
        y = read_pheno(f, g)
    # plink2 loads only T2D when it is named, and refuses the file otherwise
    plink2("--bfile", dummy_bfile, "--pheno", f, "--pheno-name", "T2D", "--make-just-psam", "--out", tmp_path / "ref")
    ref = pd.read_csv(tmp_path / "ref.psam", sep="\t", na_values=["NA"])["T2D"].to_numpy(dtype=float)
    assert y.name == "T2D" and y.attrs["coding"] == "1/2"
    np.testing.assert_array_equal(y.to_numpy(), ref - 1)
    with pytest.raises(RuntimeError, match="'PAT' cannot be used as a phenotype/covariate name"):
        plink2("--bfile", dummy_bfile, "--pheno", f, "--pheno-name", "PAT", "--make-just-psam", "--out", tmp_path / "x")
    for column in ("PAT", 2):  # by name, or by number (MAT is value column 2)
        with pytest.raises(InputError, match=r"s\.psam: '(PAT|MAT)' cannot be used as a phenotype/covariate name"):
            read_pheno(f, g, column=column)
    np.testing.assert_array_equal(read_pheno(f, g, column="SEX", binary=False).to_numpy(), g.samples.index % 2 + 1)


def test_psam_as_covariates_skips_pat_mat_keeps_sex(tmp_path, geno):
    f = _psam(tmp_path / "c.psam", _ids(geno))
    with pytest.warns(UserWarning, match=r"PAT, MAT are sample ID / parent fields"):
        c = read_covar(f, geno)
    assert list(c.columns) == ["SEX", "T2D"]  # SEX is a covariate to plink2 as well
    with pytest.raises(InputError, match=r"'MAT' cannot be used as a phenotype/covariate name"):
        read_covar(f, geno, columns=["T2D", "MAT"])
    with pytest.raises(InputError, match=r"'PAT' cannot be used"):
        read_covar(f, geno, columns=["T2D"], categorical="PAT")
    only = _write(tmp_path / "o.txt", ["FID IID PAT"] + [f"{a} {b} 0" for a, b in _ids(geno)])
    with pytest.raises(InputError, match=r"o\.txt: no phenotype column: PAT cannot be used"):
        read_pheno(only, geno)


def test_01_case_control_warns_what_plink2_reads(tmp_path, dummy_bfile, plink2):
    g = read_plink(dummy_bfile)
    codes = np.random.default_rng(4).integers(0, 2, g.n_samples)
    f = _write(tmp_path / "b.txt", ["FID IID t2d"] + [f"{a} {b} {c}" for (a, b), c in zip(_ids(g), codes)])
    n_case, n_ctrl = int(codes.sum()), int((codes == 0).sum())
    with pytest.warns(UserWarning, match=rf"b\.txt: case/control values 0/1 read as 0 = control, 1 = case "
                                         rf"\({n_case} cases, {n_ctrl} controls\); plink2 reads this file as "
                                         r"1 = control, 0 = missing unless run with --1"):
        y = read_pheno(f, g)
    np.testing.assert_array_equal(y.to_numpy(), codes)  # gwaslift's rule is kept
    # ... and the warning says what plink2 does with the file
    plink2("--bfile", dummy_bfile, "--pheno", f, "--make-just-psam", "--out", tmp_path / "ref")
    ref = pd.read_csv(tmp_path / "ref.psam", sep="\t", na_values=["NA"])["t2d"].to_numpy(dtype=float)
    np.testing.assert_array_equal(ref, np.where(codes == 0, np.nan, 1.0))
    # in-memory 0/1 (the Python convention) is taken without a warning; a 0/1 .fam trait warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert as_phenotype(codes, g).attrs["coding"] == "0/1"
        assert as_phenotype(y, g) is not None  # a read phenotype passes through, no second warning
    fam = g.samples.assign(trait=codes.astype(float))
    write_plink(tmp_path / "f", g.read_dosage(0, g.n_variants), fam, g.variants)
    with pytest.warns(UserWarning, match=r"f\.fam column 6: case/control values 0/1"):
        as_phenotype(None, read_plink(tmp_path / "f"))


def test_parsed_files_are_reused_until_they_change(tmp_path, monkeypatch):
    """A file read again (gwas reads one phenotype per column) is parsed once; a rewritten
    file is parsed afresh; the cached arrays cannot be edited by a caller."""
    import os

    from gwaslift.io import pheno as pheno_module

    calls = []
    parse_file = pheno_module._parse_file
    monkeypatch.setattr(pheno_module, "_parse_file", lambda *a: calls.append(a) or parse_file(*a))
    f = tmp_path / "p.tsv"
    f.write_text("#FID\tIID\ta\tb\n0\ts1\t1.5\t2\n0\ts2\t2.5\t3\n0\ts3\t0.5\tNA\n")
    samples = pd.DataFrame({"fid": ["0", "0", "0"], "iid": ["s1", "s2", "s3"]})
    a = read_pheno(f, samples, column="a")
    b = read_pheno(f, samples, column="b")
    assert len(calls) == 1 and list(a) == [1.5, 2.5, 0.5] and np.isnan(b.iloc[2])
    table = pheno_module._parse(f, "PHENO")
    with pytest.raises(ValueError, match="read-only"):
        table.data[0][0] = 99.0
    a[:] = 7.0  # a result is the caller's own array
    assert list(read_pheno(f, samples, column="a")) == [1.5, 2.5, 0.5]
    st = f.stat()
    f.write_text("#FID\tIID\ta\tb\n0\ts1\t9.5\t2\n0\ts2\t2.5\t3\n0\ts3\t0.5\tNA\n")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert list(read_pheno(f, samples, column="a")) == [9.5, 2.5, 0.5] and len(calls) == 2
    other = tmp_path / "." / "p.tsv"  # another spelling of the path: the same table, its own name
    with pytest.raises(InputError, match=r"p\.tsv.*no phenotype column 'c'"):
        read_pheno(other, samples, column="c")
    assert len(calls) == 2


def test_distinct_if_few_equals_unique_when_few():
    """The O(n) distinct-value probe behind code_binary and the model choice: np.unique
    when at most `few` values occur, else `few + 1` sorted distinct values of the input."""
    from gwaslift._util import distinct_if_few

    rng = np.random.default_rng(5)
    for k in range(1, 7):
        for few in (2, 3):
            v = rng.choice(rng.normal(size=k), size=1000)
            got = distinct_if_few(v, few)
            u = np.unique(v)
            if len(u) <= few:
                np.testing.assert_array_equal(got, u)
            else:
                assert len(got) == few + 1 and np.all(np.diff(got) > 0) and np.isin(got, u).all()
    assert len(distinct_if_few(np.array([]), 2)) == 0
    np.testing.assert_array_equal(distinct_if_few(np.array([-0.0, 0.0, 1.0]), 2), [0.0, 1.0])


# ------------------------------------------------------------ the numba table reader


def _kernel_parse(tokens):
    """(values, status) of the text kernel's number parser on each token."""
    from gwaslift.io import _text_kernels as tk

    raw = [t.encode() for t in tokens]
    ends = np.cumsum([len(r) for r in raw]).astype(np.int64)
    starts = ends - np.array([len(r) for r in raw], dtype=np.int64)
    buf = np.frombuffer(b"".join(raw) or b"\0", np.uint8)
    values, status = np.empty(len(tokens)), np.empty(len(tokens), np.uint8)
    tk.parse_tokens(buf, starts, ends, tk.POW10_HI, tk.POW10_LO, values, status)
    return values, status


def _hard_number_tokens(rng, n):
    """Decimal tokens a double parser gets wrong when it is not correctly rounded: random
    doubles over the whole exponent range in shortest, 15-, 17-, 20- and 25-digit forms, exact
    decimal midpoints between neighbouring doubles, powers of ten just past the exact ones,
    integers near 2^53, subnormals, overflow."""
    from decimal import Decimal, getcontext

    x = rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)
    raw = rng.integers(0, 2**63, n, dtype=np.uint64).view(np.float64)
    raw = raw[np.isfinite(raw)]
    tokens = [repr(float(v)) for v in np.concatenate([x, raw])]
    for fmt in ("%.15g", "%.6g", "%.17g", "%.20e", "%.25g", "%.3f", "%.19e", "%.30e"):
        tokens += [fmt % v for v in x[: n // 4]] + [fmt % v for v in raw[: n // 8]]
    tokens += [str(int(v)) for v in rng.integers(0, 2**63, n // 4)]
    getcontext().prec = 1200
    for v in x[:500]:
        mid = (Decimal(float(v)) + Decimal(float(np.nextafter(v, np.inf)))) / 2
        tokens.append(format(mid, "e"))
    tokens += [f"{m}e{e}" for m in (1, 7, 123456, 9007199254740993) for e in range(18, 30)]
    tokens += ["9007199254740993", "9007199254740995", "2.2250738585072011e-308", "4.9e-324", "2.4703282292062328e-324",
               "1.7976931348623157e308", "1.7976931348623159e308", "1e400", "-1e-400", "1e99999999999", "-0", "+0.0e5",
               "000123.4500", "5.", ".5", "+.5e-3", "123456789012345678901234567890", "1.00000000000000000000000001"]
    return tokens


def test_number_kernel_is_pythons_float_bit_for_bit():
    """Every token the kernel converts is float(token) to the bit (sign of zero included);
    the rest are marked for Python, and only where the fast roundings cannot decide."""
    import struct

    from gwaslift.io import _text_kernels as tk

    tokens = _hard_number_tokens(np.random.default_rng(17), 40_000)
    values, status = _kernel_parse(tokens)
    done = np.flatnonzero(status == tk.NUMBER)
    got = np.array([struct.pack("<d", values[k]) for k in done])
    want = np.array([struct.pack("<d", float(tokens[k])) for k in done])
    wrong = np.flatnonzero(got != want)
    assert not len(wrong), [(tokens[done[k]], values[done[k]], float(tokens[done[k]])) for k in wrong[:5]]
    for k in np.flatnonzero(status == tk.FALLBACK):
        float(tokens[k])  # valid syntax: Python reads it
    assert (status == tk.FALLBACK).mean() < 0.02 and not (status == tk.OTHER).any()  # Python only for a few
    # the plain shortest forms of random doubles never need Python (Eisel-Lemire decides them)
    plain = [repr(float(v)) for v in np.random.default_rng(1).normal(size=20_000)]
    assert (_kernel_parse(plain)[1] == tk.NUMBER).all()
    # out-of-range and undecidable ones do: a subnormal, an overflow, 2^53 + 1 (exactly halfway
    # between two doubles: ties-to-even needs the exact product)
    values, st = _kernel_parse(["4.9e-324", "1e400", "9007199254740993", "9007199254740992"])
    assert list(st) == [tk.FALLBACK] * 3 + [tk.NUMBER] and values[3] == 2.0**53


@pytest.mark.parametrize("token, status", [
    ("", 1), ("NA", 1), ("na", 1), ("nAn", 1), ("NaN", 1), ("-9", 0), ("inf", 3), ("-Infinity", 3), ("1_000", 3),
    ("1e", 3), ("e5", 3), (".", 3), ("-", 3), ("1.2.3", 3), ("0x10", 3), ("1d5", 3), ("case", 3), ("1e+", 3),
])
def test_number_kernel_sorts_what_it_does_not_read(token, status):
    """Missing spellings are missing; whatever is not plain decimal syntax is left to
    Python's rules (inf, 1_000 and text are decided by the caller)."""
    assert int(_kernel_parse([token])[1][0]) == status


def _parse_three_ways(path, monkeypatch):
    """_parse_file of ``path`` by the numba reader, by pandas' reader and line by line."""
    from pathlib import Path

    from gwaslift.io import pheno

    out = {"numba": pheno._parse_file(Path(path), "P")}
    with monkeypatch.context() as m:
        m.setattr(pheno, "_text_kernels", lambda: None)
        out["pandas"] = pheno._parse_file(Path(path), "P")
        m.setattr(pheno, "_read_fast", lambda *a: None)
        out["lines"] = pheno._parse_file(Path(path), "P")
    return out


def _assert_tables_equal(a, b):
    assert a.columns == b.columns
    np.testing.assert_array_equal(a.lines, b.lines)
    for x, y in [(a.fid, b.fid), (a.iid, b.iid), *zip(a.data, b.data)]:
        if x is None:
            assert y is None
            continue
        assert x.dtype == y.dtype and x.shape == y.shape
        if x.dtype == object:
            assert list(x) == list(y) and all(type(u) is type(v) for u, v in zip(x, y))
        else:  # bit for bit (NaN where NaN, the sign of zero)
            np.testing.assert_array_equal(x.view(np.uint64), y.view(np.uint64))


@pytest.mark.parametrize("sep", ["\t", " ", "  \t "])
def test_numba_reader_equals_the_line_by_line_reader(tmp_path, monkeypatch, sep):
    """The numba reader gives the line-by-line reader's table: IDs (non-ASCII and longer than
    the padded copy), hard numbers, missing spellings, -9, inf, 1_000, a text column and
    a column of numbers with one word (read as tokens)."""
    rng = np.random.default_rng(23)
    n = 400
    hard = _hard_number_tokens(rng, 200)
    rows = []
    for i in range(n):
        fid = "fam_é" if i % 3 == 0 else f"F{i}"
        iid = ("x" * 70 + str(i)) if i % 5 == 0 else f"I{i}"
        v = [hard[rng.integers(len(hard))] for _ in range(3)]
        v[1] = ["NA", "na", "NaN", "-9", "-9.0", "inf", "1_000", "-0"][(i // 4) % 8] if i % 4 == 0 else v[1]
        if sep == "\t" and i % 11 == 0:
            v[2] = ""  # an empty tab field is a missing value
        word = ["case", "control", "NA"][i % 3]
        mixed = "unknown" if i == 7 else repr(float(rng.normal()))
        rows.append(sep.join([fid, iid, *v, word, mixed]))
    path = tmp_path / "t.txt"
    path.write_text(sep.join(["FID", "IID", "a", "b", "c", "status", "mixed"]) + "\n" + "\n".join(rows) + "\n",
                    encoding="utf-8")
    t = _parse_three_ways(path, monkeypatch)
    _assert_tables_equal(t["numba"], t["lines"])
    assert [d.dtype for d in t["numba"].data] == [np.float64] * 3 + [object, object]
    assert np.isinf(t["numba"].data[1]).any() and (t["numba"].data[1] == 1000).any()
    # pandas' reader (where numba cannot load) agrees except where its rounding is an ulp off
    assert [d.dtype for d in t["pandas"].data] == [d.dtype for d in t["lines"].data]


@pytest.mark.parametrize("body, why", [
    ("F1 I1 1.5\nF2 I2\xa0x 2.5\n", "a no-break space: Python's split() separates on it"),
    ("F1 I1 1.5\nF2 I2\x0bx 2.5\n", "a vertical tab: Python's split() separates on it"),
    ("F1 I1 1.5\nF2 I2 2.5 7\n", "a row with an extra field"),
    ("F1\tI1\t1.5\nF2\tI2 \t2.5\n", "a space in a tab-separated file"),
    ("F1 I1 1.5\n## x 7\nF2 I2 2.5\n", "a ## comment line with as many fields as a row"),
    ("F1\tI1\t1.5\n\t\t\nF2\tI2\t2.5\n", "a line of tabs only (blank: skipped line by line)"),
    ("F1 I1 1.5\n\nF2 I2 2.5\n", "a blank line"),
])
def test_numba_reader_leaves_irregular_files_to_the_line_by_line_reader(tmp_path, monkeypatch, body, why):
    """Where splitting line by line could differ, the numba reader declines and the exact
    path reads (or names the bad line) instead."""
    from gwaslift.io import pheno

    tk = pheno._text_kernels()
    text = ("FID\tIID\tx\n" if "\t" in body else "FID IID x\n") + body
    width, use_tabs = 3, "\t" in body
    raw = text.encode()
    start, stop = raw.index(b"\n") + 1, len(raw.rstrip(b"\n"))
    n = raw.count(b"\n", start, stop) + 1
    assert pheno._read_numba(tk, raw, start, stop, raw.isascii(), n, width, 2, use_tabs) is None, why
    path = tmp_path / "f.txt"
    path.write_text(text, encoding="utf-8")
    try:
        lines_table = None
        with monkeypatch.context() as m:
            m.setattr(pheno, "_text_kernels", lambda: None)
            m.setattr(pheno, "_read_fast", lambda *a: None)
            lines_table = pheno._parse_file(path, "P")
    except InputError as e:
        with pytest.raises(InputError, match="expected 3 fields"):
            pheno._parse_file(path, "P")
        assert "line 3" in str(e) or ":3" in str(e)
        return
    _assert_tables_equal(pheno._parse_file(path, "P"), lines_table)


def test_read_pheno_columns_equals_read_pheno_of_each(tmp_path, geno):
    """One alignment for several columns gives read_pheno's Series, values and attrs alike
    (a case/control column, a quantitative one, absent samples), and a bad column fails the
    whole call with read_pheno's message."""
    from gwaslift.io.pheno import read_pheno_columns

    ids = _ids(geno)[2:]  # two samples absent
    rng = np.random.default_rng(4)
    lines = ["FID IID cc q bad"] + [f"{a} {b} {1 + k % 2} {rng.normal()!r} {'x' if k == 3 else 1.0}"
                                    for k, (a, b) in enumerate(ids)]
    f = _write(tmp_path / "p.txt", lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = read_pheno_columns(f, geno, ["q", "cc", 1])
        want = [read_pheno(f, geno, c) for c in ["q", "cc", 1]]
    for a, b in zip(got, want):
        pd.testing.assert_series_equal(a, b)
        assert a.attrs == b.attrs
    assert got[1].attrs["binary"] and len(got[0].attrs["missing_ids"]) == 2
    with pytest.raises(InputError, match="phenotype 'bad' must be a finite number") as e1:
        read_pheno_columns(f, geno, ["q", "bad"])
    with pytest.raises(InputError) as e2:
        read_pheno(f, geno, "bad")
    assert str(e1.value) == str(e2.value)


def test_a_file_that_is_not_utf8_text_is_refused(tmp_path, geno):
    """Bytes that are not UTF-8 anywhere in the file (here on the last row) name the file;
    a UTF-8 file with non-ASCII IDs and CRLF line ends reads as the same file with LF."""
    a, b = _ids(geno)[0]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"FID IID y\n" + f"{a} {b} 1.5\n".encode() + b"F9 caf\xe9 2.5\n")
    with pytest.raises(InputError, match="not a text file") as e:
        read_pheno(bad, geno)
    assert "bad.txt" in str(e.value)
    lines = ["FID IID y"] + [f"{f} {i} {k}.5" for k, (f, i) in enumerate(_ids(geno))] + ["F9 café 7"]
    lf = _write(tmp_path / "lf.txt", lines)
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.testing.assert_series_equal(read_pheno(lf, geno), read_pheno(crlf, geno))
        assert read_pheno(lf, geno).attrs["n_unmatched_rows"] == 1


def test_a_leading_byte_order_mark_is_not_part_of_the_header(tmp_path, geno):
    """A UTF-8 byte-order mark (spreadsheet exports) before '#FID' reads as the same file
    without it; left in, it would turn the header into a row of data."""
    lines = ["#FID\tIID\ty"] + [f"{f}\t{i}\t{k}.25" for k, (f, i) in enumerate(_ids(geno))]
    plain = _write(tmp_path / "plain.txt", lines)
    marked = tmp_path / "marked.txt"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    got = read_pheno(marked, geno)
    pd.testing.assert_series_equal(got, read_pheno(plain, geno))
    assert got.name == "y" and got.notna().all()
