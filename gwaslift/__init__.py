"""gwaslift: deep-learning GWAS with DeepLIFT scores beside a classic per-SNP GWAS.

Light entry points are imported eagerly; heavy ones (torch, matplotlib) load on first use
through ``__getattr__`` so that ``import gwaslift`` stays fast.
"""

from __future__ import annotations

import importlib

from .errors import InputError
from .io import Genotypes, read_plink, write_plink

__version__ = "0.1.0"

# public name -> (module, attribute); loaded on first access
_LAZY = {
    "read_pheno": ("gwaslift.io.pheno", "read_pheno"),
    "read_covar": ("gwaslift.io.pheno", "read_covar"),
    "qc": ("gwaslift.qc", "qc"),
    "pca": ("gwaslift.structure", "pca"),
    "linear_gwas": ("gwaslift.assoc", "linear_gwas"),
    "genomic_inflation": ("gwaslift.assoc", "genomic_inflation"),
    "train": ("gwaslift.deep", "train"),
    "load_fit": ("gwaslift.deep", "load_fit"),
    "deeplift": ("gwaslift.attribution", "deeplift"),
    "analyze": ("gwaslift.pipeline", "analyze"),
    "load": ("gwaslift.pipeline", "load"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        # ``gwaslift.qc`` is both a module and a function: importing the module binds the
        # module object on the package, so always (re)bind the public function here.
        globals()[name] = value
        return value
    if name in ("simulate", "plots", "deep", "attribution", "assoc", "structure", "pipeline"):
        return importlib.import_module(f"gwaslift.{name}")
    raise AttributeError(f"module 'gwaslift' has no attribute {name!r}")


__all__ = ["Genotypes", "InputError", "read_plink", "write_plink", "__version__", *_LAZY]
