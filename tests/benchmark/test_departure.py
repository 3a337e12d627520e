"""The benchmark's departure table: where zero-shot maps leave the common pattern."""

import numpy as np
import pandas as pd
import pytest

from geneshot.benchmark._departure import (
    COLUMNS,
    departure_bins,
    departure_table,
    depth_method,
    fold_departures,
)

GENES = [f"G{i}" for i in range(16)]
CFG = {
    "methods": {
        "m": {"model": "gene-kernel", "setting": "zero-shot"},
        "common": {"model": "depth", "setting": "zero-shot"},
        "ceiling": {"model": "ridge", "setting": "supervised"},
    },
    "train_targets": ["libsize"],
    "headline": "libsize",
    "bootstrap": {"n_boot": 200, "seed": 0, "level": 0.95},
}


def _fold(rng, fid: str) -> list[dict]:
    common = rng.normal(size=(50, 1))
    depth = np.repeat(common, len(GENES), axis=1)
    model = 2.0 * depth + 1.0  # the common pattern, rescaled: departure 0
    model[:, 8:] = rng.normal(size=(50, 8))  # the second half leaves it
    preds = {"m": [model], "common": [depth], "ceiling": [model], "ablation:x": [model]}
    return fold_departures(fid, GENES, preds, CFG)


def test_fold_departures_cover_zero_shot_methods_only():
    rows = _fold(np.random.default_rng(0), "f0")
    assert depth_method(CFG) == "common"
    assert {r["method"] for r in rows} == {"m"}  # not depth, the supervised ceiling, ablations
    d = pd.DataFrame(rows).set_index("gene")["departure"]
    np.testing.assert_allclose(d[GENES[:8]], 0.0, atol=1e-12)
    assert (d[GENES[8:]] > 0.5).all()


def test_the_table_puts_the_fallback_genes_at_depth_and_the_gain_where_maps_depart():
    rng = np.random.default_rng(1)
    rows = _fold(rng, "f0") + _fold(rng, "f1")
    r_depth = pd.Series(0.2, index=GENES)
    # where the model draws the common pattern it scores as depth; elsewhere better
    r = pd.Series(np.r_[np.full(8, 0.2), np.linspace(0.3, 0.6, 8)], index=GENES)
    per_gene = {
        ("m", "libsize", "libsize"): pd.DataFrame({"r_per_section": r}),
        ("common", "libsize", "libsize"): pd.DataFrame({"r_per_section": r_depth}),
    }
    table = departure_table(rows, per_gene, CFG)
    assert list(table.columns) == COLUMNS
    assert table["bin"].tolist() == ["1/4", "2/4", "3/4", "4/4"]
    assert table["genes"].tolist() == [4, 4, 4, 4]
    assert table["mean_diff_r"].iloc[:2].tolist() == pytest.approx([0.0, 0.0])
    assert (table["mean_diff_r"].iloc[2:] > 0.09).all()
    assert table["departure_hi"].iloc[1] < 1e-9 < table["departure_lo"].iloc[2]
    assert (table["n_below_depth"] == 0).all()
    # a gene dragged below depth is counted in its bin
    r2 = r.copy()
    r2["G15"] = 0.1
    per_gene[("m", "libsize", "libsize")] = pd.DataFrame({"r_per_section": r2})
    assert departure_table(rows, per_gene, CFG)["n_below_depth"].sum() == 1


def test_no_depth_control_no_table():
    cfg = {**CFG, "methods": {"m": CFG["methods"]["m"]}}
    assert fold_departures("f0", GENES, {"m": [np.zeros((5, 16))]}, cfg) == []
    assert departure_table([], {}, cfg).empty


def test_fewer_genes_than_bins_give_a_bin_per_gene():
    s = pd.Series([0.1, 0.2], index=["a", "b"])
    t = departure_bins(s, s + 0.1, s, "m", CFG["bootstrap"])
    assert t["bin"].tolist() == ["1/2", "2/2"] and t["mean_diff_r"].tolist() == pytest.approx([0.1] * 2)
    assert departure_bins(s[[]], s, s, "m", CFG["bootstrap"]).empty


def test_against_common_scores_the_run_and_its_common_pattern_on_the_same_genes():
    from geneshot.benchmark._departure import against_common
    from geneshot.metrics import evaluate_predictions

    rng = np.random.default_rng(2)
    ys, preds, commons = [], [], []
    for _ in range(2):  # two sections
        common = rng.normal(size=60)
        own = rng.normal(size=(60, 8))
        y = common[:, None] + own  # half the variance is the common pattern's
        p = np.repeat(common[:, None], 8, axis=1)
        p[:, 4:] += own[:, 4:]  # the model knows genes 4-7's own pattern
        ys.append(y)
        preds.append(p)
        commons.append(common)
    genes = [f"G{i}" for i in range(8)]
    ids = np.repeat(["S1", "S2"], 60)
    _, scored = evaluate_predictions(np.vstack(ys), np.vstack(preds), genes, ids)
    r_model = scored["r_per_section"]
    per_gene, bins, pcc_m = against_common(ys, preds, commons, genes, ["S1", "S2"], "m", r_model)
    np.testing.assert_allclose(per_gene["departure"].iloc[:4], 0.0, atol=1e-12)
    assert (per_gene["departure"].iloc[4:] > 0.2).all()
    np.testing.assert_allclose(per_gene["gain"].iloc[:4], 0.0, atol=1e-12)
    assert (per_gene["gain"].iloc[4:] > 0.2).all()
    assert 0.5 < pcc_m < 0.9  # corr of y with the common part alone, about 1 / sqrt(2)
    assert bins["mean_diff_r"].iloc[:2].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert (bins["mean_diff_r"].iloc[2:] > 0.2).all()
