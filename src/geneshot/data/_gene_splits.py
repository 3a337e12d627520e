"""Gene splits (zero-shot seen / unseen genes), in the split format of :mod:`._splits`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geneshot.data._splits import _finish
from geneshot.errors import InputError


def gene_split_sgn(mean_counts_train: pd.Series, n_unseen: int = 250) -> dict[str, Any]:
    """SGN / ALIGN-ST zero-shot gene split: the ``n_unseen`` most expressed genes are unseen.

    Parameters
    ----------
    mean_counts_train
        Mean raw count per gene (index = gene). Compute it on training spots for an honest
        split (SGN used all slides, test included). Ties break by gene name.
    n_unseen
        Size of the unseen (test) set; every other gene is seen (training).
    """
    s = pd.Series(mean_counts_train)
    s.index = s.index.astype(str)
    if s.index.duplicated().any():
        raise InputError(
            None, "mean_counts_train has duplicated gene names", "give one mean per gene"
        )
    if not 1 <= n_unseen < len(s):
        raise InputError(
            None, f"n_unseen={n_unseen} with {len(s)} genes", f"give 1 <= n_unseen < {len(s)}"
        )
    df = pd.DataFrame({"g": s.index, "m": s.to_numpy(dtype=np.float64)}).sort_values(
        ["m", "g"], ascending=[False, True], kind="mergesort"
    )
    unseen = df["g"].head(n_unseen).tolist()
    seen = [g for g in s.index if g not in set(unseen)]
    return _finish(
        {
            "kind": "genes",
            "name": f"sgn_top{n_unseen}_unseen",
            "genes": sorted(s.index),
            "folds": [{"fold": 0, "seen": seen, "unseen": unseen}],
        }
    )


def gene_split_random_kfold(genes: Sequence[str], k: int, seed: int = 0) -> dict[str, Any]:
    """Randomised gene folds: each gene is unseen in exactly one of ``k`` folds."""
    gs = sorted(_unique_genes(genes))
    if not 2 <= k <= len(gs):
        raise InputError(None, f"k={k} gene folds for {len(gs)} genes", f"give 2 <= k <= {len(gs)}")
    perm = np.random.default_rng(seed).permutation(len(gs))
    parts = np.array_split(perm, k)
    folds = []
    for i, part in enumerate(parts):
        unseen = {gs[j] for j in part}
        folds.append(
            {"fold": i, "seen": [g for g in gs if g not in unseen], "unseen": list(unseen)}
        )
    return _finish(
        {"kind": "genes", "name": f"random_{k}fold_seed{seed}", "genes": gs, "folds": folds}
    )


def gene_split_given(unseen_list: Sequence[str], all_genes: Sequence[str]) -> dict[str, Any]:
    """A gene split from a given unseen list; every other gene of ``all_genes`` is seen."""
    gs = _unique_genes(all_genes)
    unseen = list(dict.fromkeys(str(g) for g in unseen_list))
    known = set(gs)
    bad = [g for g in unseen if g not in known]
    if bad:
        raise InputError(
            None,
            f"{len(bad)} unseen genes are not in the gene list (e.g. {bad[0]!r})",
            "list unseen genes among the dataset's genes",
        )
    if not unseen or len(unseen) == len(gs):
        raise InputError(
            None,
            f"{len(unseen)} unseen of {len(gs)} genes",
            "leave at least one seen and one unseen gene",
        )
    u = set(unseen)
    return _finish(
        {
            "kind": "genes",
            "name": f"given_{len(unseen)}_unseen",
            "genes": sorted(gs),
            "folds": [{"fold": 0, "seen": [g for g in gs if g not in u], "unseen": unseen}],
        }
    )


def _unique_genes(genes: Sequence[str]) -> list[str]:
    gs = [str(g) for g in genes]
    if len(set(gs)) != len(gs):
        raise InputError(None, "gene list has duplicated names", "give each gene once")
    if not gs:
        raise InputError(None, "empty gene list", "give the dataset's genes")
    return gs
