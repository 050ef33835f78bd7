"""Fitted deep models: the split, the members (one network per configuration and seed), and
their safe on-disk format.

On disk (``DeepFit.save(dir)``)::

    dir/fit.json          trait, options, selected config, covariate names/scaling, members
                          (config, seed, role, metrics, weight file), the data file names
                          and every file's sha256
    dir/variants.tsv      chrom, pos, snp, a1, a2 (A1 = .bim column 5 = counted allele)
    dir/samples.tsv       fid, iid of the genotypes' samples (split positions index these)
    dir/arrays.pt         center, split positions, covariate mean/scale, and the folds of
                          cross-fitted refits when there are any (plain tensors)
    dir/members/NNN.pt    each member's state_dict (plain tensors)

(A fit saved over an earlier one has a generation tag in the data file names, e.g.
``variants-1a2b3c4d.tsv``: fit.json, written last, is what makes the new fit current.)
A member that diverged in training (non-finite weights, ``val_loglik`` NaN) is saved and
loaded as it was trained; attribution refuses to score it.

Tensor files are written with ``torch.save`` of a dict of tensors and read back with
``torch.load(weights_only=True)``: nothing is unpickled, so a fit received from someone
else is safe to open. Every file's sha256 is recorded in fit.json and checked on load; any
corrupt, truncated or inconsistent file raises :class:`~gwaslift.InputError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._util import atomic_path
from ..errors import InputError
from .network import GenotypeMLP

FORMAT = "gwaslift.deepfit/1"
VARIANT_COLUMNS = ["chrom", "pos", "snp", "a1", "a2"]


@dataclass
class Split:
    """int64 positions into the samples of the Genotypes passed to ``train``: 50/25/25 by default."""

    train: np.ndarray
    early_stop: np.ndarray
    validation: np.ndarray

    def __post_init__(self):
        for name in ("train", "early_stop", "validation"):
            p = np.asarray(getattr(self, name))
            if p.size and p.dtype.kind not in "iu":  # 0.7 would silently become sample 0
                raise InputError(f"split.{name} must hold integer sample positions, got dtype {p.dtype}")
            setattr(self, name, p.astype(np.int64).reshape(-1))
        allp = np.concatenate([self.train, self.early_stop, self.validation])
        if len(np.unique(allp)) != len(allp):
            raise InputError("the train / early-stop / validation sets of a split must not overlap")
        if len(self.train) == 0 or len(self.early_stop) == 0:
            raise InputError("a split needs at least one training and one early-stopping sample")


def make_split(y, seed: int = 0, fractions=(0.5, 0.25, 0.25), stratify: bool | None = None) -> Split:
    """Seeded random split of the samples with a non-missing ``y`` (NaN samples excluded).

    ``stratify`` (default: when ``y`` is binary 0/1) splits cases and controls separately so
    each set keeps the case fraction. Sizes per stratum: ``round(f0 * n)`` train,
    ``round(f1 * n)`` early stop, the rest validation. Positions are returned sorted.
    """
    y = np.asarray(y, dtype=np.float64)
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise InputError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    ok = np.flatnonzero(~np.isnan(y))
    if stratify is None:
        stratify = bool(np.all(np.isin(y[ok], (0.0, 1.0))))
    rng = np.random.default_rng(seed)
    strata = [ok[y[ok] == v] for v in np.unique(y[ok])] if stratify else [ok]
    parts = ([], [], [])
    for s in strata:
        s = rng.permutation(s)
        n1 = int(round(f[0] * len(s)))
        n2 = int(round(f[1] * len(s)))
        for p, chunk in zip(parts, (s[:n1], s[n1:n1 + n2], s[n1 + n2:])):
            p.append(chunk)
    return Split(*(np.sort(np.concatenate(p)) if p else np.empty(0, np.int64) for p in parts))


def make_folds(y, k: int, seed: int = 0, stratify: bool | None = None) -> np.ndarray:
    """Seeded partition of the samples with a non-missing ``y`` into ``k`` folds.

    Returns int64 (n_samples,): the fold (0..k-1) of each sample, -1 where ``y`` is NaN.
    ``stratify`` (default: when ``y`` is binary 0/1) deals cases and controls out
    separately, so every fold keeps the case fraction; fold sizes differ by at most one per
    stratum. Used by cross-fitted refits (:func:`gwaslift.deep.refit` with
    ``cross_fit=True``) through :func:`fold_split`.
    """
    y = np.asarray(y, dtype=np.float64)
    k = int(k)
    ok = np.flatnonzero(~np.isnan(y))
    if k < 2:
        raise InputError(f"cross-fitting needs at least 2 folds (one refit seed per fold), got {k}")
    if len(ok) < 2 * k:
        raise InputError(f"{len(ok)} samples cannot be split into {k} folds of at least 2 samples")
    if stratify is None:
        stratify = bool(np.all(np.isin(y[ok], (0.0, 1.0))))
    rng = np.random.default_rng(seed)
    folds = np.full(y.shape[0], -1, np.int64)
    start = 0
    for s in ([ok[y[ok] == v] for v in np.unique(y[ok])] if stratify else [ok]):
        # continue the round-robin across strata so that fold sizes stay within one overall
        folds[rng.permutation(s)] = (start + np.arange(len(s))) % k
        start += len(s)
    return folds


def fold_split(folds: np.ndarray, fold: int) -> Split:
    """The split of a cross-fitted member: train on every other fold, early-stop on ``fold``.

    There are no validation samples: the held-out fold is the early-stopping set, so the
    member's ``val_loglik`` is NaN (model selection happens on the grid's split).
    """
    folds = np.asarray(folds, dtype=np.int64)
    return Split(np.flatnonzero((folds >= 0) & (folds != fold)), np.flatnonzero(folds == fold),
                 np.empty(0, np.int64))


@dataclass
class Member:
    """One trained network: ``config`` (keys 'hidden' (h1, h2), 'l1', 'lr'), the init ``seed``,
    the ``model`` (CPU, eval mode, float32, best early-stopping weights), its ``metrics``
    ('val_loglik' = mean per-sample validation log-likelihood, 'val_loglik_constant' of the
    constant model, 'es_loss', 'train_loss', 'epochs', 'best_epoch', 'n_nonzero_snps', ...)
    and its ``role``: 'grid' (model search), 'refit' (fresh seeds of the selected
    configuration), 'null' (fits to a permuted phenotype) or 'decoy'. ``fold`` is None for a
    member trained on the fit's split, else the fold of ``DeepFit.folds`` it early-stopped
    on (a cross-fitted refit, trained on all the other folds: :func:`fold_split`)."""

    config: dict
    seed: int
    model: GenotypeMLP
    metrics: dict = field(default_factory=dict)
    role: str = "grid"
    fold: int | None = None

    @property
    def key(self) -> str:
        return member_key(self.config, self.seed, self.role)


def member_key(config: dict, seed: int, role: str) -> str:
    """A file-name-safe identifier of (role, configuration, seed)."""
    h1, h2 = config["hidden"]
    return f"{role}-{h1}x{h2}-l1_{config['l1']:g}-lr_{config['lr']:g}-seed{int(seed)}"


def config_json(config: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}


def config_from_json(d: dict) -> dict:
    d = dict(d)
    d["hidden"] = tuple(int(h) for h in d["hidden"])
    if len(d["hidden"]) != 2 or min(d["hidden"]) < 1:
        raise ValueError(f"hidden must be two positive widths, got {d['hidden']}")
    return d


@dataclass
class DeepFit:
    """Everything needed to use the trained networks later or elsewhere.

    ``variants`` (chrom, pos, snp, a1, a2) are the model inputs in column order; ``center``
    (float32, n_snps) = 2 x A1 frequency among the training samples (inputs are dosage -
    center, missing -> 0); ``covar_mean`` / ``covar_scale`` standardize the covariates
    ``covar_names``; ``split`` indexes ``samples`` (fid, iid of the genotypes passed to
    ``train``); ``y_mean`` / ``y_scale`` standardize a quantitative trait (0 / 1 for a binary
    one: the network's output is the logit); ``selected`` is the chosen configuration (or
    None); ``config`` holds the training options. ``folds`` (int64, one per sample, -1 =
    in no fold) is set once a cross-fitted refit has been made (:func:`make_folds`); the
    members with a ``fold`` were trained on the other folds, all with the same ``center``.
    """

    members: list
    variants: pd.DataFrame
    center: np.ndarray
    covar_names: list
    covar_mean: np.ndarray
    covar_scale: np.ndarray
    split: Split
    samples: pd.DataFrame
    trait: str
    y_mean: float = 0.0
    y_scale: float = 1.0
    selected: dict | None = None
    config: dict = field(default_factory=dict)
    folds: np.ndarray | None = None

    @property
    def n_snps(self) -> int:
        return len(self.variants)

    def members_by_role(self, role: str) -> list:
        """Members with ``role`` ('grid', 'refit' or 'null'), in training order."""
        return [m for m in self.members if m.role == role]

    def metrics_table(self) -> pd.DataFrame:
        """One row per member: role, h1, h2, l1, lr, seed and every metric."""
        rows = []
        for m in self.members:
            h1, h2 = m.config["hidden"]
            rows.append({"role": m.role, "h1": h1, "h2": h2, "l1": m.config["l1"], "lr": m.config["lr"],
                         "seed": m.seed, "fold": -1 if m.fold is None else int(m.fold), **m.metrics})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fit to directory ``path`` (created if needed).

        fit.json is written last (under a temporary name, then renamed) and names every
        other file, so it is the commit point: saving over an earlier fit writes the new
        data files under fresh names beside the old ones, and an interrupted save leaves the
        earlier fit loadable. The files of the earlier fit are removed once the new fit.json
        is in place."""
        d = Path(path)
        (d / "members").mkdir(parents=True, exist_ok=True)
        # plain names for a fresh directory; a generation tag where a fit is already saved
        tag = f"-{secrets.token_hex(4)}" if (d / "fit.json").exists() else ""
        files = {"variants": f"variants{tag}.tsv", "samples": f"samples{tag}.tsv", "arrays": f"arrays{tag}.pt"}
        with atomic_path(d / files["variants"]) as tmp:
            self.variants[VARIANT_COLUMNS].to_csv(tmp, sep="\t", index=False)
        with atomic_path(d / files["samples"]) as tmp:
            self.samples[["fid", "iid"]].to_csv(tmp, sep="\t", index=False)
        arrays = {
            "center": torch.as_tensor(np.asarray(self.center, dtype=np.float32)),
            "split_train": torch.as_tensor(self.split.train),
            "split_early_stop": torch.as_tensor(self.split.early_stop),
            "split_validation": torch.as_tensor(self.split.validation),
            "covar_mean": torch.as_tensor(np.asarray(self.covar_mean, dtype=np.float64).reshape(-1)),
            "covar_scale": torch.as_tensor(np.asarray(self.covar_scale, dtype=np.float64).reshape(-1)),
        }
        if self.folds is not None:
            arrays["folds"] = torch.as_tensor(np.asarray(self.folds, dtype=np.int64))
        _save_tensors(d / files["arrays"], arrays)
        members = []
        for i, m in enumerate(self.members):
            name = f"members/{i:03d}{tag}.pt"
            save_member_weights(d / name, m.model)
            members.append({"config": config_json(m.config), "seed": int(m.seed), "role": m.role,
                            "metrics": m.metrics, "file": name,
                            "fold": None if m.fold is None else int(m.fold)})
        hashes = {name: _sha256(d / name) for name in [*files.values(), *(m["file"] for m in members)]}
        meta = {
            "format": FORMAT, "trait": self.trait, "n_snps": self.n_snps,
            "covar_names": list(self.covar_names), "y_mean": float(self.y_mean),
            "y_scale": float(self.y_scale),
            "selected": config_json(self.selected) if self.selected else None,
            "config": self.config, "files": files, "members": members, "sha256": hashes,
        }
        with atomic_path(d / "fit.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1, default=_json_default))
        # the earlier fit's files: exactly the names save writes (plain or generation-tagged)
        ours = re.compile(r"(variants|samples)(-[0-9a-f]{8})?\.tsv|arrays(-[0-9a-f]{8})?\.pt|"
                          r"members/\d{3,}(-[0-9a-f]{8})?\.pt")
        for f in [*d.glob("*"), *(d / "members").glob("*")]:
            name = f.relative_to(d).as_posix()
            if f.is_file() and ours.fullmatch(name) and name not in hashes:
                f.unlink()
        return d

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DeepFit":
        """Read a fit written by :meth:`save`; InputError on any corrupt or inconsistent file."""
        d = Path(path)
        fj = d / "fit.json"
        if not fj.is_file():
            raise InputError("no fit.json here: not a saved gwaslift deep fit", d)
        try:
            meta = json.loads(fj.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"fit.json is not valid JSON ({exc})", fj) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"unknown format {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r}", fj)
        try:
            files = _data_files(meta)
            if meta["trait"] not in ("binary", "quantitative"):
                raise InputError(f"trait must be 'binary' or 'quantitative', got {meta['trait']!r}", fj)
            for k in ("y_mean", "y_scale"):
                if isinstance(meta[k], bool) or not isinstance(meta[k], (int, float)) or not np.isfinite(meta[k]):
                    raise InputError(f"{k} must be a finite number, got {meta[k]!r}", fj)
            for name, h in meta["sha256"].items():
                if Path(name).is_absolute() or ".." in Path(name).parts:
                    raise InputError(f"fit.json lists {name!r}, outside the fit's directory", fj)
                p = d / name
                if not p.is_file():
                    raise InputError("file listed in fit.json is missing", p)
                if _sha256(p) != h:
                    raise InputError("checksum mismatch: the file is corrupt or was changed after saving", p)
            # no NA conversion: "NA" or "null" is a legal SNP ID (read_plink keeps it as text)
            variants = pd.read_csv(d / files["variants"], sep="\t", keep_default_na=False,
                                   dtype={"chrom": str, "snp": str, "a1": str, "a2": str})
            samples = pd.read_csv(d / files["samples"], sep="\t", dtype=str, keep_default_na=False)
            if list(variants.columns) != VARIANT_COLUMNS or len(variants) != meta["n_snps"]:
                raise InputError(f"expected columns {VARIANT_COLUMNS} and {meta['n_snps']} rows", d / files["variants"])
            variants["pos"] = variants["pos"].astype(np.int64)
            arrays = _load_tensors(d / files["arrays"])
            center = arrays["center"].numpy().astype(np.float32)
            if center.shape != (meta["n_snps"],):
                raise InputError(f"center has shape {tuple(center.shape)}, expected ({meta['n_snps']},)", d / files["arrays"])
            split = Split(arrays["split_train"].numpy(), arrays["split_early_stop"].numpy(),
                          arrays["split_validation"].numpy())
            folds = arrays["folds"].numpy().astype(np.int64) if "folds" in arrays else None
            if folds is not None and folds.shape != (len(samples),):
                raise InputError(f"folds has shape {tuple(folds.shape)}, expected ({len(samples)},)", d / files["arrays"])
            n_covar = len(meta["covar_names"])
            members = []
            for rec in meta["members"]:
                cfg = config_from_json(rec["config"])
                model = GenotypeMLP(meta["n_snps"], cfg["hidden"], n_covar)
                load_member_weights(d / rec["file"], model)
                fold = rec.get("fold")  # absent in fits saved before cross-fitting existed
                if fold is not None and (folds is None or not 0 <= int(fold) <= int(folds.max())):
                    raise InputError(f"member {rec['file']} names fold {fold}, which the saved folds lack", fj)
                members.append(Member(cfg, int(rec["seed"]), model, dict(rec["metrics"]), rec["role"],
                                      None if fold is None else int(fold)))
            selected = config_from_json(meta["selected"]) if meta["selected"] else None
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, pd.errors.ParserError) as exc:
            raise InputError(f"inconsistent saved fit ({type(exc).__name__}: {exc})", d) from None
        return cls(
            members=members, variants=variants, center=center, covar_names=list(meta["covar_names"]),
            covar_mean=arrays["covar_mean"].numpy(), covar_scale=arrays["covar_scale"].numpy(),
            split=split, samples=samples, trait=meta["trait"], y_mean=meta["y_mean"],
            y_scale=meta["y_scale"],
            selected=selected, config=meta["config"], folds=folds,
        )


def _data_files(meta: dict) -> dict:
    """The data file names a fit.json names (fits saved before the names were recorded
    used the plain ones)."""
    files = meta.get("files") or {"variants": "variants.tsv", "samples": "samples.tsv", "arrays": "arrays.pt"}
    if not isinstance(files, dict) or set(files) != {"variants", "samples", "arrays"} or not all(
            isinstance(v, str) and "/" not in v and "\\" not in v and not v.startswith(".") for v in files.values()):
        raise InputError(f"fit.json 'files' must name the variants, samples and arrays files, got {files!r}")
    return files


def load_fit(path: str | os.PathLike) -> DeepFit:
    """Load a :class:`DeepFit` saved with ``DeepFit.save`` (see the module docstring)."""
    return DeepFit.load(path)


# ---------------------------------------------------------------------- tensor files
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for blk in iter(lambda: fh.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _save_tensors(path: Path, tensors: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)


def _load_tensors(path: Path) -> dict:
    """torch.load(weights_only=True) of a dict of tensors; InputError on anything else."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / non-tensor files
        raise InputError(f"not a readable tensor file ({type(exc).__name__}: {str(exc)[:200]})", path) from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise InputError("expected a dict of named tensors", path)
    return obj


def save_member_weights(path: Path, model: GenotypeMLP) -> None:
    _save_tensors(path, model.state_dict())


def load_member_weights(path: Path, model: GenotypeMLP) -> None:
    """Load weights into ``model``; InputError if names or shapes differ from its architecture."""
    state = _load_tensors(path)
    want = model.state_dict()
    if set(state) != set(want):
        raise InputError(f"weight names {sorted(state)} do not match the network's {sorted(want)}", path)
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise InputError(f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)} "
                             "(another SNP list or architecture)", path)
        # non-finite values are allowed: a member that diverged in training is saved as it is
        # (the checksums catch corrupt files; attribution refuses diverged members)
        if state[k].dtype != torch.float32:
            raise InputError(f"{k} must be float32, got {state[k].dtype}", path)
    model.load_state_dict(state)
    model.float().eval()
