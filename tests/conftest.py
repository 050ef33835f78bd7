"""Shared fixtures: reference datasets made by plink2, the independent reference tool.

plink2 is a hard requirement of the test suite (scripts/setup.sh --test installs the Debian
package): a test that needs it fails, never skips, when it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def plink2_path() -> str:
    exe = shutil.which("plink2")
    if exe is None:
        pytest.fail("plink2 is not installed: run `bash scripts/setup.sh --test` (Debian package plink2)")
    return exe


def run_plink2(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run plink2 with 1 thread and a small memory cap; raise with its log on failure."""
    cmd = [plink2_path(), "--threads", "1", "--memory", "2000", *map(str, args)]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"plink2 failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="session")
def plink2():
    """The plink2 runner (fails the test when plink2 is missing)."""
    plink2_path()
    return run_plink2


@pytest.fixture(scope="session")
def dummy_bfile(tmp_path_factory) -> Path:
    """A plink2 --dummy fileset: 203 samples x 120 variants, 5% missing calls, ACGT alleles."""
    d = tmp_path_factory.mktemp("dummy")
    run_plink2("--dummy", "203", "120", "0.05", "acgt", "--seed", "7", "--make-bed", "--out", d / "dummy")
    return d / "dummy"


@pytest.fixture
def training_waves(monkeypatch) -> list:
    """The waves of networks ``gwaslift.deep`` trains together, recorded as they start: one
    ``[(l1, seed), ...]`` list per call of the training loop (a grid, a refit, a decoy
    refit in waves when ``max_state_bytes`` is small)."""
    import importlib

    train_mod = importlib.import_module("gwaslift.deep.train")  # the module, not the function
    waves = []
    real = train_mod._train_stack

    def recording(data, states, *args, **kw):
        waves.append([(ms.config["l1"], ms.seed) for ms in states])
        return real(data, states, *args, **kw)

    monkeypatch.setattr(train_mod, "_train_stack", recording)
    return waves
