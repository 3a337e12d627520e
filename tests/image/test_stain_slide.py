"""Stain normalisation, stain augmentation and windowed slide reading on synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from geneshot.errors import InputError
from geneshot.image import SlideImage, StainJitter, StainNormalizer


def he_like(seed: int, tint=(0, 0, 0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((64, 64, 3), (235, 200, 220), np.float32)  # eosin-pink background
    yy, xx = np.mgrid[:64, :64]
    for cy, cx in rng.integers(6, 58, size=(12, 2)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = (90, 60, 150)  # haematoxylin-purple nuclei
    return np.clip(img + np.asarray(tint) + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_stain_normalisation_moves_colour_towards_reference(method):
    ref = he_like(0)
    src = he_like(1, tint=(-30, 10, -40))
    out = StainNormalizer(method, ref)(src)
    assert out.shape == src.shape and out.dtype == np.uint8
    before = np.abs(src.reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0)).sum()
    after = np.abs(out.reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0)).sum()
    assert after < before


def test_unknown_stain_method():
    with pytest.raises(InputError, match="unknown stain normalisation"):
        StainNormalizer("vahadane", he_like(0))


def test_stain_jitter_is_one_slide_level_draw_per_seed():
    a, b = he_like(0), he_like(1)
    jitter = StainJitter(0.2, seed=3)
    out_a, out_b = jitter(a), jitter(b)
    assert out_a.dtype == np.uint8 and out_a.shape == a.shape
    # a real change of colour, but the same tissue: pixels keep their order of darkness
    assert np.abs(out_a.astype(int) - a).mean() > 2
    assert np.corrcoef(out_a.sum(-1).ravel(), a.sum(-1).ravel())[0, 1] > 0.9
    # one draw per seed: the same factors on every patch, other factors for another seed
    np.testing.assert_array_equal(StainJitter(0.2, seed=3)(b), out_b)
    assert not np.array_equal(StainJitter(0.2, seed=4)(a), out_a)
    assert StainJitter(0.2, seed=3).key != StainJitter(0.2, seed=4).key
    # no jitter: the colour-deconvolution round trip only
    assert np.abs(StainJitter(0.0)(a).astype(int) - a).mean() < 4


def test_stain_jitter_rejects_bad_settings():
    with pytest.raises(InputError, match="sigma"):
        StainJitter(1.5)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_windows_match_the_array_and_pad_outside(tmp_path, suffix):
    arr = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    path = tmp_path / f"slide{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, arr, tile=(16, 16))
    else:
        Image.fromarray(arr).save(path)
    slide = SlideImage(path)
    assert slide.size == (70, 50)
    win, valid = slide.read_window(60, 40, 20, 20)
    np.testing.assert_array_equal(win[:10, :10], arr[40:50, 60:70])
    assert valid[:10, :10].all() and not valid[10:, :].any() and (win[10:] == 255).all()
    thumb, scale = slide.thumbnail(35)
    assert max(thumb.shape[:2]) == 35 and scale == pytest.approx(0.5)


def test_not_an_image(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_text("not a jpeg")
    with pytest.raises(InputError, match="not a readable image"):
        SlideImage(bad)
