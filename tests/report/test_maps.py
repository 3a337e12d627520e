"""Gene maps: rendered deterministically, spots drawn where and in the colour they should be."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from geneshot.errors import InputError
from geneshot.report._maps import plot_gene_maps

XY = np.array([[20.0, 20.0], [60.0, 20.0], [20.0, 60.0], [60.0, 60.0]])
IMAGE = np.full((80, 80, 3), 230, np.uint8)


def _values(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pred = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 2.0]])
    return {"measured": pred + rng.normal(0, 0.1, pred.shape), "predicted": pred}


def _pixels(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return np.asarray(Image.open(buf).convert("RGB")).astype(int)


def _spot_rgb(fig, ax, xy) -> np.ndarray:
    """RGB under a data point, read from the rendered canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    x, y = ax.transData.transform(xy)
    return rgba[int(round(rgba.shape[0] - y)), int(round(x)), :3].astype(int)


def test_layout_and_reproducible_rendering():
    fig = plot_gene_maps(IMAGE, XY, _values(), ["ERBB2", "MYC"], spot_size=16, title="toy")
    axes = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in axes] == [
        "ERBB2: measured",
        "ERBB2: predicted",
        "MYC: measured",
        "MYC: predicted",
    ]
    assert len(fig.axes) == 8  # each panel has its colour bar
    again = plot_gene_maps(IMAGE, XY, _values(), ["ERBB2", "MYC"], spot_size=16, title="toy")
    a, b = _pixels(fig), _pixels(again)
    assert a.shape == b.shape and np.abs(a - b).max() == 0
    other = _pixels(
        plot_gene_maps(IMAGE, XY, _values(1), ["ERBB2", "MYC"], spot_size=16, title="toy")
    )
    assert np.abs(a - other).mean() > 0.01  # different data, different picture


def test_spots_take_their_colour_over_the_image():
    vals = {"predicted": np.array([[0.0], [1.0], [2.0], [np.nan]])}
    fig = plot_gene_maps(IMAGE, XY, vals, ["ERBB2"], spot_size=20)
    ax = fig.axes[0]
    vir = matplotlib.colormaps["viridis"]
    for i, frac in [(0, 0.0), (1, 0.5), (2, 1.0)]:
        want = (np.array(vir(frac)[:3]) * 255).round()
        np.testing.assert_allclose(_spot_rgb(fig, ax, XY[i]), want, atol=12)
    np.testing.assert_allclose(_spot_rgb(fig, ax, XY[3]), [0xBB] * 3, atol=12)  # NaN is grey
    np.testing.assert_allclose(
        _spot_rgb(fig, ax, (40.0, 40.0)), [230] * 3, atol=12
    )  # tissue shows between spots


def test_uncertainty_uses_another_colour_map_and_no_image_works():
    vals = {"uncertainty": np.array([[0.0], [1.0], [0.5], [0.2]])}
    fig = plot_gene_maps(None, XY, vals, ["ERBB2"], spot_size=20)
    want = (np.array(matplotlib.colormaps["magma"](1.0)[:3]) * 255).round()
    np.testing.assert_allclose(_spot_rgb(fig, fig.axes[0], XY[1]), want, atol=12)


def test_writes_png_atomically(tmp_path):
    out = tmp_path / "maps" / "erbb2.png"
    plot_gene_maps(IMAGE, XY, _values(), ["ERBB2", "MYC"], 16, out=out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 200
    assert [p.name for p in out.parent.iterdir()] == ["erbb2.png"]


def test_shape_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="expected \\(4, 2\\)"):
        plot_gene_maps(
            IMAGE, XY, {"predicted": np.zeros((4, 3))}, ["A", "B"], 10, out=tmp_path / "x.png"
        )
    with pytest.raises(InputError, match="xy"):
        plot_gene_maps(IMAGE, XY[:, 0], {"predicted": np.zeros((4, 1))}, ["A"], 10)
    assert not list(tmp_path.iterdir())


def test_panel_titles_replace_the_named_panels_only():
    titles = {("MYC", "predicted"): "MYC: predicted (departure 0.03)"}
    fig = plot_gene_maps(IMAGE, XY, _values(), ["ERBB2", "MYC"], spot_size=16, panel_titles=titles)
    assert [a.get_title() for a in fig.axes if a.get_title()] == [
        "ERBB2: measured",
        "ERBB2: predicted",
        "MYC: measured",
        "MYC: predicted (departure 0.03)",
    ]


def test_plot_titles_carry_each_genes_departure():
    import anndata as ad
    import pandas as pd

    from geneshot.cli._predict import _departure_titles

    var = pd.DataFrame({"departure": [0.031, np.nan]}, index=["ERBB2", "CD74"])
    a = ad.AnnData(np.zeros((2, 2), np.float32), var=var)
    assert _departure_titles(a, ["ERBB2", "CD74"]) == {
        ("ERBB2", "predicted"): "ERBB2: predicted (departure 0.03)"
    }
    assert _departure_titles(ad.AnnData(np.zeros((2, 2), np.float32)), ["0", "1"]) == {}
