"""DeepLIFT contribution scores of every SNP for fitted :class:`GenotypeMLP` members.

This is Steps 2-3 of the paper (Sec. 2): explain the output *logit* (the linear unit
before the sigmoid, DeepLIFT paper Sec. 3.6) of each fitted network by the contribution
of every SNP, aggregate per SNP over samples and seeds, and -- which the paper lacks --
calibrate the aggregated score against networks fitted to permuted phenotypes.

Closed form for our network
---------------------------
The network is ``o = w3 . relu(W2 relu(W1 x + Wc c + b1) + b2) + b3`` on centred A1
dosages ``x = dosage - 2 p_train`` (A1 = .bim column 5; missing -> 0, the training mean)
and optional standardized covariates ``c``. Against a reference ``(x0, c0)`` both are
propagated forward (``z1, z2`` pre-activations, ``z1_0, z2_0`` those of the reference)
and the multipliers are chained back in one pass (DeepLIFT paper Sec. 3.2, Eq. 3):

* **Rescale** (Sec. 3.5.2): each ReLU gets ``m = (relu(z) - relu(z0)) / (z - z0)``;
  where ``|z - z0| < eps`` (``eps = 1e-10``) the gradient ``1[z > 0]`` at the input is
  used instead, exactly Captum's ``DeepLift`` convention (``captum.attr._core.deep_lift.
  nonlinear``: ``torch.where(|delta_in| < eps, grad_input, ...)``), so both agree to
  rounding. Then ``m_x = W1^T (m1 * (W2^T (m2 * w3)))`` and the contribution of SNP i
  is ``C_i = (x_i - x0_i) * m_x,i``; covariates likewise through ``Wc``. Summation to
  delta holds: ``sum_i C_i + sum_j C_cj = o(x) - o(x0)``.
* **RevealCancel** (Sec. 3.5.3), which Captum does not offer. Each linear layer's
  ``Delta z = z - z0`` is split into ``Delta z+`` (sum of the terms ``w_i Delta in_i > 0``)
  and ``Delta z-`` (the terms ``< 0``; Linear rule, Sec. 3.5.1). The ReLU then assigns
  ``Delta y+ = 1/2 (f(z0 + Dz+) - f(z0)) + 1/2 (f(z0 + Dz+ + Dz-) - f(z0 + Dz-))``,
  ``Delta y- = 1/2 (f(z0 + Dz-) - f(z0)) + 1/2 (f(z0 + Dz+ + Dz-) - f(z0 + Dz+))`` with
  multipliers ``m+ = Delta y+ / Dz+``, ``m- = Delta y- / Dz-`` (where ``|Dz+-| < eps`` their
  limit ``1/2 (1[z0 > 0] + 1[z0 + Dz-+ > 0])``). Going back through a linear layer an input
  with ``Delta in > 0`` receives ``W+^T m+ + W-^T m-`` (``W+ = max(W, 0)``,
  ``W- = min(W, 0)``), one with ``Delta in < 0`` receives ``W-^T m+ + W+^T m-``, and one with
  ``Delta in = 0`` receives ``1/2 W^T (m+ + m-)`` (paper Sec. 3.5.1; as in the reference
  implementation ``kundajelab/deeplift``). Since ``Delta y+ + Delta y- = Delta y``, summation
  to delta holds for RevealCancel too.

Several members of the same shape are evaluated together: their first layers are one
stacked ``(K h1, n_snps)`` matrix, so the decoded batch is multiplied once. SNP columns
whose first-layer weights are zero in every member (the L1 penalty's exact zeros) get a
contribution of exactly 0 (as in Captum) and are skipped in the arithmetic; when few columns
remain, :func:`deeplift` reads, stages and decodes only those SNPs (``DECODE_COLUMNS_BELOW``),
which for L1 fits is most of the saving.

Reference
---------
``"mean"``: the training mean genotype ``2 p_train``, i.e. ``x0 = 0`` in centred space
(the paper's choice; a missing genotype then contributes exactly 0). ``"zero"``: dosage 0
(homozygous A2) everywhere, ``x0 = -2 p_train``. A dosage vector (A1 counts, length
n_snps) or a list of them: contributions are averaged over the references (DeepLIFT paper
Sec. 3.3). Covariates' reference is their training mean, 0 after standardization.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ._util import progress_bar
from .errors import InputError

RULES = ("rescale", "revealcancel")
#: Captum's DeepLift threshold below which the gradient replaces the multiplier.
EPS = 1e-10
KEY_COLUMNS = ["chrom", "pos", "snp", "a1", "a2"]
#: :func:`deeplift` reads and decodes only the SNPs that some member uses when they are
#: fewer than this share of all SNPs (results are identical either way).
DECODE_COLUMNS_BELOW = 0.5

__all__ = [
    "EPS",
    "EVENT_TOPIC",
    "RULES",
    "StackedMLP",
    "BatchMultipliers",
    "stack_members",
    "deeplift_batch",
    "snp_contributions",
    "deeplift_contributions",
    "DeepLiftResult",
    "NullScores",
    "deeplift",
    "aggregate_scores",
    "attribution_null",
    "null_calibrate",
    "permute_within",
]


# --------------------------------------------------------------------------------------
# kernels (tensors in, tensors out)
# --------------------------------------------------------------------------------------


@dataclass
class StackedMLP:
    """K networks of one shape, weights stacked for joint evaluation.

    Shapes (K members, M_a active SNP columns, C covariates):
    ``w1`` (K h1, M_a) first-layer SNP weights stacked by member; ``b1`` (K, h1);
    ``wc`` (K, h1, C) or None; ``w2`` (K, h2, h1); ``b2`` (K, h2); ``w3`` (K, h2);
    ``b3`` (K,). ``snp_idx``: LongTensor of the active SNP columns (all others have zero
    first-layer weight in every member) or None when every column is used; ``n_snps`` the
    full input width.
    """

    w1: torch.Tensor
    b1: torch.Tensor
    wc: torch.Tensor | None
    w2: torch.Tensor
    b2: torch.Tensor
    w3: torch.Tensor
    b3: torch.Tensor
    snp_idx: torch.Tensor | None
    n_snps: int
    _split: dict = field(default_factory=dict, repr=False)

    @property
    def k(self) -> int:
        return self.b1.shape[0]

    @property
    def h1(self) -> int:
        return self.b1.shape[1]

    @property
    def n_covar(self) -> int:
        return 0 if self.wc is None else self.wc.shape[2]

    def w1_of(self, k: int) -> torch.Tensor:
        """Member k's first-layer SNP weights over the active columns, (h1, M_a)."""
        return self.w1[k * self.h1:(k + 1) * self.h1]

    def signed(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(max(W, 0), min(W, 0))`` of a weight (cached; RevealCancel's Linear rule)."""
        if name not in self._split:
            w = getattr(self, name)
            self._split[name] = (w.clamp(min=0), w.clamp(max=0))
        return self._split[name]


def stack_members(models: Sequence[torch.nn.Module], dtype=torch.float32, device="cpu",
                  sparse_below: float = 0.5) -> StackedMLP:
    """Stack ``GenotypeMLP`` models of one shape (same n_snps, hidden, n_covar).

    SNP columns whose first-layer weight is zero in all models are dropped when fewer than
    ``sparse_below`` of the columns remain (their contributions are exactly 0).
    """
    if not models:
        raise ValueError("no models to stack")
    shapes = {(m.n_snps, tuple(m.hidden), m.n_covar) for m in models}
    if len(shapes) != 1:
        raise ValueError(f"models of different shapes cannot be stacked: {sorted(shapes)}")
    n_snps = models[0].n_snps

    def get(t):
        return t.detach().to(device=device, dtype=dtype)

    w1 = torch.cat([get(m.snp_linear.weight) for m in models], 0)  # (K h1, M)
    snp_idx = None
    active = (w1 != 0).any(0)
    n_active = int(active.sum())
    if n_active < sparse_below * n_snps:
        snp_idx = torch.nonzero(active).flatten()
        w1 = w1[:, snp_idx].contiguous()
    wc = None
    if models[0].covar_linear is not None:
        wc = torch.stack([get(m.covar_linear.weight) for m in models])
    return StackedMLP(
        w1=w1,
        b1=torch.stack([get(m.snp_linear.bias) for m in models]),
        wc=wc,
        w2=torch.stack([get(m.hidden_linear.weight) for m in models]),
        b2=torch.stack([get(m.hidden_linear.bias) for m in models]),
        w3=torch.stack([get(m.out_linear.weight)[0] for m in models]),
        b3=torch.stack([get(m.out_linear.bias)[0] for m in models]),
        snp_idx=snp_idx,
        n_snps=n_snps,
    )


def _rescale(z: torch.Tensor, z0: torch.Tensor, eps: float) -> torch.Tensor:
    """Rescale multiplier of a ReLU; the gradient 1[z > 0] where |z - z0| < eps (Captum)."""
    dz = z - z0
    small = dz.abs() < eps
    m = (z.clamp(min=0) - z0.clamp(min=0)) / torch.where(small, torch.ones_like(dz), dz)
    return torch.where(small, (z > 0).to(z.dtype), m)


def _reveal_cancel(z0: torch.Tensor, dpos: torch.Tensor, dneg: torch.Tensor, eps: float):
    """RevealCancel multipliers (m+, m-) of a ReLU with reference input z0 and parts Dz+-."""
    def f(t):
        return t.clamp(min=0)

    f0, fp, fn, fpn = f(z0), f(z0 + dpos), f(z0 + dneg), f(z0 + dpos + dneg)
    dyp = 0.5 * (fp - f0) + 0.5 * (fpn - fn)
    dyn = 0.5 * (fn - f0) + 0.5 * (fpn - fp)
    one = torch.ones_like(z0)
    sp, sn = dpos.abs() < eps, dneg.abs() < eps
    mp = torch.where(sp, 0.5 * ((z0 > 0).to(z0.dtype) + (z0 + dneg > 0).to(z0.dtype)),
                     dyp / torch.where(sp, one, dpos))
    mn = torch.where(sn, 0.5 * ((z0 > 0).to(z0.dtype) + (z0 + dpos > 0).to(z0.dtype)),
                     dyn / torch.where(sn, one, dneg))
    return mp, mn


def _split_terms(d: torch.Tensor, wpos: torch.Tensor, wneg: torch.Tensor) -> torch.Tensor:
    """Sum of the positive terms w_ji d_i of ``d @ W^T`` (batched over leading dims)."""
    return d.clamp(min=0) @ wpos.transpose(-1, -2) + d.clamp(max=0) @ wneg.transpose(-1, -2)


def _back_split(d, mp, mn, w, wpos, wneg):
    """RevealCancel multipliers of the inputs of a linear layer ``W`` (see module doc)."""
    up = mp @ wpos + mn @ wneg  # for inputs with d > 0
    dn = mp @ wneg + mn @ wpos  # for inputs with d < 0
    zero = 0.5 * ((mp + mn) @ w)
    return torch.where(d > 0, up, torch.where(d < 0, dn, zero))


@dataclass
class BatchMultipliers:
    """DeepLIFT state of one batch (b samples) for K stacked members.

    ``m1`` (K, b, h1): multiplier of the first pre-activation (Rescale), or for
    RevealCancel ``m1`` = m+ and ``m1_neg`` = m- of its positive / negative parts.
    ``dx`` (b, M_a): x - x0 over the active columns. ``covar`` (K, b, C) covariate
    contributions or None. ``delta_out`` (K, b): o(x) - o(x0), the logit difference.
    """

    m1: torch.Tensor
    m1_neg: torch.Tensor | None
    dx: torch.Tensor
    covar: torch.Tensor | None
    delta_out: torch.Tensor


def deeplift_batch(net: StackedMLP, x: torch.Tensor, x0: torch.Tensor,
                   covar: torch.Tensor | None = None, covar0: torch.Tensor | None = None,
                   rule: str = "rescale", eps: float = EPS) -> BatchMultipliers:
    """Forward input and reference, chain the multipliers back to the first layer.

    ``x`` (b, n_snps) centred dosages, ``x0`` (n_snps,) the reference (same space);
    ``covar`` (b, C) / ``covar0`` (C,) when the members have covariates (covar0 defaults
    to 0). The SNP contributions of member k are then :func:`snp_contributions`.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if net.snp_idx is not None:
        x, x0 = x.index_select(1, net.snp_idx), x0.index_select(0, net.snp_idx)
    k, h1 = net.k, net.h1
    b = x.shape[0]
    dx = x if not bool(torch.any(x0)) else x - x0  # mean reference: x0 = 0, no copy
    # z1 of all members from one matrix product of the shared batch
    z1 = (x @ net.w1.T).view(b, k, h1).transpose(0, 1) + net.b1[:, None, :]  # (K, b, h1)
    z10 = (x0 @ net.w1.T).view(k, h1) + net.b1  # (K, h1)
    dc = None
    if net.wc is not None:
        if covar is None:
            raise ValueError("these members were fitted with covariates: pass covar")
        if covar0 is None:
            covar0 = torch.zeros(covar.shape[1], dtype=covar.dtype, device=covar.device)
        dc = covar - covar0
        z1 = z1 + torch.einsum("bc,khc->kbh", covar, net.wc)
        z10 = z10 + torch.einsum("c,khc->kh", covar0, net.wc)
    z10 = z10[:, None, :]
    a1, a10 = z1.clamp(min=0), z10.clamp(min=0)
    z2 = a1 @ net.w2.transpose(1, 2) + net.b2[:, None, :]  # (K, b, h2)
    z20 = a10 @ net.w2.transpose(1, 2) + net.b2[:, None, :]  # (K, 1, h2)
    a2, a20 = z2.clamp(min=0), z20.clamp(min=0)
    w3 = net.w3[:, None, :]
    delta_out = ((a2 - a20) * w3).sum(-1)  # (K, b); biases cancel
    if rule == "rescale":
        m2 = _rescale(z2, z20, eps) * w3
        m1 = _rescale(z1, z10, eps) * (m2 @ net.w2)
        cov = None if dc is None else dc[None] * (m1 @ net.wc)
        return BatchMultipliers(m1, None, dx, cov, delta_out)
    # RevealCancel: positive / negative parts of each linear layer's delta
    w2p, w2n = net.signed("w2")
    da1 = a1 - a10
    # both parts summed explicitly (not one as the difference) so that a part with no
    # terms is exactly 0 and never a rounding residue divided by itself
    d2p = _split_terms(da1, w2p, w2n)
    d2n = _split_terms(da1, w2n, w2p)
    m2p, m2n = _reveal_cancel(z20, d2p, d2n, eps)
    ma1 = _back_split(da1, m2p * w3, m2n * w3, net.w2, w2p, w2n)
    w1p, w1n = net.signed("w1")
    d1p = _split_terms(dx, w1p, w1n).view(b, k, h1).transpose(0, 1)
    d1n = _split_terms(dx, w1n, w1p).view(b, k, h1).transpose(0, 1)
    cov = None
    if dc is not None:
        wcp, wcn = net.signed("wc")
        d1p = d1p + _split_terms(dc, wcp, wcn)
        d1n = d1n + _split_terms(dc, wcn, wcp)
    m1p, m1n = _reveal_cancel(z10, d1p, d1n, eps)
    m1p, m1n = m1p * ma1, m1n * ma1
    if dc is not None:
        cov = dc[None] * _back_split(dc[None].expand(k, -1, -1), m1p, m1n, net.wc, wcp, wcn)
    return BatchMultipliers(m1p, m1n, dx, cov, delta_out)


def snp_contributions(net: StackedMLP, mult: BatchMultipliers, k: int,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """Contributions (b, M_a) of the active SNP columns for member k (into ``out``)."""
    w = net.w1_of(k)
    if mult.m1_neg is None:
        out = torch.matmul(mult.m1[k], w, out=out)
        return out.mul_(mult.dx)
    # RevealCancel: inputs with dx > 0 take W+ m+ + W- m-, with dx < 0 W- m+ + W+ m-
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    mm = torch.cat([mult.m1[k], mult.m1_neg[k]], 1)
    up = mm @ torch.cat([wp, wn], 0)
    out = torch.matmul(mm, torch.cat([wn, wp], 0), out=out)
    out.mul_(mult.dx.clamp(max=0))
    return out.addcmul_(up, mult.dx.clamp(min=0))


def _buffer(bufs: dict, key, like: torch.Tensor) -> torch.Tensor:
    """A scratch tensor shaped like ``like`` (b, M_a) for group ``key``, reused across batches
    (a row slice of the first one for a shorter last batch)."""
    buf = bufs.get(key)
    if buf is None or buf.shape[0] < like.shape[0] or buf.shape[1:] != like.shape[1:]:
        buf = bufs[key] = torch.empty_like(like)
    return buf[: like.shape[0]]


def deeplift_contributions(models, x, x0=None, covar=None, covar0=None, rule="rescale",
                           eps: float = EPS):
    """Full contributions for a few models and one batch (for tests and small data).

    ``models``: a GenotypeMLP or a list of same-shape ones; ``x`` (b, n_snps) tensor.
    Returns ``(snp (K, b, n_snps), covar (K, b, C) or None, delta_out (K, b))`` in x's dtype.
    """
    if isinstance(models, torch.nn.Module):
        models = [models]
    net = stack_members(list(models), dtype=x.dtype, device=x.device, sparse_below=0.0)
    if x0 is None:
        x0 = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    mult = deeplift_batch(net, x, x0, covar, covar0, rule=rule, eps=eps)
    snp = torch.stack([snp_contributions(net, mult, k) for k in range(net.k)])
    return snp, mult.covar, mult.delta_out


# --------------------------------------------------------------------------------------
# public API: validate, stream batches through the kernels, label the result
# --------------------------------------------------------------------------------------


@dataclass
class DeepLiftResult:
    """DeepLIFT scores of one fit.

    scores : DataFrame, one row per SNP in input order: ``chrom, pos, snp, a1, a2``, then
        ``deeplift_mean_abs`` (mean over members of the member's mean |C| over samples),
        ``deeplift_sd`` (standard deviation of that per-member value across members, ddof=1;
        NaN for one member), ``deeplift_mean`` (signed mean C: > 0 when more A1 copies than
        the reference raise the logit), ``deeplift_topk_count`` (in how many members the SNP
        is among the ``top_k`` largest mean |C| with a nonzero score), and one
        ``deeplift_mean_abs_<label>`` column per member (``s<seed>`` when the seeds are
        distinct, else ``m<member index>``). After :func:`null_calibrate` also
        ``deeplift_p``, ``deeplift_q``, ``deeplift_fwer`` (above the family-wise threshold)
        and, by default, ``deeplift_share`` (the SNP's share of the summed score).
        Units: logit (or standardized trait) per sample.
    covariates : DataFrame or None -- the same summaries for the covariate inputs.
    members : DataFrame -- per member: index in ``fit.members``, role, seed, config, label,
        active SNPs (nonzero first-layer column), max summation-to-delta error.
    max_delta_error : float -- max over samples and members of
        ``|sum C (SNPs + covariates) - (o(x) - o(x0))|``.
    member_mean_abs, member_mean : (K, n_snps) float64 per-member summaries.
    samples : int64 positions (in the genotypes' samples) that were scored.
    matrix : (K, n_samples, n_snps) float32 contributions when ``return_matrix=True``
        (rows in ``samples`` order), and ``covar_matrix`` (K, n_samples, n_covar).
    """

    scores: pd.DataFrame
    covariates: pd.DataFrame | None
    members: pd.DataFrame
    max_delta_error: float
    member_mean_abs: np.ndarray
    member_mean: np.ndarray
    samples: np.ndarray
    rule: str
    reference: str
    top_k: int
    matrix: np.ndarray | None = None
    covar_matrix: np.ndarray | None = None
    fwer_threshold: float | None = None
    null: "NullScores | DecoyScores | None" = None


def _resolve_members(fit, members):
    """-> list of (index in fit.members, Member)."""
    allm = list(fit.members)
    if members is None:
        chosen = [i for i, m in enumerate(allm) if m.role == "refit"]
        if not chosen and getattr(fit, "selected", None) is not None:
            chosen = [i for i, m in enumerate(allm) if m.role == "grid" and m.config == fit.selected]
        if not chosen:
            chosen = [i for i, m in enumerate(allm) if m.role not in ("null", "decoy")]
    elif isinstance(members, str):
        chosen = [i for i, m in enumerate(allm) if m.role == members]
        if not chosen:
            raise InputError(f"the fit has no members with role {members!r} "
                             f"(roles: {sorted({m.role for m in allm})})")
    else:
        chosen = []
        for m in members:
            if isinstance(m, (int, np.integer)):
                if not 0 <= int(m) < len(allm):
                    raise InputError(f"member index {m} out of range 0..{len(allm) - 1}")
                chosen.append(int(m))
            else:
                hit = [i for i, mm in enumerate(allm) if mm is m]
                if not hit:
                    raise InputError("members must be roles, member indices or members of this fit")
                chosen.append(hit[0])
    if not chosen:
        raise InputError("no members to score")
    return [(i, allm[i]) for i in chosen]


def _resolve_samples(fit, genotypes, samples) -> np.ndarray:
    if isinstance(samples, str):
        if samples == "all":
            return np.arange(genotypes.n_samples, dtype=np.int64)
        if samples in ("validation", "train", "early_stop"):
            pos = np.asarray(getattr(fit.split, samples), dtype=np.int64)
        else:
            raise InputError(f"samples must be 'validation', 'train', 'early_stop', 'all' or "
                             f"an array of positions, got {samples!r}")
    else:
        pos = np.asarray(samples)
        if pos.dtype == bool:
            if pos.shape != (genotypes.n_samples,):
                raise InputError(f"boolean samples mask has shape {pos.shape}, "
                                 f"expected ({genotypes.n_samples},)")
            pos = np.flatnonzero(pos)
        if pos.dtype.kind not in "iu":
            raise InputError(f"samples must be integer positions, got dtype {pos.dtype}")
        pos = pos.astype(np.int64)
    if pos.size == 0:
        raise InputError("no samples to score")
    if pos.min() < 0 or pos.max() >= genotypes.n_samples:
        raise InputError(f"sample positions must lie in 0..{genotypes.n_samples - 1}")
    return pos


def _resolve_references(fit, reference) -> tuple[list[np.ndarray], str]:
    """Centred reference vectors (x0 = dosage0 - center) and a description."""
    center = np.asarray(fit.center, dtype=np.float64)
    m = center.shape[0]
    if isinstance(reference, str):
        if reference == "mean":
            return [np.zeros(m)], "mean"
        if reference == "zero":
            return [-center], "zero"
        raise InputError(f"reference must be 'mean', 'zero', a dosage vector or a list of them, "
                         f"got {reference!r}")
    try:
        arr = np.asarray(reference, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"reference dosages must be numbers (A1 counts in [0, 2]): {exc}") from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != m:
        raise InputError(f"reference dosages must have length {m} (one per SNP), got shape "
                         f"{np.shape(reference)}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 2:
        raise InputError("reference dosages must be finite A1 counts in [0, 2]")
    desc = "user" if arr.shape[0] == 1 else f"user x{arr.shape[0]} (averaged)"
    return [row - center for row in arr], desc


def _labels(members) -> list[str]:
    seeds = [getattr(m, "seed", None) for _, m in members]
    if all(s is not None for s in seeds) and len(set(seeds)) == len(seeds):
        return [f"s{s}" for s in seeds]
    return [f"m{i}" for i, _ in members]


def aggregate_scores(variants: pd.DataFrame, member_mean_abs: np.ndarray,
                     member_mean: np.ndarray, labels: Sequence[str], top_k: int = 10) -> pd.DataFrame:
    """Per-SNP table from per-member summaries (K, n_snps); see :class:`DeepLiftResult`."""
    ma = np.asarray(member_mean_abs, dtype=np.float64)
    k, m = ma.shape
    out = variants[KEY_COLUMNS].reset_index(drop=True).copy()
    out["deeplift_mean_abs"] = ma.mean(0)
    out["deeplift_sd"] = ma.std(0, ddof=1) if k > 1 else np.nan
    out["deeplift_mean"] = np.asarray(member_mean, dtype=np.float64).mean(0)
    kk = min(int(top_k), m)
    count = np.zeros(m, dtype=np.int64)
    if kk > 0:
        for row in ma:
            top = np.argpartition(-row, kk - 1)[:kk]
            top = top[row[top] > 0]  # a zero score is never "top"
            count[top] += 1
    out["deeplift_topk_count"] = count
    for lab, row in zip(labels, ma):
        out[f"deeplift_mean_abs_{lab}"] = row
    return out


# --------------------------------------------------------------------------------------
# the scoring loop, in this process or as block tasks on a dask.distributed client
# --------------------------------------------------------------------------------------


@dataclass
class _Sums:
    """Running per-member float64 sums over scored samples: ``abs`` / ``signed`` (K, n_snps)
    of |C| and C, ``cov_abs`` / ``cov_sum`` (K, C) of the covariates', ``max_err`` (K,) the
    max summation-to-delta error, ``n`` the samples seen."""

    abs: torch.Tensor
    signed: torch.Tensor
    cov_abs: torch.Tensor
    cov_sum: torch.Tensor
    max_err: np.ndarray
    n: int = 0

    @classmethod
    def zeros(cls, k: int, n_snps: int, n_cov: int, device) -> "_Sums":
        a = torch.zeros(k, n_snps, dtype=torch.float64, device=device)
        c = torch.zeros(k, n_cov, dtype=torch.float64, device=device)
        return cls(a, torch.zeros_like(a), c, torch.zeros_like(c), np.zeros(k))


def _accumulate(sums: _Sums, x, cv, groups, nets, runs, x0s, rule, tdtype, bufs, rows=None,
                matrix=None, cmatrix=None) -> None:
    """Score one batch (``x`` (b, v) centred inputs, ``cv`` (b, C) or None) for every member
    and add it to ``sums``; with ``matrix`` / ``cmatrix`` also store the contributions at
    ``rows``. ``runs[key]`` is ``nets[key]`` with ``snp_idx`` pointing into x's columns."""
    sums.n += x.shape[0]
    x = x.to(tdtype)
    cv = None if cv is None else cv.to(tdtype)
    for key, idx in groups.items():
        net = nets[key]
        cvk = cv if net.n_covar else None
        mults = [deeplift_batch(runs[key], x, x0, cvk, rule=rule) for x0 in x0s]
        for kk, j in enumerate(idx):
            c = snp_contributions(net, mults[0], kk, out=_buffer(bufs, key, mults[0].dx))
            for mlt in mults[1:]:
                c += snp_contributions(net, mlt, kk)
            # Sums in the working dtype per batch (a float64-casting reduction is ~20x
            # slower on CPU), accumulated across batches in float64.
            total = c.sum(1).to(torch.float64)
            delta = sum(mlt.delta_out[kk] for mlt in mults).to(torch.float64)
            if net.n_covar:
                cc = sum(mlt.covar[kk] for mlt in mults) / len(mults)
                total = total / len(mults) + cc.sum(1, dtype=torch.float64)
                sums.cov_abs[j] += cc.abs().sum(0, dtype=torch.float64)
                sums.cov_sum[j] += cc.sum(0, dtype=torch.float64)
                if cmatrix is not None:
                    cmatrix[j, rows] = cc.cpu().numpy()
            else:
                total = total / len(mults)
            if len(mults) > 1:
                c = c.div_(len(mults))
            # np.fmax would hide a NaN as max() does; a NaN error must show
            err = float((total - delta / len(mults)).abs().max())
            sums.max_err[j] = err if np.isnan(err) else max(sums.max_err[j], err)
            cols = slice(None) if net.snp_idx is None else net.snp_idx
            if matrix is not None:
                if net.snp_idx is None:
                    matrix[j, rows] = c.cpu().numpy()
                else:
                    matrix[j][np.ix_(rows, net.snp_idx.cpu().numpy())] = c.cpu().numpy()
            sums.signed[j, cols] += c.sum(0).to(torch.float64)
            sums.abs[j, cols] += c.abs_().sum(0).to(torch.float64)  # c is spent after this


def _resolve_client(client, return_matrix: bool):
    """The dask.distributed Client to score on, or None for this process."""
    if client is None or client is False:
        return None
    if isinstance(client, str):
        if client != "auto":
            raise InputError(f"client must be None, 'auto' or a dask.distributed Client, got {client!r}")
        from .qc import _distributed_client

        # return_matrix needs the whole (members, samples, SNPs) array in this process
        return None if return_matrix else _distributed_client()
    if not (callable(getattr(client, "submit", None)) and callable(getattr(client, "scatter", None))):
        raise InputError(f"client must be None, 'auto' or a dask.distributed Client, got {type(client).__name__}")
    if return_matrix:
        raise InputError("return_matrix=True runs in this process only (the contribution matrix is "
                         "gathered whole): pass client=None, or drop return_matrix on a cluster")
    return client


@dataclass
class _ScoringJob:
    """What every block task needs, scattered to the workers once: ``genotypes`` (path-based;
    narrowed to the ``used`` SNP columns when set), ``center`` float32 (its n_variants,): the
    training centre of those columns, the stacked weights (``nets`` / ``runs``, CPU), the centred references
    ``x0s``, and the settings. ``used``: full-table positions of the staged SNP columns, or
    None for all; the block sums cover only those columns."""

    genotypes: object
    center: torch.Tensor | None
    groups: dict
    nets: dict
    runs: dict
    x0s: list
    rule: str
    tdtype: torch.dtype
    n_snps: int
    n_cov: int
    used: np.ndarray | None
    batch_size: int
    max_stage_bytes: int | None
    device: object


@dataclass
class _BlockSums:
    """A block task's result: the :class:`_Sums` as numpy float64, over ``used`` columns."""

    abs: np.ndarray
    signed: np.ndarray
    cov_abs: np.ndarray
    cov_sum: np.ndarray
    max_err: np.ndarray
    n: int


#: Block results added per task of the reduction tree.
_FAN_IN = 8
#: Topic of the per-block events logged on workers (``client.get_events(EVENT_TOPIC)``):
#: samples scored, SNP columns staged and the device of each block task.
EVENT_TOPIC = "gwaslift.deeplift"

_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"users": 0, "saved": 1}


@contextmanager
def _torch_threads(n: int):
    """Torch intra-op threads = ``n`` while block tasks run: a worker already runs one task
    per thread (its cores), nested thread pools would oversubscribe them. Counted, so that
    concurrent tasks of one threaded worker restore the setting only when the last ends."""
    with _THREADS_LOCK:
        if _THREADS_STATE["users"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
            torch.set_num_threads(n)
        _THREADS_STATE["users"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["users"] -= 1
            if _THREADS_STATE["users"] == 0:
                torch.set_num_threads(_THREADS_STATE["saved"])


def _net_to(net: StackedMLP, dev) -> StackedMLP:
    if net.w1.device == dev:
        return net
    from dataclasses import replace

    moved = {f: None if getattr(net, f) is None else getattr(net, f).to(dev)
             for f in ("w1", "b1", "wc", "w2", "b2", "w3", "b3", "snp_idx")}
    return replace(net, **moved, _split={})


def _stage_block(n_variants: int, n_positions: int, batch_size: int, max_stage_bytes) -> int:
    """Samples per staging block, as :func:`gwaslift.deep.data.iter_batches` stages them, so a
    block task makes the very batches of the in-process run."""
    per_sample = max(1, (int(n_variants) + 3) // 4)
    block = n_positions if max_stage_bytes is None else max(1, int(max_stage_bytes) // per_sample)
    return max(batch_size, (block // batch_size) * batch_size)


def _score_block(job: _ScoringJob, positions: np.ndarray, cov: np.ndarray | None) -> _BlockSums:
    """Worker task: stage, decode and score ``positions`` (one staging block, in order) ->
    per-member sums. ``cov`` (len(positions), C) float32 standardized covariates or None."""
    from .deep.data import iter_batches
    from .deep.train import resolve_device

    with _torch_threads(1), torch.no_grad():
        dev = resolve_device(job.device)
        nets = {k: _net_to(v, dev) for k, v in job.nets.items()}
        runs = {k: _net_to(v, dev) for k, v in job.runs.items()}
        x0s = [x0.to(dev) for x0 in job.x0s]
        cov_t = None if cov is None else torch.as_tensor(cov, device=dev)
        sums = _Sums.zeros(sum(len(idx) for idx in job.groups.values()), job.n_snps, job.n_cov, dev)
        bufs: dict = {}
        for bpos, x in iter_batches(job.genotypes, positions, job.center.to(dev), job.batch_size, dev,
                                    max_stage_bytes=job.max_stage_bytes):
            cv = None if cov_t is None else cov_t[sums.n:sums.n + len(bpos)]
            _accumulate(sums, x, cv, job.groups, nets, runs, x0s, job.rule, job.tdtype, bufs)
        cols = slice(None) if job.used is None else torch.as_tensor(job.used, device=dev)
        out = _BlockSums(sums.abs[:, cols].cpu().numpy(), sums.signed[:, cols].cpu().numpy(),
                         sums.cov_abs.cpu().numpy(), sums.cov_sum.cpu().numpy(), sums.max_err, sums.n)
    try:
        from distributed import get_worker

        get_worker().log_event(EVENT_TOPIC, {"samples": int(len(positions)),
                                             "snp_columns": int(job.genotypes.n_variants), "device": str(dev)})
    except (ImportError, ValueError):  # not inside a worker
        pass
    return out


def _add_block_sums(*parts: _BlockSums) -> _BlockSums:
    """A node of the reduction tree: the parts added left to right (a fixed order)."""
    out = _BlockSums(parts[0].abs.copy(), parts[0].signed.copy(), parts[0].cov_abs.copy(),
                     parts[0].cov_sum.copy(), parts[0].max_err.copy(), parts[0].n)
    for p in parts[1:]:
        out.abs += p.abs
        out.signed += p.signed
        out.cov_abs += p.cov_abs
        out.cov_sum += p.cov_sum
        out.max_err = np.maximum(out.max_err, p.max_err)
        out.n += p.n
    return out


def _score_on_client(client, fit, genotypes, pos: np.ndarray, covariates, job: _ScoringJob,
                     progress) -> _Sums:
    """Score ``pos`` as one task per staging block on ``client``; the block sums are added
    in a fixed tree of ``_FAN_IN``-way tasks, then spread back to all SNP columns."""
    from dataclasses import replace

    from distributed import as_completed

    from .deep.data import _fit_inputs

    # the inputs exactly as iter_fit_batches(_snps) builds them in this process
    _, _, cov_t, center = _fit_inputs(fit, genotypes, pos, covariates, "cpu")
    g = genotypes
    if job.used is not None:
        g = genotypes.subset(variants=job.used)
        center = center[torch.as_tensor(job.used)]
    job = replace(job, genotypes=g, center=center)
    cov = None if cov_t is None else cov_t.numpy()
    block = _stage_block(g.n_variants, len(pos), job.batch_size, job.max_stage_bytes)
    shared = client.scatter(job, hash=False)
    leaves = [client.submit(_score_block, shared, pos[s:s + block], None if cov is None else cov[pos[s:s + block]],
                            pure=False)
              for s in range(0, len(pos), block)]
    n_blocks = len(leaves)
    parts = leaves
    while len(parts) > 1:
        parts = [client.submit(_add_block_sums, *parts[i:i + _FAN_IN], pure=False)
                 for i in range(0, len(parts), _FAN_IN)]
    root = parts[0]
    done = as_completed(leaves, loop=client.loop)  # the client need not be the default one
    del leaves, parts  # the tree holds the leaves only until their parent has run
    for _ in progress_bar(done, total=n_blocks, desc="deeplift", progress=progress):
        pass
    part = root.result()
    del root, shared
    k = len(part.max_err)
    sums = _Sums.zeros(k, job.n_snps, job.n_cov, "cpu")
    cols = slice(None) if job.used is None else torch.as_tensor(job.used)
    sums.abs[:, cols] = torch.from_numpy(part.abs)
    sums.signed[:, cols] = torch.from_numpy(part.signed)
    sums.cov_abs[:] = torch.from_numpy(part.cov_abs)
    sums.cov_sum[:] = torch.from_numpy(part.cov_sum)
    sums.max_err = part.max_err
    sums.n = part.n
    return sums


def deeplift(fit, genotypes, samples="validation", reference="mean", rule: str = "rescale",
             members=None, covariates=None, batch_size: int | None = None, top_k: int = 10,
             return_matrix: bool = False, dtype: str = "float32", device: str = "auto",
             null: "NullScores | DecoyScores | None" = None, alpha: float = 0.05, normalize: str = "share",
             max_stage_bytes: int | None = 2**28, progress: bool | None = None,
             client=None) -> DeepLiftResult:
    """DeepLIFT contributions of every SNP to the output logit, aggregated per SNP.

    Parameters
    ----------
    fit : gwaslift.deep.DeepFit
        Fitted members; its ``variants`` must be the genotypes' variants, in order.
    genotypes : Genotypes
        The genotypes the fit was trained on (same variants; for the split names of
        ``samples``, the same samples in the same order too, checked). Other samples with
        the same variants (an independent cohort) can be scored with ``samples="all"`` or
        positions.
    samples : "validation" (default; held out from training and early stopping), "train",
        "early_stop", "all", or int positions / a boolean mask over ``genotypes.samples``.
    reference : "mean" (training mean genotype, default), "zero" (dosage 0 = homozygous
        A2), a vector of A1 dosages (n_snps,), or a list / 2-D array of them (contributions
        averaged over the references). See the module docstring.
    rule : "rescale" (Captum-identical) or "revealcancel".
    members : None (the refit members, else the selected grid configuration, never the
        null members), a role ("grid", "refit", "null"), or a list of member indices.
    covariates : the covariates passed at training (required when the members use them).
    batch_size : samples per batch; memory is O(batch_size x n_snps), results do not
        depend on it. Default: about 2**24 elements (64 MiB of float32) per batch x SNPs
        buffer, at most 1024 samples.
    top_k : k of ``deeplift_topk_count``.
    return_matrix : also return the (members, samples, snps) float32 contribution array.
    dtype : "float32" or "float64" arithmetic (sums are accumulated in float64).
    null : a :class:`DecoyScores` from :func:`attribution_decoys` (adds ``deeplift_p``,
        ``deeplift_q``, ``deeplift_fdr``, ``deeplift_decoy_fit``; see :func:`decoy_calibrate`)
        or a :class:`NullScores` from :func:`attribution_null` (adds ``deeplift_p``,
        ``deeplift_q``, ``deeplift_fwer``; see :func:`null_calibrate`, level ``alpha``,
        ``normalize``).
    max_stage_bytes : packed genotype bytes staged at a time (each staged block is one pass
        over the .bed); bounds memory independently of the number of samples.
    client : None (default: score in this process, on ``device``), ``"auto"`` (the default
        ``dask.distributed`` Client when one is active, as QC, PCA and the linear GWAS use
        it, else this process), or a ``distributed.Client``. On a client the scored samples
        are split into blocks of ``max_stage_bytes`` of packed bytes (the staging blocks of
        the in-process run); one task per block opens the .bed by path, stages and scores
        its samples on the worker (``device`` is resolved there; one torch thread per task)
        and returns per-member sums (K x SNPs float64), which are added in a fixed tree, so
        the result does not depend on which task finishes first. Shipped: the genotypes
        object (path-based; the .bed is read by each worker, so workers must share the
        filesystem), the stacked member weights, the centre, the references and each
        block's positions and standardized covariates -- never genotype data. Results equal
        the in-process run up to the order of the float64 sums. ``return_matrix=True``
        always runs in this process (``"auto"`` falls back to it; an explicit Client raises
        InputError). Not the default because the in-process run may use a GPU that a
        Client's workers lack.

    Returns
    -------
    DeepLiftResult
    """
    from .deep.data import check_samples, check_variants, iter_fit_batches, iter_fit_batches_snps
    from .deep.train import resolve_device

    if rule not in RULES:
        raise InputError(f"rule must be one of {RULES}, got {rule!r}")
    if dtype not in ("float32", "float64"):
        raise InputError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if batch_size is None:
        batch_size = int(min(1024, max(16, 2**24 // max(1, len(fit.variants)))))
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    device_request = device  # workers resolve it themselves
    device = resolve_device(device)  # "auto" -> CUDA when present, else CPU
    n_snps = len(fit.variants)
    check_variants(fit.variants, genotypes)
    if isinstance(samples, str) and samples != "all":  # positions of the fit's split
        check_samples(fit.samples, genotypes)
    chosen = _resolve_members(fit, members)
    labels = _labels(chosen)
    pos = _resolve_samples(fit, genotypes, samples)
    if return_matrix and len(np.unique(pos)) != len(pos):
        raise InputError("return_matrix needs each sample once: the samples asked for repeat some positions")
    refs, ref_desc = _resolve_references(fit, reference)
    models = [m.model for _, m in chosen]
    diverged = [i for (i, _), mod in zip(chosen, models)
                if not all(bool(torch.isfinite(p).all()) for p in mod.parameters())]
    if diverged:
        raise InputError(f"members {diverged} have non-finite weights (they diverged in training): "
                         "pass members= without them")
    n_covar = {mod.n_covar for mod in models}
    if max(n_covar) > 0 and covariates is None:
        raise InputError("the fitted members use covariates: pass the covariates used at training")
    cluster = _resolve_client(client, return_matrix)
    # stacked weights are built on the CPU when they are shipped to workers
    home = torch.device("cpu") if cluster is not None else device

    # members of one shape share each decoded batch (one stacked first-layer product)
    groups: dict[tuple, list[int]] = {}
    for j, mod in enumerate(models):
        groups.setdefault((mod.n_snps, tuple(mod.hidden), mod.n_covar), []).append(j)
    nets = {key: stack_members([models[j] for j in idx], dtype=tdtype, device=home)
            for key, idx in groups.items()}
    x0s = [torch.as_tensor(r, dtype=tdtype, device=home) for r in refs]

    k_all, n = len(models), len(pos)
    n_cov = max(n_covar)
    matrix = np.zeros((k_all, n, n_snps), np.float32) if return_matrix else None
    cmatrix = np.zeros((k_all, n, n_cov), np.float32) if (return_matrix and n_cov) else None
    order = np.argsort(pos, kind="stable")

    # When every stacked group uses only some SNP columns (L1 fits), read, stage and decode
    # just those SNPs: the others' contributions are exactly 0 whatever their genotypes.
    # ``runs`` are the nets as the kernels see such a batch: their snp_idx point into it.
    runs, used = nets, None
    if nets and all(net.snp_idx is not None for net in nets.values()):
        cand = torch.unique(torch.cat([net.snp_idx for net in nets.values()]))  # sorted
        if len(cand) < DECODE_COLUMNS_BELOW * n_snps:
            from dataclasses import replace

            used = cand
            runs = {key: replace(net, snp_idx=torch.searchsorted(used, net.snp_idx)) for key, net in nets.items()}
            x0s = [x0[used] for x0 in x0s]
    if cluster is not None:
        sums = _score_on_client(cluster, fit, genotypes, pos, covariates, _ScoringJob(
            genotypes=None, center=None, groups=groups, nets=nets, runs=runs, x0s=x0s, rule=rule,
            tdtype=tdtype, n_snps=n_snps, n_cov=n_cov, used=None if used is None else used.numpy(),
            batch_size=int(batch_size), max_stage_bytes=max_stage_bytes, device=device_request),
            progress)
    else:
        sums = _Sums.zeros(k_all, n_snps, n_cov, device)
        if used is not None:
            batches = iter_fit_batches_snps(fit, genotypes, pos, used.cpu().numpy(), covariates=covariates,
                                            batch_size=int(batch_size), device=device,
                                            max_stage_bytes=max_stage_bytes)
        else:
            batches = iter_fit_batches(fit, genotypes, pos, covariates=covariates,
                                       batch_size=int(batch_size), device=device,
                                       max_stage_bytes=max_stage_bytes)
        n_batches = -(-n // int(batch_size))
        bufs: dict = {}  # one reused (b, M_a) contribution buffer per group: fresh pages cost more than the math
        with torch.no_grad():
            for bpos, x, cv in progress_bar(batches, total=n_batches, desc="deeplift", progress=progress):
                bpos = np.asarray(bpos, dtype=np.int64)
                rows = order[np.searchsorted(pos[order], bpos)]
                _accumulate(sums, x, cv, groups, nets, runs, x0s, rule, tdtype, bufs, rows, matrix, cmatrix)
    if sums.n != n:
        raise RuntimeError(f"iter_fit_batches yielded {sums.n} samples, expected {n}")
    sum_abs, sum_c, cov_abs, cov_sum, max_err = sums.abs, sums.signed, sums.cov_abs, sums.cov_sum, sums.max_err

    mean_abs = (sum_abs / n).cpu().numpy()
    mean_c = (sum_c / n).cpu().numpy()
    scores = aggregate_scores(fit.variants, mean_abs, mean_c, labels, top_k)
    cov_df = None
    if n_cov:
        names = list(getattr(fit, "covar_names", None) or [f"covar{i}" for i in range(n_cov)])
        ca, cm = (cov_abs / n).cpu().numpy(), (cov_sum / n).cpu().numpy()
        cov_df = pd.DataFrame({"covariate": names, "deeplift_mean_abs": ca.mean(0),
                               "deeplift_sd": ca.std(0, ddof=1) if k_all > 1 else np.nan,
                               "deeplift_mean": cm.mean(0)})
    active = np.zeros(k_all, dtype=np.int64)
    for key, idx in groups.items():
        for j in idx:
            active[j] = int((models[j].snp_linear.weight.detach() != 0).any(0).sum())
    mem_df = pd.DataFrame({
        "member": [i for i, _ in chosen],
        "role": [m.role for _, m in chosen],
        "seed": [getattr(m, "seed", None) for _, m in chosen],
        "config": [str(getattr(m, "config", "")) for _, m in chosen],
        "label": labels,
        "n_active_snps": active,
        "max_delta_error": max_err,
    })
    res = DeepLiftResult(scores=scores, covariates=cov_df, members=mem_df,
                         max_delta_error=float(max_err.max()), member_mean_abs=mean_abs,
                         member_mean=mean_c, samples=pos, rule=rule, reference=ref_desc,
                         top_k=int(top_k), matrix=matrix, covar_matrix=cmatrix)
    if isinstance(null, DecoyScores):
        res = decoy_calibrate(res, null, alpha=alpha)
    elif null is not None:
        res = null_calibrate(res, null, alpha=alpha, normalize=normalize)
    return res


# --------------------------------------------------------------------------------------
# significance: scores of networks fitted to permuted phenotypes
# --------------------------------------------------------------------------------------


@dataclass
class NullScores:
    """Aggregated scores of networks fitted to permuted phenotypes.

    ``scores`` (n_null, n_snps): ``deeplift_mean_abs`` of each null replicate (the same
    aggregation over its seeds as the observed fit). ``max_scores`` (n_null,): their
    per-replicate maxima (for the family-wise threshold). ``perm_seeds``: the seed of each
    permutation; ``seeds``: the training seeds of each replicate's members.
    """

    scores: np.ndarray
    max_scores: np.ndarray
    perm_seeds: list
    seeds: list


def permute_within(phenotype, positions: np.ndarray, seed) -> np.ndarray | pd.Series:
    """A copy of ``phenotype`` whose values at ``positions`` are randomly permuted among
    themselves (others untouched). Works on arrays and Series (index kept)."""
    rng = np.random.default_rng(seed)
    positions = np.asarray(positions, dtype=np.int64)
    perm = positions[rng.permutation(len(positions))]
    if isinstance(phenotype, pd.Series):
        vals = phenotype.to_numpy().copy()
        vals[positions] = phenotype.to_numpy()[perm]
        return pd.Series(vals, index=phenotype.index, name=phenotype.name)
    vals = np.array(phenotype, copy=True)
    vals[positions] = np.asarray(phenotype)[perm]
    return vals


def attribution_null(genotypes, phenotype, fit, n_null: int = 20, seeds=None, seed: int = 0,
                     samples="validation", reference="mean", rule: str = "rescale",
                     covariates=None, batch_size: int | None = None, dtype: str = "float32",
                     device: str = "auto", progress: bool | None = None, client=None,
                     **refit_kwargs) -> NullScores:
    """Null distribution of the aggregated DeepLIFT score by phenotype permutation.

    For each of ``n_null`` replicates the phenotype is permuted within the samples of the
    fit's split (train + early stopping + validation; seed ``(seed, r)``), the *selected*
    configuration is re-fitted with ``gwaslift.deep.refit(..., role="null")`` on the same
    split with the same training seeds (default: the seeds of the members that
    :func:`deeplift` scores by default), and scored exactly as the observed fit
    (same samples, reference, rule, aggregation over seeds).

    What the null means: networks of the same architecture and L1 strength, trained the same
    way, on data where the phenotype is exchangeable with respect to the genotypes (and
    covariates) -- no genotype-phenotype association at all. The score of a SNP that such a
    network "uses" by chance (overfitting, initialization) is what an observed score must
    beat. Cost: ``n_null x len(seeds)`` additional fits plus as many DeepLIFT passes.
    ``checkpoint_dir`` (passed on to refit) keeps each replicate's members under
    ``checkpoint_dir/null<r>``, so an interrupted run resumes.
    """
    from .deep import refit

    if int(n_null) < 1:
        raise InputError(f"n_null must be >= 1, got {n_null}")
    if seeds is None:
        seeds = [m.seed for _, m in _resolve_members(fit, None)]
    seeds = list(seeds)
    pool = np.unique(np.concatenate([np.asarray(getattr(fit.split, s), dtype=np.int64)
                                     for s in ("train", "early_stop", "validation")]))
    rows, maxima, perm_seeds = [], [], []
    for r in progress_bar(range(int(n_null)), total=int(n_null), desc="null fits", progress=progress):
        ps = [int(seed), r]
        perm = permute_within(phenotype, pool, ps)
        kw = dict(refit_kwargs)
        if kw.get("checkpoint_dir") is not None:
            # one folder per replicate: each has its own phenotype, so its own run
            kw["checkpoint_dir"] = Path(kw["checkpoint_dir"]) / f"null{r:03d}"
        nfit = refit(genotypes, perm, fit, seeds=seeds, role="null", covariates=covariates,
                     device=device, progress=False, **kw)
        # refit returns the old members followed by the new ones: score only the new
        new = list(range(len(fit.members), len(nfit.members)))
        res = deeplift(nfit, genotypes, samples=samples, reference=reference, rule=rule,
                       members=new, covariates=covariates, batch_size=batch_size,
                       dtype=dtype, device=device, progress=False, client=client)
        sc = res.scores["deeplift_mean_abs"].to_numpy()
        rows.append(sc)
        maxima.append(sc.max())
        perm_seeds.append(ps)
    return NullScores(np.vstack(rows), np.asarray(maxima), perm_seeds, seeds)


def _empirical_p(observed, null_values) -> tuple[np.ndarray, np.ndarray]:
    """``(1 + #{null >= observed}) / (1 + #null)`` per observed value, and the counts ``#{null >= observed}``."""
    pooled = np.sort(np.asarray(null_values, dtype=np.float64).ravel())
    n_ge = pooled.size - np.searchsorted(pooled, np.asarray(observed, dtype=np.float64), side="left")
    return (1.0 + n_ge) / (1.0 + pooled.size), n_ge


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    order = np.argsort(p)
    q = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def null_calibrate(result: DeepLiftResult, null: NullScores, alpha: float = 0.05,
                   normalize: str = "share") -> DeepLiftResult:
    """Empirical p-values, BH q-values and a family-wise threshold for the aggregated score.

    ``normalize="share"`` (default) compares each SNP's share of its fit's total score,
    ``deeplift_share = deeplift_mean_abs / sum over SNPs`` (the null replicates likewise);
    ``"none"`` compares ``deeplift_mean_abs`` itself. Why shares: the overall scale of a
    network's contributions varies from fit to fit (how far training got before early
    stopping, the output scale), and that one random factor moves every SNP's raw score
    together, so raw-score p-values of one fit are strongly dependent and, when real signal
    makes the observed network larger than the null ones, anti-conservative for SNPs without
    effect. Shares remove the factor: under the global null they were uniform in our
    simulations (tests/test_attribution.py), and with true signal the causal SNPs take most
    of the share, which makes the p-values of the others conservative rather than too small.

    ``deeplift_p = (1 + #{null values >= observed}) / (1 + #null values)`` against the null
    values pooled over all SNPs and replicates (pooling assumes SNPs are exchangeable under
    the null; the score scale depends on allele frequency, so treat p-values of rare SNPs
    with care). ``deeplift_q``: Benjamini-Hochberg. ``fwer_threshold``: the (1 - alpha)
    quantile of the per-replicate maximum (in the compared units); ``deeplift_fwer`` is True
    where the observed value exceeds it.
    """
    if normalize not in ("share", "none"):
        raise InputError(f"normalize must be 'share' or 'none', got {normalize!r}")
    obs = result.scores["deeplift_mean_abs"].to_numpy()
    if null.scores.shape[1] != obs.shape[0]:
        raise InputError(f"null scores have {null.scores.shape[1]} SNPs, the result {obs.shape[0]}")
    nul = np.asarray(null.scores, dtype=np.float64)
    if normalize == "share":
        obs = obs / max(obs.sum(), np.finfo(float).tiny)
        nul = nul / np.maximum(nul.sum(1, keepdims=True), np.finfo(float).tiny)
    p, _ = _empirical_p(obs, nul.ravel())
    thr = float(np.quantile(nul.max(1), 1.0 - alpha))
    scores = result.scores.copy()
    if normalize == "share":
        scores["deeplift_share"] = obs
    scores["deeplift_p"] = p
    scores["deeplift_q"] = _bh(p)
    scores["deeplift_fwer"] = obs > thr
    from dataclasses import replace

    return replace(result, scores=scores, fwer_threshold=thr, null=null)


# --------------------------------------------------------------------------------------
# significance: decoy SNPs inside the fitted networks (gwaslift.decoys)
# --------------------------------------------------------------------------------------


@dataclass
class DecoyScores:
    """Aggregated scores of the selected configuration refitted on the SNPs plus decoys.

    ``real`` (n_snps,): ``deeplift_mean_abs`` of each real SNP in the decoy fits; ``decoy``
    (n_decoys,): that of each decoy; ``decoy_of`` (n_decoys,): the source SNP id of each
    decoy; ``seeds``: training seeds of the decoy fits; ``seed``: the decoys' seed (source
    subset and sample permutation); ``metrics``: one row per decoy-fit member
    (seed, validation log-likelihood, active SNPs and decoys); ``tail``: the decoy tail fit
    (:func:`decoy_tail`), set by :func:`decoy_calibrate`.
    """

    real: np.ndarray
    decoy: np.ndarray
    decoy_of: list
    seeds: list
    seed: int
    metrics: pd.DataFrame | None = None
    tail: dict | None = None


def attribution_decoys(genotypes, phenotype, fit, n_decoys: int | None = None, seeds=None, seed: int = 0,
                       samples="validation", reference="mean", rule: str = "rescale", covariates=None,
                       batch_size: int | None = None, dtype: str = "float32", device: str = "auto",
                       progress: bool | None = None, client=None, **refit_kwargs) -> DecoyScores:
    """Per-SNP null from decoy SNPs trained alongside the real ones (:mod:`gwaslift.decoys`).

    The *selected* configuration is re-fitted on ``with_decoys(genotypes, n_decoys, seed)``
    with the real phenotype, the fit's split and the training seeds of the members that
    :func:`deeplift` scores by default (``seeds``); the new members (role ``"decoy"``) are
    scored exactly as the observed fit (same samples, reference, rule, aggregation over
    seeds). A decoy's centre is its training-split mean, like any input's; a user reference
    vector is extended with its value at each decoy's source SNP.

    What the null means: within one trained network, the score a SNP gets when it has the
    allele frequency and LD pattern of a real SNP but no association with the phenotype, the
    covariates or the other SNPs. Unlike permuted-phenotype fits it is measured in the very
    networks that carry the real signal, so the scale of the scores is shared. Cost: one
    refit of ``len(seeds)`` members with ``n_snps + n_decoys`` inputs (default n_decoys =
    n_snps: twice the inputs) and one DeepLIFT pass over them (on ``client`` when given, as in
    :func:`deeplift`).
    """
    from dataclasses import replace

    from .decoys import with_decoys
    from .deep import refit
    from .deep.data import check_variants
    from .deep.fit import VARIANT_COLUMNS
    from .deep.train import select, training_center

    check_variants(fit.variants, genotypes)
    if seeds is None:
        seeds = [m.seed for _, m in _resolve_members(fit, None)]
    seeds = list(seeds)
    gd = with_decoys(genotypes, n_decoys, seed)
    m, d = genotypes.n_variants, gd.n_variants - genotypes.n_variants
    src_pos = gd.meta["decoy_positions"]
    dcenter = training_center(gd.subset(variants=np.arange(m, m + d)), fit.split.train)
    base = replace(fit, members=[], variants=gd.variants[VARIANT_COLUMNS].reset_index(drop=True),
                   center=np.concatenate([np.asarray(fit.center, dtype=np.float32), dcenter]))
    if not isinstance(reference, str):
        arr = np.asarray(reference, dtype=np.float64)
        reference = np.concatenate([arr, arr[..., src_pos]], axis=-1)
    cfg = fit.selected or select(fit)
    dfit = refit(gd, phenotype, base, seeds=seeds, role="decoy", config=cfg, covariates=covariates,
                 device=device, progress=progress, **refit_kwargs)
    res = deeplift(dfit, gd, samples=samples, reference=reference, rule=rule,
                   members=list(range(len(dfit.members))), covariates=covariates, batch_size=batch_size,
                   dtype=dtype, device=device, progress=progress, client=client)
    sc = res.scores["deeplift_mean_abs"].to_numpy()
    tab = dfit.metrics_table()
    keep = [c for c in ("seed", "fold", "val_loglik", "val_loglik_constant", "epochs", "n_nonzero_snps") if c in tab]
    met = tab[keep].reset_index(drop=True)
    act = np.asarray([(mem.model.snp_linear.weight.detach() != 0).any(0).numpy() for mem in dfit.members])
    met["n_active_real"] = act[:, :m].sum(1)
    met["n_active_decoys"] = act[:, m:].sum(1)
    return DecoyScores(real=sc[:m], decoy=sc[m:], decoy_of=list(genotypes.variants["snp"].iloc[src_pos]),
                       seeds=seeds, seed=int(seed), metrics=met)


#: Decoy p-values: the exact empirical p is used while at least this many decoys score at
#: or above a SNP; beyond, the decoy tail is extrapolated (Knijnenburg et al. 2009).
TAIL_MIN_EXCEEDANCES = 10
#: Decoys in the fitted tail: the top ``min(TAIL_SIZE, n_decoys // 4)`` positive scores.
TAIL_SIZE = 250


def decoy_tail(decoy: np.ndarray) -> dict | None:
    """Generalized Pareto fit to the top decoy scores (None when too few positive scores).

    Returns ``{"u", "xi", "sigma", "n_exc", "n_decoys"}``: exceedances ``s - u`` of the
    ``n_exc`` highest decoy scores over ``u`` (the midpoint to the next score) follow
    GPD(xi, sigma), fitted by maximum likelihood with the shape floored at 0 (a fitted
    bounded tail becomes the exponential one); the tail p-value of a score ``s > u`` is
    ``n_exc / n_decoys * GPD.sf(s - u)``.
    """
    from scipy.stats import genpareto

    d = np.sort(np.asarray(decoy, dtype=np.float64))[::-1]
    pos = d[d > 0]
    n_exc = int(min(TAIL_SIZE, len(d) // 4, len(pos) - 1))
    if n_exc < 50:
        return None
    u = 0.5 * (pos[n_exc - 1] + pos[n_exc])
    exc = pos[:n_exc] - u
    xi, _, sigma = genpareto.fit(exc, floc=0)
    if xi < 0:
        # a bounded tail (xi < 0) fitted to a few hundred decoys would claim that no null
        # score can pass its endpoint, and give p ~ 0 just beyond the largest decoy: floor the
        # shape at 0 (the exponential tail, MLE scale = mean exceedance), which is conservative
        xi, sigma = 0.0, float(exc.mean())
    return {"u": float(u), "xi": float(xi), "sigma": float(sigma), "n_exc": n_exc, "n_decoys": int(len(d))}


def _tail_p(s: np.ndarray, tail: dict) -> np.ndarray:
    from scipy.stats import genpareto

    sf = genpareto.sf(np.maximum(s - tail["u"], 0.0), tail["xi"], 0.0, tail["sigma"])
    return np.maximum(tail["n_exc"] / tail["n_decoys"] * sf, np.finfo(float).tiny)


def decoy_calibrate(result: DeepLiftResult, decoys: DecoyScores, alpha: float = 0.05) -> DeepLiftResult:
    """Per-SNP p-values, BH q-values and a family-wise threshold from the decoy fits.

    ``deeplift_decoy_fit`` is the SNP's mean |DeepLIFT| in the decoy fits, compared with the
    decoys of the same fits. ``deeplift_p``: the empirical ``(1 + #{decoys >= s}) / (1 +
    n_decoys)`` while at least ``TAIL_MIN_EXCEEDANCES`` decoys reach the score; above that
    the empirical p has too little resolution (its floor is ``1 / (1 + n_decoys)``), and
    the p-value comes from a generalized Pareto fit to the highest decoy scores
    (:func:`decoy_tail`; the permutation-tail method of Knijnenburg et al., Bioinformatics
    2009) -- an extrapolation that assumes a GPD-shaped tail. A SNP no decoy-fit member
    uses scores 0 and gets p = 1. ``deeplift_q``: Benjamini-Hochberg; ``deeplift_fdr``:
    ``q <= alpha``. ``fwer_threshold``: the decoy-fit score whose tail p is ``alpha /
    n_snps`` (Bonferroni), None without a tail fit; ``deeplift_fwer``: ``deeplift_decoy_fit``
    above it. The ranking (``deeplift_mean_abs``) stays that of ``result``.
    """
    from dataclasses import replace

    from scipy.stats import genpareto

    real = np.asarray(decoys.real, dtype=np.float64)
    if real.shape[0] != len(result.scores):
        raise InputError(f"decoy scores have {real.shape[0]} SNPs, the result {len(result.scores)}")
    p, n_ge = _empirical_p(real, decoys.decoy)
    tail = decoy_tail(decoys.decoy)
    thr = None
    if tail is not None:
        far = (n_ge < TAIL_MIN_EXCEEDANCES) & (real > tail["u"])
        p[far] = _tail_p(real[far], tail)
        level = alpha / len(real) / (tail["n_exc"] / tail["n_decoys"])
        if level < 1:
            thr = float(tail["u"] + genpareto.isf(level, tail["xi"], 0.0, tail["sigma"]))
    scores = result.scores.copy()
    scores["deeplift_decoy_fit"] = real
    scores["deeplift_p"] = p
    scores["deeplift_q"] = _bh(p)
    scores["deeplift_fdr"] = scores["deeplift_q"] <= alpha
    scores["deeplift_fwer"] = real > thr if thr is not None and np.isfinite(thr) else False
    return replace(result, scores=scores, fwer_threshold=thr, null=replace(decoys, tail=tail))
