"""The section model: one AnnData per tissue section, validated on construction.

Layout (scverse conventions)::

    X                       raw counts, float32 CSR, spots x genes
    obs[section, patient]   ids; obs[array_row, array_col] grid indices
    obsm["spatial"]         (n, 2) full-resolution pixels, x = column, y = row
    uns["spatial"][section]
        images              {} (filled by geneshot.image when a thumbnail is made)
        scalefactors        spot_diameter_fullres (px), tissue_hires_scalef
        metadata            image_path (str or None), microns_per_pixel, dataset
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geneshot._constants import Key
from geneshot.errors import InputError

log = logging.getLogger(__name__)

# Plausible microscope scales for H&E scans: 0.1 µm/px (100x) to 20 µm/px (low-res scans).
MPP_RANGE = (0.05, 20.0)


def check_mpp(mpp: float, source: str | os.PathLike | None, field: str = "microns per pixel") -> float:
    """Raise an InputError unless ``mpp`` is a plausible scale."""
    try:
        val = float(mpp)
    except (TypeError, ValueError):
        raise InputError(source, f"{field} is not a number ({mpp!r})", "give µm per full-resolution pixel, e.g. 0.5") from None
    if not np.isfinite(val) or not MPP_RANGE[0] <= val <= MPP_RANGE[1]:
        raise InputError(
            source,
            f"{field} = {mpp!r} is not a plausible scale (expected {MPP_RANGE[0]}–{MPP_RANGE[1]} µm/px)",
            "give µm per full-resolution pixel (e.g. 0.25 at 40x, 0.5 at 20x); --mpp sets it by hand",
        )
    return val


def check_counts(counts: pd.DataFrame, source: str | os.PathLike | None) -> pd.DataFrame:
    """Validate a spots x genes count table; return it as float32 with string labels."""
    if counts.shape[0] == 0 or counts.shape[1] == 0:
        raise InputError(source, f"count table is empty ({counts.shape[0]} spots x {counts.shape[1]} genes)", "check that the file holds a spots x genes table")
    counts.index = counts.index.astype(str)
    counts.columns = counts.columns.astype(str)
    dup = counts.index[counts.index.duplicated()]
    if len(dup):
        raise InputError(source, f"{len(dup)} duplicated spot ids in the first column (e.g. {dup[0]!r})", "each spot must appear once; remove or merge the duplicates")
    numeric = counts.apply(pd.to_numeric, errors="coerce") if any(not pd.api.types.is_numeric_dtype(dt) for dt in counts.dtypes) else counts
    bad = numeric.isna()
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raw = counts.iat[r, c]
        raise InputError(
            source,
            f"count table has {int(bad.to_numpy().sum())} non-numeric or NaN values (first: spot {counts.index[r]!r}, gene {counts.columns[c]!r}, value {raw if isinstance(raw, float) else repr(raw)})",
            "counts must be non-negative numbers; fix or drop those cells",
        )
    arr = numeric.to_numpy(dtype=np.float64)
    if (arr < 0).any():
        raise InputError(source, "count table has negative values", "give raw (non-negative) counts, not normalised values")
    return pd.DataFrame(arr.astype(np.float32), index=counts.index, columns=counts.columns)


def make_section(
    counts: pd.DataFrame,
    spots: pd.DataFrame,
    *,
    section: str,
    patient: str,
    dataset: str,
    image_path: str | os.PathLike | None,
    mpp: float | None,
    spot_diameter_um: float,
    counts_source: str | os.PathLike | None = None,
    spots_source: str | os.PathLike | None = None,
) -> ad.AnnData:
    """Join a count table and spot positions into a validated section AnnData.

    Parameters
    ----------
    counts
        Spots x genes raw counts, index = spot id.
    spots
        Index = spot id; columns ``pixel_x``, ``pixel_y`` (full-resolution pixels) and
        ``array_row``, ``array_col``.
    section, patient, dataset
        Identifiers stored in ``obs`` and ``uns``.
    image_path
        Full-resolution H&E image, or None for expression-only work.
    mpp
        Microns per full-resolution pixel (None only without an image).
    spot_diameter_um
        Physical spot diameter.
    counts_source, spots_source
        Files the tables came from, named in error messages.
    """
    counts = check_counts(counts, counts_source)
    if spots.index.duplicated().any():
        dup = spots.index[spots.index.duplicated()]
        raise InputError(spots_source, f"{len(dup)} duplicated spot ids (e.g. {dup[0]!r})", "each spot must appear once in the spot file")
    for col in ("pixel_x", "pixel_y", "array_row", "array_col"):
        if col not in spots.columns:
            raise InputError(spots_source, f"missing column {col!r}", "the spot table needs pixel and array coordinates per spot")
    spots = spots.copy()
    spots.index = spots.index.astype(str)
    common = counts.index.intersection(spots.index)
    n_counts_only = len(counts.index) - len(common)
    n_spots_only = len(spots.index) - len(common)
    if len(common) == 0:
        raise InputError(
            spots_source,
            f"no spot id joins the count table ({len(counts)} count rows, {len(spots)} spot rows; e.g. counts {counts.index[0]!r} vs spots {spots.index[0]!r})",
            f"spot ids must match the first column of {counts_source or 'the count table'}",
        )
    if n_counts_only:
        log.warning("%s: %d count rows have no spot position and are dropped", section, n_counts_only)
    if n_spots_only:
        log.info("%s: %d spot positions have no count row", section, n_spots_only)
    counts = counts.loc[common]
    spots = spots.loc[common]
    if not np.isfinite(spots[["pixel_x", "pixel_y"]].to_numpy(dtype=float)).all():
        raise InputError(spots_source, "pixel_x / pixel_y hold NaN or non-numeric values", "give pixel coordinates for every spot")

    meta: dict = {Key.DATASET: dataset, Key.IMAGE_PATH: None, Key.MPP: None}
    scalef: dict = {}
    xy = spots[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)
    if image_path is not None:
        from geneshot.image._slide import image_size  # lazy: geneshot.image depends on this module

        image_path = Path(image_path)
        w, h = image_size(image_path)
        outside = (xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] >= w) | (xy[:, 1] >= h)
        if outside.any():
            i = int(np.argmax(outside))
            raise InputError(
                spots_source,
                f"{int(outside.sum())} of {len(xy)} spots lie outside the {w} x {h} px image {image_path.name} (first: {spots.index[i]!r} at x={xy[i, 0]:.0f}, y={xy[i, 1]:.0f})",
                "check that pixel_x is the column and pixel_y the row in full-resolution pixels of this image",
            )
        mpp = check_mpp(mpp, spots_source)
        meta[Key.IMAGE_PATH] = str(image_path.resolve())
        meta[Key.MPP] = mpp
        scalef[Key.SPOT_DIAMETER] = float(spot_diameter_um / mpp)
    elif mpp is not None:
        meta[Key.MPP] = check_mpp(mpp, spots_source)
        scalef[Key.SPOT_DIAMETER] = float(spot_diameter_um / meta[Key.MPP])
    else:
        log.info("%s: no image; loaded for expression-only work", section)

    obs = pd.DataFrame(
        {
            Key.SECTION: pd.Categorical([section] * len(common)),
            Key.PATIENT: pd.Categorical([patient] * len(common)),
            Key.ARRAY_ROW: spots["array_row"].to_numpy(),
            Key.ARRAY_COL: spots["array_col"].to_numpy(),
            # recorded before any gene alignment, so that library-size targets do not depend
            # on which genes a run keeps
            Key.TOTAL_COUNTS: counts.to_numpy(dtype=np.float64).sum(axis=1),
        },
        index=pd.Index([f"{section}_{s}" for s in common], name="spot"),
    )
    adata = ad.AnnData(
        X=sp.csr_matrix(counts.to_numpy(dtype=np.float32)),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(counts.columns, name="gene")),
    )
    adata.obsm[Key.SPATIAL] = xy
    adata.uns[Key.UNS_SPATIAL] = {
        section: {Key.IMAGES: {}, Key.SCALEFACTORS: scalef, Key.METADATA: meta}
    }
    return adata


def has_image(adata: ad.AnnData) -> bool:
    """Whether a section AnnData carries a full-resolution image path."""
    return section_meta(adata)[Key.IMAGE_PATH] is not None


def section_id(adata: ad.AnnData) -> str:
    """The library id of a single-section AnnData."""
    libs = list(adata.uns[Key.UNS_SPATIAL])
    if len(libs) != 1:
        raise ValueError(f"expected one section, found {libs}")
    return libs[0]


def section_meta(adata: ad.AnnData) -> dict:
    """``uns["spatial"][section]["metadata"]`` of a single-section AnnData."""
    return adata.uns[Key.UNS_SPATIAL][section_id(adata)][Key.METADATA]
