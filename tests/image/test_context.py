"""Context rings: which spots each ring averages, in micrometres, and the features they make."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from geneshot.errors import InputError
from geneshot.image import context_features, ring_operators, spot_xy_um
from geneshot.io import make_section
from geneshot.prepare import FeatureConfig, PreparedSection, add_context


def _grid(n: int, pitch_um: float) -> np.ndarray:
    r, c = np.divmod(np.arange(n * n), n)
    return np.stack([c, r], 1).astype(float) * pitch_um


def test_rings_on_a_legacy_st_grid():
    """200 µm pitch, rings (300, 500): ring 1 = the 8 neighbours, ring 2 = the next 12."""
    xy = _grid(7, 200.0)
    ops = ring_operators(xy, (300, 500))
    centre = 3 * 7 + 3
    r1, r2 = ops[0][centre], ops[1][centre]
    assert r1.nnz == 8 and r2.nnz == 12  # 400, 447 µm in ring 2; 566 µm corners outside
    d1 = np.linalg.norm(xy[r1.indices] - xy[centre], axis=1)
    d2 = np.linalg.norm(xy[r2.indices] - xy[centre], axis=1)
    assert d1.max() <= 300 and d1.min() > 0 and (d2 > 300).all() and (d2 <= 500).all()
    for op in ops:  # rows are means: weights sum to 1, never self in ring 1
        np.testing.assert_allclose(np.asarray(op.sum(1)).ravel(), 1.0)
    assert ops[0].diagonal().sum() == 0
    # a corner spot has 3 ring-1 neighbours
    assert ops[0][0].nnz == 3


def test_ring_means_are_means_and_isolated_spots_keep_their_features():
    xy = np.array([[0, 0], [100, 0], [0, 100], [5000, 5000]], float)
    x = np.array([[1.0], [3.0], [5.0], [7.0]])
    f = context_features(x, xy, (150,))
    assert f.shape == (4, 2) and f.dtype == np.float32
    np.testing.assert_allclose(f[:, 0], x[:, 0])
    np.testing.assert_allclose(f[:, 1], [4.0, 3.0, 2.0, 7.0])  # (3+5)/2, (1+5)/2, (1+3)/2, alone


def test_units_are_micrometres_not_pixels():
    """The same tissue at two resolutions gives the same rings."""
    counts = pd.DataFrame(np.ones((25, 1)), index=[f"s{i}" for i in range(25)], columns=["G"])
    xy_um = _grid(5, 100.0) + 60

    def section(mpp: float, tmp) -> object:
        spots = pd.DataFrame(
            {"pixel_x": xy_um[:, 0] / mpp, "pixel_y": xy_um[:, 1] / mpp}, index=counts.index
        )
        spots["array_row"], spots["array_col"] = np.divmod(np.arange(25), 5)
        img = tmp / f"img{mpp}.png"
        from PIL import Image

        Image.fromarray(np.full((int(700 / mpp), int(700 / mpp), 3), 200, np.uint8)).save(img)
        return make_section(
            counts,
            spots,
            section="S",
            patient="P",
            dataset="t",
            image_path=img,
            mpp=mpp,
            spot_diameter_um=55,
        )

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        a, b = section(0.5, Path(d)), section(1.0, Path(d))
        np.testing.assert_allclose(spot_xy_um(a), xy_um, atol=1e-6)
        np.testing.assert_allclose(spot_xy_um(b), xy_um, atol=1e-6)
        x = np.random.default_rng(0).normal(size=(25, 3))
        cfg = FeatureConfig(context_um=(150,))
        fa = add_context(PreparedSection(adata=a, image=x), cfg).image
        fb = add_context(PreparedSection(adata=b, image=x), cfg).image
        np.testing.assert_allclose(fa, fb, rtol=1e-6)
        assert fa.shape == (25, 6)
        # context_on="patch" with one extra window: rings average only the own-window columns
        x2 = np.hstack([x, 10 + x])
        fp = add_context(
            PreparedSection(adata=a, image=x2),
            FeatureConfig(fov_um=(224,), context_um=(150,), context_on="patch"),
        ).image
        assert fp.shape == (25, 9)
        np.testing.assert_allclose(fp[:, 6:], fa[:, 3:], rtol=1e-6)


@pytest.mark.parametrize("edges", [(500, 300), (0, 100), (-1,), (100, 100)])
def test_bad_ring_edges_are_input_errors(edges):
    with pytest.raises(InputError, match="positive and increasing"):
        FeatureConfig(context_um=edges)
    with pytest.raises(InputError):
        ring_operators(np.zeros((2, 2)), edges)


def test_bad_fov_and_context_on_are_input_errors():
    with pytest.raises(InputError, match="fov_um"):
        FeatureConfig(fov_um=(224, 0))
    with pytest.raises(InputError, match="context_on"):
        FeatureConfig(context_on="rings")
    with pytest.raises(InputError, match="gene_encoder 'go'"):
        FeatureConfig(gene_encoder="go")


def test_feature_config_json_round_trip_and_old_contracts():
    cfg = FeatureConfig(fov_um=[224, 448], context_um=[300, 500], gene_encoder="go-tokens")
    assert cfg.fov_um == (224.0, 448.0) and cfg.context_um == (300.0, 500.0)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["fov_um"] == [224.0, 448.0] and d["context_um"] == [300.0, 500.0]
    back = FeatureConfig(**d)
    assert back == cfg and back.to_dict() == d
    # a contract written before these keys existed loads with windows and rings off
    from geneshot.train._contract import DataContract

    old = {
        k: v
        for k, v in cfg.to_dict().items()
        if k not in ("fov_um", "context_um", "context_on", "gene_encoder")
    }
    c = DataContract(
        features=old, image_dim=1280, nuclei_shape=None, text_dim=384, target={}, seen_genes=["A"]
    )
    legacy = FeatureConfig(**DataContract.from_dict(json.loads(json.dumps(c.to_dict()))).features)
    assert legacy.fov_um == () and legacy.context_um == () and legacy.context_on == "all"
    assert legacy.gene_encoder == "description"  # what every run before the key used


def test_empty_rings_and_no_spots():
    assert ring_operators(np.zeros((3, 2)), ()) == []
    (op,) = ring_operators(np.zeros((0, 2)), (100,))
    assert op.shape == (0, 0)
