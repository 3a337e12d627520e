"""Gene subsets for PCC@H: TRIPLEX's test-chosen HPG set and a-priori sets from training data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from geneshot.errors import InputError

HPG_NOTE = "chosen on test results (TRIPLEX HPG: optimistic, not an a-priori gene set)"


@dataclass(frozen=True)
class GeneSubset:
    """A named gene set and how it was chosen.

    ``chosen_on_test`` is True for sets selected from test-set results (TRIPLEX HPG):
    a metric on such a set is optimistic and must be labelled as such.
    """

    name: str
    genes: list[str]
    source: str
    chosen_on_test: bool
    scores: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance (without the scores)."""
        return {
            "name": self.name,
            "n": len(self.genes),
            "source": self.source,
            "chosen_on_test": self.chosen_on_test,
            "genes": list(self.genes),
        }


def _subset_index(genes: Sequence[str], subset: Sequence[str]) -> np.ndarray:
    pos = {g: i for i, g in enumerate(genes)}
    missing = [g for g in subset if g not in pos]
    if missing:
        raise InputError(
            None,
            f"{len(missing)} subset genes are not evaluated (e.g. {missing[0]!r})",
            "choose the subset among the evaluated genes",
        )
    return np.array([pos[g] for g in subset], dtype=np.int64)


def _top_k(scores: pd.Series, k: int, what: str) -> list[str]:
    if k < 1:
        raise InputError(None, f"k={k} for {what}", "give k >= 1")
    if len(scores) < k:
        raise InputError(
            None,
            f"only {len(scores)} genes for a top-{k} {what} set",
            f"give at least {k} genes or a smaller k",
        )
    # Sort by score descending, ties by gene name, so the set does not depend on input order.
    df = pd.DataFrame({"g": scores.index.astype(str), "s": scores.to_numpy(dtype=np.float64)})
    df = df.sort_values(["s", "g"], ascending=[False, True], na_position="last", kind="mergesort")
    return df["g"].head(k).tolist()


def hpg_select(
    rank_tables_per_fold: Mapping[Any, pd.Series] | Sequence[pd.Series] | pd.DataFrame, k: int = 50
) -> GeneSubset:
    """TRIPLEX "highly predictive genes": top-k by per-fold PCC rank averaged over folds.

    Parameters
    ----------
    rank_tables_per_fold
        Per fold, a Series of per-gene test PCC (or already its ranks: ranks of ranks are
        the same) indexed by gene; or a DataFrame with genes as rows and folds as columns.
        Every fold must cover the same genes.
    k
        Set size (50 in TRIPLEX).

    Returns
    -------
    GeneSubset
        ``chosen_on_test=True``: the set is picked after seeing the test results of the
        model it scores (paper-notes §2.9.2), so PCC@H on it is optimistic.

    Notes
    -----
    Within a fold, genes are ranked 1..G by ascending PCC (ties share their average rank).
    TRIPLEX ranks with ``argsort``, which puts NaN above every number; here a NaN PCC gets the
    lowest rank instead, so a gene that could not be scored is never "highly predictive".
    """
    from scipy.stats import rankdata

    if isinstance(rank_tables_per_fold, pd.DataFrame):
        table = rank_tables_per_fold
    else:
        items = (
            rank_tables_per_fold.values()
            if isinstance(rank_tables_per_fold, Mapping)
            else rank_tables_per_fold
        )
        cols = [pd.Series(s) for s in items]
        if not cols:
            raise InputError(
                None, "no folds given to hpg_select", "pass one per-gene PCC Series per fold"
            )
        genes0 = set(cols[0].index)
        if any(set(c.index) != genes0 for c in cols):
            raise InputError(
                None, "folds cover different genes", "evaluate the same genes in every fold"
            )
        table = pd.concat(cols, axis=1)
    vals = table.to_numpy(dtype=np.float64)
    filled = np.where(np.isnan(vals), -np.inf, vals)
    ranks = rankdata(filled, axis=0)
    avg = pd.Series(ranks.mean(axis=1), index=table.index.astype(str))
    genes = _top_k(avg, k, "HPG")
    return GeneSubset(f"hpg{k}", genes, HPG_NOTE, True, {g: float(avg[g]) for g in genes})


def top_expressed(train_counts_mean: pd.Series, k: int = 50) -> GeneSubset:
    """A-priori set: the k genes with the highest mean raw count on TRAINING spots."""
    s = pd.Series(train_counts_mean)
    genes = _top_k(s, k, "top-expressed")
    return GeneSubset(
        f"top_expressed{k}",
        genes,
        "a priori: highest mean count on training data",
        False,
        {g: float(s[g]) for g in genes},
    )


def top_variable(train_values: pd.DataFrame, k: int = 50) -> GeneSubset:
    """A-priori set: the k genes with the highest variance across TRAINING spots.

    Parameters
    ----------
    train_values
        ``(spots x genes)`` DataFrame of training-set values (normalised or log counts: the
        ranking is computed on what is given).
    """
    if not isinstance(train_values, pd.DataFrame):
        raise InputError(
            None,
            "train_values is not a DataFrame",
            "give a spots x genes DataFrame with gene names as columns",
        )
    var = train_values.var(axis=0, ddof=1)
    genes = _top_k(var, k, "top-variable")
    return GeneSubset(
        f"top_variable{k}",
        genes,
        "a priori: highest variance on training data",
        False,
        {g: float(var[g]) for g in genes},
    )


def pcc_at(r_per_gene: pd.Series, gene_subset: GeneSubset | Sequence[str]) -> float:
    """Mean per-gene r over a gene subset, NaNs ignored (NaN if all are NaN)."""
    r = pd.Series(r_per_gene)
    genes = gene_subset.genes if isinstance(gene_subset, GeneSubset) else list(gene_subset)
    idx = _subset_index([str(g) for g in r.index], genes)
    vals = r.to_numpy(dtype=np.float64)[idx]
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
