"""gwaslift.epistasis.pair_scan: the statistic against a direct float64 computation and
statsmodels, independence of the block size, calibration under no effect, recovery of
centred product pairs that per-SNP tests miss, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from gwaslift import InputError, linear_gwas, read_plink
from gwaslift.epistasis import pair_scan
from gwaslift.simulate import hao


@pytest.fixture(scope="module")
def product_cohort(tmp_path_factory):
    """1,500 x 40 structured cohort, quantitative trait = 2 centred product pairs."""
    out = tmp_path_factory.mktemp("epi") / "prod"
    r = hao(1500, 40, a=0.1, trait="quantitative", n_causal=4, epistatic="product", effect_sd=2.0, seed=3,
            out=out)
    g = read_plink(r.prefix)
    y = pd.read_csv(r.paths["pheno"], sep="\t")["trait"].to_numpy()
    pop = pd.read_csv(r.paths["pop"], sep="\t")
    cov = pop[["S1", "S2"]].to_numpy()
    return g, y, cov, r.truth


def _reference(g, y, cov, rows):
    """T for every pair a < b, float64, by the module docstring's formula written out."""
    x = g.read_dosage(0, g.n_variants)[rows].astype(np.float64)
    x = np.where(np.isnan(x), np.nanmean(x, 0), x)
    C = np.c_[np.ones(len(rows)), cov[rows]]
    resid = lambda v: v - C @ np.linalg.lstsq(C, v, rcond=None)[0]  # noqa: E731
    r = resid(y[rows])
    z = np.column_stack([resid(x[:, j]) for j in range(x.shape[1])])
    z /= np.sqrt((z ** 2).mean(0))
    out = {}
    for a, b in itertools.combinations(range(x.shape[1]), 2):
        w = z[:, a] * z[:, b]
        out[(a, b)] = (r @ w) / np.sqrt((r * r) @ (w * w))
    return out


def test_statistic_equals_direct_computation(product_cohort):
    g, y, cov, _ = product_cohort
    rows = np.arange(0, 1500, 2)  # a subset of samples, as for a training split
    m = g.n_variants
    scan = pair_scan(g, y, cov, samples=rows, top=m * (m - 1) // 2, block_variants=16, progress=False)
    ref = _reference(g, y, cov, rows)
    assert scan.n_pairs == len(ref) == len(scan.pairs)
    assert scan.n_samples == len(rows) and scan.n_covariates == 3
    got = dict(zip(zip(scan.pairs.index_a, scan.pairs.index_b), scan.pairs.stat))
    np.testing.assert_allclose([got[k] for k in ref], list(ref.values()), rtol=2e-5, atol=2e-5)
    # sorted by |stat|, p two-sided normal, -log10 p consistent with p
    assert (np.diff(np.abs(scan.pairs.stat)) <= 0).all()
    from scipy.stats import norm
    np.testing.assert_allclose(scan.pairs.p, 2 * norm.sf(np.abs(scan.pairs.stat)), rtol=1e-12)
    np.testing.assert_allclose(scan.pairs.log10_p, -np.log10(scan.pairs.p), rtol=1e-9)
    # per-SNP strongest pair and its partner
    for j in range(m):
        mine = {k: abs(v) for k, v in ref.items() if j in k}
        (a, b), best = max(mine.items(), key=lambda kv: kv[1])
        assert scan.snps.max_abs_stat[j] == pytest.approx(best, rel=2e-5)
        assert scan.snps.partner[j] == (b if a == j else a)
        assert scan.snps.partner_snp[j] == g.variants.snp.iloc[b if a == j else a]


def test_statistic_is_the_robust_lm_test_of_statsmodels(product_cohort):
    """T^2 is Wooldridge's heteroscedasticity-robust LM statistic for adding the pair's
    product to y ~ covariates: n - SSR of the regression of ones on r * w (statsmodels OLS,
    no intercept), with r the residual of y on the covariates (statsmodels), w the product of
    the two covariate-residualized, scaled dosages (not projected again: as T)."""
    import statsmodels.api as sm

    g, y, cov, truth = product_cohort
    scan = pair_scan(g, y, cov, top=780, progress=False)
    x = g.read_dosage(0, g.n_variants).astype(np.float64)
    C = sm.add_constant(cov)
    z = x - C @ np.linalg.lstsq(C, x, rcond=None)[0]
    z /= np.sqrt((z ** 2).mean(0))
    r = sm.OLS(y, C).fit().resid
    true_pairs = {tuple(sorted(grp.variant_index)) for _, grp in truth.groupby("pair")}
    assert true_pairs <= set(zip(scan.pairs.index_a[:2], scan.pairs.index_b[:2]))
    for a, b, t in zip(scan.pairs.index_a[::7], scan.pairs.index_b[::7], scan.pairs.stat[::7]):
        w = z[:, a] * z[:, b]
        lm = sm.OLS(np.ones(len(y)), r * w).fit()
        assert t ** 2 == pytest.approx(len(y) - lm.ssr, rel=1e-4, abs=1e-6)
        assert np.sign(t) == np.sign(lm.params[0]) or abs(t) < 1e-3


def test_calibrated_when_the_residual_variance_differs_between_samples(tmp_path):
    """A binary trait (variance p(1 - p), here far from 1/4 in most clusters) with additive
    effects and no interaction: T behaves like N(0, 1) (sd 1.003 here). A pooled variance
    (s2 sum w^2) gives sd(T) 0.84 on this cohort (97% cases)."""
    r = hao(2000, 80, a=0.1, trait="binary", seed=21, out=tmp_path / "bin")
    g = read_plink(r.prefix)
    pop = pd.read_csv(r.paths["pop"], sep="\t")
    y = pd.read_csv(r.paths["pheno"], sep="\t")["trait"].to_numpy()
    causal = set(r.truth.variant_index)
    scan = pair_scan(g, y, pop[["S1", "S2"]].to_numpy(), top=3160, progress=False)
    keep = [a not in causal and b not in causal for a, b in zip(scan.pairs.index_a, scan.pairs.index_b)]
    t = scan.pairs.stat.to_numpy()[keep]
    assert len(t) > 2000
    assert 0.9 < np.std(t) < 1.1


def test_finds_centred_pairs_that_per_snp_tests_miss(product_cohort):
    g, y, cov, truth = product_cohort
    scan = pair_scan(g, y, cov, top=2, progress=False)
    true_pairs = {tuple(sorted(grp.variant_index)) for _, grp in truth.groupby("pair")}
    assert set(zip(scan.pairs.index_a, scan.pairs.index_b)) == true_pairs
    # the per-SNP test (same covariates) sees nothing at these SNPs
    lin = linear_gwas(g, y, cov)
    assert (lin.loc[truth.variant_index, "p"] > 1e-3).all()


def test_block_size_does_not_change_the_result(product_cohort):
    g, y, cov, _ = product_cohort
    runs = [pair_scan(g, y, cov, top=50, block_variants=b, progress=False) for b in (7, 16, 40)]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0].pairs.drop(columns=["stat", "p", "log10_p"]),
                                      other.pairs.drop(columns=["stat", "p", "log10_p"]))
        np.testing.assert_allclose(runs[0].pairs.stat, other.pairs.stat, rtol=1e-5)
        np.testing.assert_array_equal(runs[0].snps.partner, other.snps.partner)
        np.testing.assert_allclose(runs[0].snps.max_abs_stat, other.snps.max_abs_stat, rtol=1e-5)
        assert runs[0].n_pairs == other.n_pairs


def test_calibrated_without_effect_under_population_structure(tmp_path):
    """A trait that depends on ancestry only: with the ancestry covariates, |T| behaves like
    |N(0, 1)|; residualizing only the phenotype (not the dosages) would inflate it."""
    r = hao(2000, 60, a=0.05, trait="quantitative", n_causal=2, effect_sd=0.0, seed=11, out=tmp_path / "null")
    g = read_plink(r.prefix)
    pop = pd.read_csv(r.paths["pop"], sep="\t")
    y = pd.read_csv(r.paths["pheno"], sep="\t")["trait"].to_numpy()
    scan = pair_scan(g, y, pop[["S1", "S2"]].to_numpy(), top=1770, progress=False)
    t = scan.pairs.stat.to_numpy()
    assert len(t) == 1770
    assert 0.85 < np.mean(t ** 2) < 1.15
    assert 0.03 < np.mean(np.abs(t) > 1.96) < 0.07


def test_min_distance_skips_close_pairs(product_cohort):
    g, y, cov, _ = product_cohort
    m = g.n_variants
    v = g.variants
    scan = pair_scan(g, y, cov, top=m * m, min_distance_bp=200_000, progress=False)
    close = sum(1 for a, b in itertools.combinations(range(m), 2)
                if v.chrom[a] == v.chrom[b] and abs(v.pos[a] - v.pos[b]) < 200_000)
    assert close > 0
    assert scan.n_pairs == m * (m - 1) // 2 - close == len(scan.pairs)
    same = scan.pairs.chrom_a == scan.pairs.chrom_b
    assert (np.abs(scan.pairs.pos_a - scan.pairs.pos_b)[same] >= 200_000).all()


def test_bad_input(product_cohort, tmp_path):
    g, y, cov, _ = product_cohort
    with pytest.raises(InputError, match="phenotype"):
        pair_scan(g, y[:-1], progress=False)
    with pytest.raises(InputError, match="samples"):
        pair_scan(g, y, cov, samples=[0, 1, 2, 3], progress=False)
    with pytest.raises(InputError, match="variance"):
        pair_scan(g, np.ones_like(y), progress=False)
    # a variant without any call among the samples scanned is named
    from gwaslift.io.writer import write_plink

    x = g.read_dosage(0, 5).astype(np.float32)
    x[:, 2] = np.nan
    write_plink(tmp_path / "miss", x, g.samples, g.variants.iloc[:5])
    gm = read_plink(tmp_path / "miss")
    with pytest.raises(InputError, match=str(g.variants.snp[2])):
        pair_scan(gm, y, progress=False)
