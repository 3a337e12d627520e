"""Metrics, PCC@H subsets, bootstrap intervals and paired tests."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr

from geneshot.errors import InputError
from geneshot.metrics import (
    GeneSubset,
    bootstrap_ci,
    bootstrap_ci_hierarchical,
    evaluate_predictions,
    hpg_select,
    mae,
    mse,
    paired_test,
    pcc_at,
    per_gene_pearson,
    per_gene_spearman,
    per_section_pearson,
    summarise,
    top_expressed,
    top_variable,
)


@pytest.fixture
def yy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    t = rng.random((40, 6))
    p = t * rng.uniform(-1, 1, 6) + rng.normal(0, 0.3, (40, 6))
    return t, p


def test_pearson_and_spearman_match_scipy(yy):
    t, p = yy
    r = per_gene_pearson(t, p)
    rho = per_gene_spearman(t, p)
    for g in range(t.shape[1]):
        assert r[g] == pytest.approx(pearsonr(t[:, g], p[:, g]).statistic, abs=1e-12)
        assert rho[g] == pytest.approx(spearmanr(t[:, g], p[:, g]).statistic, abs=1e-12)


def test_spearman_with_ties_matches_scipy():
    t = np.array([[1, 2], [1, 3], [2, 3], [5, 1], [5, 9.0]])
    p = np.array([[0, 1], [3, 1], [3, 2], [4, 0], [1, 5.0]])
    rho = per_gene_spearman(t, p)
    for g in range(2):
        assert rho[g] == pytest.approx(spearmanr(t[:, g], p[:, g]).statistic, abs=1e-12)


def test_nan_policies_on_constant_columns():
    t = np.array([[0.0, 1.0, 0.1], [1.0, 2.0, 0.1], [2.0, 4.0, 0.1]])
    p = np.array(
        [[0.3, 0.0, 1.0], [0.3, 1.0, 2.0], [0.3, 2.0, 3.0]]
    )  # col 0 constant pred, col 2 constant target
    r_drop = per_gene_pearson(t, p, "drop")
    r_m1 = per_gene_pearson(t, p, "minus_one")
    assert np.isnan(r_drop[0]) and np.isnan(r_drop[2])
    assert r_m1[0] == -1.0 and r_m1[2] == -1.0
    assert r_drop[1] == pytest.approx(pearsonr(t[:, 1], p[:, 1]).statistic)
    s_drop, s_m1 = summarise(r_drop), summarise(r_m1)
    assert s_drop["n_nan"] == 2 and s_drop["pcc_m"] == pytest.approx(r_drop[1])
    assert s_m1["n_nan"] == 0 and s_m1["pcc_m"] == pytest.approx((r_drop[1] - 2) / 3)
    with pytest.raises(InputError, match="nan_policy"):
        per_gene_pearson(t, p, "zero")


def test_summarise_quartiles_and_all_nan():
    r = np.array([0.1, 0.2, 0.3, 0.4, 0.5, np.nan])
    s = summarise(r)
    assert s == {
        "pcc_f": pytest.approx(0.2),
        "pcc_s": pytest.approx(0.3),
        "pcc_m": pytest.approx(0.3),
        "n_genes": 6,
        "n_nan": 1,
    }
    assert np.isnan(summarise([np.nan, np.nan])["pcc_m"])


def test_mse_mae_and_bad_inputs():
    t = np.array([[0.0, 1.0], [1.0, 1.0]])
    p = np.array([[1.0, 1.0], [1.0, 3.0]])
    assert mse(t, p) == pytest.approx((1 + 0 + 0 + 4) / 4)
    assert mae(t, p) == pytest.approx((1 + 0 + 0 + 2) / 4)
    with pytest.raises(InputError, match="shape"):
        mse(t, p[:1])
    with pytest.raises(InputError, match="NaN"):
        per_gene_pearson(t, np.array([[np.nan, 1], [1, 2.0]]))


def test_pooled_and_per_section_differ_on_constructed_example():
    # Within each section prediction and target are anti-correlated, but the sections'
    # offsets agree: pooling gives a strongly positive r (Simpson's paradox).
    t1, t2 = np.array([0.0, 1.0, 2.0]), np.array([10.0, 11.0, 12.0])
    y_true = np.concatenate([t1, t2])[:, None]
    y_pred = np.concatenate([-t1, 20.0 - t2 + 2.0])[:, None]
    sections = ["s1"] * 3 + ["s2"] * 3
    summary, per_gene = evaluate_predictions(y_true, y_pred, ["g"], sections)
    assert summary["per_section"]["pcc_m"] == pytest.approx(-1.0)
    assert summary["pooled"]["pcc_m"] > 0.9
    assert per_gene.loc["g", "r_pooled"] == pytest.approx(
        pearsonr(y_true[:, 0], y_pred[:, 0]).statistic
    )
    assert summary["nan_policy"] == "drop"


def test_per_section_is_spot_weighted_like_triplex():
    rng = np.random.default_rng(3)
    n1, n2 = 30, 10
    t = rng.random((n1 + n2, 4))
    p = t + rng.normal(0, 0.5, t.shape)
    sections = np.array(["a"] * n1 + ["b"] * n2)
    names, r, n = per_section_pearson(t, p, sections)
    assert names == ["a", "b"] and n.tolist() == [n1, n2]
    m = [per_gene_pearson(t[sections == s], p[sections == s]).mean() for s in ("a", "b")]
    summary, per_gene = evaluate_predictions(t, p, list("wxyz"), sections)
    assert summary["per_section"]["pcc_m"] == pytest.approx((n1 * m[0] + n2 * m[1]) / (n1 + n2))
    assert per_gene["r_per_section"].to_numpy() == pytest.approx(
        (n1 * r[0] + n2 * r[1]) / (n1 + n2)
    )
    assert summary["sections"]["b"]["n_spots"] == n2


def test_evaluate_minus_one_policy_and_nan_counts():
    t = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 5.0], [3.0, 6.0]])
    p = np.array([[0.0, 2.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0]])
    sec = ["a", "a", "b", "b"]
    s_drop, g_drop = evaluate_predictions(t, p, ["u", "v"], sec, "drop")
    s_m1, _ = evaluate_predictions(t, p, ["u", "v"], sec, "minus_one")
    # gene v is constant in section a (target) and in section a (prediction): NaN there.
    assert g_drop.loc["v", "n_sections_nan"] == 1
    assert s_drop["per_section"]["n_nan"] == 1
    assert s_m1["nan_policy"] == "minus_one" and s_m1["per_section"]["n_nan"] == 0
    assert s_m1["per_section"]["pcc_m"] < s_drop["per_section"]["pcc_m"]


def test_evaluate_rejects_bad_labels(yy):
    t, p = yy
    with pytest.raises(InputError, match="genes"):
        evaluate_predictions(t, p, list("abc"), ["s"] * 40)
    with pytest.raises(InputError, match="section"):
        evaluate_predictions(t, p, list("abcdef"), ["s"] * 39)
    with pytest.raises(InputError, match="duplicated"):
        evaluate_predictions(t, p, list("abcdea"), ["s"] * 40)


def test_hpg_select_averages_fold_ranks_and_is_flagged():
    genes = list("abcde")
    f0 = pd.Series([0.9, 0.8, 0.1, 0.2, np.nan], index=genes)
    f1 = pd.Series([0.5, 0.7, 0.6, 0.1, 0.99], index=genes)
    hpg = hpg_select([f0, f1], k=2)
    # ranks f0 (NaN lowest): a5 b4 c2 d3 e1; f1: a2 b4 c3 d1 e5 -> mean a3.5 b4 c2.5 d2 e3
    assert hpg.genes == ["b", "a"]
    assert hpg.chosen_on_test and "test" in hpg.source
    # a DataFrame (genes x folds) and a dict give the same set; ranks in, same ranks out
    assert hpg_select(pd.concat([f0, f1], axis=1), k=2).genes == hpg.genes
    assert hpg_select({"x": f0.rank(), "y": f1.rank()}, k=2).genes == hpg.genes
    with pytest.raises(InputError, match="different genes"):
        hpg_select([f0, f1.drop("e")], k=2)
    with pytest.raises(InputError, match="top-10"):
        hpg_select([f0], k=10)


def test_a_priori_subsets_and_pcc_at():
    means = pd.Series({"a": 1.0, "b": 5.0, "c": 5.0, "d": 0.1})
    te = top_expressed(means, k=2)
    assert te.genes == ["b", "c"] and not te.chosen_on_test  # tie broken by name
    vals = pd.DataFrame({"a": [0, 0, 0.0], "b": [0, 5, 10.0], "c": [1, 2, 3.0]})
    tv = top_variable(vals, k=1)
    assert tv.genes == ["b"] and not tv.chosen_on_test
    r = pd.Series({"a": 0.2, "b": np.nan, "c": 0.6, "d": 0.0})
    assert pcc_at(r, te) == pytest.approx(0.6)
    assert pcc_at(r, ["a", "d"]) == pytest.approx(0.1)
    with pytest.raises(InputError, match="not evaluated"):
        pcc_at(r, ["zz"])


def test_evaluate_reports_subset_provenance(yy):
    t, p = yy
    genes = list("abcdef")
    hpg = GeneSubset("hpg", ["a", "b"], "chosen on test", True)
    summary, per_gene = evaluate_predictions(t, p, genes, ["s"] * 40, subsets={"hpg": hpg})
    assert summary["subsets"]["hpg"]["chosen_on_test"] is True
    assert summary["pooled"]["pcc_at_hpg"] == pytest.approx(
        per_gene.loc[["a", "b"], "r_pooled"].mean()
    )
    assert json.loads(json.dumps(summary))["subsets"]["hpg"]["genes"] == ["a", "b"]  # JSON-able
    # one section: per-section equals pooled
    assert summary["per_section"]["pcc_at_hpg"] == pytest.approx(summary["pooled"]["pcc_at_hpg"])


def test_bootstrap_ci_contains_true_mean_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.0, 400)
    a = bootstrap_ci(x, seed=5)
    b = bootstrap_ci(x, seed=5)
    c = bootstrap_ci(x, seed=6)
    assert a == b and a["ci"] != c["ci"]
    lo, hi = a["ci"]
    assert lo < 0.3 < hi and lo < a["estimate"] < hi
    # width close to the normal-theory interval 2 * 1.96 * sd / sqrt(n)
    assert hi - lo == pytest.approx(2 * 1.96 * x.std() / 20, rel=0.15)
    med = bootstrap_ci(x, stat=np.median, n_boot=500)
    assert med["ci"][0] < np.median(x) < med["ci"][1]
    with_nan = bootstrap_ci(np.append(x, np.nan), seed=5)
    assert with_nan["n_nan"] == 1 and with_nan["n"] == 400 and with_nan["ci"] == a["ci"]


def test_bootstrap_ci_coverage_is_about_95_percent():
    rng = np.random.default_rng(42)
    hits = 0
    for i in range(100):
        x = rng.exponential(1.0, 60)
        lo, hi = bootstrap_ci(x, n_boot=500, seed=i)["ci"]
        hits += lo < 1.0 < hi
    assert 85 <= hits <= 100


def test_bootstrap_hierarchical():
    rng = np.random.default_rng(7)
    effects = np.array([-0.05, 0.05, -0.02, 0.02, 0.0, 0.0])[:, None]
    m = 0.4 + effects + rng.normal(0, 0.2, (6, 300))
    w = np.array([100, 200, 300, 100, 200, 300])
    truth = 0.4 + np.average(effects[:, 0], weights=w)
    res = bootstrap_ci_hierarchical(m, w, seed=1)
    assert res == bootstrap_ci_hierarchical(m, w, seed=1)
    expected = np.average(m.mean(1), weights=w)
    assert res["estimate"] == pytest.approx(expected)
    assert res["ci"][0] < truth < res["ci"][1]
    assert res["resampled"] == ["sections", "genes"]
    # resampling sections too makes the interval wider than genes alone
    single = bootstrap_ci(m.mean(0), seed=1)
    assert res["ci"][1] - res["ci"][0] > single["ci"][1] - single["ci"][0]
    one = bootstrap_ci_hierarchical(m[:1], seed=1)
    assert one["resampled"] == ["genes"]
    assert one["estimate"] == pytest.approx(m[0].mean())
    m2 = m.copy()
    m2[0, :5] = np.nan
    assert np.isfinite(bootstrap_ci_hierarchical(m2, w)["ci"]).all()


def test_paired_test_detects_real_difference_not_null():
    rng = np.random.default_rng(11)
    base = rng.normal(0.3, 0.2, 250)
    better = base + 0.05 + rng.normal(0, 0.05, 250)
    same = base + rng.normal(0, 0.05, 250)
    real = paired_test(better, base, seed=0)
    null = paired_test(same, base, seed=0)
    assert (
        real["p_value"] < 1e-6
        and real["ci"][0] > 0
        and real["mean_diff"] == pytest.approx(0.05, abs=0.01)
    )
    assert null["p_value"] > 0.05 and null["ci"][0] < 0 < null["ci"][1]
    assert real["n"] == 250 and set(real) >= {"mean_diff", "ci", "p_value", "n"}
    zero = paired_test(base, base)
    assert zero["p_value"] == 1.0 and zero["mean_diff"] == 0.0


def test_paired_test_aligns_series_and_drops_nan():
    a = pd.Series({"x": 0.5, "y": 0.7, "z": np.nan, "w": 0.1})
    b = pd.Series({"w": 0.0, "z": 0.2, "y": 0.6, "x": 0.4})
    res = paired_test(a, b, n_boot=100)
    assert res["n"] == 3 and res["n_dropped"] == 1
    assert res["mean_diff"] == pytest.approx(0.1)
    with pytest.raises(InputError, match="different genes"):
        paired_test(a, b.drop("x"))


def _old_percentile_mean_ci(v, n_boot, seed, level, chunk=128):
    """The hand-written bootstrap geneshot used before scipy.stats.bootstrap (reference)."""
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        boot[start : start + b] = v[rng.integers(0, v.size, size=(b, v.size))].mean(axis=1)
    a = (1 - level) / 2
    return tuple(float(x) for x in np.quantile(boot, [a, 1 - a])), boot


@pytest.mark.parametrize("n_boot", [10, 200, 1001])
def test_scipy_bootstrap_gives_the_same_intervals_as_before(n_boot):
    v = np.random.default_rng(5).normal(0.2, 0.3, 57)
    ci, boot = _old_percentile_mean_ci(v, n_boot, 3, 0.9)
    assert bootstrap_ci(v, n_boot=n_boot, seed=3, level=0.9)["ci"] == ci
    d = v - np.random.default_rng(6).normal(0.1, 0.3, 57)
    ci_d, boot_d = _old_percentile_mean_ci(d, n_boot, 3, 0.9)
    res = paired_test(d, np.zeros_like(d), n_boot=n_boot, seed=3, level=0.9)
    assert res["ci"] == ci_d
    p_boot = min(1.0, 2.0 * min((boot_d <= 0).mean(), (boot_d >= 0).mean()))
    assert res["p_value_bootstrap"] == p_boot
