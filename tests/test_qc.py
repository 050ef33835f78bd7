"""QC against plink2 (--freq, --missing, --hardy, --mind/--geno/--hwe/--maf filters) and
against brute-force references (full enumeration for HWE, decoded dosages for counts)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dask.array
import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

import gwaslift
from gwaslift.io import read_plink, write_plink
from gwaslift.io.packed import unpack_codes
from gwaslift.qc import (
    allele_stats, count_packed, genotype_counts, hwe_exact, impute_mean, qc, qc_stats,
    sample_missingness,
)

# plink2 prints 6 significant digits: compare at that precision.
PRINT_RTOL = 6e-6


def _read_plink2_table(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def _subset(g, which: str):
    """Sample selections exercising the three counting paths."""
    if which == "all":
        return g
    rng = np.random.default_rng(11)
    if which == "small":  # fewer than half: gather + re-pack path, shuffled order
        return g.subset(samples=rng.permutation(g.n_samples)[:70])
    # more than half: count all, subtract the rest; shuffled order
    return g.subset(samples=rng.permutation(g.n_samples)[:150])


def _keep_file(g, path):
    g.samples[["fid", "iid"]].to_csv(path, sep="\t", header=False, index=False)
    return path


@pytest.fixture(scope="module")
def dummy(dummy_bfile):
    return read_plink(dummy_bfile, variant_chunk=32)


@pytest.mark.parametrize("which", ["all", "small", "large"])
def test_stats_equal_plink2_freq_missing_hardy(dummy, dummy_bfile, plink2, tmp_path, which):
    g = _subset(dummy, which)
    out = tmp_path / "ref"
    plink2("--bfile", dummy_bfile, "--keep", _keep_file(g, tmp_path / "keep.txt"),
           "--freq", "--missing", "--hardy", "--out", out)
    var, samp = qc_stats(g, hwe=True)

    freq = _read_plink2_table(f"{out}.afreq")
    assert (freq["ID"].to_numpy() == var["snp"].to_numpy()).all()
    assert (freq["ALT"].to_numpy() == var["a1"].to_numpy()).all()  # ALT = .bim col 5 = A1
    assert (freq["OBS_CT"].to_numpy() == 2 * var["n_obs"].to_numpy()).all()
    np.testing.assert_allclose(var["a1_freq"], freq["ALT_FREQS"], rtol=PRINT_RTOL, atol=1e-12)

    vmiss = _read_plink2_table(f"{out}.vmiss")
    assert (vmiss["MISSING_CT"].to_numpy() == var["n_missing"].to_numpy()).all()
    np.testing.assert_allclose(1 - var["call_rate"], vmiss["F_MISS"], rtol=PRINT_RTOL, atol=1e-12)

    smiss = _read_plink2_table(f"{out}.smiss").set_index("IID").loc[samp["iid"]]
    assert (smiss["MISSING_CT"].to_numpy() == samp["n_missing"].to_numpy()).all()
    assert (smiss["OBS_CT"].to_numpy() == samp["n_variants"].to_numpy()).all()
    np.testing.assert_allclose(samp["missing_frac"], smiss["F_MISS"], rtol=PRINT_RTOL, atol=1e-12)

    hardy = _read_plink2_table(f"{out}.hardy")
    # plink2's A1 here is REF (.bim col 6), i.e. our A2
    assert (hardy["HOM_A1_CT"].to_numpy() == var["n_hom_a2"].to_numpy()).all()
    assert (hardy["HET_A1_CT"].to_numpy() == var["n_het"].to_numpy()).all()
    assert (hardy["TWO_AX_CT"].to_numpy() == var["n_hom_a1"].to_numpy()).all()
    assert var["hwe_p"].min() < 1e-3  # the dummy data are far from HWE: the tails are exercised
    np.testing.assert_allclose(np.log10(var["hwe_p"]), np.log10(hardy["P"]), rtol=0, atol=3e-6)


def test_hwe_midp_equals_plink2(dummy, dummy_bfile, plink2, tmp_path):
    plink2("--bfile", dummy_bfile, "--hardy", "midp", "--out", tmp_path / "ref")
    hardy = _read_plink2_table(tmp_path / "ref.hardy")
    var = allele_stats(dummy, hwe=True, midp=True)
    np.testing.assert_allclose(np.log10(var["hwe_p"]), np.log10(hardy["MIDP"]), rtol=0, atol=3e-6)


def _brute_hwe(hom1, het, hom2, midp=False):
    """Full enumeration of the heterozygote-count distribution (independent reference)."""
    n = hom1 + het + hom2
    n_rare = min(2 * hom1 + het, 2 * hom2 + het)
    hs = np.arange(n_rare % 2, n_rare + 1, 2)
    hom_r = (n_rare - hs) // 2
    lp = hs * np.log(2) - gammaln(hom_r + 1) - gammaln(hs + 1) - gammaln(n - hs - hom_r + 1)
    prob = np.exp(lp - lp.max())
    prob /= prob.sum()
    p_obs = prob[np.flatnonzero(hs == het)[0]]
    tied = np.abs(prob - p_obs) <= 1e-7 * p_obs
    p = prob[prob <= p_obs * (1 + 1e-7)].sum()
    return p - 0.5 * prob[tied].sum() if midp else p


def test_hwe_exact_equals_full_enumeration():
    rng = np.random.default_rng(5)
    rows = [(1, 2, 1), (2, 0, 2), (0, 1, 0), (0, 0, 7), (3, 0, 0), (40, 0, 40), (0, 80, 0)]
    for _ in range(400):
        n = int(rng.integers(1, 2500))
        q, f = rng.random(), rng.uniform(-0.5, 0.9)
        probs = np.array([(1 - q) ** 2 + f * q * (1 - q), 2 * q * (1 - q) * (1 - f), q * q + f * q * (1 - q)])
        rows.append(tuple(rng.multinomial(n, probs.clip(0) / probs.clip(0).sum())))
    hom1, het, hom2 = map(np.array, zip(*rows))
    for midp in (False, True):
        ours = hwe_exact(hom1, het, hom2, midp=midp)
        ref = np.array([_brute_hwe(*r, midp=midp) for r in rows])
        ok = ref > 1e-280  # the enumeration itself underflows below that
        assert ok.sum() > 350
        np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-6, atol=0)
    assert hwe_exact([1], [2], [1])[0] == pytest.approx(1.0)  # exact tie with the mode
    # 6 people, 4 copies of the rarer allele: P(het=0, 2, 4) = 1/33, 16/33, 16/33 (a tie), so
    # mid-p = 1/33 + (16/33 + 16/33) / 2 for either tied count
    np.testing.assert_allclose(hwe_exact([3, 2], [2, 4], [1, 0], midp=True), [17 / 33] * 2, rtol=1e-9)
    np.testing.assert_allclose(hwe_exact([3, 2, 4], [2, 4, 0], [1, 0, 2]), [1, 1, 1 / 33], rtol=1e-9)
    assert np.isnan(hwe_exact([0], [0], [0])[0])
    assert hwe_exact([5], [0], [0])[0] == 1.0 and hwe_exact([5], [0], [0], midp=True)[0] == 0.5


def test_counts_equal_decoded_dosages(dummy):
    dos = dummy.dosage.compute()
    c = genotype_counts(dummy)
    for col, val in ((0, 2), (1, 1), (2, 0)):
        assert (c.variant[:, col] == (dos == val).sum(0)).all()
    assert (c.variant[:, 3] == np.isnan(dos).sum(0)).all()
    assert (c.sample_missing == np.isnan(dos).sum(1)).all()
    # impute_mean: the one rule -- NaN -> 2 * a1_freq = mean of the observed dosages
    stats = allele_stats(dummy, counts=c)
    filled = impute_mean(dos, stats["a1_freq"].to_numpy())
    assert not np.isnan(filled).any() and filled.dtype == dos.dtype
    np.testing.assert_allclose(filled.mean(0), np.nanmean(dos, 0), rtol=1e-5)
    miss = np.isnan(dos)
    np.testing.assert_allclose(filled[miss], np.broadcast_to(2 * stats["a1_freq"].to_numpy(), dos.shape)[miss], rtol=1e-6)
    assert (filled[~miss] == dos[~miss]).all()
    np.testing.assert_allclose(impute_mean(dos), filled, rtol=1e-6)
    for freq in (stats["a1_freq"].to_numpy(), None):
        lazy = impute_mean(dummy.dosage, freq)
        assert hasattr(lazy, "dask")  # stays a lazy Dask array
        np.testing.assert_allclose(lazy.compute(), filled, rtol=1e-6)
    np.testing.assert_allclose(impute_mean(dummy.dosage.rechunk((50, 40))).compute(), filled, rtol=1e-6)
    bad = np.array([[np.nan, 1.0], [np.nan, 0.0]])
    with pytest.raises(ValueError, match="no observed call"):
        impute_mean(bad)
    with pytest.raises(ValueError, match="no observed call"):
        impute_mean(dask.array.from_array(bad)).compute()


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("n_samples", [1, 3, 4, 5, 8, 9, 13, 16, 31, 32, 33, 203, 70_001])  # > 65,528: lane segments
def test_count_packed_kernel_paths(n_samples, kernel, monkeypatch):
    """All three paths (all samples, subset, gather) against a plain decode, with random
    padding bits, on the numba kernel and on the numpy path it replaces."""
    import importlib

    qc_module = importlib.import_module("gwaslift.qc")
    if kernel == "numpy":
        monkeypatch.setattr(qc_module.COUNT_KERNEL, "_fn", False)  # the numpy path
    else:
        assert qc_module.COUNT_KERNEL.get() is not None  # numba is a dependency: it must load
    rng = np.random.default_rng(n_samples)
    packed = rng.integers(0, 256, size=(40, (n_samples + 3) // 4), dtype=np.uint8)
    # rows of all het / all hom A2 / all missing (lane overflow if 70,001 were summed at once)
    packed[0], packed[1], packed[2] = 0xAA, 0xFF, 0x55
    packed[3:, 0] = 0x55  # first samples missing in 38 rows (> 15: crosses nibble groups)
    codes = unpack_codes(packed, n_samples)

    def ref(cd):
        return np.stack([(cd == k).sum(1) for k in (0, 2, 3, 1)], 1), (cd == 1).sum(0)

    for idx in (None, rng.permutation(n_samples)[: max(1, n_samples // 3)],
                rng.permutation(n_samples)[: max(1, (3 * n_samples) // 4)],
                np.array([0, 0, n_samples - 1])):  # repeats go through the gather path
        cd = codes if idx is None else codes[:, idx]
        counts, samp = count_packed(packed, n_samples, idx)
        want_c, want_s = ref(cd)
        np.testing.assert_array_equal(counts, want_c)
        np.testing.assert_array_equal(samp, want_s)
    # an odd row stride (non-contiguous, unaligned rows) gives the same answer
    wide = np.zeros((40, packed.shape[1] + 1), dtype=np.uint8)
    wide[:, 1:] = packed
    np.testing.assert_array_equal(count_packed(wide[:, 1:], n_samples)[0], ref(codes)[0])


@pytest.mark.parametrize("n_samples", [37, 1000])
def test_count_kernel_per_sample_counters_do_not_overflow(n_samples):
    """The kernel sums per-sample missing calls in 4-bit counters over 15 rows and 8-bit
    counters over 255: a sample missing in all 700 rows (and one in every other row, one in
    every 16th) must still count exactly, across every counter boundary."""
    from gwaslift.qc import COUNT_KERNEL

    kernel = COUNT_KERNEL.get()
    assert kernel is not None
    rng = np.random.default_rng(n_samples)
    packed = rng.integers(0, 256, size=(700, (n_samples + 3) // 4), dtype=np.uint8)
    packed[:, 0] = (packed[:, 0] & 0xFC) | 0b01        # sample 0 missing everywhere
    packed[::2, 0] = (packed[::2, 0] & 0xF3) | 0b0100  # sample 1 in every other row
    packed[::16, -1] = 0x55                            # the last byte's samples every 16th row
    codes = unpack_codes(packed, n_samples)
    var3 = np.zeros((700, 3), dtype=np.int64)
    samp = np.zeros(n_samples, dtype=np.int64)
    every = np.full((n_samples + 31) // 32, np.uint64(0xFFFFFFFFFFFFFFFF))
    for lo, hi in ((0, 300), (300, 700)):  # counts add up over calls
        kernel(packed[lo:hi], n_samples, var3[lo:hi], samp, every)
    np.testing.assert_array_equal(samp, (codes == 1).sum(0))
    assert samp[0] == 700 and samp[1] >= 350
    np.testing.assert_array_equal(var3, np.stack([(codes == k).sum(1) for k in (2, 3, 1)], 1))


def test_count_kernel_that_cannot_load_falls_back_to_numpy(dummy, monkeypatch):
    """numba missing or without a writable cache: a warning says so, same counts."""
    import importlib

    qc_module = importlib.import_module("gwaslift.qc")
    fast = qc_stats(dummy)

    def broken():
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(qc_module, "_import_kernels", broken)
    monkeypatch.setattr(qc_module.COUNT_KERNEL, "_fn", None)  # not tried yet
    with pytest.warns(RuntimeWarning, match="numba CPU kernels are unavailable.*numpy"):
        slow = qc_stats(dummy)
    for a, b in zip(fast, slow):
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("pad", [0b11, 0b01])
def test_nonzero_padding_bits_are_ignored(dummy_bfile, plink2, tmp_path, pad):
    """203 samples: the last byte of each row has one padding slot; fill it with hom-A2 (11)
    or missing (01) codes. Counts must equal plink2's on the original, zero-padded file
    (plink2 itself does not ignore such bits, so it is run on the clean file)."""
    g0 = read_plink(dummy_bfile)
    assert g0.source.n_samples % 4 == 3
    prefix = tmp_path / "padded"
    for ext in ("bim", "fam"):
        shutil.copy(f"{dummy_bfile}.{ext}", f"{prefix}.{ext}")
    raw = np.fromfile(f"{dummy_bfile}.bed", dtype=np.uint8)
    rows = raw[3:].reshape(g0.n_variants, -1).copy()
    assert (rows[:, -1] >> 6 == 0).all()  # plink2 wrote zero padding
    rows[:, -1] |= np.uint8(pad << 6)
    np.concatenate([raw[:3], rows.ravel()]).tofile(f"{prefix}.bed")

    g = read_plink(prefix, variant_chunk=7)
    c = genotype_counts(g)
    plink2("--bfile", dummy_bfile, "--freq", "--missing", "--out", tmp_path / "ref")
    vmiss = _read_plink2_table(tmp_path / "ref.vmiss")
    assert (vmiss["MISSING_CT"].to_numpy() == c.variant[:, 3]).all()
    smiss = _read_plink2_table(tmp_path / "ref.smiss")
    assert (smiss["MISSING_CT"].to_numpy() == c.sample_missing).all()
    freq = _read_plink2_table(tmp_path / "ref.afreq")
    assert (freq["OBS_CT"].to_numpy() == 2 * c.variant[:, :3].sum(1)).all()
    np.testing.assert_allclose(allele_stats(g, counts=c)["a1_freq"], freq["ALT_FREQS"], rtol=PRINT_RTOL)
    # a subset that includes the last sample reads its code, not the padding
    sub = g.subset(samples=[g.n_samples - 1, 0])
    sub0 = g0.subset(samples=[g0.n_samples - 1, 0])
    np.testing.assert_array_equal(genotype_counts(sub).variant, genotype_counts(sub0).variant)


def test_results_do_not_depend_on_chunks(dummy):
    sub = dummy.subset(samples=np.arange(0, dummy.n_samples, 2))
    ref = [genotype_counts(x.with_chunks(1000)) for x in (dummy, sub)]
    ref_qc = qc(dummy.with_chunks(1000), maf=0.05, geno=0.06, mind=0.06, hwe=1e-3)
    for chunk in (1, 7):
        for x, r in zip((dummy, sub), ref):
            c = genotype_counts(x.with_chunks(chunk))
            np.testing.assert_array_equal(c.variant, r.variant)
            np.testing.assert_array_equal(c.sample_missing, r.sample_missing)
        g, report = qc(dummy.with_chunks(chunk), maf=0.05, geno=0.06, mind=0.06, hwe=1e-3)
        np.testing.assert_array_equal(g.variant_idx, ref_qc[0].variant_idx)
        np.testing.assert_array_equal(g.sample_idx, ref_qc[0].sample_idx)
        pd.testing.assert_frame_equal(report, ref_qc[1])


def _plink2_filter_flags(maf, geno, mind, hwe):
    flags = []
    for name, val in (("--mind", mind), ("--geno", geno), ("--hwe", hwe), ("--maf", maf)):
        if val is not None:
            flags += [name, repr(val)]
    if maf is None:
        flags += ["--mac", "1"]  # our monomorphic rule
    return flags


@pytest.mark.parametrize("maf,geno,mind,hwe", [
    (0.3, 0.07, 0.06, 0.05),
    (0.05, 0.05, None, 1e-4),
    (None, None, 0.055, None),
    (0.2, None, None, 0.01),
])
def test_filters_equal_plink2(dummy, dummy_bfile, plink2, tmp_path, maf, geno, mind, hwe):
    out = tmp_path / "filtered"
    res = plink2("--bfile", dummy_bfile, *_plink2_filter_flags(maf, geno, mind, hwe),
                 "--make-bed", "--out", out)
    log = res.stdout
    g, report = qc(dummy, maf=maf, geno=geno, mind=mind, hwe=hwe)
    ref = read_plink(out)
    assert g.samples["iid"].tolist() == ref.samples["iid"].tolist()
    assert g.variants["snp"].tolist() == ref.variants["snp"].tolist()
    assert g.n_samples < dummy.n_samples or g.n_variants < dummy.n_variants  # something went
    # the reasons follow plink2's order and counts (its log lines)
    reasons = report["reason"].value_counts()
    if mind is not None:
        n = int(re.search(r"(\d+) samples? removed due to missing genotype data \(--mind\)", log).group(1))
        assert reasons.get("mind", 0) == n
    if geno is not None:
        n = int(re.search(r"--geno: (\d+) variants? removed", log).group(1))
        assert reasons.get("geno", 0) == n
    if hwe is not None:
        n = int(re.search(r"--hwe: (\d+) variants? removed", log).group(1))
        assert reasons.get("hwe", 0) == n
    if maf is not None:
        n = int(re.search(r"(\d+) variants? removed due to allele frequency", log).group(1))
        assert reasons.get("maf", 0) + reasons.get("monomorphic", 0) == n
    # the filtered data stay lazy and are exactly the kept rows/columns
    assert hasattr(g.dosage, "dask") and hasattr(g.packed, "dask")
    np.testing.assert_array_equal(g.dosage.compute(), ref.dosage.compute())
    assert g.meta["qc"]["n_samples_removed"] == dummy.n_samples - g.n_samples
    removed = report.query("kind == 'variant'")
    assert set(removed["id"]) == set(dummy.variants["snp"]) - set(g.variants["snp"])


def test_hwe_midp_filter_equals_plink2(dummy, dummy_bfile, plink2, tmp_path):
    plink2("--bfile", dummy_bfile, "--hwe", "0.01", "midp", "--maf", "0.01",
           "--make-bed", "--out", tmp_path / "f")
    g, _ = qc(dummy, maf=0.01, geno=None, mind=None, hwe=0.01, midp=True)
    assert g.variants["snp"].tolist() == read_plink(tmp_path / "f").variants["snp"].tolist()


def _write_small(prefix, dosage):
    n, m = dosage.shape
    samples = pd.DataFrame({"fid": "f", "iid": [f"s{i}" for i in range(n)], "father": "0",
                            "mother": "0", "sex": 0, "trait": np.nan})
    variants = pd.DataFrame({"chrom": "1", "snp": [f"v{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(1, m + 1), "a1": "A", "a2": "G"})
    write_plink(prefix, dosage, samples, variants)
    return read_plink(prefix)


def test_monomorphic_dropped_and_report(tmp_path, plink2):
    nan = np.nan
    dosage = np.array([
        # all A1 | all A2 (+missing) | all missing | polymorphic | one het
        [2, 0, nan, 0, 2],
        [2, nan, nan, 1, 2],
        [2, 0, nan, 2, 1],
        [nan, 0, nan, 2, 2],
        [2, 0, nan, 1, 2],
    ], dtype=float)
    g = _write_small(tmp_path / "mono", dosage)
    kept, report = qc(g, maf=None, geno=None, mind=None, hwe=None)
    assert kept.variants["snp"].tolist() == ["v3", "v4"]
    assert report["reason"].tolist() == ["monomorphic"] * 3
    assert report["id"].tolist() == ["v0", "v1", "v2"]
    assert list(report.columns) == ["kind", "index", "fid", "id", "reason", "value", "threshold"]
    np.testing.assert_array_equal(report["value"].to_numpy(), [1.0, 0.0, nan])
    plink2("--bfile", tmp_path / "mono", "--mac", "1", "--make-bed", "--out", tmp_path / "ref")
    assert read_plink(tmp_path / "ref").variants["snp"].tolist() == ["v3", "v4"]
    # with a geno filter the all-missing variant is reported under geno (applied first)
    _, rep2 = qc(g, maf=None, geno=0.5, mind=None, hwe=None)
    assert rep2.set_index("id").loc["v2", "reason"] == "geno"
    # sample table and its ID columns
    sm = sample_missingness(g)
    assert sm["n_missing"].tolist() == [1, 2, 1, 2, 1]
    assert list(sm.columns) == ["fid", "iid", "n_missing", "n_variants", "missing_frac", "call_rate"]


def test_thresholds_at_equality_match_plink2(tmp_path, plink2):
    """Fractions exactly at a threshold are kept, one call beyond is removed, as plink2 does."""
    n, m = 100, 50
    d = np.zeros((n, m))
    d[:30, :] = 1                             # polymorphic background
    d[:3, 0] = np.nan                         # 3/100 missing = geno 0.03 -> kept
    d[:4, 1] = np.nan                         # 4/100 -> removed
    d[:, 2], d[:10, 2] = 0, 1                 # minor count 10/200 = maf 0.05 -> kept
    d[:, 3], d[:9, 3] = 0, 1                  # 9/200 -> removed
    d[50, 10] = np.nan                        # sample 50: 1/50 missing = mind 0.02 -> kept
    d[51, 10:12] = np.nan                     # sample 51: 2/50 -> removed
    g = _write_small(tmp_path / "edge", d)
    for flag, kw in (("--geno", {"geno": 0.03}), ("--maf", {"maf": 0.05}), ("--mind", {"mind": 0.02})):
        args = {"maf": None, "geno": None, "mind": None, "hwe": None, **kw}
        kept, _ = qc(g, **args)
        out = tmp_path / flag.strip("-")
        plink2("--bfile", tmp_path / "edge", flag, repr(next(iter(kw.values()))), "--mac", "1",
               "--write-snplist", "--write-samples", "--out", out)
        assert kept.variants["snp"].tolist() == Path(f"{out}.snplist").read_text().split()
        ref_samples = pd.read_csv(f"{out}.id", sep="\t")["IID"].tolist()
        assert kept.samples["iid"].tolist() == ref_samples
    assert "v0" in qc(g, maf=None, geno=0.03, mind=None)[0].variants["snp"].tolist()
    assert "s50" in qc(g, maf=None, geno=None, mind=0.02)[0].samples["iid"].tolist()


def test_qc_validates_and_exported(dummy):
    # ``gwaslift.qc`` is the function even after ``gwaslift.qc`` the module was imported
    assert gwaslift.qc is qc
    g1, r1 = gwaslift.qc(dummy, maf=0.2, geno=0.07, mind=0.06)
    g2, r2 = qc(dummy, maf=0.2, geno=0.07, mind=0.06)
    np.testing.assert_array_equal(g1.sample_idx, g2.sample_idx)
    np.testing.assert_array_equal(g1.variant_idx, g2.variant_idx)
    pd.testing.assert_frame_equal(r1, r2)
    for bad in ({"maf": 0.7}, {"geno": -0.1}, {"mind": "x"}, {"hwe": 2}):
        with pytest.raises(ValueError):
            qc(dummy, **bad)
    with pytest.raises(TypeError):
        qc(np.zeros((3, 3)))
    g, report = qc(dummy, maf=None, geno=None, mind=None, hwe=None)
    assert g.shape == dummy.shape and report.empty  # nothing monomorphic in the dummy data


def test_runs_on_distributed_client(dummy):
    import distributed

    ref = genotype_counts(dummy)
    sub = dummy.subset(samples=np.arange(50))
    ref_sub = genotype_counts(sub)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:
        assert distributed.default_client() is client
        c = genotype_counts(dummy)
        c_sub = genotype_counts(sub)
    np.testing.assert_array_equal(c.variant, ref.variant)
    np.testing.assert_array_equal(c.sample_missing, ref.sample_missing)
    np.testing.assert_array_equal(c_sub.variant, ref_sub.variant)


def test_hwe_in_blocks_is_bitwise_one_block(dummy, dummy_bfile, plink2, tmp_path, monkeypatch):
    """hwe_exact in blocks of 7 variants gives bitwise the one-block p-values (the dummy
    fileset's counts plus random ones, monomorphic and empty variants among them, both
    p-value kinds), and still equals plink2 --hardy."""
    import importlib

    qc_module = importlib.import_module("gwaslift.qc")
    var = allele_stats(dummy)
    rng = np.random.default_rng(9)
    n = rng.integers(1, 2500, 400)
    q, f = rng.random(400), rng.uniform(-0.5, 0.9, 400)
    probs = np.stack([(1 - q) ** 2 + f * q * (1 - q), 2 * q * (1 - q) * (1 - f), q * q + f * q * (1 - q)], 1).clip(0)
    rand = rng.multinomial(n, probs / probs.sum(1, keepdims=True))
    rand[:3] = [[0, 0, 0], [9, 0, 0], [0, 0, 4]]
    counts = np.vstack([var[["n_hom_a1", "n_het", "n_hom_a2"]].to_numpy(), rand])
    for midp in (False, True):
        monkeypatch.setattr(qc_module, "HWE_BLOCK_VARIANTS", len(counts))
        one = hwe_exact(*counts.T, midp=midp)
        monkeypatch.setattr(qc_module, "HWE_BLOCK_VARIANTS", 7)
        blocked = hwe_exact(*counts.T, midp=midp)
        assert np.array_equal(one, blocked, equal_nan=True)
        assert np.isnan(one).sum() == 1 and (one < 1e-3).any()
    # block size 7 is still in force: the filter path agrees with plink2
    plink2("--bfile", dummy_bfile, "--hardy", "--out", tmp_path / "ref")
    hardy = _read_plink2_table(tmp_path / "ref.hardy")
    p = allele_stats(dummy, hwe=True)["hwe_p"]
    np.testing.assert_allclose(np.log10(p), np.log10(hardy["P"]), rtol=0, atol=3e-6)


# ----------------------------------------------------------------------------- sex chromosomes

def _sexchrom_data(seed=4):
    """A realistic layout: males hemizygous on X and Y (a few het calls, as arrays report
    them), females without Y calls but a few, unknown-sex samples, MT haploid, PAR diploid;
    per-sample missing rates spread around the --mind thresholds; chromosome codes in
    plink's several spellings (X/23, chrY, 26 = MT, 25 = XY)."""
    rng = np.random.default_rng(seed)
    sex = np.repeat([1, 2, 0], [100, 110, 30])
    n = len(sex)
    male = sex == 1
    kinds = np.repeat(["1", "X", "Y", "MT", "XY"], [300, 120, 30, 20, 20])
    codes = np.where(kinds == "X", np.where(np.arange(len(kinds)) % 2, "X", "23"), kinds)
    codes = np.where(kinds == "Y", "chrY", np.where(kinds == "MT", "26", np.where(kinds == "XY", "25", codes)))
    m = len(kinds)
    p = rng.uniform(0.03, 0.5, m)
    g = rng.binomial(2, p, size=(n, m)).astype(float)
    hap = np.isin(kinds, ["X", "Y"])
    g[np.ix_(male, hap)] = 2.0 * rng.binomial(1, p[hap], size=(male.sum(), hap.sum()))
    mt = kinds == "MT"
    g[:, mt] = 2.0 * rng.binomial(1, p[mt], size=(n, mt.sum()))
    het = rng.random((n, m)) < 0.01  # het calls on haploid chromosomes
    g[het & (np.isin(kinds, ["X", "Y"]) & male[:, None] | mt)] = 1.0
    # females: no Y calls, but five of them
    fy = (sex == 2)[:, None] & (kinds == "Y")
    fy[np.flatnonzero(sex == 2)[:5]] = False
    g[fy] = np.nan
    # too few female hets on some X variants (fails HWE), an excess on others
    x = np.flatnonzero(kinds == "X")
    fem = np.flatnonzero(sex == 2)
    g[np.ix_(fem, x[:6])] = 2.0 * rng.binomial(1, 0.5, size=(len(fem), 6))
    g[np.ix_(fem[:80], x[6:10])] = 1.0
    g[rng.random((n, m)) < rng.uniform(0, 0.06, n)[:, None]] = np.nan
    samples = pd.DataFrame({"fid": "f", "iid": [f"s{i}" for i in range(n)], "father": "0",
                            "mother": "0", "sex": sex, "trait": np.nan})
    variants = pd.DataFrame({"chrom": codes, "snp": [f"v{j}" for j in range(m)], "cm": 0.0,
                             "pos": np.arange(1, m + 1), "a1": "A", "a2": "G"})
    return g, samples, variants, kinds


@pytest.fixture(scope="module")
def sexchrom(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("sexchrom") / "sx"
    g, samples, variants, kinds = _sexchrom_data()
    write_plink(prefix, g, samples, variants)
    return prefix, kinds


def test_chrom_class_reads_plink_codes():
    from gwaslift.qc import CHROM_DIPLOID as D, CHROM_MT, CHROM_X, CHROM_Y, chrom_class

    codes = ["1", "22", "X", "23", "chrX", "x", "Y", "24", "chrY", "XY", "25", "MT", "M", "26",
             "chrM", "023", "chr1", "0", "Un_gl000220"]
    want = [D, D, CHROM_X, CHROM_X, CHROM_X, CHROM_X, CHROM_Y, CHROM_Y, CHROM_Y, D, D,
            CHROM_MT, CHROM_MT, CHROM_MT, CHROM_MT, CHROM_X, D, D, D]
    assert chrom_class(codes).tolist() == want


def test_sex_chrom_stats_equal_plink2(sexchrom, plink2, tmp_path):
    prefix, kinds = sexchrom
    g = read_plink(prefix, variant_chunk=64)
    plink2("--bfile", prefix, "--freq", "counts", "--missing", "--hardy", "--out", tmp_path / "ref")
    plink2("--bfile", prefix, "--hardy", "midp", "--out", tmp_path / "mid")
    var, samp = qc_stats(g, hwe=True)
    fr = _read_plink2_table(tmp_path / "ref.acount")
    # X: a male counts one allele (a male het half an A1); Y: males only; MT: haploid
    np.testing.assert_allclose(var["a1_freq"], fr["ALT_CTS"] / fr["OBS_CT"], rtol=1e-12)
    vm = _read_plink2_table(tmp_path / "ref.vmiss")
    np.testing.assert_array_equal(var["n_missing"], vm["MISSING_CT"])
    np.testing.assert_array_equal(var["n_obs"], vm["OBS_CT"] - vm["MISSING_CT"])  # Y: males
    sm = _read_plink2_table(tmp_path / "ref.smiss")
    np.testing.assert_array_equal(samp["n_missing"], sm["MISSING_CT"])  # no Y for non-males
    np.testing.assert_array_equal(samp["n_variants"], sm["OBS_CT"])
    np.testing.assert_allclose(samp["missing_frac"], sm["F_MISS"], rtol=PRINT_RTOL)
    # HWE: the Graffelman-Weir test on X, none on Y / MT, the usual one elsewhere (PAR too)
    hx = _read_plink2_table(tmp_path / "ref.hardy.x")
    is_x = kinds == "X"
    np.testing.assert_allclose(var["hwe_p"][is_x], hx["P"], rtol=PRINT_RTOL, atol=1e-300)
    assert var["hwe_p"][is_x].min() < 1e-10  # the departures are there
    ha = _read_plink2_table(tmp_path / "ref.hardy")
    np.testing.assert_allclose(var.set_index("snp").loc[ha["ID"], "hwe_p"], ha["P"], rtol=PRINT_RTOL)
    assert var["hwe_p"][np.isin(kinds, ["Y", "MT"])].isna().all()
    var_mid, _ = qc_stats(g, hwe=True, midp=True)
    hxm = _read_plink2_table(tmp_path / "mid.hardy.x")
    np.testing.assert_allclose(var_mid["hwe_p"][is_x], hxm["MIDP"], rtol=PRINT_RTOL, atol=1e-300)


@pytest.mark.parametrize("maf,geno,mind,hwe,midp", [
    (0.01, 0.01, 0.02, None, False),   # the defaults
    (0.01, 0.05, 0.02, 1e-6, False),
    (0.2, 0.03, 0.04, 0.01, False),
    (None, 0.02, 0.05, 1e-3, True),
])
def test_sex_chrom_filters_equal_plink2(sexchrom, plink2, tmp_path, maf, geno, mind, hwe, midp):
    prefix, kinds = sexchrom
    g = read_plink(prefix, variant_chunk=64)
    flags = _plink2_filter_flags(maf, geno, mind, hwe)
    if midp:
        flags.insert(flags.index("--hwe") + 2, "midp")
    plink2("--bfile", prefix, *flags, "--make-bed", "--out", tmp_path / "f")
    out, report = qc(g, maf=maf, geno=geno, mind=mind, hwe=hwe, midp=midp)
    ref = read_plink(tmp_path / "f")
    assert out.samples["iid"].tolist() == ref.samples["iid"].tolist()
    assert out.variants["snp"].tolist() == ref.variants["snp"].tolist()
    # females survive --mind despite having no Y, and X / Y variants survive --hwe
    assert (out.samples["sex"] == 2).sum() > 0.5 * (out.samples["sex"] == 1).sum()
    kept = set(out.variants["snp"])
    for k in ("X", "Y", "MT"):
        assert any(f"v{j}" in kept for j in np.flatnonzero(kinds == k))


def test_hwe_exact_x_equals_full_enumeration():
    from gwaslift.qc import hwe_exact_x

    def brute(fa, fh, fb, ma, mb, midp):
        nf, nm = fa + fh + fb, ma + mb
        n_a1, n_all = 2 * fa + fh + ma, 2 * (fa + fh + fb) + ma + mb

        def lp(k, h):
            f1 = n_a1 - k
            aa, bb = (f1 - h) // 2, nf - (f1 - h) // 2 - h
            return (gammaln(n_a1 + 1) + gammaln(n_all - n_a1 + 1) - gammaln(n_all + 1)
                    + gammaln(nm + 1) - gammaln(k + 1) - gammaln(nm - k + 1) + gammaln(nf + 1)
                    + h * np.log(2) - gammaln(aa + 1) - gammaln(h + 1) - gammaln(bb + 1))

        obs = lp(ma, fh)
        cells = np.array([lp(k, h) for k in range(nm + 1) if 0 <= n_a1 - k <= 2 * nf
                          for h in range((n_a1 - k) % 2, min(n_a1 - k, 2 * nf - n_a1 + k) + 1, 2)])
        p = np.exp(cells[cells <= obs + 1e-7]).sum()
        # plink2's chrX mid-p: ties halved in the other rows, only the observed table in its own
        ties = [np.exp(lp(k, h)) for k in range(nm + 1) if k != ma and 0 <= n_a1 - k <= 2 * nf
                for h in range((n_a1 - k) % 2, min(n_a1 - k, 2 * nf - n_a1 + k) + 1, 2)
                if abs(lp(k, h) - obs) <= 1e-7]
        return p - 0.5 * (np.exp(obs) + sum(ties)) if midp else p

    rng = np.random.default_rng(3)
    cases = [(0, 5, 0, 0, 0), (3, 0, 4, 6, 1), (10, 0, 10, 0, 0), (2, 11, 1, 9, 5), (0, 0, 0, 4, 3)]
    for _ in range(25):
        f = rng.multinomial(int(rng.integers(1, 30)), rng.dirichlet([1, 1, 1]))
        m1 = int(rng.integers(0, 25))
        cases.append((*f, m1, int(rng.integers(0, 25))))
    for c in cases:
        for midp in (False, True):
            got = hwe_exact_x(*[[v] for v in c], midp=midp)[0]
            np.testing.assert_allclose(got, brute(*c, midp), rtol=1e-10, err_msg=str(c))
    # nothing observed -> NaN; monomorphic -> 1 (mid-p 0.5)
    assert np.isnan(hwe_exact_x([0], [0], [0], [0], [0])[0])
    assert hwe_exact_x([4], [0], [0], [3], [0])[0] == 1.0
    assert hwe_exact_x([4], [0], [0], [3], [0], midp=True)[0] == 0.5


def test_stat_tables_do_not_share_memory_with_their_inputs(dummy):
    """allele_stats builds its table without copying into 2-D blocks (copy=False), from its
    own copies: editing the table changes neither the fileset's .bim table nor the counts."""
    from gwaslift.qc import genotype_counts

    counts = genotype_counts(dummy)
    before_counts = counts.variant.copy()
    before_bim = dummy.variants.copy()
    table = allele_stats(dummy, counts=counts)
    for col in ("chrom", "pos", "snp", "a1", "a2", "n_missing", "n_hom_a1", "n_het", "n_hom_a2"):
        table.loc[0, col] = table.loc[1, col]
        raw = table[col].to_numpy()
        if raw.flags.writeable:  # a raw write, where pandas allows it (not under copy-on-write)
            raw[2] = raw[3]
    np.testing.assert_array_equal(counts.variant, before_counts)
    pd.testing.assert_frame_equal(dummy.variants, before_bim)


def test_local_runs_do_not_import_distributed(dummy_bfile):
    """dask's scheduler lookup imports dask.distributed (0.2-0.3 s) only to ask for a Client;
    gwaslift's own lookup skips that when none can exist, in a fresh process, and still
    follows a scheduler set in dask's config."""
    import subprocess
    import sys

    code = (
        "import sys, dask, gwaslift\n"
        "from gwaslift._util import dask_scheduler\n"
        "from gwaslift.qc import qc_stats\n"
        f"g = gwaslift.read_plink({str(dummy_bfile)!r})\n"
        "qc_stats(g); import numpy as np; gwaslift.linear_gwas(g, np.random.default_rng(0).normal(size=g.n_samples))\n"
        "assert 'distributed' not in sys.modules, 'distributed was imported'\n"
        "import dask.threaded, dask.local\n"
        "assert dask_scheduler() is dask.threaded.get\n"
        "with dask.config.set(scheduler='synchronous'):\n"
        "    assert dask_scheduler() is dask.local.get_sync\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_qc_from_given_counts_and_the_cli_counts_once(dummy, dummy_bfile, tmp_path, monkeypatch):
    """qc(counts=...) equals qc() (mind removing samples included), rejects counts of other
    genotypes; `gwaslift qc` writes its filters and its variant table from ONE counting pass."""
    import importlib

    from gwaslift.cli import main
    from gwaslift.qc import genotype_counts

    qc_module = importlib.import_module("gwaslift.qc")
    counts = genotype_counts(dummy)
    for kw in (dict(maf=0.05, geno=0.06, mind=0.06), dict(maf=None, geno=None, mind=0.04, hwe=1e-3)):
        a, ra = qc(dummy, **kw)
        b, rb = qc(dummy, counts=counts, **kw)
        assert a.n_samples == b.n_samples and list(a.variants.snp) == list(b.variants.snp)
        pd.testing.assert_frame_equal(ra, rb)
    assert qc(dummy, mind=0.04)[0].n_samples < dummy.n_samples  # a case that recounts
    with pytest.raises(ValueError, match="counts are for"):
        qc(dummy.subset(variants=np.arange(10)), counts=counts)
    passes = []
    monkeypatch.setattr(qc_module, "genotype_counts",
                        lambda g, **kw: passes.append(g.shape) or genotype_counts(g, **kw))
    assert main(["qc", "--bfile", str(dummy_bfile), "--out", str(tmp_path / "q"), "--geno", "0.06",
                 "--no-progress"]) == 0
    assert passes == [dummy.shape]
    vstats = pd.read_csv(tmp_path / "q.vstats.tsv", sep="\t")
    np.testing.assert_array_equal(vstats["n_missing"], counts.variant[:, 3])
