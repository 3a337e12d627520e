"""How alike a section's maps of different genes are: the pairwise correlation of the maps.

A zero-shot model that has learnt only the tissue's common pattern draws every gene alike;
issue 10 asks that ALIGN-ST's maps of ERBB2, KRT19 and COL1A1 on C2 differ (pairwise PCC
below 0.8). The measured maps give the yardstick: two genes whose measured maps correlate at
0.2 should not be drawn at 0.9.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd

from geneshot.errors import InputError
from geneshot.metrics._correlation import _column_pearson


def _pcc(a: np.ndarray, b: np.ndarray) -> float:
    """The metrics' Pearson rule over the spots where both maps are finite."""
    ok = np.isfinite(a) & np.isfinite(b)
    return float(_column_pearson(a[ok, None], b[ok, None])[0])


def map_similarity(values: Mapping[str, np.ndarray], genes: list[str]) -> pd.DataFrame:
    """Pairwise correlation of the maps of ``genes``, for each kind of map.

    Parameters
    ----------
    values
        Kind (``"measured"``, a method's label, ...) -> ``(N, G)`` values at the section's
        ``N`` spots, column ``g`` for ``genes[g]``; NaN spots are left out of each pair.
    genes
        The ``G`` gene names.

    Returns
    -------
    One row per kind and gene pair: ``kind``, ``gene_a``, ``gene_b``, ``pcc`` (NaN where
    a map is flat: the depth control draws every gene alike but at one scale).
    """
    rows = []
    for kind, v in values.items():
        v = np.asarray(v, np.float64)
        if v.ndim != 2 or v.shape[1] != len(genes):
            raise InputError(
                None,
                f"maps of {kind!r} have shape {v.shape}, expected (spots, {len(genes)})",
                "pass one column per gene",
            )
        for i, j in combinations(range(len(genes)), 2):
            rows.append(
                {"kind": kind, "gene_a": genes[i], "gene_b": genes[j], "pcc": _pcc(v[:, i], v[:, j])}
            )
    return pd.DataFrame(rows, columns=["kind", "gene_a", "gene_b", "pcc"])
