"""analyze() end to end on a small simulation; Analysis save/load; the joined table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gwaslift
from gwaslift import InputError
from gwaslift.pipeline import join_tables
from gwaslift.simulate import hao

SMALL_RUN = dict(n_pcs=3, hidden=[(32, 64)], l1=[0.1, 1.0], seeds=[0, 1], refit_seeds=[2, 3],
                 epochs=30, patience=5, progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("analysis")
    # a quantitative trait with strong effects: both methods should see the causal SNPs
    sim = hao(1200, 300, trait="quantitative", seed=11, effect_sd=1.0, out=d / "cohort" / "sim")
    analysis = gwaslift.analyze(sim.prefix, sim.paths["pheno"], out=d / "out", **SMALL_RUN)
    return sim, analysis, d / "out"


def test_causal_snps_rank_high_in_both_methods(run):
    sim, a, _ = run
    causal = set(sim.truth.snp)
    t = a.table
    top_linear = set(t.loc[t.rank_linear <= 20, "snp"])
    top_deeplift = set(t.loc[t.rank_deeplift <= 20, "snp"])
    # 300 SNPs, 10 causal: by chance about 0.7 of 10 would land in a top 20
    assert len(causal & top_linear) >= 5, sorted(causal & top_linear)
    assert len(causal & top_deeplift) >= 5, sorted(causal & top_deeplift)


def test_tables_are_keyed_alike(run):
    _, a, _ = run
    assert a.sumstats.snp.tolist() == a.scores.snp.tolist() == a.table.snp.tolist()
    for col in ("chrom", "pos", "snp", "a1", "a2", "beta", "p", "log10_p", "deeplift_mean_abs",
                "rank_linear", "rank_deeplift"):
        assert col in a.table
    assert a.table.rank_linear.min() == 1 and a.table.rank_deeplift.min() == 1
    assert a.summary["deeplift_max_delta_error"] < 1e-3
    assert a.summary["model"] == "linear"
    assert set(a.selection.role) >= {"grid", "refit"}


def test_top_lists_both_methods(run):
    _, a, _ = run
    top = a.top(5)
    assert top.in_linear.sum() >= 5 and top.in_deeplift.sum() >= 5
    assert (top.in_both == (top.in_linear & top.in_deeplift)).all()


def test_outputs_written(run):
    _, _, out = run
    names = {p.name for p in out.iterdir()}
    for expected in ("sumstats.glm.linear", "sumstats.ssf.tsv", "scores.tsv", "table.tsv", "qc_report.tsv",
                     "config.json", "summary.json", "report.md", "miami.png", "miami.pdf", "manhattan.png",
                     "qq.png", "models"):
        assert expected in names, expected
    report = (out / "report.md").read_text()
    assert "![miami](miami.png)" in report and "Top 10 SNPs" in report
    assert not [n for n in names if ".tmp-" in n]


def test_save_load_roundtrip(run, tmp_path):
    _, a, out = run
    b = gwaslift.load(out)
    for name in ("sumstats", "scores", "table", "qc_report", "selection"):
        left = getattr(a, name).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, getattr(b, name), check_dtype=False, check_exact=False, rtol=1e-12)
    assert b.config == a.config
    assert b.models is not None and len(b.models.members) == len(a.models.members)
    # a second save of the loaded analysis reproduces the tables
    b.save(tmp_path / "again", models=False, figures=False)
    c = gwaslift.load(tmp_path / "again", models=False)
    pd.testing.assert_frame_equal(b.table, c.table)


def test_load_rejects_non_analysis(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        gwaslift.load(tmp_path / "nothing")
    with pytest.raises(InputError, match="config.json"):
        gwaslift.load(tmp_path)


def test_unwritable_out_fails_before_work(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    import gwaslift.io as gio

    def boom(*a, **k):
        raise AssertionError("read_plink must not run when --out is unwritable")

    monkeypatch.setattr(gio, "read_plink", boom)
    with pytest.raises(InputError, match="not writable"):
        gwaslift.analyze("whatever", out=blocker / "sub")


def test_unknown_option():
    with pytest.raises(TypeError, match="unknown options"):
        gwaslift.analyze("x", n_pc=3)


def test_join_tables_ranks():
    ss = pd.DataFrame({"snp": ["a", "b", "c"], "p": [0.5, 1e-10, 0.01], "log10_p": [0.30103, 10, 2]})
    sc = pd.DataFrame({"snp": ["c", "a", "b"], "deeplift_mean_abs": [0.3, 0.1, 0.2]})
    t = join_tables(ss, sc)
    assert t.snp.tolist() == ["a", "b", "c"]
    assert t.rank_linear.tolist() == [3, 1, 2]
    assert t.rank_deeplift.tolist() == [3, 2, 1]
    assert np.allclose(t.deeplift_mean_abs, [0.1, 0.2, 0.3])


def test_zero_scores_and_missing_p_are_in_no_top_list():
    """Strong L1 leaves most SNPs with a DeepLIFT score of exactly 0: they must not tie into
    the top k (nor SNPs without a p), in the table, in Analysis.top or in the report."""
    from gwaslift.pipeline import Analysis, _few_scored_lines

    n = 30
    lp = np.linspace(8.0, 0.1, n)
    lp[5] = np.nan
    ss = pd.DataFrame({"chrom": "1", "pos": np.arange(n), "snp": [f"s{i}" for i in range(n)], "a1": "A",
                       "a2": "C", "p": 10 ** -lp, "log10_p": lp})
    score = np.zeros(n)
    score[[2, 7, 20]] = [0.3, 0.2, 0.1]
    t = join_tables(ss, pd.DataFrame({"snp": ss.snp, "deeplift_mean_abs": score}))
    assert t.rank_deeplift[[2, 7, 20]].tolist() == [1, 2, 3]
    assert (t.rank_deeplift.drop([2, 7, 20]) == n).all() and t.rank_linear[5] == n
    a = Analysis(sumstats=ss, scores=t[["snp", "deeplift_mean_abs"]], table=t, qc_report=pd.DataFrame(),
                 pcs=pd.DataFrame(), selection=pd.DataFrame(), config={}, summary={})
    top = a.top(10)
    assert set(top.snp[top.in_deeplift]) == {"s2", "s7", "s20"}
    assert len(top[top.in_linear]) == 10 and "s5" not in set(top.snp)
    assert "Only 3 SNPs have a nonzero DeepLIFT score" in _few_scored_lines(a, 10)[0]


def test_join_tables_by_row_when_ids_repeat():
    """Unnamed variants ("." IDs, which plink2 accepts) join by row; in different orders they
    are an InputError, not a late MergeError."""
    ss = pd.DataFrame({"snp": [".", "b", "."], "p": [0.5, 1e-10, 0.01], "log10_p": [0.30103, 10, 2]})
    sc = pd.DataFrame({"snp": [".", "b", "."], "deeplift_mean_abs": [0.3, 0.1, 0.2]})
    t = join_tables(ss, sc)
    assert t.deeplift_mean_abs.tolist() == [0.3, 0.1, 0.2] and t.rank_deeplift.tolist() == [1, 3, 2]
    with pytest.raises(InputError, match="SNP IDs repeat"):
        join_tables(ss, sc.iloc[[1, 0, 2]])


def test_covariate_columns_named_like_the_pcs_are_refused(run, tmp_path):
    """PC1.. in the covariate file clash with the PCs analyze computes: a clear error naming
    them, before the GWAS (before: an AttributeError inside the regression)."""
    sim, a, _ = run
    cov = a.pcs[["fid", "iid", "PC1"]].rename(columns={"fid": "#FID", "iid": "IID"})
    cov.to_csv(tmp_path / "pcs.txt", sep="\t", index=False)
    with pytest.raises(InputError, match=r"columns \['PC1'\], the names of the 3 PCs"):
        gwaslift.analyze(sim.prefix, sim.paths["pheno"], covar=tmp_path / "pcs.txt", **SMALL_RUN)


def test_rerun_into_the_same_out_with_other_options(tmp_path):
    """As plink2 overwrites an --out: a second analysis with other training options into the
    same directory trains afresh (checkpoints are kept per run), instead of failing at the
    training stage on the first run's checkpoints."""
    sim = hao(300, 60, trait="quantitative", seed=2, out=tmp_path / "sim")
    kw = dict(SMALL_RUN, n_pcs=1, hidden=[(8, 8)], l1=[0.1], seeds=[0], refit_seeds=[1], null="none")
    gwaslift.analyze(sim.prefix, sim.paths["pheno"], out=tmp_path / "out", **dict(kw, epochs=2))
    b = gwaslift.analyze(sim.prefix, sim.paths["pheno"], out=tmp_path / "out", **dict(kw, epochs=3))
    assert b.config["epochs"] == 3 and len(list((tmp_path / "out" / "checkpoints").iterdir())) == 2


def test_training_memory_budget_changes_nothing_but_the_waves(tmp_path, training_waves):
    """``max_state_bytes`` small enough for one network at a time: the grid, the refits and
    the decoy refits train in waves, and the whole analysis (GWAS, scores, decoy p-values) is
    the same to the bit as with the default budget; the checkpoint folder is the same too, so
    a rerun with another budget resumes."""
    import importlib

    from gwaslift.pipeline import DEFAULTS, _checkpoint_dir

    train_mod = importlib.import_module("gwaslift.deep.train")
    waves = training_waves
    sim = hao(300, 60, trait="quantitative", seed=4, out=tmp_path / "sim")
    kw = dict(SMALL_RUN, n_pcs=1, hidden=[(8, 8)], l1=[0.1, 1.0], seeds=[0], refit_seeds=[1, 2], epochs=3)
    a = gwaslift.analyze(sim.prefix, sim.paths["pheno"], **kw)
    assert [len(w) for w in waves] == [2, 2, 2]  # grid, refits, decoy refits
    waves.clear()
    one = train_mod.member_state_bytes(120, {"hidden": (8, 8)}, n_covar=1)  # decoys double the inputs
    b = gwaslift.analyze(sim.prefix, sim.paths["pheno"], max_state_bytes=one, **kw)
    assert [len(w) for w in waves] == [1, 1, 1, 1, 1, 1]
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    cfg = {**DEFAULTS, **kw}
    assert _checkpoint_dir(tmp_path, cfg, "x", None, None) == \
        _checkpoint_dir(tmp_path, {**cfg, "max_state_bytes": one}, "x", None, None)
    assert _checkpoint_dir(tmp_path, cfg, "x", None, None) != \
        _checkpoint_dir(tmp_path, {**cfg, "precision": "bf16"}, "x", None, None)


def test_report_p_values_beyond_float_range():
    """An underflowed p (0.0 in the p column) is written from -log10 p, as plink2 does."""
    from gwaslift.pipeline import _fmt_p

    assert _fmt_p(667.48925) == "3.24e-668" and _fmt_p(0.30103) == "0.5" and _fmt_p(8.0) == "1e-08"
    assert _fmt_p(float("nan")) == "NA"


def test_decoy_significance_in_table_summary_and_report(run):
    sim, a, out = run
    s = a.summary
    assert s["null"] == "decoys" and s["n_decoys"] == s["n_variants_qc"] and s["n_null"] == 0
    t = a.table
    for col in ("deeplift_p", "deeplift_q", "deeplift_fdr", "deeplift_fwer", "deeplift_decoy_fit"):
        assert col in t, col
    assert t.deeplift_p.between(0, 1).all() and s["n_deeplift_fdr"] == int(t.deeplift_fdr.sum())
    causal = t.snp.isin(sim.truth.snp)
    assert t.loc[causal, "deeplift_fdr"].sum() >= 3
    assert t.loc[~causal, "deeplift_fwer"].sum() <= 1
    assert "decoy SNPs" in (out / "report.md").read_text()
    assert a.fwer_threshold is None  # in decoy-fit units: not drawn on the mean |DeepLIFT| axis


def test_permutation_null_still_available(tmp_path):
    sim = hao(300, 60, trait="quantitative", seed=3, out=tmp_path / "sim")
    a = gwaslift.analyze(sim.prefix, sim.paths["pheno"], null="permutation", n_null=1,
                         **{**SMALL_RUN, "l1": [1.0], "seeds": [0], "refit_seeds": [1]})
    assert a.summary["null"] == "permutation" and a.summary["n_null"] == 1
    assert "deeplift_p" in a.table and "deeplift_decoy_fit" not in a.table
    with pytest.raises(InputError, match="null must be"):
        gwaslift.analyze(sim.prefix, sim.paths["pheno"], null="bogus", **SMALL_RUN)


def test_cross_fitted_refits_and_their_decoy_fits(tmp_path):
    """``cross_fit=True``: the refits and the decoy refits of the selected model share one set
    of folds (one per refit seed), and the report says how the refits were trained."""
    sim = hao(400, 60, trait="quantitative", seed=3, out=tmp_path / "sim")
    a = gwaslift.analyze(sim.prefix, sim.paths["pheno"], cross_fit=True, out=tmp_path / "out",
                         **{**SMALL_RUN, "l1": [1.0], "seeds": [0], "refit_seeds": [1, 2, 3]})
    fit = a.models
    assert fit.folds is not None and set(np.unique(fit.folds)) <= {-1, 0, 1, 2}
    assert [m.fold for m in fit.members_by_role("refit")] == [0, 1, 2]
    assert a.scores.deeplift_p.between(0, 1).all()
    assert "cross-fitted" in (tmp_path / "out" / "report.md").read_text()
    back = gwaslift.load(tmp_path / "out")
    np.testing.assert_array_equal(back.models.folds, fit.folds)
