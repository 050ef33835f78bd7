"""DeepLIFT scores: kernels against Captum and hand computations, the public wrapper
against Captum on decoded PLINK data, aggregation, null calibration, end to end."""

from __future__ import annotations

import functools
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import DeepLift

from gwaslift import InputError, read_plink
from gwaslift.attribution import (
    NullScores,
    attribution_null,
    _bh,
    aggregate_scores,
    deeplift,
    deeplift_contributions,
    null_calibrate,
    permute_within,
)
from gwaslift.deep.network import GenotypeMLP

warnings.filterwarnings("ignore", module="captum")


def random_mlp(n_snps, hidden=(8, 16), n_covar=0, seed=0, dtype=torch.float64, zero_cols=None):
    torch.manual_seed(seed)
    m = GenotypeMLP(n_snps, hidden, n_covar).to(dtype).eval()
    with torch.no_grad():
        # spread the biases so that units sit on both sides of the kink
        m.snp_linear.bias.uniform_(-0.5, 0.5)
        m.hidden_linear.bias.uniform_(-0.3, 0.3)
        if zero_cols is not None:
            m.snp_linear.weight[:, zero_cols] = 0.0
    return m


@functools.lru_cache(maxsize=None)
def briefly_trained_mlp(dtype, n_covar):
    """A network fitted for a few hundred Adam steps on a simulated additive trait."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (200, 40), generator=g).to(dtype) - 1.0
    c = torch.randn(200, n_covar, generator=g, dtype=dtype) if n_covar else None
    y = (x[:, 0] - x[:, 3] + 0.5 * x[:, 7] > 0).to(dtype)
    torch.manual_seed(1)
    m = GenotypeMLP(40, (8, 16), n_covar).to(dtype)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x, c)[:, 0], y)
        loss.backward()
        opt.step()
    return m.eval(), x, c


def captum_attr(model, x, x0, c=None, c0=None):
    dl = DeepLift(model)
    base = x0[None].expand_as(x).clone()
    if c is None:
        return dl.attribute(x.clone(), baselines=base, target=0).detach(), None
    cb = c0[None].expand_as(c).clone()
    a = dl.attribute((x.clone(), c.clone()), baselines=(base, cb), target=0)
    return a[0].detach(), a[1].detach()


# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("n_covar", [0, 3])
@pytest.mark.parametrize("net", ["random", "fitted"])
def test_rescale_equals_captum(dtype, tol, n_covar, net):
    if net == "random":
        model = random_mlp(60, n_covar=n_covar, dtype=dtype)
        g = torch.Generator().manual_seed(5)
        x = torch.randint(0, 3, (25, 60), generator=g).to(dtype) - 0.8
        c = torch.randn(25, n_covar, generator=g, dtype=dtype) if n_covar else None
    else:
        model, x, c = briefly_trained_mlp(dtype, n_covar)
        x, c = x[:40], (c[:40] if n_covar else None)
    g = torch.Generator().manual_seed(6)
    x0 = 0.3 * torch.randn(x.shape[1], generator=g, dtype=dtype)
    c0 = 0.2 * torch.randn(n_covar, generator=g, dtype=dtype) if n_covar else None
    snp, cov, delta = deeplift_contributions(model, x, x0, c, c0)
    ref_snp, ref_cov = captum_attr(model, x, x0, c, c0)
    assert snp.dtype == dtype
    assert (snp[0] - ref_snp).abs().max().item() <= tol
    if n_covar:
        assert (cov[0] - ref_cov).abs().max().item() <= tol
    # summation to delta against the network's own forward pass
    with torch.no_grad():
        do = model(x, c)[:, 0] - model(x0[None], None if c0 is None else c0[None])[:, 0]
    total = snp[0].sum(1) + (cov[0].sum(1) if n_covar else 0)
    assert (total - do).abs().max().item() <= 1e-4
    assert (delta[0] - do).abs().max().item() <= 1e-4


def test_stacked_members_and_sparse_columns_equal_captum():
    """Several members evaluated together, most SNP columns zero (the L1 case)."""
    zero = np.setdiff1d(np.arange(80), [1, 5, 9, 40, 77])
    models = [random_mlp(80, (6, 10), n_covar=2, seed=s, zero_cols=zero) for s in range(3)]
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 3, (30, 80), generator=g).double() - 1.1
    c = torch.randn(30, 2, generator=g, dtype=torch.float64)
    x0 = torch.zeros(80, dtype=torch.float64)
    c0 = torch.zeros(2, dtype=torch.float64)
    from gwaslift.attribution import deeplift_batch, snp_contributions, stack_members

    net = stack_members(models, dtype=torch.float64)  # default: sparse path
    assert net.snp_idx is not None and net.snp_idx.tolist() == [1, 5, 9, 40, 77]
    mult = deeplift_batch(net, x, x0, c, c0)
    for k, model in enumerate(models):
        ref_snp, ref_cov = captum_attr(model, x, x0, c, c0)
        ours = torch.zeros_like(ref_snp)
        ours[:, net.snp_idx] = snp_contributions(net, mult, k)
        assert (ours - ref_snp).abs().max().item() <= 1e-10
        assert (mult.covar[k] - ref_cov).abs().max().item() <= 1e-10
        assert ref_snp[:, zero].abs().max().item() == 0.0


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_summation_to_delta(rule, dtype):
    model = random_mlp(200, (16, 32), n_covar=2, seed=4, dtype=dtype)
    g = torch.Generator().manual_seed(9)
    x = torch.randint(0, 3, (50, 200), generator=g).to(dtype) - 1.0
    c = torch.randn(50, 2, generator=g, dtype=dtype)
    x0 = -torch.rand(200, generator=g, dtype=dtype)
    snp, cov, delta = deeplift_contributions(model, x, x0, c, rule=rule)
    with torch.no_grad():
        do = model(x, c)[:, 0] - model(x0[None], torch.zeros(1, 2, dtype=dtype))[:, 0]
    assert ((snp[0].sum(1) + cov[0].sum(1)) - do).abs().max().item() <= 1e-4
    assert (delta[0] - do).abs().max().item() <= 1e-4


def test_hand_computed_network_with_zero_delta_unit():
    """x = (1, 1), x0 = (0, 0). Hidden unit 1 has z = x1 - x2 + 0.5 = 0.5 = z0 (Delta z = 0:
    the gradient 1[z > 0] = 1 is used); unit 2: z = 2 x1 + x2 - 1 = 2, z0 = -1, m = 2/3.
    Layer 2: a1 = (0.5, 2), a1_0 = (0.5, 0); z2 = (2.5, 0.7), z2_0 = (0.5, -0.3):
    m2 = (2/2, 0.7/1.0) = (1, 0.7). Output w3 = (1, -2): o = 1.2, o0 = 0.6.
    Back: m2 * w3 = (1, -1.4); W2^T -> (2.4, 0.3); * (1, 2/3) -> (2.4, 0.2);
    W1^T -> m_x = (2.8, -2.2) = C (Delta x = 1); 2.8 - 2.2 = 0.6 = o - o0."""
    m = GenotypeMLP(2, (2, 2)).double().eval()
    with torch.no_grad():
        m.snp_linear.weight[:] = torch.tensor([[1.0, -1.0], [2.0, 1.0]], dtype=torch.float64)
        m.snp_linear.bias[:] = torch.tensor([0.5, -1.0], dtype=torch.float64)
        m.hidden_linear.weight[:] = torch.tensor([[1.0, 1.0], [-1.0, 0.5]], dtype=torch.float64)
        m.hidden_linear.bias[:] = torch.tensor([0.0, 0.2], dtype=torch.float64)
        m.out_linear.weight[:] = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
        m.out_linear.bias[:] = torch.tensor([0.1], dtype=torch.float64)
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    snp, _, delta = deeplift_contributions(m, x)
    np.testing.assert_allclose(snp[0, 0].numpy(), [2.8, -2.2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(delta.numpy(), [[0.6]], atol=1e-12)
    ref, _ = captum_attr(m, x, torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(ref[0].numpy(), [2.8, -2.2], atol=1e-12)
    # (a multiplier 0 for unit 1 would give (0.4, 0.2): same sum, so the sum alone cannot
    # tell the conventions apart). Now put the Delta z = 0 unit below its kink (bias -0.5,
    # gradient 0) and read the output from hidden unit 1 only (w3 = (1, 0)):
    # a1 = (0, 2), a1_0 = (0, 0); z2_1 = 2, z2_1_0 = 0 -> m2 = (1, .), m2 * w3 = (1, 0);
    # W2^T -> (1, 1); * (0, 2/3) -> (0, 2/3); W1^T -> (4/3, 2/3); o - o0 = 2.
    # (multiplier 1 for unit 1 would give (7/3, -1/3), again summing to 2)
    with torch.no_grad():
        m.snp_linear.bias[0] = -0.5
        m.out_linear.weight[:] = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    snp, _, delta = deeplift_contributions(m, x)
    np.testing.assert_allclose(snp[0, 0].numpy(), [4 / 3, 2 / 3], atol=1e-12)
    np.testing.assert_allclose(delta.numpy(), [[2.0]], atol=1e-12)
    ref, _ = captum_attr(m, x, torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(ref[0].numpy(), [4 / 3, 2 / 3], atol=1e-12)


def min_network():
    """o = min(i1, i2) as i1 - relu(i1 - i2) (DeepLIFT paper Fig. 3) in our architecture.

    Layer 1: relu(i1 - i2), relu(i1), relu(-i1) (the last two carry i1 past the kink);
    layer 2 passes them through relu(. + 1) (bias 1 keeps the reference away from the kink);
    output -(a - 1) + (b - 1) - (c - 1) = b - c - a + 1."""
    m = GenotypeMLP(2, (3, 3)).double().eval()
    with torch.no_grad():
        m.snp_linear.weight[:] = torch.tensor([[1.0, -1.0], [1.0, 0.0], [-1.0, 0.0]])
        m.snp_linear.bias.zero_()
        m.hidden_linear.weight[:] = torch.eye(3)
        m.hidden_linear.bias.fill_(1.0)
        m.out_linear.weight[:] = torch.tensor([[-1.0, 1.0, -1.0]])
        m.out_linear.bias.fill_(1.0)
    return m


def test_revealcancel_min_example_fig3():
    m = min_network()
    x = torch.tensor([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0], [0.5, 4.0], [5.0, 0.25]], dtype=torch.float64)
    mins = x.min(1).values
    with torch.no_grad():
        np.testing.assert_allclose(m(x)[:, 0].numpy(), mins.numpy(), atol=1e-12)
    rc, _, _ = deeplift_contributions(m, x, rule="revealcancel")
    # RevealCancel: 0.5 min(i1, i2) to both inputs
    np.testing.assert_allclose(rc[0].numpy(), 0.5 * mins[:, None].expand(-1, 2).numpy(), atol=1e-12)
    # Rescale (paper Sec. 3.5.3): everything to the smaller input (i1 when i1 <= i2)
    rs, _, _ = deeplift_contributions(m, x, rule="rescale")
    expect = torch.where(x[:, :1] <= x[:, 1:], torch.stack([mins, 0 * mins], 1),
                         torch.stack([0 * mins, mins], 1))
    np.testing.assert_allclose(rs[0].numpy(), expect.numpy(), atol=1e-12)


def reveal_cancel_loops(model, x, x0):
    """Literal per-neuron RevealCancel (paper Sec. 3.4-3.5) in numpy, for one sample."""
    W = [model.snp_linear.weight.detach().numpy(), model.hidden_linear.weight.detach().numpy()]
    B = [model.snp_linear.bias.detach().numpy(), model.hidden_linear.bias.detach().numpy()]
    w3 = model.out_linear.weight.detach().numpy()[0]
    relu = lambda t: max(t, 0.0)  # noqa: E731
    acts, refs, parts = [x], [x0], []
    for w, b in zip(W, B):
        a, a0 = acts[-1], refs[-1]
        z = w @ a + b
        z0 = w @ a0 + b
        terms = w * (a - a0)[None, :]
        parts.append((np.where(terms > 0, terms, 0).sum(1), np.where(terms < 0, terms, 0).sum(1), z0))
        acts.append(np.maximum(z, 0))
        refs.append(np.maximum(z0, 0))
    mult = w3.copy()  # multiplier of the last hidden activations
    for layer in (1, 0):
        p, n, z0 = parts[layer]
        mp, mn = np.zeros_like(p), np.zeros_like(p)
        for j in range(len(p)):
            dyp = 0.5 * (relu(z0[j] + p[j]) - relu(z0[j])) + 0.5 * (relu(z0[j] + p[j] + n[j]) - relu(z0[j] + n[j]))
            dyn = 0.5 * (relu(z0[j] + n[j]) - relu(z0[j])) + 0.5 * (relu(z0[j] + p[j] + n[j]) - relu(z0[j] + p[j]))
            mp[j] = mult[j] * (dyp / p[j] if p[j] != 0 else 0.5 * ((z0[j] > 0) + (z0[j] + n[j] > 0)))
            mn[j] = mult[j] * (dyn / n[j] if n[j] != 0 else 0.5 * ((z0[j] > 0) + (z0[j] + p[j] > 0)))
        w, d = W[layer], acts[layer] - refs[layer]
        new = np.zeros(w.shape[1])
        for i in range(w.shape[1]):
            for j in range(w.shape[0]):
                t = w[j, i] * d[i]
                new[i] += w[j, i] * (mp[j] if t > 0 else mn[j] if t < 0 else 0.5 * (mp[j] + mn[j]))
        mult = new
    return (x - x0) * mult


def test_revealcancel_equals_per_neuron_loops():
    model = random_mlp(12, (5, 7), seed=11)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 3, (6, 12), generator=g).double() - 1.0
    x0 = 0.2 * torch.randn(12, generator=g, dtype=torch.float64)
    ours, _, _ = deeplift_contributions(model, x, x0, rule="revealcancel")
    for b in range(x.shape[0]):
        ref = reveal_cancel_loops(model, x[b].numpy(), x0.numpy())
        np.testing.assert_allclose(ours[0, b].numpy(), ref, atol=1e-12)


# ----------------------------------------------------------------------------- wrapper


def fake_fit(genotypes, models, n_covar=0, seeds=None):
    """A DeepFit-shaped stand-in (the documented contract) around hand-made models."""
    dos = genotypes.dosage.compute()
    n = genotypes.n_samples
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    split = SimpleNamespace(train=np.sort(perm[: n // 2]), early_stop=np.sort(perm[n // 2: 3 * n // 4]),
                            validation=np.sort(perm[3 * n // 4:]))
    center = np.nanmean(dos[split.train], axis=0).astype(np.float32)
    seeds = list(range(len(models))) if seeds is None else seeds
    members = [SimpleNamespace(config={"hidden": m.hidden, "l1": 0.1}, seed=s, model=m, metrics={},
                               role="refit") for s, m in zip(seeds, models)]
    fit = SimpleNamespace(members=members, variants=genotypes.variants[["chrom", "pos", "snp", "a1", "a2"]],
                          center=center, covar_names=[f"pc{i}" for i in range(n_covar)],
                          covar_mean=np.zeros(n_covar), covar_scale=np.ones(n_covar), split=split,
                          trait="binary", selected={"hidden": models[0].hidden, "l1": 0.1},
                          samples=genotypes.samples[["fid", "iid"]].reset_index(drop=True))
    fit.members_by_role = lambda role: [m for m in members if m.role == role]
    return fit, dos


def captum_on_dosage(model, dos, center, rows, x0_centred, cov=None):
    x = torch.tensor(np.nan_to_num(dos[rows] - center, nan=0.0), dtype=torch.float64)
    x0 = torch.tensor(x0_centred, dtype=torch.float64)
    if cov is None:
        return captum_attr(model.double(), x, x0)[0].numpy()
    c = torch.tensor(cov[rows], dtype=torch.float64)
    s, cc = captum_attr(model.double(), x, x0, c, torch.zeros(c.shape[1], dtype=torch.float64))
    return s.numpy(), cc.numpy()


@pytest.fixture(scope="module")
def geno(dummy_bfile):
    return read_plink(dummy_bfile)


def test_deeplift_wrapper_equals_captum_on_decoded_dosages(geno):
    zero = np.arange(0, 120, 3)  # a third of the columns unused
    models = [random_mlp(120, (8, 12), n_covar=2, seed=s, dtype=torch.float32, zero_cols=zero) for s in (3, 7)]
    fit, dos = fake_fit(geno, models, n_covar=2, seeds=[3, 7])
    cov = np.random.default_rng(1).normal(size=(geno.n_samples, 2))
    res = deeplift(fit, geno, samples="validation", covariates=cov, dtype="float64",
                   return_matrix=True, batch_size=17, top_k=5)
    rows = fit.split.validation
    assert np.array_equal(res.samples, rows)
    assert res.matrix.shape == (2, len(rows), 120)
    for k, m in enumerate(models):
        ref, refc = captum_on_dosage(m, dos, fit.center, rows, np.zeros(120), cov)
        assert np.abs(res.matrix[k] - ref).max() <= 1e-5
        assert np.abs(res.covar_matrix[k] - refc).max() <= 1e-5
        np.testing.assert_allclose(res.member_mean_abs[k], np.abs(ref).mean(0), atol=1e-6)
        np.testing.assert_allclose(res.member_mean[k], ref.mean(0), atol=1e-6)
    sc = res.scores
    assert list(sc.columns[:5]) == ["chrom", "pos", "snp", "a1", "a2"]
    assert np.array_equal(sc["snp"], geno.variants["snp"])
    assert {"deeplift_mean_abs_s3", "deeplift_mean_abs_s7"} <= set(sc.columns)
    np.testing.assert_allclose(sc["deeplift_mean_abs"], res.member_mean_abs.mean(0))
    np.testing.assert_allclose(sc["deeplift_sd"], res.member_mean_abs.std(0, ddof=1))
    assert (sc["deeplift_mean_abs"].to_numpy()[zero] == 0).all()
    assert res.covariates["covariate"].tolist() == ["pc0", "pc1"]
    assert res.max_delta_error <= 1e-4 and (res.members["max_delta_error"] <= 1e-4).all()
    assert res.members["n_active_snps"].tolist() == [80, 80]


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
def test_batch_size_and_float32_do_not_change_results(geno, rule):
    models = [random_mlp(120, (8, 12), seed=s, dtype=torch.float32) for s in (0, 1, 2)]
    fit, _ = fake_fit(geno, models)
    a = deeplift(fit, geno, samples="all", rule=rule, batch_size=1000, return_matrix=True, dtype="float64")
    b = deeplift(fit, geno, samples="all", rule=rule, batch_size=7, return_matrix=True, dtype="float64",
                 max_stage_bytes=1000)
    c = deeplift(fit, geno, samples="all", rule=rule, batch_size=64, return_matrix=True, dtype="float32")
    assert np.abs(a.matrix - b.matrix).max() <= 1e-12
    pd.testing.assert_frame_equal(a.scores, b.scores, rtol=1e-12, atol=1e-14)
    assert np.abs(a.matrix - c.matrix).max() <= 1e-4
    assert a.max_delta_error <= 1e-10 and c.max_delta_error <= 1e-4


def test_zero_and_averaged_references_equal_captum(geno):
    model = random_mlp(120, (8, 12), seed=5, dtype=torch.float32)
    fit, dos = fake_fit(geno, [model])
    rows = np.arange(0, 203, 4)
    center = fit.center.astype(np.float64)
    z = deeplift(fit, geno, samples=rows, reference="zero", return_matrix=True, dtype="float64")
    np.testing.assert_allclose(z.matrix[0], captum_on_dosage(model, dos, center, rows, -center), atol=1e-5)
    refs = np.random.default_rng(2).integers(0, 3, size=(3, 120)).astype(float)
    avg = deeplift(fit, geno, samples=rows, reference=list(refs), return_matrix=True, dtype="float64")
    expect = np.mean([captum_on_dosage(model, dos, center, rows, r - center) for r in refs], axis=0)
    np.testing.assert_allclose(avg.matrix[0], expect, atol=1e-5)
    assert avg.max_delta_error <= 1e-4 and avg.reference.startswith("user x3")


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
def test_sparse_models_decode_only_active_columns(geno, monkeypatch, rule):
    """L1-like members (few nonzero first-layer columns, different per member; the last of
    119 SNPs, in a partial byte, among them): only those SNPs are read and decoded, and the
    results equal both the full decode (bitwise) and Captum."""
    import gwaslift.attribution as attribution
    import gwaslift.deep.data as data

    g = geno.subset(variants=np.arange(119))  # 119 SNPs: the last byte holds 3
    models = []
    for s, keep in ((11, [0, 5, 6, 40, 118]), (12, [5, 77, 78, 116])):
        zero = np.setdiff1d(np.arange(119), keep)
        models.append(random_mlp(119, (8, 12), n_covar=1, seed=s, dtype=torch.float32, zero_cols=zero))
    fit, dos = fake_fit(g, models, n_covar=1)
    cov = np.random.default_rng(4).normal(size=(g.n_samples, 1))
    refs = list(np.random.default_rng(5).integers(0, 3, size=(2, 119)).astype(float))
    seen = []
    orig = data.iter_fit_batches_snps

    def spy(fit, genotypes, positions, snps, **kw):
        seen.append(np.asarray(snps))
        return orig(fit, genotypes, positions, snps, **kw)

    monkeypatch.setattr(data, "iter_fit_batches_snps", spy)
    kw = dict(samples="all", covariates=cov, rule=rule, return_matrix=True, dtype="float64", batch_size=50)
    sub = deeplift(fit, g, reference=refs, **kw)
    assert len(seen) == 1 and np.array_equal(seen[0], [0, 5, 6, 40, 77, 78, 116, 118])
    monkeypatch.setattr(attribution, "DECODE_COLUMNS_BELOW", 0.0)  # force the full decode
    n_calls = len(seen)
    full = deeplift(fit, g, reference=refs, **kw)
    assert len(seen) == n_calls
    assert np.array_equal(sub.matrix, full.matrix) and np.array_equal(sub.covar_matrix, full.covar_matrix)
    pd.testing.assert_frame_equal(sub.scores, full.scores, check_exact=True)
    assert sub.max_delta_error <= 1e-10
    if rule == "rescale":
        rows = np.arange(g.n_samples)
        center = fit.center.astype(np.float64)
        for k, m in enumerate(models):
            got = [captum_on_dosage(m, dos, center, rows, r - center, cov) for r in refs]
            np.testing.assert_allclose(sub.matrix[k], np.mean([a for a, _ in got], 0), atol=1e-5)
            np.testing.assert_allclose(sub.covar_matrix[k], np.mean([c for _, c in got], 0), atol=1e-5)


def test_bad_input_raises(geno):
    model = random_mlp(120, (8, 12), n_covar=1, seed=5, dtype=torch.float32)
    fit, _ = fake_fit(geno, [model], n_covar=1)
    cov = np.zeros((geno.n_samples, 1))
    with pytest.raises(InputError, match="covariates"):
        deeplift(fit, geno)
    with pytest.raises(InputError, match="rule"):
        deeplift(fit, geno, covariates=cov, rule="gradient")
    with pytest.raises(InputError, match="length 120"):
        deeplift(fit, geno, covariates=cov, reference=np.ones(5))
    with pytest.raises(InputError, match=r"\[0, 2\]"):
        deeplift(fit, geno, covariates=cov, reference=np.full(120, 3.0))
    with pytest.raises(InputError, match="0..202"):
        deeplift(fit, geno, covariates=cov, samples=[0, 500])
    with pytest.raises(InputError, match="role"):
        deeplift(fit, geno, covariates=cov, members="null")
    with pytest.raises(InputError):
        deeplift(fit, geno.subset(variants=np.arange(100)), covariates=cov)
    # the split positions index the fit's samples: other samples (a filtered or reordered
    # .fam) are refused for a split, allowed for "all" / explicit positions (another cohort)
    with pytest.raises(InputError, match="203 samples but the model was trained on 200"):
        fit200, _ = fake_fit(geno.subset(samples=np.arange(200)), [model], n_covar=1)
        deeplift(fit200, geno, covariates=cov)
    perm = np.r_[1, 0, 2:geno.n_samples]
    with pytest.raises(InputError, match=r"sample 0 differs"):
        deeplift(fit, geno.subset(samples=perm), covariates=cov)
    assert deeplift(fit, geno.subset(samples=perm), covariates=cov, samples="all").samples.size == geno.n_samples
    with pytest.raises(InputError, match="return_matrix needs each sample once"):
        deeplift(fit, geno, covariates=cov, samples=[3, 5, 3], return_matrix=True)
    # covariates by name and order; a missing covariate in a scored sample is an error, not NaN scores
    with pytest.raises(InputError, match=r"columns \['age'\], the model was trained with \['pc0'\]"):
        deeplift(fit, geno, covariates=pd.DataFrame({"age": cov[:, 0]}))
    bad = cov.copy()
    bad[fit.split.validation[3]] = np.nan
    with pytest.raises(InputError, match="1 of the samples asked for have a missing or non-finite covariate"):
        deeplift(fit, geno, covariates=bad)
    assert np.isfinite(deeplift(fit, geno, covariates=bad, samples=fit.split.train).scores.deeplift_mean_abs).all()


def test_aggregate_topk_and_labels():
    variants = pd.DataFrame({"chrom": ["1"] * 5, "pos": range(5), "snp": list("abcde"),
                             "a1": ["A"] * 5, "a2": ["G"] * 5})
    ma = np.array([[5.0, 4, 0, 1, 0], [0.5, 4, 3, 0, 0]])
    sc = aggregate_scores(variants, ma, -ma, ["s1", "s2"], top_k=2)
    assert sc["deeplift_topk_count"].tolist() == [1, 2, 1, 0, 0]
    np.testing.assert_allclose(sc["deeplift_mean_abs"], [2.75, 4, 1.5, 0.5, 0])
    np.testing.assert_allclose(sc["deeplift_mean"], [-2.75, -4, -1.5, -0.5, 0])
    assert sc["deeplift_mean_abs_s2"].tolist() == [0.5, 4, 3, 0, 0]
    # zero scores are never counted as top, even when k exceeds the nonzero SNPs
    sc = aggregate_scores(variants, ma, ma, ["s1", "s2"], top_k=4)
    assert sc["deeplift_topk_count"].tolist() == [2, 2, 1, 1, 0]


# ----------------------------------------------------------------------------- null


def test_null_calibrate_pvalues_qvalues_threshold():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    null = rng.exponential(size=(7, 50))
    obs = np.concatenate([rng.exponential(size=45), [8.0, 9.0, 10.0, 11.0, null.max()]])
    variants = pd.DataFrame({"chrom": "1", "pos": np.arange(50), "snp": [f"r{i}" for i in range(50)],
                             "a1": "A", "a2": "G"})
    res = SimpleNamespace(scores=aggregate_scores(variants, obs[None], obs[None], ["s0"]))
    from gwaslift.attribution import DeepLiftResult

    res = DeepLiftResult(scores=res.scores, covariates=None, members=pd.DataFrame(), max_delta_error=0.0,
                         member_mean_abs=obs[None], member_mean=obs[None], samples=np.arange(3),
                         rule="rescale", reference="mean", top_k=10)
    ns = NullScores(null, null.max(1), [], [0])
    out = null_calibrate(res, ns, alpha=0.05, normalize="none")
    pooled = null.ravel()
    expect = np.array([(1 + (pooled >= o).sum()) / (1 + pooled.size) for o in obs])
    np.testing.assert_allclose(out.scores["deeplift_p"], expect)
    assert out.scores["deeplift_p"].iloc[-1] == 2 / 351  # ties count as >=
    np.testing.assert_allclose(out.scores["deeplift_q"], multipletests(expect, method="fdr_bh")[1])
    np.testing.assert_allclose(out.fwer_threshold, np.quantile(null.max(1), 0.95))
    assert out.scores["deeplift_fwer"].tolist() == list(obs > out.fwer_threshold)
    # default: each fit's scores as shares of its total
    sh = null_calibrate(res, ns, alpha=0.05)
    nshare = null / null.sum(1, keepdims=True)
    oshare = obs / obs.sum()
    np.testing.assert_allclose(sh.scores["deeplift_share"], oshare)
    expect = np.array([(1 + (nshare.ravel() >= o).sum()) / (1 + nshare.size) for o in oshare])
    np.testing.assert_allclose(sh.scores["deeplift_p"], expect)
    np.testing.assert_allclose(sh.fwer_threshold, np.quantile(nshare.max(1), 0.95))
    np.testing.assert_allclose(_bh(np.array([0.01, 0.04, 0.03, 0.5])),
                               multipletests([0.01, 0.04, 0.03, 0.5], method="fdr_bh")[1])


def test_permute_within_only_moves_chosen_positions():
    y = np.arange(10.0)
    pos = np.array([1, 3, 4, 8])
    p = permute_within(y, pos, seed=[0, 1])
    keep = np.setdiff1d(np.arange(10), pos)
    assert np.array_equal(p[keep], y[keep]) and sorted(p[pos]) == sorted(y[pos])
    assert np.array_equal(p, permute_within(y, pos, seed=[0, 1]))
    s = permute_within(pd.Series(y, index=list("abcdefghij")), pos, seed=3)
    assert list(s.index) == list("abcdefghij")


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """400 samples x 60 independent SNPs (A1 freq 0.2-0.5, no missing calls), written as
    PLINK and read back, with its dosages."""
    from gwaslift import write_plink

    rng = np.random.default_rng(11)
    n, m = 400, 60
    dos = rng.binomial(2, rng.uniform(0.2, 0.5, m), size=(n, m)).astype(np.float32)
    samples = pd.DataFrame({"fid": [f"f{i}" for i in range(n)], "iid": [f"i{i}" for i in range(n)],
                            "father": "0", "mother": "0", "sex": 0, "trait": -9})
    variants = pd.DataFrame({"chrom": "1", "snp": [f"rs{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(1, m + 1) * 1000, "a1": "A", "a2": "G"})
    prefix = tmp_path_factory.mktemp("attr_sim") / "sim"
    write_plink(prefix, dos, samples, variants)
    g = read_plink(prefix)
    assert np.array_equal(g.dosage.compute(), dos)
    return g, dos


TRAIN_KW = dict(hidden=[(4, 8)], epochs=25, patience=4, batch_size=64, lr=0.01, device="cpu", progress=False)


def test_end_to_end_causal_snps_rank_first(sim):
    from gwaslift.deep import train

    g, dos = sim
    causal, beta = np.array([7, 30, 51]), np.array([1.0, -1.0, 0.8])
    rng = np.random.default_rng(1)
    y = (dos[:, causal] - dos[:, causal].mean(0)) @ beta + 0.7 * rng.normal(size=g.n_samples)
    fit = train(g, y, l1=[1.0, 10.0], seeds=[0, 1], refit_seeds=[5, 6], **TRAIN_KW)
    res = deeplift(fit, g, return_matrix=True, top_k=3)
    assert res.members["seed"].tolist() == [5, 6] and (res.members["role"] == "refit").all()
    assert res.max_delta_error <= 1e-4
    sc = res.scores
    top = sc.sort_values("deeplift_mean_abs", ascending=False).index[:3]
    assert set(top) == set(causal)
    assert (sc["deeplift_topk_count"].to_numpy()[causal] == 2).all()
    # allele orientation: more A1 copies -> contribution in the direction of beta
    x = dos[res.samples] - fit.center
    for j, b in zip(causal, beta):
        assert np.sign(np.corrcoef(res.matrix[0][:, j], x[:, j])[0, 1]) == np.sign(b)
    null = attribution_null(g, y, fit, n_null=4)
    assert null.scores.shape == (4, 60) and null.seeds == [5, 6]
    cal = null_calibrate(res, null)
    p = cal.scores["deeplift_p"].to_numpy()
    assert set(np.argsort(p)[:3]) == set(causal)
    assert cal.scores["deeplift_fwer"].to_numpy()[causal].all()


def test_null_pvalues_uniform_under_global_null(sim):
    """Phenotype independent of the genotypes: observed and null fits are exchangeable,
    so the pooled empirical p-values of the SNPs should be roughly uniform."""
    from scipy import stats

    from gwaslift.deep import train

    g, _ = sim
    y = np.random.default_rng(0).normal(size=g.n_samples)
    fit = train(g, y, l1=[1.0], seeds=[0, 1, 2, 3], **TRAIN_KW)
    res = deeplift(fit, g, members="grid")
    null = attribution_null(g, y, fit, n_null=8, seeds=[0, 1, 2, 3])
    p = null_calibrate(res, null).scores["deeplift_p"].to_numpy()
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert 0.3 < p.mean() < 0.7


# ----------------------------------------------------------------------------- dask.distributed


@pytest.fixture(scope="module")
def cluster():
    """2 worker processes x 1 thread; the client is not made the default (others in this
    module must not run on it)."""
    import distributed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = distributed.Client(lc, set_as_default=False)
    try:
        yield lc, client
    finally:
        client.close()
        lc.close()


@pytest.fixture(scope="module")
def trained(geno):
    """Two tiny fits on the dummy fileset (203 x 120, 5% missing) with 2 covariates: L1 = 1
    (nearly every SNP column in use: the full decode) and L1 = 10 (a few columns: the
    sparse-column decode)."""
    from gwaslift.deep import train

    dos = geno.dosage.compute()
    x = np.nan_to_num(dos - np.nanmean(dos, 0))
    rng = np.random.default_rng(0)
    cov = rng.normal(size=(geno.n_samples, 2))
    y = x[:, [3, 40, 77]] @ np.array([1.0, -1.0, 0.8]) + 0.5 * cov[:, 0] + 0.7 * rng.normal(size=geno.n_samples)
    kw = dict(hidden=[(4, 8)], seeds=[0, 1], covariates=cov, epochs=15, patience=4, batch_size=64, lr=0.01,
              device="cpu", progress=False)
    return train(geno, y, l1=[1.0], **kw), train(geno, y, l1=[10.0], **kw), y, cov


def _events_after(client, n_before, n_new, timeout=10.0):
    """The block-task events logged after the first ``n_before`` (waits for ``n_new``: a
    worker's event travels apart from its task result)."""
    import time

    from gwaslift.attribution import EVENT_TOPIC

    t0 = time.monotonic()
    while True:
        ev = [e for _, e in client.get_events(EVENT_TOPIC)][n_before:]
        if len(ev) >= n_new or time.monotonic() - t0 > timeout:
            return ev


def _n_events(client):
    from gwaslift.attribution import EVENT_TOPIC

    return len(client.get_events(EVENT_TOPIC))


def _assert_same_result(local, remote):
    """Equal up to the order of the float64 sums (rtol 1e-12; the signed mean, which may be
    near 0 by cancellation, to 1e-12 of the largest score)."""
    scale = float(local.scores["deeplift_mean_abs"].max())
    assert scale > 0
    np.testing.assert_allclose(remote.member_mean_abs, local.member_mean_abs, rtol=1e-12, atol=0)
    np.testing.assert_allclose(remote.member_mean, local.member_mean, rtol=1e-12, atol=1e-12 * scale)
    pd.testing.assert_frame_equal(remote.scores, local.scores, check_exact=False, rtol=1e-12, atol=1e-12 * scale)
    if local.covariates is not None:
        pd.testing.assert_frame_equal(remote.covariates, local.covariates, check_exact=False, rtol=1e-12,
                                      atol=1e-12 * float(local.covariates["deeplift_mean_abs"].max()))
    cols = [c for c in local.members.columns if c != "max_delta_error"]
    pd.testing.assert_frame_equal(remote.members[cols], local.members[cols])
    assert remote.max_delta_error <= 1e-10 and local.max_delta_error <= 1e-10
    assert np.array_equal(remote.samples, local.samples)


def test_genotypes_pickle_for_workers(geno):
    """Block tasks carry the Genotypes object (path-based), plain or with decoys."""
    import pickle

    from gwaslift.decoys import with_decoys

    for g in (geno.subset(samples=np.arange(0, 203, 2)), with_decoys(geno, 60, seed=1)):
        back = pickle.loads(pickle.dumps(g))
        assert len(pickle.dumps(g)) < 100_000  # tables and a path, no genotype bytes
        assert back.n_variants == g.n_variants and np.array_equal(back.sample_idx, g.sample_idx)
        assert np.array_equal(back.read_packed(0, back.n_variants), g.read_packed(0, g.n_variants))


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
def test_deeplift_on_cluster_equals_in_process(geno, trained, cluster, rule):
    """13 blocks of 16 samples (2 batches each; a two-level reduction tree) on 2 worker
    processes equal one in-process pass (one block, one batch)."""
    fit, _, _, cov = trained
    _, client = cluster
    assert fit.members[0].model.snp_linear.weight.detach().ne(0).any(0).sum() > 60  # full decode
    kw = dict(samples="all", covariates=cov, rule=rule, dtype="float64", progress=False)
    local = deeplift(fit, geno, **kw)
    n0 = _n_events(client)
    remote = deeplift(fit, geno, client=client, batch_size=8, max_stage_bytes=16 * 30, **kw)
    ev = _events_after(client, n0, 13)
    assert len(ev) == 13 and sum(e["samples"] for e in ev) == geno.n_samples
    assert {e["snp_columns"] for e in ev} == {120}
    assert len({e["worker"] for e in ev}) == 2  # both worker processes scored blocks
    _assert_same_result(local, remote)


def test_sparse_fit_on_cluster_stages_only_used_columns(geno, trained, cluster):
    """An L1 fit using a few SNP columns: the block tasks read, stage and decode only those
    (iter_fit_batches_snps' path) and the result equals the in-process run."""
    _, fit, _, cov = trained
    _, client = cluster
    used = np.flatnonzero(np.any([m.model.snp_linear.weight.detach().ne(0).any(0).numpy() for m in fit.members], 0))
    assert 0 < len(used) < 60  # below DECODE_COLUMNS_BELOW: the sparse path
    kw = dict(samples="all", covariates=cov, dtype="float64", progress=False)
    local = deeplift(fit, geno, **kw)
    n0 = _n_events(client)
    remote = deeplift(fit, geno, client=client, batch_size=5, max_stage_bytes=20, **kw)  # 2 batches a block
    block = max(5, 20 // ((len(used) + 3) // 4) // 5 * 5)  # samples whose packed used columns fit 20 bytes
    n_blocks = -(-geno.n_samples // block)
    ev = _events_after(client, n0, n_blocks)
    assert n_blocks > 8 and len(ev) == n_blocks and {e["snp_columns"] for e in ev} == {len(used)}
    _assert_same_result(local, remote)
    unused = np.setdiff1d(np.arange(120), used)
    assert (remote.member_mean_abs[:, unused] == 0).all() and (remote.member_mean_abs[:, used] > 0).any()


def test_decoy_genotypes_on_cluster(geno, trained, cluster):
    """Decoy columns (DecoySource, built on read from the permuted real rows) score on the
    workers as in this process."""
    from gwaslift.decoys import with_decoys
    from gwaslift.deep import train

    _, _, y, cov = trained
    _, client = cluster
    gd = with_decoys(geno, 60, seed=1)
    fit = train(gd, y, hidden=[(4, 8)], l1=[1.0], seeds=[0], covariates=cov, epochs=10, patience=4,
                batch_size=64, lr=0.01, device="cpu", progress=False)
    kw = dict(samples="validation", covariates=cov, reference="zero", dtype="float64", progress=False)
    local = deeplift(fit, gd, **kw)
    n0 = _n_events(client)
    remote = deeplift(fit, gd, client=client, batch_size=4, max_stage_bytes=8 * 45, **kw)  # 2 batches a block
    n_blocks = -(-len(local.samples) // 8)
    ev = _events_after(client, n0, n_blocks)
    assert len(ev) == n_blocks and {e["snp_columns"] for e in ev} == {180}
    _assert_same_result(local, remote)
    assert (remote.member_mean_abs[:, 120:] > 0).any()  # the decoys were scored, not skipped


def test_client_argument(geno, trained, cluster):
    import distributed

    fit, _, _, cov = trained
    lc, client = cluster
    kw = dict(samples="validation", covariates=cov, dtype="float64", progress=False)
    with pytest.raises(InputError, match="return_matrix"):
        deeplift(fit, geno, client=client, return_matrix=True, **kw)
    with pytest.raises(InputError, match="client"):
        deeplift(fit, geno, client="cluster", **kw)
    local = deeplift(fit, geno, return_matrix=True, **kw)
    n0 = _n_events(client)
    assert deeplift(fit, geno, client="auto", **kw).scores.equals(local.scores)  # no default client: here
    with distributed.Client(lc) as default:  # the default client, as QC / PCA / GWAS use it
        auto = deeplift(fit, geno, client="auto", batch_size=8, max_stage_bytes=480, **kw)
        n_blocks = -(-len(local.samples) // 16)
        assert len(_events_after(default, n0, n_blocks)) == n_blocks
        _assert_same_result(local, auto)
        # return_matrix needs the whole matrix here: "auto" falls back to this process
        mat = deeplift(fit, geno, client="auto", return_matrix=True, **kw)
        assert np.array_equal(mat.matrix, local.matrix)
        assert len(_events_after(default, n0, n_blocks + 1, timeout=0.5)) == n_blocks
