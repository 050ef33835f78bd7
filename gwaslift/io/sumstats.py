"""Writing and reading association summary statistics (the sumstats table).

The table vocabulary is :data:`gwaslift.assoc.SUMSTATS_COLUMNS`
(``chrom, pos, snp, a1, a2, a1_freq, n, beta, se, stat, p, log10_p, errcode, firth``);
``a1`` is the tested (counted) allele, ``beta`` is per A1 allele (log odds ratio for
logistic), ``firth`` marks Firth fits (logistic, plink2's ``FIRTH?`` column).

Two file formats, both tab-separated and written atomically (temporary name, then rename):

* plink2 ``--glm`` style (``.glm.linear`` / ``.glm.logistic``)::

      #CHROM POS ID REF ALT A1 A1_FREQ [FIRTH?] TEST OBS_CT BETA|OR SE|LOG(OR)_SE T_STAT|Z_STAT P ERRCODE

  with ``REF = a2``, ``ALT = A1 = a1`` (what plink2 ``--glm omit-ref`` prints for a PLINK 1
  fileset, whose .bim column 5 becomes ALT); logistic files carry ``OR = exp(beta)`` and
  also a ``BETA`` column (plink2's ``cols=+beta``) and plink2's ``FIRTH?`` column (``Y``
  for a Firth fit, as plink2's default ``firth-fallback`` writes it). ``NA`` marks missing
  values, ``.`` an empty ERRCODE, as plink2 does.
* GWAS-SSF (GWAS Catalog summary-statistics format)::

      chromosome base_pair_location effect_allele other_allele beta|odds_ratio
      standard_error effect_allele_frequency p_value variant_id rsid n

  ``effect_allele = a1``, ``standard_error`` is the SE of beta (of log OR for logistic),
  ``rsid`` is the variant ID when it looks like ``rs<digits>``, else ``#NA``; chromosomes
  X, Y, MT are written 23, 24, 25 as the format asks; missing values are ``#NA``.

p-values smaller than the double range are written from ``log10_p`` in decimal-exponent
form (``3.2e-420``), and :func:`read_sumstats` reads them back into ``log10_p`` exactly.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .._util import atomic_path
from ..errors import InputError

_SSF_CHROM = {"X": 23, "Y": 24, "XY": 23, "MT": 25, "M": 25}
_SSF_CHROM_BACK = {"23": "X", "24": "Y", "25": "MT"}
_RSID = re.compile(r"^rs[0-9]+$")


def _p_strings(p: np.ndarray, log10_p: np.ndarray, na: str) -> list[str]:
    """p-values as text; from log10_p when p underflows (p < 1e-300) so nothing becomes 0."""
    out = []
    for pv, lg in zip(p, log10_p):
        if not np.isfinite(lg) and not np.isfinite(pv):
            out.append(na)
        elif np.isfinite(lg) and lg > 300:
            e = math.floor(lg)
            mant = 10.0 ** (e - lg)  # in (0.1, 1]
            e, mant = (e + 1, mant * 10) if mant < 1 else (e, mant)
            out.append(f"{mant:.6g}e-{e}")
        else:
            out.append(f"{pv:.8g}")
    return out


def _model(sumstats: pd.DataFrame, model: str | None) -> str:
    model = model or sumstats.attrs.get("model")
    if model not in ("linear", "logistic"):
        raise InputError("say model='linear' or 'logistic' (the table's attrs do not record it)")
    return model


def _num(x, fmt: str, na: str) -> list[str]:
    return [na if not np.isfinite(v) else format(v, fmt) for v in np.asarray(x, dtype=float)]


def write_glm(sumstats: pd.DataFrame, path: str | os.PathLike, model: str | None = None,
              ci: float | None = None) -> Path:
    """Write a plink2 ``--glm``-style TSV; returns the path. See the module docstring.

    ``ci`` (plink2 ``--ci``, e.g. 0.95): add the Wald confidence bounds ``L95`` / ``U95``
    (named after the level) after the standard error: ``beta -/+ z se`` with the normal
    quantile z, as plink2 computes them for linear models too; for logistic models on the
    odds-ratio scale, as plink2's default OR columns (measured equal to plink2).
    """
    model = _model(sumstats, model)
    s = sumstats
    bounds = {}
    if ci is not None:
        if not 0 < ci < 1:
            raise ValueError(f"ci must be a level between 0 and 1 (e.g. 0.95), got {ci}")
        from scipy.special import ndtri

        z = float(ndtri(0.5 + ci / 2))
        b, se = s["beta"].to_numpy(float), s["se"].to_numpy(float)
        lo, hi = b - z * se, b + z * se
        if model == "logistic":
            with np.errstate(over="ignore"):
                lo, hi = np.exp(lo), np.exp(hi)
        tag = f"{100 * ci:g}"  # plink2: L95, L99.9
        bounds = {f"L{tag}": _num(lo, ".8g", "NA"), f"U{tag}": _num(hi, ".8g", "NA")}
    cols = {
        "#CHROM": s["chrom"].astype(str),
        "POS": s["pos"].astype(np.int64).astype(str),
        "ID": s["snp"].astype(str),
        "REF": s["a2"].astype(str),
        "ALT": s["a1"].astype(str),
        "A1": s["a1"].astype(str),
        "A1_FREQ": _num(s["a1_freq"], ".8g", "NA"),
    }
    if model == "logistic":
        firth = s["firth"].to_numpy(bool) if "firth" in s else np.zeros(len(s), bool)
        cols["FIRTH?"] = np.where(firth, "Y", "N")
    cols |= {
        "TEST": "ADD",
        "OBS_CT": s["n"].astype(np.int64).astype(str),
    }
    if model == "linear":
        cols["BETA"] = _num(s["beta"], ".8g", "NA")
        cols["SE"] = _num(s["se"], ".8g", "NA")
        cols |= bounds
        cols["T_STAT"] = _num(s["stat"], ".8g", "NA")
    else:
        with np.errstate(over="ignore"):
            cols["OR"] = _num(np.exp(s["beta"].to_numpy(float)), ".12g", "NA")
        cols["BETA"] = _num(s["beta"], ".8g", "NA")
        cols["LOG(OR)_SE"] = _num(s["se"], ".8g", "NA")
        cols |= bounds
        cols["Z_STAT"] = _num(s["stat"], ".8g", "NA")
    cols["P"] = _p_strings(s["p"].to_numpy(float), s["log10_p"].to_numpy(float), "NA")
    err = s["errcode"] if "errcode" in s else pd.Series([""] * len(s))
    cols["ERRCODE"] = [e if isinstance(e, str) and e else "." for e in err]
    out = pd.DataFrame(cols)
    path = Path(path)
    with atomic_path(path) as tmp:
        out.to_csv(tmp, sep="\t", index=False)
    return path


def write_gwas_ssf(sumstats: pd.DataFrame, path: str | os.PathLike, model: str | None = None) -> Path:
    """Write a GWAS-SSF TSV (GWAS Catalog format); returns the path. See the module docstring."""
    model = _model(sumstats, model)
    s = sumstats
    chrom = [str(_SSF_CHROM.get(str(ch).upper().removeprefix("CHR"), str(ch).removeprefix("chr")))
             for ch in s["chrom"]]
    cols = {
        "chromosome": chrom,
        "base_pair_location": s["pos"].astype(np.int64).astype(str),
        "effect_allele": s["a1"].astype(str),
        "other_allele": s["a2"].astype(str),
    }
    if model == "linear":
        cols["beta"] = _num(s["beta"], ".8g", "#NA")
    else:
        with np.errstate(over="ignore"):
            cols["odds_ratio"] = _num(np.exp(s["beta"].to_numpy(float)), ".12g", "#NA")
    cols["standard_error"] = _num(s["se"], ".8g", "#NA")
    cols["effect_allele_frequency"] = _num(s["a1_freq"], ".8g", "#NA")
    cols["p_value"] = _p_strings(s["p"].to_numpy(float), s["log10_p"].to_numpy(float), "#NA")
    cols["variant_id"] = s["snp"].astype(str)
    cols["rsid"] = [v if _RSID.match(str(v)) else "#NA" for v in s["snp"]]
    cols["n"] = s["n"].astype(np.int64).astype(str)
    out = pd.DataFrame(cols)
    path = Path(path)
    with atomic_path(path) as tmp:
        out.to_csv(tmp, sep="\t", index=False)
    return path


def _log10_from_text(values: pd.Series) -> np.ndarray:
    """-log10 p from p-value text, exact even below the double range ("1e-400")."""
    out = np.full(len(values), np.nan)
    for k, v in enumerate(values.astype(str)):
        v = v.strip()
        if v in ("NA", "#NA", "nan", "NaN", ""):
            continue
        try:
            f = float(v)
        except ValueError:
            raise InputError(f"p-value {v!r} is not a number") from None
        if f > 0:
            out[k] = -math.log10(f)
        else:
            m = re.match(r"^\s*([0-9.]+)[eE]([-+]?[0-9]+)\s*$", v)
            if m and float(m.group(1)) > 0:
                out[k] = -(math.log10(float(m.group(1))) + int(m.group(2)))
            else:
                out[k] = np.inf
    return out


def read_sumstats(path: str | os.PathLike) -> pd.DataFrame:
    """Read a file written by :func:`write_glm` or :func:`write_gwas_ssf` (or a plink2
    ``--glm`` output with A1, OBS_CT, SE and P columns) back into the sumstats table.

    plink2 ``--glm`` output is read as plink2 writes it by default: without ``hide-covar``
    it has a row per covariate too (``TEST`` = the covariate's name) and only the ``ADD``
    rows (the additive genotype test, one per variant) are kept; written with the
    ``log10`` column modifier it has ``LOG10_P`` (-log10 p, exact below the double range)
    instead of ``P``. A file with a TEST column but no ADD row (``--glm dominant``,
    ``recessive``, ...) is an InputError: the table's ``beta`` is per A1 allele.

    ``attrs['model']`` is set from the columns (OR / odds_ratio / Z_STAT -> logistic).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found (expected a summary-statistics TSV)", path)
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    cols = set(raw.columns)
    if "TEST" in cols and (raw["TEST"] != "ADD").any():
        add = (raw["TEST"] == "ADD").to_numpy()
        if not add.any():
            raise InputError(f"no additive (TEST = ADD) rows; TEST values "
                             f"{sorted(set(raw['TEST']))[:5]}: gwaslift reads plink2's additive test", path)
        raw = raw[add].reset_index(drop=True)  # covariate rows (no hide-covar) dropped

    def num(col):
        return pd.to_numeric(raw[col].replace({"NA": "nan", "#NA": "nan"}), errors="coerce").to_numpy(float)

    if {"#CHROM", "POS", "ID", "A1"} <= cols and cols & {"P", "LOG10_P"}:
        logistic = bool({"OR", "Z_STAT", "LOG(OR)_SE"} & cols)
        a1 = raw["A1"]
        if "REF" in cols and "ALT" in cols:
            a2 = np.where(raw["A1"] == raw["ALT"], raw["REF"], raw["ALT"])
        elif "AX" in cols:
            a2 = raw["AX"]
        else:
            a2 = pd.Series([None] * len(raw))
        if "BETA" in cols:
            beta = num("BETA")
        elif "OR" in cols:
            with np.errstate(divide="ignore", invalid="ignore"):
                beta = np.log(num("OR"))
        else:
            raise InputError("no BETA or OR column", path)
        se = num("LOG(OR)_SE") if "LOG(OR)_SE" in cols else num("SE")
        stat = num("Z_STAT") if "Z_STAT" in cols else (num("T_STAT") if "T_STAT" in cols else beta / se)
        out = pd.DataFrame({
            "chrom": raw["#CHROM"].to_numpy(), "pos": num("POS").astype(np.int64),
            "snp": raw["ID"].to_numpy(), "a1": a1.to_numpy(), "a2": np.asarray(a2),
            "a1_freq": num("A1_FREQ") if "A1_FREQ" in cols else np.nan,
            "n": num("OBS_CT").astype(np.int64) if "OBS_CT" in cols else -1,
            "beta": beta, "se": se, "stat": stat,
        })
        if "LOG10_P" in cols:
            lg = num("LOG10_P")
        else:
            lg = _log10_from_text(raw["P"])
        err = raw["ERRCODE"].replace({".": ""}).to_numpy(object) if "ERRCODE" in cols else ""
    elif {"chromosome", "base_pair_location", "effect_allele", "other_allele", "p_value"} <= cols:
        logistic = "odds_ratio" in cols
        if "beta" in cols:
            beta = num("beta")
        elif logistic:
            with np.errstate(divide="ignore", invalid="ignore"):
                beta = np.log(num("odds_ratio"))
        else:
            raise InputError("no beta or odds_ratio column", path)
        se = num("standard_error")
        snp = raw["variant_id"] if "variant_id" in cols else raw.get("rsid", pd.Series([None] * len(raw)))
        out = pd.DataFrame({
            "chrom": [_SSF_CHROM_BACK.get(ch, ch) for ch in raw["chromosome"]],
            "pos": num("base_pair_location").astype(np.int64),
            "snp": np.asarray(snp), "a1": raw["effect_allele"].to_numpy(),
            "a2": raw["other_allele"].to_numpy(),
            "a1_freq": num("effect_allele_frequency") if "effect_allele_frequency" in cols else np.nan,
            "n": num("n").astype(np.int64) if "n" in cols else -1,
            "beta": beta, "se": se,
        })
        with np.errstate(divide="ignore", invalid="ignore"):
            out["stat"] = beta / se
        lg = _log10_from_text(raw["p_value"])
        err = np.where(np.isnan(beta), "NA", "")
    else:
        raise InputError("not a plink2 --glm or GWAS-SSF table (header columns not recognised: "
                         f"{list(raw.columns)[:8]})", path)
    with np.errstate(over="ignore"):
        out["p"] = 10.0 ** (-lg)
    out["log10_p"] = lg
    out["errcode"] = err
    # plink2's FIRTH? column (firth-fallback); files without it hold no Firth fits we know of
    out["firth"] = (raw["FIRTH?"] == "Y").to_numpy() if "FIRTH?" in cols else False
    out.attrs["model"] = "logistic" if logistic else "linear"
    return out
