"""Biobank-sized training and DeepLIFT on one GPU against their floor (issue 8), in one run.

Written for a lent GPU machine (a run at full size needs about 40 GB of device memory for the
resident packed matrix of 400,000 x 300,000 plus working space); it runs on CPU at small
sizes, which is how the test suite checks it (tests/test_benchmark_scripts.py).

Steps, each timed (wall seconds, device synchronized):

1. ``generate``: :func:`gwaslift.synthetic.synthetic_bed` on the device (``--n-samples`` x
   ``--n-snps``, 3 Balding-Nichols populations, 100 causal SNPs, quantitative trait),
   cached in ``--data`` (skipped when the fileset exists).
2. ``train``: one (h1, h2) network, one seed, on a split whose training set has
   ``--epoch-samples`` samples (default: half the cohort, the paper's 50%), early-stopping
   and validation sets of ``--eval-samples`` each. Trained for 1 and for 2 epochs (patience
   off); the difference is one epoch plus one early-stopping evaluation: the **epoch
   time**. The 1-epoch run also gives the staging time (the packed rows of the split's
   samples put on the device: resident when they fit half the free device memory).
3. ``floor``: the first-layer products alone on the same device, precision and shapes:
   forward ``x @ W1.T`` and weight gradient ``dZ1.T @ x`` for every batch of one epoch
   (``ceil(epoch_samples / batch)`` batches of ``batch x n_snps`` against ``h1 x n_snps``),
   from random operands already on the device. Epoch time / floor = the overhead of
   everything else (decode, deeper layers, Adam + proximal step, data movement).
4. ``deeplift``: :func:`gwaslift.deeplift` of the trained network on ``--deeplift-samples``
   validation samples; time per sample.
5. ``protocol``: the whole paper protocol extrapolated from the measured epoch and floor,
   stated as such: the grid's first layers total sum(h1) = 40 x 64 + 40 x 128 = 7,680 rows
   (80 fits), i.e. 60x the products of one h1 = 128 member; refit 5 members of the selected
   configuration; ``--protocol-epochs`` epochs each (early stopping ends most fits sooner);
   DeepLIFT of the 5 refits on the 25% validation split.

Output: a JSON record (``--json``) and a markdown table on stdout; copy the numbers into
benchmarks/RESULTS.md with the command and the machine.

    python benchmarks/biobank_gpu.py --n-samples 400000 --n-snps 300000 --precision bf16 \\
        --epoch-samples 200000 --json /tmp/biobank_gpu.json
    python benchmarks/biobank_gpu.py --n-samples 4000 --n-snps 2000 --device cpu   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(dev, fn):
    sync(dev)
    t = time.perf_counter()
    out = fn()
    sync(dev)
    return out, time.perf_counter() - t


def floor_seconds(dev, n_batches: int, batch: int, n_snps: int, h1: int, precision: str, reps: int = 3) -> float:
    """Seconds of the first-layer forward + weight-gradient products of ``n_batches`` batches
    (timed on ``min(n_batches, 50)`` batches and scaled; median of ``reps``)."""
    import torch

    dt = torch.bfloat16 if precision == "bf16" else torch.float32
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn((batch, n_snps), generator=g, device=dev).to(dt)
    w = torch.randn((h1, n_snps), generator=g, device=dev).to(dt)
    dz = torch.randn((batch, h1), generator=g, device=dev).to(dt)
    k = max(1, min(n_batches, 50))

    def run():
        for _ in range(k):
            z = x @ w.T
            gw = dz.T @ x
        return z, gw

    run()  # warm-up (kernel selection)
    times = sorted(timed(dev, run)[1] for _ in range(reps))
    return times[len(times) // 2] * n_batches / k


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-samples", type=int, default=400_000)
    p.add_argument("--n-snps", type=int, default=300_000)
    p.add_argument("--h1", type=int, default=128)
    p.add_argument("--h2", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--precision", default="bf16", choices=["float32", "bf16"])
    p.add_argument("--epoch-samples", type=int, default=None, help="training-set size (default: half the cohort)")
    p.add_argument("--eval-samples", type=int, default=2048, help="early-stopping and validation set sizes")
    p.add_argument("--deeplift-samples", type=int, default=2048)
    p.add_argument("--protocol-epochs", type=int, default=20, help="epochs per fit in the extrapolation")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=str(ROOT / "benchmarks" / "data"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    import gwaslift
    from gwaslift.deep import Split, train
    from gwaslift.synthetic import synthetic_bed

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else torch.device(args.device)
    rec = {"machine": platform.node(), "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "args": vars(args)}
    n, m = args.n_samples, args.n_snps
    prefix = Path(args.data) / f"synthetic_{n}_{m}"
    if not Path(f"{prefix}.bed").exists():
        res, rec["generate_s"] = timed(dev, lambda: synthetic_bed(prefix, n, m, device=dev, progress=False))
        rec["generate_device"] = res["device"]
    g = gwaslift.read_plink(prefix)
    y = gwaslift.read_pheno(f"{prefix}.pheno", g)
    n_train = args.epoch_samples or n // 2
    n_eval = args.eval_samples
    if n_train + 2 * n_eval > n:
        raise SystemExit(f"--epoch-samples {n_train} + 2 x --eval-samples {n_eval} exceed {n} samples")
    perm = np.random.default_rng(0).permutation(n)
    split = Split(np.sort(perm[:n_train]), np.sort(perm[n_train:n_train + n_eval]),
                  np.sort(perm[n_train + n_eval:n_train + 2 * n_eval]))
    kw = dict(hidden=[(args.h1, args.h2)], l1=[1.0], seeds=[0], split=split, device=dev, batch_size=args.batch,
              precision=args.precision, progress=False)
    # warm-up on a few samples, untimed: one-off costs (CUDA context and library handles; on CPU
    # numba's import and kernel compile or cache load) would otherwise land in the 1-epoch run
    # and make the epoch time (2 epochs - 1 epoch) too small, even negative
    b = args.batch
    warm = Split(split.train[:2 * b], split.early_stop[:b], split.validation[:b])
    train(g, y, epochs=1, patience=1, **{**kw, "split": warm})
    fit1, t1 = timed(dev, lambda: train(g, y, epochs=1, patience=1, **kw))
    fit2, t2 = timed(dev, lambda: train(g, y, epochs=2, patience=2, **kw))
    rec.update(train_1_epoch_s=t1, train_2_epochs_s=t2, epoch_s=t2 - t1, n_train=n_train,
               batches_per_epoch=math.ceil(n_train / args.batch), packed_gb=m * math.ceil(n / 4) / 1e9)
    rec["floor_epoch_s"] = floor_seconds(dev, rec["batches_per_epoch"], args.batch, m, args.h1, args.precision)
    rec["epoch_over_floor"] = rec["epoch_s"] / rec["floor_epoch_s"]
    n_dl = min(args.deeplift_samples, n_eval)
    res, rec["deeplift_s"] = timed(dev, lambda: gwaslift.deeplift(fit2, g, samples=split.validation[:n_dl],
                                                                 progress=False))
    rec["deeplift_s_per_sample"] = rec["deeplift_s"] / n_dl
    # the paper protocol at this size, extrapolated (module docstring, step 5)
    full_train = n // 2
    scale = full_train / n_train
    grid_rows = 40 * 64 + 40 * 128
    rec["protocol_extrapolated"] = {
        "epoch_one_member_full_s": rec["epoch_s"] * scale,
        "grid_epoch_floor_s": rec["floor_epoch_s"] * scale * grid_rows / args.h1,
        "grid_s": rec["floor_epoch_s"] * scale * grid_rows / args.h1 * rec["epoch_over_floor"] * args.protocol_epochs,
        "refit_s": rec["epoch_s"] * scale * 5 * args.protocol_epochs,
        "deeplift_s": rec["deeplift_s_per_sample"] * (n // 4) * 5,
    }
    pe = rec["protocol_extrapolated"]
    pe["total_h"] = (pe["grid_s"] + pe["refit_s"] + pe["deeplift_s"]) / 3600
    if args.json:
        Path(args.json).write_text(json.dumps(rec, indent=1, default=str))
    print(f"| {n} x {m} | {rec['device']} | {args.precision} | h1 {args.h1} | epoch ({n_train} samples) "
          f"{rec['epoch_s']:.2f} s | floor {rec['floor_epoch_s']:.2f} s | ratio {rec['epoch_over_floor']:.2f} | "
          f"DeepLIFT {1e3 * rec['deeplift_s_per_sample']:.3f} ms/sample | protocol ~{pe['total_h']:.2f} h |")
    return rec


if __name__ == "__main__":
    main()
