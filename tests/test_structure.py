"""gwaslift.pca against plink2 --pca and an exact numpy eigendecomposition.

The structured cohort is a Balding-Nichols simulation made here (4 populations of unequal
sizes, so 3 PCs carry structure with clear gaps), written with gwaslift.write_plink.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gwaslift
from gwaslift.structure import (
    blas_threads,
    decode_standardized,
    flip_signs,
    standardization_table,
)

N_STRUCT = 3  # PCs with a clear eigengap in the cohort below (checked in the tests)


def balding_nichols(sizes, fst, m, seed, missing=0.0, n_monomorphic=0):
    """Genotypes (n, m) float32 A1 dosages (NaN missing) and the sample/variant tables."""
    rng = np.random.default_rng(seed)
    anc = rng.uniform(0.05, 0.95, m)
    blocks = []
    for size, f in zip(sizes, fst):
        c = (1 - f) / f
        p = rng.beta(anc * c, (1 - anc) * c)
        blocks.append(rng.binomial(2, p, size=(size, m)).astype(np.float32))
    g = np.vstack(blocks)
    g[:, :n_monomorphic] = 2.0  # monomorphic variants: plink2 still counts them in M
    if missing:
        g[rng.random(g.shape) < missing] = np.nan
    n = g.shape[0]
    samples = pd.DataFrame({
        "fid": np.repeat([f"pop{i}" for i in range(len(sizes))], sizes),
        "iid": [f"s{i}" for i in range(n)],
    })
    variants = pd.DataFrame({
        "chrom": "1", "snp": [f"rs{j}" for j in range(m)], "cm": 0.0,
        "pos": np.arange(1, m + 1) * 100, "a1": "A", "a2": "C",
    })
    return g, samples, variants


SIZES, FST = [220, 170, 130, 80], [0.02, 0.04, 0.06, 0.08]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, plink2):
    """(prefix, dosage) of 600 x 3000 without missing calls, and plink2 --pca 5 outputs."""
    d = tmp_path_factory.mktemp("pca")
    g, s, v = balding_nichols(SIZES, FST, 3000, seed=11, n_monomorphic=20)
    gwaslift.write_plink(d / "c", g, s, v)
    plink2("--bfile", d / "c", "--pca", "5", "--out", d / "c")
    return d / "c", g


@pytest.fixture(scope="module")
def cohort_missing(tmp_path_factory, plink2):
    """The same design with 2% missing calls, and plink2 --pca 5 meanimpute outputs."""
    d = tmp_path_factory.mktemp("pca_missing")
    g, s, v = balding_nichols(SIZES, FST, 3000, seed=12, missing=0.02)
    gwaslift.write_plink(d / "m", g, s, v)
    plink2("--bfile", d / "m", "--pca", "5", "meanimpute", "--out", d / "m")
    plink2("--bfile", d / "m", "--pca", "5", "--out", d / "m_default")
    return d / "m", g


def read_plink2_pca(prefix):
    vec = pd.read_csv(f"{prefix}.eigenvec", sep="\t")
    val = np.loadtxt(f"{prefix}.eigenval")
    return vec, val


def exact_pca(dosage, k):
    """Reference: mean-imputed standardized genotypes, eigh of X X^T / M (float64)."""
    d = np.asarray(dosage, dtype=np.float64)
    p = np.nanmean(d, axis=0) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (d - 2 * p) / np.sqrt(2 * p * (1 - p))
    x[~np.isfinite(x)] = 0.0
    w, v = np.linalg.eigh(x @ x.T / d.shape[1])
    return w[::-1][:k], v[:, ::-1][:, :k], np.trace(x @ x.T) / d.shape[1]


def pcs(df):
    return df[[c for c in df.columns if c.startswith("PC")]].to_numpy()


def abs_corr(a, b):
    return abs(np.corrcoef(a, b)[0, 1])


def test_matches_plink2_pca(cohort):
    prefix, _ = cohort
    g = gwaslift.read_plink(prefix)
    res = gwaslift.pca(g, k=5)
    vec, val = read_plink2_pca(prefix)
    # the test is only meaningful for PCs standing clear of the noise bulk
    assert val[N_STRUCT - 1] > 2 * val[N_STRUCT]
    assert list(res.columns) == ["fid", "iid", "PC1", "PC2", "PC3", "PC4", "PC5"]
    assert res.index.equals(g.samples.index)
    assert (res["iid"].to_numpy() == vec["IID"].astype(str).to_numpy()).all()
    for i in range(1, N_STRUCT + 1):
        assert abs_corr(res[f"PC{i}"], vec[f"PC{i}"]) >= 0.9999
        # same unit scale as plink2's eigenvectors, up to sign
        assert np.abs(np.abs(res[f"PC{i}"]) - np.abs(vec[f"PC{i}"])).max() < 1e-4
    ev = np.array(res.attrs["eigenvalues"])
    np.testing.assert_allclose(ev[:N_STRUCT], val[:N_STRUCT], rtol=1e-4)
    assert res.attrs["n_variants"] == 3000 and res.attrs["n_polymorphic"] == 2980


def test_matches_exact_eigendecomposition(cohort):
    prefix, dosage = cohort
    res = gwaslift.pca(gwaslift.read_plink(prefix), k=5)
    w, v, trace = exact_pca(dosage, 5)
    np.testing.assert_allclose(res.attrs["eigenvalues"][:N_STRUCT], w[:N_STRUCT], rtol=1e-5)
    np.testing.assert_allclose(res.attrs["variance_explained"][:N_STRUCT], w[:N_STRUCT] / trace, rtol=1e-5)
    got = pcs(res)
    np.testing.assert_allclose(np.abs(got[:, :N_STRUCT]), np.abs(v[:, :N_STRUCT]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got.T @ got, np.eye(5), atol=1e-6)


def test_missing_calls_mean_imputed_like_plink2(cohort_missing):
    prefix, dosage = cohort_missing
    assert np.isnan(dosage).mean() > 0.015
    res = gwaslift.pca(gwaslift.read_plink(prefix), k=5)
    vec, val = read_plink2_pca(prefix)  # --pca meanimpute: the same estimator as ours
    assert val[N_STRUCT - 1] > 2 * val[N_STRUCT]
    np.testing.assert_allclose(res.attrs["eigenvalues"][:N_STRUCT], val[:N_STRUCT], rtol=1e-4)
    for i in range(1, N_STRUCT + 1):
        assert abs_corr(res[f"PC{i}"], vec[f"PC{i}"]) >= 0.9999
    # plink2's default (pairwise-missingness) GRM gives the same leading axes
    vec_d, _ = read_plink2_pca(f"{prefix.parent / 'm_default'}")
    for i in range(1, N_STRUCT + 1):
        assert abs_corr(res[f"PC{i}"], vec_d[f"PC{i}"]) >= 0.99


def test_full_krylov_space_equals_plink2_on_dummy(dummy_bfile, plink2, tmp_path):
    """plink2 --dummy data (5% missing, 203 samples: padded last byte): no structure, but a
    basis that fills the whole sample space makes the Ritz step exact for every PC."""
    plink2("--bfile", dummy_bfile, "--pca", "6", "meanimpute", "--out", tmp_path / "d")
    vec, val = read_plink2_pca(tmp_path / "d")
    res = gwaslift.pca(gwaslift.read_plink(dummy_bfile), k=6, n_iter=3, oversample=100)
    np.testing.assert_allclose(res.attrs["eigenvalues"], val, rtol=1e-5)
    for i in range(1, 7):
        assert abs_corr(res[f"PC{i}"], vec[f"PC{i}"]) >= 0.9999


def test_independent_of_variant_chunk(cohort):
    prefix, _ = cohort
    ref = gwaslift.pca(gwaslift.read_plink(prefix), k=4)
    for chunk in (37, 1000, 5000):
        other = gwaslift.pca(gwaslift.read_plink(prefix, variant_chunk=chunk), k=4)
        # float32 partial sums group differently; nothing else changes
        np.testing.assert_allclose(pcs(other), pcs(ref), atol=1e-6)
        np.testing.assert_allclose(other.attrs["eigenvalues"], ref.attrs["eigenvalues"], rtol=1e-6)


def test_same_seed_same_result_other_seed_same_leading_pcs(cohort):
    prefix, _ = cohort
    g = gwaslift.read_plink(prefix)
    a = gwaslift.pca(g, k=4, seed=3)
    b = gwaslift.pca(g, k=4, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs == b.attrs
    c = gwaslift.pca(g, k=4, seed=4)
    assert not np.array_equal(pcs(a), pcs(c))  # the seed is really used ...
    # ... and the leading PCs do not depend on it (same sign rule, same values)
    np.testing.assert_allclose(pcs(a)[:, :N_STRUCT], pcs(c)[:, :N_STRUCT], atol=1e-5)


def test_sample_subset_equals_written_subset(cohort, tmp_path):
    prefix, _ = cohort
    g = gwaslift.read_plink(prefix)
    rng = np.random.default_rng(0)
    sub = g.subset(samples=rng.permutation(g.n_samples)[:401])  # shuffled, 401 % 4 == 1
    res = gwaslift.pca(sub, k=3)
    gwaslift.write_plink(tmp_path / "sub", sub)
    ref = gwaslift.pca(gwaslift.read_plink(tmp_path / "sub"), k=3)
    assert (res["iid"].to_numpy() == sub.samples["iid"].to_numpy()).all()
    np.testing.assert_allclose(pcs(res), pcs(ref), atol=1e-6)


def test_ld_thin_keeps_every_sth_variant(cohort):
    prefix, dosage = cohort
    g = gwaslift.read_plink(prefix)
    res = gwaslift.pca(g, k=3, ld_thin=3, n_iter=10)
    assert res.attrs["n_variants"] == 1000 and res.attrs["ld_thin"] == 3
    same = gwaslift.pca(g.subset(variants=np.arange(0, 3000, 3)), k=3, n_iter=10)
    np.testing.assert_array_equal(pcs(res), pcs(same))
    # 1000 variants for 600 samples: the noise bulk sits closer, hence n_iter=10
    w, v, _ = exact_pca(dosage[:, ::3], 3)
    np.testing.assert_allclose(res.attrs["eigenvalues"], w, rtol=1e-5)
    np.testing.assert_allclose(np.abs(pcs(res)), np.abs(v), atol=1e-5)


def test_runs_on_distributed_cluster(cohort):
    import distributed
    prefix, _ = cohort
    g = gwaslift.read_plink(prefix, variant_chunk=700)
    local = gwaslift.pca(g, k=3)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        remote = gwaslift.pca(g, k=3)
    np.testing.assert_allclose(pcs(remote), pcs(local), atol=1e-6)
    np.testing.assert_allclose(remote.attrs["eigenvalues"], local.attrs["eigenvalues"], rtol=1e-6)


def test_sign_convention():
    u = np.array([[0.1, -0.2], [-0.9, 0.3], [0.2, -0.5]])
    f = flip_signs(u)
    np.testing.assert_array_equal(f[:, 0], -u[:, 0])
    np.testing.assert_array_equal(f[:, 1], -u[:, 1])
    assert (f[np.argmax(np.abs(f), axis=0), [0, 1]] > 0).all()


def code_counts(packed, n, idx=None):
    """Per-variant counts of codes 0..3 (hom A1, missing, het, hom A2) from the QC kernel."""
    from gwaslift.qc import count_packed

    return count_packed(packed, n, idx)[0][:, [0, 3, 1, 2]]


def test_kernels_match_decoded_dosage(dummy_bfile):
    g = gwaslift.read_plink(dummy_bfile)
    n = g.source.n_samples
    packed = g.read_packed(0, g.n_variants)
    dos = g.read_dosage(0, g.n_variants)  # (samples, variants), NaN missing
    counts = code_counts(packed, n)
    np.testing.assert_array_equal(counts[:, 0], (dos == 2).sum(0))
    np.testing.assert_array_equal(counts[:, 1], np.isnan(dos).sum(0))
    np.testing.assert_array_equal(counts[:, 2], (dos == 1).sum(0))
    np.testing.assert_array_equal(counts[:, 3], (dos == 0).sum(0))
    idx = np.array([200, 3, 3, 17, 0])
    np.testing.assert_array_equal(code_counts(packed, n, idx)[:, 1], np.isnan(dos[idx]).sum(0))
    values, sumsq = standardization_table(counts)
    x = decode_standardized(packed, values, n)[:, :n].T
    p = np.nanmean(dos, axis=0) / 2
    ref = np.nan_to_num((dos - 2 * p) / np.sqrt(2 * p * (1 - p)), nan=0.0)
    np.testing.assert_allclose(x, ref, atol=1e-5)
    np.testing.assert_allclose(sumsq, (ref.astype(np.float64) ** 2).sum(0), rtol=1e-5)
    np.testing.assert_allclose(decode_standardized(packed, values, n, idx).T, ref[idx], atol=1e-5)


def test_monomorphic_and_all_missing_variants_contribute_zero():
    counts = np.array([[10, 0, 0, 0], [0, 7, 0, 0], [0, 0, 4, 4]])
    values, sumsq = standardization_table(counts)
    assert not values[0].any() and not values[1].any() and sumsq[0] == sumsq[1] == 0
    # p = 0.25 for the third: het -> (1 - 0.5) / sqrt(0.375), hom A2 -> -0.5 / sqrt(0.375)
    np.testing.assert_allclose(values[2], np.array([1.5, 0, 0.5, -0.5]) / np.sqrt(0.375), rtol=1e-6)


def test_blas_threads_limits_and_restores():
    import ctypes

    with open("/proc/self/maps") as fh:
        path = next(line.split()[-1] for line in fh if "numpy.libs" in line and "openblas" in line)
    from gwaslift._util import _openblas_thread_functions

    get, _ = _openblas_thread_functions(ctypes.CDLL(path))
    before = get()
    with blas_threads(1):
        assert get() == 1
        a = np.ones((50, 50)) @ np.ones((50, 50))
    assert get() == before and a[0, 0] == 50


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k must be >= 1"),
    ({"k": 2.5}, "k must be an integer"),
    ({"k": 203}, "more than k samples"),
    ({"k": 3, "n_iter": 0}, "n_iter must be >= 1"),
    ({"k": 3, "oversample": -1}, "oversample must be >= 0"),
    ({"k": 3, "ld_thin": 0}, "ld_thin must be >= 1"),
    ({"k": 30, "ld_thin": 5}, "at least k variants"),
])
def test_bad_arguments(dummy_bfile, kwargs, match):
    g = gwaslift.read_plink(dummy_bfile)
    with pytest.raises(gwaslift.InputError, match=match):
        gwaslift.pca(g, **kwargs)


def test_bad_inputs(tmp_path):
    with pytest.raises(gwaslift.InputError, match="Genotypes"):
        gwaslift.pca(np.zeros((10, 10)), k=2)
    g, s, v = balding_nichols([20], [0.05], 30, seed=1)
    g[:, :] = 0.0  # all monomorphic
    g[:5, :2] = 1.0  # two polymorphic variants only
    gwaslift.write_plink(tmp_path / "mono", g, s, v)
    with pytest.raises(gwaslift.InputError, match="only 2 polymorphic variants"):
        gwaslift.pca(gwaslift.read_plink(tmp_path / "mono"), k=3)
