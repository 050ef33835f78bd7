"""Training the L1-penalized networks: every (configuration, seed) pair of a grid at once.

Objective of one member (per training sample, i.e. what one minibatch step estimates)::

    mean_b loss(f(x_b), y_b)  +  (l1 / n_train) * sum_ij |W1_ij|

``loss`` is BCE-with-logits (binary, optional ``pos_weight``) or MSE on the standardized
trait; ``W1`` are the first-layer SNP weights only (not biases, covariate weights or deeper
layers). Scale: dividing by the number of training samples makes ``l1`` the rate of a
Laplace prior on W1 in the *summed* log-likelihood, so its meaning does not change with
the batch size. Measured sparsity (exact zeros, at the early-stopped weights): on the
10,000 x 10,000 benchmark (5,000 training samples, lr 3e-3, 4-5 epochs) l1 = 0.01 and 0.1
keep every SNP, l1 = 1 keeps 83-93% of SNPs and l1 = 10 keeps 24-66%; on the 300-sample
test cohort l1 = 2 zeroes ~90% of first-layer weights and l1 >= 3 can zero the whole layer
(a constant model). Sparsity grows with training length and shrinks with n_train.

``l1_mode="proximal"`` (default): after each Adam step the SNP weights go through the soft
threshold of Adam's own diagonal metric, ``w <- sign(w) max(|w| - lr * lam / denom, 0)``
with ``denom = sqrt(v_hat) + eps`` and ``lam = l1 / n_train``; a zero weight therefore stays
exactly zero while the running mean gradient ``|m_hat| <= lam`` (for ``optimizer="sgd"``
the threshold is ``lr * lam``). ``l1_mode="subgradient"`` adds ``lam * sign(w)`` to the
gradient instead (what autograd does with the penalty added to the loss; no exact zeros).

L1 warm-up (``l1_warmup`` epochs, default 0): the penalty ramps linearly from 0 to ``l1``
over the first epochs, and early stopping only watches from the epoch that ends the ramp.
Without it a strong penalty zeroes the whole first layer within a few steps: at the start
the deeper layers are random and small, so no first-layer gradient clears the threshold,
and a dead layer stays dead. Measured on a 4,000 x 4,000 simulated binary trait (2,000
training samples, h 64 x 256, one seed; lam = l1 / n_train): without warm-up lam = 0.003
keeps 95% of SNPs (validation log-likelihood -0.606), 0.01 keeps 71% (-0.645) and 0.015 or
more zeroes every SNP (-0.693, the constant model); with a 10-epoch warm-up lam = 0.01
keeps 14% (-0.543), and with 20 epochs lam = 0.03 keeps 16% (-0.528). In the reduced
recall study (simulations/RESULTS.md) the warm-up raised the selected models' validation
log-likelihood and recall.

How members share work: they see the same minibatch sequence (fixed by ``shuffle_seed``,
not by their init ``seed``), so each batch is gathered and decoded once for all of them,
and (``stacked=True``, the default on CUDA) their first layers are one stacked matrix
product ``x @ [W1_1; W1_2; ...].T`` (one gradient GEMM back). On CPU the default runs one
GEMM per member on the shared batch instead: same speed there, and it keeps a member's
arithmetic bitwise the same alone or in any grid (BLAS may sum in another order for another
total width; the tests check both: bitwise per member, to float tolerance stacked). Stacked,
the small layers (bias, covariates, h1 -> h2 -> 1) of each run of same-shaped members also
run as batched products (``bmm``) instead of ~10 small ops per member. Each member keeps its
own tensors and its own Adam state.

The CPU step (``_step_fused``, with numba; optim.py): each member's first-layer Adam +
soft threshold is one compiled pass over its weights, moments and gradient (in bf16 mode it
also reads the bf16 gradient as is and writes the bf16 weights of the next forward), and
its small layers, stored flat, take the same kernel once. It replaces ~13 torch passes per
first layer; it is memory-bound, so it is the floor of what a step costs beside the products.
Adam moments equal the torch-op path's bitwise and weights to an ulp (tests/test_deep.py).
CUDA, ``optimizer="sgd"``, ``l1_mode="subgradient"`` and a missing numba keep the torch ops.
The CPU decode of packed batches is a numba pass too (data.py), bitwise the torch decode.

``precision="bf16"``: the two first-layer products -- forward ``x @ W1.T`` and the weight
gradient ``dZ1.T @ x`` -- take bfloat16 operands (the centred batch, W1 and dZ1 rounded to
bf16: 8 significant bits, relative error <= 2^-9 per operand; the centred dosages
``{0,1,2} - 2p`` are within 0.004 of their float32 values). This pays on CPUs with bf16
units (AVX512-bf16, AMX) and on GPUs; a CPU without them emulates bf16 and may run slower
than float32 (benchmarks/results/deep.md has the measured gain). The products are
returned in float32 (the weight gradient is rounded once to bf16 by the kernel's output).
Everything else stays float32: the master weights, Adam moments, the proximal step, the
deeper layers, and the validation metrics, which run the finished float32 model (the
early-stopping loss uses the bf16 forward of training). Same seed -> same weights holds
for bf16 too; member-alone == member-in-grid holds bitwise only for float32 (bf16 uses
the stacked GEMM by default on every device: per-call overhead is a larger share of the
faster bf16 products).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._util import atomic_path, available_memory, progress_bar
from ..errors import InputError
from ..io.packed import unpack_codes
from .data import check_samples, check_variants, iter_batches, packed_nbytes, stage
from .fit import (DeepFit, Member, Split, VARIANT_COLUMNS, _sha256, config_json, fold_split,
                  load_member_weights, make_folds, make_split, member_key, save_member_weights)
from . import kernels, optim
from .network import GenotypeMLP

#: training options and their defaults (stored in DeepFit.config)
DEFAULTS = dict(epochs=100, patience=5, batch_size=256, optimizer="adam", betas=[0.9, 0.999], eps=1e-8,
                l1_mode="proximal", l1_warmup=0, pos_weight=None, shuffle_seed=0, precision="float32")

PRECISIONS = ("float32", "bf16")

DEFAULT_CPU_BYTES = 4 * 2**30

#: Bytes of training state per first-layer weight: float32 weights, Adam moments, gradient
#: and best-epoch snapshot (20); bf16 mode adds the stacked bf16 weights, the bf16 gradient
#: and its float32 copy (8). The small layers count 20 per parameter.
STATE_BYTES_PER_WEIGHT = {"float32": 20, "bf16": 28}
SMALL_STATE_BYTES_PER_PARAM = 20


# ===================================================================== inputs
def resolve_device(device) -> torch.device:
    """``"auto"``/None: CUDA when present, else CPU; else the device named, which must exist."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r} ({exc})") from None
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        raise InputError(f"device {device!r} asked for, but this machine has "
                         f"{torch.cuda.device_count() if torch.cuda.is_available() else 'no'} CUDA devices")
    return dev


def _phenotype(genotypes, phenotype, trait: str | None):
    """float64 y (n_samples,) aligned with genotypes.samples (NaN = excluded) and the trait kind."""
    y = np.asarray(phenotype.to_numpy() if hasattr(phenotype, "to_numpy") else phenotype, dtype=np.float64).reshape(-1)
    if y.shape[0] != genotypes.n_samples:
        raise InputError(f"phenotype has {y.shape[0]} values, expected one per sample ({genotypes.n_samples}) "
                         "in the order of genotypes.samples")
    obs = y[~np.isnan(y)]
    if obs.size == 0:
        raise InputError("phenotype has no non-missing values")
    if not np.isfinite(obs).all():
        raise InputError(f"phenotype has {int((~np.isfinite(obs)).sum())} infinite values (missing is NaN)")
    vals = np.unique(obs)
    if trait is None:
        trait = "binary" if (set(vals) <= {0.0, 1.0} or set(vals) <= {1.0, 2.0}) else "quantitative"
    if trait == "binary":
        if set(vals) <= {1.0, 2.0} and not set(vals) <= {0.0, 1.0}:
            y = y - 1.0  # PLINK coding: 1 control, 2 case
        if not set(np.unique(y[~np.isnan(y)])) <= {0.0, 1.0}:
            raise InputError("a binary phenotype must be coded 0/1 (or PLINK 1/2)")
        if len(np.unique(y[~np.isnan(y)])) < 2:
            raise InputError("a binary phenotype needs both cases and controls")
    elif trait != "quantitative":
        raise InputError(f"trait must be 'binary' or 'quantitative', got {trait!r}")
    return y, trait


def _covariates(genotypes, covariates):
    if covariates is None:
        return None, []
    try:
        if hasattr(covariates, "columns"):
            names = [str(c) for c in covariates.columns]
            arr = covariates.to_numpy(dtype=np.float64)
        else:
            arr = np.asarray(covariates, dtype=np.float64)
            arr = arr[:, None] if arr.ndim == 1 else arr
            names = [f"covar{i}" for i in range(arr.shape[1])]
    except (TypeError, ValueError) as exc:
        raise InputError(f"covariates must be numeric (code categories as 0/1 columns): {exc}") from None
    if arr.ndim != 2:
        raise InputError(f"covariates must be (n_samples, n_covariates), got shape {arr.shape}")
    if np.isinf(arr).any():
        raise InputError(f"covariates have {int(np.isinf(arr).sum())} infinite values (missing is NaN)")
    if arr.shape[0] != genotypes.n_samples:
        raise InputError(f"covariates have {arr.shape[0]} rows, expected one per sample ({genotypes.n_samples})")
    return arr, names


def training_center(genotypes, train_pos: np.ndarray) -> np.ndarray:
    """2 x A1 frequency (mean observed dosage) among ``train_pos``, streamed chunk by chunk (float32).

    Counted from the 2-bit codes: (2 n_homA1 + n_het) / n_observed; 0 for a SNP with no call.
    """
    fidx = genotypes.sample_idx[np.asarray(train_pos)]
    out = np.zeros(genotypes.n_variants, np.float32)
    for start, stop in genotypes.variant_blocks():
        codes = unpack_codes(genotypes.read_packed(start, stop), genotypes.source.n_samples, fidx)
        n_hom1 = (codes == 0).sum(1, dtype=np.int64)
        n_het = (codes == 2).sum(1, dtype=np.int64)
        n_obs = codes.shape[1] - (codes == 1).sum(1, dtype=np.int64)
        out[start:stop] = np.where(n_obs > 0, (2 * n_hom1 + n_het) / np.maximum(n_obs, 1), 0.0)
    return out


# ===================================================================== data on the device
class _Data:
    """Labels, covariates and genotype batches on the training device."""

    def __init__(self, genotypes, y, cov_std, center, split: Split, device, resident, max_device_bytes):
        self.g = genotypes
        self.device = device
        self.y = torch.as_tensor(np.nan_to_num(y).astype(np.float32), device=device)
        self.cov = torch.as_tensor(cov_std, device=device) if cov_std is not None else None
        self.center = torch.as_tensor(np.asarray(center, dtype=np.float32), device=device)
        needed = np.sort(np.concatenate([split.train, split.early_stop, split.validation]))
        if max_device_bytes is None:
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                max_device_bytes = free // 2
            else:
                max_device_bytes = DEFAULT_CPU_BYTES
        self.max_stage_bytes = int(max_device_bytes)
        if resident is None:
            resident = packed_nbytes(genotypes.n_variants, len(needed)) <= self.max_stage_bytes
        self.store = stage(genotypes, needed, device) if resident else None
        self.store_index = None
        if resident:
            self.store_index = np.full(genotypes.n_samples, -1, np.int64)
            self.store_index[needed] = np.arange(len(needed))

    def batches(self, positions, batch_size):
        for pos, x in iter_batches(self.g, positions, self.center, batch_size, self.device, store=self.store,
                                   store_index=self.store_index, max_stage_bytes=self.max_stage_bytes):
            p = torch.as_tensor(pos, device=self.device)
            yield x, (self.cov[p] if self.cov is not None else None), self.y[p]


# ===================================================================== the member stack
@dataclass
class _MState:
    """Training state of one member: its small layers, their Adam moments, early-stopping record."""

    config: dict
    seed: int
    role: str
    h1: int
    small: dict                     # name -> leaf tensor (snp_linear.bias, covar_linear.weight, ...)
    w1: torch.Tensor
    m1: torch.Tensor
    v1: torch.Tensor
    m_small: dict = field(default_factory=dict)
    v_small: dict = field(default_factory=dict)
    g1: torch.Tensor | None = None  # bf16 first-layer gradient for the fused update (else w1.grad)
    flat_small: tuple | None = None  # (params, m, v, gradient buffer): flat storage of the small layers
    best: dict | None = None
    best_loss: float = math.inf
    best_epoch: int = -1
    bad: int = 0
    epochs: int = 0
    train_loss: float = math.nan


def _init_member(n_snps, n_covar, config, seed, role, device):
    """Initial weights: GenotypeMLP's default init under ``torch.manual_seed(seed)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = GenotypeMLP(n_snps, config["hidden"], n_covar)
    sd = {k: v.detach().to(device) for k, v in net.state_dict().items()}
    w1 = sd.pop("snp_linear.weight")
    # the small layers (and their Adam moments) are views into one flat tensor each, so that
    # the fused step updates them in one call (train._step_fused)
    flat = torch.cat([v.reshape(-1) for v in sd.values()])
    m_flat, v_flat = torch.zeros_like(flat), torch.zeros_like(flat)
    return _MState(config, int(seed), role, int(config["hidden"][0]),
                   {k: v.requires_grad_(True) for k, v in _flat_views(flat, sd).items()}, w1.requires_grad_(True),
                   torch.zeros_like(w1), torch.zeros_like(w1),
                   m_small=_flat_views(m_flat, sd), v_small=_flat_views(v_flat, sd),
                   flat_small=(flat, m_flat, v_flat, torch.empty_like(flat)))


def _flat_views(flat: torch.Tensor, like: dict) -> dict:
    """Consecutive views of ``flat`` shaped like the tensors of ``like`` (same order)."""
    out, off = {}, 0
    for k, v in like.items():
        out[k] = flat[off:off + v.numel()].view(v.shape)
        off += v.numel()
    return out


def _member_forward(z1, c, small):
    """Rest of one network from its first-layer SNP pre-activation z1 (b, h1) -> (b,)."""
    z = z1 + small["snp_linear.bias"]
    if "covar_linear.weight" in small:
        z = z + c @ small["covar_linear.weight"].T
    h = torch.relu(z)
    h = torch.relu(h @ small["hidden_linear.weight"].T + small["hidden_linear.bias"])
    return (h @ small["out_linear.weight"].T + small["out_linear.bias"]).squeeze(1)


def _shape_runs(members) -> list[tuple[int, int]]:
    """[start, stop) runs of consecutive members whose small layers have the same shapes
    (the grid lists each (h1, h2) configuration's l1 values and seeds together)."""
    runs, start = [], 0
    for k in range(1, len(members) + 1):
        if k == len(members) or members[k].config["hidden"] != members[start].config["hidden"]:
            runs.append((start, k))
            start = k
    return runs


def _grouped_forward(z1, c, members, runs) -> torch.Tensor:
    """Rest of the networks of ``members`` from their stacked first-layer pre-activations
    z1 (b, sum h1) -> outputs (n_members, b): the small layers of each run of same-shaped
    members (``runs``: :func:`_shape_runs`) as batched products (``bmm``) on their stacked
    weights, instead of ~10 small ops per member (which cost more than the products at the
    paper's sizes). The weights are stacked again for every batch, early-stopping batches
    too: ~5 MB for the paper's grid, under 1 ms per batch, not worth a cache to keep in step."""
    # split, not slices: its backward is one cat of the parts' gradients, where slicing would
    # zero-fill a z1-sized gradient per run (fresh pages: measurably slow on CPU)
    parts = z1.split([(b - a) * members[a].h1 for a, b in runs], 1)
    outs = []
    for (a, b), zr in zip(runs, parts):
        ms, h1 = members[a:b], members[a].h1
        g = b - a
        par = {n: torch.stack([m.small[n] for m in ms]) for n in ms[0].small}
        z = zr.reshape(-1, g, h1).transpose(0, 1)                               # (g, b, h1)
        z = z + par["snp_linear.bias"].unsqueeze(1)
        if "covar_linear.weight" in par:
            z = z + torch.matmul(c, par["covar_linear.weight"].transpose(1, 2))  # (b, k) @ (g, k, h1)
        h = torch.relu_(z)  # in place: z and the baddbmm output are fresh, and not needed back
        h = torch.relu_(torch.baddbmm(par["hidden_linear.bias"].unsqueeze(1), h,
                                      par["hidden_linear.weight"].transpose(1, 2)))
        f = torch.baddbmm(par["out_linear.bias"].unsqueeze(1), h, par["out_linear.weight"].transpose(1, 2))
        outs.append(f.squeeze(2))
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def _grouped_losses(f, y, trait, pos_weight) -> torch.Tensor:
    """Mean loss of each row of ``f`` (n_members, b) against ``y`` (b,) -> (n_members,)."""
    if trait == "binary":
        return F.binary_cross_entropy_with_logits(f, y.expand_as(f), pos_weight=pos_weight,
                                                  reduction="none").mean(1)
    return F.mse_loss(f, y.expand_as(f), reduction="none").mean(1)


def _loss(f, y, trait, pos_weight):
    if trait == "binary":
        return F.binary_cross_entropy_with_logits(f, y, pos_weight=pos_weight)
    return F.mse_loss(f, y)


def _adam_(p, g, m, v, t, lr, betas, eps, denom=None):
    """One Adam step in place (the op sequence of torch.optim.Adam's single-tensor path);
    returns ``denom = sqrt(v_hat) + eps`` (written into ``denom`` if given, a scratch
    buffer: first-layer tensors are large, and fresh temporaries cost page faults)."""
    b1, b2 = betas
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = torch.sqrt(v, out=denom) if denom is not None else v.sqrt()
    denom.div_(math.sqrt(1 - b2 ** t)).add_(eps)
    p.addcdiv_(m, denom, value=-lr / (1 - b1 ** t))
    return denom


def _soft_threshold_(p, thr, buf=None):
    """``p <- sign(p) max(|p| - thr, 0)`` in place (exact zeros inside the threshold).

    Written as ``copysign(relu(|p| - thr), p)``: the same values in fewer, vectorized
    passes (this runs on every first-layer weight of every member at every batch).
    """
    buf = torch.abs(p, out=buf) if buf is not None else p.abs()
    torch.copysign(buf.sub_(thr).relu_(), p, out=p)


class _Stack:
    """Members trained together on the same minibatches.

    Each member keeps its own first-layer leaf tensor ``w1`` (h1, n_snps) and Adam moments.
    ``stacked=True`` computes all first layers as one GEMM ``x @ cat(w1_k).T`` (one kernel
    instead of one per member: what pays on a GPU); ``stacked=False`` runs one GEMM per
    member on the same decoded batch. On CPU the default is per member: BLAS libraries may
    pick another kernel (another summation order) for another total width, so only the
    per-member form guarantees that a member's weights are bitwise the same alone or in a
    grid; at the paper's sizes both forms run at the same speed on CPU (benchmarks/results/deep.md).
    Stacked, the small layers run grouped by shape as well (:func:`_grouped_forward`).
    """

    def __init__(self, members: list[_MState], stacked: bool, precision: str = "float32", fused: bool = False):
        self.members = members
        self.stacked = stacked
        self.bf16 = precision == "bf16"
        self._rows = [0, *itertools.accumulate(m.h1 for m in members)]  # member k: rows [k] to [k + 1]
        self._runs = _shape_runs(members)
        # fused: the first-layer update runs as one pass (optim.prox_adam_, CPU); in bf16 mode
        # it also writes the bf16 weights of the next forward and reads the bf16 gradient as is
        self.fused = fused
        self._scratch = {}
        self._xb = self._z1 = None
        # bf16 stacked buffers, (sum h1, n_snps) each, allocated once per stack: the stacked
        # bf16 weights, the bf16 weight gradient and its float32 copy. Fresh tensors of this
        # size at every step cost more in page faults than the products themselves
        # (benchmarks/results/deep.md).
        self._wb = self._gb = self._gf = None
        self._wbm = {}               # bf16 per-member (not stacked) fused mode: id -> bf16 weights
        self._wb_current = False     # the bf16 weights were written by the last fused update

    def scratch(self, p):
        """Two reusable buffers shaped like ``p`` (one set per first-layer shape)."""
        key = tuple(p.shape)
        if key not in self._scratch:
            self._scratch[key] = (torch.empty_like(p), torch.empty_like(p))
        return self._scratch[key]

    def losses(self, x, c, y, trait, pos_weight) -> torch.Tensor:
        """Mean loss of every member on the batch (n_members,), differentiable.

        Stacked: the first layers as one product and the small layers grouped by shape
        (:func:`_grouped_forward`). Per member: each network on its own, so that a member's
        arithmetic does not depend on the others (the float32 CPU promise)."""
        if self.stacked and len(self.members) > 1:
            f = _grouped_forward(self._stacked_z1(x), c, self.members, self._runs)
            return _grouped_losses(f, y, trait, pos_weight)
        return torch.stack([_loss(f, y, trait, pos_weight) for f in self.forward(x, c)])

    def _stacked_z1(self, x):
        if self.bf16:
            return self._first_layers_bf16(x)[0]
        return x @ torch.cat([m.w1 for m in self.members]).T   # the one stacked first-layer GEMM

    def forward(self, x, c):
        """Per-member outputs [(b,)] (the per-member path of :meth:`losses`)."""
        ms = self.members
        if self.bf16:
            z1 = self._first_layers_bf16(x)
            zs = z1[0].split([m.h1 for m in ms], 1) if len(z1) == 1 else z1
        else:
            zs = [x @ m.w1.T for m in ms]
        return [_member_forward(zk, c, m.small) for m, zk in zip(ms, zs)]

    def _first_layers_bf16(self, x):
        """First layers from bf16 operands: [z1 (b, sum h1)] stacked, else one (b, h1) per
        member. These float32 outputs are autograd leaves, so ``backward`` stops there and
        :meth:`first_layer_grads` forms the weight gradients."""
        ms = self.members
        xb = x.to(torch.bfloat16)
        with torch.no_grad():
            if self.stacked and len(ms) > 1:
                if self._wb is None:
                    self._wb = torch.empty((self._rows[-1], x.shape[1]), dtype=torch.bfloat16,
                                           device=x.device)
                if not self._wb_current:
                    torch.cat([m.w1 for m in ms], out=self._wb)  # rounds to bf16 while stacking: one pass
                z1 = [(xb @ self._wb.T).float()]
            elif self.fused:
                if not self._wb_current:
                    for m in ms:
                        self._wbm[id(m)] = m.w1.detach().to(torch.bfloat16)
                z1 = [(xb @ self._wbm[id(m)].T).float() for m in ms]
            else:
                z1 = [(xb @ m.w1.to(torch.bfloat16).T).float() for m in ms]
        z1 = [z.requires_grad_(torch.is_grad_enabled()) for z in z1]
        self._xb, self._z1 = xb, z1
        return z1

    def first_layer_grads(self):
        """bf16 mode, after ``backward``: ``w1.grad = (dZ1.T @ x)`` of every member (float32)."""
        if not self.bf16:
            return
        ms, xb = self.members, self._xb
        with torch.no_grad():
            if len(self._z1) == 1 and len(ms) > 1:  # stacked: into the stack's reused buffers
                if self._gb is None:
                    self._gb = torch.empty_like(self._wb)
                torch.mm(self._z1[0].grad.to(torch.bfloat16).T, xb, out=self._gb)
                if self.fused:  # the fused update reads the bf16 gradient directly
                    gs = self._gb.split([m.h1 for m in ms], 0)
                else:
                    if self._gf is None:
                        self._gf = torch.empty(self._wb.shape, dtype=torch.float32, device=xb.device)
                    gs = self._gf.copy_(self._gb).split([m.h1 for m in ms], 0)
            else:
                gs = [z.grad.to(torch.bfloat16).T @ xb for z in self._z1]
                gs = [g if self.fused else g.float() for g in gs]
        for m, g in zip(ms, gs):
            if self.fused:
                m.g1 = g
            else:
                m.w1.grad = g
        self._xb = self._z1 = None

    def bf16_weights(self, k: int):
        """Fused bf16 mode: where member ``k``'s update writes its bf16 weights (else None)."""
        if not (self.bf16 and self.fused):
            return None
        if self.stacked and len(self.members) > 1:
            return self._wb[self._rows[k]:self._rows[k + 1]]
        return self._wbm[id(self.members[k])]

    def bf16_weights_written(self):
        """After a fused step: the bf16 weights are current, the next forward need not round."""
        self._wb_current = self.bf16

    def without(self, done: set):
        keep = [m for m in self.members if id(m) not in done]
        if not keep:
            return None
        new = _Stack(keep, self.stacked, "bf16" if self.bf16 else "float32", self.fused)
        # the stacked buffers shrink to a prefix of the old ones (no fresh pages to fault in);
        # their contents are rewritten before use
        for name in ("_wb", "_gb", "_gf"):
            buf = getattr(self, name)
            if buf is not None:
                setattr(new, name, buf[:new._rows[-1]])
        return new


# ===================================================================== the engine
def _train_stack(data: _Data, states: list[_MState], opts: dict, trait: str, split: Split, n_train: int,
                 pos_weight, finish, progress, stacked: bool):
    """Train ``states`` together, calling ``finish(state, best_weights)`` as each one stops."""
    stack = _Stack(states, stacked, opts.get("precision", "float32"), fused=_use_fused(data.device, opts))
    betas, eps, bs = tuple(opts["betas"]), float(opts["eps"]), int(opts["batch_size"])
    t = 0
    # L1 warm-up: the penalty ramps linearly from 0 over the first ``l1_warmup`` epochs, and
    # early stopping starts watching once it is at full strength (see train()).
    warmup = int(opts.get("l1_warmup", 0))
    warm_steps = warmup * -(-n_train // bs)
    for epoch in progress_bar(range(int(opts["epochs"])), total=int(opts["epochs"]),
                              desc=f"deep: {len(states)} members", progress=progress):
        if stack is None:
            break
        perm = np.random.default_rng([int(opts["shuffle_seed"]), epoch]).permutation(split.train)
        sums = torch.zeros(len(stack.members), dtype=torch.float64, device=data.device)
        for x, c, yb in data.batches(perm, bs):
            t += 1
            losses = stack.losses(x, c, yb, trait, pos_weight)
            losses.sum().backward()
            stack.first_layer_grads()
            sums += losses.detach().double() * len(yb)
            _step(stack, t, opts, betas, eps, n_train, min(1.0, t / warm_steps) if warm_steps else 1.0)
        es = _evaluate(data, stack, split.early_stop, bs, trait, pos_weight)
        done = set()
        last = epoch + 1 == int(opts["epochs"])
        for k, ms in enumerate(stack.members):
            ms.epochs = epoch + 1
            ms.train_loss = float(sums[k]) / len(split.train)
            loss = float(es[k])
            if epoch + 1 < warmup and not last:
                if not math.isfinite(loss):
                    done.add(id(ms))
                continue
            if loss < ms.best_loss or ms.best is None:
                ms.best_loss, ms.best_epoch, ms.bad = loss, epoch + 1, 0
                _snapshot(ms)
            else:
                ms.bad += 1
            if ms.bad >= int(opts["patience"]) or last or not math.isfinite(loss):
                done.add(id(ms))
        if done:
            finished = [ms for ms in stack.members if id(ms) in done]
            stack = stack.without(done)
            for ms in finished:  # free the training state
                ms.w1 = ms.m1 = ms.v1 = None
            finish(finished)


def _use_fused(device, opts) -> bool:
    """The one-pass first-layer update (optim.py): CPU, Adam, proximal L1, numba present."""
    return (device.type == "cpu" and opts["optimizer"] == "adam" and opts["l1_mode"] == "proximal"
            and kernels.available())


def _snapshot(ms: _MState):
    """Copy the current weights into ``ms.best`` (allocated once: a fresh first-layer copy
    at every improving epoch costs more in page faults than the copy itself)."""
    cur = {"snp_linear.weight": ms.w1, **ms.small}
    if ms.best is None:
        ms.best = {n: p.detach().clone() for n, p in cur.items()}
    else:
        for n, p in cur.items():
            ms.best[n].copy_(p.detach())


def _step(stack: _Stack, t, opts, betas, eps, n_train, ramp: float = 1.0):
    """Per-member Adam (or SGD) + L1 (times ``ramp`` during the warm-up), every op on one
    member's own tensors."""
    if stack.fused:
        return _step_fused(stack, t, betas, eps, n_train, ramp)
    sgd = opts["optimizer"] == "sgd"
    prox = opts["l1_mode"] == "proximal"
    with torch.no_grad():
        for ms in stack.members:
            lr = float(ms.config["lr"])
            lam = float(ms.config["l1"]) / n_train * ramp
            p, g = ms.w1, ms.w1.grad
            buf, den = stack.scratch(p)
            if not prox and lam:
                g = g + lam * torch.sign(p)
            if sgd:
                p.add_(g, alpha=-lr)
                if prox and lam:
                    _soft_threshold_(p, lr * lam, buf)
            else:
                denom = _adam_(p, g, ms.m1, ms.v1, t, lr, betas, eps, den)
                if prox and lam:
                    _soft_threshold_(p, denom.reciprocal_().mul_(lr * lam), buf)
            ms.w1.grad = None
            _step_small(ms, t, lr, betas, eps, sgd)


def _step_fused(stack: _Stack, t, betas, eps, n_train, ramp: float):
    """The fused CPU step (optim.py): Adam + soft threshold in one pass per first layer (which
    also writes the bf16 weights of the next forward), and the same kernel (without the
    threshold) once over each member's small layers (flat storage, see _init_member) instead
    of ~8 torch ops per tensor."""
    with torch.no_grad():
        # torch ops first, then the kernels: a torch op right after a numba parallel call
        # waits for the cores that numba's OpenMP workers still spin on (~0.3 ms each)
        for ms in stack.members:
            torch.cat([q.grad.reshape(-1) for q in ms.small.values()], out=ms.flat_small[3])
            for q in ms.small.values():
                q.grad = None
        for k, ms in enumerate(stack.members):
            lr = float(ms.config["lr"])
            lam = float(ms.config["l1"]) / n_train * ramp
            g = ms.g1 if ms.g1 is not None else ms.w1.grad
            optim.prox_adam_(ms.w1, g, ms.m1, ms.v1, t, lr, lam, betas, eps, stack.bf16_weights(k))
            ms.w1.grad = ms.g1 = None
            flat, m, v, g_small = ms.flat_small
            optim.prox_adam_(flat, g_small, m, v, t, lr, 0.0, betas, eps)
    stack.bf16_weights_written()


def _step_small(ms: _MState, t, lr, betas, eps, sgd: bool):
    """Adam (or SGD) on one member's small layers (biases, covariate and deeper weights)."""
    for n, q in ms.small.items():
        if sgd:
            q.add_(q.grad, alpha=-lr)
        else:
            _adam_(q, q.grad, ms.m_small[n], ms.v_small[n], t, lr, betas, eps)
        q.grad = None


def _evaluate(data: _Data, stack: _Stack, positions, bs, trait, pos_weight):
    """Mean loss (no penalty) of every member of the stack on ``positions`` (float64 tensor)."""
    sums = torch.zeros(len(stack.members), dtype=torch.float64, device=data.device)
    with torch.no_grad():
        for x, c, yb in data.batches(positions, bs):
            sums += stack.losses(x, c, yb, trait, pos_weight).double() * len(yb)
    return (sums / len(positions)).cpu()


def _predict(data: _Data, models: list[GenotypeMLP], positions, bs):
    """Outputs (len(models), len(positions)) of CPU models on ``positions`` (one decode per batch)."""
    dev = data.device
    nets = [m.to(dev) for m in models]
    out = []
    with torch.no_grad():
        for x, c, _ in data.batches(positions, bs):
            out.append(torch.stack([n(x, c)[:, 0] for n in nets]).double().cpu())
    for m in models:
        m.cpu()
    return torch.cat(out, 1).numpy()


def _validation_metrics(data, models, states, split, trait, y, bs):
    """Validation log-likelihood (mean per sample) of each model and of the constant model."""
    yv = y[split.validation]
    ytr = y[split.train]
    # a cross-fitted member has no validation samples (fold_split): its log-likelihoods are NaN
    f = _predict(data, models, split.validation, bs) if len(yv) else np.full((len(models), 0), np.nan)
    out = []
    for k, ms in enumerate(states):
        if not len(yv):
            ll = ll0 = math.nan
        elif trait == "binary":
            ll = float(np.mean(yv * -np.logaddexp(0, -f[k]) + (1 - yv) * -np.logaddexp(0, f[k])))
            p = ytr.mean()
            ll0 = float(np.mean(yv * np.log(p) + (1 - yv) * np.log1p(-p)))
        else:
            s2 = max(ms.best_loss, 1e-12)  # residual variance on the early-stopping set
            ll = float(np.mean(-0.5 * np.log(2 * np.pi * s2) - (yv - f[k]) ** 2 / (2 * s2)))
            ll0 = float(np.mean(-0.5 * np.log(2 * np.pi) - yv ** 2 / 2))
        w = models[k].snp_linear.weight.detach()
        out.append({"val_loglik": ll, "val_loglik_constant": ll0, "es_loss": ms.best_loss,
                    "train_loss": ms.train_loss, "epochs": ms.epochs, "best_epoch": ms.best_epoch,
                    "n_nonzero_snps": int((w != 0).any(0).sum()),
                    "n_nonzero_weights": int((w != 0).sum())})
    return out


# ===================================================================== checkpoints
def _fingerprint(g, y, cov, center, split, trait, opts) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(g.variants[["snp", "a1", "a2"]].astype(str), index=False).values.tobytes())
    for a in (np.nan_to_num(y, nan=-999.0), center, split.train, split.early_stop, split.validation):
        h.update(np.ascontiguousarray(a).tobytes())
    if cov is not None:
        h.update(np.ascontiguousarray(cov).tobytes())
    h.update(json.dumps([trait, opts], sort_keys=True, default=str).encode())
    return h.hexdigest()


class _Checkpoints:
    """Finished members saved as ``<key>.pt`` + ``<key>.json`` under a directory."""

    def __init__(self, path, fingerprint):
        self.dir = Path(path) if path is not None else None
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        man = self.dir / "manifest.json"
        if man.exists():
            try:
                old = json.loads(man.read_text()).get("fingerprint")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                raise InputError("checkpoint manifest is not a JSON object", man) from None
            if old != fingerprint:
                raise InputError("this checkpoint directory belongs to another run (other data, split, "
                                 "phenotype or training options); use a fresh directory", man)
        else:
            with atomic_path(man) as tmp:
                tmp.write_text(json.dumps({"fingerprint": fingerprint}))

    def load(self, key, config, seed, role, n_snps, n_covar, fold=None):
        if self.dir is None or not (self.dir / f"{key}.json").exists():
            return None
        js = self.dir / f"{key}.json"
        try:
            rec = json.loads(js.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError("checkpoint record is not valid JSON", js) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("metrics"), dict):
            raise InputError("checkpoint record is not a JSON object with the member's metrics", js)
        pt = self.dir / f"{key}.pt"
        if not pt.exists() or _sha256(pt) != rec.get("sha256"):
            raise InputError("checkpoint weights missing or corrupt (checksum mismatch)", pt)
        model = GenotypeMLP(n_snps, config["hidden"], n_covar)
        load_member_weights(pt, model)
        return Member(config, int(seed), model, dict(rec["metrics"]), role, fold)

    def save(self, member: Member):
        if self.dir is None:
            return
        pt = self.dir / f"{member.key}.pt"
        save_member_weights(pt, member.model)
        rec = {"config": config_json(member.config), "seed": member.seed, "role": member.role,
               "metrics": member.metrics, "sha256": _sha256(pt)}
        with atomic_path(self.dir / f"{member.key}.json") as tmp:
            tmp.write_text(json.dumps(rec))


# ===================================================================== public API
def _grid(hidden, l1, lr):
    if hidden is None or len(hidden) == 0:
        raise InputError("the grid is empty: hidden needs at least one (h1, h2) pair")
    try:
        hidden = [tuple(int(v) for v in h) for h in ([hidden] if isinstance(hidden[0], (int, np.integer)) else hidden)]
        l1 = [float(v) for v in np.atleast_1d(l1)]
        lr = [float(v) for v in np.atleast_1d(lr)]
    except (TypeError, ValueError, IndexError) as exc:
        raise InputError(f"hidden must be (h1, h2) pairs, l1 and lr numbers or lists of numbers ({exc})") from None
    if not (hidden and l1 and lr):
        raise InputError("the grid is empty: hidden, l1 and lr each need at least one value")
    for h in hidden:
        if len(h) != 2 or min(h) < 1:
            raise InputError(f"hidden sizes must be pairs of positive widths (h1, h2), got {h}")
    if not all(math.isfinite(a) and a >= 0 for a in l1) or not all(math.isfinite(r) and r > 0 for r in lr):
        raise InputError(f"l1 must be finite and >= 0 and lr finite and > 0, got l1={l1}, lr={lr}")
    return [{"hidden": h, "l1": a, "lr": r} for h, a, r in itertools.product(hidden, l1, lr)]


def member_state_bytes(n_inputs: int, config: dict, n_covar: int = 0, precision: str = "float32") -> int:
    """Training memory of one member (bytes): :data:`STATE_BYTES_PER_WEIGHT` per weight of
    its first layer (h1 x ``n_inputs`` SNPs) and :data:`SMALL_STATE_BYTES_PER_PARAM` per
    parameter of the rest."""
    h1, h2 = (int(h) for h in config["hidden"])
    small = h1 + h1 * n_covar + h1 * h2 + h2 + h2 + 1
    return STATE_BYTES_PER_WEIGHT[precision] * h1 * int(n_inputs) + SMALL_STATE_BYTES_PER_PARAM * small


def state_budget(device) -> int:
    """Default memory for the members trained at once (bytes): 70% of the free memory of a
    CUDA device (the resident genotypes already placed), half of :func:`available_memory`
    on CPU (no limit where it cannot be read)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.7 * free)
    avail = available_memory()
    return 2**62 if avail is None else avail // 2


def _waves(items: list, sizes: list[int], budget):
    """``items`` in order, cut into consecutive waves whose ``sizes`` sum to at most
    ``budget()``; a member larger than the budget trains alone. A generator: the budget is
    asked when the next wave is wanted, i.e. after the previous one has trained (finished
    members' weights take memory meanwhile)."""
    k = 0
    while k < len(items):
        limit, total, j = budget(), sizes[k], k + 1
        while j < len(items) and total + sizes[j] <= limit:
            total += sizes[j]
            j += 1
        yield items[k:j]
        k = j


def _fit_members(genotypes, y, trait, cov_arr, covar_names, split, center, covar_mean, covar_scale,
                 y_mean, y_scale, specs, opts, device, checkpoint_dir, progress, resident,
                 max_device_bytes, on_member_done, stacked=None, fold=None, max_state_bytes=None):
    """Train (or load from checkpoints) the members ``specs`` = [(config, seed, role)] on
    ``split`` (``fold``: recorded in each member, see :class:`Member`).

    The members train in waves whose training state (:func:`member_state_bytes`) fits
    ``max_state_bytes`` (default :func:`state_budget`, asked before each wave): all at
    once where they fit, as for 10,000 SNPs; the paper's 80-member grid on 336,814 SNPs
    needs ~52 GB at once (72 GB in bf16). Each wave replays the same minibatch order from step 1, so a
    member is trained exactly as in one wave (bitwise on CPU in float32, where members do
    not share products; tested)."""
    n_covar = len(covar_names)
    ys = (y - y_mean) / y_scale
    cov_std = ((cov_arr - covar_mean) / covar_scale).astype(np.float32) if cov_arr is not None else None
    fp = _fingerprint(genotypes, ys, cov_std, center, split, trait, opts)
    ckpt = _Checkpoints(checkpoint_dir, fp)
    done = {}
    todo = []
    for cfg, seed, role in specs:
        m = ckpt.load(member_key(cfg, seed, role), cfg, seed, role, genotypes.n_variants, n_covar, fold)
        if m is not None:
            done[member_key(cfg, seed, role)] = m
        else:
            todo.append((cfg, seed, role))
    if todo:
        data = _Data(genotypes, ys, cov_std, center, split, device, resident, max_device_bytes)
        pw = opts["pos_weight"]
        if trait == "binary" and pw is not None:
            ytr = ys[split.train]
            pw = (ytr == 0).sum() / max((ytr == 1).sum(), 1) if pw == "balanced" else float(pw)
            pw = torch.tensor(float(pw), device=device)
        else:
            pw = None

        def finish(finished):
            models = []
            for ms in finished:
                with torch.device("meta"):  # no allocation or init: the best weights are assigned
                    net = GenotypeMLP(genotypes.n_variants, ms.config["hidden"], n_covar)
                net.load_state_dict({k: v.cpu() for k, v in ms.best.items()}, assign=True)
                models.append(net.float().eval())
            metrics = _validation_metrics(data, models, finished, split, trait, ys, int(opts["batch_size"]))
            for ms, net, met in zip(finished, models, metrics):
                met["precision"] = opts.get("precision", "float32")  # of the first-layer products
                member = Member(ms.config, ms.seed, net, met, ms.role, fold)
                done[member.key] = member
                ckpt.save(member)
                if on_member_done is not None:
                    on_member_done(member)

        if stacked is None:  # see _Stack and the module docstring
            stacked = device.type == "cuda" or opts.get("precision") == "bf16"
        stacked = bool(stacked)
        sizes = [member_state_bytes(genotypes.n_variants, cfg, n_covar, opts.get("precision", "float32"))
                 for cfg, _, _ in todo]
        budget = (lambda: int(max_state_bytes)) if max_state_bytes is not None else (lambda: state_budget(device))
        for wave in _waves(todo, sizes, budget):
            states = [_init_member(genotypes.n_variants, n_covar, cfg, seed, role, device) for cfg, seed, role in wave]
            _train_stack(data, states, opts, trait, split, len(split.train), pw, finish, progress, stacked)
            del states
    return [done[member_key(cfg, seed, role)] for cfg, seed, role in specs]


def train(genotypes, phenotype, hidden=((64, 256),), l1=(0.01, 0.1, 1, 10), seeds=range(5), covariates=None,
          device="auto", split=None, split_seed: int = 0, epochs: int = DEFAULTS["epochs"],
          patience: int = DEFAULTS["patience"], batch_size: int = DEFAULTS["batch_size"], lr=1e-3,
          optimizer: str = "adam", l1_mode: str = "proximal", l1_warmup: int = 0, pos_weight=None,
          trait: str | None = None, shuffle_seed: int = 0, refit_seeds=None, checkpoint_dir=None, progress=None, resident=None,
          max_device_bytes: int | None = None, on_member_done=None, stacked: bool | None = None,
          precision: str = "float32", cross_fit: bool = False, max_state_bytes: int | None = None) -> DeepFit:
    """Train every (configuration, seed) pair of the grid; optionally select and refit.

    Parameters
    ----------
    genotypes : Genotypes
        Lazy PLINK genotypes; the model inputs are its variants (A1 = .bim column 5), in order.
    phenotype : Series or array (n_samples,)
        Aligned with ``genotypes.samples``; NaN samples are left out of every split. Binary
        (0/1, or PLINK 1/2 = control/case) -> BCE on the logit; else quantitative ->
        MSE on the trait standardized by its training mean and SD.
    hidden, l1, lr
        The grid: ``hidden`` pairs (h1, h2) x ``l1`` strengths x ``lr`` (float or list).
        ``l1`` scale: see the module docstring (penalty ``l1 / n_train * sum |W1|``).
    seeds
        Initialization seeds; each configuration is trained once per seed.
    covariates : DataFrame or array (n_samples, n_covar), optional
        Unpenalized inputs (PCs, age, sex), standardized by their training mean and SD.
        Samples with a missing covariate are left out of the split.
    device
        "auto" (CUDA if available, else CPU), "cpu", "cuda", ...
    split
        A :class:`Split` (positions into ``genotypes.samples``); default
        ``make_split(y, split_seed)`` = seeded 50/25/25, stratified for binary traits.
    epochs, patience, batch_size, optimizer ("adam" | "sgd"), l1_mode ("proximal" |
    "subgradient"), pos_weight (None | "balanced" = n_controls / n_cases | float; binary)
        Training options. Each member stops after ``patience`` epochs without improving its
        early-stopping loss (or at ``epochs``); its best weights are kept.
    l1_warmup
        Epochs over which the L1 strength ramps linearly from 0 to ``l1`` (0 = full strength
        from the first step, the paper's way). Early stopping and the best weights only
        count epochs from the one that ends the ramp, so a dense early model is never kept.
        Why: with a strong penalty from the start every first-layer weight is cut before the
        deeper layers have learnt to pass any signal, and the whole layer dies (the module
        docstring); a warm-up lets the network find the SNPs it uses first and prunes the
        rest after.
    shuffle_seed
        Seed of the minibatch order, shared by all members (so they share each batch).
    refit_seeds
        If given, also :func:`select` the best configuration and :func:`refit` it with these
        seeds (role 'refit'), in this one call.
    checkpoint_dir
        Finished members are saved here as they finish; a rerun with the same directory and
        inputs reloads them instead of training again (an interrupted grid resumes).
    progress
        Progress bar per epoch (None: only when stderr is a terminal).
    resident, max_device_bytes
        Keep the packed genotypes of all split samples on the device for all epochs when they
        fit ``max_device_bytes`` (default: half the free GPU memory; 4 GiB on CPU), else
        stream blocks of samples each epoch. ``resident`` True/False forces the choice.
    on_member_done
        Called with each finished :class:`Member` (after its checkpoint is written).
    stacked
        First layers of all members as one GEMM (True) or one GEMM per member on the shared
        decoded batch (False). Default: True on CUDA, False on CPU, where only the
        per-member form makes a member bitwise independent of its grid (see ``_Stack``).
        With ``precision="bf16"`` the default is True on every device.
    precision
        "float32" (default: exact float32 arithmetic throughout) or "bf16": the first-layer
        SNP products (forward and weight gradient) take bfloat16 operands, the rest stays
        float32 (module docstring). Stored in ``fit.config["precision"]`` and in each
        member's ``metrics["precision"]``.
    cross_fit
        With ``refit_seeds``: cross-fitted refits, one fold per refit seed (see :func:`refit`).
    max_state_bytes
        Memory for the training state of the members trained at once (weights, Adam
        moments, gradients, best-epoch copies: :func:`member_state_bytes`, 20 bytes per
        first-layer weight, 28 in bf16). Members beyond it train in later waves, with the same results.
        Default: :func:`state_budget` (half the available memory on CPU, 70% of the free GPU
        memory), asked before each wave.

    Returns
    -------
    DeepFit
    """
    dev = resolve_device(device)
    y, trait = _phenotype(genotypes, phenotype, trait)
    cov_arr, covar_names = _covariates(genotypes, covariates)
    if split is None:
        ok = y.copy()
        if cov_arr is not None:
            ok[np.isnan(cov_arr).any(1)] = np.nan
        split = make_split(ok, split_seed, stratify=(trait == "binary"))
    else:
        _check_split(split, y, cov_arr, genotypes.n_samples)
    if optimizer not in ("adam", "sgd"):
        raise InputError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if l1_mode not in ("proximal", "subgradient"):
        raise InputError(f"l1_mode must be 'proximal' or 'subgradient', got {l1_mode!r}")
    _check_training_options(epochs, patience, batch_size, pos_weight, trait)
    _check_precision(precision)
    if cross_fit and refit_seeds is None:
        raise InputError("cross_fit applies to the refits: pass refit_seeds too")
    if int(l1_warmup) < 0:
        raise InputError(f"l1_warmup must be >= 0 epochs, got {l1_warmup}")
    opts = dict(DEFAULTS, epochs=int(epochs), patience=int(patience), batch_size=int(batch_size),
                optimizer=optimizer, l1_mode=l1_mode, l1_warmup=int(l1_warmup), pos_weight=pos_weight, shuffle_seed=int(shuffle_seed),
                precision=precision)
    center = training_center(genotypes, split.train)
    if cov_arr is not None:
        ctr = cov_arr[split.train]
        covar_mean, covar_scale = ctr.mean(0), ctr.std(0)
        covar_scale = np.where(covar_scale > 0, covar_scale, 1.0)
    else:
        covar_mean = covar_scale = np.zeros(0)
    if trait == "quantitative":
        y_mean, y_scale = float(np.mean(y[split.train])), float(np.std(y[split.train]))
        y_scale = y_scale if y_scale > 0 else 1.0
    else:
        y_mean, y_scale = 0.0, 1.0
    specs = [(cfg, int(s), "grid") for cfg in _grid(hidden, l1, lr) for s in seeds]
    members = _fit_members(genotypes, y, trait, cov_arr, covar_names, split, center, covar_mean, covar_scale,
                           y_mean, y_scale, specs, opts, dev, checkpoint_dir, progress, resident,
                           max_device_bytes, on_member_done, stacked, max_state_bytes=max_state_bytes)
    fit = DeepFit(members=members, variants=genotypes.variants[VARIANT_COLUMNS].reset_index(drop=True),
                  center=center, covar_names=covar_names, covar_mean=covar_mean, covar_scale=covar_scale,
                  split=split, samples=genotypes.samples[["fid", "iid"]].reset_index(drop=True), trait=trait,
                  y_mean=y_mean, y_scale=y_scale, selected=None, config=opts)
    if refit_seeds is not None:
        fit.selected = select(fit)
        fit = refit(genotypes, phenotype, fit, seeds=refit_seeds, covariates=covariates, device=device,
                    precision=precision,
                    checkpoint_dir=checkpoint_dir, progress=progress, resident=resident,
                    max_device_bytes=max_device_bytes, on_member_done=on_member_done, stacked=stacked,
                    cross_fit=cross_fit, max_state_bytes=max_state_bytes)
    return fit


def _check_training_options(epochs, patience, batch_size, pos_weight, trait):
    for name, v in (("epochs", epochs), ("patience", patience), ("batch_size", batch_size)):
        try:
            whole = not isinstance(v, bool) and int(v) == v and v >= 1
        except (TypeError, ValueError):
            whole = False
        if not whole:
            raise InputError(f"{name} must be a whole number >= 1, got {v!r}")
    if pos_weight is None:
        return
    if trait != "binary":
        raise InputError("pos_weight weights the cases of a binary trait; this trait is quantitative")
    if pos_weight != "balanced":
        try:
            ok = math.isfinite(float(pos_weight)) and float(pos_weight) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"pos_weight must be None, 'balanced' or a finite positive number, got {pos_weight!r}")


def _check_precision(precision):
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _check_split(split, y, cov_arr, n):
    if not isinstance(split, Split):
        raise InputError("split must be a gwaslift.deep.Split")
    for name in ("train", "early_stop", "validation"):
        p = getattr(split, name)
        if p.size and (p.min() < 0 or p.max() >= n):
            raise InputError(f"split.{name} positions must lie in 0..{n - 1}")
        if np.isnan(y[p]).any():
            raise InputError(f"split.{name} holds samples with a missing phenotype")
        if cov_arr is not None and np.isnan(cov_arr[p]).any():
            raise InputError(f"split.{name} holds samples with a missing covariate")


def select(fit: DeepFit, role: str = "grid") -> dict:
    """The configuration with the best validation log-likelihood averaged over its seeds."""
    ms = fit.members_by_role(role)
    if not ms:
        raise InputError(f"the fit has no {role!r} members to select from")
    tab = fit.metrics_table()
    tab = tab[tab.role == role]
    # a seed without a validation log-likelihood (it diverged, or there are no validation
    # samples) leaves its configuration without a mean: it cannot be chosen
    mean = tab.groupby(["h1", "h2", "l1", "lr"], sort=False)["val_loglik"].agg(lambda v: v.mean(skipna=False))
    if not np.isfinite(mean.to_numpy(dtype=np.float64)).any():
        raise InputError(f"no configuration of the {role!r} members has a finite validation log-likelihood for "
                         "every seed (an empty validation split, or members that diverged): nothing to select")
    h1, h2, a, r = mean.idxmax()
    return {"hidden": (int(h1), int(h2)), "l1": float(a), "lr": float(r)}


def refit(genotypes, phenotype, fit: DeepFit, seeds=range(5, 10), role: str = "refit", config: dict | None = None,
          covariates=None, device="auto", checkpoint_dir=None, progress=None, resident=None,
          max_device_bytes=None, on_member_done=None, stacked=None, precision: str | None = None,
          cross_fit: bool | None = None, fold_seed: int = 0, max_state_bytes: int | None = None) -> DeepFit:
    """Train ``config`` (default ``fit.selected`` or :func:`select`) again with ``seeds``.

    Same split, centering, covariate scaling and training options as ``fit``; ``phenotype``
    may differ (e.g. permuted, with ``role='null'``). ``precision`` (None: the fit's,
    ``fit.config["precision"]``, float32 for fits made before the option existed) may differ
    from the fit's; each new member records its own in ``metrics["precision"]`` while
    ``fit.config`` keeps the grid's. Returns a new DeepFit holding ``fit``'s members
    followed by the new ones (role ``role``).

    ``cross_fit=True`` (not the paper's protocol): the samples of the fit's split (train,
    early stopping and validation together) are dealt into ``k = len(seeds)`` folds
    (:func:`~gwaslift.deep.fit.make_folds`, seed ``fold_seed``, stratified for a binary
    trait), and the j-th seed trains on every fold but fold j and early-stops on fold j. A
    fit that has folds already keeps them, and ``cross_fit=None`` (the default) then means
    True, so that null and decoy refits of a cross-fitted fit train as its members did.
    Why: the paper's refits all train on the same 50% of the samples, while a per-SNP GWAS
    uses all of them; across k cross-fitted members every sample is trained on
    (k - 1) / k of the time (80% each for five seeds), which is what the mean score over the
    members sees. The centre, the covariate scaling and the options stay the fit's, so the
    mean-genotype reference is the same for every member. Cross-fitted members have no
    validation samples (``val_loglik`` NaN): select on the grid first. Each fold's members
    checkpoint under ``checkpoint_dir/fold<j>``. ``max_state_bytes``: as in :func:`train`.
    """
    check_variants(fit.variants, genotypes)
    check_samples(fit.samples, genotypes)
    cfg = dict(config or fit.selected or select(fit))
    cfg["hidden"] = tuple(int(h) for h in cfg["hidden"])
    y, trait = _phenotype(genotypes, phenotype, fit.trait)
    cov_arr, names = _covariates(genotypes, covariates)
    if names != list(fit.covar_names):
        raise InputError(f"refit needs the fit's covariates {fit.covar_names}, got {names}")
    _check_split(fit.split, y, cov_arr, genotypes.n_samples)
    specs = [(cfg, int(s), role) for s in seeds]
    opts = dict(DEFAULTS, **fit.config)  # fits saved before an option existed get its default
    if precision is not None:
        _check_precision(precision)
        opts["precision"] = precision
    common = (fit.center, fit.covar_mean, fit.covar_scale, fit.y_mean, fit.y_scale)
    dev = resolve_device(device)
    folds = fit.folds
    if cross_fit is None:
        cross_fit = folds is not None
    if not cross_fit:
        new = _fit_members(genotypes, y, trait, cov_arr, names, fit.split, *common, specs, opts, dev,
                           checkpoint_dir, progress, resident, max_device_bytes, on_member_done, stacked,
                           max_state_bytes=max_state_bytes)
    else:
        folds = _refit_folds(fit, y, len(specs), fold_seed)
        new = []
        for j, spec in enumerate(specs):
            ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"fold{j}"
            new += _fit_members(genotypes, y, trait, cov_arr, names, fold_split(folds, j), *common, [spec],
                                opts, dev, ckpt, progress, resident, max_device_bytes, on_member_done,
                                stacked, fold=j, max_state_bytes=max_state_bytes)
    return DeepFit(members=list(fit.members) + new, variants=fit.variants, center=fit.center,
                   covar_names=fit.covar_names, covar_mean=fit.covar_mean, covar_scale=fit.covar_scale,
                   split=fit.split, samples=fit.samples, trait=fit.trait, y_mean=fit.y_mean, y_scale=fit.y_scale,
                   selected=cfg if role == "refit" else fit.selected, config=fit.config, folds=folds)


def _refit_folds(fit: DeepFit, y: np.ndarray, k: int, fold_seed: int) -> np.ndarray:
    """The fit's folds (checked against ``k`` and its split), or new ones over its split's samples."""
    pool = np.concatenate([fit.split.train, fit.split.early_stop, fit.split.validation])
    if fit.folds is not None:
        folds = np.asarray(fit.folds, dtype=np.int64)
        if int(folds.max()) + 1 != k:
            raise InputError(f"this fit was cross-fitted with {int(folds.max()) + 1} folds; a cross-fitted "
                             f"refit of it needs as many seeds, got {k}")
        if not np.array_equal(np.sort(np.flatnonzero(folds >= 0)), np.sort(pool)):
            raise InputError("the fit's folds do not cover the samples of its split")
        return folds
    y_pool = np.full(len(y), np.nan)
    y_pool[pool] = y[pool]
    return make_folds(y_pool, k, fold_seed, stratify=(fit.trait == "binary"))


def train_select_refit(genotypes, phenotype, refit_seeds=range(5, 10), **kwargs) -> DeepFit:
    """``train(..., refit_seeds=refit_seeds)``: the paper's protocol in one call."""
    return train(genotypes, phenotype, refit_seeds=refit_seeds, **kwargs)
