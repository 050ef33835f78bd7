"""Loading the deep model's numba CPU kernels (_numba_kernels.py): the fused Adam + proximal
L1 step (optim.py) and the decode of packed rows into centred inputs (data.py).

The kernels are compiled by numba on first use (a few seconds once, then cached on disk;
importing numba and loading the cached kernels costs ~0.5 s per process). Each has a
parallel build (numba threads = torch threads) and a serial one, for small tensors and for
calls from threads other than the main one (_numba_kernels.py says why). Where they cannot be
loaded, :func:`available` is False (with a warning) and the callers keep their torch-op paths.
"""

from __future__ import annotations

import threading

import torch

from .._util import load_numba_module

_KERNELS = None


def _import():
    from . import _numba_kernels
    return _numba_kernels


def _module():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = load_numba_module(_import, fallback="torch ops") or False
    return _KERNELS


def available() -> bool:
    """True when the numba kernels can be used."""
    return _module() is not False


def kernel(name: str, parallel: bool = True):
    """The numba kernel ``name`` ("prox_adam_f32", "prox_adam_bf16", "decode_centred"): its
    parallel build only when asked for and on the main thread (its thread count set to
    torch's first), else the serial one.

    Only a parallel build starts numba's thread pool, and only then: once started (the
    OpenMP layer), the pool's idle threads compete with torch's for the cores, and small
    torch ops after it ran 20-40x slower on a busy 2-core machine (0.9 -> 40 ms for one
    member's forward and backward at h1 = 128, 30 SNPs). Small networks (the serial
    kernels) therefore never start it."""
    par = parallel and threading.current_thread() is threading.main_thread()
    if par:
        _set_threads()
    return getattr(_module(), f"{name}_{'parallel' if par else 'serial'}")


def _set_threads():
    """numba's kernels use as many threads as torch (torch.set_num_threads is the one knob)."""
    import numba
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
