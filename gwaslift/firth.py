"""Firth's bias-reduced logistic regression for one variant (plink2 ``--glm firth-fallback``).

Where ordinary maximum likelihood has no finite answer (a genotype seen in cases only,
quasi-separation) or its Newton iterations do not converge, plink2 by default refits the
variant with Firth's penalized likelihood (Firth 1993; Heinze & Schemper 2002)::

    l*(theta) = sum_i [y_i log p_i + (1 - y_i) log(1 - p_i)] + 1/2 log det(X' W X)

``p = expit(X theta)``, ``W = diag(p (1 - p))``. Its maximum is always finite. Its exact
gradient is the modified score ``U* = X' (y - p + h (1/2 - p))``, ``h`` the diagonal of the
weighted hat matrix ``W^1/2 X (X'WX)^-1 X' W^1/2``. The fit (:func:`firth_logistic`) starts
with logistf's step ``(X'WX)^-1 U*`` and continues quasi-Newton (BFGS on ``U*``); a step is
capped so that no sample's log-odds moves by more than :data:`MAX_STEP`, and halved while
it does not raise ``l*``. The standard error is ``sqrt((X'WX)^-1)`` of the genotype at the
estimate, the Wald test as for ordinary logistic regression (plink2 does the same).

:func:`firth_logistic` fits one variant and is the reference; :func:`firth_logistic_batch`
fits many at once with the same iteration (what :mod:`gwaslift.assoc` runs) and equals it
to ~1e-15 (tests/test_firth.py).

The genotype's coefficient and standard error do not depend on how the covariate columns
are parametrized (``det(X'WX)`` only changes by a constant factor), so the caller may pass
the orthonormal covariate basis of :mod:`gwaslift.assoc` instead of ``[1, covariates]``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.special import expit

from ._util import LazyKernel

#: Largest change of any sample's log-odds in one step (logistf caps each coefficient at
#: 5 instead, which depends on the predictors' units: in the orthonormal covariate basis an
#: intercept coefficient is sqrt(n) times the intercept, and that cap stalled the fit).
MAX_STEP = 5.0
#: Converged where every score is below this many square roots of its information.
GTOL = 1e-9
#: Where no step helps any more, the fit has converged if its score is below this.
ROUNDING_GTOL = 1e-6
#: Relative rounding of l* (a sum over samples): a change this small is no change.
PEN_ROUNDING = 1e-12
#: Step halvings allowed per iteration before the fit counts as failed.
MAX_HALVINGS = 25


def _import_kernels():
    from . import _assoc_kernels
    return _assoc_kernels


#: The numba kernels of one evaluation in :func:`firth_logistic_batch` (None from ``get()``
#: where they cannot be loaded: its numpy path runs, the same arithmetic).
FIRTH_PASS1 = LazyKernel(lambda: _import_kernels(), "firth_pass1")
FIRTH_PASS2 = LazyKernel(lambda: _import_kernels(), "firth_pass2")
_ALL_OBSERVED = np.zeros((0, 0))


def _state(X, y, theta):
    """(l*, U*, Cholesky factor of X'WX) at theta; None where X'WX is not positive definite.

    ``U* = X' (y - p + h (1/2 - p))`` is the exact gradient of ``l*``."""
    eta = X @ theta
    p = expit(eta)
    w = p * (1.0 - p)
    H = (X * w[:, None]).T @ X
    try:
        cf = cho_factor(H, lower=True, check_finite=True)
    except (LinAlgError, ValueError):
        return None
    # y log p + (1-y) log(1-p) = y eta - log(1 + e^eta), without overflow (this form is
    # 5x faster than np.logaddexp)
    loglik = float(y @ eta - (np.log1p(np.exp(-np.abs(eta))) + np.maximum(eta, 0.0)).sum())
    pen = loglik + float(np.log(np.diag(cf[0])).sum())
    # X (X'WX)^-1 (n, p) through the small inverse: one GEMM, 10x faster than solving
    # for the n right-hand sides X' (measured at n = 10,000, p = 12)
    XH = X @ cho_solve(cf, np.eye(len(theta)))
    h = w * np.einsum("ij,ij->i", XH, X)       # hat diagonal
    U = X.T @ (y - p + h * (0.5 - p))
    return pen, U, cf


def _scaled_score(U, cf) -> float:
    """max |U*_j| / sqrt((X'WX)_jj): the score in standard-error units (scale-free)."""
    L = np.tril(cf[0])
    return float(np.max(np.abs(U) / np.sqrt((L * L).sum(axis=1))))


def firth_logistic(X: np.ndarray, y: np.ndarray, theta0: np.ndarray, max_iter: int = 200,
                   gtol: float = GTOL) -> tuple[np.ndarray, float, bool]:
    """Firth's penalized maximum-likelihood logistic fit.

    Parameters
    ----------
    X : (n, p) float64
        Predictors of the samples used (intercept or covariate basis first, the genotype's
        A1 dosage last).
    y : (n,) float64, 0/1
    theta0 : (p,) start (the covariate-only fit with a genotype coefficient of 0 is good)
    max_iter : iterations allowed
    gtol : converged when every component of the gradient ``U*`` is at most ``gtol``
        times the square root of its diagonal element of ``X'WX`` (a score in standard-
        error units; the estimate is then within ~``100 gtol`` standard errors of the
        maximum even where the penalty's curvature is 100 times below ``X'WX``'s)

    Returns
    -------
    theta (p,), the standard error of the last coefficient, and whether it converged
    (not converged: theta and the SE are NaN).

    The iteration is quasi-Newton: the first step is logistf's, ``(X'WX)^-1 U*``, and the
    curvature matrix then learns from each step's change of the exact gradient ``U*``
    (BFGS). Why not logistf's step throughout: ``X'WX`` ignores the penalty's curvature,
    which is all there is in the separated direction, so that iteration crawls (steps 1/60
    of the distance on a variant whose controls are all homozygous A1: hundreds of
    iterations) or oscillates around the maximum; BFGS took 8-30 there.
    """
    X = np.array(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    theta = np.array(theta0, dtype=np.float64)
    failed = np.full_like(theta, np.nan), float("nan"), False
    # fit with the last column's part orthogonal to the others (the same model: its
    # coefficient and SE do not change, the others shift by a * beta): a common or nearly
    # fixed genotype (A1 frequency 0.9999) is otherwise nearly collinear with the
    # intercept, and X'WX so ill-conditioned that U* has no digits left near the maximum
    a = np.linalg.lstsq(X[:, :-1], X[:, -1], rcond=None)[0]
    norm = np.linalg.norm(X[:, -1])
    X[:, -1] -= X[:, :-1] @ a
    if not np.linalg.norm(X[:, -1]) > 1e-10 * norm:
        return failed  # the last column is a combination of the others: no estimate
    theta[:-1] += a * theta[-1]
    cur = _state(X, y, theta)
    if cur is None:
        return failed
    L0 = np.tril(cur[2][0])
    B = L0 @ L0.T                        # curvature of -l*, starting from X'WX
    for _ in range(max_iter):
        pen, U, cf = cur
        score = _scaled_score(U, cf)
        if score <= gtol:
            break
        try:
            step = np.linalg.solve(B, U)
        except np.linalg.LinAlgError:
            return failed
        big = np.abs(X @ step).max()
        if not np.isfinite(big):
            return failed
        if big > MAX_STEP:
            step *= MAX_STEP / big
        # near the maximum l* changes by less than its rounding (from a score of ~1e-5 at
        # 10,000 samples): a step that leaves l* level to within that rounding is judged
        # by the score it leaves
        flat = PEN_ROUNDING * (abs(pen) + 1.0)
        for _ in range(MAX_HALVINGS + 1):
            new = _state(X, y, theta + step)
            if new is not None and (new[0] > pen or (
                    new[0] >= pen - flat and _scaled_score(new[1], new[2]) < score)):
                break
            step *= 0.5
        else:
            # no step helps: at the maximum to within rounding if the score is small
            if score <= ROUNDING_GTOL:
                break
            return failed
        dU = U - new[1]                  # the curvature seen along the step
        sy = step @ dU
        if sy > 0:
            Bs = B @ step
            B = B - np.outer(Bs, Bs) / (step @ Bs) + np.outer(dU, dU) / sy
        theta = theta + step
        cur = new
    else:
        return failed
    inv = cho_solve(cur[2], np.eye(len(theta))[:, -1])
    se = float(np.sqrt(inv[-1])) if inv[-1] > 0 else float("nan")
    theta[:-1] -= a * theta[-1]
    return (theta, se, True) if np.isfinite(se) else failed


def firth_logistic_batch(Q: np.ndarray, G: np.ndarray, M: np.ndarray | None, y: np.ndarray,
                         a0: np.ndarray, K, tri, max_iter: int = 200,
                         gtol: float = GTOL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`firth_logistic` for B variants at once that share the covariate basis.

    Parameters
    ----------
    Q : (n, c) covariate basis (its columns span the intercept and the covariates)
    G : (B, n) A1 dosages (any value where missing)
    M : (B, n) 1.0 where the call is observed, 0.0 where missing; None: all observed
    y : (n,) 0/1
    a0 : (c,) start of the covariate coefficients (the null fit)
    K : :class:`gwaslift.assoc.TriProducts` of Q (or the (n, T) array of the products
        ``Q[:, i] * Q[:, j]`` over the upper-triangle pairs ``tri``)
    max_iter, gtol : as :func:`firth_logistic`

    Returns
    -------
    beta (B,), se (B,) (NaN where not converged) and converged (B,) bool.

    The same iteration as :func:`firth_logistic`, each variant on its own (its own step
    lengths, curvature matrix and stopping point), but every sum over samples is one
    matrix product for all variants: ``Q' W Q`` is ``w @ K`` and the hat diagonal's
    covariate part is ``(Hinv entries) @ K'``. Why: per variant, the small numpy and LAPACK
    calls cost more than the arithmetic and hold the GIL (measured: 5.5 ms per variant at
    10,000 samples, and two threads no faster than one). Where numba loads, each
    evaluation's per-sample work is two GIL-free passes per variant instead
    (``_assoc_kernels.firth_pass1`` / ``firth_pass2``: likelihood and information, then the
    modified score with the hat diagonal as ``w_i ||L^-1 x_i||^2``); only ``Q' W Q`` and
    the small factorizations stay in numpy (2.5x faster on rare variants at 10,000
    samples; equal to the numpy path to ~1e-9, tested).
    """
    from .assoc import TriProducts, _weighted_grams
    from .assoc import _unpack_sym as _unpack  # (B, T) triangle values -> (B, c, c)

    Q = np.asarray(Q, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    B, n = G.shape
    c = Q.shape[1]
    p = c + 1
    ti, tj = tri
    products = K if isinstance(K, TriProducts) else TriProducts(Q, tri, np.asarray(K, dtype=np.float64))
    has_miss = M is not None
    QT = np.ascontiguousarray(Q.T)
    # the genotype's part orthogonal to the covariates on each variant's observed samples
    # (same beta and SE; conditioning, as in firth_logistic)
    if has_miss:
        M = np.asarray(M, dtype=np.float64)
        # as every Q' W Q here: the kernel where the products are not stored (at 500,000
        # samples and 42 covariates they would be formed chunk by chunk for this one product)
        QMQ = _unpack(_weighted_grams(M, products, QT), c, tri)
        Gm = np.where(M > 0, G, 0.0)
    else:
        QMQ = np.broadcast_to(Q.T @ Q, (B, c, c))
        Gm = np.asarray(G, dtype=np.float64)
    try:
        a = np.linalg.solve(QMQ, (Gm @ Q)[..., None])[..., 0]
    except np.linalg.LinAlgError:
        a = np.stack([np.linalg.lstsq(QMQ[b], Gm[b] @ Q, rcond=None)[0] for b in range(B)])
    Gp = Gm - a @ Q.T
    if has_miss:
        Gp *= M
    norm = np.sqrt((Gm * Gm).sum(axis=1))
    beta = np.full(B, np.nan)
    se = np.full(B, np.nan)
    done = np.zeros(B, bool)
    live = np.sqrt((Gp * Gp).sum(axis=1)) > 1e-10 * norm  # else: a combination of covariates
    # multiplicity of each upper-triangle entry in a quadratic form q' A q
    mult = np.where(ti == tj, 1.0, 2.0)

    pass1, pass2 = FIRTH_PASS1.get(), FIRTH_PASS2.get()

    def state(theta, Gr, Mr):
        """(pen, U, H, Hinv) at theta (b, p) for the variants with orthogonalized dosages
        Gr (b, n) and observed masks Mr (b, n) or None; pen NaN where H is not positive
        definite."""
        if pass1 is None or pass2 is None:
            return state_numpy(theta, Gr, Mr)
        b = len(Gr)
        Gr = np.ascontiguousarray(Gr)
        O = _ALL_OBSERVED if Mr is None else np.ascontiguousarray(Mr)
        loglik, Hgc, Hgg = np.empty(b), np.empty((b, c)), np.empty(b)
        W, P = np.empty((b, n)), np.empty((b, n))
        pass1(Gr, O, QT, y, np.ascontiguousarray(theta), loglik, Hgc, Hgg, W, P)
        H = np.empty((b, p, p))
        H[:, :c, :c] = _unpack(_weighted_grams(W, products, QT), c, tri)
        H[:, :c, c] = H[:, c, :c] = Hgc
        H[:, c, c] = Hgg
        pen = np.full(b, np.nan)
        L, ok = _cholesky(H)
        Linv = np.zeros_like(H)
        Linv[ok] = np.linalg.inv(L[ok])
        Hinv = np.einsum("bki,bkj->bij", Linv, Linv)  # (L L')^-1 = L^-T L^-1
        pen[ok] = loglik[ok] + np.log(np.einsum("bii->bi", L[ok])).sum(axis=1)
        U = np.empty((b, p))
        pass2(Gr, O, QT, y, P, W, Linv, U)
        return pen, U, H, Hinv

    def state_numpy(theta, Gr, Mr):
        """:func:`state` in numpy (where the kernels cannot be loaded). In place where it
        can: the (b, n) temporaries dominate the cost."""
        eta = theta[:, :c] @ Q.T
        eta += theta[:, c:] * Gr
        e = np.exp(-np.abs(eta))
        softplus = np.log1p(e)
        softplus += np.maximum(eta, 0.0)
        pr = np.where(eta >= 0.0, 1.0, e)
        pr /= 1.0 + e                                      # expit(eta), from the same exp
        ll = y * eta
        ll -= softplus
        w = 1.0 - pr
        w *= pr
        r = y - pr
        if Mr is not None:
            ll *= Mr
            w *= Mr
            r *= Mr
        loglik = ll.sum(axis=1)
        H = np.empty((len(Gr), p, p))
        H[:, :c, :c] = _unpack(products.gram(w), c, tri)
        wG = w * Gr
        H[:, :c, c] = H[:, c, :c] = wG @ Q
        wG *= Gr
        H[:, c, c] = wG.sum(axis=1)
        pen = np.full(len(Gr), np.nan)
        Hinv = np.zeros_like(H)
        L, ok = _cholesky(H)
        Hinv[ok] = np.linalg.inv(H[ok])
        pen[ok] = loglik[ok] + np.log(np.einsum("bii->bi", L[ok])).sum(axis=1)
        # hat diagonal h = w_i x_i' Hinv x_i, x_i = (q_i, g_i): the covariate block through K
        quad = products.expand(Hinv[:, ti, tj] * mult)
        cg = Hinv[:, :c, c] @ QT
        cg *= 2.0
        cg += Hinv[:, c, c][:, None] * Gr
        cg *= Gr
        quad += cg
        quad *= w                                          # h
        pr -= 0.5
        quad *= pr                                         # h (p - 1/2)
        r -= quad                                          # (y - p + h (1/2 - p)), masked
        U = np.empty((len(Gr), p))
        U[:, :c] = r @ Q
        r *= Gr
        U[:, c] = r.sum(axis=1)
        return pen, U, H, Hinv

    def scaled(U, H):
        return np.max(np.abs(U) / np.sqrt(np.einsum("bii->bi", H)), axis=1)

    # the active variants' arrays, compacted as variants finish (indexing a (b, n) array
    # copies it, and fresh arrays of that size cost page faults at every call)
    rows = np.flatnonzero(live)
    Ga = Gp[rows]
    Ma = M[rows] if has_miss else None
    th = np.zeros((len(rows), p))
    th[:, :c] = a0
    pen, U, H, Hinv = state(th, Ga, Ma)
    Bm = H.copy()                                   # curvature of -l*, from X'WX

    def finish(sel, ok_sel):
        """Record variants ``sel`` (mask over the active ones) as converged where ``ok_sel``."""
        fin = sel & ok_sel
        done[rows[fin]] = True
        se[rows[fin]] = np.sqrt(Hinv[fin, c, c])
        beta[rows[fin]] = th[fin, c]

    for _ in range(max_iter):
        bad = ~np.isfinite(pen)
        score = np.where(bad, np.inf, scaled(U, H))
        conv = score <= gtol
        finish(conv, True)
        drop = conv | bad
        if drop.any():
            keep = ~drop
            rows, th, pen, U, H, Hinv, Bm, score, Ga = (
                x[keep] for x in (rows, th, pen, U, H, Hinv, Bm, score, Ga))
            Ma = Ma[keep] if Ma is not None else None
        if len(rows) == 0:
            break
        try:
            step = np.linalg.solve(Bm, U[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(Bm[k], U[k], rcond=None)[0] for k in range(len(rows))])
        move = step[:, :c] @ QT
        move += step[:, c:] * Ga
        if Ma is not None:
            move *= Ma
        big = np.abs(move).max(axis=1)
        step *= np.where(big > MAX_STEP, MAX_STEP / np.where(big > 0, big, 1.0), 1.0)[:, None]
        flat = PEN_ROUNDING * (np.abs(pen) + 1.0)
        new = [np.empty_like(x) for x in (pen, U, H, Hinv)]
        accepted = np.zeros(len(rows), bool)
        todo = np.arange(len(rows))
        for _ in range(MAX_HALVINGS + 1):
            whole = len(todo) == len(rows)
            st = state(th[todo] + step[todo], Ga if whole else Ga[todo],
                       None if Ma is None else (Ma if whole else Ma[todo]))
            ok = np.isfinite(st[0]) & ((st[0] > pen[todo]) | (
                (st[0] >= pen[todo] - flat[todo]) & (scaled(st[1], st[2]) < score[todo])))
            for k in range(4):
                new[k][todo[ok]] = st[k][ok]
            accepted[todo[ok]] = True
            todo = todo[~ok]
            if len(todo) == 0:
                break
            step[todo] *= 0.5
        # no step helps: converged at the rounding floor, or failed
        if not accepted.all():
            stuck = ~accepted
            finish(stuck, score <= ROUNDING_GTOL)
            rows, th, pen, U, H, Hinv, Bm, step, Ga = (
                x[accepted] for x in (rows, th, pen, U, H, Hinv, Bm, step, Ga))
            Ma = Ma[accepted] if Ma is not None else None
            new = [x[accepted] for x in new]
        dU = U - new[1]
        sy = np.einsum("bi,bi->b", step, dU)
        upd = sy > 0
        if upd.any():
            s_, d_, B_ = step[upd], dU[upd], Bm[upd]
            Bs = np.einsum("bij,bj->bi", B_, s_)
            Bm[upd] = (B_ - Bs[:, :, None] * Bs[:, None, :] / np.einsum("bi,bi->b", s_, Bs)[:, None, None]
                       + d_[:, :, None] * d_[:, None, :] / sy[upd][:, None, None])
        th += step
        pen, U, H, Hinv = new
    ok = done & np.isfinite(se) & (se > 0)
    beta[~ok] = np.nan
    se[~ok] = np.nan
    return beta, se, ok


def _cholesky(H):
    """Batched Cholesky factors (B, p, p) and which matrices are positive definite (B,)."""
    try:
        return np.linalg.cholesky(H), np.ones(len(H), bool)
    except np.linalg.LinAlgError:
        L = np.zeros_like(H)
        ok = np.zeros(len(H), bool)
        for b in range(len(H)):
            try:
                L[b] = np.linalg.cholesky(H[b])
                ok[b] = True
            except np.linalg.LinAlgError:
                pass
        return L, ok
