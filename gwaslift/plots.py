"""Figures of per-SNP tables: Manhattan, QQ and Miami plots.

Inputs are the project's tables (see the architecture notes):

* sumstats: ``chrom, pos, snp, a1, a2, ..., p`` and optionally ``log10_p`` holding
  **-log10 p** (kept so that p-values below the double range, p = 0 after underflow, still
  plot at their true height; it is preferred over ``p`` when present);
* scores: ``chrom, pos, snp, a1, a2, deeplift_mean_abs`` (mean absolute DeepLIFT score,
  >= 0, in units of the network output).

Every plot function takes ``ax=None`` (a new figure is made when None), draws, and returns
the Axes; matplotlib is imported only when a function is called and ``plt.show()`` is never
called. Points are drawn with one ``scatter`` per colour (never a Python loop per SNP) and
rasterized above 20,000 points, so a million SNPs draw (and save as PNG or PDF) in seconds.

The genomic x axis is shared by all plots (:func:`genome_layout`): chromosomes in natural
order (1..22, X, Y, XY, MT, then other names alphabetically; a ``chr`` prefix is ignored),
each placed after the previous one's largest position plus a small gap.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pandas as pd

from .errors import InputError

#: Conventional genome-wide and suggestive significance levels.
GENOME_WIDE = 5e-8
SUGGESTIVE = 1e-5
#: Median of the chi-square distribution with 1 degree of freedom (scipy.stats.chi2.ppf(0.5, 1)).
CHI2_1DF_MEDIAN = 0.45493642311957283
#: Above this many points a collection is rasterized (vector PDFs of 1e6 markers are slow).
RASTERIZE_ABOVE = 20_000

_GWAS_COLORS = ("#1b3a6b", "#6c9bd2")
_SCORE_COLORS = ("#7a2e0b", "#eb9a57")
_HIGHLIGHT = "#d62728"
_SPECIAL_CHROMS = {"X": 1, "Y": 2, "XY": 3, "MT": 4, "M": 4}


# --------------------------------------------------------------------------------------------
# kernels: layout, -log10 p, lambda, lead SNPs


def chrom_sort_key(name) -> tuple:
    """Natural order of chromosome names: numbers, then X, Y, XY, MT, then the rest by name."""
    s = str(name).strip()
    core = re.sub(r"^chr", "", s, flags=re.IGNORECASE)
    if core.isdigit():
        return (0, int(core), "")
    up = core.upper()
    if up in _SPECIAL_CHROMS:
        return (1, _SPECIAL_CHROMS[up], "")
    return (2, 0, s)


def genome_layout(chrom, pos, gap: float = 0.01) -> tuple[np.ndarray, pd.DataFrame]:
    """Cumulative genomic x coordinates.

    Parameters
    ----------
    chrom : array-like (n,)
        Chromosome names (any dtype; compared as strings).
    pos : array-like (n,)
        Base-pair positions (>= 0).
    gap : float
        Space left between chromosomes, as a fraction of the total length.

    Returns
    -------
    x : float64 (n,)
        ``offset[chrom] + pos``; chromosome ``k + 1`` starts after the largest position of
        chromosome ``k`` plus the gap, so x increases across chromosomes in natural order.
    layout : DataFrame
        One row per chromosome in plot order: ``chrom, offset, length, start, end, center``
        (``start``/``end`` are the x extent of its SNPs; ``center`` is where its tick goes).
    """
    chrom = np.asarray(chrom).astype(str)
    pos = np.asarray(pos, dtype=np.float64)
    if chrom.shape != pos.shape or chrom.ndim != 1:
        raise InputError(f"chrom and pos must be 1-D of one length, got {chrom.shape} and {pos.shape}")
    if len(pos) == 0:
        return np.zeros(0), pd.DataFrame(columns=["chrom", "offset", "length", "start", "end", "center"])
    if not np.isfinite(pos).all():
        raise InputError("positions must be finite numbers")
    codes, names = pd.factorize(chrom)
    order = sorted(range(len(names)), key=lambda k: chrom_sort_key(names[k]))
    lengths = np.zeros(len(names))
    np.maximum.at(lengths, codes, pos)
    mins = np.full(len(names), np.inf)
    np.minimum.at(mins, codes, pos)
    sorted_len = lengths[order]
    # a whole number of bp, so that x - pos is exactly the offset for integer positions
    step = float(np.ceil(gap * max(float(sorted_len.sum()), 1.0)))
    offsets_sorted = np.concatenate([[0.0], np.cumsum(sorted_len + step)[:-1]])
    offsets = np.empty(len(names))
    offsets[order] = offsets_sorted
    x = offsets[codes] + pos
    layout = pd.DataFrame({
        "chrom": [names[k] for k in order],
        "offset": offsets_sorted,
        "length": sorted_len,
        "start": offsets_sorted + mins[order],
        "end": offsets_sorted + sorted_len,
    })
    layout["center"] = (layout["start"] + layout["end"]) / 2
    return x, layout


def neg_log10_p(data, p_col: str = "p", log10_col: str | None = "log10_p", *, warn_zero: bool = True) -> np.ndarray:
    """-log10 p per row (float64, NaN where no p-value).

    ``data`` is a table (uses ``log10_col`` = -log10 p where present and finite, else
    ``p_col``) or an array of p-values. p = 0 without a finite ``log10_col`` value has no
    height: it is set to +inf here (the plots draw such points at the top of the axis and
    warn). Raises InputError for p outside [0, 1] or a negative -log10 p.
    """
    log10 = None
    if isinstance(data, pd.DataFrame):
        if log10_col is not None and log10_col in data:
            log10 = pd.to_numeric(data[log10_col], errors="coerce").to_numpy(dtype=np.float64)
            if (log10 < -1e-9).any():
                raise InputError(
                    f"column {log10_col!r} must hold -log10 p (>= 0); found {np.nanmin(log10):g}")
        if p_col in data:
            p = pd.to_numeric(data[p_col], errors="coerce").to_numpy(dtype=np.float64)
        elif log10 is not None:
            p = np.full(len(data), np.nan)
        else:
            raise InputError(f"the table needs a {p_col!r} or {log10_col!r} column; it has {list(data.columns)}")
    else:
        p = np.asarray(data, dtype=np.float64).ravel()
    tol = 1e-12  # p computed as 1 - cdf may exceed 1 by rounding
    if ((p < 0) | (p > 1 + tol)).any():
        bad = p[(p < 0) | (p > 1 + tol)][0]
        raise InputError(f"p-values must lie in [0, 1]; found {bad:g}")
    with np.errstate(divide="ignore"):
        y = -np.log10(np.clip(p, 0.0, 1.0))
    if log10 is not None:
        y = np.where(np.isfinite(log10), np.maximum(log10, 0.0), y)
    return y


def _lambda_gc(p) -> float:
    """lambda_GC = median chi-square(1 df) of the p-values / 0.4549364 (its null median).

    ``p`` (n,) p-values; NaN ignored. chi2 = ``scipy.stats.chi2.isf(p, 1)``; the median is
    taken on the p-values (the map is monotone), so only the middle one or two are converted.
    """
    from scipy.stats import chi2

    p = np.asarray(p, dtype=np.float64).ravel()
    p = p[np.isfinite(p)]
    if len(p) == 0:
        return float("nan")
    m = len(p)
    mid = np.partition(p, [(m - 1) // 2, m // 2])[[(m - 1) // 2, m // 2]]
    return float(np.mean(chi2.isf(mid, 1)) / CHI2_1DF_MEDIAN)


def lead_snps(chrom, pos, value, n: int, window: float = 250_000) -> np.ndarray:
    """Positions (indices) of up to ``n`` leading SNPs, one per locus, best first.

    Greedy clumping: take the SNP with the largest finite ``value``, drop every SNP on the
    same chromosome within ``window`` base pairs of it, repeat.
    """
    value = np.asarray(value, dtype=np.float64)
    chrom = np.asarray(chrom).astype(str)
    pos = np.asarray(pos, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(value))
    order = finite[np.argsort(-value[finite], kind="stable")]
    leads: list[int] = []
    for i in order:
        if len(leads) >= n:
            break
        if any(chrom[j] == chrom[i] and abs(pos[j] - pos[i]) <= window for j in leads):
            continue
        leads.append(int(i))
    return np.asarray(leads, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# drawing helpers


def _new_axes(ax, figsize):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _columns(table: pd.DataFrame, cols: list[str], what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"{what} must be a DataFrame, got {type(table).__name__}")
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {missing}; it has {list(table.columns)}")


def _cap_infinite(y: np.ndarray, floor: float, what: str) -> np.ndarray:
    """Draw +inf heights (p = 0 without -log10 p) at the top of the finite ones, with a warning."""
    inf = np.isposinf(y)
    if inf.any():
        finite = y[np.isfinite(y)]
        top = max(float(finite.max()) if len(finite) else 0.0, floor) * 1.05
        warnings.warn(
            f"{int(inf.sum())} {what} have p = 0 and no finite -log10 p column; drawn at the top "
            f"of the axis (-log10 p = {top:.3g}); give a log10_p column to place them", stacklevel=3)
        y = np.where(inf, top, y)
    return y


def _scatter_by_chrom(ax, x, y, chrom_rank, colors, *, s, rasterized, gid, highlight_mask=None,
                      highlight_color=_HIGHLIGHT, zorder=2):
    """One scatter per colour (chromosomes alternate colours by plot rank), highlighted last."""
    n = len(x)
    rast = (n > RASTERIZE_ABOVE) if rasterized is None else bool(rasterized)
    base = np.ones(n, dtype=bool) if highlight_mask is None else ~highlight_mask
    for k, color in enumerate(colors):
        sel = base & (chrom_rank % len(colors) == k)
        ax.scatter(x[sel], y[sel], s=s, c=color, linewidths=0, rasterized=rast, gid=gid, zorder=zorder)
    if highlight_mask is not None and highlight_mask.any():
        ax.scatter(x[highlight_mask], y[highlight_mask], s=s * 3, c=highlight_color, linewidths=0,
                   rasterized=rast, gid=gid, zorder=zorder + 1)


def _chrom_axis(ax, layout: pd.DataFrame, fontsize: float = 8) -> None:
    names = [re.sub(r"^chr", "", str(c), flags=re.IGNORECASE) for c in layout["chrom"]]
    ax.set_xticks(layout["center"].to_numpy())
    ax.set_xticklabels(names, fontsize=fontsize if len(names) <= 26 else fontsize * 0.7)
    span = float(layout["end"].iloc[-1] - layout["start"].iloc[0]) or 1.0
    ax.set_xlim(layout["start"].iloc[0] - 0.01 * span, layout["end"].iloc[-1] + 0.01 * span)
    ax.set_xlabel("chromosome")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _point_size(n: int, s: float | None) -> float:
    if s is not None:
        return float(s)
    return 10.0 if n <= 5_000 else (4.0 if n <= 100_000 else 1.5)


def _ranks(chrom: np.ndarray, layout: pd.DataFrame) -> np.ndarray:
    lookup = pd.Series(np.arange(len(layout)), index=layout["chrom"].astype(str).to_numpy())
    return lookup.reindex(np.asarray(chrom).astype(str)).to_numpy()


# --------------------------------------------------------------------------------------------
# public plots


def manhattan(sumstats: pd.DataFrame, ax=None, *, p_col: str = "p", log10_col: str | None = "log10_p",
              chrom_col: str = "chrom", pos_col: str = "pos", snp_col: str = "snp",
              genome_wide: float | None = GENOME_WIDE, suggestive: float | None = SUGGESTIVE,
              colors=_GWAS_COLORS, highlight=None, label_top: int = 0, window: float = 250_000,
              s: float | None = None, rasterized: bool | None = None, gap: float = 0.01,
              title: str | None = None, figsize=(12, 4)):
    """Manhattan plot: -log10 p against cumulative genomic position.

    Parameters
    ----------
    sumstats : DataFrame
        Needs ``chrom, pos`` and ``p`` and/or ``log10_p`` (-log10 p, preferred when finite).
        Rows without a p-value (NaN) are not drawn; every other row is one point.
    ax : matplotlib Axes, optional
        Drawn on when given; otherwise a new figure of ``figsize``.
    genome_wide, suggestive : float or None
        p-value levels drawn as horizontal lines (None: no line).
    colors : sequence of colours
        Alternated over chromosomes.
    highlight : iterable of SNP ids, optional
        Drawn on top in red (e.g. the simulator's causal SNPs).
    label_top : int
        Label this many leading SNPs (one per ``window`` bp locus) with their id.
    s, rasterized
        Marker area (auto by count) and rasterization (auto: above 20,000 points).

    Returns
    -------
    Axes
    """
    _columns(sumstats, [chrom_col, pos_col], "sumstats")
    ax = _new_axes(ax, figsize)
    y = neg_log10_p(sumstats, p_col, log10_col)
    keep = ~np.isnan(y)
    chrom = sumstats[chrom_col].to_numpy()[keep]
    pos = sumstats[pos_col].to_numpy()[keep]
    y = y[keep]
    floor = -math.log10(genome_wide) if genome_wide else 0.0
    y = _cap_infinite(y, floor, "SNPs")
    x, layout = genome_layout(chrom, pos, gap=gap)
    hl = None
    if highlight is not None:
        _columns(sumstats, [snp_col], "sumstats")
        hl = np.isin(sumstats[snp_col].to_numpy()[keep].astype(str), np.asarray(list(highlight)).astype(str))
    _scatter_by_chrom(ax, x, y, _ranks(chrom, layout), colors, s=_point_size(len(x), s),
                      rasterized=rasterized, gid="manhattan-points", highlight_mask=hl)
    for level, style, gid in ((genome_wide, "-", "genome-wide"), (suggestive, "--", "suggestive")):
        if level:
            ax.axhline(-math.log10(level), color="#b22222" if gid == "genome-wide" else "#888888",
                       lw=0.8, ls=style, zorder=1, gid=gid)
    if label_top and len(x):
        _columns(sumstats, [snp_col], "sumstats")
        snps = sumstats[snp_col].to_numpy()[keep]
        for i in lead_snps(chrom, pos, y, label_top, window):
            ax.annotate(str(snps[i]), (x[i], y[i]), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, gid="label")
    top = max(float(y.max()) if len(y) else 1.0, floor)
    ax.set_ylim(0, top * 1.08 + 0.1)
    if len(layout):
        _chrom_axis(ax, layout)
    ax.set_ylabel(r"$-\log_{10}\,p$")
    if title:
        ax.set_title(title)
    return ax


def qq(sumstats_or_p, ax=None, *, p_col: str = "p", log10_col: str | None = "log10_p",
       ci: float | None = 0.95, show_lambda: bool = True, color: str = _GWAS_COLORS[0],
       label: str | None = None, s: float | None = None, rasterized: bool | None = None,
       title: str | None = None, figsize=(4.5, 4.5)):
    """QQ plot of -log10 p: observed against expected under the uniform null.

    ``sumstats_or_p``: a table (``p`` and/or ``log10_p`` = -log10 p) or an array of p-values;
    NaN rows are dropped, every other p-value is one point. Expected quantiles are
    ``-log10((i - 0.5) / n)``; the shaded band is the pointwise ``ci`` interval of the i-th
    smallest of n uniform p-values (Beta(i, n - i + 1)). With ``show_lambda`` the text
    ``lambda_GC`` (median chi-square(1 df) / 0.4549364, see ``_lambda_gc``) is drawn
    in the upper left corner. Returns the Axes.
    """
    from scipy.stats import beta as beta_dist

    ax = _new_axes(ax, figsize)
    table = sumstats_or_p if isinstance(sumstats_or_p, pd.DataFrame) else None
    y = neg_log10_p(sumstats_or_p if table is not None else np.asarray(sumstats_or_p, dtype=float),
                    p_col, log10_col)
    y = y[~np.isnan(y)]
    n = len(y)
    obs = np.sort(y)[::-1]
    obs = _cap_infinite(obs, 0.0, "p-values")
    exp = -np.log10((np.arange(1, n + 1) - 0.5) / max(n, 1))
    if ci and n:
        # the band on ~1000 log-spaced ranks: smooth, and cheap at a million p-values
        k = np.unique(np.round(np.logspace(0, np.log10(n), 1000)).astype(np.int64))
        lo = -np.log10(beta_dist.ppf((1 + ci) / 2, k, n - k + 1))
        hi = -np.log10(beta_dist.ppf((1 - ci) / 2, k, n - k + 1))
        ax.fill_between(-np.log10((k - 0.5) / n), lo, hi, color="#cccccc", alpha=0.6, lw=0, zorder=0,
                        gid="qq-band")
    top_exp = float(exp[0]) if n else 1.0
    ax.plot([0, top_exp], [0, top_exp], color="#b22222", lw=0.8, zorder=1, gid="qq-diagonal")
    rast = (n > RASTERIZE_ABOVE) if rasterized is None else bool(rasterized)
    ax.scatter(exp, obs, s=_point_size(n, s), c=color, linewidths=0, rasterized=rast, zorder=2,
               label=label, gid="qq-points")
    if show_lambda:
        # from the p column (or the p-values given); from -log10 p only when there is none
        if table is None:
            p = np.asarray(sumstats_or_p, dtype=np.float64)
        elif p_col in table and table[p_col].notna().any():
            p = pd.to_numeric(table[p_col], errors="coerce").to_numpy(dtype=np.float64)
        else:
            p = 10.0 ** -y
        lam = _lambda_gc(p)
        ax.text(0.04, 0.96, rf"$\lambda_{{GC}}$ = {lam:.3f}" + f"\nn = {n:,}", transform=ax.transAxes,
                ha="left", va="top", fontsize=9, gid="lambda")
        ax.lambda_gc = lam  # for callers that want the number shown
    ax.set_xlabel(r"expected $-\log_{10}\,p$")
    ax.set_ylabel(r"observed $-\log_{10}\,p$")
    ax.set_xlim(0, top_exp * 1.05 + 0.05)
    ax.set_ylim(0, max(float(obs.max()) if n else 1.0, top_exp) * 1.08 + 0.05)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)
    return ax


def _join(sumstats: pd.DataFrame, scores: pd.DataFrame, score_col: str, p_col: str, log10_col: str | None,
          chrom_col: str, pos_col: str, snp_col: str) -> pd.DataFrame:
    """One row per SNP of either table: chrom, pos, snp, y_gwas (-log10 p), score."""
    _columns(sumstats, [chrom_col, pos_col, snp_col], "sumstats")
    _columns(scores, [snp_col, score_col], "scores")
    for name, t in (("sumstats", sumstats), ("scores", scores)):
        dup = t[snp_col].duplicated()
        if dup.any():
            raise InputError(
                f"{name} has duplicate SNP id {t[snp_col][dup].iloc[0]!r}; the Miami plot joins the tables "
                "by SNP id, which must be unique (e.g. plink2 --set-all-var-ids)")
    a = pd.DataFrame({"snp": sumstats[snp_col].astype(str).to_numpy(),
                      "chrom": sumstats[chrom_col].astype(str).to_numpy(),
                      "pos": pd.to_numeric(sumstats[pos_col]).to_numpy(dtype=np.float64),
                      "y_gwas": neg_log10_p(sumstats, p_col, log10_col)})
    b = pd.DataFrame({"snp": scores[snp_col].astype(str).to_numpy(),
                      "score": pd.to_numeric(scores[score_col], errors="coerce").to_numpy(dtype=np.float64)})
    has_loc = chrom_col in scores and pos_col in scores
    if has_loc:
        b["chrom_s"] = scores[chrom_col].astype(str).to_numpy()
        b["pos_s"] = pd.to_numeric(scores[pos_col]).to_numpy(dtype=np.float64)
    if (b["score"] < 0).any():
        raise InputError(f"scores column {score_col!r} must be >= 0 (a mean absolute attribution)")
    j = a.merge(b, on="snp", how="outer", sort=False)
    if has_loc:
        both = j["chrom"].notna() & j["chrom_s"].notna()
        clash = both & ((j["chrom"] != j["chrom_s"]) | (j["pos"] != j["pos_s"]))
        if clash.any():
            r = j[clash].iloc[0]
            raise InputError(
                f"{int(clash.sum())} SNP(s) sit at different places in sumstats and scores, e.g. {r['snp']!r}: "
                f"{r['chrom']}:{r['pos']:.0f} vs {r['chrom_s']}:{r['pos_s']:.0f}")
        j["chrom"] = j["chrom"].fillna(j["chrom_s"])
        j["pos"] = j["pos"].fillna(j["pos_s"])
        j = j.drop(columns=["chrom_s", "pos_s"])
    elif j["chrom"].isna().any():
        raise InputError("scores hold SNPs absent from sumstats and no chrom/pos columns to place them")
    return j


def miami(sumstats: pd.DataFrame, scores: pd.DataFrame, ax=None, *, score_col: str = "deeplift_mean_abs",
          threshold: float | None = None, top_n: int = 5, p_col: str = "p", log10_col: str | None = "log10_p",
          chrom_col: str = "chrom", pos_col: str = "pos", snp_col: str = "snp",
          genome_wide: float | None = GENOME_WIDE, suggestive: float | None = None,
          window: float = 250_000, colors=_GWAS_COLORS, score_colors=_SCORE_COLORS, highlight=None,
          score_label: str = "mean |DeepLIFT|", s: float | None = None, rasterized: bool | None = None,
          gap: float = 0.01, title: str | None = None, figsize=(12, 6)):
    """Miami plot: the linear GWAS above, the attribution scores below, on one genomic axis.

    Both halves are drawn on the **one Axes** returned: the upper half at y = -log10 p, the
    lower half at y = -score * scale, where ``scale`` makes the largest score (or the
    threshold) as tall as the largest -log10 p (or the genome-wide line). Tick labels below
    zero show score values (positive numbers); the y label names both quantities.

    Parameters
    ----------
    sumstats : DataFrame
        ``chrom, pos, snp`` and ``p`` and/or ``log10_p`` (-log10 p).
    scores : DataFrame
        ``snp`` and ``score_col`` (>= 0), and ``chrom, pos`` to place SNPs absent from
        sumstats. Joined to sumstats by SNP id (ids must be unique; a SNP whose chrom/pos
        differ between the tables is an error).
    threshold : float, optional
        Attribution significance threshold, drawn as a dashed line below.
    top_n : int
        Leading SNPs labelled with their id in each half: the ``top_n`` best loci (greedy
        clumping, one SNP per ``window`` bp; :func:`lead_snps`).
    genome_wide, suggestive : float or None
        p-value lines drawn above (suggestive is off by default here).
    window : float
        Base pairs: a GWAS lead and a score lead on the same chromosome within ``window``
        mark a shared peak, drawn as a vertical dotted line (gid ``"shared-peak"``) at the
        GWAS lead's position.
    colors, score_colors : colour sequences alternated over chromosomes in each half.
    highlight : iterable of SNP ids drawn in red in both halves (e.g. causal SNPs).

    Returns
    -------
    Axes
        Also carries ``ax.miami_leads``: a DataFrame of the labelled leads (``half`` =
        ``"gwas"``/``"score"``, ``snp, chrom, pos, value``, ``shared`` = part of a shared peak).
    """
    j = _join(sumstats, scores, score_col, p_col, log10_col, chrom_col, pos_col, snp_col)
    ax = _new_axes(ax, figsize)
    x, layout = genome_layout(j["chrom"].to_numpy(), j["pos"].to_numpy(), gap=gap)
    rank = _ranks(j["chrom"].to_numpy(), layout)
    chrom = j["chrom"].to_numpy()
    pos = j["pos"].to_numpy()
    snp = j["snp"].to_numpy()
    floor = -math.log10(genome_wide) if genome_wide else 0.0
    yg = j["y_gwas"].to_numpy()
    up = ~np.isnan(yg)
    yg = np.where(up, _cap_infinite(np.where(up, yg, 0.0), floor, "SNPs"), np.nan)
    sc = j["score"].to_numpy()
    down = np.isfinite(sc)

    h_top = max(float(np.nanmax(yg)) if up.any() else 0.0, floor) or 1.0
    h_bot = max(float(np.nanmax(sc)) if down.any() else 0.0, threshold or 0.0) or 1.0
    scale = h_top / h_bot
    hl = None
    if highlight is not None:
        hl = np.isin(snp, np.asarray(list(highlight)).astype(str))
    size = _point_size(int(max(up.sum(), down.sum())), s)
    _scatter_by_chrom(ax, x[up], yg[up], rank[up], colors, s=size, rasterized=rasterized, gid="miami-gwas",
                      highlight_mask=None if hl is None else hl[up])
    _scatter_by_chrom(ax, x[down], -sc[down] * scale, rank[down], score_colors, s=size, rasterized=rasterized,
                      gid="miami-score", highlight_mask=None if hl is None else hl[down])

    ax.axhline(0, color="black", lw=0.6, zorder=3)
    if genome_wide:
        ax.axhline(floor, color="#b22222", lw=0.8, zorder=1, gid="genome-wide")
    if suggestive:
        ax.axhline(-math.log10(suggestive), color="#888888", lw=0.8, ls="--", zorder=1, gid="suggestive")
    if threshold is not None:
        ax.axhline(-threshold * scale, color="#b22222", lw=0.8, ls="--", zorder=1, gid="score-threshold")

    # leads of each half, labelled; shared peaks marked
    lead_g = np.flatnonzero(up)[lead_snps(chrom[up], pos[up], yg[up], top_n, window)] if top_n else []
    # a zero score is no lead (no network uses the SNP)
    scored = down & (sc > 0)
    lead_s = np.flatnonzero(scored)[lead_snps(chrom[scored], pos[scored], sc[scored], top_n, window)] if top_n else []
    shared_g, shared_s = set(), set()
    for i in lead_g:
        for k in lead_s:
            if chrom[i] == chrom[k] and abs(pos[i] - pos[k]) <= window:
                shared_g.add(int(i))
                shared_s.add(int(k))
    for i in sorted(shared_g):
        ax.axvline(x[i], color="#555555", lw=0.8, ls=":", zorder=0, gid="shared-peak")
    for i in lead_g:
        ax.annotate(str(snp[i]), (x[i], yg[i]), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize=7, gid="label-gwas",
                    fontweight="bold" if int(i) in shared_g else "normal")
    for k in lead_s:
        ax.annotate(str(snp[k]), (x[k], -sc[k] * scale), xytext=(0, -3), textcoords="offset points",
                    ha="center", va="top", fontsize=7, gid="label-score",
                    fontweight="bold" if int(k) in shared_s else "normal")
    ax.miami_leads = pd.DataFrame(
        [("gwas", snp[i], chrom[i], pos[i], yg[i], int(i) in shared_g) for i in lead_g]
        + [("score", snp[k], chrom[k], pos[k], sc[k], int(k) in shared_s) for k in lead_s],
        columns=["half", "snp", "chrom", "pos", "value", "shared"])

    # y axis: -log10 p ticks above zero, score ticks (positive numbers) below
    from matplotlib.ticker import MaxNLocator

    t_top = [t for t in MaxNLocator(5).tick_values(0, h_top) if 0 <= t <= h_top * 1.001]
    t_bot = [t for t in MaxNLocator(4).tick_values(0, h_bot) if 0 < t <= h_bot * 1.001]
    ticks = [-t * scale for t in t_bot[::-1]] + list(t_top)
    labels = [f"{t:.3g}" for t in t_bot[::-1]] + [f"{t:g}" for t in t_top]
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels)
    ax.set_ylim(-h_top * 1.12, h_top * 1.12)
    ax.set_ylabel(f"{score_label}          " + r"$-\log_{10}\,p$")
    if len(layout):
        _chrom_axis(ax, layout)
    if title:
        ax.set_title(title)
    return ax


__all__ = [
    "CHI2_1DF_MEDIAN", "GENOME_WIDE", "SUGGESTIVE", "chrom_sort_key", "genome_layout",
    "lead_snps", "manhattan", "miami", "neg_log10_p", "qq",
]
