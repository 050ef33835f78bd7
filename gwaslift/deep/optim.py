"""One fused pass of Adam + the proximal L1 step over a first layer's SNP weights (CPU).

The update (per weight; ``t`` the step number, ``lam = l1 / n_train``; train.py's docstring)::

    m <- m + (1 - b1) (g - m)                 v <- b2 v + (1 - b2) g^2
    d <- sqrt(v) / sqrt(1 - b2^t) + eps       w <- w - lr / (1 - b1^t) * m / d
    w <- sign(w) max(|w| - lr * lam / d, 0)   (exact zeros inside the threshold)

Why fused: a first layer of the paper's grid is 80 members x h1 x n_snps weights (77 M at
10,000 SNPs), and this update touches every one of them at every step. Written as torch ops
(train._adam_ then train._soft_threshold_) it takes ~13 elementwise passes over weight-sized
tensors, and in bf16 mode two more casts (the bf16 gradient to float32, the new weights back
to bf16 for the next forward). Here it is one pass that reads w, g, m, v and writes w, m, v
(and, for bf16, the bf16 copy of w the next forward multiplies with): memory-bound, ~4x less
traffic. benchmarks/results/deep.md has the measured effect on the grid.

Arithmetic: float32, the operation sequence of the torch-op path (m by torch's lerp, an fma;
v by its addcmul, an fma; the step by its addcdiv, ``w + (-step * m) / d``), so m and v equal
that path's bitwise and w agrees to an ulp in the weights where torch's vectorized sqrt (not
correctly rounded) differs from the IEEE one used here (~0.1% of them on an AVX-512 Intel CPU,
~16% on an AVX2 AMD EPYC: torch picks its kernels by CPU); a weight within an ulp of the
threshold may then land on the other side. Checked in tests/test_deep.py, with a float64
evaluation of the formulas as well. Every weight is independent of the others, so the result
does not depend on the thread count or on which members share the call. bf16 conversions:
gradient bits << 16 (exact), weights rounded to nearest-even as torch's
``Tensor.to(torch.bfloat16)`` does (bitwise equal, tested).

The kernels (_numba_kernels.py) are loaded by kernels.py; where they cannot be, train.py keeps
the torch-op path, as it does for CUDA tensors (elementwise kernels there are cheap).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import kernels

#: tensors with fewer elements run the serial kernel
PARALLEL_MIN = 1 << 18


def _as_array(t: torch.Tensor) -> np.ndarray:
    """Flat numpy view of a contiguous CPU tensor (float32; bfloat16 as its int16 bits)."""
    if t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError("fused prox-Adam needs contiguous CPU tensors")
    t = t.detach().reshape(-1)
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def _step_scalars(t: int, lr: float, lam: float, betas, eps: float) -> tuple:
    """The kernels' scalar arguments for step ``t`` (1-based), learning rate and L1 rate.

    Computed in float64 and rounded once to float32, as torch passes Python scalars to its
    kernels: (1 - b1, 1 - b2, b2, sqrt(1 - b2^t), eps, -lr / (1 - b1^t), lr * lam).
    """
    b1, b2 = (float(b) for b in betas)
    f32 = np.float32
    return (f32(1 - b1), f32(1 - b2), f32(b2), f32(math.sqrt(1 - b2 ** t)), f32(eps),
            f32(-lr / (1 - b1 ** t)), f32(lr * lam))


def prox_adam_(w, g, m, v, t: int, lr: float, lam: float, betas, eps: float, w_bf16=None):
    """The update above on tensors, in place on ``w``, ``m``, ``v`` (float32, same shape,
    contiguous CPU). ``g``: the gradient, float32 or bfloat16, shaped like ``w``. ``lam``:
    the L1 rate (0 = plain Adam). ``w_bf16``: with a bf16 gradient, and only then (bfloat16,
    shaped like ``w``): receives ``w`` rounded to bf16 in the same pass (the operand of the
    next bf16 product).
    """
    if not kernels.available():
        raise RuntimeError("numba is not available; use the torch-op path (train._adam_)")
    bf16 = g.dtype == torch.bfloat16
    if bf16 != (w_bf16 is not None):
        raise ValueError("a bf16 gradient comes with a bf16 weight copy to write, a float32 one without")
    args = (_as_array(w), _as_array(g), _as_array(m), _as_array(v))
    scalars = _step_scalars(t, lr, lam, betas, eps)
    parallel = w.numel() >= PARALLEL_MIN
    if bf16:
        kernels.kernel("prox_adam_bf16", parallel)(*args, _as_array(w_bf16), *scalars)
    else:
        kernels.kernel("prox_adam_f32", parallel)(*args, *scalars)
