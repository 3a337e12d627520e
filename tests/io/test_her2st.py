"""HER2+ reader: synthetic layout for every branch, then the real data when available."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geneshot._constants import Key
from geneshot.errors import InputError
from geneshot.image import spot_patches
from geneshot.io import read_dataset, read_her2st_section, section_meta


def write_her2st(root: Path, section: str = "C2", n: int = 6, image: bool = True, img_size=(400, 300)) -> Path:
    """A tiny HER2+-layout folder: counts, spot file and (optionally) an image."""
    rng = np.random.default_rng(0)
    xs, ys = np.meshgrid(np.arange(1, 4), np.arange(1, 1 + (n + 2) // 3))
    xs, ys = xs.ravel()[:n], ys.ravel()[:n]
    ids = [f"{x}x{y}" for x, y in zip(xs, ys)]
    counts = pd.DataFrame(rng.poisson(3, size=(n, 5)), index=ids, columns=["ERBB2", "KRT19", "ACTB", "CD74", "MT-CO3"])
    (root / "ST-cnts").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "ST-cnts" / f"{section}.tsv.gz", "wt") as fh:
        counts.to_csv(fh, sep="\t")
    spots = pd.DataFrame({"x": xs, "y": ys, "new_x": xs + 0.01, "new_y": ys, "pixel_x": 60.0 * xs + 20, "pixel_y": 60.0 * ys + 20, "selected": 1})
    (root / "ST-spotfiles").mkdir(exist_ok=True)
    spots.to_csv(root / "ST-spotfiles" / f"{section}_selection.tsv", sep="\t", index=False)
    if image:
        d = root / "ST-imgs" / section[0] / section
        d.mkdir(parents=True, exist_ok=True)
        arr = np.full((img_size[1], img_size[0], 3), 230, np.uint8)
        arr[::7, ::5] = (80, 40, 140)  # "nuclei" speckle
        Image.fromarray(arr).save(d / "HE.jpg")
    return root


def test_reads_synthetic_section(tmp_path):
    root = write_her2st(tmp_path)
    a = read_her2st_section(root, "C2")
    assert a.shape == (6, 5)
    assert list(a.obs[Key.SECTION].unique()) == ["C2"] and list(a.obs[Key.PATIENT].unique()) == ["C"]
    np.testing.assert_allclose(a.obsm[Key.SPATIAL][0], [80.0, 80.0])  # x = column from pixel_x
    meta = section_meta(a)
    assert meta[Key.MPP] == pytest.approx(0.69) and meta[Key.IMAGE_PATH].endswith("HE.jpg")
    assert a.uns[Key.UNS_SPATIAL]["C2"][Key.SCALEFACTORS][Key.SPOT_DIAMETER] == pytest.approx(100 / 0.69)
    assert (a.obs[Key.ARRAY_COL].to_numpy() == [1, 2, 3, 1, 2, 3]).all()


def test_section_without_image_loads_for_expression(tmp_path, caplog):
    root = write_her2st(tmp_path, image=False)
    a = read_her2st_section(root, "C2")
    assert section_meta(a)[Key.IMAGE_PATH] is None
    with pytest.raises(InputError, match="no image"):
        spot_patches(a)
    with pytest.raises(InputError, match="have no H&E image"):
        read_dataset("her2st", root, "C2", require_image=True)


def test_imaged_only_skips_the_tables_of_imageless_sections(tmp_path):
    root = write_her2st(tmp_path, "C2")
    write_her2st(root, "A1", image=False)
    # a broken table of an image-less section would fail if it were parsed
    with gzip.open(root / "ST-cnts" / "A1.tsv.gz", "wt") as fh:
        fh.write("")
    got = read_dataset("her2st", root, None, imaged_only=True)
    assert [section_meta(a)[Key.IMAGE_PATH] is not None for a in got] == [True]
    with pytest.raises(InputError, match="A1"):
        read_dataset("her2st", root, None)


def test_patch_at_border_is_flagged(tmp_path):
    root = write_her2st(tmp_path)
    a = read_her2st_section(root, "C2")
    out = spot_patches(a, size_um=150, out_px=32, progress=False)
    assert out["patches"].shape == (6, 32, 32, 3) and out["patches"].dtype == np.uint8
    # the first spot sits at (80, 80) px; a 217 px window leaves the image on the top-left
    assert not out["valid"][0].all() and out["valid"][0].any()


def test_patches_are_cached(tmp_path):
    from geneshot.cache import Cache

    root = write_her2st(tmp_path)
    a = read_her2st_section(root, "C2")
    cache = Cache(tmp_path / "c")
    first = spot_patches(a, cache=cache, out_px=32, progress=False)
    second = spot_patches(a, cache=cache, out_px=32, progress=False)
    assert cache.misses == {"patches": 1} and cache.hits == {"patches": 1}
    np.testing.assert_array_equal(first["patches"], second["patches"])


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_all_count_tables_load(her2st_dir):
    secs = read_dataset("her2st", her2st_dir)
    assert len(secs) == 35
    n = {a.uns[Key.UNS_SPATIAL].keys().__iter__().__next__(): a.n_obs for a in secs}
    assert n["C2"] == 187
    assert sum(n.values()) > 13000
    assert all(176 <= v <= 712 for v in n.values())


@pytest.mark.realdata
def test_real_imaged_sections_spots_on_tissue(her2st_dir):
    from geneshot.image import SlideImage

    secs = read_dataset("her2st", her2st_dir, "C2,C3,C4,C5,C6", require_image=True)
    for a in secs:
        slide = SlideImage(section_meta(a)[Key.IMAGE_PATH])
        thumb, scale = slide.thumbnail(1000)
        xy = (a.obsm[Key.SPATIAL] * scale).astype(int)
        # tissue is darker than the glass background
        grey = thumb.mean(axis=2)
        on_spots = grey[xy[:, 1], xy[:, 0]]
        assert np.median(on_spots) < np.percentile(grey, 90) - 20, "spots do not fall on tissue"


@pytest.mark.realdata
def test_real_patch_is_not_background(her2st_dir):
    a = read_her2st_section(her2st_dir, "C2")
    out = spot_patches(a[:3].copy(), progress=False)
    p = out["patches"]
    assert p.shape == (3, 224, 224, 3)
    # H&E tissue: not white glass, and has texture
    assert p.mean() < 215 and p.std() > 15
