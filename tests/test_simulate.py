"""Simulator: files plink2 reads, statistics that match the simulator's parameters and truth.

Independent references: plink2 (--freq, --glm, --fst, case/control counting), statsmodels
(interaction model), scipy's k-means (clustering quality). Same seed -> same bytes, for any
block size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gwaslift import read_plink
from gwaslift import simulate as sim_mod
from gwaslift.simulate import hao, kmeans

FILES = ("bed", "bim", "fam", "truth", "pop", "pheno")


def read_afreq(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def freq_by_plink2(plink2, prefix: Path, out: Path, keep: Path | None = None) -> pd.DataFrame:
    args = ["--bfile", prefix, "--freq", "--out", out]
    if keep is not None:
        args += ["--keep", keep]
    plink2(*args)
    return read_afreq(Path(f"{out}.afreq"))


def read_glm(out: Path, pheno: str = "trait") -> pd.DataFrame:
    (path,) = Path(out).parent.glob(f"{Path(out).name}.{pheno}.glm.*")
    df = pd.read_csv(path, sep="\t")
    return df[df["TEST"] == "ADD"].set_index("ID")


@pytest.fixture(scope="module")
def spatial_q(tmp_path_factory):
    """Spatial scenario, quantitative trait, 2,000 x 600, written in blocks of 64 SNPs."""
    d = tmp_path_factory.mktemp("sim_q")
    return hao(2000, 600, a=0.1, trait="quantitative", seed=1, out=d / "sq", block_size=64)


@pytest.fixture(scope="module")
def bn(tmp_path_factory):
    """Balding-Nichols, F_ST = 0.1, 3 populations, 1,500 x 500."""
    d = tmp_path_factory.mktemp("sim_bn")
    return hao(1500, 500, scenario="balding_nichols", fst=0.1, n_populations=3, seed=3, out=d / "bn")


# ----------------------------------------------------------------------------- files


def test_ids_alleles_and_truth_match_bim(spatial_q):
    g = read_plink(spatial_q.prefix)
    v = g.variants
    assert list(v["snp"]) == [f"snp{j}" for j in range(600)]
    assert list(g.samples["iid"]) == [f"ind{i}" for i in range(2000)]
    assert (g.samples["fid"] == g.samples["iid"]).all()
    assert sorted(v["chrom"].astype(int).unique()) == list(range(1, 11))
    assert (np.diff(v["chrom"].astype(int)) >= 0).all()
    for _, grp in v.groupby("chrom"):
        assert (np.diff(grp["pos"].to_numpy()) > 0).all()
    assert (v["a1"] != v["a2"]).all()
    assert set(v["a1"]) | set(v["a2"]) <= set("ACGT")

    truth = pd.read_csv(spatial_q.paths["truth"], sep="\t", dtype={"chrom": str})
    assert len(truth) == 10 and truth["snp"].is_unique
    bim = v.set_index("snp")
    for _, row in truth.iterrows():
        b = bim.loc[row["snp"]]
        assert (str(b["chrom"]), int(b["pos"]), b["a1"], b["a2"]) == (row["chrom"], row["pos"], row["a1"], row["a2"])
        assert v["snp"].tolist().index(row["snp"]) == row["variant_index"]
    assert (truth["pair"] == -1).all()


def test_fam_pheno_and_pop_tables_agree(spatial_q, tmp_path):
    fam = read_plink(spatial_q.prefix).samples
    # correctly rounded, as read_fam (pandas' default float parser may be an ulp off)
    pheno = pd.read_csv(spatial_q.paths["pheno"], sep="\t", float_precision="round_trip")
    pop = pd.read_csv(spatial_q.paths["pop"], sep="\t")
    assert list(pheno.columns) == ["FID", "IID", "trait"]
    assert list(pheno["IID"]) == list(fam["iid"]) == list(pop["IID"])
    np.testing.assert_array_equal(fam["trait"].to_numpy(), pheno["trait"].to_numpy())
    np.testing.assert_array_equal(pop["lambda"], pop["cluster"])
    # quantitative literal model: y = g + lambda + eps, so y - g - lambda has the cluster variances
    resid = pheno["trait"] - pop["genetic"] - pop["lambda"]
    for c, grp in resid.groupby(pop["cluster"]):
        s2 = pop.loc[pop["cluster"] == c, "sigma2"].iloc[0]
        assert abs(grp.mean()) < 5 * np.sqrt(s2 / len(grp))
        assert abs(grp.var() / s2 - 1) < 5 * np.sqrt(2 / len(grp))


# ----------------------------------------------------------------------------- genotypes


@pytest.mark.parametrize("scenario", ["spatial", "balding_nichols", "psd"])
def test_plink2_frequencies_match_pi(plink2, tmp_path, scenario):
    n = 1500
    r = hao(n, 400, scenario=scenario, seed=11, out=tmp_path / "s", block_size=50)
    af = freq_by_plink2(plink2, r.prefix, tmp_path / "f")
    bim = read_plink(r.prefix).variants
    assert list(af["ID"]) == list(bim["snp"])
    assert list(af["ALT"]) == list(bim["a1"])  # plink2 ALT = .bim col 5 = the counted A1
    assert (af["OBS_CT"] == 2 * n).all()  # no missing calls
    expected = r.expected_a1_freq()
    # given the drawn S, the A1 count is a sum of independent Binomial(2, pi_n): sd <= sqrt(1/(8n))
    assert np.abs(af["ALT_FREQS"].to_numpy() - expected).max() < 5 * np.sqrt(1 / (8 * n))
    raw = r.gamma @ r.S  # Gamma S before truncation
    pi = r.pi()
    if scenario == "spatial":
        assert pi.min() >= np.float32(0.05) and pi.max() <= np.float32(0.95)
        assert af["ALT_FREQS"].between(0.04, 0.96).all()
        assert raw.min() >= 0.05 - 1e-12 and raw.max() <= 1.05 + 1e-12
        frac = np.mean(raw > 0.95)
        assert r.summary["pi_truncated_fraction"] == pytest.approx(frac, abs=1e-9) and frac < 0.01
    else:
        assert r.summary["pi_truncated_fraction"] == 0.0
        np.testing.assert_allclose(pi, raw, atol=1e-6)
        assert raw.max() <= (0.9 if scenario == "psd" else 1.0) + 1e-12
    if scenario == "psd":
        np.testing.assert_allclose(r.S.sum(0), 1.0)


def test_balding_nichols_populations_differ_as_fst_says(plink2, bn, tmp_path):
    pop = pd.read_csv(bn.paths["pop"], sep="\t")
    # one-hot S: k-means on S recovers the populations exactly, numbered alike
    np.testing.assert_array_equal(pop["population"], pop["cluster"])
    cat = pop[["FID", "IID"]].assign(popname="pop" + pop["population"].astype(str))
    cat.to_csv(tmp_path / "cat.tsv", sep="\t", index=False)
    plink2("--bfile", bn.prefix, "--pheno", tmp_path / "cat.tsv", "--fst", "popname", "--out", tmp_path / "fst")
    fst = pd.read_csv(tmp_path / "fst.fst.summary", sep="\t")
    assert len(fst) == 3
    # Hudson F_ST between two Balding-Nichols populations drifted by F from one ancestor = F
    assert np.all(np.abs(fst["HUDSON_FST"] - 0.1) < 0.025), fst
    freqs = []
    for k in (1, 2, 3):
        keep = tmp_path / f"keep{k}"
        pop.loc[pop["population"] == k, ["FID", "IID"]].to_csv(keep, sep="\t", index=False, header=False)
        nk = int((pop["population"] == k).sum())
        af = freq_by_plink2(plink2, bn.prefix, tmp_path / f"f{k}", keep)["ALT_FREQS"].to_numpy()
        assert np.abs(af - bn.gamma[:, k - 1]).max() < 5 * np.sqrt(1 / (8 * nk))
        freqs.append(af)
        if k == 1:
            # within a Balding-Nichols population genotypes are Binomial(2, p_k): in HWE
            plink2("--bfile", bn.prefix, "--keep", keep, "--hardy", "--out", tmp_path / "hwe")
            hwe = pd.read_csv(tmp_path / "hwe.hardy", sep="\t")
            assert len(hwe) == 500 and (hwe["P"] < 1e-3).sum() <= 5
    assert np.mean(np.abs(freqs[0] - freqs[1])) > 0.08


def test_spatial_clusters_are_kmeans_optimal_and_differ_in_frequency(plink2, tmp_path):
    from scipy.cluster.vq import kmeans2

    r = hao(3000, 200, a=0.05, seed=5, out=tmp_path / "sp")
    pop = pd.read_csv(r.paths["pop"], sep="\t")
    X = pop[["S1", "S2"]].to_numpy()
    lab = pop["cluster"].to_numpy() - 1
    assert sorted(np.unique(lab)) == [0, 1, 2]
    cent = np.stack([X[lab == k].mean(0) for k in range(3)])
    # a Lloyd fixed point: every sample is nearest to its own cluster's centroid
    nearest = ((X[:, None] - cent[None]) ** 2).sum(2).argmin(1)
    np.testing.assert_array_equal(nearest, lab)
    # clusters numbered by decreasing lexicographic centroid
    assert [tuple(c) for c in cent] == sorted([tuple(c) for c in cent], reverse=True)
    inertia = ((X - cent[lab]) ** 2).sum()
    ref = min(
        ((X - c[lb]) ** 2).sum()
        for c, lb in (kmeans2(X, 3, minit="++", seed=s) for s in range(5))
    )
    assert inertia <= ref * (1 + 1e-9)
    # clusters differ in allele frequency as Gamma S predicts (plink2 --freq on each cluster)
    afs = []
    for k in (1, 2, 3):
        mask = pop["cluster"].to_numpy() == k
        keep = tmp_path / f"keep{k}"
        pop.loc[mask, ["FID", "IID"]].to_csv(keep, sep="\t", index=False, header=False)
        af = freq_by_plink2(plink2, r.prefix, tmp_path / f"f{k}", keep)["ALT_FREQS"].to_numpy()
        assert np.abs(af - r.expected_a1_freq(mask)).max() < 5 * np.sqrt(1 / (8 * mask.sum()))
        afs.append(af)
    assert np.mean(np.abs(afs[0] - afs[2])) > 0.05


def test_genotype_kernel_is_binomial():
    from scipy import stats

    pi = np.repeat(np.array([[0.05], [0.3], [0.5], [0.9]], dtype=np.float32), 50000, axis=1)
    x = sim_mod.draw_genotypes(pi, np.random.default_rng(0))
    assert x.dtype == np.int8
    for row, p in zip(x, (0.05, 0.3, 0.5, 0.9)):
        counts = np.bincount(row, minlength=3)
        assert len(counts) == 3
        assert stats.chisquare(counts, stats.binom.pmf([0, 1, 2], 2, p) * row.size).pvalue > 1e-3


def test_kmeans_kernel_separates_obvious_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 5.0], [2.5, 0.0], [0.0, 3.0]])
    truth = rng.integers(0, 3, 600)
    X = centres[truth] + rng.normal(0, 0.3, (600, 2))
    lab, cent = kmeans(X, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(lab, truth)  # numbering = decreasing lexicographic centroid
    np.testing.assert_allclose(cent, centres, atol=0.1)


# ----------------------------------------------------------------------------- traits


def test_plink2_glm_recovers_causal_effects(plink2, spatial_q, tmp_path):
    out = tmp_path / "glm"
    # lambda and S enter the model linearly (E[x | S] = 2 Gamma S), so with them as
    # covariates each per-SNP estimate is unbiased for the causal beta and ~null elsewhere
    plink2("--bfile", spatial_q.prefix, "--pheno", spatial_q.paths["pheno"], "--covar", spatial_q.paths["pop"],
           "--covar-name", "lambda", "S1", "S2", "--glm", "hide-covar", "--out", out)
    glm = read_glm(out)
    truth = spatial_q.truth.set_index("snp")
    assert (glm.loc[truth.index, "A1"] == truth["a1"]).all()
    z = (glm.loc[truth.index, "BETA"] - truth["beta"]) / glm.loc[truth.index, "SE"]
    assert np.all(np.abs(z) < 4.5), z
    strong = truth.index[truth["beta"].abs() > 0.5]
    assert len(strong) >= 3 and (glm.loc[strong, "P"] < 1e-8).all()
    null = glm.drop(truth.index)
    gc = np.median(null["T_STAT"] ** 2) / 0.4549
    assert 0.75 < gc < 1.3


def test_case_fraction_literal_and_target(plink2, tmp_path):
    lit = hao(3000, 60, seed=2, out=tmp_path / "lit")
    pheno = pd.read_csv(lit.paths["pheno"], sep="\t")
    assert set(pheno["trait"]) <= {1, 2}
    assert lit.summary["intercept"] == 0.0 and lit.summary["target_case_fraction"] is None
    assert lit.summary["case_fraction"] == pytest.approx((pheno["trait"] == 2).mean(), abs=0)
    n = 4000
    tgt = hao(n, 60, seed=2, out=tmp_path / "tgt", case_fraction=0.3)
    pheno = pd.read_csv(tgt.paths["pheno"], sep="\t")
    realised = (pheno["trait"] == 2).mean()
    assert tgt.summary["case_fraction"] == pytest.approx(realised, abs=0)
    assert tgt.summary["expected_case_fraction"] == pytest.approx(0.3, abs=1e-9)
    assert abs(realised - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
    # plink2 reads the 1/2 coding as controls/cases (allele counts = 2 x samples per group)
    plink2("--bfile", tgt.prefix, "--pheno", tgt.paths["pheno"], "--pheno-name", "trait",
           "--glm", "allow-no-covars", "cols=+totallelecc", "--out", tmp_path / "bin")
    glm = read_glm(tmp_path / "bin")
    assert (glm["CASE_ALLELE_CT"] == 2 * (pheno["trait"] == 2).sum()).all()
    assert (glm["CTRL_ALLELE_CT"] == 2 * (pheno["trait"] == 1).sum()).all()


def test_epistatic_product_has_no_marginal_effect_but_a_clear_interaction(plink2, tmp_path):
    import statsmodels.api as sm

    n = 20000
    r = hao(n, 30, a=0.1, trait="quantitative", n_causal=4, epistatic="product", seed=4,
            out=tmp_path / "epi")
    truth = r.truth
    assert sorted(truth["pair"]) == [0, 0, 1, 1]
    for _, grp in truth.groupby("pair"):
        assert grp["beta"].nunique() == 1
    out = tmp_path / "marg"
    plink2("--bfile", r.prefix, "--pheno", r.paths["pheno"], "--covar", r.paths["pop"],
           "--covar-name", "lambda", "S1", "S2", "--glm", "hide-covar", "--out", out)
    glm = read_glm(out)
    assert np.all(np.abs(glm.loc[truth["snp"], "T_STAT"]) < 4), glm.loc[truth["snp"]]

    g = read_plink(r.prefix)
    pop = pd.read_csv(r.paths["pop"], sep="\t")
    y = pd.read_csv(r.paths["pheno"], sep="\t")["trait"].to_numpy()
    for _, grp in truth.groupby("pair"):
        ia, ib = grp["variant_index"]
        xa, xb = (g.read_dosage(i, i + 1)[:, 0].astype(float) for i in (ia, ib))
        s1, s2 = pop["S1"].to_numpy(), pop["S2"].to_numpy()
        # beta (x_a - 2 pi_a)(x_b - 2 pi_b) with pi linear in S expands into x_a x_b, x_a S,
        # x_b S and quadratic S terms: with all of them the x_a x_b coefficient is beta
        X = sm.add_constant(np.column_stack([
            xa * xb, xa, xb, xa * s1, xa * s2, xb * s1, xb * s2, s1, s2, s1 * s1, s2 * s2, s1 * s2,
            pop["lambda"].to_numpy(),
        ]))
        fit = sm.OLS(y, X).fit()
        beta = grp["beta"].iloc[0]
        assert fit.pvalues[1] < 1e-10 and np.sign(fit.params[1]) == np.sign(beta)
        assert abs(fit.params[1] - beta) < 5 * fit.bse[1], (fit.params[1], beta)


def test_epistatic_and_mode_acts_only_when_both_carry(tmp_path):
    r = hao(500, 40, n_causal=4, epistatic=True, trait="quantitative", seed=6, out=tmp_path / "and")
    g = read_plink(r.prefix)
    pop = pd.read_csv(r.paths["pop"], sep="\t")
    expected = np.zeros(500)
    for _, grp in r.truth.groupby("pair"):
        ia, ib = grp["variant_index"]
        xa, xb = g.read_dosage(ia, ia + 1)[:, 0], g.read_dosage(ib, ib + 1)[:, 0]
        expected += grp["beta"].iloc[0] * ((xa >= 1) & (xb >= 1))
    # the genetic value written in the per-sample table, recomputed from the .bed
    np.testing.assert_allclose(pop["genetic"], expected, atol=1e-12)
    assert r.summary["epistatic"] == "and"


# ----------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("scenario", ["spatial", "balding_nichols", "psd"])
def test_same_seed_same_bytes_for_any_block_size(tmp_path, scenario):
    def run(name, seed, block_size):
        r = hao(150, 130, scenario=scenario, seed=seed, out=tmp_path / name, block_size=block_size)
        return {ext: r.paths[ext].read_bytes() for ext in FILES}

    ref = run("a", 9, 7)
    for name, bs in (("b", 7), ("c", 1), ("d", 64), ("e", 130), ("f", None)):
        assert run(name, 9, bs) == ref, (name, bs)
    assert run("g", 10, 7)["bed"] != ref["bed"]


def test_genotypes_do_not_depend_on_trait_options(tmp_path):
    a = hao(120, 50, seed=3, out=tmp_path / "a")
    b = hao(120, 50, seed=3, out=tmp_path / "b", trait="quantitative", n_causal=4, epistatic="product")
    c = hao(120, 50, seed=3, out=tmp_path / "c", case_fraction=0.2)
    bed = a.paths["bed"].read_bytes()
    assert b.paths["bed"].read_bytes() == bed == c.paths["bed"].read_bytes()


def test_written_block_by_block(tmp_path, monkeypatch):
    shapes = []
    real = sim_mod.PlinkWriter.write

    def spy(self, block):
        shapes.append(np.shape(block))
        return real(self, block)

    monkeypatch.setattr(sim_mod.PlinkWriter, "write", spy)
    hao(90, 100, seed=0, out=tmp_path / "b", block_size=16)
    assert [s[1] for s in shapes] == [16] * 6 + [4]
    assert all(s[0] == 90 for s in shapes)


def test_bad_arguments_raise(tmp_path):
    out = tmp_path / "x"
    bad = [
        dict(scenario="nope"), dict(trait="ordinal"), dict(n_causal=11, epistatic="product"),
        dict(epistatic="xor"), dict(trait="quantitative", case_fraction=0.3), dict(case_fraction=1.0),
        dict(n_causal=500), dict(a=0.0), dict(scenario="balding_nichols", fst=0.0), dict(block_size=0),
        dict(scenario="psd", n_populations=1), dict(seed=None), dict(seed=-1), dict(seed=1.5),
    ]
    for kw in bad:
        with pytest.raises(ValueError, match=next(iter(kw)) if "seed" in kw or "n_populations" in kw else None):
            hao(50, 40, out=out, **kw)
    assert not list(tmp_path.iterdir())  # nothing half-written
