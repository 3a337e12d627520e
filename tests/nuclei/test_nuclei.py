"""Nuclei segmentation, per-nucleus tables and nuclei-distribution maps."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from skimage.color import rgb2hed
from skimage.measure import regionprops

from geneshot.errors import InputError, MissingDependencyError
from geneshot.nuclei import (
    MAP_CHANNELS,
    NUCLEI_BACKENDS,
    SUMMARY_NAMES,
    NucleiResult,
    SkimageBackend,
    distribution_map,
    get_nuclei_backend,
    haematoxylin,
    nuclei_table,
    segment_patch,
    segment_patches,
    segment_skimage,
)

PINK = (235, 180, 210)
PURPLE = (70, 40, 130)


def _disks(centres, radius, size=224, seed=0, noise=6):
    """Pink patch with dark-purple disks; returns the RGB patch and the true centres (x, y)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.empty((size, size, 3), np.float64)
    img[:] = PINK
    for (x, y), r in zip(centres, np.broadcast_to(radius, len(centres)), strict=True):
        img[(xx - x) ** 2 + (yy - y) ** 2 <= r**2] = PURPLE
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _grid_centres(n_side=6, size=224, margin=20, jitter=3, seed=1):
    rng = np.random.default_rng(seed)
    g = np.linspace(margin, size - margin, n_side)
    xy = np.array([(x, y) for y in g for x in g], float)
    return xy + rng.uniform(-jitter, jitter, xy.shape)


@pytest.fixture(scope="module")
def synth():
    """Three patches: 36 disks, 20 disks of mixed size, and a blank pink one."""
    c1 = _grid_centres(6)
    c2 = _grid_centres(5, seed=2)[:20]
    r2 = np.random.default_rng(3).uniform(5, 9, len(c2))
    p = np.stack([_disks(c1, 7), _disks(c2, r2, seed=4), _disks([], 7, seed=5)])
    return p, [c1, c2, np.zeros((0, 2))]


def test_haematoxylin_matches_rgb2hed(synth):
    p = synth[0][0]
    np.testing.assert_allclose(haematoxylin(p), rgb2hed(p)[..., 0], rtol=1e-5, atol=1e-7)


def test_counts_and_centroids_recovered(synth):
    patches, truth = synth
    for p, xy in zip(patches[:2], truth[:2], strict=True):
        labels, table = segment_patch(p)
        assert labels.dtype == np.int32 and labels.shape == p.shape[:2]
        assert abs(len(table) - len(xy)) <= max(1, 0.05 * len(xy))
        found = table[["centroid_x", "centroid_y"]].to_numpy()
        d = np.sqrt(((found[:, None] - xy[None]) ** 2).sum(-1)).min(1)
        assert np.median(d) < 1.0 and d.max() < 3.0
        # instance ids are 1..n without gaps
        assert set(np.unique(labels)) == set(range(len(table) + 1))


def test_touching_disks_are_split():
    p = _disks([(100, 112), (113, 112)], 8)  # overlapping by 3 px: one mask blob
    labels, table = segment_patch(p)
    assert len(table) == 2
    assert sorted(table.centroid_x.round()) == pytest.approx([100, 113], abs=2)


@pytest.mark.parametrize("rgb", [(245, 245, 245), PINK, (255, 255, 255)])
def test_blank_patches_have_no_nuclei(rgb):
    p = np.clip(
        np.full((224, 224, 3), rgb, float) + np.random.default_rng(0).normal(0, 4, (224, 224, 3)),
        0,
        255,
    ).astype(np.uint8)
    labels, table = segment_patch(p)
    assert labels.max() == 0 and len(table) == 0


def test_invalid_region_is_ignored(synth):
    p = synth[0][0]
    valid = np.ones(p.shape[:2], bool)
    valid[:, 112:] = False  # right half left the image
    labels, hema = segment_skimage(p, valid)
    assert labels[:, 112:].max() == 0 and hema[:, 112:].max() == 0
    # left-half disks (centre x < 112 - radius) are all still found
    n_left = int((synth[1][0][:, 0] < 112 - 8).sum())
    assert labels.max() >= n_left
    res = segment_patches(p[None], valid[None], n_jobs=1, progress=False)
    assert res.summary[0, SUMMARY_NAMES.index("valid_fraction")] == pytest.approx(0.5)
    assert res.maps[0, :, :, 28:].max() == 0  # every channel empty outside the image


def test_table_matches_regionprops(synth):
    p = synth[0][1]
    labels, hema = segment_skimage(p)
    t = nuclei_table(labels, hema, mpp=0.5, solidity=True)
    assert list(t.columns) == [
        "label",
        "centroid_x",
        "centroid_y",
        "area_px",
        "area_um2",
        "eccentricity",
        "mean_haematoxylin",
        "solidity",
    ]
    props = regionprops(labels, intensity_image=hema)
    ref = pd.DataFrame(
        {
            "cx": [r.centroid[1] for r in props],
            "area": [r.area for r in props],
            "ecc": [r.eccentricity for r in props],
            "sol": [r.solidity for r in props],
            "mh": [r.intensity_mean for r in props],
        }
    )
    np.testing.assert_allclose(t.centroid_x, ref.cx, atol=1e-3)
    np.testing.assert_array_equal(t.area_px, ref.area)
    np.testing.assert_allclose(t.area_um2, ref.area * 0.25, rtol=1e-6)
    np.testing.assert_allclose(t.eccentricity, ref.ecc, atol=1e-4)
    np.testing.assert_allclose(t.solidity, ref.sol, atol=1e-4)
    np.testing.assert_allclose(t.mean_haematoxylin, ref.mh, rtol=1e-4)
    assert "solidity" not in nuclei_table(labels, hema).columns


def test_size_limits_follow_mpp():
    p = _disks([(60, 60)], 3)  # a 29 px disk
    # at 0.5 µm/px it is 7 µm², under the 12 µm² minimum: dropped
    assert len(segment_patch(p, mpp=0.5)[1]) == 0
    # at 1.0 µm/px it is 29 µm²: kept, with its area in µm²
    t = segment_patch(p, mpp=1.0)[1]
    assert (
        len(t) == 1
        and t.area_um2.iloc[0] == pytest.approx(t.area_px.iloc[0])
        and 20 < t.area_um2.iloc[0] < 40
    )
    # objects over max_area_um2 are dropped (7 px disks at 0.5 µm/px are about 38 µm²)
    q = _disks(_grid_centres(3), 7)
    assert len(segment_patch(q, backend=SkimageBackend(max_area_um2=1000.0))[1]) == 9
    assert len(segment_patch(q, backend=SkimageBackend(max_area_um2=20.0))[1]) == 0


def test_maps_shape_dtype_range(synth):
    patches, truth = synth
    res = segment_patches(patches, n_jobs=1, progress=False, return_tables=True)
    assert isinstance(res, NucleiResult) and len(res) == 3
    assert res.maps.shape == (3, 4, 56, 56) and res.maps.dtype == np.float16
    assert res.summary.shape == (3, len(SUMMARY_NAMES)) and res.summary.dtype == np.float32
    assert res.channels == MAP_CHANNELS
    assert np.isfinite(res.maps).all() and res.maps.min() >= 0
    for c in ("mask", "size", "haematoxylin"):
        assert res.maps[:, MAP_CHANNELS.index(c)].max() <= 1.0
    np.testing.assert_array_equal(res.counts, [len(t) for t in res.tables])
    assert res.counts[2] == 0 and res.maps[2, :3].max() == 0  # blank patch: empty maps
    # mask channel averages to the nuclear fraction; density integrates to the count
    m = res.maps.astype(np.float64)
    frac = res.summary[:, SUMMARY_NAMES.index("nuclear_fraction")]
    np.testing.assert_allclose(m[:, 0].mean((1, 2)), frac, atol=2e-3)
    cell_um2 = (224 / 56 * 0.5) ** 2
    np.testing.assert_allclose(
        m[:, 1].sum((1, 2)) * cell_um2 / 100, res.counts, rtol=0.05, atol=0.1
    )
    dens = res.summary[:, SUMMARY_NAMES.index("density_per_mm2")]
    np.testing.assert_allclose(dens, res.counts / (112 * 112 / 1e6), rtol=1e-4)
    # size channel: 7 px disks at 0.5 µm/px are about 40 µm², 0.1 of the 400 µm² reference
    size0 = m[0, 2][m[0, 0] > 0.99]
    assert 0.07 < size0.mean() < 0.13


def test_map_size_and_extra_channels(synth):
    p = synth[0][0]
    labels, hema = segment_skimage(p)
    m = distribution_map(labels, hema, size=32, channels=("density", "valid"))
    assert m.shape == (2, 32, 32) and m.dtype == np.float32
    np.testing.assert_allclose(m[1], 1.0)
    with pytest.raises(ValueError, match="unknown map channel"):
        distribution_map(labels, hema, channels=("nope",))


@pytest.mark.slow  # a few seconds: starting the worker processes
def test_parallel_equals_serial(synth):
    patches = np.concatenate([synth[0]] * 12)  # 36 patches -> several chunks
    ser = segment_patches(patches, n_jobs=1, progress=False, return_tables=True)
    par = segment_patches(patches, n_jobs=2, progress=False, return_tables=True, chunk_size=5)
    np.testing.assert_array_equal(ser.maps, par.maps)
    np.testing.assert_array_equal(ser.summary, par.summary)
    np.testing.assert_array_equal(ser.counts, par.counts)
    for a, b in zip(ser.tables, par.tables, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert par.config["backend"] == "skimage" and par.config["mpp"] == 0.5


def test_bad_input_names_field_and_fix(synth):
    p = synth[0]
    with pytest.raises(InputError, match="patches has dtype float64"):
        segment_patches(p.astype(float), progress=False)
    with pytest.raises(InputError, match=r"expected \(N, H, W, 3\)"):
        segment_patches(p[0], progress=False)
    with pytest.raises(InputError, match="valid has shape"):
        segment_patches(p, valid=np.ones((3, 10, 10), bool), progress=False)
    with pytest.raises(InputError, match="mpp"):
        segment_patches(p, mpp=0, progress=False)
    with pytest.raises(InputError, match="unknown nuclei backend"):
        get_nuclei_backend("hovernet")


def test_backend_registry_and_params():
    assert set(NUCLEI_BACKENDS) == {"skimage", "stardist", "cellpose"}
    be = get_nuclei_backend("skimage", max_area_um2=200.0)
    assert (
        isinstance(be, SkimageBackend)
        and be.params.max_area_um2 == 200.0
        and be.max_area_um2 == 200.0
    )
    assert get_nuclei_backend(be) is be


@pytest.mark.parametrize("name,module", [("stardist", "stardist"), ("cellpose", "cellpose")])
def test_missing_optional_backend_gives_clear_error(name, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(MissingDependencyError) as err:
        segment_patches(np.zeros((1, 32, 32, 3), np.uint8), backend=name, progress=False)
    msg = str(err.value)
    assert (
        module in msg.lower() and "pip install geneshot[foundation]" in msg and '"skimage"' in msg
    )
