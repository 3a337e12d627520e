"""An issue's acceptance declared in the config and judged from the run's own tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geneshot.benchmark import acceptance, acceptance_summary, resolve_config
from geneshot.errors import InputError

METHODS = ("align-st", "gene-kernel", "permuted-text", "depth", "ridge")
SPEC = {
    "pcc_m": 0.20,
    "ratio": {"permuted-text": 1.5},
    "above": {"gene-kernel": None, "depth": 0.01},
    "mse_at_most": ["depth"],
    "maps_below": {"genes": ["ERBB2", "KRT19", "COL1A1"], "pcc": 0.8},
}


def _cfg(spec=SPEC) -> dict:
    methods = {m: {} for m in METHODS}
    methods["ridge"] = {"setting": "supervised"}
    return resolve_config({"methods": methods, "acceptance": spec})


def _results(pcc: dict, mse: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "method": m,
                "model": m,
                "label": m,
                "group": "supervised" if m == "ridge" else "zero-shot",
                "setting": "supervised" if m == "ridge" else "zero-shot",
                "trained_on": "libsize",
                "convention": "libsize",
                "pcc_m_section": pcc[m],
                "mse": mse[m],
                "n_folds": 5,
            }
            for m in pcc
        ]
    )


def _paired(p_depth: float, diff_depth: float = 0.05) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "convention": "libsize",
                "trained_on": "libsize",
                "method_a": "align-st",
                "method_b": b,
                "p_wilcoxon": p,
                "mean_diff_r": d,
            }
            for b, p, d in (("gene-kernel", 0.5, 0.01), ("depth", p_depth, diff_depth))
        ]
    )


def _maps(erbb2_like_krt19: bool) -> list[dict]:
    """C2's maps: ERBB2 a copy of KRT19 (one common pattern) or its own pattern."""
    rng = np.random.default_rng(0)
    krt19, col1a1, own = rng.normal(size=(3, 200))
    erbb2 = krt19 + 0.01 * own if erbb2_like_krt19 else own
    genes = ["ERBB2", "KRT19", "COL1A1", "IGKC"]
    values = np.column_stack([erbb2, krt19, col1a1, rng.normal(size=200)])
    return [
        {
            "fold": "f0",
            "section": "C2",
            "genes": genes,
            "values": {"measured": values, "align-st": values},
        }
    ]


GOOD = dict(
    pcc={
        "align-st": 0.25,
        "gene-kernel": 0.22,
        "permuted-text": 0.13,
        "depth": 0.13,
        "ridge": 0.32,
    },
    mse={"align-st": 2.5, "gene-kernel": 2.5, "permuted-text": 2.6, "depth": 2.6, "ridge": 0.4},
)


def test_every_point_holds_on_a_run_that_meets_them():
    table = acceptance(_results(**GOOD), _paired(1e-4), _maps(False), _cfg())
    assert list(table.columns) == ["criterion", "value", "needed", "holds"]
    # pcc, ratio, above gene-kernel, above depth (mean and paired), mse, 3 map pairs
    assert len(table) == 9 and (table["holds"] == "yes").all()
    assert acceptance_summary(table).startswith(
        "Acceptance (config `acceptance`): 9 of 9 points hold"
    )


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"pcc": {"align-st": 0.199, "gene-kernel": 0.19}}, "align-st PCC@M"),
        ({"pcc": {"gene-kernel": 0.26}}, "align-st PCC@M minus gene-kernel's"),
        ({"pcc": {"permuted-text": 0.2}}, "align-st PCC@M / permuted-text's"),
        ({"mse": {"align-st": 2.7}}, "align-st MSE"),
    ],
)
def test_a_point_that_misses_is_named(change, failing):
    run = {k: {**GOOD[k], **change.get(k, {})} for k in GOOD}
    table = acceptance(_results(**run), _paired(1e-4), _maps(False), _cfg())
    assert table.loc[table["holds"] == "no", "criterion"].tolist() == [failing]
    assert f"not: {failing}" in acceptance_summary(table)


def test_the_paired_test_and_the_maps_are_judged():
    table = acceptance(_results(**GOOD), _paired(0.03), _maps(True), _cfg())
    bad = table.loc[table["holds"] == "no", "criterion"].tolist()
    assert bad == [
        "align-st above depth per gene (paired Wilcoxon p)",
        "align-st's maps ERBB2–KRT19 on C2 (PCC)",
    ]
    row = table.set_index("criterion").loc["align-st's maps ERBB2–KRT19 on C2 (PCC)"]
    assert row["value"] > 0.99


def test_a_significant_test_the_wrong_way_round_does_not_pass():
    # below depth per gene, significantly: the mean over sections alone would pass
    table = acceptance(_results(**GOOD), _paired(1e-4, diff_depth=-0.02), _maps(False), _cfg())
    bad = table.loc[table["holds"] == "no", "criterion"].tolist()
    assert bad == ["align-st above depth per gene (paired Wilcoxon p)"]


def test_points_without_a_result_are_not_judged():
    run = {k: {m: v for m, v in GOOD[k].items() if m != "depth"} for k in GOOD}
    table = acceptance(_results(**run), pd.DataFrame(), [], _cfg())
    unjudged = table.loc[table["holds"] == "not judged", "criterion"].tolist()
    assert "align-st PCC@M minus depth's" in unjudged and "align-st MSE" in unjudged
    assert any("maps" in c for c in unjudged)
    assert "not judged (no result)" in acceptance_summary(table)


def test_no_acceptance_field_gives_an_empty_table():
    table = acceptance(_results(**GOOD), _paired(1e-4), _maps(False), _cfg(None))
    assert table.empty and acceptance_summary(table) == ""


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ({"pcc": 0.2}, "acceptance.pcc"),
        ({"above": {"gene-kernal": None}}, "acceptance.above"),
        ({"maps_below": {"genes": ["ERBB2"]}}, "acceptance.maps_below"),
        ({"fallback": True}, "acceptance.fallback"),
        ({"fallback": 2}, "acceptance.fallback"),
        ({"genes_spread": "yes"}, "acceptance.genes_spread"),
        ([0.2], "'acceptance'"),
    ],
)
def test_a_bad_acceptance_field_fails_with_its_name(spec, names):
    with pytest.raises(InputError) as err:
        _cfg(spec)
    assert names in str(err.value)


def test_the_default_config_carries_issue_10s_acceptance():
    cfg = resolve_config(Path(__file__).resolve().parents[2] / "configs" / "her2st_zero_shot.yaml")
    spec = cfg["acceptance"]
    assert spec["pcc_m"] == 0.20 and spec["above"]["depth"] == 0.01
    assert set(spec["above"]) == {"gene-kernel", "text-knn", "depth"}
    assert spec["maps_below"] == {"genes": ["ERBB2", "KRT19", "COL1A1"], "pcc": 0.8}
    assert spec["fallback"] == 0.01 and spec["genes_spread"] is True


def _bins(diff: list[float], p: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": "align-st",
            "bin": [f"{i + 1}/4" for i in range(4)],
            "mean_diff_r": diff,
            "p_wilcoxon": p,
        }
    )


def test_the_fallback_point_reads_the_departure_quartiles():
    cfg = _cfg({"fallback": 0.01})
    name = "align-st: smallest paired p of a departure quartile below depth"

    def judged(bins):
        return acceptance(_results(**GOOD), _paired(1e-4), [], cfg, bins).set_index("criterion").loc[name]

    # below depth but not significantly, and significantly but above: the point holds
    ok = judged(_bins([-0.002, 0.004, 0.007, 0.3], [0.13, 1e-4, 0.4, 1e-8]))
    assert ok["holds"] == "yes" and ok["value"] == pytest.approx(0.13)
    assert judged(_bins([0.0, 0.004, 0.007, 0.3], [1.0, 0.2, 0.4, 1e-8]))["value"] == 1.0
    # one quartile below depth with p under the bound: the point fails, naming the p
    bad = judged(_bins([-0.006, 0.004, 0.007, 0.3], [0.008, 0.2, 0.4, 1e-8]))
    assert bad["holds"] == "no" and bad["value"] == pytest.approx(0.008)
    # another method's quartiles, or none, judge nothing
    assert judged(_bins([-0.5] * 4, [1e-9] * 4).assign(method="depth"))["holds"] == "not judged"
    assert judged(None)["holds"] == "not judged"


def test_the_genes_spread_point_reads_the_cosine_curves_of_the_reference():
    cfg = _cfg({"genes_spread": True})
    name = "align-st: gene-vector cosine, last minus first epoch (mean over folds)"

    def judged(curves):
        table = acceptance(_results(**GOOD), _paired(1e-4), [], cfg, None, curves)
        return table.set_index("criterion").loc[name]

    apart = [{"fold": f, "method": "align-st", "first": 0.9, "last": 0.5} for f in ("f0", "f1")]
    row = judged(apart + [{"fold": "f0", "method": "sgn", "first": 0.1, "last": 0.9}])
    assert row["holds"] == "yes" and row["value"] == pytest.approx(-0.4)
    closer = [{"fold": "f0", "method": "align-st", "first": 0.41, "last": 0.60}]
    assert judged(closer)["holds"] == "no" and judged(closer)["value"] == pytest.approx(0.19)
    assert judged([])["holds"] == "not judged"
