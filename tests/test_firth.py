"""gwaslift.firth: Firth's penalized logistic fit against its definition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from gwaslift.firth import firth_logistic


def _data(n=400, seed=5):
    """Covariates in their own units and four genotypes: one carrier (a case), carriers of
    genotype 2 only among cases (quasi-separation), a rare variant in both classes, and
    one whose controls are all homozygous A1 (controls carry no other allele)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=n)
    y = (rng.random(n) < expit(0.5 * c)).astype(float)
    cases, ctrls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    G = np.zeros((n, 4))
    G[cases[:1], 0] = 1
    G[:, 1] = np.where(y == 1, rng.choice([1, 2], n), rng.choice([0, 1], n))
    G[cases[:2], 2] = 1
    G[ctrls[:1], 2] = 1
    G[:, 3] = 2
    G[cases[:3], 3] = 1
    X0 = np.column_stack([np.ones(n), c, 30 + 10 * rng.normal(size=n)])  # an age-like column
    return X0, G, y


def _neg_penalized(theta, X, y):
    """-(log-likelihood + 1/2 log det X'WX), written from the definition."""
    eta = X @ theta
    w = expit(eta) * (1 - expit(eta))
    return -(y @ eta - np.logaddexp(0, eta).sum() + 0.5 * np.linalg.slogdet((X * w[:, None]).T @ X)[1])


@pytest.mark.parametrize("j", range(4))
def test_firth_fit_is_the_penalized_likelihood_maximum(j):
    """Against a general-purpose optimizer on the penalized likelihood; the SE from the
    information at the estimate; the same genotype estimate from an orthonormal covariate
    basis (what gwaslift.assoc passes)."""
    X0, G, y = _data()
    X = np.column_stack([X0, G[:, j]])
    theta, se, ok = firth_logistic(X, y, np.zeros(X.shape[1]))
    assert ok
    with np.errstate(invalid="ignore", over="ignore"):  # its trial points may overflow
        opt = minimize(_neg_penalized, np.zeros(X.shape[1]), args=(X, y), method="BFGS",
                       options={"gtol": 1e-9})
    assert _neg_penalized(theta, X, y) <= opt.fun + 1e-9
    np.testing.assert_allclose(theta[-1], opt.x[-1], atol=1e-4 * se)
    np.testing.assert_allclose(theta, opt.x, atol=1e-3)  # the covariates' coefficients too
    p = expit(X @ theta)
    info = (X * (p * (1 - p))[:, None]).T @ X
    np.testing.assert_allclose(se, np.sqrt(np.linalg.inv(info)[-1, -1]), rtol=1e-10)
    Q, _ = np.linalg.qr(X0)
    t2, se2, ok2 = firth_logistic(np.column_stack([Q, G[:, j]]), y, np.zeros(X.shape[1]))
    assert ok2
    np.testing.assert_allclose([t2[-1], se2], [theta[-1], se], rtol=1e-8)


def test_firth_fit_is_finite_where_maximum_likelihood_is_not():
    """One carrier, a case: the ML estimate is +infinity, Firth's is finite and positive."""
    X0, G, y = _data()
    theta, se, ok = firth_logistic(np.column_stack([X0, G[:, 0]]), y, np.zeros(4))
    assert ok and 0 < theta[-1] < 5 and 0 < se < 10


def test_singular_predictors_fail_cleanly():
    """A genotype column equal to the intercept: no fit, NaN, not an exception."""
    X0, _, y = _data()
    theta, se, ok = firth_logistic(np.column_stack([X0, np.ones(len(y))]), y, np.zeros(4))
    assert not ok and np.isnan(theta).all() and np.isnan(se)


def _batch_inputs(X0, G, miss_frac=0.0, seed=0):
    """firth_logistic_batch's inputs: an orthonormal basis of X0, its triangle products and
    observed masks (``miss_frac`` of the calls missing)."""
    from gwaslift.firth import firth_logistic_batch  # noqa: F401  (the function under test)

    Q, _ = np.linalg.qr(X0)
    tri = np.triu_indices(Q.shape[1])
    K = Q[:, tri[0]] * Q[:, tri[1]]
    M = (np.random.default_rng(seed).random(G.shape) >= miss_frac).astype(float)
    return Q, K, tri, M


@pytest.mark.parametrize("miss_frac", [0.0, 0.05])
def test_batch_equals_one_variant_at_a_time(miss_frac):
    """The batched fit (what gwaslift.assoc runs) equals firth_logistic variant by variant,
    each on its observed samples; a variant that is a combination of the covariates fails."""
    from gwaslift.firth import firth_logistic_batch

    X0, G, y = _data()
    G = np.column_stack([G, X0[:, 1], np.random.default_rng(3).binomial(2, 0.3, len(y))]).T
    Q, K, tri, M = _batch_inputs(X0, G, miss_frac)
    M[:4][G[:4] != 0] = 1.0  # keep the rare variants' carriers observed (else monomorphic)
    a0 = np.zeros(Q.shape[1])
    beta, se, ok = firth_logistic_batch(Q, G, M if miss_frac else None, y, a0, K, tri)
    assert list(ok) == [True] * 4 + [False, True]  # G[4] is covariate c itself
    assert np.isnan(beta[4]) and np.isnan(se[4])
    for b in np.flatnonzero(ok):
        rows = M[b] > 0
        theta, s, okb = firth_logistic(np.column_stack([Q[rows], G[b, rows]]), y[rows], np.append(a0, 0.0))
        assert okb
        np.testing.assert_allclose([beta[b], se[b]], [theta[-1], s], rtol=1e-8)


def test_rare_variants_converge_at_biobank_like_sample_counts():
    """10,000 samples, minor allele counts 1-40: near the maximum l* (~6,000) changes by less
    than its rounding, where a first version stalled and reported failures."""
    from gwaslift.firth import firth_logistic_batch

    rng = np.random.default_rng(11)
    n = 10_000
    X0 = np.column_stack([np.ones(n), rng.normal(size=(n, 4))])
    y = (rng.random(n) < expit(-0.8 + 0.4 * X0[:, 1])).astype(float)
    G = np.zeros((24, n))
    for b, mac in enumerate(np.linspace(1, 40, 24).astype(int)):
        G[b, rng.choice(n, mac, replace=False)] = 1.0
    Q, K, tri, _ = _batch_inputs(X0, G)
    beta, se, ok = firth_logistic_batch(Q, G, None, y, np.zeros(5), K, tri)
    assert ok.all() and np.isfinite(beta).all() and (se > 0).all()
    for b in (0, 7, 23):
        theta, s, okb = firth_logistic(np.column_stack([X0, G[b]]), y, np.zeros(6))
        assert okb
        np.testing.assert_allclose([beta[b], se[b]], [theta[-1], s], rtol=1e-7)


@pytest.mark.parametrize("miss_frac", [0.0, 0.05])
def test_batch_kernels_equal_numpy_path(miss_frac, monkeypatch):
    """The batch fit's numba passes (likelihood, information, modified score through the
    inverse Cholesky factor) give the numpy path's estimates, on the separated and
    quasi-separated variants of _data, with and without missing calls."""
    from gwaslift import firth

    X0, G, y = _data()
    G = np.column_stack([G, np.random.default_rng(4).binomial(2, 0.2, len(y))]).T
    Q, K, tri, M = _batch_inputs(X0, G, miss_frac, seed=1)
    M[:4][G[:4] != 0] = 1.0
    a0 = np.zeros(Q.shape[1])
    assert firth.FIRTH_PASS1.get() is not None and firth.FIRTH_PASS2.get() is not None
    fast = firth.firth_logistic_batch(Q, G, M if miss_frac else None, y, a0, K, tri)
    monkeypatch.setattr(firth.FIRTH_PASS1, "_fn", False)
    ref = firth.firth_logistic_batch(Q, G, M if miss_frac else None, y, a0, K, tri)
    np.testing.assert_array_equal(fast[2], ref[2])
    assert fast[2].all()
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-9, atol=1e-9 * fast[1].max())
    np.testing.assert_allclose(fast[1], ref[1], rtol=1e-9)


def test_kernel_log1p_is_accurate():
    """The kernels' log(1 + e) on [0, 1] (e = exp(-|eta|)): within 4 ulp of numpy's log1p,
    down to tiny e where 1 + e rounds."""
    import numba as nb

    from gwaslift._assoc_kernels import _log1p_unit

    f = nb.njit(lambda e: np.array([_log1p_unit(v) for v in e]))
    e = np.concatenate([np.linspace(0, 1, 200_001), np.geomspace(1e-300, 1e-3, 10_000),
                        [np.sqrt(2) - 1, np.nextafter(np.sqrt(2) - 1, 1)]])
    ref = np.log1p(e)
    got = f(e)
    assert got[0] == 0.0
    assert (np.abs(got - ref) <= 4 * np.spacing(ref)).all()
