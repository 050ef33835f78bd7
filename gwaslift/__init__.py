"""gwaslift: deep-learning GWAS with DeepLIFT scores beside a classic per-SNP GWAS.

Light entry points are imported eagerly; heavy ones (torch, matplotlib) load on first use
through ``__getattr__`` so that ``import gwaslift`` stays fast.
"""

from __future__ import annotations

import importlib

from .errors import InputError
from .io import Genotypes, read_plink, write_plink
from .io.pheno import read_covar, read_pheno

# ``gwaslift.qc`` names both the module gwaslift/qc.py and its function ``qc``. Importing the
# module here, once, and binding the function afterwards makes ``gwaslift.qc(...)`` the
# function for good: later ``import gwaslift.qc`` statements do not rebind the attribute.
from .qc import qc  # noqa: E402

__version__ = "0.1.0"

# public name -> (module, attribute); loaded on first access
_LAZY = {
    "pca": ("gwaslift.structure", "pca"),
    "linear_gwas": ("gwaslift.assoc", "linear_gwas"),
    "linear_gwas_multi": ("gwaslift.assoc", "linear_gwas_multi"),
    "genomic_inflation": ("gwaslift.assoc", "genomic_inflation"),
    "train": ("gwaslift.deep", "train"),
    "load_fit": ("gwaslift.deep", "load_fit"),
    "deeplift": ("gwaslift.attribution", "deeplift"),
    "pair_scan": ("gwaslift.epistasis", "pair_scan"),
    "analyze": ("gwaslift.pipeline", "analyze"),
    "load": ("gwaslift.pipeline", "load"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in ("simulate", "plots", "deep", "attribution", "decoys", "assoc", "structure", "pipeline"):
        return importlib.import_module(f"gwaslift.{name}")
    raise AttributeError(f"module 'gwaslift' has no attribute {name!r}")


__all__ = ["Genotypes", "InputError", "qc", "read_covar", "read_pheno", "read_plink", "write_plink",
           "__version__", *_LAZY]
