"""10x Genomics Visium: a Space Ranger ``outs/`` folder as a validated section.

::

    filtered_feature_bc_matrix.h5           counts (HDF5), or
    filtered_feature_bc_matrix/             matrix.mtx.gz, barcodes.tsv.gz, features.tsv.gz
    spatial/tissue_positions.csv            Space Ranger >= 2.0 (with header), or
    spatial/tissue_positions_list.csv       Space Ranger 1.x (no header), or
    spatial/tissue_positions.parquet        Visium HD bins (needs pyarrow)
    spatial/scalefactors_json.json          spot_diameter_fullres, tissue_*_scalef

Scale: Visium spots are 55 µm across, so µm/px = 55 / ``spot_diameter_fullres``; Visium HD
scalefactors carry ``microns_per_pixel`` and ``bin_size_um`` directly. The full-resolution
image is not part of ``outs/``: pass it as ``image_path`` (without it the section loads for
expression-only work).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from geneshot.errors import InputError, MissingDependencyError
from geneshot.io._anndata import VISIUM_SPOT_DIAMETER_UM, section_from_matrix
from geneshot.io._tables import numeric_column

log = logging.getLogger(__name__)

_POSITION_COLUMNS = [
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
]
_GENE_EXPRESSION = "Gene Expression"


def _decode(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def read_10x_h5(path: Path) -> tuple[sp.csr_matrix, pd.Index, pd.Index]:
    """Counts (barcodes x genes CSR), barcodes and gene names from a 10x ``.h5`` matrix.

    Only ``Gene Expression`` features are kept (antibody capture etc. are dropped).
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "matrix" not in f:
                raise InputError(
                    path,
                    "HDF5 file has no 'matrix' group (Cell Ranger < 3 or not a 10x matrix)",
                    "give the filtered_feature_bc_matrix.h5 of Space Ranger >= 1.0",
                )
            g = f["matrix"]
            n_genes, n_bc = (int(v) for v in g["shape"][:])
            # stored as genes x barcodes CSC: the same arrays read as barcodes x genes CSR
            m = sp.csr_matrix(
                (g["data"][:], g["indices"][:], g["indptr"][:]), shape=(n_bc, n_genes)
            )
            barcodes = pd.Index(_decode(g["barcodes"][:]))
            feats = g["features"]
            names = pd.Index(_decode(feats["name"][:]))
            kind = (
                np.array(_decode(feats["feature_type"][:]))
                if "feature_type" in feats
                else np.full(n_genes, _GENE_EXPRESSION)
            )
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise InputError(
            path,
            f"not a readable 10x HDF5 matrix ({type(err).__name__}: {err})",
            "re-export filtered_feature_bc_matrix.h5 or give the filtered_feature_bc_matrix/ folder",
        ) from None
    keep = kind == _GENE_EXPRESSION
    return m[:, np.flatnonzero(keep)], barcodes, names[keep]


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _first(folder: Path, *names: str) -> Path | None:
    return next((folder / n for n in names if (folder / n).exists()), None)


def read_10x_mtx(folder: Path) -> tuple[sp.csr_matrix, pd.Index, pd.Index]:
    """Counts, barcodes and gene names from a 10x ``matrix.mtx(.gz)`` folder."""
    mtx = _first(folder, "matrix.mtx.gz", "matrix.mtx")
    bcs = _first(folder, "barcodes.tsv.gz", "barcodes.tsv")
    feats = _first(folder, "features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv")
    for name, p in (("matrix.mtx.gz", mtx), ("barcodes.tsv.gz", bcs), ("features.tsv.gz", feats)):
        if p is None:
            raise InputError(
                folder,
                f"missing {name}",
                "give a complete filtered_feature_bc_matrix/ folder (matrix, barcodes, features)",
            )
    try:
        with _open_maybe_gz(mtx) as fh:
            m = sp.csr_matrix(scipy.io.mmread(fh).T)
        barcodes = pd.read_csv(bcs, sep="\t", header=None).iloc[:, 0].astype(str)
        ft = pd.read_csv(feats, sep="\t", header=None)
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as err:
        raise InputError(
            folder,
            f"10x matrix folder cannot be parsed ({type(err).__name__}: {err})",
            "re-export the filtered_feature_bc_matrix/ folder",
        ) from None
    names = ft.iloc[:, 1] if ft.shape[1] > 1 else ft.iloc[:, 0]
    keep = (
        (ft.iloc[:, 2] == _GENE_EXPRESSION).to_numpy()
        if ft.shape[1] > 2
        else np.ones(len(ft), bool)
    )
    if m.shape != (len(barcodes), len(ft)):
        raise InputError(
            mtx,
            f"matrix is {m.shape[1]} x {m.shape[0]} but there are {len(ft)} features and {len(barcodes)} barcodes",
            "the three files must come from the same run",
        )
    return m[:, np.flatnonzero(keep)], pd.Index(barcodes), pd.Index(names.astype(str)[keep])


def read_tissue_positions(spatial: Path) -> tuple[pd.DataFrame, Path]:
    """Spot table (index barcode) of in-tissue spots, with pixel and array coordinates."""
    csv2 = spatial / "tissue_positions.csv"
    csv1 = spatial / "tissue_positions_list.csv"
    parquet = spatial / "tissue_positions.parquet"
    try:
        if csv2.exists():
            path, df = csv2, pd.read_csv(csv2)
        elif csv1.exists():
            path, df = csv1, pd.read_csv(csv1, header=None, names=_POSITION_COLUMNS)
        elif parquet.exists():
            path = parquet
            try:
                df = pd.read_parquet(parquet)
            except ImportError:
                raise MissingDependencyError(
                    f"{parquet}: reading tissue_positions.parquet needs pyarrow. Fix: pip install pyarrow"
                ) from None
        else:
            raise InputError(
                spatial,
                "no tissue_positions.csv, tissue_positions_list.csv or tissue_positions.parquet",
                "point at a Space Ranger outs/ folder (it holds spatial/)",
            )
    except InputError:
        raise  # an InputError is a ValueError too: keep the message above
    # ValueError covers pandas' EmptyDataError and ParserError
    except (OSError, EOFError, ValueError) as err:
        raise InputError(
            spatial,
            f"tissue positions cannot be parsed ({type(err).__name__}: {err})",
            "re-export the spatial/ folder",
        ) from None
    missing = [c for c in _POSITION_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            path,
            f"missing column(s) {', '.join(missing)}",
            f"tissue positions need columns {', '.join(_POSITION_COLUMNS)}",
        )
    fix = "re-export the spatial/ folder; positions must be numbers on every line"
    df = df[numeric_column(df, "in_tissue", path, "tissue positions", fix) == 1].copy()
    # only in-tissue spots are used, so only theirs must be numbers
    for col in _POSITION_COLUMNS[2:]:
        df[col] = numeric_column(df, col, path, "tissue positions", fix)
    if df.empty:
        raise InputError(
            path,
            "no spot has in_tissue == 1",
            "check that this is the positions file of a run with tissue detection",
        )
    out = pd.DataFrame(
        {
            "pixel_x": df["pxl_col_in_fullres"].to_numpy(float),
            "pixel_y": df["pxl_row_in_fullres"].to_numpy(float),
            "array_row": df["array_row"].to_numpy(np.int64),
            "array_col": df["array_col"].to_numpy(np.int64),
        },
        index=pd.Index(df["barcode"].astype(str)),
    )
    return out, path


def read_scalefactors(spatial: Path) -> tuple[float, float]:
    """(µm per full-res pixel, spot diameter in µm) from ``scalefactors_json.json``."""
    path = spatial / "scalefactors_json.json"
    if not path.exists():
        raise InputError(
            path,
            "scalefactors file does not exist",
            "copy the spatial/ folder of the Space Ranger output completely, or pass mpp=",
        )
    try:
        sf = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, f"not valid JSON ({err})", "re-export the spatial/ folder") from None
    if "microns_per_pixel" in sf:  # Visium HD
        return float(sf["microns_per_pixel"]), float(sf.get("bin_size_um", VISIUM_SPOT_DIAMETER_UM))
    d = sf.get("spot_diameter_fullres")
    if not isinstance(d, (int, float)) or d <= 0:
        raise InputError(
            path,
            f"field 'spot_diameter_fullres' is missing or not positive ({d!r})",
            "re-export the spatial/ folder, or pass mpp=",
        )
    return VISIUM_SPOT_DIAMETER_UM / float(d), VISIUM_SPOT_DIAMETER_UM


def read_visium(
    path: str | os.PathLike,
    *,
    image_path: str | os.PathLike | None = None,
    section: str | None = None,
    patient: str | None = None,
    mpp: float | None = None,
    counts_file: str = "filtered_feature_bc_matrix.h5",
) -> ad.AnnData:
    """Read a Space Ranger output folder into a validated section (in-tissue spots only).

    Parameters
    ----------
    path
        The ``outs/`` folder (holding ``spatial/`` and the filtered matrix).
    image_path
        Full-resolution H&E image the positions refer to (the one given to Space Ranger).
    section
        Section id (default: the folder name, or its parent's when it is ``outs``).
    patient
        Patient id (default: ``section``).
    mpp
        µm per full-resolution pixel (default: from ``scalefactors_json.json``).
    counts_file
        Matrix file name; when absent, the ``filtered_feature_bc_matrix/`` folder is read.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(root, "Visium folder does not exist", "give the Space Ranger outs/ folder")
    spatial = root / "spatial"
    if not spatial.is_dir():
        raise InputError(
            spatial,
            "folder does not exist",
            "give the Space Ranger outs/ folder (it holds spatial/)",
        )
    h5 = root / counts_file
    mtx_dir = root / "filtered_feature_bc_matrix"
    if h5.exists():
        matrix, barcodes, genes = read_10x_h5(h5)
        counts_source = h5
    elif mtx_dir.is_dir():
        matrix, barcodes, genes = read_10x_mtx(mtx_dir)
        counts_source = mtx_dir
    else:
        raise InputError(
            root,
            f"no {counts_file} and no filtered_feature_bc_matrix/ folder",
            "give the Space Ranger outs/ folder with its filtered matrix",
        )
    spots, spots_source = read_tissue_positions(spatial)
    sf_mpp, spot_um = read_scalefactors(spatial) if mpp is None else (mpp, VISIUM_SPOT_DIAMETER_UM)
    if section is None:
        section = (root.resolve().parent if root.name == "outs" else root.resolve()).name
    return section_from_matrix(
        matrix,
        barcodes,
        genes,
        spots,
        section=section,
        patient=patient or section,
        dataset="visium",
        image_path=image_path,
        mpp=sf_mpp,
        spot_diameter_um=spot_um,
        counts_source=counts_source,
        spots_source=spots_source,
    )
