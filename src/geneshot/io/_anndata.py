"""Any AnnData with ``obsm["spatial"]`` (plus an image and a scale) as a validated section.

Also holds :func:`section_from_matrix`, which the Visium and HEST readers share: it builds a
section from a sparse count matrix without ever densifying it (a Visium slide is about
5,000 spots x 36,000 genes, 700 MB dense).
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
from geneshot.io._section import make_section

log = logging.getLogger(__name__)

VISIUM_SPOT_DIAMETER_UM = 55.0


def check_sparse_counts(
    matrix: sp.spmatrix | np.ndarray, source: str | os.PathLike | None
) -> sp.csr_matrix:
    """Validate a spots x genes count matrix; return it as float32 CSR."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    if m.shape[0] == 0 or m.shape[1] == 0:
        raise InputError(
            source,
            f"count matrix is empty ({m.shape[0]} spots x {m.shape[1]} genes)",
            "check that the file holds a spots x genes count matrix",
        )
    if not np.isfinite(m.data).all():
        raise InputError(
            source,
            f"count matrix has {int((~np.isfinite(m.data)).sum())} NaN or infinite values",
            "counts must be finite non-negative numbers",
        )
    if (m.data < 0).any():
        raise InputError(
            source,
            "count matrix has negative values",
            "give raw (non-negative) counts, not scaled or normalised values",
        )
    return m


def section_from_matrix(
    matrix: sp.spmatrix | np.ndarray,
    spot_ids: pd.Index | list[str],
    genes: pd.Index | list[str],
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
    """Build a section like :func:`~geneshot.io.make_section`, from a sparse matrix.

    The spot join, coordinate, image and scale checks are delegated to ``make_section``
    (run on a one-gene proxy table), so both paths validate in exactly the same way.

    Parameters
    ----------
    matrix
        Spots x genes raw counts (rows in the order of ``spot_ids``).
    spot_ids, genes
        Row and column labels of ``matrix``.
    spots
        As for ``make_section``: index = spot id; ``pixel_x``, ``pixel_y``, ``array_row``,
        ``array_col``.
    section, patient, dataset, image_path, mpp, spot_diameter_um, counts_source, spots_source
        As for ``make_section``.
    """
    m = check_sparse_counts(matrix, counts_source)
    spot_ids = pd.Index(spot_ids).astype(str)
    genes = pd.Index(genes).astype(str)
    if len(spot_ids) != m.shape[0] or len(genes) != m.shape[1]:
        raise InputError(
            counts_source,
            f"matrix is {m.shape[0]} x {m.shape[1]} but has {len(spot_ids)} spot ids and {len(genes)} gene names",
            "re-export the count matrix",
        )
    if genes.duplicated().any():
        genes = pd.Index(ad.utils.make_index_unique(genes))
    if image_path is None and mpp is not None:  # make_section logs this only when mpp is None
        log.info("%s: no image; loaded for expression-only work", section)
    proxy = pd.DataFrame(
        np.zeros((len(spot_ids), 1), np.float32), index=spot_ids, columns=genes[:1]
    )
    skeleton = make_section(
        proxy,
        spots,
        section=section,
        patient=patient,
        dataset=dataset,
        image_path=image_path,
        mpp=mpp,
        spot_diameter_um=spot_diameter_um,
        counts_source=counts_source,
        spots_source=spots_source,
    )
    prefix = len(section) + 1  # obs names are f"{section}_{spot id}"
    rows = spot_ids.get_indexer([name[prefix:] for name in skeleton.obs_names])
    obs = skeleton.obs.copy()
    obs[Key.TOTAL_COUNTS] = np.asarray(m[rows].sum(axis=1)).ravel().astype(np.float64)
    out = ad.AnnData(
        X=m[rows],
        obs=obs,
        var=pd.DataFrame(index=pd.Index(genes, name="gene")),
        obsm={Key.SPATIAL: skeleton.obsm[Key.SPATIAL]},
        uns=skeleton.uns,
    )
    return out


def _counts_of(adata: ad.AnnData) -> tuple[sp.spmatrix | np.ndarray, str]:
    """Raw counts: ``layers["counts"]`` if present, else ``X``."""
    if Key.COUNTS in adata.layers:
        return adata.layers[Key.COUNTS], f'layers["{Key.COUNTS}"]'
    if adata.X is None:
        raise InputError(
            None,
            "AnnData has no X and no layers['counts']",
            "store raw counts in X or layers['counts']",
        )
    return adata.X, "X"


def _uns_library(adata: ad.AnnData) -> dict:
    """The single ``uns["spatial"][library]`` entry, or {}."""
    libs = adata.uns.get(Key.UNS_SPATIAL, {})
    if isinstance(libs, dict) and len(libs) == 1:
        lib = next(iter(libs.values()))
        return lib if isinstance(lib, dict) else {}
    return {}


def spots_from_obs(adata: ad.AnnData, source: str | os.PathLike | None) -> pd.DataFrame:
    """Spot table (pixel + array coordinates) from ``obsm["spatial"]`` and ``obs``."""
    if Key.SPATIAL not in adata.obsm:
        raise InputError(
            source,
            f'obsm["{Key.SPATIAL}"] is missing',
            "store spot centres in full-resolution pixels (x = column, y = row) in obsm['spatial']",
        )
    xy = np.asarray(adata.obsm[Key.SPATIAL], dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise InputError(
            source,
            f'obsm["{Key.SPATIAL}"] has shape {xy.shape}, expected (n_spots, 2)',
            "store x (column) and y (row) per spot",
        )
    spots = pd.DataFrame(
        {"pixel_x": xy[:, 0], "pixel_y": xy[:, 1]}, index=adata.obs_names.astype(str)
    )
    if Key.ARRAY_ROW in adata.obs and Key.ARRAY_COL in adata.obs:
        spots["array_row"] = adata.obs[Key.ARRAY_ROW].to_numpy()
        spots["array_col"] = adata.obs[Key.ARRAY_COL].to_numpy()
    else:
        # no grid given (e.g. imaging-based or binned data): -1 marks "unknown"
        log.info("%s: obs has no array_row/array_col; grid indices set to -1", source or "AnnData")
        spots["array_row"] = -1
        spots["array_col"] = -1
    return spots


def read_anndata(
    adata: ad.AnnData | str | os.PathLike,
    image_path: str | os.PathLike | None = None,
    mpp: float | None = None,
    section: str | None = None,
    *,
    patient: str | None = None,
    spot_diameter_um: float | None = None,
    dataset: str = "user",
) -> ad.AnnData:
    """Turn any spatial AnnData into a validated geneshot section.

    Parameters
    ----------
    adata
        An AnnData or the path of an ``.h5ad`` file. Raw counts are taken from
        ``layers["counts"]`` when present, else ``X``; spot centres from
        ``obsm["spatial"]`` (full-resolution pixels, x = column, y = row). When
        ``obs["in_tissue"]`` exists only in-tissue spots are kept.
    image_path
        Full-resolution H&E image. Default: ``uns["spatial"][lib]["metadata"]["image_path"]``
        when that file exists; otherwise the section is loaded for expression-only work.
    mpp
        Microns per full-resolution pixel. Default: ``uns`` metadata ``microns_per_pixel``;
        required when an image is given and the AnnData does not carry it.
    section
        Section id. Default: the ``uns["spatial"]`` library id, else ``obs["section"]``
        when it holds one value, else the file stem (or ``"section"``).
    patient
        Patient id (default: ``obs["patient"]`` when it holds one value, else ``section``).
    spot_diameter_um
        Physical spot diameter. Default: from ``scalefactors["spot_diameter_fullres"]`` x
        ``mpp`` when both are known, else 55 µm (Visium).
    dataset
        Dataset name stored in the metadata.
    """
    source: Path | None = None
    if not isinstance(adata, ad.AnnData):
        source = Path(adata)
        if not source.exists():
            raise InputError(source, "AnnData file does not exist", "check the .h5ad path")
        try:
            adata = ad.read_h5ad(source)
        except (OSError, KeyError, ValueError) as err:
            raise InputError(
                source,
                f"not a readable .h5ad file ({type(err).__name__}: {err})",
                "give an AnnData saved with adata.write_h5ad",
            ) from None
    lib = _uns_library(adata)
    meta = lib.get(Key.METADATA, {}) if isinstance(lib.get(Key.METADATA), dict) else {}
    scalef = lib.get(Key.SCALEFACTORS, {}) if isinstance(lib.get(Key.SCALEFACTORS), dict) else {}

    if Key.IN_TISSUE in adata.obs:
        keep = adata.obs[Key.IN_TISSUE].astype(int).to_numpy() == 1
        if not keep.all():
            log.info(
                "%s: keeping %d of %d spots (in_tissue == 1)",
                source or "AnnData",
                int(keep.sum()),
                len(keep),
            )
            adata = adata[keep]

    if section is None:
        libs = adata.uns.get(Key.UNS_SPATIAL, {})
        if isinstance(libs, dict) and len(libs) == 1:
            section = str(next(iter(libs)))
        elif Key.SECTION in adata.obs and adata.obs[Key.SECTION].nunique() == 1:
            section = str(adata.obs[Key.SECTION].iloc[0])
        else:
            section = source.stem if source is not None else "section"
    if patient is None:
        if Key.PATIENT in adata.obs and adata.obs[Key.PATIENT].nunique() == 1:
            patient = str(adata.obs[Key.PATIENT].iloc[0])
        else:
            patient = section

    if image_path is None and meta.get(Key.IMAGE_PATH) and Path(meta[Key.IMAGE_PATH]).exists():
        image_path = meta[Key.IMAGE_PATH]
    if mpp is None and meta.get(Key.MPP) is not None:
        mpp = float(meta[Key.MPP])
    if image_path is not None and mpp is None:
        raise InputError(
            source or image_path,
            "microns per pixel of the image is unknown (no mpp given, none in uns metadata)",
            "pass mpp= (µm per full-resolution pixel, e.g. 0.25 at 40x, 0.5 at 20x)",
        )
    if spot_diameter_um is None:
        if mpp is not None and scalef.get(Key.SPOT_DIAMETER):
            spot_diameter_um = float(scalef[Key.SPOT_DIAMETER]) * float(mpp)
        else:
            spot_diameter_um = VISIUM_SPOT_DIAMETER_UM

    counts, where = _counts_of(adata)
    src = f"{source}[{where}]" if source is not None else where
    return section_from_matrix(
        counts,
        adata.obs_names,
        adata.var_names,
        spots_from_obs(adata, source),
        section=section,
        patient=patient,
        dataset=dataset,
        image_path=image_path,
        mpp=mpp,
        spot_diameter_um=spot_diameter_um,
        counts_source=src,
        spots_source=source,
    )
