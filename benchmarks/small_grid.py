"""The paper's 80-fit grid on a small input (10,000 samples x 30 SNPs, as the epistatic
screen's candidate sets): a check that small networks train as fast as before the fused CPU
step (benchmarks/results/deep.md, "Small networks and numba's thread pool").

    .venv/bin/python benchmarks/small_grid.py [--epochs 10] [--threads 2]

Prints the wall time of ``gwaslift.train`` (the simulated cohort is made once, under
benchmarks/data/, and not timed). Run it with another checkout on PYTHONPATH to compare codes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

import gwaslift
from gwaslift.simulate import hao

DATA = Path(__file__).resolve().parent / "data" / "small_10k_30"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not Path(f"{DATA}.bed").exists():
        hao(10000, 30, trait="binary", seed=3, out=DATA, case_fraction=0.5)
    g = gwaslift.read_plink(DATA)
    y = pd.read_csv(f"{DATA}.pheno", sep="\t")["trait"].to_numpy()
    t = time.perf_counter()
    fit = gwaslift.train(g, y, hidden=[(64, 128), (64, 256), (128, 128), (128, 256)], l1=[0.01, 0.1, 1, 10],
                         seeds=range(5), epochs=args.epochs, patience=5, lr=1e-3, device="cpu", progress=False)
    print(f"{gwaslift.__file__}: 80-fit grid on 10,000 x 30, {args.threads} threads: "
          f"{time.perf_counter() - t:.1f} s, {sum(m.metrics['epochs'] for m in fit.members)} member-epochs")


if __name__ == "__main__":
    main()
