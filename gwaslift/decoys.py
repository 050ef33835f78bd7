"""Decoy SNPs: copies of real SNPs with the samples shuffled, a per-SNP null inside one network.

:func:`with_decoys` returns the genotypes with ``n_decoys`` extra columns appended. Decoy
``i`` is the real SNP ``decoy_of[i]`` whose genotypes have been permuted among the selected
samples by **one** permutation shared by all decoys. So the decoys keep

* each source SNP's genotype counts (allele frequency, missingness) exactly, and
* the linkage disequilibrium between decoys (two decoys are as correlated as their sources),

and lose every association with the phenotype, the covariates and the real SNPs. A network
trained on real SNPs plus decoys sees both under the same L1 penalty, the same learned
downstream layers and the same output scale; a real SNP without effect, unlinked to a causal
SNP and not confounded, is exchangeable with a decoy. Comparing a real SNP's score with the
decoys' scores *of the same fit* is therefore a per-SNP null that a strong-signal network
cannot skew the way it skews networks fitted to permuted phenotypes (there the scale of every
score differs between the observed and the null fits; see :mod:`gwaslift.attribution`).

What the null does not cover: a real SNP in LD with a causal SNP, or one correlated with
population structure that the covariates (PCs) do not absorb, has a real association with
the phenotype, and its p-value says so (as a per-SNP GWAS would). The decoys carry no
population structure, by construction.

The decoy columns are never written to disk: :class:`DecoySource` builds their .bed rows on
read from the real rows (unpack the 2-bit codes of the permuted samples, re-pack), so every
reader of :class:`~gwaslift.io.Genotypes` (training, DeepLIFT, counts) works unchanged. Cost:
the decoys' rows are read and re-packed on every pass, and the network has
``n_variants + n_decoys`` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .errors import InputError
from .io.packed import pack_codes, unpack_codes

#: SNP-id prefix of decoy columns in ``Genotypes.variants`` (``decoy:<source snp id>``).
DECOY_PREFIX = "decoy:"


@dataclass(frozen=True, eq=False)
class DecoySource:
    """A :class:`~gwaslift.io.plink.BedSource` plus decoy rows built on read.

    File variant index ``base.n_variants + i`` is decoy ``i``: the .bed row of file variant
    ``decoy_of[i]`` with the code of file sample ``s`` taken from sample ``perm[s]``
    (``perm`` is a permutation of the file samples; it moves only the selected ones).
    """

    base: object
    decoy_of: np.ndarray
    perm: np.ndarray

    @property
    def bed(self) -> str:
        return self.base.bed

    @property
    def n_samples(self) -> int:
        return self.base.n_samples

    @property
    def n_variants(self) -> int:
        return self.base.n_variants + len(self.decoy_of)

    @property
    def row_bytes(self) -> int:
        return self.base.row_bytes

    def read_rows(self, variant_idx: np.ndarray) -> np.ndarray:
        """Packed rows (len(variant_idx), row_bytes) uint8: real rows as read, decoys re-packed."""
        idx = np.asarray(variant_idx, dtype=np.int64)
        nb = self.base.n_variants
        is_decoy = idx >= nb
        if not is_decoy.any():
            return self.base.read_rows(idx)
        out = np.empty((len(idx), self.row_bytes), dtype=np.uint8)
        if (~is_decoy).any():
            out[~is_decoy] = self.base.read_rows(idx[~is_decoy])
        src = self.decoy_of[idx[is_decoy] - nb]
        order = np.argsort(src, kind="stable")  # read the sources in file order, put back after
        rows = np.empty((len(src), self.row_bytes), dtype=np.uint8)
        rows[order] = self.base.read_rows(src[order])
        out[is_decoy] = pack_codes(unpack_codes(rows, self.n_samples, self.perm))
        return out

    def iter_rows(self, variant_idx: np.ndarray, block_rows: int):
        """Yield ``(offset, rows)`` blocks of :meth:`read_rows` (the BedSource protocol)."""
        idx = np.asarray(variant_idx, dtype=np.int64)
        step = max(1, int(block_rows))
        for a in range(0, len(idx), step):
            yield a, self.read_rows(idx[a:a + step])

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("gwaslift.DecoySource", tokenize(self.base), tokenize(self.decoy_of), tokenize(self.perm))


def with_decoys(genotypes, n_decoys: int | None = None, seed: int = 0):
    """``genotypes`` with ``n_decoys`` decoy SNP columns appended (module docstring).

    Parameters
    ----------
    genotypes : Genotypes
        The real SNPs (columns 0..m-1 of the result, unchanged).
    n_decoys
        Number of decoys (default: m, one per real SNP). At most m: the sources are a
        seeded random subset of the real SNPs, drawn without replacement, in file order.
    seed
        Seed of the source subset and of the sample permutation.

    Returns
    -------
    Genotypes with ``m + n_decoys`` variants: the decoys' rows in ``variants`` copy their
    source's chrom/pos/alleles with ``snp = "decoy:<source snp>"``; ``meta`` gains
    ``n_real``, ``n_decoys`` and ``decoy_positions`` (each decoy's source, as a position
    among the real variants).
    """
    if isinstance(genotypes.source, DecoySource):
        raise InputError("these genotypes already carry decoys")
    m = genotypes.n_variants
    d = m if n_decoys is None else int(n_decoys)
    if not 1 <= d <= m:
        raise InputError(f"n_decoys must lie in 1..{m} (the number of SNPs), got {n_decoys}")
    if genotypes.n_samples < 2:
        raise InputError("decoys need at least 2 samples to shuffle")
    rng = np.random.default_rng([int(seed), 0xDEC0])
    chosen = np.sort(rng.choice(m, size=d, replace=False))
    base = genotypes.source
    perm = np.arange(base.n_samples, dtype=np.int64)
    sel = np.asarray(genotypes.sample_idx, dtype=np.int64)
    perm[sel] = sel[rng.permutation(len(sel))]
    src = DecoySource(base=base, decoy_of=np.asarray(genotypes.variant_idx, dtype=np.int64)[chosen], perm=perm)
    dv = genotypes.variants.iloc[chosen].copy()
    dv["snp"] = DECOY_PREFIX + dv["snp"].astype(str)
    variants = pd.concat([genotypes.variants, dv], ignore_index=True)
    variant_idx = np.concatenate([genotypes.variant_idx, base.n_variants + np.arange(d, dtype=np.int64)])
    meta = dict(genotypes.meta, n_real=m, n_decoys=d, decoy_seed=int(seed), decoy_positions=chosen)
    return replace(genotypes, source=src, variants=variants, variant_idx=variant_idx, meta=meta)


def is_decoy(snp_ids) -> np.ndarray:
    """Boolean mask of decoy SNP ids (``decoy:`` prefix)."""
    return pd.Series(snp_ids, dtype=str).str.startswith(DECOY_PREFIX).to_numpy()
