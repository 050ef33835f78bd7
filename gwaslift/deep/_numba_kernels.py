"""numba kernels of the deep model's CPU path: optim.py's fused Adam + proximal L1 step (the
formulas are there) and data.py's decode of packed rows into centred inputs.

A module of its own so that numba can cache the compiled kernels on disk (functions defined
at module level; closures would be recompiled in every process), and so that importing it
is the one place that needs numba (kernels.py loads it; callers fall back to torch ops where
it cannot be loaded).
"""

import math

import numba as nb
import numpy as np

u32 = np.uint32
f32 = np.float32
f64 = np.float64


@nb.njit(inline="always")
def _fma(a, b, c):
    # float32 fused multiply-add: the product of two float32 is exact in float64, so one
    # float64 add and one rounding to float32 give fma(a, b, c) (barring a double-rounding
    # tie, which needs an exact float64 halfway case: rare)
    return f32(f64(a) * f64(b) + f64(c))


@nb.njit(inline="always")
def _lerp(m, g, c1):
    return _fma(c1, g - m, m)   # torch's lerp for a weight < 0.5


@nb.njit(inline="always")
def _update(wi, gi, mi, vi, c1, c2, b2, sqrt_bc2, eps, step, thr_num):
    """One weight: Adam on (m, v), the step, the soft threshold -> (w, m, v), in the op
    order of the torch path (optim.py)."""
    mi = _lerp(mi, gi, c1)
    vi = _fma(c2 * gi, gi, vi * b2)
    d = np.sqrt(vi) / sqrt_bc2 + eps
    wi = wi + (step * mi) / d
    a = abs(wi) - (f32(1.0) / d) * thr_num
    return f32(math.copysign(max(a, f32(0.0)), wi)), mi, vi


@nb.njit(inline="always")
def _prox_adam_f32(w, g, m, v, c1, c2, b2, sqrt_bc2, eps, step, thr_num):
    for i in nb.prange(w.size):
        w[i], m[i], v[i] = _update(w[i], g[i], m[i], v[i], c1, c2, b2, sqrt_bc2, eps, step, thr_num)


# Every kernel has a parallel and a serial build. Small tensors (biases, deeper layers) take
# the serial one: a parallel launch costs more than their update, and a second thread pool
# waking up beside torch's slows both down. Calls from threads other than the main one take
# it too: numba's fallback threading layer (workqueue, where OpenMP is missing) aborts the
# process on concurrent parallel launches (Dask worker threads, for example).
# The builds are separate functions around one inlined body: numba's disk cache is keyed by
# function and signature, not by the parallel flag, so two builds of one function would load
# each other's machine code.
@nb.njit(parallel=True, nogil=True, cache=True)
def prox_adam_f32_parallel(w, g, m, v, c1, c2, b2, sqrt_bc2, eps, step, thr_num):
    _prox_adam_f32(w, g, m, v, c1, c2, b2, sqrt_bc2, eps, step, thr_num)


@nb.njit(nogil=True, cache=True)
def prox_adam_f32_serial(w, g, m, v, c1, c2, b2, sqrt_bc2, eps, step, thr_num):
    _prox_adam_f32(w, g, m, v, c1, c2, b2, sqrt_bc2, eps, step, thr_num)


@nb.njit(inline="always")
def _prox_adam_bf16(w, g16, m, v, wb16, c1, c2, b2, sqrt_bc2, eps, step, thr_num):
    for i in nb.prange(w.size):
        gi = u32(u32(np.uint16(g16[i])) << u32(16)).view(f32)   # bf16 -> float32: exact
        wi, m[i], v[i] = _update(w[i], gi, m[i], v[i], c1, c2, b2, sqrt_bc2, eps, step, thr_num)
        w[i] = wi
        # float32 -> bf16, round to nearest even (weights are finite: no NaN case needed)
        b = f32(wi).view(u32)
        b = u32(u32(b + u32(0x7FFF) + u32(u32(b >> u32(16)) & u32(1))) >> u32(16))
        wb16[i] = np.int16(np.uint16(b))


@nb.njit(parallel=True, nogil=True, cache=True)
def prox_adam_bf16_parallel(w, g16, m, v, wb16, c1, c2, b2, sqrt_bc2, eps, step, thr_num):
    _prox_adam_bf16(w, g16, m, v, wb16, c1, c2, b2, sqrt_bc2, eps, step, thr_num)


@nb.njit(nogil=True, cache=True)
def prox_adam_bf16_serial(w, g16, m, v, wb16, c1, c2, b2, sqrt_bc2, eps, step, thr_num):
    _prox_adam_bf16(w, g16, m, v, wb16, c1, c2, b2, sqrt_bc2, eps, step, thr_num)


@nb.njit(inline="always")
def _decode_centred(rows, center, code_to_dosage, out):
    """out[i, j] = dosage - center[j] of packed sample-major ``rows`` (b, >= ceil(v / 4)) uint8,
    variant j in byte j // 4 at bits 2 (j % 4); missing (code 1) -> 0. ``code_to_dosage``
    (4,) float32 (io.packed.CODE_TO_DOSAGE); ``out`` (b, v) float32. One float32 subtraction
    per genotype: bitwise the torch decode's ``nan_to_num(dosage - center)``."""
    v = center.size
    zero = f32(0.0)
    for i in nb.prange(rows.shape[0]):
        for j in range(v):
            code = (rows[i, j >> 2] >> np.uint8(2 * (j & 3))) & np.uint8(3)
            out[i, j] = zero if code == 1 else code_to_dosage[code] - center[j]


@nb.njit(parallel=True, nogil=True, cache=True)
def decode_centred_parallel(rows, center, code_to_dosage, out):
    _decode_centred(rows, center, code_to_dosage, out)


@nb.njit(nogil=True, cache=True)
def decode_centred_serial(rows, center, code_to_dosage, out):
    _decode_centred(rows, center, code_to_dosage, out)
