"""Where a zero-shot model's maps leave the common pattern, and what that gains over ``depth``.

Issue 10 asks that where the gene-specific evidence is weak a zero-shot model stay at the
tissue's common per-spot pattern instead of going below the ``depth`` control, which draws
that pattern for every gene. Every run checks it from its own predictions:

1. per fold, each gene's *departure* (:func:`geneshot.metrics.departure`): ``1 - PCC`` of the
   model's map of the gene with depth's map, over the test spots of each section (mean over
   sections and folds). It reads predictions only, never targets;
2. the genes are cut into quartiles of departure per method, and each quartile reports the
   mean per-gene PCC minus depth's with a paired bootstrap CI, the Wilcoxon p
   (:func:`geneshot.metrics.paired_test`) and the genes more than ``MISS_MARGIN`` below depth.

A model that follows the rule has a near-zero difference in its least-departing quartiles,
none of them significantly below depth, and its gain in the quartiles it moves away from the
pattern. ``scripts/fallback_check.py`` applies the same table to a finished run folder, and
``geneshot evaluate`` to a run on the user's own measured sections, against the run's own
common pattern (:func:`against_common`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from geneshot.metrics import departure, evaluate_predictions, n_misses, paired_test

N_BINS = 4  # quartiles
BOOTSTRAP = {"n_boot": 1000, "seed": 0, "level": 0.95}  # the benchmark config's default
COLUMNS = [
    "method",
    "bin",
    "genes",
    "departure_lo",
    "departure_hi",
    "mean_diff_r",
    "ci_lo",
    "ci_hi",
    "p_wilcoxon",
    "n_below_depth",
]


def depth_method(cfg: dict) -> str | None:
    """The config's ``depth`` control (the first method of model ``depth``), or None."""
    return next((n for n, s in cfg["methods"].items() if s["model"] == "depth"), None)


def fold_departures(
    fid: str, genes: Sequence[str], preds: dict[str, list[np.ndarray]], cfg: dict
) -> list[dict]:
    """One record per zero-shot method, section and gene of a fold: its departure from depth.

    ``preds``: method -> ``(N, G)`` predictions per test section, columns ``genes``. Empty
    without a depth control in the config.
    """
    ref = depth_method(cfg)
    if ref is None or ref not in preds:
        return []
    rows = []
    for name, maps in preds.items():
        spec = cfg["methods"].get(name)
        if name == ref or spec is None or spec["setting"] != "zero-shot":
            continue
        for i, (p, d) in enumerate(zip(maps, preds[ref], strict=True)):
            # depth predicts one map for every gene: its first column is the common pattern
            for g, v in zip(genes, departure(p, d[:, 0]), strict=True):
                rows.append({"fold": fid, "section": i, "method": name, "gene": g, "departure": v})
    return rows


def departure_bins(
    dep: pd.Series,
    r: pd.Series,
    r_depth: pd.Series,
    method: str,
    bootstrap: dict,
    n_bins: int = N_BINS,
) -> pd.DataFrame:
    """The quartile table of one method (see the module docstring; ``n_bins`` bins, fewer
    with fewer genes).

    ``dep``: departure per gene; ``r`` and ``r_depth``: per-gene PCC of the method and of
    depth. Genes missing from any of the three are left out.
    """
    genes = dep.index.intersection(r.index).intersection(r_depth.index)
    dep, r, r_depth = dep[genes], r[genes], r_depth[genes]
    if len(genes) == 0:
        return pd.DataFrame(columns=COLUMNS)
    n_bins = min(n_bins, len(genes))  # a tiny run: a bin per gene (its CI and p are NaN)
    q = pd.qcut(dep.rank(method="first"), n_bins, labels=False)
    rows = []
    for b in range(n_bins):
        sel = (q == b).to_numpy()
        test = paired_test(
            r[sel].to_numpy(),
            r_depth[sel].to_numpy(),
            n_boot=int(bootstrap["n_boot"]),
            seed=int(bootstrap["seed"]),
            level=float(bootstrap["level"]),
        )
        rows.append(
            {
                "method": method,
                "bin": f"{b + 1}/{n_bins}",
                "genes": int(sel.sum()),
                "departure_lo": float(dep[sel].min()),
                "departure_hi": float(dep[sel].max()),
                "mean_diff_r": test["mean_diff"],
                "ci_lo": test["ci"][0],
                "ci_hi": test["ci"][1],
                "p_wilcoxon": test["p_value"],
                "n_below_depth": n_misses(r[sel], r_depth[sel]),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def departure_table(records: list[dict], per_gene: dict, cfg: dict) -> pd.DataFrame:
    """Every zero-shot method's quartile table (headline convention), from fold departures.

    ``records``: :func:`fold_departures` of every fold; ``per_gene``: the aggregate's
    per-gene tables by (method, trained on, convention).
    """
    ref = depth_method(cfg)
    if not records or ref is None:
        return pd.DataFrame(columns=COLUMNS)
    tk, conv = cfg["train_targets"][0], cfg["headline"]
    if (ref, tk, conv) not in per_gene:
        return pd.DataFrame(columns=COLUMNS)
    r_depth = per_gene[(ref, tk, conv)]["r_per_section"]
    dep = pd.DataFrame(records).groupby(["method", "gene"], sort=False)["departure"].mean()
    tables = []
    for method in dict.fromkeys(r["method"] for r in records):
        if (method, tk, conv) not in per_gene:
            continue
        r = per_gene[(method, tk, conv)]["r_per_section"]
        tables.append(departure_bins(dep[method], r, r_depth, method, cfg["bootstrap"]))
    tables = [t for t in tables if not t.empty]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)


def against_common(
    ys: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    commons: Sequence[np.ndarray],
    genes: Sequence[str],
    sections: Sequence[str],
    method: str,
    r_model: pd.Series,
) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """A run's maps against its own common pattern on measured sections.

    ``ys``, ``preds``: targets and predictions ``(N_s, G)`` per section; ``commons``: the
    run's common per-spot pattern ``(N_s,)`` there (``GeneshotModel.common_pattern``);
    ``r_model``: the run's per-gene ``r_per_section`` on them, as
    :func:`geneshot.workflow.evaluate` scored it.

    Returns
    -------
    per_gene
        ``departure`` (mean over sections), ``r_common``: each gene's per-section PCC of the
        common pattern alone, and ``gain``: the run's ``r_per_section`` minus it.
    bins
        :func:`departure_bins` of the run against the common pattern.
    pcc_m
        The common pattern's per-section PCC@M over these genes: what ``depth`` would score.
    """
    dep = np.mean([departure(p, c) for p, c in zip(preds, commons, strict=True)], axis=0)
    flat = [np.repeat(np.asarray(c, np.float64)[:, None], len(genes), axis=1) for c in commons]
    ids = np.concatenate([[s] * len(y) for s, y in zip(sections, ys, strict=True)])
    y = np.concatenate(ys)
    summary, r_common = evaluate_predictions(y, np.concatenate(flat), list(genes), ids)
    r, r0 = r_model.reindex(r_common.index), r_common["r_per_section"]
    per_gene = pd.DataFrame(
        {"departure": dep, "r_common": r0.to_numpy(), "gain": (r - r0).to_numpy()},
        index=pd.Index(list(genes), name="gene"),
    )
    bins = departure_bins(per_gene["departure"], r, r0, method, BOOTSTRAP)
    return per_gene, bins, float(summary["per_section"]["pcc_m"])
