"""Synthetic biobank-sized cohorts, generated on the device (CUDA when present), for benchmarks.

:func:`gwaslift.simulate.hao` is the simulator for method studies (its structure and trait
models follow the paper, in numpy, about 15 s of CPU per 1e9 genotypes). At UK Biobank size
(400,000 x 300,000 = 1.2e11 genotypes) that is half an hour of CPU; this module draws the
same kind of data with torch on the training device and writes the packed .bed directly
(one uniform per genotype, packed on the device: only the 2-bit rows cross to the host). On
this project's 2-core CPU it made 10,000 x 20,000 in 2.4 s on one thread (1.2e-8 s per
genotype, the machine shared); its GPU time is for a session with a GPU to measure
(benchmarks/biobank_gpu.py).

Model (Balding-Nichols populations, in a normal approximation):

* ``n_populations`` populations of (nearly) equal size, in contiguous blocks of samples
  (population ``k`` holds samples ``k * n // K`` to ``(k + 1) * n // K - 1``; the .fam FID
  names it);
* ancestral A1 frequency ``p_j ~ U(0.05, 0.5)`` per SNP;
* population frequency ``f_kj = clip(p_j + sqrt(fst p_j (1 - p_j)) e_kj, 0.01, 0.99)``,
  ``e_kj ~ N(0, 1)``: the mean and variance of the Balding-Nichols Beta distribution;
* genotype: one uniform ``u`` per sample and SNP, ``x = 2`` if ``u < f^2``, ``1`` if
  ``u < 1 - (1 - f)^2``, else 0 (Hardy-Weinberg within the population); missing with
  probability ``missing`` (a second uniform, drawn only when ``missing > 0``);
* trait: ``n_causal`` SNPs chosen at random, effects ``beta ~ N(0, 1)``; the genetic value
  ``g = sum beta x`` is standardized and ``y = sqrt(h2) g + sqrt(1 - h2) eps``, ``eps ~
  N(0, 1)`` (missing calls count as 0 in g); binary traits: the upper half of ``y`` are
  cases (PLINK 2), the rest controls (1).

Random streams: one torch generator per block of :data:`RNG_BLOCK_SNPS` SNPs, seeded from
(``seed``, block index), on the device: the same seed and device type give byte-identical
files (CUDA and CPU generators draw different streams, so a CPU file differs from a GPU one).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._util import atomic_path, progress_bar
from .io.packed import bytes_per_variant
from .io.writer import PlinkWriter

#: SNPs drawn per generator (and per device block): the unit of the random streams.
RNG_BLOCK_SNPS = 1024



def pack_codes_torch(codes):
    """2-bit PLINK codes (m, n) uint8 -> .bed rows (m, ceil(n / 4)) uint8, sample 4k+r in
    bits 2r..2r+1 of byte k (padding bits 0), as :func:`gwaslift.io.packed.pack_codes`."""
    import torch

    m, n = codes.shape
    pad = (-n) % 4
    if pad:
        codes = torch.cat([codes, torch.zeros((m, pad), dtype=torch.uint8, device=codes.device)], 1)
    c = codes.view(m, -1, 4)
    return c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)


def _block_codes(n, pop_bounds, freq, missing, gen):
    """PLINK codes (b, n) uint8 and A1 dosages (b, n) uint8 of one block of SNPs.

    ``freq`` (K, b) float32 population frequencies; ``pop_bounds`` K+1 sample offsets."""
    import torch

    b = freq.shape[1]
    u = torch.rand((b, n), generator=gen, device=freq.device)
    x = torch.empty((b, n), dtype=torch.uint8, device=freq.device)
    for k in range(freq.shape[0]):
        s, e = pop_bounds[k], pop_bounds[k + 1]
        f = freq[k][:, None]
        uk = u[:, s:e]
        x[:, s:e] = (uk < 1 - (1 - f) ** 2).to(torch.uint8) + (uk < f * f).to(torch.uint8)
    codes = 3 - x - (x == 2).to(torch.uint8)  # 2 -> 0b00, 1 -> 0b10, 0 -> 0b11 (PLINK codes)
    if missing > 0:
        miss = torch.rand((b, n), generator=gen, device=freq.device) < missing
        codes[miss] = 1
        x[miss] = 0
    return codes, x


def synthetic_bed(out, n_samples: int, n_snps: int, *, n_populations: int = 3, fst: float = 0.05,
                  n_causal: int = 100, trait: str = "quantitative", h2: float = 0.5, missing: float = 0.0,
                  n_chrom: int = 22, seed: int = 0, device="auto", progress=None) -> dict:
    """Write a synthetic cohort ``out.bed/.bim/.fam`` plus ``out.pheno`` and ``out.truth.tsv``.

    Parameters follow the module docstring. Returns ``{"prefix", "seconds", "device",
    "truth" (DataFrame snp, variant_index, beta), "n_samples", "n_snps"}``. The .bed is
    written variant-major in blocks of :data:`RNG_BLOCK_SNPS` SNPs (device memory about
    ``6 n_samples`` bytes per SNP of a block); nothing appears under ``out`` unless the whole
    fileset was written.
    """
    import torch

    from .deep.train import resolve_device
    from .simulate import variant_table

    if n_samples < 1 or n_snps < 1 or not 0 <= n_causal <= n_snps:
        raise ValueError("need n_samples >= 1, n_snps >= 1 and 0 <= n_causal <= n_snps")
    if trait not in ("quantitative", "binary") or not 0 < h2 < 1 or not 0 <= missing < 1 or not 0 < fst < 1:
        raise ValueError("trait must be 'quantitative' or 'binary', 0 < h2 < 1, 0 <= missing < 1, 0 < fst < 1")
    t0 = time.perf_counter()
    dev = resolve_device(device)  # "auto": CUDA when present, else CPU
    ss = np.random.SeedSequence(int(seed))
    meta_rng, trait_rng = (np.random.default_rng(s) for s in ss.spawn(2))
    K = int(n_populations)
    bounds = [i * n_samples // K for i in range(K + 1)]
    pop = np.repeat(np.arange(K), np.diff(bounds))
    samples = pd.DataFrame({"fid": [f"pop{k}" for k in pop], "iid": [f"ind{i}" for i in range(n_samples)],
                            "father": "0", "mother": "0", "sex": 0, "trait": -9})
    variants = variant_table(n_snps, n_chrom, meta_rng)
    causal = np.sort(meta_rng.choice(n_snps, size=n_causal, replace=False))
    beta = meta_rng.normal(size=n_causal)
    g = torch.zeros(n_samples, dtype=torch.float64, device=dev)
    prefix = Path(out)
    blocks = range(0, n_snps, RNG_BLOCK_SNPS)
    with PlinkWriter(prefix, samples, variants) as w:
        for start in progress_bar(blocks, total=len(blocks), desc="synthetic .bed", progress=progress):
            stop = min(start + RNG_BLOCK_SNPS, n_snps)
            gen = torch.Generator(device=dev)
            gen.manual_seed(int(np.random.SeedSequence([int(seed), start // RNG_BLOCK_SNPS]).generate_state(1)[0]))
            p = 0.05 + 0.45 * torch.rand(stop - start, generator=gen, device=dev)
            e = torch.randn((K, stop - start), generator=gen, device=dev)
            freq = (p + torch.sqrt(fst * p * (1 - p)) * e).clamp_(0.01, 0.99)
            codes, x = _block_codes(n_samples, bounds, freq, missing, gen)
            here = causal[(causal >= start) & (causal < stop)]
            if len(here):
                b = torch.as_tensor(beta[np.searchsorted(causal, here)], dtype=torch.float64, device=dev)
                g += b @ x[torch.as_tensor(here - start, device=dev)].double()
            rows = pack_codes_torch(codes)
            assert rows.shape == (stop - start, bytes_per_variant(n_samples))
            w.write_packed(rows.cpu().numpy())
    g = g.cpu().numpy()
    g = (g - g.mean()) / g.std() if n_causal and g.std() > 0 else np.zeros(n_samples)
    y = np.sqrt(h2) * g + np.sqrt(1 - h2) * trait_rng.normal(size=n_samples)
    if trait == "binary":
        y = np.where(y > np.median(y), 2.0, 1.0)
    pheno = pd.DataFrame({"FID": samples["fid"], "IID": samples["iid"], "trait": y})
    with atomic_path(f"{prefix}.pheno") as tmp:
        pheno.to_csv(tmp, sep="\t", index=False)
    truth = pd.DataFrame({"snp": variants["snp"].to_numpy()[causal], "variant_index": causal, "beta": beta})
    with atomic_path(f"{prefix}.truth.tsv") as tmp:
        truth.to_csv(tmp, sep="\t", index=False)
    return {"prefix": prefix, "seconds": time.perf_counter() - t0, "device": str(dev), "truth": truth,
            "n_samples": n_samples, "n_snps": n_snps}
