"""The paper's grid (h1 {64,128} x h2 {128,256} x l1 {0.01,0.1,1,10} x 5 seeds = 80 fits):
gwaslift.deep.train versus a plain PyTorch loop that trains the 80 models one after another
from a dense float tensor, in one run on the same data.

Both sides run the same algorithm: same initial weights (GenotypeMLP under
torch.manual_seed(seed)), same minibatch order, batch size, Adam + proximal L1 (the plain
loop applies the soft threshold after torch.optim.Adam using its exp_avg_sq), same epoch cap,
early-stopping rule and patience, and the validation log-likelihood computed the same way.
The plain loop gathers its minibatches from a dense centred float32 matrix (n x m, built
before its timer starts); gwaslift reads the .bed and keeps it packed.

Data: 10,000 samples x 10,000 SNPs, two Balding-Nichols subpopulations (F = 0.05) and a
binary additive trait with 10 causal SNPs, written once to benchmarks/data/bn_10k_10k.*.

    .venv/bin/python benchmarks/deep_grid.py [--epochs 100] [--patience 5] [--threads 2] [--stacked]
                                             [--precision bf16] [--plain-first]

``--plain-first`` runs the plain loop before gwaslift (default: after). What ran before in the
process changes the second side's time (allocator state; benchmarks/results/deep.md), so
RESULTS records both orders.

``--precision bf16``: gwaslift runs its first-layer products in bfloat16 (train(...,
precision="bf16")) while the plain loop stays float32; the script then reports accuracy
parity as well: per-configuration mean validation log-likelihood on each side, the
configuration each side selects, and the overlap of the top-10 SNPs by first-layer weight
norm (column L2 norm of W1, summed over the selected configuration's seeds) with each other
and with the simulated causal SNPs.
    .venv/bin/python benchmarks/deep_grid.py --gemm-check   # stacked vs per-member GEMMs only

``--device cuda`` runs both sides on the GPU (the plain loop's dense tensor and models moved
there; gwaslift's ``train(device="cuda")``, whose defaults there are the stacked GEMM and the
packed matrix resident on the device); timings end after a device synchronisation.
``--samples`` / ``--snps`` make a smaller simulation (its own cached files), for smoke runs.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gwaslift  # noqa: E402
from gwaslift.deep import make_split, train  # noqa: E402
from gwaslift.deep.train import training_center  # noqa: E402
from gwaslift.deep.network import GenotypeMLP  # noqa: E402
from gwaslift.io import PlinkWriter  # noqa: E402


def make_data(prefix: Path, n=10_000, m=10_000, n_causal=10, seed=0):
    if Path(f"{prefix}.bed").exists():
        return
    rng = np.random.default_rng(seed)
    fst = 0.05
    p_anc = rng.uniform(0.05, 0.5, m)
    a, b = p_anc * (1 - fst) / fst, (1 - p_anc) * (1 - fst) / fst
    pop = np.repeat([0, 1], n // 2)
    p_pop = np.stack([rng.beta(a, b), rng.beta(a, b)])
    causal = np.sort(rng.choice(m, n_causal, replace=False))
    beta = rng.normal(0, 0.5, n_causal)
    samples = pd.DataFrame({"fid": [f"s{i}" for i in range(n)], "iid": [f"s{i}" for i in range(n)]})
    variants = pd.DataFrame({"chrom": "1", "snp": [f"rs{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(1, m + 1) * 100, "a1": "A", "a2": "G"})
    lin = np.zeros(n)
    with PlinkWriter(prefix, samples, variants) as w:
        for s in range(0, m, 1000):
            blk = rng.binomial(2, p_pop[pop][:, s:s + 1000]).astype(np.float32)
            for k, j in enumerate(causal):
                if s <= j < s + 1000:
                    g = blk[:, j - s]
                    lin += beta[k] * (g - g.mean())
            w.write(blk)
    y = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    pd.DataFrame({"iid": samples.iid, "y": y}).to_csv(f"{prefix}.pheno", sep="\t", index=False)
    pd.DataFrame({"snp": variants.snp[causal], "beta": beta}).to_csv(f"{prefix}.truth", sep="\t", index=False)


def plain_loop(X, y, split, configs, seeds, epochs, patience, batch_size, shuffle_seed=0):
    """The paper's way: one model after another, minibatches from a dense tensor (on X's
    device; each model is initialised on the CPU under its seed, as gwaslift's, then moved)."""
    dev = X.device
    n_train = len(split.train)
    yt = torch.as_tensor(y, dtype=torch.float32, device=dev)
    results = []
    for cfg, seed in itertools.product(configs, seeds):
        torch.manual_seed(seed)
        model = GenotypeMLP(X.shape[1], cfg["hidden"]).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        lam = cfg["l1"] / n_train
        best, best_loss, bad = None, math.inf, 0
        for epoch in range(epochs):
            perm = np.random.default_rng([shuffle_seed, epoch]).permutation(split.train)
            model.train()
            for s in range(0, n_train, batch_size):
                idx = torch.as_tensor(perm[s:s + batch_size], device=dev)
                loss = F.binary_cross_entropy_with_logits(model(X[idx])[:, 0], yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():  # proximal L1 in Adam's metric (as gwaslift)
                    w = model.snp_linear.weight
                    st = opt.state[w]
                    t = float(st["step"])
                    denom = (st["exp_avg_sq"].sqrt() / math.sqrt(1 - 0.999 ** t)).add_(1e-8)
                    thr = cfg["lr"] * lam / denom
                    w.copy_(torch.sign(w) * torch.clamp(w.abs() - thr, min=0))
            model.eval()
            with torch.no_grad():
                es = sum(float(F.binary_cross_entropy_with_logits(
                    model(X[torch.as_tensor(p, device=dev)])[:, 0], yt[torch.as_tensor(p, device=dev)],
                    reduction="sum"))
                         for p in np.array_split(split.early_stop, max(1, len(split.early_stop) // batch_size)))
            es /= len(split.early_stop)
            if es < best_loss:
                best_loss, bad, best = es, 0, copy.deepcopy(model.state_dict())
            else:
                bad += 1
            if bad >= patience:
                break
        model.load_state_dict(best)
        with torch.no_grad():
            f = model(X[torch.as_tensor(split.validation, device=dev)])[:, 0].double().cpu().numpy()
        yv = y[split.validation]
        ll = float(np.mean(yv * -np.logaddexp(0, -f) + (1 - yv) * -np.logaddexp(0, f)))
        results.append({**cfg, "seed": seed, "val_loglik": ll, "epochs": epoch + 1,
                        "n_nonzero_snps": int((model.snp_linear.weight != 0).any(0).sum()),
                        "w1": model.snp_linear.weight.detach().cpu().clone()})
    return results


def parity(fit, res, causal_snps, snps, k=10):
    """Accuracy of gwaslift's grid against the plain loop's: per-configuration mean validation
    log-likelihood, the selected configuration of each, and top-``k`` SNP overlap."""
    tab = fit.metrics_table()
    plain = pd.DataFrame([{"h1": r["hidden"][0], "h2": r["hidden"][1], "l1": r["l1"], "seed": r["seed"],
                           "val_loglik": r["val_loglik"]} for r in res])
    keys = ["h1", "h2", "l1"]
    per = pd.concat({"gwaslift": tab.groupby(keys).val_loglik.mean(),
                     "plain": plain.groupby(keys).val_loglik.mean()}, axis=1)
    per["diff"] = per.gwaslift - per.plain
    sel_g, sel_p = per.gwaslift.idxmax(), per.plain.idxmax()
    causal = set(np.flatnonzero(np.isin(np.asarray(snps), np.asarray(causal_snps))).tolist())

    def top(ws):  # SNP importance: W1 column L2 norm summed over the configuration's seeds
        imp = sum(w.norm(dim=0).numpy() for w in ws)
        return [int(j) for j in np.argsort(-imp, kind="stable")[:k]]

    def w_gwaslift(cfg):
        return [m.model.snp_linear.weight.detach().cpu() for m in fit.members
                if (*m.config["hidden"], m.config["l1"]) == cfg]

    def w_plain(cfg):
        return [r["w1"] for r in res if (*r["hidden"], r["l1"]) == cfg]

    tg, tp = top(w_gwaslift(sel_g)), top(w_plain(sel_p))
    tp_same = top(w_plain(sel_g))
    return {
        "per_config_mean_val_loglik": [{"h1": int(i[0]), "h2": int(i[1]), "l1": float(i[2]),
                                        "gwaslift": float(r.gwaslift), "plain": float(r.plain),
                                        "diff": float(r["diff"])} for i, r in per.iterrows()],
        "max_abs_config_diff": float(per["diff"].abs().max()),
        "selected_gwaslift": [int(sel_g[0]), int(sel_g[1]), float(sel_g[2])],
        "selected_plain": [int(sel_p[0]), int(sel_p[1]), float(sel_p[2])],
        "top10_gwaslift": tg, "top10_plain": tp,
        "top10_overlap_selected_each": len(set(tg) & set(tp)),
        "top10_overlap_same_config": len(set(tg) & set(tp_same)),
        "causal_in_top10_gwaslift": len(set(tg) & causal), "causal_in_top10_plain": len(set(tp) & causal),
        "n_causal": len(causal),
    }


def gemm_check(n_snps=10_000, batch=256, reps=3):
    """First-layer forward + weight-gradient GEMMs of the 80 members on one batch: one stacked
    GEMM pair versus one pair per member (what gwaslift does on CPU by default)."""
    torch.manual_seed(0)
    x = torch.randn(batch, n_snps)
    ws = [torch.randn(h, n_snps) for h in [64] * 40 + [128] * 40]
    wcat = torch.cat(ws)
    g = torch.randn(batch, wcat.shape[0])

    def stacked():
        _ = x @ wcat.T
        _ = g.T @ x

    def per_member():
        o = 0
        for w in ws:
            _ = x @ w.T
            _ = g[:, o:o + w.shape[0]].T @ x
            o += w.shape[0]

    out = {}
    for name, f in (("stacked", stacked), ("per_member", per_member)):
        f()
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        out[name] = (time.perf_counter() - t0) / reps
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--plain-first", action="store_true", help="run the plain loop before gwaslift")
    ap.add_argument("--stacked", action="store_true",
                    help="gwaslift: one stacked first-layer GEMM (the CUDA default) instead of per member")
    ap.add_argument("--precision", choices=["float32", "bf16"], default="float32",
                    help="gwaslift's first-layer products (the plain loop is always float32)")
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--gemm-check", action="store_true", help="only time stacked vs per-member GEMMs")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where both sides train")
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--snps", type=int, default=10_000)
    ap.add_argument("--data", default=str(ROOT / "benchmarks" / "data"), help="folder of the cached simulation")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.gemm_check:
        r = gemm_check(batch=a.batch_size)
        print(f"first-layer GEMMs of 80 members, batch {a.batch_size}: stacked {r['stacked']:.3f} s, "
              f"per member {r['per_member']:.3f} s")
        return
    name = ("bn_10k_10k" if (a.samples, a.snps) == (10_000, 10_000)
            else f"bn_{a.samples}_{a.snps}")
    prefix = Path(a.data) / name
    Path(a.data).mkdir(parents=True, exist_ok=True)
    make_data(prefix, n=a.samples, m=a.snps)
    g = gwaslift.read_plink(prefix)
    y = pd.read_csv(f"{prefix}.pheno", sep="\t")["y"].to_numpy().astype(float)
    hidden = [(64, 128), (64, 256), (128, 128), (128, 256)]
    l1 = [0.01, 0.1, 1.0, 10.0]
    seeds = list(range(a.seeds))
    out = {"args": vars(a), "n": g.n_samples, "m": g.n_variants, "loadavg_start": list(os.getloadavg())}
    if a.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()

    # the split and centre train() makes by default, fixed here so either side can run first
    split = make_split(y, 0, stratify=True)
    center = training_center(g, split.train)
    configs = [{"hidden": h, "l1": v, "lr": a.lr} for h in hidden for v in l1]

    def run_plain():
        t_build = time.perf_counter()
        X = torch.from_numpy(g.dosage.compute())            # dense (n, m) float32, NaN missing
        X = torch.nan_to_num(X - torch.as_tensor(center), nan=0.0)  # centred, missing -> 0 (same inputs)
        X = X.to(a.device)
        _sync(a.device)
        out["plain_build_dense_s"] = time.perf_counter() - t_build
        t0 = time.perf_counter()
        res = plain_loop(X, y, split, configs, seeds, a.epochs, a.patience, a.batch_size)
        _sync(a.device)
        out["plain_s"] = time.perf_counter() - t0
        print(f"plain loop: {out['plain_s']:.1f} s", flush=True)
        return res

    res = None
    if a.plain_first and not a.skip_plain:
        # what ran before in the process changes the other side's time (allocator state): the
        # plain loop ran 101 s after an older gwaslift and 80 s after the current one, same
        # machine; RESULTS records both orders
        res = run_plain()
    t0 = time.perf_counter()
    fit = train(g, y, hidden=hidden, l1=l1, seeds=seeds, device=a.device, epochs=a.epochs, patience=a.patience,
                batch_size=a.batch_size, lr=a.lr, progress=False, stacked=True if a.stacked else None,
                precision=a.precision, split=split)
    _sync(a.device)
    out["gwaslift_s"] = time.perf_counter() - t0
    assert np.array_equal(fit.center, center)
    tab = fit.metrics_table()
    out["gwaslift_epochs_total"] = int(tab.epochs.sum())
    out["gwaslift_best_val_loglik"] = float(tab.val_loglik.max())
    out["constant_val_loglik"] = float(tab.val_loglik_constant.iloc[0])
    print(f"gwaslift.deep.train: {out['gwaslift_s']:.1f} s, {len(fit.members)} members, "
          f"{out['gwaslift_epochs_total']} member-epochs", flush=True)
    print(tab.groupby(["h1", "h2", "l1"])[["val_loglik", "epochs", "n_nonzero_snps"]].mean().to_string(), flush=True)

    if not a.skip_plain:
        if res is None:
            res = run_plain()
        out["plain_epochs_total"] = int(sum(r["epochs"] for r in res))
        out["ratio"] = out["plain_s"] / out["gwaslift_s"]
        # same algorithm: compare per member
        diffs, ll = [], []
        for r, mem in zip(res, fit.members):
            assert r["hidden"] == mem.config["hidden"] and r["l1"] == mem.config["l1"] and r["seed"] == mem.seed
            diffs.append(float((r["w1"] - mem.model.snp_linear.weight.detach().cpu()).abs().max()))
            ll.append(abs(r["val_loglik"] - mem.metrics["val_loglik"]))
        out["max_abs_w1_diff"] = max(diffs)
        out["median_abs_w1_diff"] = float(np.median(diffs))
        out["max_abs_val_loglik_diff"] = max(ll)
        out["same_epochs"] = sum(r["epochs"] == m.metrics["epochs"] for r, m in zip(res, fit.members))
        print(f"plain loop: {out['plain_s']:.1f} s ({out['plain_epochs_total']} member-epochs); "
              f"ratio plain / gwaslift = {out['ratio']:.2f}", flush=True)
        out["parity"] = parity(fit, res, pd.read_csv(f"{prefix}.truth", sep="\t")["snp"], g.variants["snp"])
        print(json.dumps(out["parity"], indent=1), flush=True)
    out["loadavg_end"] = list(os.getloadavg())
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
