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
