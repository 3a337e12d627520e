"""Spot patches at a fixed physical size, read window by window and cached on disk."""

from __future__ import annotations

import anndata as ad
import numpy as np
from PIL import Image

from geneshot._constants import DEFAULT_PATCH_PX, DEFAULT_PATCH_UM, Key
from geneshot._progress import progress_bar
from geneshot.cache import Cache, fingerprint
from geneshot.errors import InputError
from geneshot.image._slide import SlideImage
from geneshot.io._section import section_id, section_meta

PATCHES_VERSION = "patches-v1"  # bump when the extraction changes


def patch_window_px(mpp: float, size_um: float = DEFAULT_PATCH_UM) -> int:
    """Side of a spot window in full-resolution pixels for a physical size."""
    return max(1, int(round(size_um / mpp)))


def _extract(
    slide: SlideImage,
    xy: np.ndarray,
    win: int,
    out_px: int,
    stain=None,
    progress: bool = True,
    desc: str = "patches",
) -> tuple[np.ndarray, np.ndarray]:
    n = len(xy)
    patches = np.empty((n, out_px, out_px, 3), np.uint8)
    valid = np.empty((n, out_px, out_px), bool)
    half = win / 2.0
    for i in progress_bar(range(n), progress=progress, desc=desc, leave=False):
        x0 = int(round(xy[i, 0] - half))
        y0 = int(round(xy[i, 1] - half))
        rgb, ok = slide.read_window(x0, y0, win, win)
        inside = bool(ok.all())  # most windows: no mask to resample
        if win != out_px:
            rgb = np.asarray(Image.fromarray(rgb).resize((out_px, out_px), Image.BILINEAR, reducing_gap=None))
            if not inside:
                ok = np.asarray(Image.fromarray(ok).resize((out_px, out_px), Image.NEAREST))
        if stain is not None:
            rgb = stain(rgb)
        patches[i] = rgb
        valid[i] = True if inside else ok
    return patches, valid


def spot_patches(
    adata: ad.AnnData,
    *,
    size_um: float = DEFAULT_PATCH_UM,
    out_px: int = DEFAULT_PATCH_PX,
    stain=None,
    stain_key: str | None = None,
    cache: Cache | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Each spot's window of ``size_um`` µm, resampled to ``out_px`` pixels.

    Reads ``obsm["spatial"]`` and ``uns["spatial"][section]["metadata"]`` (image path,
    µm/px). Windows that leave the image are filled with white and flagged in ``valid``.

    Parameters
    ----------
    adata
        One section (see :func:`geneshot.io.make_section`).
    size_um, out_px
        Physical window size and output size (default 112 µm -> 224 px = 0.5 µm/px).
    stain, stain_key
        Optional :class:`~geneshot.image.StainNormalizer` and a string identifying it
        (method + reference) for the cache key.
    cache
        Cache to reuse; None computes without caching.

    Returns
    -------
    dict with ``patches`` (n, out_px, out_px, 3) uint8 and ``valid`` (n, out_px, out_px) bool.
    """
    meta = section_meta(adata)
    path = meta[Key.IMAGE_PATH]
    sec = section_id(adata)
    if path is None:
        raise InputError(None, f"section {sec} has no image", "patches need an H&E image; give one (image_path) or use expression-only commands")
    if out_px < 8 or size_um <= 0:
        raise InputError(None, f"patch size {size_um} µm / {out_px} px is not usable", "use e.g. --patch-um 112 --patch-px 224")
    xy = np.asarray(adata.obsm[Key.SPATIAL], dtype=np.float64)
    win = patch_window_px(meta[Key.MPP], size_um)

    def compute() -> dict[str, np.ndarray]:
        slide = SlideImage(path)
        p, v = _extract(slide, xy, win, out_px, stain, progress, desc=f"patches {sec}")
        return {"patches": p, "valid": v}

    if cache is None:
        return compute()
    parts = {
        "v": PATCHES_VERSION,
        "image": fingerprint(path),
        "xy": np.round(xy, 2),
        "mpp": meta[Key.MPP],
        "size_um": size_um,
        "out_px": out_px,
        "stain": stain_key if stain is not None else None,
    }
    return cache.arrays("patches", parts, compute)
