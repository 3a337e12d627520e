"""Aggregation over folds: results table, per-gene tables, intervals, paired tests, ablations.

Reports both pooling conventions (paper-notes §1.1), PCC@H on TRIPLEX's test-chosen gene set
(flagged) beside a-priori sets chosen on training data, hierarchical bootstrap intervals and
paired tests of the reference method against each other method.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geneshot.benchmark._verdict import verdict
from geneshot.metrics import (
    HPG_NOTE,
    bootstrap_ci,
    bootstrap_ci_hierarchical,
    hpg_select,
    n_misses,
    paired_test,
)


def _wmean(values: Sequence[float], weights: Sequence[float]) -> float:
    v = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    ok = ~np.isnan(v)
    return (
        float((v[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() and w[ok].sum() > 0 else float("nan")
    )


def _common_genes(recs: list[dict]) -> list[str]:
    """Genes evaluated in every fold (SGN-style splits per fold can differ slightly)."""
    sets = [set(r["genes"]) for r in recs]
    inter = set.intersection(*sets)
    return [gname for gname in recs[0]["genes"] if gname in inter]


def _row_stats(recs: list[dict], cfg: dict) -> tuple[dict, pd.DataFrame]:
    """Aggregate one method x training convention x evaluation convention over its folds."""
    bs = cfg["bootstrap"]
    common = _common_genes(recs)
    n_spots = [r["summary"]["n_spots"] for r in recs]
    cross = recs[0]["cross"]
    st: dict[str, Any] = {
        "n_folds": len(recs),
        "n_genes": len(common),
        "n_spots": int(sum(n_spots)),
    }
    st["mse"] = float("nan") if cross else _wmean([r["summary"]["mse"] for r in recs], n_spots)
    st["mae"] = float("nan") if cross else _wmean([r["summary"]["mae"] for r in recs], n_spots)
    for k in ("pcc_f", "pcc_s", "pcc_m"):
        st[f"{k}_pooled"] = float(np.nanmean([r["summary"]["pooled"][k] for r in recs]))
    secs = [(s, v) for r in recs for s, v in r["summary"]["sections"].items()]
    st["n_sections"] = len(secs)
    for k in ("pcc_f", "pcc_s", "pcc_m"):
        st[f"{k}_section"] = _wmean([v[k] for _, v in secs], [v["n_spots"] for _, v in secs])
    for sub in ("top_expressed", "top_variable"):
        key = f"pcc_at_{sub}"
        st[f"pcc_{sub}_pooled"] = float(
            np.nanmean([r["summary"]["pooled"].get(key, np.nan) for r in recs])
        )
        st[f"pcc_{sub}_section"] = _wmean(
            [r["summary"]["per_section"].get(key, np.nan) for r in recs], n_spots
        )
    # matrices over the common genes: per-fold pooled r (genes x folds) and per-section r
    pooled = pd.DataFrame(
        {r["fold"]: r["per_gene"]["r_pooled"].reindex(common).to_numpy() for r in recs},
        index=common,
    )
    rows, weights = [], []
    for r in recs:
        pos = {gname: i for i, gname in enumerate(r["genes"])}
        idx = [pos[gname] for gname in common]
        rows.append(r["r_sec"][:, idx])
        weights.append(r["n_sec"])
    mat = np.vstack(rows)
    w = np.concatenate(weights).astype(np.float64)
    k = min(int(cfg["subset_k"]), len(common))
    hpg = hpg_select(pooled, k)
    hidx = [common.index(gname) for gname in hpg.genes]
    st["pcc_h_pooled"] = float(np.nanmean(pooled.loc[hpg.genes].to_numpy(), axis=0).mean())
    with np.errstate(invalid="ignore"):
        st["pcc_h_section"] = _wmean(np.nanmean(mat[:, hidx], axis=1), w)
    st["pcc_h_chosen_on_test"] = True
    hier = bootstrap_ci_hierarchical(
        mat, w, n_boot=int(bs["n_boot"]), seed=int(bs["seed"]), level=float(bs["level"])
    )
    st["pcc_m_section_ci_lo"], st["pcc_m_section_ci_hi"] = hier["ci"]
    st["ci_resampled"] = "+".join(hier["resampled"])
    gene_mean = pooled.mean(axis=1, skipna=True)
    gci = bootstrap_ci(
        gene_mean.to_numpy(),
        n_boot=int(bs["n_boot"]),
        seed=int(bs["seed"]),
        level=float(bs["level"]),
    )
    st["pcc_m_pooled_ci_lo"], st["pcc_m_pooled_ci_hi"] = gci["ci"]
    st["fit_s_mean"] = float(np.mean([r["fit_s"] for r in recs]))
    with np.errstate(invalid="ignore"):
        r_sec_gene = np.nansum(np.where(np.isnan(mat), 0, mat) * w[:, None], 0) / (
            w[:, None] * ~np.isnan(mat)
        ).sum(0)
    per_gene = pd.DataFrame(
        {
            "r_per_section": r_sec_gene,
            "r_pooled": gene_mean.to_numpy(),
            "spearman_pooled": np.nanmean(
                np.column_stack(
                    [r["per_gene"]["spearman_pooled"].reindex(common).to_numpy() for r in recs]
                ),
                axis=1,
            ),
            "mse": np.nan
            if cross
            else np.mean(
                np.column_stack([r["per_gene"]["mse"].reindex(common).to_numpy() for r in recs]),
                axis=1,
            ),
            "in_hpg": [gname in set(hpg.genes) for gname in common],
            "n_folds": len(recs),
        },
        index=pd.Index(common, name="gene"),
    )
    st["hpg_genes"] = hpg.genes
    return st, per_gene


def aggregate(records: list[dict], cfg: dict) -> dict:
    """Results table, per-gene tables, paired tests, ablation table and verdict from fold records."""
    keys = list(dict.fromkeys((r["method"], r["train_kind"], r["conv"]) for r in records))
    rows, per_gene = [], {}
    for m, tk, conv in keys:
        recs = [r for r in records if (r["method"], r["train_kind"], r["conv"]) == (m, tk, conv)]
        st, pg = _row_stats(recs, cfg)
        r0 = recs[0]
        rows.append(
            {
                "method": m,
                "label": r0["label"],
                "group": r0["group"],
                "model": r0["model"],
                "setting": r0["setting"],
                "trained_on": tk,
                "convention": conv,
                "units": f"cross: trained on {tk}, correlation only" if r0["cross"] else "same",
                "nan_policy": cfg["nan_policy"],
                **st,
            }
        )
        per_gene[(m, tk, conv)] = pg
    results = pd.DataFrame(rows)
    main = (
        results[results["group"] != "ablation"].reset_index(drop=True) if len(results) else results
    )
    # paired tests: the reference against every other non-ablation method, per convention
    paired_rows = []
    bs = cfg["bootstrap"]
    ref = cfg["reference"]
    for m, tk, conv in keys:
        if m == ref or m.startswith("ablation:") or (ref, tk, conv) not in per_gene:
            continue
        res = _paired(per_gene[(ref, tk, conv)], per_gene[(m, tk, conv)], bs)
        paired_rows.append(
            {
                "convention": conv,
                "trained_on": tk,
                "method_a": ref,
                "method_b": m,
                "mean_diff_r": res["mean_diff"],
                "ci_lo": res["ci"][0],
                "ci_hi": res["ci"][1],
                "p_wilcoxon": res["p_value"],
                "p_bootstrap": res["p_value_bootstrap"],
                "n_genes": res["n"],
                # against depth: the genes the reference drags below the common pattern
                "n_a_below_b": n_misses(
                    per_gene[(ref, tk, conv)]["r_per_section"],
                    per_gene[(m, tk, conv)]["r_per_section"],
                ),
            }
        )
    paired = pd.DataFrame(paired_rows)
    ablations = _ablation_table(records, results, per_gene, cfg)
    return {
        "results": results,
        "main": main,
        "per_gene": per_gene,
        "paired": paired,
        "ablations": ablations,
        "verdict": verdict(results, cfg),
        "hpg_note": HPG_NOTE,
        "records": records,
    }


def _paired(a: pd.DataFrame, b: pd.DataFrame, bs: dict) -> dict:
    """:func:`paired_test` of per-gene ``r_per_section``, a minus b, over their common genes."""
    common = [g for g in a.index if g in set(b.index)]
    return paired_test(
        a.loc[common, "r_per_section"],
        b.loc[common, "r_per_section"],
        n_boot=int(bs["n_boot"]),
        seed=int(bs["seed"]),
        level=float(bs["level"]),
    )


def _ablation_table(
    records: list[dict], results: pd.DataFrame, per_gene: dict, cfg: dict
) -> pd.DataFrame:
    if not cfg["ablations"] or results.empty:
        return pd.DataFrame()
    conv, tk = cfg["headline"], cfg["train_targets"][0]
    base = cfg["ablation_base"]
    abl = results[(results["group"] == "ablation") & (results["convention"] == conv)]
    if abl.empty:
        return pd.DataFrame()
    out = []
    for _, row in abl.iterrows():
        folds = sorted({r["fold"] for r in records if r["method"] == row["method"]})
        base_recs = [
            r
            for r in records
            if r["method"] == base
            and r["conv"] == conv
            and r["train_kind"] == tk
            and r["fold"] in folds
        ]
        bst, base_pg = _row_stats(base_recs, cfg) if base_recs else ({}, None)
        added = _stage_contribution(base_pg, per_gene.get((row["method"], tk, conv)), cfg)
        out.append(
            {
                "ablation": row["label"],
                "overrides": json.dumps(
                    next(r["overrides"] for r in records if r["method"] == row["method"])
                ),
                "folds": ",".join(folds),
                "mse": row["mse"],
                "pcc_m_section": row["pcc_m_section"],
                "pcc_m_pooled": row["pcc_m_pooled"],
                "pcc_h_section": row["pcc_h_section"],
                f"{base}_pcc_m_section": bst.get("pcc_m_section", np.nan),
                "delta_pcc_m": row["pcc_m_section"] - bst.get("pcc_m_section", np.nan),
                **added,
            }
        )
    return pd.DataFrame(out)


# issue "every stage earns its place": a stage that adds less than this is off by default
STAGE_MIN_GAIN = 0.005


def _stage_contribution(
    base_pg: pd.DataFrame | None, abl_pg: pd.DataFrame | None, cfg: dict
) -> dict:
    """What the ablated stage adds: base minus ablation per gene, with its CI and paired test."""
    if base_pg is None or abl_pg is None:
        nan = np.nan
        return {
            "stage_adds": nan,
            "stage_adds_ci_lo": nan,
            "stage_adds_ci_hi": nan,
            "p_wilcoxon": nan,
            "rule": "no base run",
        }
    res = _paired(base_pg, abl_pg, cfg["bootstrap"])
    gain = float(res["mean_diff"])
    return {
        "stage_adds": gain,
        "stage_adds_ci_lo": res["ci"][0],
        "stage_adds_ci_hi": res["ci"][1],
        "p_wilcoxon": res["p_value"],
        "rule": "earns its place"
        if gain >= STAGE_MIN_GAIN
        else f"adds < {STAGE_MIN_GAIN}: off by the rule",
    }
