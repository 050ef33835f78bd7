"""gwaslift.assoc: parity with statsmodels and plink2 --glm, chunk invariance, a
distributed cluster, calibration under structure, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import gwaslift
from gwaslift import InputError
from gwaslift.assoc import genomic_inflation, linear_gwas
from gwaslift.io.sumstats import read_sumstats

NUMERIC = ["a1_freq", "n", "beta", "se", "stat", "p", "log10_p"]


# ---------------------------------------------------------------------------- helpers
def _cohort(n=400, m=30, k=4, miss=0.05, seed=1):
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, rng.uniform(0.05, 0.5, m), size=(n, m)).astype(float)
    G[rng.random((n, m)) < miss] = np.nan
    C = pd.DataFrame(rng.normal(size=(n, k)), columns=[f"pc{i}" for i in range(k)])
    C["age"] = rng.uniform(20, 80, n)
    C["site"] = pd.Categorical(rng.choice(["a", "b", "c"], n))
    g0 = np.nan_to_num(G[:, 0])
    yq = 0.5 * C.pc0 + 0.3 * g0 + 0.01 * C.age + rng.normal(size=n)
    eta = -0.3 + 0.5 * C.pc1 + 0.4 * np.nan_to_num(G[:, 1])
    yb = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return G, C, yq.to_numpy(), yb.to_numpy()


def _design(C):
    return pd.get_dummies(C, columns=["site"], drop_first=True, dtype=float).to_numpy(float)


def _write_pheno_covar(tmp_path, samples, pheno: dict, covar: pd.DataFrame):
    ids = pd.DataFrame({"#FID": samples["fid"], "IID": samples["iid"]})
    ph = ids.copy()
    for name, v in pheno.items():
        ph[name] = v
    ph.to_csv(tmp_path / "pheno.tsv", sep="\t", index=False, na_rep="NA")
    pd.concat([ids, covar.reset_index(drop=True)], axis=1).to_csv(
        tmp_path / "covar.tsv", sep="\t", index=False, na_rep="NA")
    return tmp_path / "pheno.tsv", tmp_path / "covar.tsv"


def _plink2_glm(plink2, bfile, pheno, covar, out, *firth):
    """plink2 --glm in its default firth-fallback mode (``firth``: e.g. "no-firth")."""
    plink2("--bfile", bfile, "--pheno", pheno, "--covar", covar, "--glm", "hide-covar", *firth,
           "omit-ref", "cols=+a1freq,+err,+beta,+firth", "--out", out)


def _read_logistic(prefix):
    """plink2's logistic output: .glm.logistic.hybrid under firth-fallback, else .glm.logistic."""
    hybrid = prefix.with_name(prefix.name + ".hybrid")
    return read_sumstats(hybrid if hybrid.exists() else prefix)


def _assert_plink2_parity(ours, ref, beta_rtol=1e-4, dlog=1e-3, mask=None, firth_rtol=2e-3):
    """Same A1, NA set, n, Firth flags; beta within beta_rtol (relative); -log10 p within dlog.

    Logistic: plink2's own Newton fit stops ~1e-6 SE short of the exact MLE (we equal
    statsmodels to ~1e-12, tested above), so for |beta| < SE the tolerance is relative to
    the SE instead: |diff| <= beta_rtol * max(|beta|, SE). Its Firth fits stop ~1e-4 SE
    short of the penalized optimum (we converge to 1e-10): Firth rows get ``firth_rtol``
    and ten times ``dlog``.
    """
    assert list(ref["snp"]) == list(ours["snp"])
    assert (ref["a1"].to_numpy() == ours["a1"].to_numpy()).all(), "A1 differs from plink2"
    ok = (ref["errcode"] == "").to_numpy() & (ours["errcode"] == "").to_numpy()
    assert ((ref["errcode"] == "") == (ours["errcode"] == "")).all(), "NA rows differ from plink2"
    np.testing.assert_array_equal(ours["firth"].to_numpy(), ref["firth"].to_numpy())
    if mask is not None:
        ok &= mask
    assert ok.sum() > 0.8 * len(ours)
    np.testing.assert_array_equal(ours["n"].to_numpy()[ok], ref["n"].to_numpy()[ok])
    b, rb = ours["beta"].to_numpy()[ok], ref["beta"].to_numpy()[ok]
    scale = np.abs(rb)
    if ref.attrs["model"] == "logistic":
        scale = np.maximum(scale, ref["se"].to_numpy()[ok])
    rel = np.abs(b - rb) / scale
    tol = np.where(ours["firth"].to_numpy()[ok], firth_rtol, beta_rtol)
    assert (rel <= tol).all(), rel.max()
    d = np.abs(ours["log10_p"].to_numpy()[ok] - ref["log10_p"].to_numpy()[ok])
    assert (d <= np.where(ours["firth"].to_numpy()[ok], 10 * dlog, dlog)).all(), d.max()
    np.testing.assert_allclose(ours["a1_freq"].to_numpy()[ok], ref["a1_freq"].to_numpy()[ok], atol=1e-6)


# ----------------------------------------------------------------- statsmodels parity
@pytest.mark.parametrize("missing", ["drop", "mean"])
def test_linear_matches_statsmodels(missing):
    G, C, yq, _ = _cohort()
    G[:, 5] = G[:, 5] + np.where(np.isnan(G[:, 5]), 0, 0.25)  # a non-integer dosage column
    res = linear_gwas(G, yq, C, missing=missing)
    assert res.attrs["model"] == "linear"
    X = _design(C)
    for j in range(G.shape[1]):
        ok = ~np.isnan(G[:, j])
        g = G[:, j] if missing == "drop" else np.where(ok, G[:, j], np.nanmean(G[:, j]))
        rows = ok if missing == "drop" else np.ones(len(ok), bool)
        fit = sm.OLS(yq[rows], sm.add_constant(np.column_stack([X[rows], g[rows]]))).fit()
        r = res.iloc[j]
        assert r.n == rows.sum()
        np.testing.assert_allclose([r.beta, r.se], [fit.params[-1], fit.bse[-1]], rtol=1e-6)
        np.testing.assert_allclose([r.stat, r.p], [fit.tvalues[-1], fit.pvalues[-1]], rtol=1e-6)
        np.testing.assert_allclose(r.a1_freq, np.nanmean(G[:, j]) / 2, rtol=1e-12)


@pytest.mark.parametrize("covariates", [True, False])
@pytest.mark.parametrize("missing", ["drop", "mean"])
def test_logistic_matches_statsmodels(missing, covariates):
    """Both fit the same likelihood to convergence: agreement to ~1e-11 measured, 1e-9
    asserted (with covariates, and the intercept alone)."""
    G, C, _, yb = _cohort(seed=2)
    res = linear_gwas(G, yb, C if covariates else None, missing=missing)
    assert res.attrs["model"] == "logistic"
    X = _design(C) if covariates else np.zeros((len(yb), 0))
    for j in range(G.shape[1]):
        ok = ~np.isnan(G[:, j])
        g = G[:, j] if missing == "drop" else np.where(ok, G[:, j], np.nanmean(G[:, j]))
        rows = ok if missing == "drop" else np.ones(len(ok), bool)
        fit = sm.Logit(yb[rows], sm.add_constant(np.column_stack([X[rows], g[rows]]))).fit(
            disp=0, method="newton", tol=1e-14, maxiter=100)
        r = res.iloc[j]
        assert r.n == rows.sum() and r.errcode == ""
        np.testing.assert_allclose([r.beta, r.se, r.stat, r.p],
                                   [fit.params[-1], fit.bse[-1], fit.tvalues[-1], fit.pvalues[-1]], rtol=1e-9)


@pytest.mark.parametrize("missing", ["drop", "mean"])
def test_logistic_fixed_block_steps_reach_newtons_fit(monkeypatch, missing):
    """A logistic fit (here, forced, with few covariates) first steps with the null fit's
    covariate block Q'WQ, then with exact Newton steps, which decide convergence and give
    the SE. Variants of large effect move the weights too far for the fixed block (it
    stalls: the fit goes back and continues exactly); every variant ends where exact Newton
    from the null ends (1e-9) and where statsmodels ends."""
    from gwaslift import assoc

    rng = np.random.default_rng(21)
    n = 1500
    C = pd.DataFrame(rng.normal(size=(n, 3)), columns=["pc0", "pc1", "pc2"])
    G = rng.binomial(2, rng.uniform(0.1, 0.5, 16), size=(n, 16)).astype(float)
    eta = -0.5 + 0.6 * C.pc0.to_numpy() + 2.5 * (G[:, 0] - 1) + 1.5 * (G[:, 1] - 1)
    G[:, 2] = np.where(rng.random(n) < 0.9, G[:, 0], G[:, 2])  # in strong LD with the first
    G[rng.random(G.shape) < 0.03] = np.nan
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    seen, reverted, fixed_rows = {}, set(), [0]
    real = assoc._score_info

    def spy(D, miss, theta, active, design, exact=None):
        for a, e in zip(active, exact):
            key = (D[a].tobytes(), theta[a].tobytes())
            if e and key in seen:
                reverted.add(D[a].tobytes())  # an exact step from where a fixed step started
            seen[key] = e
        fixed_rows[0] += int((~exact).sum())
        return real(D, miss, theta, active, design, exact)

    monkeypatch.setattr(assoc, "_score_info", spy)
    newton = linear_gwas(G, y, C, missing=missing, firth="no")
    assert fixed_rows[0] == 0  # 4 design columns: exact Newton throughout (cheaper there)
    seen.clear()
    monkeypatch.setattr(assoc, "FIXED_BLOCK_MIN_COLUMNS", 0)
    res = linear_gwas(G, y, C, missing=missing, firth="no")
    assert fixed_rows[0] > 2 * G.shape[1] and len(reverted) >= 1
    pd.testing.assert_frame_equal(res, newton, check_exact=False, rtol=1e-9, atol=1e-12)
    assert (res.errcode == "").all() and abs(res.beta[0]) > 2
    for j in range(G.shape[1]):
        ok = ~np.isnan(G[:, j])
        g = G[:, j] if missing == "drop" else np.where(ok, G[:, j], np.nanmean(G[:, j]))
        rows = ok if missing == "drop" else np.ones(n, bool)
        fit = sm.Logit(y[rows], sm.add_constant(np.column_stack([C.to_numpy()[rows], g[rows]]))).fit(
            disp=0, method="newton", tol=1e-14, maxiter=100)
        np.testing.assert_allclose([res.beta[j], res.se[j]], [fit.params[-1], fit.bse[-1]], rtol=1e-9)


def _random_design(seed):
    """A random association problem for the fast-path properties below: 50-600 samples,
    covariates on mixed scales, sometimes collinear (exactly or nearly), categorical or
    age-like, 5% missing calls, a linear or a case/control phenotype (30% cases)."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(50, 600)), int(rng.integers(1, 45))
    C = pd.DataFrame(rng.normal(size=(n, k)) * rng.choice([1e-3, 1, 1e3], k), columns=[f"c{i}" for i in range(k)])
    kind = rng.integers(0, 5)
    if kind == 1 and k > 1:
        C["c1"] = C["c0"] * 2 + 1
    elif kind == 2 and k > 1:
        C["c1"] = C["c0"] + rng.normal(size=n) * 10 ** rng.uniform(-9, -2) * C["c0"].std()
    elif kind == 3:
        C["cat"] = pd.Categorical(rng.choice(list("abcd"), n))
    elif kind == 4:
        C["age"] = rng.integers(20, 80, n).astype(float) + 1e4
    G = rng.binomial(2, rng.choice([0.01, 0.05, 0.3, 0.5], 6), size=(n, 6)).astype(float)
    G[rng.random(G.shape) < 0.05] = np.nan
    eta = rng.normal(-0.5, 0.5) + np.nan_to_num(G - 1) @ rng.choice([0, 0.5, 2.0], 6)
    latent = eta + rng.logistic(size=n)
    y = rng.normal(size=n) + eta if rng.random() < 0.4 else (latent > np.quantile(latent, 0.7)).astype(float)
    return G, y, C, rng.choice(["drop", "mean"])


@pytest.mark.parametrize("seed", range(24))
def test_random_designs_fast_paths_equal_reference_paths(monkeypatch, seed):
    """Cholesky-QR basis against Householder, fixed-block logistic steps (forced at any
    width) against exact Newton: the same errors, errcodes and statistics (1e-8 of
    max(|beta|, SE)) on random designs (a 400-seed run of this found no difference)."""
    from gwaslift import assoc

    G, y, C, missing = _random_design(seed)

    def run(**consts):
        with monkeypatch.context() as mp:
            for name, v in consts.items():
                mp.setattr(assoc, name, v)
            try:
                return linear_gwas(G, y, C, missing=missing)
            except InputError as e:
                return str(e)

    fast = run(FIXED_BLOCK_MIN_COLUMNS=0)
    for ref in (run(FIXED_BLOCK_MIN_COLUMNS=0, CHOLESKY_QR_MAX_COND=0.0), run(MAX_FIXED_BLOCK_STEPS=0)):
        if isinstance(fast, str) or isinstance(ref, str):
            assert fast == ref
            continue
        assert (fast.errcode == ref.errcode).all() and (fast.firth == ref.firth).all()
        ok = (fast.errcode == "").to_numpy()
        scale = np.maximum(np.abs(ref.beta[ok]), ref.se[ok])
        assert np.all(np.abs(fast.beta[ok] - ref.beta[ok]) <= 1e-8 * scale)
        np.testing.assert_allclose(fast.se[ok], ref.se[ok], rtol=1e-8)


def test_binary_coded_1_2_equals_0_1():
    G, C, _, yb = _cohort(m=8, seed=3)
    a = linear_gwas(G, yb, C)
    b = linear_gwas(G, yb + 1, C)
    pd.testing.assert_frame_equal(a, b)
    lin = linear_gwas(G, yb, C, model="linear")
    assert lin.attrs["model"] == "linear" and np.isfinite(lin["beta"]).all()


def test_t_log_p_continued_fraction_matches_scipy():
    from scipy import stats

    from gwaslift.assoc import _t_log_p_cf

    t = np.array([3.0, 5.0, 30.0, 38.0, 100.0, 15.0])
    df = np.array([2996.0, 2996.0, 2996.0, 50.0, 10.0, 3.0])
    np.testing.assert_allclose(_t_log_p_cf(t, df), np.log(2) + stats.t.logsf(t, df), rtol=1e-10)


def test_tiny_p_survives_in_log_space():
    rng = np.random.default_rng(5)
    n = 3000
    g = rng.binomial(2, 0.4, n).astype(float)
    y = g + 0.05 * rng.normal(size=n)
    res = linear_gwas(g[:, None], y, rng.normal(size=(n, 2)))
    assert res["p"][0] == 0.0  # below the double range ...
    assert np.isfinite(res["log10_p"][0]) and res["log10_p"][0] > 400  # ... but not lost


# --------------------------------------------------------------------- plink2 parity
@pytest.fixture(scope="module")
def cohort10(tmp_path_factory):
    """plink2 --dummy genotypes (1000 x 400, no missing calls), our phenotypes, 10 covariates."""
    from conftest import run_plink2

    d = tmp_path_factory.mktemp("cohort10")
    run_plink2("--dummy", "1000", "400", "0.0", "acgt", "--seed", "11", "--make-bed", "--out", d / "c")
    g = gwaslift.read_plink(d / "c")
    rng = np.random.default_rng(11)
    n = g.n_samples
    C = pd.DataFrame(rng.normal(size=(n, 10)), columns=[f"c{k}" for k in range(10)])
    C["c9"] = rng.uniform(20, 70, n)  # an age-like covariate on another scale
    X = g.read_dosage(0, 4)
    yq = 0.4 * C["c0"].to_numpy() + 0.5 * X[:, 0] - 0.3 * X[:, 1] + rng.normal(size=n)
    eta = -0.2 + 0.4 * C["c1"].to_numpy() + 0.5 * X[:, 2]
    yb = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    yq[:6] = np.nan  # missing phenotype: dropped
    C.iloc[10, 3] = np.nan  # missing covariate: dropped
    return d, g, C, yq, yb


def test_plink2_parity_linear_and_logistic(cohort10, plink2, tmp_path):
    d, g, C, yq, yb = cohort10
    pheno, covar = _write_pheno_covar(tmp_path, g.samples, {"q": yq, "b": yb + 1}, C)
    _plink2_glm(plink2, d / "c", pheno, covar, tmp_path / "o")
    lin = linear_gwas(g, yq, C)
    ref = read_sumstats(tmp_path / "o.q.glm.linear")
    assert ref.attrs["model"] == "linear"
    assert (lin["n"] == g.n_samples - 7).all()
    _assert_plink2_parity(lin, ref)
    log = linear_gwas(g, yb, C)
    ref = _read_logistic(tmp_path / "o.b.glm.logistic")
    assert ref.attrs["model"] == "logistic"
    # plink2 2.00a3.5's logistic SEs drift ~1e-3 from the exact MLE for A1 frequencies
    # beyond 0.995 (we equal statsmodels there, tested above): compare MAF >= 0.01 here
    maf = np.minimum(log["a1_freq"], 1 - log["a1_freq"]).to_numpy()
    _assert_plink2_parity(log, ref, mask=maf >= 0.01)
    # the sign convention: a positive simulated effect of snp0 on yq, negative for snp1
    assert lin["beta"][0] > 0 and lin["beta"][1] < 0


def test_plink2_parity_with_missing_genotypes(dummy_bfile, plink2, tmp_path):
    g = gwaslift.read_plink(dummy_bfile)
    rng = np.random.default_rng(4)
    n = g.n_samples
    C = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    yq = rng.normal(size=n) + 0.2 * C["a"].to_numpy()
    yb = g.samples["trait"].to_numpy()  # --dummy's own 1/2 phenotype
    pheno, covar = _write_pheno_covar(tmp_path, g.samples, {"q": yq, "b": yb}, C)
    _plink2_glm(plink2, dummy_bfile, pheno, covar, tmp_path / "o")
    lin = linear_gwas(g, yq, C)
    assert lin["n"].nunique() > 5  # per-variant sample counts really differ
    _assert_plink2_parity(lin, read_sumstats(tmp_path / "o.q.glm.linear"))
    log = linear_gwas(g, yb, C)
    assert log.attrs["model"] == "logistic"
    maf = np.minimum(log["a1_freq"], 1 - log["a1_freq"]).to_numpy()
    _assert_plink2_parity(log, _read_logistic(tmp_path / "o.b.glm.logistic"), mask=maf >= 0.01)


def test_plink2_parity_logistic_with_many_covariates(dummy_bfile, plink2, tmp_path):
    """35 covariates plus a 4-level batch (39 design columns, above FIXED_BLOCK_MIN_COLUMNS:
    fixed-block steps before the exact Newton steps) and 5% missing calls: plink2's
    logistic fits, and the same as exact Newton throughout."""
    from gwaslift import assoc

    g = gwaslift.read_plink(dummy_bfile)
    rng = np.random.default_rng(9)
    n = g.n_samples
    C = pd.DataFrame(rng.normal(size=(n, 35)), columns=[f"pc{k}" for k in range(35)])
    C["batch"] = pd.Categorical(rng.choice(["b1", "b2", "b3", "b4"], n))
    yb = g.samples["trait"].to_numpy()
    pheno, covar = _write_pheno_covar(tmp_path, g.samples, {"b": yb}, C)
    _plink2_glm(plink2, dummy_bfile, pheno, covar, tmp_path / "o")
    fixed = []
    real = assoc._score_info
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(assoc, "_score_info", lambda *a, exact=None: fixed.append(int((~exact).sum())) or real(
            *a, exact=exact))
        log = linear_gwas(g, yb, C)
    assert sum(fixed) > g.n_variants  # the fixed-block steps ran
    maf = np.minimum(log["a1_freq"], 1 - log["a1_freq"]).to_numpy()
    _assert_plink2_parity(log, _read_logistic(tmp_path / "o.b.glm.logistic"), mask=maf >= 0.01)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(assoc, "MAX_FIXED_BLOCK_STEPS", 0)
        newton = linear_gwas(g, yb, C)
    pd.testing.assert_frame_equal(log, newton, check_exact=False, rtol=1e-9, atol=1e-12)


def _write_bfile(path, G):
    n, m = G.shape
    samples = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)],
                            "father": "0", "mother": "0", "sex": 0, "trait": np.nan})
    variants = pd.DataFrame({"chrom": "1", "snp": [f"s{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(1, m + 1) * 100, "a1": "A", "a2": "G"})
    gwaslift.write_plink(path, G, samples=samples, variants=variants)
    return gwaslift.read_plink(path)


def test_variant_failed_in_a_batch_is_vif_infinite_as_plink2(plink2, tmp_path):
    """A SNP with every call missing in one genotyping batch, batch a categorical covariate:
    the batch dummy is constant on its observed samples. plink2: VIF_INFINITE; before the
    fix a garbage beta with p ~ 1e-4 that changed with the chunk size."""
    rng = np.random.default_rng(20)
    n, m = 300, 30
    batch = rng.choice(["b2", "b1", "b3"], n, p=[0.3, 0.45, 0.25])  # b1 most common
    C = pd.DataFrame({"pc": rng.normal(size=n), "batch": batch})
    G = rng.binomial(2, 0.3, (n, m)).astype(float)
    G[batch == "b2", :2] = np.nan  # s0, s1 failed in batch b2: its dummy is constant
    G[:, 2] = 1.0  # monomorphic: CONST_OMITTED_ALLELE
    G[3:, 3] = np.nan  # 3 calls for 5 predictors: SAMPLE_CT<=PREDICTOR_CT
    # s4 failed in b1, the reference level plink2 drops (the most common): the b2 and b3
    # dummies sum to 1 on its samples, r = -1
    G[batch == "b1", 4] = np.nan
    yq = 0.3 * (batch == "b2") + 0.2 * C["pc"].to_numpy() + rng.normal(size=n)
    yb = (rng.random(n) < 1 / (1 + np.exp(0.5 - 0.5 * (batch == "b3")))).astype(float)
    g = _write_bfile(tmp_path / "g", G)
    pheno, covar = _write_pheno_covar(tmp_path, g.samples, {"q": yq, "b": yb + 1}, C)
    _plink2_glm(plink2, tmp_path / "g", pheno, covar, tmp_path / "o")
    want = ["VIF_INFINITE", "VIF_INFINITE", "CONST_OMITTED_ALLELE", "SAMPLE_CT<=PREDICTOR_CT",
            "CORR_TOO_HIGH"]
    for y, suffix in ((yq, "q.glm.linear"), (yb, "b.glm.logistic")):
        ref = (_read_logistic if "logistic" in suffix else read_sumstats)(tmp_path / f"o.{suffix}")
        assert list(ref["errcode"][:5]) == want  # plink2's own verdict
        runs = [linear_gwas(g, y, C, chunk=k) for k in (1, 5, m)]
        for res in runs:
            assert list(res["errcode"]) == list(ref["errcode"])
            assert res.loc[:4, ["beta", "se", "p"]].isna().all().all()
            pd.testing.assert_frame_equal(res, runs[0], check_exact=False, rtol=1e-12)
        _assert_plink2_parity(runs[0], ref)


def test_vif_and_max_corr_limits_match_plink2(plink2, tmp_path):
    """plink2 --glm's --vif / --max-corr per variant, over its observed samples: a SNP
    nearly equal to a covariate is CORR_TOO_HIGH, a less correlated one VIF_TOO_HIGH; the
    same with --vif 4 and missing calls (the per-variant covariate subset)."""
    rng = np.random.default_rng(2)
    n, m = 400, 30
    base = rng.binomial(2, 0.3, n).astype(float)
    C = pd.DataFrame({"c": base + rng.normal(scale=0.02, size=n), "z": rng.normal(size=n),
                      "age": rng.uniform(40, 70, n)})
    G = np.tile(base[:, None], (1, m))
    for j in range(m):  # SNP j: base with j^1.5 genotypes redrawn -> VIF from ~1e3 down to ~1
        idx = rng.choice(n, int(j ** 1.5 * 2), replace=False)
        G[idx, j] = rng.integers(0, 3, len(idx))
    G[:, 10:][rng.random((n, m - 10)) < 0.08] = np.nan
    y = 0.2 * base + rng.normal(size=n)
    g = _write_bfile(tmp_path / "g", G)
    pheno, covar = _write_pheno_covar(tmp_path, g.samples, {"q": y}, C)
    for extra, vif in (((), 50.0), (("--vif", "4"), 4.0)):
        plink2("--bfile", tmp_path / "g", "--pheno", pheno, "--covar", covar, "--glm", "hide-covar",
               "omit-ref", "cols=+a1freq", *extra, "--out", tmp_path / "o")
        ref = read_sumstats(tmp_path / "o.q.glm.linear")
        res = linear_gwas(g, y, C, vif=vif)
        assert list(res["errcode"]) == list(ref["errcode"])
        assert {"CORR_TOO_HIGH", "VIF_TOO_HIGH", ""} <= set(res["errcode"])
        ok = (res["errcode"] == "").to_numpy()
        np.testing.assert_allclose(res["beta"][ok], ref["beta"][ok], rtol=1e-4)
    # off: every variant but the exact copies of the covariate has a result
    res = linear_gwas(g, y, C, vif=np.inf, max_corr=1.0)
    assert (res["errcode"] == "").all()


def test_vif_on_observed_samples_equals_numpy():
    """The vectorised VIF / correlation on each variant's observed samples (missing calls,
    an age-like covariate, logistic too) against np.corrcoef / inv, variant by variant."""
    rng = np.random.default_rng(5)
    n, m = 300, 40
    base = rng.normal(size=n)
    C = np.column_stack([base + rng.normal(scale=0.3, size=n), rng.normal(size=n) * 100 + 1950,
                         rng.normal(size=n), base + rng.normal(scale=0.5, size=n)])
    G = np.clip(np.round(1 + base[:, None] * rng.uniform(0, 1.5, m)
                         + rng.normal(size=(n, m)) * rng.uniform(0.1, 1, m)), 0, 2)
    G[rng.random((n, m)) < 0.1] = np.nan
    vmax, rmax = [], []
    for j in range(m):
        ok = ~np.isnan(G[:, j])
        R = np.corrcoef(np.column_stack([C[ok], G[ok, j]]).T)
        vmax.append(np.diag(np.linalg.inv(R)).max())
        rmax.append(np.abs(R - np.eye(len(R))).max())
    vmax, rmax = np.array(vmax), np.array(rmax)
    y = rng.normal(size=n)
    for v in np.quantile(vmax, [0.25, 0.5, 0.75]):
        for yy in (y, (y > 0).astype(float)):
            res = linear_gwas(G, yy, C, vif=v, max_corr=1.0)
            np.testing.assert_array_equal(res["errcode"] == "VIF_TOO_HIGH", vmax > v)
    lim = np.quantile(rmax, 0.6)  # above the covariates' own |r| on all samples
    res = linear_gwas(G, y, C, vif=np.inf, max_corr=lim)
    np.testing.assert_array_equal(res["errcode"] == "CORR_TOO_HIGH", rmax > lim)


def test_correlated_covariates_raise_as_plink2(plink2, tmp_path):
    rng = np.random.default_rng(14)
    n = 200
    G = rng.binomial(2, 0.3, (n, 3)).astype(float)
    c1, c2 = rng.normal(size=n), rng.normal(size=n)
    y = rng.normal(size=n)
    g = _write_bfile(tmp_path / "g", G)
    for C, code, match in (
        (pd.DataFrame({"c1": c1, "c2": c1 + rng.normal(scale=0.01, size=n)}),
         "CORR_TOO_HIGH", "'c1' and 'c2'"),
        (pd.DataFrame({"c1": c1, "c2": c2, "c3": c1 + c2 + rng.normal(scale=0.1, size=n)}),
         "VIF_TOO_HIGH", "'c1'"),
    ):
        pheno, covar = _write_pheno_covar(tmp_path, g.samples, {"q": y}, C)
        with pytest.raises(RuntimeError, match=code):
            plink2("--bfile", tmp_path / "g", "--pheno", pheno, "--covar", covar, "--glm", "hide-covar",
                   "--out", tmp_path / "o")
        with pytest.raises(InputError, match=f"{match}.*{code}"):
            linear_gwas(g, y, C)
        assert len(linear_gwas(g, y, C, vif=np.inf, max_corr=1.0)) == 3  # limits off: runs


# ------------------------------------------------------- chunking and a real cluster
def test_results_do_not_depend_on_chunk_size(dummy_bfile):
    g = gwaslift.read_plink(dummy_bfile)
    rng = np.random.default_rng(6)
    C = rng.normal(size=(g.n_samples, 2))
    for y in (rng.normal(size=g.n_samples), g.samples["trait"].to_numpy()):
        runs = [linear_gwas(g, y, C, chunk=k) for k in (1, 7, 1000)]
        for other in runs[1:]:
            pd.testing.assert_frame_equal(runs[0], other, check_exact=False, rtol=1e-12)


def test_sample_subset_and_phenotype_by_iid(dummy_bfile):
    g = gwaslift.read_plink(dummy_bfile)
    rng = np.random.default_rng(7)
    y = pd.Series(rng.normal(size=g.n_samples), index=g.samples["iid"])
    C = pd.DataFrame(rng.normal(size=(g.n_samples, 2)), index=g.samples["iid"], columns=["u", "v"])
    ref = linear_gwas(g, y.to_numpy(), C.to_numpy())
    shuffled = linear_gwas(g, y.sample(frac=1, random_state=1), C.sample(frac=1, random_state=2))
    pd.testing.assert_frame_equal(ref, shuffled, check_exact=False, rtol=1e-12)
    # a subset Genotypes (every other sample) equals dropping the others' phenotype
    sub = g.subset(samples=np.arange(0, g.n_samples, 2))
    y_nan = y.to_numpy().copy()
    y_nan[1::2] = np.nan
    a = linear_gwas(sub, y.to_numpy()[::2], C.to_numpy()[::2])
    b = linear_gwas(g, y_nan, C.to_numpy())
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


def test_distributed_cluster_gives_identical_results(dummy_bfile):
    import distributed
    g = gwaslift.read_plink(dummy_bfile).with_chunks(40)
    rng = np.random.default_rng(8)
    C = rng.normal(size=(g.n_samples, 2))
    y = rng.normal(size=g.n_samples)
    yb = g.samples["trait"].to_numpy()
    local = [linear_gwas(g, y, C), linear_gwas(g, yb, C)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster):
            remote = [linear_gwas(g, y, C), linear_gwas(g, yb, C)]
    for a, b in zip(local, remote):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


# ------------------------------------------------------- the numba kernel (packed rows)
def _numpy_path(monkeypatch):
    """Make chunk_stats take the numpy decode-and-BLAS path (as without numba)."""
    from gwaslift import assoc

    monkeypatch.setattr(assoc.LINEAR_KERNEL, "_fn", False)  # the numpy path


@pytest.mark.parametrize("missing", ["drop", "mean"])
def test_numba_linear_kernel_equals_numpy_path(tmp_path, monkeypatch, missing):
    """The numba kernel's sums (packed rows, missing samples' corrections added sample by
    sample) give the statistics of the numpy path (decoded float64 blocks, BLAS products):
    all samples in file order (a sample count that leaves padding in each row's last byte),
    and a reordered subset of them (the kernel's sample map); with missing calls, a variant
    failed in a whole batch (VIF_INFINITE), a monomorphic one and an all-missing one."""
    from gwaslift import assoc

    rng = np.random.default_rng(11)
    n, m = 203, 61
    G = rng.binomial(2, rng.uniform(0.02, 0.5, m), size=(n, m)).astype(float)
    G[rng.random((n, m)) < 0.05] = np.nan
    batch = np.arange(n) % 3
    G[batch == 1, 3] = np.nan      # failed in batch 1
    G[:, 4] = 1.0                  # monomorphic
    G[:, 5] = np.nan               # every call missing
    G[:, 6] = np.where(np.isnan(G[:, 6]), np.nan, 0.0)  # A1 never seen
    g = _write_bfile(tmp_path / "k", G)
    C = pd.DataFrame({"u": rng.normal(size=n), "age": rng.uniform(20, 80, n),
                      "batch": pd.Categorical(batch.astype(str))})
    y = 0.4 * np.nan_to_num(G[:, 0]) + rng.normal(size=n)
    assert assoc.LINEAR_KERNEL.get() is not None  # numba is a dependency: the kernel is under test
    sub = g.subset(samples=rng.permutation(n)[:150])
    for geno, yy, cc in ((g, y, C), (sub, y[sub.sample_idx], C.iloc[sub.sample_idx])):
        fast = linear_gwas(geno, yy, cc.reset_index(drop=True), missing=missing)
        with monkeypatch.context() as mp:
            _numpy_path(mp)
            ref = linear_gwas(geno, yy, cc.reset_index(drop=True), missing=missing)
        pd.testing.assert_frame_equal(fast, ref, check_exact=False, rtol=1e-10, atol=1e-13)
        assert (fast["errcode"] != "").sum() >= 3
    assert fast.loc[3, "errcode"] == ("VIF_INFINITE" if missing == "drop" else "")
    assert fast.loc[5, "errcode"] == "ALL_MISSING"


def _logistic_numpy_path(monkeypatch):
    """Make logistic fits take the numpy path (as without numba)."""
    from gwaslift import assoc

    for kernel in (assoc.LOGISTIC_KERNEL, assoc.LOGISTIC_START_KERNEL, assoc.GRAM_KERNEL):
        monkeypatch.setattr(kernel, "_fn", False)


@pytest.mark.parametrize("missing", ["drop", "mean"])
def test_numba_logistic_kernels_equal_numpy_path(tmp_path, monkeypatch, missing):
    """The logistic numba kernels (start sums with the missing calls' corrections formed
    sample by sample; fused score and information) give the numpy path's statistics: every
    Firth mode, separated and quasi-separated variants, missing calls, a reordered sample
    subset, and a tiny chunk (blocks with a single variant)."""
    from gwaslift import assoc

    G, C, y = _separation_cohort(n=403, miss=0.03)
    rng = np.random.default_rng(15)
    common = rng.binomial(2, rng.uniform(0.05, 0.5, 20), size=(403, 20)).astype(float)
    common[rng.random(common.shape) < 0.03] = np.nan
    G = np.column_stack([G, common])
    g = _write_bfile(tmp_path / "lk", G)
    assert assoc.LOGISTIC_KERNEL.get() is not None and assoc.LOGISTIC_START_KERNEL.get() is not None
    sub = g.subset(samples=rng.permutation(403)[:350])
    for geno, yy, cc in ((g, y, C), (sub, y[sub.sample_idx], C.iloc[sub.sample_idx])):
        cc = cc.reset_index(drop=True)
        for firth in ("fallback", "no", "always"):
            fast = linear_gwas(geno, yy, cc, missing=missing, firth=firth, chunk=7)
            with monkeypatch.context() as mp:
                _logistic_numpy_path(mp)
                ref = linear_gwas(geno, yy, cc, missing=missing, firth=firth)
            pd.testing.assert_frame_equal(fast, ref, check_exact=False, rtol=1e-9, atol=1e-12)
            assert (fast["errcode"] == "").sum() >= 20
    assert fast["firth"].all()  # the last run: firth="always"


def test_logistic_score_info_equals_numpy_grad_hess():
    """One Newton iteration's score and information, kernel against numpy, at arbitrary
    coefficients (large enough that some fitted probabilities round to 0 or 1), with
    missing calls, on a subset of a block's rows."""
    from gwaslift import assoc

    rng = np.random.default_rng(16)
    n, B = 1001, 9  # n not a multiple of the kernel's tile
    C = rng.normal(size=(n, 3))
    y = (rng.random(n) < 0.3).astype(float)
    design = assoc.make_design(y, C, ["a", "b", "c"], "logistic")
    D = rng.binomial(2, 0.3, size=(B, n)).astype(float)
    miss = (rng.random((B, n)) < 0.05).astype(float)
    D[miss == 1] = 0.0
    theta = rng.normal(size=(B, design.c + 1)) * np.r_[np.full(design.c, 3.0), 40.0]
    active = np.array([0, 2, 3, 8])
    U, H = assoc._score_info(D, miss, theta, active, design)
    Ur, Hr = assoc._logistic_grad_hess(D[active], miss[active], theta[active], design)
    np.testing.assert_allclose(U, Ur, rtol=1e-11, atol=1e-10)
    np.testing.assert_allclose(H, Hr, rtol=1e-11, atol=1e-10)


def test_logistic_start_sums_equal_numpy():
    """The sums before the first Newton step, kernel against numpy: dot products, the
    missing calls' correction sums (the kernel forms them from Q's rows, numpy from
    Kmiss), counts; a block without missing calls reports none."""
    from gwaslift import assoc

    rng = np.random.default_rng(18)
    n, B = 999, 7
    C = rng.normal(size=(n, 4))
    y = (rng.random(n) < 0.4).astype(float)
    design = assoc.make_design(y, C, list("abcd"), "logistic")
    D = rng.binomial(2, 0.3, size=(B, n)).astype(float)
    miss = (rng.random((B, n)) < 0.05).astype(float)
    miss[3] = 0.0  # a variant without missing calls in a block with some
    D[miss == 1] = 0.0
    assert assoc.LOGISTIC_START_KERNEL.get() is not None
    for m in (miss, None):
        fast = assoc._start_sums(D, m, design)
        with pytest.MonkeyPatch.context() as mp:
            _logistic_numpy_path(mp)
            ref = assoc._start_sums(D, m, design)
        for a, b in zip(fast, ref):
            if b is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c", [1, 3, 4, 5, 11])
def test_weighted_gram_equals_gemm(c):
    """The small-block covariate information (per-variant Q' diag(w) Q) equals the GEMM
    W @ Kw it replaces, for covariate counts around its 4 x 4 blocking."""
    from gwaslift import _assoc_kernels as k
    from gwaslift import assoc

    rng = np.random.default_rng(19)
    n = 1337
    Q = np.linalg.qr(rng.normal(size=(n, c)))[0]
    tri = np.triu_indices(c)
    W = rng.random((3, n))
    out = np.empty((3, len(tri[0])))
    k.weighted_gram(W, np.ascontiguousarray(Q.T), out)
    np.testing.assert_allclose(out, W @ assoc._tri_products(Q, tri), rtol=1e-12, atol=1e-15)


def test_weighted_gram_rows_do_not_depend_on_each_other():
    """The kernel reads each tile of Q once for a group of rows of W (several groups here:
    150 covariates bound a group to 11 rows); each row's Gram is bitwise what it is alone,
    so a variant's covariate block does not depend on which variants share its block, and
    it equals the GEMM W @ K."""
    from gwaslift import _assoc_kernels as k
    from gwaslift import assoc

    rng = np.random.default_rng(23)
    n, c, A = 1500, 150, 25
    Q = np.linalg.qr(rng.normal(size=(n, c)))[0]
    Qt, tri = np.ascontiguousarray(Q.T), np.triu_indices(c)
    W = rng.random((A, n))
    assert k._GRAM_ACC_BYTES // (8 * 152 * 152) < A  # more than one group
    out = np.empty((A, len(tri[0])))
    k.weighted_gram(W, Qt, out)
    for a in (0, 10, 11, 24):
        alone = np.empty((1, len(tri[0])))
        k.weighted_gram(W[a:a + 1], Qt, alone)
        np.testing.assert_array_equal(alone[0], out[a])
    np.testing.assert_allclose(out, W @ assoc._tri_products(Q, tri), rtol=1e-11, atol=1e-13)


def test_kernel_exp_is_accurate_and_clamped():
    """The kernels' vectorisable exp: within 2 ulp of numpy's over the double range it
    serves, and clamped at +-708 (where expit is 0 or 1 to ~1e-308) instead of overflowing."""
    from gwaslift import _assoc_kernels as k

    x = np.concatenate([np.linspace(-708, 708, 400_001), np.random.default_rng(17).normal(size=10_000)])
    e = np.empty_like(x)
    bits = np.empty(len(x), np.int64)
    k._exp_tile(x, e, bits, bits.view(np.float64), len(x))
    ref = np.exp(x)
    assert np.max(np.abs(e - ref) / ref) <= 2 * np.finfo(float).eps
    far = np.array([-1e4, -709.5, 709.5, 1e4, np.inf, -np.inf])
    e = np.empty_like(far)
    bits = np.empty(len(far), np.int64)
    k._exp_tile(far, e, bits, bits.view(np.float64), len(far))
    np.testing.assert_allclose(e, np.exp([-708.0, -708, 708, 708, 708, -708]), rtol=4e-16)


def test_numba_kernel_results_are_bitwise_independent_of_chunk_size(dummy_bfile):
    """Each variant's sums are formed on their own (a fixed summation order set by n), and
    variants with and without missing calls take their own branch: the chunking changes
    no bit."""
    g = gwaslift.read_plink(dummy_bfile)
    rng = np.random.default_rng(12)
    C = rng.normal(size=(g.n_samples, 3))
    y = rng.normal(size=g.n_samples)
    runs = [linear_gwas(g, y, C, chunk=k) for k in (1, 3, 7, 1000)]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0], other, check_exact=True)


def test_sample_used_twice_takes_the_numpy_path(dummy_bfile):
    """A subset that repeats a sample cannot be expressed by the kernel's sample map; the
    numpy path runs (and counts the sample twice, as the array path does)."""
    from gwaslift import assoc

    g = gwaslift.read_plink(dummy_bfile)
    idx = np.r_[np.arange(g.n_samples), 0, 1]
    sub = g.subset(samples=idx)
    rng = np.random.default_rng(13)
    y = rng.normal(size=len(idx))
    res = linear_gwas(sub, y)
    ref = linear_gwas(sub.dosage.compute(), y)
    np.testing.assert_allclose(res["beta"], ref["beta"], rtol=1e-10)
    np.testing.assert_array_equal(res["n"], ref["n"])
    assert assoc._file_rows(idx, g.n_samples) is None


def test_kernel_that_cannot_load_falls_back_to_numpy(dummy_bfile, monkeypatch):
    """numba missing or without a writable cache: a warning says so, and the numpy path
    gives the same statistics."""
    from gwaslift import assoc

    g = gwaslift.read_plink(dummy_bfile)
    rng = np.random.default_rng(14)
    y = rng.normal(size=g.n_samples)
    yb = g.samples["trait"].to_numpy()
    fast = [linear_gwas(g, y), linear_gwas(g, yb)]

    def broken():
        raise RuntimeError("cannot cache function: no locator available")

    from gwaslift import firth

    monkeypatch.setattr(assoc, "_import_kernels", broken)
    monkeypatch.setattr(firth, "_import_kernels", broken)
    for kernel in (assoc.LINEAR_KERNEL, assoc.LOGISTIC_KERNEL, assoc.LOGISTIC_START_KERNEL,
                   assoc.GRAM_KERNEL, firth.FIRTH_PASS1, firth.FIRTH_PASS2):
        monkeypatch.setattr(kernel, "_fn", None)  # not tried yet
    with pytest.warns(RuntimeWarning, match="numba CPU kernels are unavailable.*numpy"):
        slow = [linear_gwas(g, y), linear_gwas(g, yb)]
    assert slow[1].attrs["model"] == "logistic"
    for a, b in zip(fast, slow):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-10)


# ------------------------------------------------------------ calibration under structure
def test_null_phenotype_with_pcs_is_calibrated(tmp_path):
    """Balding-Nichols populations + a phenotype shifted by population: PCs fix lambda."""
    rng = np.random.default_rng(2024)
    n_pop, n_per, m, fst = 3, 200, 8000, 0.1
    p_anc = rng.uniform(0.1, 0.9, m)
    a, b = p_anc * (1 - fst) / fst, (1 - p_anc) * (1 - fst) / fst
    pops = np.repeat(np.arange(n_pop), n_per)
    P = rng.beta(a, b, size=(n_pop, m))
    X = rng.binomial(2, P[pops]).astype(np.float32)
    n = len(pops)
    samples = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)],
                            "father": "0", "mother": "0", "sex": 0, "trait": np.nan})
    variants = pd.DataFrame({"chrom": "1", "snp": [f"s{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(1, m + 1), "a1": "A", "a2": "C"})
    gwaslift.write_plink(tmp_path / "bn", X, samples=samples, variants=variants)
    g = gwaslift.read_plink(tmp_path / "bn")
    y = np.array([0.0, 1.0, -1.0])[pops] + rng.normal(size=n)  # stratified, no SNP effect
    # PCs by an independent numpy SVD of the standardized genotypes
    Z = X - X.mean(0)
    Z = Z[:, Z.std(0) > 0] / Z[:, Z.std(0) > 0].std(0)
    U, S, _ = np.linalg.svd(Z, full_matrices=False)
    pcs = pd.DataFrame(U[:, :4] * S[:4], columns=[f"PC{k + 1}" for k in range(4)])
    raw = genomic_inflation(linear_gwas(g, y, None)["p"])
    adj = linear_gwas(g, y, pcs)
    lam = genomic_inflation(adj)
    assert raw > 1.3, raw  # the test can fail: stratification inflates without PCs
    assert 0.95 <= lam <= 1.05, lam


def test_genomic_inflation_values():
    from scipy import stats

    chi2 = np.array([0.1, 0.2, 0.455, 3.0, 10.0])
    p = stats.chi2.sf(chi2, 1)
    assert genomic_inflation(p) == pytest.approx(0.455 / stats.chi2.ppf(0.5, 1), rel=1e-9)
    assert genomic_inflation(log10_p=-np.log10(p)) == pytest.approx(genomic_inflation(p), rel=1e-9)
    u = np.random.default_rng(0).uniform(size=200_001)
    assert genomic_inflation(u) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(InputError):
        genomic_inflation()


# ------------------------------------------------------------------------ bad input
def test_bad_phenotypes_raise():
    G, C, yq, yb = _cohort(m=5)
    with pytest.raises(InputError, match="constant"):
        linear_gwas(G, np.full(len(yq), 3.2), C)
    with pytest.raises(InputError, match="one class"):
        linear_gwas(G, np.ones(len(yq)), C, model="logistic")
    with pytest.raises(InputError, match="logistic regression needs"):
        linear_gwas(G, yq, C, model="logistic")
    with pytest.raises(InputError, match="rows"):
        linear_gwas(G, yq[:-1], C)
    with pytest.raises(InputError, match="no sample"):
        linear_gwas(G, np.full(len(yq), np.nan), C)


def test_collinear_covariates_raise_naming_them():
    G, C, yq, _ = _cohort(m=5)
    C = C.drop(columns=["site"])
    with pytest.raises(InputError, match="constant among the samples used.*batch"):
        linear_gwas(G, yq, C.assign(batch=1.0))
    # the whole dependent set is named (which member pivoting calls dependent is rounding)
    with pytest.raises(InputError, match="linearly dependent: intercept, age, age2"):
        linear_gwas(G, yq, C.assign(age2=2 * C["age"] + 1))
    num = [c for c in C.columns if C[c].dtype.kind == "f" and c != "age"][:2]
    with pytest.raises(InputError, match=f"linearly dependent: {num[0]}, {num[1]}, s\\. "):
        linear_gwas(G, yq, C.assign(s=C[num[0]] - 3 * C[num[1]]))


def test_covariate_basis_cholesky_qr_and_householder_paths_agree(monkeypatch):
    """The covariate basis comes from Cholesky QR twice when the unit-norm covariates are
    well conditioned, else from the pivoted-QR rank test and Householder QR: both give an
    orthonormal Q with Q R = [1, C] and Q[:, 0] constant, and the same GWAS (1e-10). Nearly
    collinear (but full rank) covariates take the Householder path."""
    from gwaslift import assoc

    G, C, yq, yb = _cohort(m=6)
    X = _design(C)
    names = [f"c{j}" for j in range(X.shape[1])]
    calls = []
    real = assoc._cholesky_qr2
    monkeypatch.setattr(assoc, "_cholesky_qr2", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    near = np.column_stack([X, X[:, 0] + 1e-7 * np.random.default_rng(3).normal(size=len(X))])
    for cov, fast in ((X, True), (near, False)):
        Q, R = assoc._orthonormal_basis(cov, names + ["near"] * (cov.shape[1] - len(names)))
        assert (calls[-1] is not None) == fast
        full = np.column_stack([np.ones(len(cov)), cov])
        np.testing.assert_allclose(Q @ R, full, atol=1e-10 * np.abs(full).max())
        np.testing.assert_allclose(Q.T @ Q, np.eye(Q.shape[1]), atol=1e-12)
        assert np.ptp(Q[:, 0]) < 1e-15 and Q.flags.c_contiguous
    results = [linear_gwas(G, y, C) for y in (yq, yb)]
    monkeypatch.setattr(assoc, "CHOLESKY_QR_MAX_COND", 0.0)  # Householder for every design
    for y, fast in zip((yq, yb), results):
        pd.testing.assert_frame_equal(fast, linear_gwas(G, y, C), check_exact=False, rtol=1e-10, atol=1e-13)
    assert calls[-1] is None


@pytest.mark.parametrize("seed", [46, 49])
def test_covariates_separating_cases_raise_input_error(seed):
    """Two cases among 500 samples and ~40 covariates (one age-like): the covariates
    separate them, the null fit's weights underflow to zero and its information matrix is
    singular. An InputError that says so, not numpy's LinAlgError (found by random designs;
    statsmodels does not converge on these covariates either)."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(150, 900)), int(rng.integers(31, 45))
    C = pd.DataFrame(rng.normal(size=(n, k)), columns=[f"c{i}" for i in range(k)])
    if rng.random() < 0.5:
        C["c0"] = rng.integers(20, 80, n).astype(float)
    maf = rng.choice([0.002, 0.01, 0.05, 0.3, 0.5], 12)
    G = rng.binomial(2, maf, size=(n, 12)).astype(float)
    G[rng.random(G.shape) < rng.choice([0, 0.02, 0.1])] = np.nan
    beta = rng.choice([0, 0, 0.5, 2.0, 4.0], 12)
    eta = rng.normal(-1, 1) + 0.3 * C.iloc[:, 1].to_numpy() + np.nan_to_num(G - 1) @ beta / 2
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    with pytest.raises(InputError, match="covariates separate cases from controls.* cases"):
        linear_gwas(G, y, C)


def test_series_with_array_genotypes_is_positional():
    G, C, yq, _ = _cohort(m=5)
    samples_like = pd.Series(yq, index=[f"x{i}" for i in range(len(yq))])
    # array genotypes have no IDs: a Series is taken by position
    assert len(linear_gwas(G, samples_like, C)) == 5


def test_phenotype_ids_not_in_fam_raise(dummy_bfile):
    g = gwaslift.read_plink(dummy_bfile)
    y = pd.Series(np.arange(g.n_samples, dtype=float), index=[f"nobody{i}" for i in range(g.n_samples)])
    with pytest.raises(InputError, match="none of its sample IDs"):
        linear_gwas(g, y)


def test_degenerate_variants_give_documented_nan_rows():
    G, C, yq, yb = _cohort(m=6)
    G[:, 1] = np.nan  # all missing
    G[:, 2] = 1.0  # monomorphic
    G[:, 3] = np.where(np.isnan(G[:, 3]), np.nan, 0.0)  # monomorphic with missing calls
    G[:, 4] = C["pc0"].to_numpy() * 0 + (C["pc0"] > 0)  # collinear? no: a valid variant
    for y in (yq, yb):
        res = linear_gwas(G, y, C)
        assert res.loc[1, "n"] == 0 and res.loc[1, "errcode"] == "ALL_MISSING"
        assert res.loc[2, "errcode"] == "CONST_OMITTED_ALLELE"
        assert res.loc[3, "errcode"] == "CONST_OMITTED_ALLELE"
        assert res.loc[[1, 2, 3], ["beta", "se", "stat", "p", "log10_p"]].isna().all().all()
        assert (res.loc[[0, 4, 5], "errcode"] == "").all()
        assert np.isfinite(res.loc[[0, 4, 5], ["beta", "se", "p"]]).all().all()


def test_genotype_collinear_with_covariate_is_na():
    G, C, yq, _ = _cohort(m=3, miss=0.0)
    C = C.drop(columns=["site"]).assign(dup=G[:, 0])  # a covariate equal to variant 0
    res = linear_gwas(G, yq, C)
    assert res.loc[0, "errcode"] == "CORR_TOO_HIGH" and np.isnan(res.loc[0, "beta"])
    assert (res.loc[1:, "errcode"] == "").all()
    # with plink2's limits off, exact collinearity is still caught
    res = linear_gwas(G, yq, C, vif=np.inf, max_corr=1.0)
    assert res.loc[0, "errcode"] == "VIF_INFINITE" and np.isnan(res.loc[0, "beta"])
    assert (res.loc[1:, "errcode"] == "").all()


def test_separated_variant_gets_firth_or_separation():
    rng = np.random.default_rng(9)
    n = 300
    y = (rng.random(n) < 0.5).astype(float)
    g = np.zeros(n)
    g[np.flatnonzero(y == 1)[:4]] = 1.0  # carriers are all cases: no finite MLE
    G = np.column_stack([g, rng.binomial(2, 0.3, n)])
    C = rng.normal(size=(n, 2))
    res = linear_gwas(G, y, C)  # plink2's default: firth-fallback
    assert res.loc[0, "errcode"] == "" and res.loc[0, "firth"]
    assert res.loc[0, "beta"] > 0 and 0 < res.loc[0, "p"] < 1
    assert res.loc[1, "errcode"] == "" and not res.loc[1, "firth"]
    no = linear_gwas(G, y, C, firth="no")
    assert no.loc[0, "errcode"] == "SEPARATION" and np.isnan(no.loc[0, "p"]) and not no.loc[0, "firth"]
    pd.testing.assert_frame_equal(no.loc[[1]], res.loc[[1]])


def _separation_cohort(n=400, miss=0.02, seed=5):
    """Variants built to hit every branch of plink2's logistic fallback (see the test)."""
    rng = np.random.default_rng(seed)
    C = pd.DataFrame({"c": rng.normal(size=n), "c2": rng.normal(size=n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-0.5 * C["c"].to_numpy()))).astype(float)
    G = rng.binomial(2, 0.3, (n, 8)).astype(float)
    cases, ctrls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    G[:, 0] = 0
    G[cases[:1], 0] = 1                                   # one carrier, a case: SEPARATION
    G[:, 1] = np.where(y == 1, rng.choice([1, 2], n), rng.choice([0, 1], n))  # quasi-separation
    G[cases, 2] = 0                                       # no carrier among cases: SEPARATION
    G[:, 4] = 0
    G[cases[:2], 4] = 1
    G[ctrls[:1], 4] = 1                                   # rare, in both classes: ordinary fit
    G[:, 7] = 2
    G[cases[:3], 7] = 1                                   # controls carry no other allele
    G[rng.random(G.shape) < miss] = np.nan
    return G, C, y


def test_firth_fallback_matches_plink2(plink2, tmp_path):
    """plink2 --glm's default firth-fallback and its no-firth, variant by variant: the same
    separation verdicts, the same Firth flags, the same Firth estimates (to plink2's looser
    convergence), on observed samples that differ per variant; independent of the chunk."""
    G, C, y = _separation_cohort()
    g = _write_bfile(tmp_path / "g", G)
    pheno, covar = _write_pheno_covar(tmp_path, g.samples, {"b": y + 1}, C)
    _plink2_glm(plink2, tmp_path / "g", pheno, covar, tmp_path / "fb")
    _plink2_glm(plink2, tmp_path / "g", pheno, covar, tmp_path / "no", "no-firth")
    ref = _read_logistic(tmp_path / "fb.b.glm.logistic")
    ref_no = _read_logistic(tmp_path / "no.b.glm.logistic")
    sep = [0, 2, 7]
    assert list(ref.index[ref["firth"]]) == sep  # plink2's own verdicts on the built variants
    assert all(e.startswith("SEPARATION") for e in ref_no.loc[sep, "errcode"])
    # s1 (all carriers of genotype 2 are cases, all of 0 controls): plink2 stops Newton at its
    # iteration limit and prints the unfinished iterate (UNFINISHED); we refit it with Firth
    assert ref.loc[1, "errcode"] == "UNFINISHED" and not ref.loc[1, "firth"]
    others = [j for j in range(G.shape[1]) if j != 1]
    runs = [linear_gwas(g, y, C, chunk=k) for k in (1, 3, G.shape[1])]
    for res in runs[1:]:
        pd.testing.assert_frame_equal(res, runs[0])
    res = runs[0]
    assert res.loc[1, "firth"] and res.loc[1, "errcode"] == "" and res.loc[1, "beta"] > 2
    _assert_plink2_parity(res.loc[others].reset_index(drop=True), ref.loc[others].reset_index(drop=True))
    no = linear_gwas(g, y, C, firth="no")
    assert list(no.loc[sep, "errcode"]) == ["SEPARATION"] * 3 and not no["firth"].any()
    assert no.loc[1, "errcode"] == "LOGISTIC_CONVERGE_FAIL"
    fitted = [3, 4, 5, 6]
    _assert_plink2_parity(no.loc[fitted].reset_index(drop=True), ref_no.loc[fitted].reset_index(drop=True))
    pd.testing.assert_frame_equal(no.loc[fitted], res.loc[fitted])
    # the same fits from a dosage array (the other kernel entry) and with mean imputation
    dense = linear_gwas(G, y, C)
    np.testing.assert_allclose(dense[NUMERIC].to_numpy(float), res[NUMERIC].to_numpy(float), rtol=1e-9)
    assert (dense["firth"] == res["firth"]).all() and (dense["errcode"] == res["errcode"]).all()
    mean = linear_gwas(g, y, C, missing="mean")
    assert mean.loc[sep, "firth"].all() and (mean.loc[sep, "errcode"] == "").all()


def test_firth_always_matches_plink2_firth(plink2, tmp_path):
    """firth="always" = plink2 --glm firth: every variant a Firth fit, to plink2's looser
    convergence (~1e-3 SE); separated or not, rare or common."""
    G, C, y = _separation_cohort()
    g = _write_bfile(tmp_path / "g", G)
    pheno, covar = _write_pheno_covar(tmp_path, g.samples, {"b": y + 1}, C)
    _plink2_glm(plink2, tmp_path / "g", pheno, covar, tmp_path / "f", "firth")
    ref = read_sumstats(tmp_path / "f.b.glm.firth")
    res = linear_gwas(g, y, C, firth="always")
    assert res["firth"].all() and (res["errcode"] == "").all() and (ref["errcode"] == "").all()
    ref["firth"] = True  # plink2's .glm.firth has no FIRTH? column: every row is one
    _assert_plink2_parity(res, ref)
    # where ordinary ML is finite (s3-s6), Firth's estimate is pulled towards 0
    ml = linear_gwas(g, y, C)
    ok = [3, 4, 5, 6]
    assert (np.abs(res.loc[ok, "beta"]) < np.abs(ml.loc[ok, "beta"])).all()


def test_bad_arguments():
    G, C, yq, _ = _cohort(m=3)
    with pytest.raises(InputError, match="firth"):
        linear_gwas(G, yq, C, firth="yes")
    with pytest.raises(InputError, match="model"):
        linear_gwas(G, yq, C, model="probit")
    with pytest.raises(InputError, match="missing"):
        linear_gwas(G, yq, C, missing="zero")
    with pytest.raises(InputError, match="numeric"):
        linear_gwas(G, np.array(["a"] * len(yq), dtype=object), C)


# ------------------------------------------------------- sex chromosomes and MT (plink2 --glm)
def _sex_chrom_cohort(tmp_path, n=500, seed=41):
    """Chromosomes 1, X, Y, MT; sexes 1, 2 and a few unknown (0); males hemizygous (0/2) on
    X, Y and MT (everyone on MT); females with (erroneous) chrY calls, which plink2 ignores;
    a quantitative trait with a sex effect and a case/control one."""
    rng = np.random.default_rng(seed)
    sex = rng.choice([1, 2], n)
    sex[:7] = 0
    chrom = ["1"] * 6 + ["X"] * 6 + ["Y"] * 4 + ["MT"] * 4
    m = len(chrom)
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), size=(n, m)).astype(np.float32)
    male = sex == 1
    for j in range(m):
        if chrom[j] in ("X", "Y"):
            G[male, j] = 2 * rng.binomial(1, 0.3, male.sum())
        if chrom[j] == "MT":
            G[:, j] = 2 * rng.binomial(1, 0.3, n)
    G[rng.random((n, m)) < 0.02] = np.nan
    G[:12, -1] = 1.0                     # heterozygous MT calls (errors): half an allele, as plink2
    G[np.flatnonzero(male)[:5], 12] = 1.0  # and on a male's chrY
    samples = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)],
                            "sex": sex, "trait": np.nan})
    variants = pd.DataFrame({"chrom": chrom, "snp": [f"v{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(1, m + 1) * 100, "a1": "A", "a2": "G"})
    gwaslift.write_plink(tmp_path / "xy", G, samples=samples, variants=variants)
    q = 0.6 * (sex == 2) + 0.3 * np.nan_to_num(G[:, 7]) + rng.normal(size=n)
    cc = np.where(rng.random(n) < 1 / (1 + np.exp(-(0.5 * (sex == 2) - 0.3))), 2, 1)
    pd.DataFrame({"#FID": samples.fid, "IID": samples.iid, "q": q, "cc": cc}).to_csv(
        tmp_path / "xy.pheno", sep="\t", index=False)
    return gwaslift.read_plink(tmp_path / "xy"), q, cc


@pytest.mark.parametrize("no_x_sex", [False, True])
def test_sex_chromosomes_and_mt_equal_plink2(tmp_path, plink2, no_x_sex):
    """chrX with sex as a covariate (or not: no-x-sex), chrY on males only, chrY and MT per
    haploid allele: the same OBS_CT, beta and SE as plink2 --glm, linear and logistic."""
    g, q, cc = _sex_chrom_cohort(tmp_path)
    mods = ["no-x-sex"] if no_x_sex else []
    plink2("--bfile", tmp_path / "xy", "--pheno", tmp_path / "xy.pheno", "--glm", "allow-no-covars",
           "hide-covar", "omit-ref", "cols=+beta,+firth", *mods, "--out", tmp_path / "ref")
    for name, y, ref_file in (("q", q, "ref.q.glm.linear"), ("cc", cc.astype(float), "ref.cc.glm.logistic.hybrid")):
        ours = linear_gwas(g, y, x_sex=not no_x_sex)
        ref = read_sumstats(tmp_path / ref_file)
        assert list(ours.snp) == list(ref.snp)
        np.testing.assert_array_equal(ours.n.to_numpy(), ref.n.to_numpy())
        males = int((g.samples.sex == 1).sum())
        assert ours.loc[ours.chrom == "Y", "n"].max() <= males < ours.loc[ours.chrom == "MT", "n"].min()
        scale = np.maximum(np.abs(ref.beta), ref.se).to_numpy()
        rel = np.abs(ours.beta.to_numpy() - ref.beta.to_numpy()) / scale
        assert rel.max() < (1e-4 if name == "q" else 3e-4), (name, rel.max())
        np.testing.assert_allclose(ours.se, ref.se, rtol=1e-4)
    assert ours.attrs["x_sex"] is (not no_x_sex)


# ------------------------------------------------ several phenotypes in one pass (plink2 --glm)
def _assert_same_tests(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 1e-9) -> None:
    assert list(a.snp) == list(b.snp) and a.attrs["model"] == b.attrs["model"]
    np.testing.assert_array_equal(a.n.to_numpy(), b.n.to_numpy())
    np.testing.assert_array_equal(a.errcode.to_numpy(), b.errcode.to_numpy())
    for col in ("a1_freq", "beta", "se", "stat", "log10_p"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=rtol, atol=0, err_msg=col)


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("missing", ["drop", "mean"])
def test_linear_gwas_multi_equals_one_phenotype_at_a_time(tmp_path, kernel, missing, monkeypatch):
    """Quantitative phenotypes on the same samples are tested in one pass (one design with
    k columns per chromosome class), and every result equals linear_gwas of that phenotype
    alone: missing calls, a categorical covariate, chrX/Y/MT, a phenotype with its own
    missing samples and a binary one (each its own pass)."""
    from gwaslift import assoc

    if kernel == "numpy":
        monkeypatch.setattr(assoc.LINEAR_KERNEL, "_fn", False)
    g, q, cc = _sex_chrom_cohort(tmp_path)
    n = g.n_samples
    rng = np.random.default_rng(5)
    ph = pd.DataFrame({"q": q, "q_scaled": 1e4 * q + 3.0, "noise": rng.normal(size=n), "cc": cc.astype(float),
                       "q_gaps": np.where(rng.random(n) < 0.1, np.nan, q + rng.normal(size=n))})
    ph.loc[5, ["q", "q_scaled", "noise"]] = np.nan  # the same missing sample in three columns
    cov = pd.DataFrame({"age": rng.normal(50, 10, n), "batch": rng.choice(["a", "b", "c"], n)})
    shapes = []
    make_design = assoc.make_design
    monkeypatch.setattr(assoc, "make_design", lambda y, *a, **k: shapes.append(np.shape(y)) or make_design(y, *a, **k))
    multi = gwaslift.linear_gwas_multi(g, ph, cov, missing=missing)
    assert list(multi) == list(ph.columns)
    # four chromosome classes (1, X, Y, MT; other samples on X and Y): per class one pass of
    # the three columns, and q_gaps and cc alone
    assert sum(s[1:] == (3,) for s in shapes) == 4 and sum(len(s) == 1 for s in shapes) == 8
    assert len(shapes) == 12 and (n - 1, 3) in shapes
    for name in ph.columns:
        one = linear_gwas(g, ph[name], cov, missing=missing)
        assert multi[name].attrs["phenotype"] == name
        _assert_same_tests(multi[name], one)
    assert multi["cc"].attrs["model"] == "logistic" and multi["q"].attrs["model"] == "linear"
    # a scaled phenotype: the same t statistics, betas scaled
    np.testing.assert_allclose(multi["q_scaled"].stat, multi["q"].stat, rtol=1e-8)


def test_linear_gwas_multi_on_arrays_and_bad_input(tmp_path):
    """Dosage arrays (the dosage_chunk_stats path), positional names; errors name the
    phenotype."""
    rng = np.random.default_rng(8)
    G = rng.binomial(2, 0.3, size=(300, 40)).astype(float)
    G[rng.random(G.shape) < 0.03] = np.nan
    Y = rng.normal(size=(300, 3))
    multi = gwaslift.linear_gwas_multi(G, Y, chunk=7)
    assert list(multi) == ["pheno1", "pheno2", "pheno3"]
    for j in range(3):
        _assert_same_tests(multi[f"pheno{j + 1}"], linear_gwas(G, Y[:, j]))
    with pytest.raises(InputError, match="phenotype 'flat': the phenotype is constant"):
        gwaslift.linear_gwas_multi(G, pd.DataFrame({"ok": Y[:, 0], "flat": np.ones(300)}))
    with pytest.raises(InputError, match="duplicate column names"):
        gwaslift.linear_gwas_multi(G, pd.DataFrame(Y[:, :2], columns=["a", "a"]))
    with pytest.raises(TypeError, match="unexpected keyword"):
        gwaslift.linear_gwas_multi(G, Y, covars=None)


@pytest.mark.parametrize("model", ["linear", "logistic"])
@pytest.mark.parametrize("numba", [True, False])
def test_covariate_products_formed_in_chunks_give_the_stored_results(tmp_path, monkeypatch, model, numba):
    """Past TRI_STORE_BYTES the products q_a q_b (the Gram operand, and the missing calls'
    correction rows of the numpy paths) are formed per chunk of samples instead of stored
    as an n x c^2 matrix (3.6 GB at 500,000 samples and 42 covariates): the same statistics,
    numba and numpy paths, 2 phenotypes in one pass, missing calls, Firth refits, several
    chunks with a ragged last one."""
    from gwaslift import assoc

    rng = np.random.default_rng(21)
    n, m = 701, 40
    G = rng.binomial(2, rng.uniform(0.01, 0.5, m), size=(n, m)).astype(float)
    G[rng.random((n, m)) < 0.03] = np.nan
    if model == "linear":
        Y = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    else:
        Y = pd.DataFrame({"cc": (rng.random(n) < 0.4).astype(float)})
        # carried by 3 cases only: separated, a Firth refit
        G[:, 0] = np.where(np.isin(np.arange(n), np.flatnonzero(Y["cc"].to_numpy() == 1)[:3]), 1.0, 0.0)
    g = _write_bfile(tmp_path / "tp", G)
    C = pd.DataFrame(rng.normal(size=(n, 9)), columns=[f"PC{j}" for j in range(9)])
    C["batch"] = pd.Categorical(rng.integers(0, 4, n).astype(str))
    with monkeypatch.context() as mp:
        if not numba:
            from gwaslift import firth

            _numpy_path(mp)
            _logistic_numpy_path(mp)
            for kernel in (firth.FIRTH_PASS1, firth.FIRTH_PASS2):
                mp.setattr(kernel, "_fn", False)
        stored = gwaslift.linear_gwas_multi(g, Y, C, model=model, progress=False)
        assert assoc.TriProducts(np.ones((n, 13)), np.triu_indices(13)).K is not None  # small: stored
        mp.setattr(assoc, "TRI_STORE_BYTES", 0)
        mp.setattr(assoc, "TRI_CHUNK_BYTES", 128 * 8 * 60)  # ~128 samples a chunk
        assert assoc.TriProducts(np.ones((n, 13)), np.triu_indices(13)).K is None
        chunked = gwaslift.linear_gwas_multi(g, Y, C, model=model, progress=False)
    for name in Y.columns:
        pd.testing.assert_frame_equal(chunked[name], stored[name], check_exact=False, rtol=1e-9, atol=1e-12)
    if model == "logistic":
        assert stored["cc"]["firth"].any()
