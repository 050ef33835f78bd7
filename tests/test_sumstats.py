"""gwaslift.io.sumstats: plink2 .glm and GWAS-SSF writers, and the reader, round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gwaslift import InputError
from gwaslift.assoc import linear_gwas
from gwaslift.io.sumstats import read_sumstats, write_glm, write_gwas_ssf


def _table(model):
    rng = np.random.default_rng(0)
    n, m = 300, 6
    G = rng.binomial(2, 0.3, size=(n, m)).astype(float)
    G[:, 2] = np.nan  # an all-missing variant: NA row
    y = G[:, 0] * 3 + rng.normal(size=n) if model == "linear" else (rng.random(n) < 0.4).astype(float)
    res = linear_gwas(G, y, rng.normal(size=(n, 2)))
    res["chrom"] = ["1", "2", "X", "MT", "22", "1"]
    res["pos"] = [10, 20, 30, 40, 50, 60]
    res["snp"] = ["rs1", "rs22", "chrX:30", "rs4", "v5", "rs6"]
    res["a1"], res["a2"] = "A", "G"
    return res


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_glm_round_trip(tmp_path, model):
    res = _table(model)
    if model == "linear":  # a p-value below the double range must survive as text
        res.loc[0, ["p", "log10_p"]] = [0.0, 420.25]
    path = write_glm(res, tmp_path / f"out.glm.{model}")
    header = path.read_text().splitlines()[0].split("\t")
    stat, se = ("T_STAT", "SE") if model == "linear" else ("Z_STAT", "LOG(OR)_SE")
    firth = ["FIRTH?"] if model == "logistic" else []  # plink2's firth-fallback column
    assert header[:9 + len(firth)] == ["#CHROM", "POS", "ID", "REF", "ALT", "A1", "A1_FREQ", *firth,
                                       "TEST", "OBS_CT"]
    assert stat in header and se in header and header[-2:] == ["P", "ERRCODE"]
    if model == "logistic":
        assert "OR" in header
        res.loc[4, "firth"] = True  # a Firth fit: FIRTH? = Y, read back
    back = read_sumstats(path) if model == "linear" else read_sumstats(write_glm(res, path))
    assert list(back["firth"]) == list(res["firth"])
    assert back.attrs["model"] == model
    assert (back["a1"] == res["a1"]).all() and (back["a2"] == res["a2"]).all()
    assert list(back["errcode"]) == list(res["errcode"])
    for col in ("a1_freq", "beta", "se", "stat", "log10_p"):
        np.testing.assert_allclose(back[col], res[col], rtol=1e-7, equal_nan=True)
    np.testing.assert_array_equal(back["n"], res["n"])
    if model == "linear":
        assert back.loc[0, "log10_p"] == pytest.approx(420.25, rel=1e-6)
        assert "e-421" in path.read_text().splitlines()[1]


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_gwas_ssf_round_trip(tmp_path, model):
    res = _table(model)
    path = write_gwas_ssf(res, tmp_path / "out.tsv")
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    effect = "beta" if model == "linear" else "odds_ratio"
    assert list(raw.columns) == ["chromosome", "base_pair_location", "effect_allele", "other_allele",
                                 effect, "standard_error", "effect_allele_frequency", "p_value",
                                 "variant_id", "rsid", "n"]
    assert list(raw["chromosome"]) == ["1", "2", "23", "25", "22", "1"]
    assert list(raw["rsid"]) == ["rs1", "rs22", "#NA", "rs4", "#NA", "rs6"]
    assert raw.loc[2, "p_value"] == "#NA"
    back = read_sumstats(path)
    assert back.attrs["model"] == model
    assert list(back["chrom"]) == ["1", "2", "X", "MT", "22", "1"]
    for col in ("a1_freq", "beta", "se", "log10_p"):
        np.testing.assert_allclose(back[col], res[col], rtol=1e-7, equal_nan=True)


def test_writers_are_atomic_and_validate(tmp_path):
    res = _table("linear")
    res.attrs.pop("model")
    with pytest.raises(InputError, match="model"):
        write_glm(res, tmp_path / "x.glm")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    bad = res.drop(columns=["se"])
    with pytest.raises(KeyError):
        write_gwas_ssf(bad, tmp_path / "y.tsv", model="linear")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "junk.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(InputError, match="not a plink2"):
        read_sumstats(tmp_path / "junk.tsv")
    with pytest.raises(InputError, match="not found"):
        read_sumstats(tmp_path / "missing.tsv")


def test_reads_plink2_glm_default_and_log10_outputs(dummy_bfile, plink2, tmp_path):
    """plink2 --glm without hide-covar (its default) writes a row per covariate too: only
    the ADD rows are read. With the log10 modifier there is LOG10_P and no P column."""
    from gwaslift import read_plink

    g = read_plink(dummy_bfile)
    rng = np.random.default_rng(3)
    ids = pd.DataFrame({"#FID": g.samples["fid"], "IID": g.samples["iid"]})
    ids.assign(q=rng.normal(size=g.n_samples)).to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    ids.assign(a=rng.normal(size=g.n_samples), b=rng.normal(size=g.n_samples)).to_csv(
        tmp_path / "c.tsv", sep="\t", index=False)
    common = ["--bfile", dummy_bfile, "--pheno", tmp_path / "p.tsv", "--covar", tmp_path / "c.tsv"]
    for mods, out in (((), "full"), (("hide-covar",), "hide"), (("hide-covar", "log10"), "log")):
        plink2(*common, "--glm", "omit-ref", "no-firth", *mods, "--out", tmp_path / out)
    for kind in ("q.glm.linear", "PHENO1.glm.logistic"):
        hide = read_sumstats(tmp_path / f"hide.{kind}")
        assert len(hide) == g.n_variants
        raw = pd.read_csv(tmp_path / f"full.{kind}", sep="\t")
        assert set(raw["TEST"]) == {"ADD", "a", "b"}  # 3 rows per variant in the file
        full = read_sumstats(tmp_path / f"full.{kind}")
        pd.testing.assert_frame_equal(full, hide)
        log = read_sumstats(tmp_path / f"log.{kind}")
        assert log.attrs["model"] == hide.attrs["model"]
        pd.testing.assert_frame_equal(log.drop(columns=["p", "log10_p"]), hide.drop(columns=["p", "log10_p"]))
        np.testing.assert_allclose(log["log10_p"], hide["log10_p"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(log["p"], hide["p"], rtol=5e-5)  # LOG10_P has 6 digits
    bad = tmp_path / "dom.glm.linear"
    raw = pd.read_csv(tmp_path / "hide.q.glm.linear", sep="\t", dtype=str, keep_default_na=False)
    raw.assign(TEST="DOM").to_csv(bad, sep="\t", index=False)
    with pytest.raises(InputError, match="ADD"):
        read_sumstats(bad)
