"""gwaslift.synthetic: the device generator writes a valid .bed (plink2 reads it, the same
frequencies), draws what its model says (frequencies, Hardy-Weinberg within populations,
differentiation, missingness, a trait its causal SNPs explain), and is reproducible."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

from gwaslift import linear_gwas, read_pheno, read_plink
from gwaslift.io.packed import pack_codes
from gwaslift.synthetic import pack_codes_torch, synthetic_bed


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "s"
    # 2,500 SNPs: three random-stream blocks, the last one partial; 3 populations of 1,001 / 1,000
    res = synthetic_bed(out, 3001, 2500, n_populations=3, fst=0.05, n_causal=10, h2=0.6, missing=0.01,
                        seed=5, device="cpu", progress=False)
    return res


def test_pack_codes_torch_equals_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 4, 7, 10):
        codes = rng.integers(0, 4, size=(5, n), dtype=np.uint8)
        np.testing.assert_array_equal(pack_codes_torch(torch.as_tensor(codes)).numpy(), pack_codes(codes))


def test_plink2_reads_it_and_agrees_on_frequencies(cohort, plink2, tmp_path):
    prefix = cohort["prefix"]
    plink2("--bfile", prefix, "--freq", "--missing", "--out", tmp_path / "ref")
    afreq = pd.read_csv(tmp_path / "ref.afreq", sep="\t")
    g = read_plink(prefix)
    assert g.shape == (3001, 2500)
    x = g.read_dosage(0, g.n_variants).astype(np.float64)
    # plink2's ALT = .bim column 5 = our A1
    np.testing.assert_allclose(afreq["ALT_FREQS"].to_numpy(), np.nanmean(x, 0) / 2, atol=1e-6)
    vmiss = pd.read_csv(tmp_path / "ref.vmiss", sep="\t")
    assert vmiss["F_MISS"].mean() == pytest.approx(0.01, abs=0.001)


def test_draws_follow_the_model(cohort):
    g = read_plink(cohort["prefix"])
    x = g.read_dosage(0, g.n_variants).astype(np.float64)
    pops = g.samples["fid"].to_numpy()
    assert list(pd.unique(pops)) == ["pop0", "pop1", "pop2"]
    f = np.stack([np.nanmean(x[pops == k], 0) / 2 for k in ("pop0", "pop1", "pop2")])
    p = f.mean(0)
    # ancestral U(0.05, 0.5), spread by fst = 0.05 (sd up to 0.11) and clipped to [0.01, 0.99]
    assert 0.005 < p.min() and p.max() < 0.7 and 0.25 < p.mean() < 0.3
    # Hardy-Weinberg within each population: heterozygote share ~ 2 f (1 - f)
    for k, name in enumerate(("pop0", "pop1", "pop2")):
        het = np.nanmean(x[pops == name] == 1, 0)
        assert np.mean(het - 2 * f[k] * (1 - f[k])) == pytest.approx(0, abs=0.005)
    # differentiation: var_k(f) / (p (1 - p)) ~ fst = 0.05 (normal approximation, clipped)
    fst = np.mean(f.var(0, ddof=1)) / np.mean(p * (1 - p))
    assert 0.035 < fst < 0.065


def test_trait_is_explained_by_its_causal_snps(cohort):
    g = read_plink(cohort["prefix"])
    y = read_pheno(f"{cohort['prefix']}.pheno", g)
    ss = linear_gwas(g, y)
    truth = cohort["truth"]
    top = set(np.argsort(ss["p"].to_numpy())[:10])
    big = truth[np.abs(truth["beta"]) > 0.5]
    assert len(big) >= 4 and set(big["variant_index"]) <= top


def test_same_seed_same_files_and_binary_trait(cohort, tmp_path):
    again = synthetic_bed(tmp_path / "again", 3001, 2500, n_populations=3, fst=0.05, n_causal=10, h2=0.6,
                          missing=0.01, seed=5, device="cpu", progress=False)
    for ext in ("bed", "bim", "fam", "pheno", "truth.tsv"):
        assert _sha(f"{again['prefix']}.{ext}") == _sha(f"{cohort['prefix']}.{ext}"), ext
    other = synthetic_bed(tmp_path / "other", 3001, 2500, seed=6, device="cpu", progress=False, trait="binary")
    assert _sha(f"{other['prefix']}.bed") != _sha(f"{cohort['prefix']}.bed")
    y = pd.read_csv(f"{other['prefix']}.pheno", sep="\t")["trait"]
    assert set(y) == {1.0, 2.0} and (y == 2).sum() == 1500


def test_bad_arguments_write_nothing(tmp_path):
    with pytest.raises(ValueError):
        synthetic_bed(tmp_path / "x", 10, 5, n_causal=6, device="cpu")
    with pytest.raises(ValueError):
        synthetic_bed(tmp_path / "x", 10, 5, trait="ordinal", device="cpu")
    assert list(tmp_path.iterdir()) == []
