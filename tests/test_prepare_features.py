"""``prepare_sections`` with larger windows and context rings: order, values and cache keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geneshot.cache import Cache
from geneshot.image import StainJitter, ring_operators, spot_xy_um
from geneshot.io import make_section
from geneshot.prepare import FeatureConfig, prepare_sections

pytestmark = pytest.mark.slow  # the real effnet-lite0 encoder on a few dozen patches

MPP = 1.0
PITCH_UM = 100.0


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    """A 4 x 4 spot grid, 100 µm apart, on a textured image (1 µm per pixel)."""
    tmp = tmp_path_factory.mktemp("prep")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:700, 0:700]
    img = np.stack([150 + 60 * np.sin(xx / 37.0), 90 + 50 * np.cos(yy / 23.0), 180 + 0 * xx], -1)
    img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp / "he.png")
    r, c = np.divmod(np.arange(16), 4)
    ids = [f"s{i}" for i in range(16)]
    spots = pd.DataFrame(
        {
            "pixel_x": 200 + PITCH_UM * c,
            "pixel_y": 200 + PITCH_UM * r,
            "array_row": r,
            "array_col": c,
        },
        index=ids,
    )
    counts = pd.DataFrame(rng.poisson(3, (16, 2)), index=ids, columns=["A", "B"])
    return make_section(
        counts,
        spots,
        section="S1",
        patient="P",
        dataset="t",
        image_path=tmp / "he.png",
        mpp=MPP,
        spot_diameter_um=55,
    )


def _prep(section, cache, augment=None, **kw):
    kw = {"fov_um": (), "context_um": (), "finetune": False, **kw}  # off unless asked
    cfg = FeatureConfig(nuclei=False, patch_px=64, **kw)
    (p,) = prepare_sections([section], cfg, cache=cache, progress=False, augment=augment)
    return p.image


def test_windows_then_rings_in_a_fixed_order(section, tmp_path):
    cache = Cache(tmp_path / "cache")
    own = _prep(section, cache)
    d = own.shape[1]
    win = _prep(section, cache, fov_um=(224,))
    assert win.shape == (16, 2 * d)
    np.testing.assert_array_equal(win[:, :d], own)  # the own window first, unchanged
    assert not np.allclose(win[:, d:], own)  # the 224 µm window sees something else
    full = _prep(section, cache, fov_um=(224,), context_um=(150, 250))
    assert full.shape == (16, 2 * d * 3)
    np.testing.assert_array_equal(full[:, : 2 * d], win)
    ops = ring_operators(spot_xy_um(section), (150, 250))
    np.testing.assert_allclose(full[:, 2 * d : 4 * d], ops[0] @ win, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full[:, 4 * d :], ops[1] @ win, rtol=1e-5, atol=1e-6)
    # context_on="patch": rings of the own-window features only
    patch = _prep(section, cache, fov_um=(224,), context_um=(150, 250), context_on="patch")
    assert patch.shape == (16, 2 * d + 2 * d)
    np.testing.assert_allclose(patch[:, 2 * d : 3 * d], ops[0] @ own, rtol=1e-5, atol=1e-6)


def test_each_window_is_cached_on_its_own(section, tmp_path):
    cache = Cache(tmp_path / "cache")
    _prep(section, cache, fov_um=(224,))
    assert cache.misses == {"patches": 2, "image-features": 2}
    cache.hits.clear(), cache.misses.clear()
    # adding a window computes only that window; rings are recomputed (cheap), never cached
    _prep(section, cache, fov_um=(224, 448), context_um=(150,))
    assert cache.misses == {"patches": 1, "image-features": 1}
    assert cache.hits == {"patches": 2, "image-features": 2}


def test_stain_augmented_copy_is_its_own_cache_entry(section, tmp_path):
    cache = Cache(tmp_path / "cache")
    plain = _prep(section, cache)
    jittered = _prep(section, cache, augment=StainJitter(0.3, seed=1))
    assert cache.misses == {"patches": 2, "image-features": 2}  # not the plain entry
    assert jittered.shape == plain.shape and not np.allclose(jittered, plain)
    again = _prep(section, cache, augment=StainJitter(0.3, seed=1))
    np.testing.assert_array_equal(again, jittered)
    assert cache.hits == {"patches": 1, "image-features": 1}
