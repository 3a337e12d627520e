"""Every metric of a set of predictions under both pooling conventions.

"pooled" concatenates the spots of all test sections before computing ``r_g`` (SGN/EGN);
"per_section" computes ``r_g`` per section and averages over sections weighted by their
spot counts (TRIPLEX: one slide per test batch, Lightning epoch mean weighted by batch size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geneshot.errors import InputError
from geneshot.metrics._correlation import (
    NanPolicy,
    _check_policy,
    _nanmean_rows,
    _pair,
    _weighted_nanmean,
    per_gene_pearson,
    per_gene_spearman,
    per_section_pearson,
    summarise,
)
from geneshot.metrics._subsets import GeneSubset, _subset_index, pcc_at


def evaluate_predictions(
    y_true: Any,
    y_pred: Any,
    genes: Sequence[str],
    sections: Sequence[str],
    nan_policy: NanPolicy = "drop",
    subsets: Mapping[str, GeneSubset | Sequence[str]] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Every metric under both pooling conventions.

    Parameters
    ----------
    y_true, y_pred
        ``(n_spots, n_genes)`` normalised targets and predictions of all test spots.
    genes
        Gene names, one per column.
    sections
        Section id of each spot (row).
    nan_policy
        How a NaN r_g (constant vector) is treated; recorded in the output.
    subsets
        Named gene sets (e.g. ``{"hpg": hpg_select(...), "top_expressed": ...}``); the mean r
        over each is reported as ``pcc_at_<name>`` under both conventions, with the subset's
        provenance (``chosen_on_test``).

    Returns
    -------
    summary
        ``{"nan_policy", "n_spots", "n_genes", "n_sections", "mse", "mae",
        "pooled": {...}, "per_section": {...}, "sections": {id: {...}}, "subsets": {...}}``.
        ``pooled`` summarises r_g over the concatenated spots (SGN/EGN). ``per_section`` is the
        spot-weighted mean over sections of each section's PCC@F/S/M; its ``pcc_m`` is
        exactly TRIPLEX's number. MSE and MAE are the same under both conventions.
    per_gene
        DataFrame indexed by gene: ``r_pooled``, ``r_per_section`` (spot-weighted mean of the
        per-section r, NaNs ignored), ``spearman_pooled``, ``mse``, ``mae``,
        ``n_sections_nan``.
    """
    t, p = _pair(y_true, y_pred)
    genes = [str(g) for g in genes]
    if len(genes) != t.shape[1]:
        raise InputError(
            None,
            f"genes has {len(genes)} names for {t.shape[1]} columns",
            "give one gene name per column",
        )
    if len(set(genes)) != len(genes):
        raise InputError(None, "genes has duplicated names", "give each evaluated gene once")
    _check_policy(nan_policy)
    names, r_sec, n_sec = per_section_pearson(t, p, sections, nan_policy)
    r_pool = per_gene_pearson(t, p, nan_policy)
    w = n_sec.astype(np.float64)

    sec_summ = {s: {**summarise(r_sec[i]), "n_spots": int(n_sec[i])} for i, s in enumerate(names)}
    per_section: dict[str, Any] = {}
    for key in ("pcc_f", "pcc_s", "pcc_m"):
        vals = np.array([sec_summ[s][key] for s in names])
        per_section[key] = float(_weighted_nanmean(vals, w))
    per_section["n_genes"] = len(genes)
    per_section["n_nan"] = int(np.isnan(r_sec).sum())  # (section, gene) pairs left out

    err = p - t
    per_gene = pd.DataFrame(
        {
            "r_pooled": r_pool,
            "r_per_section": _weighted_nanmean(r_sec, w),
            "spearman_pooled": per_gene_spearman(t, p, nan_policy),
            "mse": np.mean(err**2, axis=0),
            "mae": np.mean(np.abs(err), axis=0),
            "n_sections_nan": np.isnan(r_sec).sum(axis=0),
        },
        index=pd.Index(genes, name="gene"),
    )
    summary: dict[str, Any] = {
        "nan_policy": nan_policy,
        "n_spots": int(t.shape[0]),
        "n_genes": len(genes),
        "n_sections": len(names),
        "mse": float(np.mean(err**2)),
        "mae": float(np.mean(np.abs(err))),
        "pooled": summarise(r_pool),
        "per_section": per_section,
        "sections": sec_summ,
        "subsets": {},
    }
    for name, subset in (subsets or {}).items():
        gs = (
            subset
            if isinstance(subset, GeneSubset)
            else GeneSubset(name, list(subset), "given", False)
        )
        idx = _subset_index(genes, gs.genes)
        sec_means = _nanmean_rows(r_sec[:, idx])
        summary["pooled"][f"pcc_at_{name}"] = pcc_at(per_gene["r_pooled"], gs)
        summary["per_section"][f"pcc_at_{name}"] = float(_weighted_nanmean(sec_means, w))
        summary["subsets"][name] = gs.describe()
    return summary, per_gene
