"""User spot tables for ``geneshot predict --spots``: where to predict on a bare image."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from geneshot._constants import Key
from geneshot.errors import InputError
from geneshot.io._tables import check_table_file, numeric_column, read_delimited

_COORD_FIX = (
    "give numeric pixel_x (column) and pixel_y (row) in full-resolution pixels for every spot"
)
_GRID_FIX = "array_row / array_col must be whole numbers (or leave both columns out)"


def read_spots(
    path: str | os.PathLike, image_size: tuple[int, int], pitch_px: float
) -> pd.DataFrame:
    """A spot table (CSV/TSV): ``pixel_x``, ``pixel_y`` and optionally ``array_row``, ``array_col``.

    The first column is the spot id when it is not one of those. Spots outside the image
    are an error. Without grid columns, spots are snapped to a grid of their own pitch.

    Parameters
    ----------
    path
        The table; the delimiter (comma, tab, semicolon) is sniffed.
    image_size
        (width, height) of the image in full-resolution pixels, e.g. ``SlideImage.size``.
    pitch_px
        Grid pitch used when the table has a single spot (so no pitch of its own).

    Returns
    -------
    DataFrame indexed by spot id (str) with float ``pixel_x``, ``pixel_y`` and integer
    ``array_row``, ``array_col``.
    """
    width, height = image_size
    path = check_table_file(path, "spot table", "check the --spots path")
    # engine="python" is what lets pandas sniff the delimiter (sep=None)
    df = read_delimited(
        path, "spot table", "give a CSV with columns pixel_x,pixel_y", sep=None, engine="python"
    )
    for col in ("pixel_x", "pixel_y"):
        if col not in df.columns:
            raise InputError(
                path,
                f"missing column {col!r} (columns: {', '.join(map(str, df.columns[:6]))})",
                "the spot table needs pixel_x (column) and pixel_y (row) in full-resolution pixels",
            )
    if df.empty:
        raise InputError(path, "spot table has a header but no spots", _COORD_FIX)
    first = df.columns[0]
    if first not in ("pixel_x", "pixel_y", Key.ARRAY_ROW, Key.ARRAY_COL):
        df = df.set_index(first)
        df.index = df.index.astype(str)
        dup = df.index[df.index.duplicated()]
        if len(dup):
            raise InputError(
                path,
                f"{len(dup)} duplicated spot ids in column {first!r} (e.g. {dup[0]!r})",
                "each spot must appear once",
            )
        named = df
    else:
        named = df  # a RangeIndex: errors name the file line
        df = df.set_axis(pd.Index([f"spot{i}" for i in range(len(df))]))
    x = numeric_column(named, "pixel_x", path, "spot table", _COORD_FIX)
    y = numeric_column(named, "pixel_y", path, "spot table", _COORD_FIX)
    xy = np.c_[x, y]
    outside = (x < 0) | (y < 0) | (x >= width) | (y >= height)
    if outside.any():
        i = int(np.argmax(outside))
        raise InputError(
            path,
            f"{int(outside.sum())} of {len(xy)} spots lie outside the {width} x {height} px image (first: {df.index[i]!r} at x={x[i]:.0f}, y={y[i]:.0f})",
            "pixel_x is the column and pixel_y the row, in full-resolution pixels of this image",
        )
    df["pixel_x"], df["pixel_y"] = x, y
    grid = [c for c in (Key.ARRAY_ROW, Key.ARRAY_COL) if c in df.columns]
    if len(grid) == 2:
        for col in grid:
            v = numeric_column(named, col, path, "spot table", _GRID_FIX)
            if (v % 1 != 0).any():
                raise InputError(
                    path, f"column {col!r} holds non-integer grid positions", _GRID_FIX
                )
            df[col] = v.astype(np.int64)
        return df
    if grid:
        raise InputError(
            path,
            f"column {grid[0]!r} is given without its partner",
            "give both array_row and array_col, or neither (the grid is then derived)",
        )
    if len(xy) > 1:
        from scipy.spatial import cKDTree

        d, _ = cKDTree(xy).query(xy, k=2)
        pitch_px = float(np.median(d[:, 1])) or pitch_px
    df[Key.ARRAY_ROW] = np.round((y - y.min()) / pitch_px).astype(np.int64)
    df[Key.ARRAY_COL] = np.round((x - x.min()) / pitch_px).astype(np.int64)
    return df
