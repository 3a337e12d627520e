"""Spatial context of a spot: mean features of the spots around it, by physical distance.

A spot's own 112 µm patch sees a small part of the tissue around it; expression follows
structures (ducts, stroma, immune aggregates) that are larger. Appending the mean features of
the surrounding spots (the "neighbour" view of TRIPLEX, paper-notes §2.7) lifts the
supervised ceiling on HER2+ (``scripts/choose_features.py``). Rings are defined in
micrometres, not in array steps, so that one definition holds for legacy ST (200 µm pitch),
Visium (100 µm) and the tiles of tile-mode prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from geneshot._constants import Key
from geneshot.errors import InputError
from geneshot.io._section import section_meta


def spot_xy_um(adata: ad.AnnData) -> np.ndarray:
    """(n, 2) spot centres in micrometres: ``obsm["spatial"]`` times the section's µm/px."""
    mpp = section_meta(adata)[Key.MPP]
    if mpp is None:
        raise InputError(
            None,
            "the section has no µm per pixel (microns_per_pixel)",
            "give the image's resolution (--mpp) so context rings can be measured in µm",
        )
    return np.asarray(adata.obsm[Key.SPATIAL], np.float64) * float(mpp)


def check_ring_edges(edges_um: Sequence[float]) -> tuple[float, ...]:
    """``edges_um`` as floats; raises :class:`InputError` unless positive and increasing."""
    edges = tuple(float(e) for e in edges_um)
    if any(not np.isfinite(e) or e <= 0 for e in edges) or any(
        b <= a for a, b in zip(edges, edges[1:])
    ):
        raise InputError(
            None,
            f"context rings {list(edges)} µm are not positive and increasing",
            "give outer ring radii in µm, e.g. context_um: [300, 500], or [] for none",
        )
    return edges


def ring_operators(xy_um: np.ndarray, edges_um: Sequence[float]) -> list[sp.csr_matrix]:
    """Row-normalised averaging operators, one per ring.

    Ring ``k`` holds the other spots whose centre distance ``d`` satisfies
    ``edges_um[k-1] < d <= edges_um[k]`` (ring 1: ``0 <= d <= edges_um[0]``, the spot itself
    excluded). A spot with no neighbour in a ring averages itself there, so isolated spots
    keep their own features instead of zeros (zeros would look like a feature value).

    Parameters
    ----------
    xy_um
        (n, 2) spot centres in micrometres.
    edges_um
        Increasing outer radii of the rings, e.g. ``(300, 500)``.

    Returns
    -------
    One (n, n) CSR matrix per ring; ``op @ x`` is the ring mean of the rows of ``x``.
    """
    edges = np.asarray(check_ring_edges(edges_um))
    xy = np.asarray(xy_um, np.float64).reshape(-1, 2)
    n = len(xy)
    if not len(edges):
        return []
    if n:
        dist, idx = (
            NearestNeighbors(radius=float(edges[-1]))
            .fit(xy)
            .radius_neighbors(xy, return_distance=True)
        )
        counts = np.fromiter((len(i) for i in idx), np.int64, n)
        rows = np.repeat(np.arange(n), counts)
        cols = np.concatenate(idx).astype(np.int64)
        d = np.concatenate(dist)
    else:
        rows = cols = np.zeros(0, np.int64)
        d = np.zeros(0)
    other = rows != cols  # by index, so spots at the same position still count as neighbours
    # ring of each pair in one pass; a small tolerance keeps spots exactly on an edge inside it
    ring = np.searchsorted(edges * (1 + 1e-9), d, side="left")
    ops = []
    for k in range(len(edges)):
        keep = other & (ring == k)
        r, c = rows[keep], cols[keep]
        deg = np.bincount(r, minlength=n).astype(np.float64)
        alone = np.flatnonzero(deg == 0)
        r = np.concatenate([r, alone])
        c = np.concatenate([c, alone])
        deg[alone] = 1.0
        ops.append(sp.csr_matrix((1.0 / deg[r], (r, c)), shape=(n, n)))
    return ops


def context_features(x: np.ndarray, xy_um: np.ndarray, edges_um: Sequence[float]) -> np.ndarray:
    """``[x, mean of ring 1, mean of ring 2, ...]`` for each spot, (n, D * (1 + rings)) float32."""
    x = np.asarray(x, np.float32)
    if len(x) != len(xy_um):
        raise ValueError(f"{len(x)} feature rows for {len(xy_um)} spots")
    parts = [x] + [np.asarray(op @ x, np.float32) for op in ring_operators(xy_um, edges_um)]
    return np.hstack(parts)
