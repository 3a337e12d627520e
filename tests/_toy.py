"""Tiny synthetic sections shared by the tests: counts on a spot grid, no image."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from geneshot.io import make_section


def grid_section(
    counts: np.ndarray, genes: list[str], name: str, width: int, pitch: float = 10.0
) -> ad.AnnData:
    """A section of ``len(counts)`` spots laid out ``width`` per row, ``pitch`` pixels apart."""
    rows, cols = np.divmod(np.arange(len(counts)), width)
    ids = [f"{c}x{r}" for r, c in zip(rows, cols)]
    spots = pd.DataFrame(
        {"pixel_x": cols * pitch, "pixel_y": rows * pitch, "array_row": rows, "array_col": cols},
        index=ids,
    )
    return make_section(
        pd.DataFrame(counts, index=ids, columns=genes),
        spots,
        section=name,
        patient="P",
        dataset="toy",
        image_path=None,
        mpp=None,
        spot_diameter_um=100,
    )
