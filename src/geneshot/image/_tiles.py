"""Where the tissue is and how big a pixel is: resolution tags, tissue mask, tissue tiles.

:func:`tissue_tiles` puts a grid of model-patch-sized tiles over the tissue found on a
thumbnail, so a bare slide can be predicted without a spot table. The tissue fraction of
every grid cell comes from an integral image of the thumbnail mask, so the grid costs
O(rows x cols) whatever the slide size.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from geneshot._constants import Key
from geneshot.errors import InputError
from geneshot.image._slide import SlideImage
from geneshot.io._section import check_mpp

TISSUE_FRAC = "tissue_frac"  # obs column: fraction of a tile covered by tissue

_TIFF_SUFFIXES = {".tif", ".tiff", ".svs", ".btf"}


def image_mpp(path: str | os.PathLike) -> float | None:
    """µm per pixel from a TIFF's resolution tags or an SVS/OME description, else None."""
    path = Path(path)
    if path.suffix.lower() not in _TIFF_SUFFIXES:
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            desc = page.description or ""
            m = re.search(r"MPP\s*=\s*([0-9.]+)", desc) or re.search(
                r'PhysicalSizeX="([0-9.eE+-]+)"', desc
            )
            if m:
                return float(m.group(1))
            tags = page.tags
            if "XResolution" in tags and "ResolutionUnit" in tags:
                num, den = tags["XResolution"].value
                unit = int(tags["ResolutionUnit"].value)
                px_per_unit = num / den if den else 0.0
                if px_per_unit > 0 and unit in (2, 3):  # inch, centimetre (1 = no unit)
                    return (25400.0 if unit == 2 else 10000.0) / px_per_unit
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, ZeroDivisionError):
        return None
    return None


def resolve_mpp(image: str | os.PathLike, mpp: float | None) -> float:
    """``mpp`` if given, else the image's resolution tag; a clear error when neither exists."""
    if mpp is None:
        mpp = image_mpp(image)
        if mpp is None:
            raise InputError(
                image,
                "the image has no usable resolution tag (microns per pixel)",
                "pass --mpp (µm per full-resolution pixel, e.g. 0.5 at 20x, 0.25 at 40x)",
            )
        return check_mpp(mpp, image, "the image's resolution tag")
    return check_mpp(mpp, image, "--mpp")


def tissue_mask(thumb: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail (stained = saturated, not glass, not black)."""
    from scipy import ndimage as ndi
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu

    hsv = rgb2hsv(thumb[..., :3])
    sat, val = hsv[..., 1], hsv[..., 2]
    usable = val > 0.15  # scanner borders and pen marks are dark
    thr = 0.05
    if usable.sum() > 16 and np.ptp(sat[usable]) > 1e-6:
        thr = max(float(threshold_otsu(sat[usable])), 0.05)
    mask = (sat > thr) & usable
    r = max(1, round(min(thumb.shape[:2]) / 300))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = xx**2 + yy**2 <= r * r
    mask = ndi.binary_opening(ndi.binary_closing(mask, disk), disk)
    # drop specks (dust, debris) smaller than 0.02 % of the thumbnail
    labels, n = ndi.label(mask)
    if n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= max(4, mask.size // 5000)
        keep[0] = False
        mask = keep[labels]
    return mask


def tissue_tiles(
    slide: SlideImage,
    tile_um: float,
    mpp: float | None = None,
    *,
    min_tissue: float = 0.25,
    thumb_side: int = 2000,
    thumbnail: tuple[np.ndarray, float] | None = None,
) -> pd.DataFrame:
    """Square tiles of ``tile_um`` µm on a grid over the tissue of a slide.

    Parameters
    ----------
    slide
        The full-resolution image.
    tile_um
        Tile side in µm (the model's patch size, ``contract.features["patch_um"]``).
    mpp
        µm per full-resolution pixel (default: the image's resolution tag).
    min_tissue
        Smallest fraction of a tile covered by tissue on the thumbnail mask.
    thumb_side, thumbnail
        Thumbnail size, or an already made ``(rgb, scale)`` thumbnail.

    Returns
    -------
    DataFrame indexed by tile id with ``pixel_x``, ``pixel_y`` (tile centre, full-res
    pixels), integer ``array_row``, ``array_col`` (grid indices, for the spot graph) and
    ``tissue_frac``.
    """
    mpp = resolve_mpp(slide.path, mpp)
    if tile_um <= 0:
        raise InputError(
            None, f"tile size {tile_um} µm is not positive", "use the model's patch size"
        )
    thumb, scale = thumbnail if thumbnail is not None else slide.thumbnail(thumb_side)
    mask = tissue_mask(thumb).astype(np.float64)
    tile_px = tile_um / mpp
    n_rows, n_cols = int(np.ceil(slide.height / tile_px)), int(np.ceil(slide.width / tile_px))
    # integral image: the tissue fraction of any thumbnail box in O(1)
    integ = np.pad(mask.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    th, tw = mask.shape
    r = np.arange(n_rows)
    c = np.arange(n_cols)
    y0 = np.clip(np.floor(r * tile_px * scale).astype(int), 0, th)
    y1 = np.clip(np.maximum(np.ceil((r + 1) * tile_px * scale).astype(int), y0 + 1), 0, th)
    x0 = np.clip(np.floor(c * tile_px * scale).astype(int), 0, tw)
    x1 = np.clip(np.maximum(np.ceil((c + 1) * tile_px * scale).astype(int), x0 + 1), 0, tw)
    box = integ[y1][:, x1] - integ[y0][:, x1] - integ[y1][:, x0] + integ[y0][:, x0]
    # area of the full tile on the thumbnail, so a tile hanging off the edge counts glass
    area = np.outer(
        np.maximum((r + 1) * tile_px * scale - r * tile_px * scale, 1e-9),
        np.maximum((c + 1) * tile_px * scale - c * tile_px * scale, 1e-9),
    )
    frac = np.clip(box / area, 0.0, 1.0)
    rr, cc = np.nonzero(frac >= min_tissue)
    return pd.DataFrame(
        {
            "pixel_x": (cc + 0.5) * tile_px,
            "pixel_y": (rr + 0.5) * tile_px,
            Key.ARRAY_ROW: rr.astype(np.int64),
            Key.ARRAY_COL: cc.astype(np.int64),
            TISSUE_FRAC: frac[rr, cc].astype(np.float32),
        },
        index=pd.Index([f"r{a}_c{b}" for a, b in zip(rr, cc)], name="tile"),
    )
