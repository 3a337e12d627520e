"""Spot graphs of sections without an array grid are built from spot coordinates."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from geneshot.errors import InputError
from geneshot.models import SlideInputs, near_edges, spatial_edges, spot_edges


def hex_centres(
    n_rows: int = 6, n_cols: int = 7, pitch: float = 100.0, seed: int = 0
) -> np.ndarray:
    """Visium-like hexagonal centres with slight jitter, rows shuffled (file order is arbitrary)."""
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    xy = np.stack([cols * pitch + (rows % 2) * pitch / 2, rows * pitch * np.sqrt(3) / 2], 1)
    rng = np.random.default_rng(seed)
    return (xy + rng.normal(0, 2, xy.shape))[rng.permutation(len(xy))]


def test_spatial_edges_link_only_close_spots():
    xy = hex_centres()
    src, tgt = spatial_edges(xy).numpy()
    d = np.linalg.norm(xy[src] - xy[tgt], axis=1)
    assert len(src) > 0 and d.max() < 1.5 * 100 * 1.05  # only spots within ~1.5 pitches
    deg = np.bincount(tgt, minlength=len(xy))
    lo, hi = xy.min(0) + 90, xy.max(0) - 90
    interior = ((xy > lo) & (xy < hi)).all(1)
    assert interior.sum() >= 10 and (deg[interior] == 6).all()  # the 6 hexagonal neighbours
    assert deg.max() == 6 and (deg >= 2).all()


def test_square_grid_matches_grid_index_edges():
    rows, cols = np.divmod(np.arange(30), 6)
    grid = torch.from_numpy(np.stack([rows, cols], 1))
    want = {tuple(e) for e in near_edges(grid).T.tolist()}
    got = {tuple(e) for e in spatial_edges(np.stack([cols, rows], 1) * 50.0).T.tolist()}
    assert got == want  # 8-neighbourhood either way


def test_unknown_grid_without_coordinate_edges_is_refused():
    slide = SlideInputs(torch.randn(5, 3), None, torch.full((5, 2), -1))
    with pytest.raises(InputError, match="grid indices are unknown"):
        spot_edges(slide.grid, slide.image)


def test_model_builds_spatial_neighbours_for_an_anndata_without_grid():
    from geneshot.prepare import PreparedSection
    from geneshot.train import GeneshotModel
    from geneshot.train._contract import DataContract

    xy = hex_centres()
    n = len(xy)
    a = ad.AnnData(np.ones((n, 2), np.float32), obs=pd.DataFrame(index=[f"s{i}" for i in range(n)]))
    a.obsm["spatial"] = xy
    sec = PreparedSection(
        adata=a, image=np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    )
    m = GeneshotModel("sgn", "zero-shot")
    m.contract = DataContract(
        features={},
        image_dim=4,
        nuclei_shape=None,
        text_dim=3,
        target={},
        seen_genes=[],
        feature_mean=[0.0] * 4,
        feature_std=[1.0] * 4,
    )
    slide = m._slide(sec)
    assert slide.near is not None and (slide.grid == -1).all()
    src, tgt = slide.near.numpy()
    d = np.linalg.norm(xy[src] - xy[tgt], axis=1)
    nn = np.sort(np.linalg.norm(xy[:, None] - xy[None], axis=2), 1)[:, 1]
    assert d.max() <= 1.5 * np.median(nn) + 1e-6  # neighbours are spatially close
    # the 'near' relation the model uses is exactly these edges
    edges = spot_edges(slide.grid, slide.image, near=slide.near)
    assert torch.equal(edges[("spot", "near", "spot")], slide.near)
