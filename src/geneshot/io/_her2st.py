"""HER2+ breast cancer ST (Andersson et al. 2021, Zenodo 3957257) in its published layout.

::

    ST-cnts/{section}.tsv.gz              spots x genes, first column "{x}x{y}"
    ST-spotfiles/{section}_selection.tsv  x y new_x new_y pixel_x pixel_y selected
    ST-imgs/{patient}/{section}/*.jpg     full-resolution H&E
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from geneshot.cache import Cache, fingerprint
from geneshot.errors import InputError
from geneshot.io._registry import DatasetSpec, register_dataset
from geneshot.io._section import make_section
from geneshot.io._tables import check_table_file, numeric_column, read_delimited

log = logging.getLogger(__name__)

# µm per full-resolution pixel, from HEST-1k metadata (pixel_size_um_estimated): patient A
# was scanned at a different scale from B–H.
HER2ST_MPP = {"A": 0.92}
HER2ST_MPP_DEFAULT = 0.69
HER2ST_SPOT_DIAMETER_UM = 100.0  # legacy ST array: 100 µm spots, 200 µm apart

_SECTION_RE = re.compile(r"^([A-H])(\d+)$")


def her2st_patient(section: str) -> str:
    """Patient of a HER2+ section: its first letter (A1 -> A)."""
    return section[0]


def list_her2st_sections(data_dir: Path) -> list[str]:
    """Section ids that have a count table under ``ST-cnts`` or a spot file under ``ST-spotfiles``.

    A section with only one of the two is listed so that reading it names the missing file
    (an incomplete download) instead of calling the section unknown.
    """
    cnts = Path(data_dir) / "ST-cnts"
    if not cnts.is_dir():
        raise InputError(
            cnts,
            "folder does not exist",
            "point --data at the her2st folder (it holds ST-cnts/, ST-spotfiles/, ST-imgs/)",
        )
    ids = {p.name.split(".")[0] for p in cnts.glob("*.tsv*")}
    ids |= {p.name.split("_")[0] for p in (Path(data_dir) / "ST-spotfiles").glob("*_selection.tsv")}
    return sorted(s for s in ids if _SECTION_RE.match(s))


def _parse_count_table(path: Path) -> pd.DataFrame:
    return read_delimited(
        path,
        "count table",
        "re-download the file; it should be a tab-separated spots x genes table",
        sep="\t",
        index_col=0,
    )


def read_count_table(path: Path, cache: Cache | None = None) -> pd.DataFrame:
    """A spots x genes table whose first column is the spot id.

    Parsing a 15,000-column TSV takes about 0.5 s; numeric tables are cached as arrays
    keyed by the file's content (the default cache unless ``cache`` is given).
    """
    path = check_table_file(path, "count table", "check the section id and the data folder")
    cache = cache or Cache()
    key = {"v": "counts-v1", "file": fingerprint(path)}
    z = cache.load("counts", key)
    if z is not None:
        return pd.DataFrame(z["x"], index=z["index"].astype(str), columns=z["columns"].astype(str))
    df = _parse_count_table(path)
    if all(np.issubdtype(dt, np.number) for dt in df.dtypes) and not df.isna().to_numpy().any():
        # only clean tables are cached; bad ones must fail with their message every time
        cache.arrays(
            "counts",
            key,
            lambda: {
                "x": df.to_numpy(np.float32),
                "index": np.asarray(df.index, dtype=str),
                "columns": np.asarray(df.columns, dtype=str),
            },
        )
    return df


def read_st_spotfile(path: Path) -> pd.DataFrame:
    """A legacy-ST spot selection file, indexed by ``"{x}x{y}"``."""
    path = check_table_file(
        path, "spot file", "check the data folder (spot files come from the metadata archive)"
    )
    df = read_delimited(path, "spot file", "re-download the spot file", sep="\t")
    for col in ("x", "y", "pixel_x", "pixel_y"):
        if col not in df.columns:
            raise InputError(
                path,
                f"missing column {col!r}",
                "a spot file has columns x y new_x new_y pixel_x pixel_y selected",
            )
    if df.empty:
        raise InputError(path, "spot file has a header but no spots", "re-download the spot file")
    fix = "x, y (array grid) and pixel_x, pixel_y (full-resolution pixels) must be numbers on every line"
    for col in ("x", "y", "pixel_x", "pixel_y"):
        df[col] = numeric_column(df, col, path, "spot file", fix)
    if ((df["x"] % 1 != 0) | (df["y"] % 1 != 0)).any():
        raise InputError(
            path,
            "columns 'x' / 'y' hold non-integer array positions",
            "x and y are the whole-number array column and row of each spot",
        )
    if "selected" in df.columns:
        df = df[df["selected"] == 1]
    df.index = df["x"].astype(int).astype(str) + "x" + df["y"].astype(int).astype(str)
    # legacy ST: x is the array column, y the array row
    return df.assign(array_col=df["x"].astype(int), array_row=df["y"].astype(int))


def find_image(folder: Path) -> Path | None:
    """The single H&E image in a section's image folder, or None."""
    if not folder.is_dir():
        return None
    imgs = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
    )
    return imgs[0] if imgs else None


def read_her2st_section(data_dir: Path, section: str) -> ad.AnnData:
    """Read one HER2+ section (counts, spots and, where present, the H&E image)."""
    data_dir = Path(data_dir)
    if not _SECTION_RE.match(section):
        raise InputError(
            data_dir,
            f"unknown section name {section!r}",
            "HER2+ sections are a patient letter A–H and a number, e.g. C2",
        )
    patient = her2st_patient(section)
    counts_path = data_dir / "ST-cnts" / f"{section}.tsv.gz"
    spots_path = data_dir / "ST-spotfiles" / f"{section}_selection.tsv"
    image = find_image(data_dir / "ST-imgs" / patient / section)
    return make_section(
        read_count_table(counts_path),
        read_st_spotfile(spots_path),
        section=section,
        patient=patient,
        dataset="her2st",
        image_path=image,
        mpp=HER2ST_MPP.get(patient, HER2ST_MPP_DEFAULT),
        spot_diameter_um=HER2ST_SPOT_DIAMETER_UM,
        counts_source=counts_path,
        spots_source=spots_path,
    )


register_dataset(
    DatasetSpec(
        name="her2st",
        list_sections=list_her2st_sections,
        read_section=read_her2st_section,
        patient_of=her2st_patient,
        section_has_image=lambda d, s: (
            find_image(Path(d) / "ST-imgs" / her2st_patient(s) / s) is not None
        ),
        description="HER2+ breast cancer, legacy ST (Andersson et al. 2021)",
    )
)
