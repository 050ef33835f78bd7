"""Small helpers shared by several modules: atomic outputs, progress bars."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    An interrupted or failing writer therefore never leaves a half-written ``path``
    behind (the temporary file is removed on error).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def distinct_if_few(values, few: int):
    """``np.unique(values)`` (sorted) when the 1-D float array ``values`` (no NaN) holds at
    most ``few`` distinct values; otherwise ``few + 1`` of them, sorted -- enough to tell a
    case/control trait from a quantitative one. O(n) per value found: a quantitative trait
    of 500,000 samples is not sorted (``np.unique`` took ~30 ms)."""
    import numpy as np

    found, rest = [], values
    while len(rest) and len(found) <= few:
        found.append(rest[0])
        rest = rest[rest != rest[0]]
    return np.unique(np.asarray(found, dtype=values.dtype))


#: Where :func:`available_memory` looks (module constants so that tests can point them elsewhere).
_MEMINFO = "/proc/meminfo"
_PROC_CGROUP = "/proc/self/cgroup"
_CGROUP_ROOT = "/sys/fs/cgroup"


def _cgroup_headroom() -> int | None:
    """Bytes left under this process's cgroup memory limit (cgroup v2 ``memory.max`` minus
    ``memory.current``, v1 ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``), or
    None where no limit is set or none can be read. A batch job (SLURM, Kubernetes) is
    killed at its cgroup's limit, which /proc/meminfo does not show."""
    try:
        with open(_PROC_CGROUP) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    room = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one unified hierarchy
            names, base = ("memory.max", "memory.current"), _CGROUP_ROOT
        elif "memory" in controllers.split(","):
            names, base = ("memory.limit_in_bytes", "memory.usage_in_bytes"), f"{_CGROUP_ROOT}/memory"
        else:
            continue
        # the process's own group, or the mount root where a container sees only its own
        for folder in (base + path.rstrip("/"), base):
            try:
                with open(f"{folder}/{names[0]}") as fh:
                    limit = fh.read().strip()
                with open(f"{folder}/{names[1]}") as fh:
                    used = int(fh.read())
            except (OSError, ValueError):
                continue
            if limit != "max" and int(limit) < 2**60:  # v1 writes ~2^63 for "no limit"
                left = max(int(limit) - used, 0)
                room = left if room is None else min(room, left)
            break
    return room


def available_memory() -> int | None:
    """Bytes this process may still allocate on this machine: ``MemAvailable`` of
    /proc/meminfo, or less where a cgroup memory limit leaves less (:func:`_cgroup_headroom`);
    None where neither can be read."""
    avail = None
    try:
        with open(_MEMINFO) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    room = _cgroup_headroom()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


def progress_enabled(progress: bool | None) -> bool:
    """``None`` means: show progress only when stderr is a terminal (never in tests/CI)."""
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def progress_bar(iterable, *, total=None, desc=None, progress: bool | None = None):
    """Wrap ``iterable`` in a tqdm bar on stderr when progress is enabled."""
    if not progress_enabled(progress):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)


@contextlib.contextmanager
def blas_threads(n_threads: int = 1):
    """Limit OpenBLAS threads within the block (restored afterwards).

    Chunked passes run one task per Dask worker thread, each calling BLAS on a cache-sized
    slab; OpenBLAS threads of its own on top of that oversubscribe the cores, and its
    spinning threads then make a pass several times slower (PCA, the linear GWAS). Uses ``threadpoolctl`` when
    installed, else the ``openblas_set_num_threads`` entry points of the OpenBLAS copies
    loaded in this process (Linux ``/proc/self/maps``); does nothing where neither works.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=n_threads, user_api="blas"):
            yield
        return
    handles = []
    try:
        with open("/proc/self/maps") as fh:
            paths = sorted({line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line})
    except OSError:
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        get, set_ = _openblas_thread_functions(lib)
        if get is not None:
            handles.append((set_, int(get())))
            set_(ctypes.c_int(n_threads))
    try:
        yield
    finally:
        for set_, previous in handles:
            set_(ctypes.c_int(previous))


def _openblas_thread_functions(lib):
    """(get, set) of an OpenBLAS library's thread count, or (None, None). The names vary:
    ``openblas_get_num_threads`` with the ``64_`` suffix of 64-bit-integer builds, and the
    ``scipy_`` prefix of the copy numpy 2 bundles."""
    for prefix in ("", "scipy_"):
        for suffix in ("64_", ""):
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                return get, set_
    return None, None


def dask_scheduler(collections=()):
    """The scheduler ``dask.compute(*collections)`` would use, found without importing
    dask.distributed where no Client can exist.

    dask's own lookup (``dask.base.get_scheduler``) imports distributed, when it is
    installed, only to ask for a default Client: 0.2-0.3 s per process, as long as a QC
    counting pass over a 2.5 GB .bed. A Client exists only once distributed has been
    imported, so when it has not and no scheduler is configured (``dask.config``), the
    answer is the threaded scheduler, the default of delayed objects and Dask arrays.
    """
    import dask

    if ("distributed" not in sys.modules and dask.config.get("scheduler", None) is None
            and dask.config.get("get", None) is None):
        import dask.threaded

        return dask.threaded.get
    return dask.base.get_scheduler(collections=list(collections))


def dask_compute(*collections):
    """``dask.compute(*collections)`` on :func:`dask_scheduler`'s choice (the same answer
    as dask's own, without its import of distributed when no Client can exist)."""
    import dask

    return dask.compute(*collections, scheduler=dask_scheduler(collections))


def load_numba_module(importer, fallback: str):
    """``importer()``, the module of numba kernels it imports; None, with a RuntimeWarning
    naming the ``fallback`` the caller uses instead, where it cannot be loaded: numba
    missing (a broken install: it is a dependency), or no writable place for numba's disk
    cache (RuntimeError "no locator available": a read-only package directory and home, as
    in some containers; NUMBA_CACHE_DIR names another). The fallbacks do the same
    arithmetic, slower."""
    import warnings

    try:
        return importer()
    except (ImportError, RuntimeError) as e:
        warnings.warn(f"gwaslift: the numba CPU kernels are unavailable ({e}); using {fallback}",
                      RuntimeWarning, stacklevel=3)
        return None


class LazyKernel:
    """A numba kernel function loaded on first use. ``get()`` returns it, or None where the
    module cannot be loaded (warned once, by :func:`load_numba_module`); the caller then
    runs its numpy path. ``importer`` is called at load time (pass a lambda that calls a
    module-level function, so that tests can replace that function).
    """

    def __init__(self, importer, name: str):
        self._importer = importer
        self._name = name
        self._fn = None  # None: not tried yet; False: unavailable

    def get(self):
        if self._fn is None:
            mod = load_numba_module(self._importer, fallback="numpy")
            self._fn = getattr(mod, self._name) if mod is not None else False
        return self._fn or None


def check_writable_dir(d: str | os.PathLike) -> Path:
    """Create directory ``d`` if needed and prove a file can be written there.

    Called before any computation, so that an unwritable output fails at once instead of
    after hours of work. Raises :class:`gwaslift.InputError` naming the directory.
    """
    from .errors import InputError

    d = Path(d)
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".gwaslift-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"output directory is not writable ({exc.strerror})", d) from None
    return d
