"""gwaslift.deep: decode kernel, input batches, training, determinism, stacking, checkpoints, save/load.

Small data (600 samples x 300 SNPs, additive binary trait with 5 causal SNPs) written with
numpy + gwaslift.write_plink. Torch runs single-threaded here so that results are
reproducible and the shared CI cores are not oversubscribed.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import gwaslift
from gwaslift import InputError
from gwaslift.deep import (DeepFit, Split, decode_packed_torch, fold_split, iter_fit_batches, load_fit,
                           make_folds, make_split, refit, select, train)
from gwaslift.io.packed import decode_dosage

N, M = 600, 300
CAUSAL = np.array([12, 80, 150, 215, 279])
FAST = dict(hidden=[(8, 16)], device="cpu", epochs=30, patience=4, batch_size=64, lr=1e-2, progress=False)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _tables(n, m):
    samples = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)]})
    variants = pd.DataFrame({"chrom": "1", "snp": [f"rs{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(1, m + 1) * 10, "a1": "A", "a2": "C"})
    return samples, variants


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """(prefix, dosage with NaN, binary y, quantitative y)."""
    rng = np.random.default_rng(1)
    p = rng.uniform(0.1, 0.5, M)
    G = rng.binomial(2, p, (N, M)).astype(np.float32)
    G[rng.random((N, M)) < 0.01] = np.nan
    Gi = np.where(np.isnan(G), 2 * p, G)
    lin = (Gi[:, CAUSAL] - 2 * p[CAUSAL]) @ np.array([1.2, -1.0, 1.0, 0.9, -1.1])
    yb = (rng.random(N) < 1 / (1 + np.exp(-lin))).astype(float)
    yq = lin + rng.normal(0, 1.0, N)
    prefix = tmp_path_factory.mktemp("deep") / "cohort"
    samples, variants = _tables(N, M)
    gwaslift.write_plink(prefix, G, samples, variants)
    return prefix, G, yb, yq


def _geno(cohort, chunk=64):
    return gwaslift.read_plink(cohort[0], variant_chunk=chunk)


def _weights_equal(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    # bitwise, NaN included (a diverged member keeps its NaN weights)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].view(torch.int32), sb[k].view(torch.int32)) for k in sa)


# ----------------------------------------------------------------------------- data path
def test_decode_packed_torch_matches_numpy(dummy_bfile):
    g = gwaslift.read_plink(dummy_bfile)
    rows = g.read_packed(0, g.n_variants)
    n = g.source.n_samples
    full = decode_packed_torch(torch.from_numpy(rows), n)
    np.testing.assert_array_equal(full.numpy(), decode_dosage(rows, n))  # NaN positions equal too
    idx = np.random.default_rng(0).permutation(n)[:77]
    idx = np.concatenate([idx, idx[:5]])  # unsorted, with repeats
    sub = decode_packed_torch(torch.from_numpy(rows), n, torch.as_tensor(idx))
    np.testing.assert_array_equal(sub.numpy(), decode_dosage(rows, n, idx))
    assert np.isnan(full.numpy()).any()
    with pytest.raises(IndexError):
        decode_packed_torch(torch.from_numpy(rows), n, np.array([n]))


@pytest.mark.parametrize("kernel", ["numba", "torch"])
@pytest.mark.parametrize("v", [4000, 4001, 4002, 4003, 3, 1])
def test_decode_centred_bitwise_equals_nan_to_num(v, kernel, monkeypatch):
    """Both CPU decodes -- the numba pass, and the blocked table decode (one (256, 8) gather +
    addcmul, split over threads for big batches) used without numba -- give bitwise
    nan_to_num(dosage - center, nan=0) for every v % 4, with missing calls, repeated /
    unordered rows."""
    import threading

    from gwaslift.deep import data, kernels
    from gwaslift.deep.data import decode_centred

    assert kernels.available()  # numba is a dependency: the fast path must really be under test
    if kernel == "torch":
        monkeypatch.setattr(kernels, "available", lambda: False)
    else:
        monkeypatch.setattr(data, "NUMBA_DECODE_MIN", 0)
    from gwaslift.io.packed import BYTE_TO_DOSAGE

    rng = np.random.default_rng(v)
    store = rng.integers(0, 256, size=(90, (v + 3) // 4), dtype=np.uint8)  # 1/4 of the codes missing
    center = (rng.random(v) * 2).astype(np.float32)
    center[: min(v, 5)] = [0.0, 2.0, 1.0, 0.5, 1.5][: min(v, 5)]  # d - c == 0 cases included
    idx = np.concatenate([rng.permutation(90), [3, 3, 0]])
    dos = BYTE_TO_DOSAGE[store[idx]].reshape(len(idx), -1)[:, :v]
    expect = np.nan_to_num(dos - center, nan=0.0)
    assert np.isnan(dos).any()
    st, ct = torch.from_numpy(store), torch.from_numpy(center)
    for threads in (1, 2):  # 93 x 1000 bytes crosses the threaded-split threshold
        torch.set_num_threads(threads)
        got = decode_centred(st, torch.as_tensor(idx), ct)
        assert got.dtype == torch.float32 and got.is_contiguous() and got.shape == expect.shape
        assert np.array_equal(got.numpy().view(np.int32), expect.view(np.int32))  # bitwise, signs of 0 too
    torch.set_num_threads(1)
    # off the main thread the numba decode takes its serial build (kernels.kernel): same bits
    box = []
    th = threading.Thread(target=lambda: box.append(decode_centred(st, torch.as_tensor(idx), ct)))
    th.start()
    th.join()
    assert np.array_equal(box[0].numpy().view(np.int32), expect.view(np.int32))
    bad = ct.clone()
    bad[0] = float("nan")  # a non-finite centre behaves as nan_to_num did
    np.testing.assert_array_equal(decode_centred(st, torch.as_tensor(idx), bad).numpy(),
                                  np.nan_to_num(dos - bad.numpy(), nan=0.0))


def test_iter_fit_batches_centres_imputes_and_checks_variants(cohort):
    g = _geno(cohort)
    y = cohort[2]
    fit = train(g, y, l1=[1.0], seeds=[0], **dict(FAST, epochs=1))
    dos = cohort[1]
    # centre = 2 x A1 frequency among the training samples
    np.testing.assert_allclose(fit.center, np.nanmean(dos[fit.split.train], 0), rtol=1e-6)
    pos = np.array([5, 3, 599, 0, 42, 17, 100])
    cov = pd.DataFrame({"age": np.arange(N, dtype=float)})
    fit.covar_names, fit.covar_mean, fit.covar_scale = ["age"], np.array([10.0]), np.array([2.0])
    got = list(iter_fit_batches(fit, g.with_chunks(7), pos, covariates=cov, batch_size=3))
    assert [len(p) for p, _, _ in got] == [3, 3, 1]
    x = torch.cat([b[1] for b in got]).numpy()
    want = np.nan_to_num(dos[pos] - fit.center, nan=0.0)
    np.testing.assert_array_equal(x, want.astype(np.float32))
    c = torch.cat([b[2] for b in got]).numpy()[:, 0]
    np.testing.assert_allclose(c, (pos - 10.0) / 2.0)
    with pytest.raises(InputError, match="covariates"):
        next(iter_fit_batches(fit, g, pos))
    fit.covar_names = []
    # other SNP list / alleles -> InputError
    with pytest.raises(InputError):
        next(iter_fit_batches(fit, g.subset(variants=np.arange(M - 1)), pos))
    flipped = g.subset()
    flipped.variants.loc[3, "a1"] = "C"
    with pytest.raises(InputError, match="variant 3"):
        next(iter_fit_batches(fit, flipped, pos))


def test_make_split_seeded_stratified():
    y = np.r_[np.zeros(300), np.ones(100), np.full(8, np.nan)]
    s = make_split(y, seed=3)
    assert (len(s.train), len(s.early_stop), len(s.validation)) == (200, 100, 100)
    for part in (s.train, s.early_stop, s.validation):
        assert y[part].mean() == pytest.approx(0.25)
        assert not np.isnan(y[part]).any()
    s2 = make_split(y, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((s.train, s.early_stop), (s2.train, s2.early_stop)))
    assert not np.array_equal(make_split(y, seed=4).train, s.train)


# ----------------------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def grid_fit(cohort):
    return train(_geno(cohort), cohort[2], l1=[0.01, 1.0, 2.0], seeds=[0, 1], **FAST)


def test_beats_constant_model_and_selects(grid_fit):
    tab = grid_fit.metrics_table()
    const = tab.val_loglik_constant.iloc[0]
    best = tab.groupby("l1").val_loglik.mean()
    # the trait explains a lot: the best configuration gains clearly over the prevalence
    assert best.max() > const + 0.02, (best, const)
    cfg = select(grid_fit)
    assert cfg["l1"] == best.idxmax()
    assert cfg["hidden"] == (8, 16)


def test_l1_path_zeroes_most_snp_weights(grid_fit):
    tab = grid_fit.metrics_table()
    nz = tab.groupby("l1").n_nonzero_weights.mean()
    total = 8 * M
    assert nz.loc[0.01] > 0.5 * total          # weak penalty: dense
    assert nz.loc[2.0] < 0.25 * total         # strong penalty: most weights exactly zero
    assert nz.is_monotonic_decreasing
    # the surviving weights sit on the causal SNPs
    for mem in grid_fit.members:
        if mem.config["l1"] == 2.0:
            w = mem.model.snp_linear.weight.detach().abs().sum(0).numpy()
            assert len(set(np.argsort(-w)[:5]) & set(CAUSAL)) >= 3


def test_quantitative_trait_with_covariates(cohort):
    g = _geno(cohort)
    rng = np.random.default_rng(5)
    cov = pd.DataFrame({"pc1": rng.normal(size=N), "age": rng.uniform(40, 70, N)})
    fit = train(g, cohort[3], covariates=cov, l1=[1.0], seeds=[0], **FAST)
    assert fit.trait == "quantitative" and fit.covar_names == ["pc1", "age"]
    m = fit.members[0]
    assert m.model.covar_linear is not None
    assert m.metrics["val_loglik"] > m.metrics["val_loglik_constant"] + 0.05
    np.testing.assert_allclose(fit.covar_mean, cov.to_numpy()[fit.split.train].mean(0))


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_weights_any_chunking_and_streaming(cohort):
    y = cohort[2]
    kw = dict(FAST, l1=[1.0], seeds=[3], epochs=6)
    a = train(_geno(cohort, 64), y, **kw)
    b = train(_geno(cohort, 64), y, **kw)
    c = train(_geno(cohort, 7), y, **kw)
    # streaming: packed genotypes staged in blocks of samples each epoch instead of resident
    d = train(_geno(cohort, 13), y, resident=False, max_device_bytes=75 * 64, **kw)
    for other in (b, c, d):
        assert _weights_equal(a.members[0], other.members[0])
        assert a.members[0].metrics == other.members[0].metrics
    e = train(_geno(cohort, 64), y, **dict(kw, seeds=[4]))
    assert not _weights_equal(a.members[0], e.members[0])


def test_member_alone_equals_member_in_grid(cohort, grid_fit):
    """The stacked first layer and shared batches change nothing for a member."""
    alone = train(_geno(cohort), cohort[2], **dict(FAST, l1=[1.0], seeds=[1]))
    twin = [m for m in grid_fit.members if m.config["l1"] == 1.0 and m.seed == 1]
    assert len(twin) == 1
    assert _weights_equal(alone.members[0], twin[0])
    assert alone.members[0].metrics == twin[0].metrics


def test_grid_in_memory_bounded_waves_equals_one_wave(cohort, grid_fit, training_waves):
    """With room for the training state of two members at a time, the grid of six trains in
    three waves, each member bitwise as in one wave (same weights, metrics and stopping
    epoch), members in their grid order; the refits train in waves too."""
    import importlib

    train_mod = importlib.import_module("gwaslift.deep.train")  # the module (gwaslift.deep.train is the function)
    waves = training_waves
    g = _geno(cohort)
    one = train_mod.member_state_bytes(g.n_variants, {"hidden": (8, 16)})
    waved = train(g, cohort[2], l1=[0.01, 1.0, 2.0], seeds=[0, 1], max_state_bytes=2 * one, **FAST)
    assert waves == [[(0.01, 0), (0.01, 1)], [(1.0, 0), (1.0, 1)], [(2.0, 0), (2.0, 1)]]
    assert [m.key for m in waved.members] == [m.key for m in grid_fit.members]
    for a, b in zip(waved.members, grid_fit.members):
        assert _weights_equal(a, b) and a.metrics == b.metrics
    waves.clear()
    refit(g, cohort[2], waved, seeds=[5, 6, 7], max_state_bytes=one)  # less than one member still trains
    assert [len(w) for w in waves] == [1, 1, 1]


@pytest.mark.parametrize("layout", ["v2", "v1", "v2-unlimited", "none"])
def test_default_state_budget_is_half_the_memory_left_under_meminfo_and_cgroup(tmp_path, monkeypatch, layout):
    """Half of MemAvailable, or of what the process's cgroup limit leaves (a batch job is
    killed there, and /proc/meminfo shows the whole node), whichever is less."""
    import importlib

    from gwaslift import _util

    tm = importlib.import_module("gwaslift.deep.train")
    (tmp_path / "meminfo").write_text("MemTotal:  100000000 kB\nMemAvailable:   80000000 kB\n")
    monkeypatch.setattr(_util, "_MEMINFO", str(tmp_path / "meminfo"))
    monkeypatch.setattr(_util, "_CGROUP_ROOT", str(tmp_path / "cg"))
    monkeypatch.setattr(_util, "_PROC_CGROUP", str(tmp_path / "self_cgroup"))
    gb = 2**30
    if layout == "none":
        (tmp_path / "self_cgroup").write_text("1:cpu:/\n")
    elif layout.startswith("v2"):
        (tmp_path / "self_cgroup").write_text("0::/job/42\n")
        d = tmp_path / "cg" / "job" / "42"
        d.mkdir(parents=True)
        (d / "memory.max").write_text("max\n" if layout == "v2-unlimited" else f"{8 * gb}\n")
        (d / "memory.current").write_text(f"{2 * gb}\n")
    else:
        (tmp_path / "self_cgroup").write_text("4:memory:/slurm/uid_1/job_7\n3:cpu:/\n")
        d = tmp_path / "cg" / "memory" / "slurm" / "uid_1" / "job_7"
        d.mkdir(parents=True)
        (d / "memory.limit_in_bytes").write_text(f"{8 * gb}\n")
        (d / "memory.usage_in_bytes").write_text(f"{2 * gb}\n")
    meminfo = 80000000 * 1024
    want = {"v2": 6 * gb, "v1": 6 * gb, "v2-unlimited": meminfo, "none": meminfo}[layout]
    assert tm.available_memory() == want
    assert tm.state_budget(torch.device("cpu")) == want // 2


def test_proximal_gives_exact_zeros_subgradient_does_not(cohort):
    kw = dict(FAST, l1=[2.0], seeds=[0], epochs=8, patience=8)
    prox = train(_geno(cohort), cohort[2], **kw).members[0]
    sub = train(_geno(cohort), cohort[2], l1_mode="subgradient", **kw).members[0]
    assert prox.metrics["n_nonzero_weights"] < 0.3 * 8 * M
    assert sub.metrics["n_nonzero_weights"] > 0.9 * 8 * M


# ----------------------------------------------------------------------------- refit, save, load
def test_refit_keeps_split_and_center(cohort, grid_fit):
    g = _geno(cohort)
    fit2 = refit(g, cohort[2], grid_fit, seeds=[7])
    assert len(fit2.members) == len(grid_fit.members) + 1
    new = fit2.members_by_role("refit")
    assert len(new) == 1 and new[0].seed == 7 and new[0].config == select(grid_fit)
    assert fit2.split is grid_fit.split and fit2.center is grid_fit.center
    perm = np.random.default_rng(0).permutation(cohort[2])
    null = refit(g, perm, fit2, seeds=[0], role="null")
    assert len(null.members_by_role("null")) == 1 and len(null.members_by_role("refit")) == 1
    # the split indexes the fit's samples by (FID, IID) and order: IIDs repeated across
    # families (1, 2, 3 in every family) in another family order are other samples
    from dataclasses import replace
    fams = grid_fit.samples.assign(fid=[f"F{i // 3}" for i in range(len(grid_fit.samples))],
                                   iid=[str(i % 3) for i in range(len(grid_fit.samples))])
    other = fams.assign(fid=fams.fid.iloc[::-1].to_numpy())  # same IIDs in the same order, other families
    with pytest.raises(InputError, match="sample 0 differs from the model's"):
        refit(replace(g, samples=other), cohort[2], replace(grid_fit, samples=fams), seeds=[7])


def test_save_load_round_trip(tmp_path, grid_fit, cohort):
    grid_fit.selected = select(grid_fit)
    grid_fit.save(tmp_path / "fit")
    back = load_fit(tmp_path / "fit")
    assert isinstance(back, DeepFit)
    assert back.trait == grid_fit.trait and back.selected == grid_fit.selected and back.config == grid_fit.config
    pd.testing.assert_frame_equal(back.variants, grid_fit.variants[back.variants.columns], check_dtype=False)
    pd.testing.assert_frame_equal(back.samples, grid_fit.samples.astype(str))
    np.testing.assert_array_equal(back.center, grid_fit.center)
    for name in ("train", "early_stop", "validation"):
        np.testing.assert_array_equal(getattr(back.split, name), getattr(grid_fit.split, name))
    assert len(back.members) == len(grid_fit.members)
    for a, b in zip(grid_fit.members, back.members):
        assert (a.config, a.seed, a.role, a.metrics) == (b.config, b.seed, b.role, b.metrics)
        assert _weights_equal(a, b) and not b.model.training
    # the loaded models predict from the same inputs
    g = _geno(cohort)
    _, x, _ = next(iter_fit_batches(back, g, back.split.validation[:50]))
    with torch.no_grad():
        assert torch.equal(back.members[0].model(x), grid_fit.members[0].model(x))


def test_fit_saved_before_cross_fitting_loads(tmp_path, grid_fit, cohort):
    """A fit written before cross-fitting existed (no member "fold" keys in fit.json, no folds
    in arrays.pt) loads, with no folds, and refits as before."""
    import json

    grid_fit.save(tmp_path / "fit")
    fj = tmp_path / "fit" / "fit.json"
    meta = json.loads(fj.read_text())
    assert all("fold" in m for m in meta["members"])
    for m in meta["members"]:
        del m["fold"]
    del meta["files"]  # nor the data file names (the plain ones)
    fj.write_text(json.dumps(meta))
    back = load_fit(tmp_path / "fit")
    assert back.folds is None and all(m.fold is None for m in back.members)
    assert (back.metrics_table()["fold"] == -1).all()
    r = refit(_geno(cohort), cohort[2], back, seeds=[7], device="cpu", progress=False)
    assert r.members[-1].fold is None and r.folds is None


def test_saving_over_a_fit_is_atomic(tmp_path, grid_fit, cohort, monkeypatch):
    """fit.json is the commit point: a save over an earlier fit that is interrupted midway
    leaves the earlier fit loadable, and a completed one leaves only its own files."""
    from dataclasses import replace

    from gwaslift.deep import fit as fit_mod

    d = grid_fit.save(tmp_path / "fit")
    before = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    other = replace(grid_fit, members=grid_fit.members[:2])
    real, calls = fit_mod.save_member_weights, []

    def dies_after_one(path, model):
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        real(path, model)

    monkeypatch.setattr(fit_mod, "save_member_weights", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        other.save(d)
    monkeypatch.setattr(fit_mod, "save_member_weights", real)
    back = load_fit(d)
    assert len(back.members) == len(grid_fit.members)
    assert all(_weights_equal(a, b) for a, b in zip(grid_fit.members, back.members))
    (d / "variants_notes.tsv").write_text("a user's file\n")  # not the fit's: kept
    other.save(d)
    back = load_fit(d)
    assert len(back.members) == 2 and all(_weights_equal(a, b) for a, b in zip(other.members, back.members))
    after = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    # variants, samples, arrays, 2 members, fit.json, and the user's file
    assert len(after) == 3 + 2 + 1 + 1 and "variants_notes.tsv" in after and after != before


def test_snp_ids_that_read_as_missing_survive_save_and_load(tmp_path, grid_fit, cohort):
    """"NA" or "null" is a SNP ID like any other (read_plink keeps it): the saved fit keeps it too."""
    from dataclasses import replace

    v = grid_fit.variants.copy()
    v.loc[[1, 2], "snp"] = ["NA", "null"]
    back = load_fit(replace(grid_fit, variants=v).save(tmp_path / "fit"))
    assert back.variants.snp.tolist() == v.snp.tolist()
    assert back.variants.pos.dtype == np.int64


def test_a_diverged_member_is_kept_as_trained_and_never_selected_or_scored(tmp_path, cohort):
    """A member whose training diverges (non-finite weights, val_loglik NaN) is saved, loaded
    and checkpointed as it is; selection skips its configuration; DeepLIFT refuses it."""
    from gwaslift import deeplift

    g = _geno(cohort)
    kw = dict(FAST, optimizer="sgd", epochs=3, lr=[0.01, 50.0], checkpoint_dir=tmp_path / "ck")
    fit = train(g, cohort[3], l1=[0.01], seeds=[0], **kw)  # MSE on a quantitative trait: SGD at lr 50 blows up
    finite = [all(bool(torch.isfinite(p).all()) for p in m.model.parameters()) for m in fit.members]
    assert finite == [True, False] and np.isnan(fit.members[1].metrics["val_loglik"])
    assert select(fit)["lr"] == 0.01
    back = load_fit(fit.save(tmp_path / "fit"))
    assert not all(bool(torch.isfinite(p).all()) for p in back.members[1].model.parameters())
    again = train(g, cohort[3], l1=[0.01], seeds=[0], **kw)  # resumes from both checkpoints
    assert all(_weights_equal(a, b) for a, b in zip(fit.members, again.members))
    with pytest.raises(InputError, match=r"members \[1\] have non-finite weights"):
        deeplift(back, g, members=[0, 1])
    assert deeplift(back, g, members=[0]).scores.deeplift_mean_abs.notna().all()


@pytest.mark.parametrize("kw,match", [
    (dict(epochs=0), "epochs must be a whole number"),
    (dict(batch_size=0), "batch_size must be a whole number"),
    (dict(patience=2.5), "patience must be a whole number"),
    (dict(lr="fast"), "numbers or lists of numbers"),
    (dict(lr=float("inf")), "lr finite"),
    (dict(l1=[float("nan")]), "l1 must be finite"),
    (dict(l1=[]), "the grid is empty"),
    (dict(hidden=[]), "the grid is empty"),
    (dict(pos_weight="abc"), "finite positive number"),
    (dict(pos_weight=float("inf")), "finite positive number"),
    (dict(pos_weight=2.0, trait="quantitative"), "binary trait"),
    (dict(covariates=np.array([["M"]] * N)), "covariates must be numeric"),
    (dict(covariates=np.zeros((N, 1, 1))), r"\(n_samples, n_covariates\)"),
    (dict(covariates=np.full((N, 1), np.inf)), "infinite"),
    (dict(device="cuda:7"), "CUDA devices"),
])
def test_bad_training_arguments_raise_input_error(cohort, kw, match):
    args = dict(FAST, l1=[0.01], seeds=[0], epochs=2)
    args.update(kw)
    y = cohort[3] if args.get("trait") == "quantitative" else cohort[2]
    with pytest.raises(InputError, match=match):
        train(_geno(cohort), y, **args)


def test_bad_phenotype_and_split_positions_raise_input_error(cohort):
    y = cohort[3].copy()
    y[4] = np.inf
    with pytest.raises(InputError, match="infinite"):
        train(_geno(cohort), y, l1=[0.01], seeds=[0], **FAST)
    with pytest.raises(InputError, match="integer sample positions"):
        Split(np.arange(10) + 0.7, np.arange(10, 20), np.arange(20, 30))


def test_select_needs_a_validation_loglik(cohort):
    """With no validation samples there is nothing to select on: a clear error, not a crash."""
    g = _geno(cohort)
    y = cohort[2]
    ok = np.flatnonzero(~np.isnan(y))
    split = Split(ok[: len(ok) // 2], ok[len(ok) // 2:], np.array([], dtype=np.int64))
    with pytest.raises(InputError, match="nothing to select"):
        train(g, y, l1=[0.01], seeds=[0], refit_seeds=[1], split=split, **dict(FAST, epochs=2))


def test_load_rejects_corrupt_or_mismatched(tmp_path, grid_fit):
    d = grid_fit.save(tmp_path / "fit")
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    f = bad / "members" / "000.pt"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checksum"):
        load_fit(bad)
    # a file that is not a tensor archive, with a matching checksum: rejected by the loader itself
    import json

    from gwaslift.deep.fit import _sha256
    f.write_bytes(b"not a torch file at all")
    meta = json.loads((bad / "fit.json").read_text())
    meta["sha256"]["members/000.pt"] = _sha256(f)
    (bad / "fit.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="tensor file"):
        load_fit(bad)
    # weights of another SNP list (other shape)
    state = {k: v for k, v in grid_fit.members[0].model.state_dict().items()}
    state["snp_linear.weight"] = state["snp_linear.weight"][:, :-1].clone()
    torch.save(state, f)
    meta["sha256"]["members/000.pt"] = _sha256(f)
    (bad / "fit.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="shape"):
        load_fit(bad)
    (bad / "fit.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        load_fit(bad)
    with pytest.raises(InputError):
        load_fit(tmp_path / "nowhere")


def test_interrupted_grid_resumes_from_checkpoints(tmp_path, cohort, grid_fit):
    g = _geno(cohort)
    ck = tmp_path / "ck"
    seen = []

    def crash_after_two(member):
        seen.append(member.key)
        if len(seen) == 2:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train(g, cohort[2], l1=[0.01, 1.0, 2.0], seeds=[0, 1], checkpoint_dir=ck, on_member_done=crash_after_two,
              **FAST)
    assert len(list(ck.glob("*.pt"))) == 2
    trained_again = []
    fit = train(g, cohort[2], l1=[0.01, 1.0, 2.0], seeds=[0, 1], checkpoint_dir=ck,
                on_member_done=lambda m: trained_again.append(m.key), **FAST)
    assert len(trained_again) == 4 and not set(trained_again) & set(seen)
    for a, b in zip(fit.members, grid_fit.members):
        assert _weights_equal(a, b) and a.metrics == b.metrics
    # a checkpoint directory of another run is refused
    with pytest.raises(InputError, match="another run"):
        train(g, cohort[3], l1=[1.0], seeds=[0], checkpoint_dir=ck, **FAST)


def test_bad_inputs(cohort):
    g = _geno(cohort)
    with pytest.raises(InputError, match="one per sample"):
        train(g, cohort[2][:-1], **FAST)
    with pytest.raises(InputError, match="l1_mode"):
        train(g, cohort[2], l1_mode="lasso", **FAST)
    with pytest.raises(InputError):
        train(g, np.zeros(N), **FAST)  # no cases
    s = Split(np.arange(10), np.arange(10, 20), np.arange(20, 30))
    y = cohort[2].copy()
    y[5] = np.nan
    with pytest.raises(InputError, match="missing phenotype"):
        train(g, y, split=s, **FAST)


def test_stacked_gemm_matches_per_member(cohort, grid_fit):
    """One GEMM for all first layers (the GPU default) = per-member GEMMs up to float rounding."""
    st = train(_geno(cohort), cohort[2], l1=[0.01, 1.0, 2.0], seeds=[0, 1], stacked=True, **FAST)
    for a, b in zip(st.members, grid_fit.members):
        assert a.metrics["epochs"] == b.metrics["epochs"]
        assert a.metrics["val_loglik"] == pytest.approx(b.metrics["val_loglik"], abs=1e-3)
        wa, wb = a.model.snp_linear.weight.detach(), b.model.snp_linear.weight.detach()
        assert float((wa - wb).abs().max()) < 1e-3


def test_train_with_refit_seeds_runs_the_protocol(cohort):
    fit = train(_geno(cohort), cohort[2], l1=[0.01, 2.0], seeds=[0], refit_seeds=[5, 6], **dict(FAST, epochs=5))
    assert [m.role for m in fit.members] == ["grid", "grid", "refit", "refit"]
    assert fit.selected == select(fit) and all(m.config == fit.selected for m in fit.members_by_role("refit"))
    assert [m.seed for m in fit.members_by_role("refit")] == [5, 6]


# ----------------------------------------------------------------------------- cross-fitted refits
def test_make_folds_partition_seeded_stratified():
    y = np.r_[np.zeros(301), np.ones(99), np.full(8, np.nan)]
    f = make_folds(y, 5, seed=2)
    assert f.dtype == np.int64 and (f[np.isnan(y)] == -1).all() and set(f[~np.isnan(y)]) == set(range(5))
    sizes = np.bincount(f[f >= 0])
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 400
    for k in range(5):  # each fold keeps the case fraction (99 cases dealt round-robin: 19 or 20)
        assert (y[f == k] == 1).sum() in (19, 20)
    assert np.array_equal(f, make_folds(y, 5, seed=2)) and not np.array_equal(f, make_folds(y, 5, seed=3))
    s = fold_split(f, 3)
    assert np.array_equal(s.early_stop, np.flatnonzero(f == 3)) and s.validation.size == 0
    assert np.array_equal(np.sort(np.r_[s.train, s.early_stop]), np.flatnonzero(~np.isnan(y)))
    with pytest.raises(InputError, match="at least 2 folds"):
        make_folds(y, 1)


@pytest.fixture(scope="module")
def cross_fit(cohort, grid_fit):
    return refit(_geno(cohort), cohort[2], grid_fit, seeds=[5, 6, 7], cross_fit=True)


def test_cross_fitted_refit_trains_each_seed_on_the_other_folds(cohort, grid_fit, cross_fit):
    """Seed j early-stops on fold j and trains on the rest of the fit's samples, with the fit's centre."""
    from dataclasses import replace

    g, y = _geno(cohort), cohort[2]
    pool = np.sort(np.r_[grid_fit.split.train, grid_fit.split.early_stop, grid_fit.split.validation])
    folds = cross_fit.folds
    assert grid_fit.folds is None and np.array_equal(np.flatnonzero(folds >= 0), pool)
    new = cross_fit.members_by_role("refit")
    assert [(m.seed, m.fold) for m in new] == [(5, 0), (6, 1), (7, 2)]
    assert cross_fit.center is grid_fit.center and cross_fit.split is grid_fit.split
    for m in new:
        assert np.isnan(m.metrics["val_loglik"])
        # its recorded early-stopping loss is the BCE of its saved weights on fold j, computed here
        es = np.flatnonzero(folds == m.fold)
        pos, x, _ = next(iter_fit_batches(cross_fit, g, es, batch_size=len(es)))
        assert len(pos) == len(es)
        with torch.no_grad():
            f = m.model(x)[:, 0].double()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(f, torch.as_tensor(y[pos]))
        assert m.metrics["es_loss"] == pytest.approx(float(bce), rel=1e-5)
    # and it is the member a plain refit on that fold's split gives, bit for bit
    j = 1
    alone = refit(g, y, replace(grid_fit, split=fold_split(folds, j)), seeds=[6]).members[-1]
    assert _weights_equal(alone, new[j]) and alone.metrics["es_loss"] == new[j].metrics["es_loss"]
    # null refits of a cross-fitted fit reuse its folds; another number of seeds cannot
    perm = np.random.default_rng(0).permutation(y)
    null = refit(g, perm, cross_fit, seeds=[5, 6, 7], role="null")
    assert [m.fold for m in null.members_by_role("null")] == [0, 1, 2] and null.folds is folds
    with pytest.raises(InputError, match="3 folds"):
        refit(g, perm, cross_fit, seeds=[5, 6], role="null")
    assert refit(g, perm, cross_fit, seeds=[5], role="null", cross_fit=False).members[-1].fold is None
    # decoy refits follow the fit's folds too (same training samples as the members they calibrate)
    from gwaslift.attribution import attribution_decoys

    dec = attribution_decoys(g, y, cross_fit, n_decoys=20, seeds=[5, 6, 7], samples="all", device="cpu")
    assert dec.metrics["fold"].tolist() == [0, 1, 2]


def test_cross_fitted_fit_round_trips_and_resumes(tmp_path, cohort, grid_fit, cross_fit):
    cross_fit.save(tmp_path / "fit")
    back = load_fit(tmp_path / "fit")
    np.testing.assert_array_equal(back.folds, cross_fit.folds)
    assert [m.fold for m in back.members] == [m.fold for m in cross_fit.members]
    for a, b in zip(cross_fit.members, back.members):
        assert _weights_equal(a, b)
    # checkpoints per fold: a rerun trains nothing and gives the same members
    ck = tmp_path / "ck"
    first = refit(_geno(cohort), cohort[2], grid_fit, seeds=[5, 6, 7], cross_fit=True, checkpoint_dir=ck)
    again = []
    second = refit(_geno(cohort), cohort[2], grid_fit, seeds=[5, 6, 7], cross_fit=True, checkpoint_dir=ck,
                   on_member_done=again.append)
    assert not again and sorted(p.name for p in ck.iterdir()) == ["fold0", "fold1", "fold2"]
    for a, b, c in zip(first.members, second.members, cross_fit.members):
        assert _weights_equal(a, b) and _weights_equal(a, c) and a.fold == b.fold
    with pytest.raises(InputError, match="refit_seeds"):
        train(_geno(cohort), cohort[2], cross_fit=True, **FAST)


# ----------------------------------------------------------------------------- bf16 first layer
@pytest.fixture(scope="module")
def bf16_fit(cohort):
    return train(_geno(cohort), cohort[2], l1=[0.01, 1.0, 2.0], seeds=[0, 1], precision="bf16", **FAST)


def test_bf16_first_layer_products_match_float64(cohort):
    """One batch: the bf16 forward z1 = x W1^T and weight gradient dZ1^T x equal their float64
    values to bf16 rounding (per-member and stacked GEMMs); the deeper layers get gradients."""
    from gwaslift.deep.train import _init_member, _loss, _Stack

    g = _geno(cohort)
    _, x, _ = next(iter_fit_batches(train(g, cohort[2], l1=[1.0], seeds=[0], **dict(FAST, epochs=1)), g,
                                    np.arange(64)))
    y = torch.as_tensor(cohort[2][:64], dtype=torch.float32)
    xd = x.double()
    for stacked in (False, True):
        ms = [_init_member(M, 0, {"hidden": (8, 16)}, s, "grid", torch.device("cpu")) for s in (0, 1)]
        st = _Stack(ms, stacked, "bf16")
        fs = st.forward(x, None)
        torch.stack([_loss(f, y, "binary", None) for f in fs]).sum().backward()
        dz = torch.cat([z.grad for z in st._z1], 1).double()
        z1 = torch.cat([z.detach() for z in st._z1], 1).double()
        st.first_layer_grads()
        w = torch.cat([m.w1.detach() for m in ms]).double()
        gw = torch.cat([m.w1.grad for m in ms]).double()
        ref_z, ref_g = xd @ w.T, dz.T @ xd
        assert not torch.equal(z1, ref_z)  # the bf16 products really ran
        assert float((z1 - ref_z).norm() / ref_z.norm()) < 1e-2
        assert float((gw - ref_g).norm() / ref_g.norm()) < 1e-2
        assert all(m.w1.grad.dtype == torch.float32 for m in ms)
        assert all(m.small["hidden_linear.weight"].grad is not None for m in ms)


def test_bf16_same_seed_same_weights(cohort, bf16_fit):
    kw = dict(FAST, l1=[1.0], seeds=[3], epochs=6, precision="bf16")
    a = train(_geno(cohort, 64), cohort[2], **kw)
    b = train(_geno(cohort, 7), cohort[2], **kw)
    assert _weights_equal(a.members[0], b.members[0]) and a.members[0].metrics == b.members[0].metrics
    f32 = train(_geno(cohort, 64), cohort[2], **dict(kw, precision="float32"))
    assert not _weights_equal(a.members[0], f32.members[0])
    assert bf16_fit.config["precision"] == "bf16"
    assert {m.metrics["precision"] for m in bf16_fit.members} == {"bf16"}


def test_bf16_reaches_float32_accuracy_and_snps(bf16_fit, grid_fit):
    """Same data, grid and seeds: bf16 and float32 give the same validation log-likelihoods
    (per configuration, mean over seeds) to a small tolerance, the same selected
    configuration, and the same causal SNPs on top of the sparse models."""
    tb, tf = bf16_fit.metrics_table(), grid_fit.metrics_table()
    mb, mf = tb.groupby("l1").val_loglik.mean(), tf.groupby("l1").val_loglik.mean()
    np.testing.assert_allclose(mb.to_numpy(), mf.to_numpy(), atol=0.01)
    assert select(bf16_fit) == select(grid_fit)

    def top(fit, k=5):
        w = sum(m.model.snp_linear.weight.detach().abs().sum(0).numpy() for m in fit.members if m.config["l1"] == 2.0)
        return set(np.argsort(-w)[:k].tolist())

    assert top(bf16_fit) == top(grid_fit)
    assert len(top(bf16_fit) & set(CAUSAL.tolist())) >= 4


def test_bf16_precision_round_trips_and_refits(tmp_path, bf16_fit, cohort):
    bf16_fit.save(tmp_path / "fit")
    back = load_fit(tmp_path / "fit")
    assert back.config == bf16_fit.config and back.config["precision"] == "bf16"
    assert all(m.metrics["precision"] == "bf16" for m in back.members)
    g = _geno(cohort)
    kw = dict(seeds=[7], device="cpu", progress=False)
    r = refit(g, cohort[2], back, **kw)  # the fit's precision by default
    assert r.members[-1].metrics["precision"] == "bf16" and r.config["precision"] == "bf16"
    r32 = refit(g, cohort[2], back, precision="float32", **kw)
    assert r32.members[-1].metrics["precision"] == "float32"
    # a fit saved before the option existed refits in float32
    old = DeepFit(**{**bf16_fit.__dict__, "config": {k: v for k, v in bf16_fit.config.items() if k != "precision"}})
    assert refit(g, cohort[2], old, **kw).members[-1].metrics["precision"] == "float32"
    with pytest.raises(InputError, match="precision"):
        train(g, cohort[2], precision="fp16", **FAST)
    with pytest.raises(InputError, match="precision"):
        refit(g, cohort[2], back, precision="half", **kw)


def test_l1_warmup_keeps_a_strong_penalty_from_killing_the_layer(cohort):
    """At full strength from the first step a strong L1 zeroes every SNP weight (a constant
    model); ramped in over the first epochs, the same penalty leaves a sparse model on the
    causal SNPs that beats the constant one. Early stopping ignores the ramp's epochs."""
    g, y = _geno(cohort), cohort[2]
    kw = dict(FAST, epochs=100, patience=10)
    cold = train(g, y, l1=[10.0], seeds=[0, 1, 2], **kw).metrics_table()
    warm_fit = train(g, y, l1=[10.0], seeds=[0, 1, 2], l1_warmup=10, **kw)
    warm = warm_fit.metrics_table()
    assert (cold.n_nonzero_snps == 0).all()
    assert (warm.n_nonzero_snps > 0).all() and (warm.n_nonzero_snps < 0.35 * M).all()
    assert (warm.val_loglik > warm.val_loglik_constant + 0.02).all()
    assert (warm.best_epoch >= 10).all()
    for mem in warm_fit.members:
        w = mem.model.snp_linear.weight.detach().abs().sum(0).numpy()
        assert len(set(np.argsort(-w)[:5]) & set(CAUSAL)) >= 3
    assert warm_fit.config["l1_warmup"] == 10
    with pytest.raises(InputError, match="l1_warmup"):
        train(g, y, l1=[1.0], seeds=[0], l1_warmup=-1, **kw)


# ----------------------------------------------------------------------------- fused CPU step
def _torch_op_step(w, g, m, v, t, lr, lam, betas=(0.9, 0.999), eps=1e-8):
    """The reference: train._adam_ then the soft threshold, as torch ops (the CUDA path)."""
    from gwaslift.deep.train import _adam_, _soft_threshold_

    d = _adam_(w, g.float(), m, v, t, lr, betas, eps)
    if lam:
        _soft_threshold_(w, d.reciprocal_().mul_(lr * lam))


def _float64_step(w, g, m, v, t, lr, lam, b1=0.9, b2=0.999, eps=1e-8):
    w, g, m, v = (x.double() for x in (w, g, m, v))
    m = m + (1 - b1) * (g - m)
    v = b2 * v + (1 - b2) * g * g
    d = torch.sqrt(v / (1 - b2 ** t)) + eps
    w = w - lr / (1 - b1 ** t) * m / d
    return torch.sign(w) * torch.clamp(w.abs() - lr * lam / d, min=0), m, v


# the serial build (small layers) and the parallel one (first layers, float32 or bf16 gradients)
@pytest.mark.parametrize("n,gdtype", [(5_000, torch.float32), (300_000, torch.float32), (300_000, torch.bfloat16)])
@pytest.mark.parametrize("t,lam", [(1, 0.0), (7, 2e-3), (300, 2e-3), (300, 0.0)])
def test_fused_prox_adam_equals_the_torch_op_step(n, gdtype, t, lam):
    """optim.prox_adam_ (one numba pass) against the torch-op step: Adam moments bitwise equal;
    weights equal but for an ulp where torch's vectorized sqrt is not correctly rounded (a
    share of weights that depends on the CPU); exact zeros the same but for weights within an ulp of the threshold; within
    float32 rounding of a float64 evaluation; the bf16 copy bitwise torch's rounding."""
    from gwaslift.deep import optim

    assert (n >= optim.PARALLEL_MIN) == (n == 300_000)
    gen = torch.Generator().manual_seed(t)
    w0 = torch.randn(n, generator=gen) * 0.01
    m0 = torch.randn(n, generator=gen) * 1e-4
    v0 = torch.rand(n, generator=gen) * 1e-7
    g = (torch.randn(n, generator=gen) * 1e-3).to(gdtype)
    lr = 3e-3
    w1, m1, v1 = w0.clone(), m0.clone(), v0.clone()
    _torch_op_step(w1, g, m1, v1, t, lr, lam)
    w2, m2, v2 = w0.clone(), m0.clone(), v0.clone()
    bf16 = gdtype == torch.bfloat16
    wb = torch.empty(n, dtype=torch.bfloat16) if bf16 else None
    optim.prox_adam_(w2, g, m2, v2, t, lr, lam, (0.9, 0.999), 1e-8, wb)
    # the serial build (small tensors; calls off the main thread) gives the same bits
    import threading

    w3, m3, v3, wb3 = w0.clone(), m0.clone(), v0.clone(), torch.empty_like(wb) if bf16 else None
    th = threading.Thread(target=optim.prox_adam_, args=(w3, g, m3, v3, t, lr, lam, (0.9, 0.999), 1e-8, wb3))
    th.start()
    th.join()
    assert torch.equal(w3, w2) and torch.equal(m3, m2) and torch.equal(v3, v2)
    assert not bf16 or torch.equal(wb3, wb)
    assert torch.equal(m1, m2) and torch.equal(v1, v2)
    assert not torch.equal(w2, w0)
    differ = w1 != w2
    # how many of torch's own float32 square roots miss the correctly rounded one depends on
    # the CPU build it dispatches to (~0.1% measured on an AVX-512 Intel, ~16% on an AVX2
    # AMD EPYC): the fused step may differ from torch's only where that happens
    torch_sqrt_off = float((torch.sqrt(v1) != torch.sqrt(v1.double()).float()).float().mean())
    assert float(differ.float().mean()) <= max(0.01, torch_sqrt_off)
    # an ulp in the denominator d moves w by an ulp of the Adam step or of the threshold
    d = torch.sqrt(v1.double() / (1 - 0.999 ** t)) + 1e-8
    scale = w0.abs() + lr / (1 - 0.9 ** t) * m1.abs() / d + lr * lam / d
    both = differ & (w1 != 0) & (w2 != 0)
    assert bool(((w1 - w2).abs()[both] <= 4 * 2.0 ** -24 * scale[both]).all())
    assert int(((w1 == 0) != (w2 == 0)).sum()) <= max(1, n // 10_000)
    if lam:
        assert float((w2 == 0).float().mean()) > 0.05  # the threshold really acted
    w64, m64, v64 = _float64_step(w0, g.float(), m0, v0, t, lr, lam)
    assert float((m2.double() - m64).abs().max()) <= 1e-6 * float(m64.abs().max())
    assert float((v2.double() - v64).abs().max()) <= 1e-6 * float(v64.abs().max())
    assert float((w2.double() - w64).abs().max()) <= 1e-5 * float(w64.abs().max())
    assert not bf16 or torch.equal(wb, w2.to(torch.bfloat16))
    with pytest.raises(ValueError, match="bf16 weight copy"):  # the copy goes with a bf16 gradient only
        optim.prox_adam_(w2, g, m2, v2, t, lr, lam, (0.9, 0.999), 1e-8, None if bf16 else torch.empty_like(w2).bfloat16())


def test_fused_cpu_training_matches_the_torch_op_path(cohort, grid_fit, bf16_fit, monkeypatch):
    """The CPU default (fused step, numba decode) trains the same members as the torch-op
    path (what runs on CUDA or without numba), float32 and bf16, to float tolerance: the same
    stopping epochs, weights and validation log-likelihoods. The bf16 grid is stacked: its
    members stop at different epochs, so the shrinking stack is covered."""
    from gwaslift.deep import kernels

    assert kernels.available()
    monkeypatch.setattr(kernels, "available", lambda: False)
    kw = dict(l1=[0.01, 1.0, 2.0], seeds=[0, 1])
    for fast, ref in ((grid_fit, train(_geno(cohort), cohort[2], **kw, **FAST)),
                      (bf16_fit, train(_geno(cohort), cohort[2], precision="bf16", **kw, **FAST))):
        for a, b in zip(fast.members, ref.members):
            assert a.metrics["epochs"] == b.metrics["epochs"]
            assert a.metrics["val_loglik"] == pytest.approx(b.metrics["val_loglik"], abs=1e-4)
            for k, x in a.model.state_dict().items():
                assert float((x - b.model.state_dict()[k]).abs().max()) < 1e-3, k
    assert len({m.metrics["epochs"] for m in bf16_fit.members}) > 1


def test_small_networks_never_start_numbas_thread_pool(cohort):
    """Only a parallel kernel (first layers of >= 2^18 weights, big decodes) starts numba's
    thread pool: once started, its idle threads slowed small torch ops 20-40x on a busy
    machine. Training a small grid in a fresh process must leave it unstarted."""
    import subprocess
    import sys

    code = (f"import gwaslift, numpy as np, numba\n"
            f"g = gwaslift.read_plink({str(cohort[0])!r})\n"
            f"y = np.load({str(cohort[0]) + '_y.npy'!r})\n"
            "gwaslift.train(g, y, hidden=[(8, 16)], l1=[0.01, 1.0], seeds=[0], epochs=2, device='cpu', progress=False)\n"
            "try:\n    print(numba.threading_layer())\nexcept ValueError:\n    print('not started')\n")
    np.save(str(cohort[0]) + "_y.npy", cohort[2])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "not started"


def test_kernels_that_cannot_load_fall_back_to_torch_ops(monkeypatch, cohort):
    """If numba's kernels cannot be loaded (no numba, or no writable cache directory), a
    warning says so and training runs the torch-op path instead of failing."""
    from gwaslift.deep import kernels

    def broken():
        raise RuntimeError("cannot cache function: no locator available")

    monkeypatch.setattr(kernels, "_import", broken)
    monkeypatch.setattr(kernels, "_KERNELS", None)
    with pytest.warns(RuntimeWarning, match="numba CPU kernels are unavailable"):
        assert not kernels.available()
    fit = train(_geno(cohort), cohort[2], l1=[1.0], seeds=[0], **dict(FAST, epochs=3))
    assert fit.members[0].metrics["epochs"] == 3
