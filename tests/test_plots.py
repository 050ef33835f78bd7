"""Manhattan, QQ and Miami plots: what is drawn, where, and that it is fast enough to run."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from scipy.stats import chi2  # noqa: E402

from gwaslift import InputError, plots  # noqa: E402

CHROMS = ["1", "2", "10", "X", "MT", "Y", "22", "3"]  # deliberately not in natural order


def make_tables(m_per_chrom=300, seed=0, chroms=CHROMS):
    """Sumstats and scores with one shared peak (chr 2), a GWAS-only peak (chr 10) and a
    score-only peak (chr 22); uniform null elsewhere."""
    rng = np.random.default_rng(seed)
    parts = []
    for c in chroms:
        parts.append(pd.DataFrame({"chrom": c, "pos": np.sort(rng.choice(50_000_000, m_per_chrom, replace=False)) + 1}))
    ss = pd.concat(parts, ignore_index=True)
    ss = ss.sample(frac=1, random_state=seed).reset_index(drop=True)  # row order must not matter
    ss["snp"] = [f"rs{i}" for i in range(len(ss))]
    ss["a1"], ss["a2"] = "A", "G"
    p = rng.uniform(size=len(ss))
    score = np.abs(rng.normal(0, 0.01, len(ss)))
    on = {c: np.flatnonzero(ss.chrom.to_numpy() == c) for c in chroms}
    g_shared = on["2"][np.argsort(ss.pos.to_numpy()[on["2"]])[150]]
    g_only = on["10"][10]
    s_only = on["22"][20]
    p[g_shared], p[g_only] = 1e-30, 1e-12
    score[g_shared], score[s_only] = 0.9, 0.6
    # a neighbour of the shared peak, 50 kb away, carries the top score there
    near = on["2"][np.argsort(np.abs(ss.pos.to_numpy()[on["2"]] - (ss.pos[g_shared] + 50_000)))[0]]
    ss.loc[near, "pos"] = ss.pos[g_shared] + 50_000
    score[near] = 1.0
    ss["p"] = p
    ss["log10_p"] = -np.log10(p)
    scores = ss[["chrom", "pos", "snp", "a1", "a2"]].assign(deeplift_mean_abs=score)
    info = dict(g_shared=ss.snp[g_shared], g_only=ss.snp[g_only], s_top=ss.snp[near], s_only=ss.snp[s_only])
    return ss, scores, info


def _points(ax, gid=None):
    cols = [c for c in ax.collections if isinstance(c, PathCollection) and (gid is None or c.get_gid() == gid)]
    return np.concatenate([c.get_offsets() for c in cols]) if cols else np.zeros((0, 2))


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


# ---------------------------------------------------------------------------------- layout


def test_genome_layout_orders_chromosomes_naturally():
    ss, _, _ = make_tables()
    x, layout = plots.genome_layout(ss.chrom, ss.pos)
    assert list(layout.chrom) == ["1", "2", "3", "10", "22", "X", "Y", "MT"]
    order = layout.chrom.tolist()
    # every SNP of chromosome k+1 lies right of every SNP of chromosome k
    for a, b in zip(order, order[1:]):
        assert x[ss.chrom == a].max() < x[ss.chrom == b].min()
    # within a chromosome x is the position plus one offset
    for c in order:
        d = x[ss.chrom == c] - ss.pos[ss.chrom == c]
        assert np.ptp(d) == 0
    assert plots.chrom_sort_key("chr2") < plots.chrom_sort_key("10") < plots.chrom_sort_key("chrX")


def test_lambda_gc_matches_definition():
    rng = np.random.default_rng(4)
    for n in (1001, 1000):  # odd and even: the median of two middle values
        p = rng.uniform(size=n) ** 1.3  # inflated
        expected = np.median(chi2.isf(p, 1)) / 0.4549364
        assert plots._lambda_gc(p) == pytest.approx(expected, rel=1e-6)
        assert plots._lambda_gc(p) > 1.1
    assert plots._lambda_gc(np.r_[rng.uniform(size=99_999), np.nan]) == pytest.approx(1.0, abs=0.03)


def test_lead_snps_one_per_locus():
    chrom = np.array(["1"] * 5 + ["2"] * 2)
    pos = np.array([100, 200_000, 260_000, 600_000, 5_000_000, 100, 400_000])
    val = np.array([9.0, 8.0, 7.5, 7.0, 1.0, 8.5, np.nan])
    lead = plots.lead_snps(chrom, pos, val, 10, window=250_000)
    # 200 kb from the top SNP is the same locus; 260 kb away is not
    assert lead.tolist() == [0, 5, 2, 3, 4]


# ---------------------------------------------------------------------------------- manhattan


def test_manhattan_draws_one_point_per_snp_with_a_p_value(ax):
    ss, _, info = make_tables()
    ss.loc[[3, 17, 40], "p"] = np.nan
    ss.loc[[3, 17, 40], "log10_p"] = np.nan
    out = plots.manhattan(ss, ax=ax, label_top=2, highlight=[info["g_only"]])
    assert out is ax
    pts = _points(ax, "manhattan-points")
    assert len(pts) == len(ss) - 3
    # the drawn heights are -log10 p, at the layout's x
    x, _ = plots.genome_layout(ss.chrom, ss.pos)
    drawn = pd.DataFrame(pts, columns=["x", "y"]).sort_values("x").to_numpy()
    keep = ss.p.notna().to_numpy()
    ref = np.c_[x[keep], -np.log10(ss.p[keep])]
    np.testing.assert_allclose(drawn, ref[np.argsort(ref[:, 0])], rtol=1e-12)
    # lines at 5e-8 and 1e-5
    lines = {ln.get_gid(): ln.get_ydata()[0] for ln in ax.get_lines()}
    assert lines["genome-wide"] == pytest.approx(-math.log10(5e-8))
    assert lines["suggestive"] == pytest.approx(5.0)
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "label"]
    assert labels == [info["g_shared"], info["g_only"]]
    assert ax.get_xticklabels()[0].get_text() == "1" and len(ax.get_xticks()) == len(CHROMS)


def test_manhattan_alternates_colours_by_chromosome(ax):
    ss, _, _ = make_tables()
    plots.manhattan(ss, ax=ax, colors=("red", "blue"))
    cols = [c for c in ax.collections if c.get_gid() == "manhattan-points"]
    assert len(cols) == 2  # one scatter call per colour
    x, layout = plots.genome_layout(ss.chrom, ss.pos)
    for k, c in enumerate(cols):
        xs = c.get_offsets()[:, 0]
        chrom_idx = np.searchsorted(layout.start.to_numpy(), xs, side="right") - 1
        assert set(chrom_idx % 2) == {k}


def test_p_zero_uses_log10_p_column(ax):
    ss, _, _ = make_tables()
    ss.loc[5, "p"] = 0.0
    ss.loc[5, "log10_p"] = 350.0  # below the double range, kept as -log10 p
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no capping warning: the height is known
        plots.manhattan(ss, ax=ax)
    pts = _points(ax, "manhattan-points")
    assert len(pts) == len(ss) and pts[:, 1].max() == 350.0
    assert ax.get_ylim()[1] > 350


def test_p_zero_without_log10_is_drawn_with_a_warning(ax):
    ss, _, _ = make_tables()
    ss = ss.drop(columns="log10_p")
    ss.loc[5, "p"] = 0.0
    with pytest.warns(UserWarning, match="1 SNPs have p = 0"):
        plots.manhattan(ss, ax=ax)
    pts = _points(ax, "manhattan-points")
    assert len(pts) == len(ss) and np.isfinite(pts).all()
    assert pts[:, 1].max() > 29  # at the top, above the 1e-30 SNP


def test_bad_p_values_are_input_errors(ax):
    ss, _, _ = make_tables()
    with pytest.raises(InputError, match="lack"):
        plots.manhattan(ss.drop(columns="chrom"), ax=ax)
    bad = ss.drop(columns="log10_p")
    bad.loc[0, "p"] = 1.5
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        plots.manhattan(bad, ax=ax)
    neg = ss.copy()
    neg["log10_p"] = np.log10(neg.p)  # log10 p instead of -log10 p
    with pytest.raises(InputError, match="-log10 p"):
        plots.manhattan(neg, ax=ax)


def test_manhattan_million_snps_and_png(tmp_path):
    n = 1_000_000
    rng = np.random.default_rng(1)
    ss = pd.DataFrame({"chrom": np.repeat(np.arange(1, 23).astype(str), n // 22 + 1)[:n],
                       "pos": np.tile(np.arange(1, n // 22 + 2) * 1000, 22)[:n],
                       "p": rng.uniform(size=n)})
    fig, ax = plt.subplots(figsize=(10, 3))
    plots.manhattan(ss, ax=ax, log10_col=None)
    assert len(_points(ax, "manhattan-points")) == n
    assert all(c.get_rasterized() for c in ax.collections)
    fig.savefig(tmp_path / "m.png", dpi=60)
    plt.close(fig)
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------- qq


def test_qq_points_band_and_lambda(ax):
    rng = np.random.default_rng(2)
    p = rng.uniform(size=5000)
    p[:3] = np.nan
    out = plots.qq(p, ax=ax)
    assert out is ax
    pts = _points(ax, "qq-points")
    assert len(pts) == 4997
    obs = np.sort(-np.log10(p[3:]))[::-1]
    exp = -np.log10((np.arange(1, 4998) - 0.5) / 4997)
    np.testing.assert_allclose(pts, np.c_[exp, obs])
    lam = np.median(chi2.isf(p[3:], 1)) / 0.4549364
    text = [t.get_text() for t in ax.texts if t.get_gid() == "lambda"][0]
    assert f"{lam:.3f}" in text and ax.lambda_gc == pytest.approx(lam, rel=1e-6)
    assert any(c.get_gid() == "qq-band" for c in ax.collections)


def test_qq_from_table_uses_log10_p(ax):
    ss, _, _ = make_tables()
    ss.loc[0, ["p", "log10_p"]] = [0.0, 400.0]
    plots.qq(ss, ax=ax)
    assert _points(ax, "qq-points")[:, 1].max() == 400.0
    assert ax.lambda_gc == pytest.approx(np.median(chi2.isf(ss.p, 1)) / 0.4549364, rel=1e-6)


# ---------------------------------------------------------------------------------- miami


def test_miami_halves_labels_and_shared_peak(ax):
    ss, scores, info = make_tables()
    out = plots.miami(ss, scores, ax=ax, threshold=0.5, top_n=3)
    assert out is ax
    up, down = _points(ax, "miami-gwas"), _points(ax, "miami-score")
    assert len(up) == len(ss) and len(down) == len(scores)
    assert (up[:, 1] >= 0).all() and (down[:, 1] <= 0).all()
    # same x for the same SNP in both halves (shared genomic axis)
    np.testing.assert_array_equal(np.sort(up[:, 0]), np.sort(down[:, 0]))
    # the lower half is the score on a scaled axis: the top score as deep as the top -log10 p is high
    assert down[:, 1].min() == pytest.approx(-up[:, 1].max())
    labels_g = [t.get_text() for t in ax.texts if t.get_gid() == "label-gwas"]
    labels_s = [t.get_text() for t in ax.texts if t.get_gid() == "label-score"]
    assert labels_g[0] == info["g_shared"] and info["g_only"] in labels_g
    assert labels_s[0] == info["s_top"] and info["s_only"] in labels_s
    # one marker, at the shared chr 2 locus (the two leads are 50 kb apart), none elsewhere
    x, _ = plots.genome_layout(ss.chrom, ss.pos)
    markers = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_gid() == "shared-peak"]
    assert markers == [pytest.approx(x[ss.snp == info["g_shared"]][0])]
    leads = ax.miami_leads
    assert set(leads.snp[leads.shared]) == {info["g_shared"], info["s_top"]}
    # threshold line below, genome-wide line above
    lines = {ln.get_gid(): ln.get_ydata()[0] for ln in ax.get_lines()}
    assert lines["genome-wide"] == pytest.approx(-math.log10(5e-8))
    scale = up[:, 1].max() / 1.0  # top score 1.0
    assert lines["score-threshold"] == pytest.approx(-0.5 * scale)
    # tick labels below zero read as positive scores
    below = [(t, lab.get_text()) for t, lab in zip(ax.get_yticks(), ax.get_yticklabels()) if t < 0]
    assert below and all(float(lab) > 0 for _, lab in below)
    for t, lab in below:
        assert float(lab) == pytest.approx(-t / scale, rel=1e-2)


def test_miami_no_marker_when_peaks_are_far_apart(ax):
    ss, scores, info = make_tables()
    plots.miami(ss, scores, ax=ax, top_n=1, window=10_000)  # the two leads are 50 kb apart
    assert not [ln for ln in ax.get_lines() if ln.get_gid() == "shared-peak"]


def test_miami_join_checks(ax):
    ss, scores, _ = make_tables()
    moved = scores.copy()
    moved.loc[0, "pos"] += 1
    with pytest.raises(InputError, match="different places"):
        plots.miami(ss, moved, ax=ax)
    with pytest.raises(InputError, match="duplicate SNP id"):
        plots.miami(ss, pd.concat([scores, scores.iloc[:1]]), ax=ax)
    # scores only for some SNPs, plus one SNP absent from sumstats (placed by its own chrom/pos)
    part = pd.concat([scores.iloc[:100], pd.DataFrame({"chrom": ["5"], "pos": [10], "snp": ["new"],
                                                       "deeplift_mean_abs": [0.1]})])
    plots.miami(ss, part, ax=ax)
    assert len(_points(ax, "miami-score")) == 101 and len(_points(ax, "miami-gwas")) == len(ss)


def test_miami_saves_png(tmp_path):
    ss, scores, _ = make_tables()
    ax = plots.miami(ss, scores, threshold=0.5, suggestive=1e-5, title="test")
    ax.figure.savefig(tmp_path / "miami.png", dpi=50)
    plt.close(ax.figure)
    assert (tmp_path / "miami.png").stat().st_size > 1000
