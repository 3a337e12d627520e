"""Slide files: PIL's pixel limit is lifted only while geneshot reads a slide; broken files fail
with an InputError naming them; resolution tags and tissue tiles."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import tifffile
from PIL import Image

from geneshot._constants import Key
from geneshot.errors import InputError
from geneshot.image import SlideImage, image_mpp, image_size, resolve_mpp, tissue_tiles
from geneshot.image._slide import no_pixel_limit


@pytest.fixture
def big_png(tmp_path, monkeypatch):
    """A 120 x 100 PNG and a pixel limit it exceeds more than twice (PIL then refuses it)."""
    path = tmp_path / "slide.png"
    arr = np.zeros((100, 120, 3), np.uint8)
    arr[:, :, 0] = np.arange(120, dtype=np.uint8)[None, :]
    Image.fromarray(arr).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    return path, arr


def test_pixel_limit_is_lifted_only_inside_the_slide_reader(big_png):
    path, arr = big_png
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)  # the guard is in force for everyone else
    slide = SlideImage(path)
    rgb, valid = slide.read_window(10, 20, 30, 40)
    assert valid.all() and np.array_equal(rgb, arr[20:60, 10:40])
    thumb, scale = slide.thumbnail(60)
    assert thumb.shape == (50, 60, 3) and scale == pytest.approx(0.5)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored after each read
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)


def test_importing_geneshot_leaves_the_pixel_limit_alone():
    code = (
        "from PIL import Image; before = Image.MAX_IMAGE_PIXELS; "
        "import geneshot.image, geneshot.io, geneshot.predict, geneshot.cli; "
        "assert Image.MAX_IMAGE_PIXELS == before and before, Image.MAX_IMAGE_PIXELS"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_pixel_limit_nested_and_concurrent_blocks_restore_once(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1234)
    inside, release = threading.Event(), threading.Event()

    def hold():
        with no_pixel_limit():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(5)
    with no_pixel_limit():
        with no_pixel_limit():
            assert Image.MAX_IMAGE_PIXELS is None
        assert Image.MAX_IMAGE_PIXELS is None
    # this thread is done, the other still reads: the limit stays lifted for it
    assert Image.MAX_IMAGE_PIXELS is None
    release.set()
    t.join(5)
    assert Image.MAX_IMAGE_PIXELS == 1234


def test_limit_restored_when_the_read_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 777)
    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        SlideImage(bad)
    assert Image.MAX_IMAGE_PIXELS == 777


def _tiff(path, arr, **kw):
    tifffile.imwrite(path, arr, photometric="rgb", **kw)
    return path


@pytest.mark.parametrize("tiled", [False, True])
def test_truncated_tiff_fails_when_its_pixels_are_read(tmp_path, tiled):
    arr = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    path = _tiff(tmp_path / "s.tif", arr, **({"tile": (128, 128)} if tiled else {}))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    slide = SlideImage(path)  # the header is intact
    assert slide.size == (400, 300)
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        slide.read_window(300, 200, 100, 100)
    assert str(path) in str(err.value) and "re-download" in str(err.value)
    with pytest.raises(InputError, match="truncated or corrupt"):
        slide.thumbnail(100)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.jpg", b"", "image file is empty (0 bytes)"),
        ("empty.tif", b"", "image file is empty (0 bytes)"),
        ("text.tif", b"II*\x00garbage", "not a readable image"),
        ("text.png", b"<html>", "not a readable image"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(problem)) as err:
        image_size(path)
    assert str(err.value).startswith(str(path))


def test_folder_and_missing_path(tmp_path):
    with pytest.raises(InputError, match="is a folder, not an image file"):
        SlideImage(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        SlideImage(tmp_path / "nope.jpg")


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"resolution": (1e4 / 0.5, 1e4 / 0.5), "resolutionunit": "CENTIMETER"}, 0.5),
        ({"resolution": (25400 / 0.25, 25400 / 0.25), "resolutionunit": "INCH"}, 0.25),
        ({"description": "Aperio Image Library |MPP = 0.2520|AppMag = 40"}, 0.252),
        ({}, None),
    ],
)
def test_image_mpp_from_tags(tmp_path, kw, expected):
    path = _tiff(tmp_path / "t.tif", np.zeros((8, 8, 3), np.uint8), **kw)
    got = image_mpp(path)
    assert got == (pytest.approx(expected, rel=1e-4) if expected else None)


def test_resolve_mpp_prefers_the_argument_and_checks_it(tmp_path):
    path = _tiff(
        tmp_path / "t.tif",
        np.zeros((8, 8, 3), np.uint8),
        resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )
    assert resolve_mpp(path, None) == pytest.approx(0.5)
    assert resolve_mpp(path, 0.3) == 0.3
    with pytest.raises(InputError, match="--mpp"):
        resolve_mpp(path, 500.0)


def test_tissue_tiles_on_blank_and_tissue(tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((400, 400, 3), 240, np.uint8)).save(blank)
    assert tissue_tiles(SlideImage(blank), 50.0, 0.5).empty
    tis = tmp_path / "tissue.png"
    im = np.full((400, 400, 3), 240, np.uint8)
    im[100:300, 0:200] = (180, 90, 170)
    Image.fromarray(im).save(tis)
    t = tissue_tiles(SlideImage(tis), 50.0, 0.5)  # 100 px tiles: 2 x 2 cells cover the block
    assert sorted(zip(t[Key.ARRAY_ROW], t[Key.ARRAY_COL])) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert (t["tissue_frac"] > 0.95).all()  # the mask's smoothing may shave an edge pixel
    # tile centres in full-resolution pixels
    assert sorted(zip(t["pixel_x"], t["pixel_y"])) == [
        (50.0, 150.0),
        (50.0, 250.0),
        (150.0, 150.0),
        (150.0, 250.0),
    ]
    with pytest.raises(InputError, match="--mpp"):
        tissue_tiles(SlideImage(tis), 50.0)  # a PNG has no resolution tag
