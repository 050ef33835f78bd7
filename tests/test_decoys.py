"""Decoy SNPs (gwaslift.decoys) and the decoy null of the DeepLIFT scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gwaslift import InputError, read_plink, write_plink
from gwaslift.attribution import (DecoyScores, DeepLiftResult, attribution_decoys, decoy_calibrate, decoy_tail,
                                  deeplift)
from gwaslift.decoys import DECOY_PREFIX, DecoySource, is_decoy, with_decoys


def _fileset(tmp_path, n=203, m=40, seed=0, missing=0.05):
    rng = np.random.default_rng(seed)
    dos = rng.binomial(2, rng.uniform(0.05, 0.5, m), size=(n, m)).astype(np.float32)
    dos[rng.random((n, m)) < missing] = np.nan
    samples = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)],
                            "father": "0", "mother": "0", "sex": 0, "trait": -9})
    variants = pd.DataFrame({"chrom": "1", "snp": [f"rs{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(1, m + 1) * 100, "a1": "A", "a2": "C"})
    write_plink(tmp_path / "g", dos, samples, variants)
    return read_plink(tmp_path / "g"), dos


def _expected_decoys(gd, dos_file):
    """Decoy dosages computed from the definition: decoy i of selected sample j is the source
    SNP's dosage of file sample perm[file index of j]."""
    src: DecoySource = gd.source
    m = gd.meta["n_real"]
    file_rows = src.perm[gd.sample_idx]
    return dos_file[file_rows][:, src.decoy_of], m


def test_decoys_are_sample_permuted_copies(tmp_path):
    g, dos = _fileset(tmp_path)
    gd = with_decoys(g, n_decoys=15, seed=3)
    assert gd.n_variants == 55 and gd.meta["n_decoys"] == 15
    got = gd.dosage.compute()
    exp, m = _expected_decoys(gd, dos)
    np.testing.assert_array_equal(got[:, :m], dos)  # real SNPs untouched
    np.testing.assert_array_equal(got[:, m:], exp)
    # a permutation of the samples: each decoy has its source's genotype counts, missing included
    for i, s in enumerate(gd.source.decoy_of):
        a, b = np.nan_to_num(got[:, m + i], nan=-1), np.nan_to_num(dos[:, s], nan=-1)
        assert np.array_equal(np.sort(a), np.sort(b))
    # one shared permutation, not the identity
    assert not np.array_equal(gd.source.perm, np.arange(g.n_samples))
    assert (gd.variants.snp.iloc[m:] == DECOY_PREFIX + g.variants.snp.iloc[gd.source.decoy_of].to_numpy()).all()
    assert is_decoy(gd.variants.snp).sum() == 15
    # chunking and subsets read the same bytes
    np.testing.assert_array_equal(gd.with_chunks(7).dosage.compute(), got)
    np.testing.assert_array_equal(gd.subset(variants=np.arange(m, m + 15)).read_dosage(0, 15), exp)
    # same seed, same decoys; another seed, others
    np.testing.assert_array_equal(with_decoys(g, 15, seed=3).dosage.compute(), got)
    assert not np.array_equal(with_decoys(g, 15, seed=4).source.perm, gd.source.perm)


def test_decoys_permute_only_the_selected_samples(tmp_path):
    g, dos = _fileset(tmp_path)
    keep = np.arange(0, g.n_samples, 3)
    gs = g.subset(samples=keep)
    gd = with_decoys(gs, seed=1)
    perm = gd.source.perm
    outside = np.setdiff1d(np.arange(g.n_samples), keep)
    assert np.array_equal(perm[outside], outside)
    assert np.array_equal(np.sort(perm[keep]), keep)
    exp, m = _expected_decoys(gd, dos)
    np.testing.assert_array_equal(gd.dosage.compute()[:, m:], exp)


def test_with_decoys_rejects_bad_requests(tmp_path):
    g, _ = _fileset(tmp_path)
    for bad in (0, 41, -1):
        with pytest.raises(InputError, match="n_decoys"):
            with_decoys(g, n_decoys=bad)
    with pytest.raises(InputError, match="already"):
        with_decoys(with_decoys(g, 5), 5)


def _result(n):
    return DeepLiftResult(scores=pd.DataFrame({"snp": [f"s{i}" for i in range(n)]}), covariates=None,
                          members=None, max_delta_error=0.0, member_mean_abs=None, member_mean=None,
                          samples=None, rule="rescale", reference="mean", top_k=10)


def test_decoy_calibrate_empirical_and_tail_pvalues():
    """Decoys ~ Exp(1): null SNPs get uniform p, far SNPs the tail extrapolation exp(-s)."""
    from scipy import stats

    rng = np.random.default_rng(0)
    d = 4000
    decoy = rng.exponential(size=d)
    null_real = rng.exponential(size=3000)
    far = np.array([9.0, 12.0, 15.0])
    real = np.concatenate([np.zeros(5), null_real, far])
    dec = DecoyScores(real=real, decoy=decoy, decoy_of=[], seeds=[0], seed=0)
    res = decoy_calibrate(_result(len(real)), dec, alpha=0.05)
    p = res.scores["deeplift_p"].to_numpy()
    assert (p[:5] == 1).all()
    # the p-values of the nulls are uniform up to the decoys' own sampling error (a two-sample
    # comparison: one fixed set of 4,000 decoys), checked loosely
    pn = p[5:3005]
    assert 0.45 < pn.mean() < 0.55 and 0.03 < (pn < 0.05).mean() < 0.07
    assert stats.kstest(pn, "uniform").statistic < 0.06
    # exact empirical p while 10+ decoys lie above; monotone in the score
    order = np.argsort(real)
    assert np.all(np.diff(p[order]) <= 1e-12)
    tail = res.null.tail
    assert tail["n_exc"] == 250 and abs(tail["xi"]) < 0.3
    # extrapolated beyond the largest decoy (p_true = exp(-s) down to 3e-7): the right order
    # of magnitude, erring on the conservative side with this draw
    for s, ps in zip(far, p[-3:]):
        assert np.exp(-s) / 3 < ps < np.exp(-s) * 10, (s, ps)
    # Bonferroni threshold: exp(-t) = alpha / n_snps
    assert res.fwer_threshold == pytest.approx(np.log(len(real) / 0.05), abs=1.5)
    fw = res.scores["deeplift_fwer"].to_numpy()
    assert not fw[:-3].any() and not fw[-3] and fw[-1]
    assert res.scores["deeplift_fdr"].to_numpy()[-2:].all()  # q(9) = e^-9 * 3008 / 3 ~ 0.12: not
    assert res.scores["deeplift_fdr"].to_numpy()[:3005].sum() <= 5
    with pytest.raises(InputError, match="SNPs"):
        decoy_calibrate(_result(3), dec)


def test_decoy_tail_needs_enough_positive_decoys():
    assert decoy_tail(np.r_[np.zeros(900), np.arange(1.0, 101.0)]) is not None
    assert decoy_tail(np.r_[np.zeros(990), np.arange(1.0, 11.0)]) is None  # too few: empirical p only
    res = decoy_calibrate(_result(2), DecoyScores(real=np.array([0.0, 50.0]), decoy=np.r_[np.zeros(990), np.arange(1.0, 11.0)],
                                                  decoy_of=[], seeds=[], seed=0))
    assert res.fwer_threshold is None and res.scores["deeplift_p"].tolist() == [1.0, 1 / 1001]


def test_decoy_null_is_calibrated_under_real_signal(tmp_path):
    """Strong additive signal and an L1 network: SNPs without effect must not get small
    p-values, the causal ones must. (On these data permuted-phenotype p-values of raw scores
    put 64% of the SNPs without effect below 0.05; see the README.)"""
    from gwaslift.deep import train

    n, m = 1200, 400
    g, dos = _fileset(tmp_path, n=n, m=m, seed=5, missing=0.0)
    rng = np.random.default_rng(5)
    causal = rng.choice(m, 6, replace=False)
    x = dos[:, causal] - dos[:, causal].mean(0)
    y = x @ rng.choice([-1.0, 1.0], 6) * 0.5 + rng.normal(size=n)
    fit = train(g, y, hidden=[(16, 16)], l1=[2.0], seeds=[0], refit_seeds=[1, 2], epochs=40, patience=5,
                batch_size=64, lr=0.005, device="cpu", progress=False)
    dec = attribution_decoys(g, y, fit, seed=0)
    assert len(dec.decoy) == m and dec.seeds == [1, 2]
    assert (dec.metrics["n_active_decoys"] > 0).all()  # decoys were trained, not pruned up front
    res = deeplift(fit, g, null=dec)
    sc = res.scores
    is_causal = np.isin(np.arange(m), causal)
    p_null = sc["deeplift_p"].to_numpy()[~is_causal]
    assert (p_null < 0.05).mean() <= 0.1, np.sort(p_null)[:20]
    assert not sc["deeplift_fwer"].to_numpy()[~is_causal].any()
    assert sc["deeplift_fdr"].to_numpy()[is_causal].sum() >= 3
    assert "deeplift_decoy_fit" in sc and sc.snp.tolist() == g.variants.snp.tolist()


def test_decoys_of_a_variant_subset(tmp_path):
    """After QC the genotypes are a subset of the file's variants: decoys come from those only."""
    g, dos = _fileset(tmp_path)
    keep = np.array([1, 4, 5, 9, 17, 30, 31, 39])
    gd = with_decoys(g.subset(variants=keep), seed=2)
    assert set(gd.source.decoy_of) == set(keep) and gd.n_variants == 16
    got = gd.dosage.compute()
    exp, m = _expected_decoys(gd, dos)
    np.testing.assert_array_equal(got[:, :m], dos[:, keep])
    np.testing.assert_array_equal(got[:, m:], exp)
