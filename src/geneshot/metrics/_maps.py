"""How alike a section's maps of different genes are: the pairwise correlation of the maps.

A zero-shot model that has learnt only the tissue's common pattern draws every gene alike;
issue 10 asks that ALIGN-ST's maps of ERBB2, KRT19 and COL1A1 on C2 differ (pairwise PCC
below 0.8). The measured maps give the yardstick: two genes whose measured maps correlate at
0.2 should not be drawn at 0.9.

:func:`departure` measures the other side: how far each gene's map leaves the tissue's
common per-spot pattern (what the ``depth`` control draws for every gene).
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


def departure(pred: np.ndarray, common: np.ndarray) -> np.ndarray:
    """How far each gene's map leaves the common pattern: ``1 - PCC`` over the spots, ``(G,)``.

    ``pred`` ``(N, G)`` maps at ``N`` spots, ``common`` ``(N,)`` the common per-spot pattern
    there. 0: the map is the common pattern (up to scale and level); 1: uncorrelated with
    it; up to 2: its opposite. A flat map, or a flat common pattern, counts as 0: it holds
    nothing gene-specific. Predictions only, never targets: a zero-shot model's gain over
    the common pattern lies in the genes it moves away from it (BENCHMARKS.md, session 18).
    """
    pred = np.asarray(pred, np.float64)
    common = np.asarray(common, np.float64).reshape(-1)
    if pred.ndim != 2 or pred.shape[0] != common.shape[0]:
        raise InputError(
            None,
            f"maps of shape {pred.shape} and a common pattern of {common.shape[0]} spots",
            "pass (spots, genes) maps and the common pattern at the same spots",
        )
    pc, mc = pred - pred.mean(0), common - common.mean()
    den = np.linalg.norm(pc, axis=0) * np.linalg.norm(mc)
    # flat means max == min, as in the metrics' Pearson rule (not a rounding residue)
    flat = (np.ptp(pred, axis=0) == 0) | (np.ptp(common) == 0) if len(common) else True
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(mc @ pc / den, -1.0, 1.0)
    return np.where(flat | ~np.isfinite(r), 0.0, 1.0 - r)
