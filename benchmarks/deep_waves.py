"""Training memory of the paper's grid: all 80 members at once against memory-bounded waves.

The training state of a member (weights, Adam moments, gradient, best-epoch copy) is 20
bytes per first-layer weight in float32, so the paper's grid (h1 in {64, 128}, h2 in {128,
256}, l1 in {0.01, 0.1, 1, 10}, 5 seeds: sum of h1 = 7,680) holds 154 kB per SNP at once:
1.5 GB at 10,000 SNPs, 52 GB at the paper's 336,814. ``train(max_state_bytes=...)`` trains
the members in waves that fit the budget (the default is half the available memory), each
wave replaying the same minibatches, so the members come out the same.

One run, the same data, each side in its own child process (peak RSS from ``wait4``):

* ``train(...)`` with the default budget (the whole grid in one wave on this machine);
* ``train(..., max_state_bytes=B)`` (``--budget-gb``, default 0.5 GB: several waves).

Both save their first-layer weights; the script checks that they are bitwise equal
(float32 on CPU: members do not share products) and prints a Markdown table.

    .venv/bin/python benchmarks/deep_waves.py [--samples 10000 --snps 10000 --epochs 3
        --budget-gb 0.5 --threads 2 --out benchmarks/out/deep_waves.md]

Data: ``deep_grid.py``'s simulation (cached in benchmarks/data/).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

HIDDEN = [(64, 128), (64, 256), (128, 128), (128, 256)]
L1 = [0.01, 0.1, 1.0, 10.0]


def child(prefix: str, budget: float | None, epochs: int, threads: int, out: str) -> None:
    """Train the grid and save its first-layer weights to ``out`` (.npz)."""
    import numpy as np
    import pandas as pd
    import torch

    import gwaslift
    from gwaslift.deep import train

    torch.set_num_threads(threads)
    g = gwaslift.read_plink(prefix)
    y = pd.read_csv(f"{prefix}.pheno", sep="\t")["y"].to_numpy().astype(float)
    fit = train(g, y, hidden=HIDDEN, l1=L1, seeds=range(5), device="cpu", epochs=epochs, patience=3, lr=3e-3,
                progress=False, max_state_bytes=None if budget is None else int(budget * 2**30))
    np.savez(out, *[m.model.snp_linear.weight.detach().numpy() for m in fit.members])


def run_child(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS GB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", *args])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child failed: {args}")
    return wall, usage.ru_maxrss / 2**20  # KiB -> GiB


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--snps", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--budget-gb", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "deep_waves.md")
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data", help="folder of the cached simulation")
    ap.add_argument("--child", nargs=5, metavar=("PREFIX", "BUDGET", "EPOCHS", "THREADS", "OUT"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        prefix, budget, epochs, threads, out = a.child
        child(prefix, None if budget == "none" else float(budget), int(epochs), int(threads), out)
        return

    import numpy as np

    from deep_grid import make_data
    from gwaslift.deep.train import member_state_bytes

    name = "bn_10k_10k" if (a.samples, a.snps) == (10_000, 10_000) else f"bn_{a.samples}_{a.snps}"
    prefix = a.data / name
    prefix.parent.mkdir(parents=True, exist_ok=True)
    make_data(prefix, n=a.samples, m=a.snps)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    state = sum(member_state_bytes(a.snps, {"hidden": h}) for h in HIDDEN) * len(L1) * 5 / 2**30
    work = a.out.parent
    load0 = os.getloadavg()[0]
    one = run_child([str(prefix), "none", str(a.epochs), str(a.threads), str(work / "waves_one.npz")])
    waved = run_child([str(prefix), str(a.budget_gb), str(a.epochs), str(a.threads), str(work / "waves_bounded.npz")])
    w1, w2 = np.load(work / "waves_one.npz"), np.load(work / "waves_bounded.npz")
    same = len(w1.files) == len(w2.files) == 80 and all(np.array_equal(w1[k], w2[k]) for k in w1.files)
    per_member = state / 80
    lines = [
        f"# The paper's grid in memory-bounded waves ({a.samples:,} x {a.snps:,}, {a.epochs} epochs)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load average "
        f"{load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; {a.threads} threads.",
        f"Command: `.venv/bin/python benchmarks/deep_waves.py --samples {a.samples} --snps {a.snps} "
        f"--epochs {a.epochs} --budget-gb {a.budget_gb}`",
        "",
        f"Training state of the 80 members: {state:.2f} GiB in all ({per_member * 1024:.0f} MiB a member on "
        "average, float32).",
        "",
        "| run | wall (s) | peak RSS (GiB) |",
        "|---|---|---|",
        f"| default budget (one wave) | {one[0]:.1f} | {one[1]:.2f} |",
        f"| max_state_bytes = {a.budget_gb} GiB | {waved[0]:.1f} | {waved[1]:.2f} |",
        "",
        f"First-layer weights of all 80 members bitwise equal: {same}.",
    ]
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not same:
        raise SystemExit("the waves changed the members")
    return {"one_wave": one, "bounded": waved, "same": same}


if __name__ == "__main__":
    main()
