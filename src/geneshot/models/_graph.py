"""Spot graphs ('near' grid or spatial neighbours, 'knn' image-feature neighbours) and the GraphSAGE stack."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import HeteroConv, SAGEConv

from geneshot.errors import InputError

NEAR = ("spot", "near", "spot")
KNN = ("spot", "knn", "spot")


def _edges_from_distance(
    dist: torch.Tensor, keep: torch.Tensor, max_neighbors: int
) -> torch.Tensor:
    """Edges ``(2, E)`` source->target: for each target, up to ``max_neighbors`` nearest kept sources."""
    n = dist.shape[0]
    k = min(max_neighbors, n - 1)
    if k <= 0:
        return torch.empty(2, 0, dtype=torch.long, device=dist.device)
    dist = dist.masked_fill(~keep, math.inf)
    dist.fill_diagonal_(math.inf)
    # Nearest first, so a cap drops the farthest neighbours (torch_cluster drops arbitrary ones).
    d, src = dist.topk(k, dim=1, largest=False)
    tgt = torch.arange(n, device=dist.device).unsqueeze(1).expand(-1, k)
    ok = torch.isfinite(d)
    return torch.stack([src[ok], tgt[ok]])


def near_edges(grid: torch.Tensor, max_neighbors: int = 8) -> torch.Tensor:
    """Grid neighbours within radius sqrt(2) on ``(array_row, array_col)`` (paper-notes §3.2).

    On a square legacy-ST grid this is the 8-neighbourhood. [I] When every spot has the same
    ``row + col`` parity the grid is a Visium hexagonal grid (columns step by 2), so columns are
    halved first, which makes the six hexagonal neighbours fall within the radius.
    """
    pos = grid.to(torch.float32)
    if grid.shape[0] > 1 and torch.unique(grid.sum(1) % 2).numel() == 1:
        pos = pos * pos.new_tensor([1.0, 0.5])
    dist = torch.cdist(pos, pos)
    return _edges_from_distance(dist, dist <= math.sqrt(2) + 1e-4, max_neighbors)


def spatial_edges(coords, max_neighbors: int = 8, factor: float = 1.5) -> torch.Tensor:
    """'near' edges from spot centres, for sections without an array grid.

    Spots within ``factor`` x the median nearest-neighbour distance are neighbours: on a
    square grid of pitch p, 1.5 p keeps the 8-neighbourhood (diagonals are 1.41 p), on a
    hexagonal grid the 6 neighbours, as :func:`near_edges` does with grid indices. Each spot
    keeps at most ``max_neighbors``, nearest first. Uses :mod:`sklearn.neighbors`.

    Parameters
    ----------
    coords
        ``(N, 2)`` spot centres in any unit (e.g. ``obsm["spatial"]`` pixels).
    """
    from sklearn.neighbors import NearestNeighbors

    xy = np.asarray(coords, dtype=np.float64)
    n = xy.shape[0]
    k = min(max_neighbors, n - 1)
    if k <= 0:
        return torch.empty(2, 0, dtype=torch.long)
    nn_index = NearestNeighbors(n_neighbors=k + 1).fit(xy)
    dist, idx = nn_index.kneighbors(xy)  # column 0 is the spot itself (or a duplicate)
    dist, idx = dist[:, 1:], idx[:, 1:]
    radius = factor * float(np.median(dist[:, 0]))
    ok = dist <= radius + 1e-9 * max(radius, 1.0)
    tgt = np.repeat(np.arange(n), k).reshape(n, k)
    return torch.from_numpy(np.stack([idx[ok], tgt[ok]]).astype(np.int64))


def knn_edges(features: torch.Tensor, k: int = 5) -> torch.Tensor:
    """``k`` nearest neighbours in feature space (Euclidean, as ``torch_cluster.knn_graph``)."""
    x = features.detach().to(torch.float32)
    dist = torch.cdist(x, x)
    return _edges_from_distance(dist, torch.ones_like(dist, dtype=torch.bool), k)


def spot_edges(
    grid: torch.Tensor,
    features: torch.Tensor,
    near_max: int = 8,
    knn_k: int = 5,
    near: torch.Tensor | None = None,
) -> dict[tuple[str, str, str], torch.Tensor]:
    """Both edge types as an ``edge_index_dict`` for :class:`torch_geometric.nn.HeteroConv`.

    ``near``: precomputed 'near' edges (see :func:`spatial_edges`), required when the grid
    is unknown (indices < 0), since grid distances would then link arbitrary spots.
    """
    if near is None:
        if grid.numel() and bool((grid < 0).any()):
            raise InputError(
                None,
                "spot grid indices are unknown (-1) and no spatial 'near' edges were given",
                "build SlideInputs with near=spatial_edges(obsm['spatial'])",
            )
        near = near_edges(grid, near_max)
    return {NEAR: near.to(features.device), KNN: knn_edges(features, knn_k)}


class SpotSAGE(nn.Module):
    """``n_layers`` of ``HeteroConv({near: SAGEConv, knn: SAGEConv}, aggr='mean')`` + LeakyReLU(0.2).

    Parameters
    ----------
    dim
        Width of every layer.
    n_layers
        Number of hetero SAGE layers.
    residual
        Add each layer's input to its output (not in SGN; used by ALIGN-ST [I] against over-smoothing).
    """

    def __init__(self, dim: int, n_layers: int, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList(
            HeteroConv({NEAR: SAGEConv(dim, dim), KNN: SAGEConv(dim, dim)}, aggr="mean")
            for _ in range(n_layers)
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(
        self, x: torch.Tensor, edges: dict[tuple[str, str, str], torch.Tensor]
    ) -> torch.Tensor:
        """Refine spot features ``x`` of shape ``(N, dim)``."""
        for layer in self.layers:
            out = self.act(layer({"spot": x}, edges)["spot"])
            x = x + out if self.residual else out
        return x
