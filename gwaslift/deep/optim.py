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
that path's bitwise and w agrees to an ulp in the ~0.1% of weights where torch's vectorized
sqrt (not correctly rounded) differs from the IEEE one used here; a weight within an ulp of the
threshold may then land on the other side. Checked in tests/test_deep.py, with a float64
evaluation of the formulas as well. Every weight is independent of the others, so the result
does not depend on the thread count or on which members share the call. bf16 conversions:
gradient bits << 16 (exact), weights rounded to nearest-even as torch's
``Tensor.to(torch.bfloat16)`` does (bitwise equal, tested).

The kernels are compiled by numba on first use (a few seconds once, then cached on disk;
importing numba and loading the cached kernels costs ~0.5 s per process). Each has a
parallel build (numba threads = torch threads) and a serial one, for small tensors and for
calls from threads other than the main one (_cpu_kernels.py says why). Where
numba cannot be imported, :func:`available` is False and train.py keeps the torch-op path;
CUDA tensors always take the torch-op path (elementwise kernels there are cheap).
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import torch

_KERNELS = None

#: tensors with fewer elements run the serial kernel
PARALLEL_MIN = 1 << 18


def _import_kernels():
    from . import _cpu_kernels
    return _cpu_kernels


def _compile():
    """The numba kernels module (_cpu_kernels.py); None (with a warning) if it cannot be
    loaded: numba missing (a broken install: it is a dependency), or no writable place for
    numba's disk cache (RuntimeError "no locator available": a read-only package directory
    and home, as in some containers; NUMBA_CACHE_DIR names another). Training then runs the
    torch-op path, slower on CPU but the same algorithm."""
    try:
        return _import_kernels()
    except (ImportError, RuntimeError) as e:
        warnings.warn(f"gwaslift: the numba CPU kernels are unavailable ({e}); using torch ops", RuntimeWarning,
                      stacklevel=3)
        return None


def kernel(name: str, parallel: bool = True):
    """The numba kernel ``name`` of _cpu_kernels.py ("prox_adam_f32", "prox_adam_bf16",
    "decode_centred"): its parallel build only when asked for and on the main thread (see
    the note there on numba's threading layers), else the serial one."""
    par = parallel and threading.current_thread() is threading.main_thread()
    return getattr(_kernels(), f"{name}_{'parallel' if par else 'serial'}")


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _compile() or False
    return _KERNELS


def available() -> bool:
    """True when the fused CPU kernels can be used (numba importable)."""
    return _kernels() is not False


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


def set_threads():
    """numba's kernels use as many threads as torch (torch.set_num_threads is the one knob)."""
    import numba
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def prox_adam_(w, g, m, v, t: int, lr: float, lam: float, betas, eps: float, w_bf16=None):
    """The update above on tensors, in place on ``w``, ``m``, ``v`` (float32, same shape,
    contiguous CPU). ``g``: the gradient, float32 or bfloat16, shaped like ``w``. ``lam``:
    the L1 rate (0 = plain Adam). ``w_bf16``: if given (bfloat16, shaped like ``w``),
    receives ``w`` rounded to bf16 in the same pass (the operand of the next bf16 product);
    required with a bf16 gradient.
    """
    if not available():
        raise RuntimeError("numba is not available; use the torch-op path (train._adam_)")
    set_threads()
    args = (_as_array(w), _as_array(g), _as_array(m), _as_array(v))
    scalars = _step_scalars(t, lr, lam, betas, eps)
    parallel = w.numel() >= PARALLEL_MIN
    if g.dtype == torch.bfloat16:
        if w_bf16 is None:
            raise ValueError("a bf16 gradient comes with a bf16 weight copy to write")
        kernel("prox_adam_bf16", parallel)(*args, _as_array(w_bf16), *scalars)
    else:
        kernel("prox_adam_f32", parallel)(*args, *scalars)
        if w_bf16 is not None:
            w_bf16.copy_(w)
