"""Memory bounds: no stage materialises the whole dosage matrix; a distributed run equals
the local one.

Three guards, each shown to trip on the whole float32 dosage matrix (``genotypes.dosage``
computed) before it is trusted on a stage:

* ``TaskSizeGuard``: a Dask local-scheduler callback that records the size of every task
  result; QC, PCA and the linear GWAS are Dask graphs over variant chunks, so a task holding
  the whole matrix (or any concatenation of decoded chunks) shows up here.
* ``TracedPeak``: the tracemalloc peak (numpy reports its buffers to tracemalloc), catching a
  large array built *inside* a task or outside Dask.
* ``PeakRSS``: the growth of the process's peak resident set (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs``) -- the only one that sees torch's allocations, for the stages that
  loop in Python over ``Genotypes.read_packed`` blocks (``deep.train``, ``deeplift``).

The limit is a quarter of the float32 matrix (n x m x 4 bytes) with small chunks; the packed
2-bit matrix (1/16 of it) may be held whole, which is how training keeps its data resident.
"""

from __future__ import annotations

import ctypes
import gc
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dask.callbacks import Callback

import gwaslift
from gwaslift.qc import count_task_rows


class MaterialisedError(AssertionError):
    """A guarded block used more memory than its limit."""


def _nbytes(obj, depth: int = 0) -> int:
    """Bytes held by a task result: arrays, pandas objects, and containers of them."""
    if depth > 4:
        return 0
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return int(np.sum(obj.memory_usage(index=False)))
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o, depth + 1) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o, depth + 1) for o in obj.values())
    nb = getattr(obj, "nbytes", None)
    return int(nb) if isinstance(nb, (int, np.integer)) else 0


class TaskSizeGuard(Callback):
    """Fail (on exit) when any task result computed by the local Dask scheduler is larger than
    ``limit`` bytes. ``n_tasks`` / ``max_bytes`` say what it saw."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.n_tasks, self.max_bytes, self.worst = int(limit), 0, 0, None

    def _posttask(self, key, result, dsk, state, worker_id):
        self.n_tasks += 1
        b = _nbytes(result)
        if b > self.max_bytes:
            self.max_bytes, self.worst = b, key

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if exc[0] is None and self.max_bytes > self.limit:
            raise MaterialisedError(f"task {self.worst!r} returned {self.max_bytes} bytes > limit {self.limit}")


class TracedPeak:
    """Fail (on exit) when the tracemalloc peak inside the block exceeds ``limit`` bytes."""

    def __init__(self, limit: int):
        self.limit, self.peak = int(limit), 0

    def __enter__(self):
        gc.collect()
        self._started = not tracemalloc.is_tracing()
        if self._started:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self._base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc):
        self.peak = tracemalloc.get_traced_memory()[1] - self._base
        if self._started:
            tracemalloc.stop()
        if exc[0] is None and self.peak > self.limit:
            raise MaterialisedError(f"traced allocation peak {self.peak} bytes > limit {self.limit}")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release_free_heap() -> None:
    """Hand freed malloc memory back to the OS (glibc ``malloc_trim``), so that memory a
    stage reuses from earlier tests is faulted in again and shows in the peak RSS."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Fail (on exit) when the process's peak resident set grows by more than ``limit`` bytes."""

    def __init__(self, limit: int):
        self.limit, self.growth = int(limit), 0

    def __enter__(self):
        gc.collect()
        _release_free_heap()
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        self._base = _status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        self.growth = _status_kb("VmHWM") * 1024 - self._base
        if exc[0] is None and self.growth > self.limit:
            raise MaterialisedError(f"peak RSS grew by {self.growth} bytes > limit {self.limit}")


# ------------------------------------------------------------------------------ data
@pytest.fixture(autouse=True)
def two_threads():
    """Memory in flight = chunks in flight: pin the local scheduler to 2 worker threads so the
    bounds below hold on a machine with any number of cores."""
    import dask

    with dask.config.set(scheduler="threads", num_workers=2):
        yield

@pytest.fixture(scope="module")
def small(plink2, tmp_path_factory):
    """2000 samples x 16000 variants (2% missing), 200 variants per chunk: 128 MB as float32,
    8 MB packed. (QC's vectorised HWE exact test has a fixed ~12 MB work buffer,
    qc._HWE_BATCH_TERMS, independent of the matrix size.)"""
    d = tmp_path_factory.mktemp("mem_small")
    plink2("--dummy", "2000", "16000", "0.02", "acgt", "--seed", "11", "--make-bed", "--out", d / "s")
    return gwaslift.read_plink(d / "s", variant_chunk=200)


@pytest.fixture(scope="module")
def wide(plink2, tmp_path_factory):
    """4000 samples x 6000 variants, 50 variants per chunk: 96 MB as float32, 6 MB packed."""
    d = tmp_path_factory.mktemp("mem_wide")
    plink2("--dummy", "4000", "6000", "0.01", "acgt", "--seed", "12", "--make-bed", "--out", d / "w")
    return gwaslift.read_plink(d / "w", variant_chunk=50)


def _float32_bytes(g) -> int:
    return g.n_samples * g.n_variants * 4


def _warm_up(stage, g):
    """Run ``stage`` once on a slice, unguarded: lazy imports (scipy.stats, ...), BLAS and
    thread-pool buffers are allocated once per process and are not the stage's working set."""
    stage(g.subset(variants=np.arange(300)))


def _phenotype(g, seed=0):
    return np.random.default_rng(seed).normal(size=g.n_samples)


STAGES = {
    "qc": lambda g: gwaslift.qc(g, maf=0.01, geno=0.05, mind=0.05, hwe=1e-6),
    "pca": lambda g: gwaslift.pca(g, k=3, n_iter=3),
    "linear_gwas": lambda g: gwaslift.linear_gwas(g, _phenotype(g), np.random.default_rng(1).normal(size=(g.n_samples, 2))),
    "logistic_gwas": lambda g: gwaslift.linear_gwas(g, (_phenotype(g, 2) > 0.5).astype(float),
                                                    np.random.default_rng(1).normal(size=(g.n_samples, 2))),
}


# ------------------------------------------------------------------------------ guards trip
def test_guards_trip_on_the_whole_dosage_matrix(small):
    limit = _float32_bytes(small) // 4
    with pytest.raises(MaterialisedError, match="task"):
        with TaskSizeGuard(limit):
            small.dosage.compute()
    with pytest.raises(MaterialisedError, match="traced"):
        with TracedPeak(limit):
            np.asarray(small.dosage)
    # ... and one chunk's worth does not
    with TaskSizeGuard(limit) as guard, TracedPeak(limit):
        small.dosage[:, :200].compute()
    assert 0 < guard.max_bytes <= small.n_samples * 200 * 4


def test_rss_probe_trips_on_the_whole_dosage_matrix(wide):
    limit = _float32_bytes(wide) // 4
    with pytest.raises(MaterialisedError, match="RSS"):
        with PeakRSS(limit):
            x = wide.dosage.compute()
            del x
    with pytest.raises(MaterialisedError, match="RSS"):  # ... or all of it, chunk by chunk
        with PeakRSS(limit):
            chunks = [wide.read_dosage(a, b) for a, b in wide.variant_blocks()]
            del chunks
    with PeakRSS(limit) as probe:  # the packed matrix (1/16 of float32) passes
        blocks = [wide.read_packed(a, b) for a, b in wide.variant_blocks()]
        del blocks
    assert probe.growth < limit


# ------------------------------------------------------------------------------ stages
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dask_stages_stay_chunked(small, stage):
    limit = _float32_bytes(small) // 4
    _warm_up(STAGES[stage], small)
    with TaskSizeGuard(limit) as guard, TracedPeak(limit) as traced:
        STAGES[stage](small)
    # the work really ran through the guarded scheduler, one task (at least) per chunk; the
    # QC count reads its rows inside longer tasks (TracedPeak sees what those hold)
    rows = count_task_rows(small) if stage == "qc" else small.variant_chunk
    n_tasks = -(-small.n_variants // rows)
    assert n_tasks > 1 and guard.n_tasks >= n_tasks, (guard.n_tasks, n_tasks)
    assert guard.max_bytes <= limit and traced.peak <= limit


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dask_stages_resident_memory(wide, stage):
    _warm_up(STAGES[stage], wide)
    with PeakRSS(_float32_bytes(wide) // 4):
        STAGES[stage](wide)


@pytest.fixture(scope="module")
def fit_and_growth(wide):
    """A tiny fit trained under the RSS probe (its growth is returned with it). Memory of
    training and DeepLIFT is O(batch_size x n_snps) (~8 float32 copies of a batch measured),
    hence the small batches."""
    import torch

    # one intra-op thread: spinning OpenMP barriers stall badly on a shared, loaded CI machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    y = _phenotype(wide, 3)
    opts = dict(hidden=[(4, 4)], l1=[1.0], seeds=[0], device="cpu", epochs=1, patience=1,
                batch_size=32, progress=False)
    _warm_up(lambda g: gwaslift.deeplift(gwaslift.train(g, y, **opts), g, batch_size=32, progress=False), wide)
    # half the float32 matrix: materialising it (or most of it) still trips the probe, while
    # allocator and thread-pool noise on a loaded machine (seen up to 24.5 MB here) does not
    with PeakRSS(_float32_bytes(wide) // 2) as probe:
        fit = gwaslift.train(wide, y, **opts)
    yield fit, probe.growth
    torch.set_num_threads(threads)


def test_training_stages_packed_bytes_only(fit_and_growth, wide):
    fit, growth = fit_and_growth
    assert len(fit.members) == 1
    # it may hold the packed bytes of the split samples (6 MB at most), never the float32 matrix
    assert growth < _float32_bytes(wide) // 2


def test_deeplift_streams_blocks(fit_and_growth, wide):
    fit, _ = fit_and_growth
    with PeakRSS(_float32_bytes(wide) // 2):
        res = gwaslift.deeplift(fit, wide, batch_size=32, progress=False)
    assert len(res.scores) == wide.n_variants and np.isfinite(res.scores["deeplift_mean_abs"]).all()


# ------------------------------------------------------------------------------ distributed
def test_qc_pca_linear_chain_on_two_worker_processes(small):
    """qc (all filters) -> pca on the kept samples -> linear GWAS with the PCs, on a
    2-process LocalCluster, equals the local threaded run."""
    import distributed

    g = small.subset(variants=np.arange(6000)).with_chunks(500)
    y = pd.Series(_phenotype(g, 5), index=g.samples["iid"])  # aligned by IID

    def chain():
        kept, report = gwaslift.qc(g, maf=0.05, geno=0.025, mind=0.022, hwe=1e-4)
        pcs = gwaslift.pca(kept, k=3, n_iter=4)
        sumstats = gwaslift.linear_gwas(kept, y, pcs.filter(like="PC"))
        return kept, report, pcs, sumstats

    local = chain()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster):
            with distributed.get_task_stream() as stream:
                remote = chain()
    # the work ran on both worker processes (not on the local threads of this one)
    assert len({t["worker"] for t in stream.data}) == 2, len(stream.data)
    (k1, r1, p1, s1), (k2, r2, p2, s2) = local, remote
    # the filters did remove samples and variants, so PCA / GWAS ran on a real subset
    assert set(r1["reason"]) >= {"mind", "geno", "maf"}, r1["reason"].value_counts()
    np.testing.assert_array_equal(k1.sample_idx, k2.sample_idx)
    np.testing.assert_array_equal(k1.variant_idx, k2.variant_idx)
    pd.testing.assert_frame_equal(r1, r2)
    cols = [c for c in p1.columns if c.startswith("PC")]
    np.testing.assert_allclose(p2[cols].to_numpy(), p1[cols].to_numpy(), atol=1e-6)
    pd.testing.assert_frame_equal(s1, s2, check_exact=False, rtol=1e-10)


# ------------------------------------------------------------------------------ HWE exact test
def test_hwe_exact_memory_is_bounded_by_its_block(monkeypatch):
    """QC's vectorised HWE exact test over 40,000 variants (500-5,000 genotyped samples):
    all in one block its temporaries pass 60 MB (the probe trips); in blocks of
    ``qc.HWE_BLOCK_VARIANTS`` they stay below, with bitwise the same p-values."""
    import importlib

    qc = importlib.import_module("gwaslift.qc")
    rng = np.random.default_rng(3)
    nv = 40_000
    n = rng.integers(500, 5000, nv)
    q, f = rng.uniform(0.01, 0.5, nv), rng.uniform(-0.2, 0.5, nv)
    probs = np.stack([(1 - q) ** 2 + f * q * (1 - q), 2 * q * (1 - q) * (1 - f), q * q + f * q * (1 - q)], 1).clip(0)
    counts = rng.multinomial(n, probs / probs.sum(1, keepdims=True))
    limit = 60 * 2**20
    assert qc.HWE_BLOCK_VARIANTS < nv // 2  # the default really splits this input
    qc.hwe_exact(*counts[:100].T)  # scipy.special imports, ufunc set-up
    monkeypatch.setattr(qc, "HWE_BLOCK_VARIANTS", nv)
    with pytest.raises(MaterialisedError, match="traced"):
        with TracedPeak(limit):
            whole = qc.hwe_exact(*counts.T)
    monkeypatch.undo()
    with TracedPeak(limit) as probe:
        blocked = qc.hwe_exact(*counts.T)
    assert probe.peak < limit
    assert np.array_equal(whole, blocked, equal_nan=True) and (whole < 1e-6).any() and (whole > 0.5).any()


# ------------------------------------------------------------ many covariates
@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_gwas_memory_is_linear_in_the_covariates(monkeypatch, model):
    """With c covariates the per-sample products q_a q_b take n c (c + 1) / 2 doubles: 293 MB
    here (20,000 samples, 60 covariates), 3.6 GB at 500,000 x 42. Stored (the budget raised)
    the traced peak passes 160 MB and the probe trips; formed per chunk (the default) it
    stays below, with the same statistics (numpy decode paths, 2% missing calls)."""
    from gwaslift import assoc

    rng = np.random.default_rng(8)
    n, m, k = 20_000, 12, 59
    G = rng.binomial(2, 0.3, size=(n, m)).astype(float)
    G[rng.random((n, m)) < 0.02] = np.nan
    C = rng.normal(size=(n, k))
    y = rng.normal(size=n) if model == "linear" else (rng.random(n) < 0.3).astype(float)
    T = (k + 1) * (k + 2) // 2
    assert n * T * 8 > 256 * 2**20 >= assoc.TRI_STORE_BYTES  # over the default budget
    limit = 160 * 2**20
    gwaslift.linear_gwas(G[:, :2], y, C, model=model, progress=False)  # imports, kernels loaded
    monkeypatch.setattr(assoc, "TRI_STORE_BYTES", 2**40)
    with pytest.raises(MaterialisedError, match="traced"):
        with TracedPeak(limit):
            stored = gwaslift.linear_gwas(G, y, C, model=model, progress=False)
    monkeypatch.undo()
    with TracedPeak(limit) as probe:
        chunked = gwaslift.linear_gwas(G, y, C, model=model, progress=False)
    assert probe.peak < limit
    pd.testing.assert_frame_equal(chunked, stored, check_exact=False, rtol=1e-9, atol=1e-12)
