"""Windowed access to full-resolution slide images.

TIFF / OME-TIFF / SVS-style pyramids are read window by window through tifffile's zarr
store, so a 30,000 x 30,000 px slide is never loaded whole. JPEG and PNG have no random
access; they are decoded once per process (a 10k x 10k JPEG takes about 0.5 s) and kept
in a small LRU, and thumbnails use the JPEG decoder's reduced-size draft mode.

A file that is missing, a folder, empty, not an image, or truncated raises
:class:`~geneshot.errors.InputError` naming the file, whether that shows when its header is
read (:class:`SlideImage`) or only when its pixels are (:meth:`SlideImage.read_window`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from geneshot.errors import InputError

_TIFF_SUFFIXES = {".tif", ".tiff", ".svs", ".btf", ".ome.tif", ".ome.tiff"}
# What PIL and tifffile raise for files that are not images or are cut short (tifffile's
# TiffFileError is a ValueError; PIL reports some broken PNG chunks as SyntaxError).
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    SyntaxError,
    EOFError,
)
_NOT_IMAGE_FIX = "give a JPEG, PNG or TIFF H&E image"
_CORRUPT_FIX = "re-download or re-export the image"

_limit_lock = threading.Lock()
_limit_depth = 0
_limit_saved: int | None = None


@contextmanager
def no_pixel_limit() -> Iterator[None]:
    """Lift PIL's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) for the block only.

    Whole-slide images are legitimately gigapixel, but the guard protects everything else
    in the process that opens images (e.g. a user's own code after ``import geneshot``),
    so it is restored on exit. Nested and concurrent blocks share one lift: the limit is
    restored when the last of them exits.
    """
    global _limit_depth, _limit_saved
    with _limit_lock:
        if _limit_depth == 0:
            _limit_saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _limit_depth += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_depth -= 1
            if _limit_depth == 0:
                Image.MAX_IMAGE_PIXELS = _limit_saved


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in _TIFF_SUFFIXES


def _check_file(path: Path) -> None:
    """Fail on the cases users hit before any decoder is tried: missing, a folder, empty."""
    if not path.exists():
        raise InputError(path, "image file does not exist", "check the image path")
    if path.is_dir():
        raise InputError(
            path, "is a folder, not an image file", "give the path of the H&E image file itself"
        )
    if path.stat().st_size == 0:
        raise InputError(path, "image file is empty (0 bytes)", _CORRUPT_FIX)


def _corrupt(path: Path, err: Exception) -> InputError:
    return InputError(
        path,
        f"image cannot be decoded (truncated or corrupt: {type(err).__name__}: {err})",
        _CORRUPT_FIX,
    )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image in pixels, read from its header only."""
    path = Path(path)
    _check_file(path)
    try:
        if _is_tiff(path):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                shape = tf.series[0].levels[0].shape
                axes = tf.series[0].levels[0].axes
            h = shape[axes.index("Y")]
            w = shape[axes.index("X")]
            size = int(w), int(h)
        else:
            with no_pixel_limit(), Image.open(path) as im:
                size = im.size
    except _DECODE_ERRORS as err:
        raise InputError(
            path, f"not a readable image ({type(err).__name__}: {err})", _NOT_IMAGE_FIX
        ) from None
    if min(size) < 1:
        raise InputError(path, f"image has no pixels ({size[0]} x {size[1]})", _NOT_IMAGE_FIX)
    return size


@lru_cache(maxsize=2)
def _decoded(path: str, mtime_ns: int) -> np.ndarray:
    try:
        with no_pixel_limit(), Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except _DECODE_ERRORS as err:
        raise _corrupt(Path(path), err) from None


class SlideImage:
    """A full-resolution H&E image with windowed reads.

    Parameters
    ----------
    path
        JPEG, PNG or (pyramidal) TIFF file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.width, self.height = image_size(self.path)
        self._zarr = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in full-resolution pixels."""
        return self.width, self.height

    def _tiff_level0(self):
        if self._zarr is None:
            import tifffile
            import zarr

            store = tifffile.imread(self.path, aszarr=True, level=0)
            self._zarr = zarr.open(store, mode="r")
        return self._zarr

    def _raw_window(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        if _is_tiff(self.path):
            try:
                arr = np.asarray(self._tiff_level0()[y0:y1, x0:x1])
            except _DECODE_ERRORS as err:  # a cut-short TIFF: its header read fine
                raise _corrupt(self.path, err) from None
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=2)
            return arr[..., :3].astype(np.uint8, copy=False)
        full = _decoded(str(self.path), self.path.stat().st_mtime_ns)
        return full[y0:y1, x0:x1]

    def read_window(
        self, x: int, y: int, w: int, h: int, fill: int = 255
    ) -> tuple[np.ndarray, np.ndarray]:
        """Read the window with top-left corner (x, y) and size (w, h).

        Parts outside the image are filled with ``fill`` (white, like glass) and marked
        invalid in the returned mask.

        Returns
        -------
        rgb
            (h, w, 3) uint8.
        valid
            (h, w) bool, False where the window left the image.
        """
        out = np.full((h, w, 3), fill, np.uint8)
        valid = np.zeros((h, w), bool)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._raw_window(x0, y0, x1, y1)
            valid[y0 - y : y1 - y, x0 - x : x1 - x] = True
        return out, valid

    def thumbnail(self, max_side: int = 2000) -> tuple[np.ndarray, float]:
        """A downscaled RGB copy and its scale factor (thumbnail px per full-res px)."""
        scale = min(1.0, max_side / max(self.width, self.height))
        tw, th = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        if _is_tiff(self.path):
            import tifffile

            try:
                with tifffile.TiffFile(self.path) as tf:
                    levels = tf.series[0].levels
                    # the smallest pyramid level that is still at least the thumbnail size
                    best = 0
                    for i, lv in enumerate(levels):
                        ax = lv.axes
                        if lv.shape[ax.index("X")] >= tw and lv.shape[ax.index("Y")] >= th:
                            best = i
                    arr = levels[best].asarray()
            except _DECODE_ERRORS as err:
                raise _corrupt(self.path, err) from None
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=2)
            im = Image.fromarray(arr[..., :3].astype(np.uint8))
        else:
            try:
                with no_pixel_limit(), Image.open(self.path) as src:
                    src.draft("RGB", (tw, th))  # JPEG decodes at 1/2, 1/4 or 1/8 size directly
                    im = src.convert("RGB")
            except _DECODE_ERRORS as err:
                raise _corrupt(self.path, err) from None
        im = im.resize((tw, th), Image.BILINEAR)
        return np.asarray(im), scale
