"""Nuclei on real HER2+ patches (needs $GENESHOT_DATA; skipped otherwise)."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geneshot.image._slide import SlideImage
from geneshot.nuclei import SUMMARY_NAMES, segment_patches

pytestmark = pytest.mark.realdata

C2_MPP = 0.69  # HEST-1k estimate for patients B-H
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "nuclei_overlay.py"


def _c2(her2st_dir: Path) -> tuple[Path, pd.DataFrame]:
    image = her2st_dir / "ST-imgs" / "C" / "C2" / "5714_HE_BT_C2.jpg"
    spots = pd.read_csv(her2st_dir / "ST-spotfiles" / "C2_selection.tsv", sep="\t")
    return image, spots


def test_real_spot_patches_have_plausible_nuclei(her2st_dir):
    image, spots = _c2(her2st_dir)
    slide = SlideImage(image)
    w = round(112 / C2_MPP)  # 162 px -> resized to 224 px = 0.5 µm/px
    rows = spots.iloc[np.linspace(0, len(spots) - 1, 6).round().astype(int)]
    patches = []
    for x, y in rows[["pixel_x", "pixel_y"]].to_numpy():
        rgb, _ = slide.read_window(round(x - w / 2), round(y - w / 2), w, w)
        patches.append(np.asarray(Image.fromarray(rgb).resize((224, 224), Image.BILINEAR)))
    rng = np.random.default_rng(0)
    glass = np.clip(rng.normal(242, 4, (224, 224, 3)), 0, 255).astype(np.uint8)
    res = segment_patches(
        np.stack([*patches, glass]), mpp=0.5, n_jobs=1, progress=False, return_tables=True
    )
    tissue = res.counts[:-1]
    assert ((tissue >= 20) & (tissue <= 400)).all(), tissue
    assert res.counts[-1] <= 1
    area = res.summary[:-1, SUMMARY_NAMES.index("mean_area_um2")]
    assert ((area > 15) & (area < 200)).all(), area  # nucleus-sized objects, not tissue blobs
    frac = res.summary[:-1, SUMMARY_NAMES.index("nuclear_fraction")]
    assert ((frac > 0.03) & (frac < 0.7)).all(), frac


def test_overlay_script_writes_png(her2st_dir, tmp_path):
    image, _ = _c2(her2st_dir)
    out = tmp_path / "overlay.png"
    mod = runpy.run_path(str(SCRIPT))
    mod["main"](
        [
            "--out",
            str(out),
            "--image",
            str(image),
            "--spots",
            str(her2st_dir / "ST-spotfiles" / "C2_selection.tsv"),
            "--n",
            "2",
            "--cols",
            "2",
        ]
    )
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300
