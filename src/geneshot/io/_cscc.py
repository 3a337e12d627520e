"""Cutaneous squamous cell carcinoma ST (Ji et al. 2020, GEO GSE144240) in its GEO layout.

The series' ``GSE144240_RAW.tar`` unpacks into flat per-sample files, for example::

    GSM4284316_P2_ST_rep1_stdata.tsv.gz                  spots x genes, first column "{x}x{y}"
    GSM4284316_spot_data-selection-P2_ST_rep1.tsv.gz     x y new_x new_y pixel_x pixel_y selected
    GSM4284316_P2_ST_rep1.jpg.gz                         full-resolution H&E (gzipped JPEG)

Section ids are ``{patient}_{replicate}`` (``P2_rep1``); patients P2, P5, P9 and P10 with
replicates rep1–rep3. Files may sit directly in the folder or one level down.

Scale: legacy ST arrays put spot centres 200 µm apart, and the spot file gives each spot's
array and pixel position, so the µm per pixel is measured per section from the fitted spot
pitch. On HER2+ (same technology) this reproduces HEST-1k's ``pixel_size_um_estimated``
(0.689 vs 0.69, 0.917 vs 0.92). When the fit is impossible (fewer than 3 spots, collinear
or inconsistent positions) ``CSCC_MPP_DEFAULT`` is used with a warning; ``mpp=`` overrides.

Gzipped images are decompressed once into the geneshot cache (atomically, keyed by the
content of the ``.gz``) so that windows can be read from a plain JPEG.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import zlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from geneshot.cache import Cache, atomic_path, fingerprint
from geneshot.errors import InputError
from geneshot.io._her2st import read_count_table, read_st_spotfile
from geneshot.io._registry import DatasetSpec, register_dataset
from geneshot.io._section import MPP_RANGE, make_section

log = logging.getLogger(__name__)

CSCC_SPOT_DIAMETER_UM = 100.0  # legacy ST array: 100 µm spots
ST_SPOT_PITCH_UM = 200.0  # centre-to-centre distance of legacy ST spots
CSCC_MPP_DEFAULT = 0.7  # fallback only; HEST-1k estimates legacy-ST scans near this value

_SECTION_RE = re.compile(r"^(P\d+)_(rep\d+)$")
_COUNTS_RE = re.compile(r"^(GSM\d+)_(P\d+)_ST_(rep\d+)_stdata\.tsv(\.gz)?$")
_SPOTS_RE = re.compile(r"^(GSM\d+)_spot_data-selection-(P\d+)_ST_(rep\d+)\.tsv(\.gz)?$")
_IMAGE_RE = re.compile(
    r"^(GSM\d+)_(P\d+)_ST_(rep\d+)[^.]*\.(jpe?g|png|tiff?)(\.gz)?$", re.IGNORECASE
)


def cscc_patient(section: str) -> str:
    """Patient of a cSCC section: ``P2_rep1`` -> ``P2``."""
    return section.split("_")[0]


def _files(root: Path) -> list[Path]:
    """Files directly in ``root`` and one level below (GEO tars unpack flat)."""
    out = [p for p in root.iterdir() if p.is_file()]
    for d in root.iterdir():
        if d.is_dir() and not d.name.startswith("."):
            out.extend(p for p in d.iterdir() if p.is_file())
    return out


def _index(root: Path) -> dict[str, dict[str, Path]]:
    """``{section: {"counts"|"spots"|"image": path}}`` for every file found."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            root,
            "cSCC folder does not exist",
            "point --data at the folder holding the unpacked GSE144240_RAW.tar files",
        )
    found: dict[str, dict[str, Path]] = {}
    for p in sorted(_files(root)):
        for kind, rx in (("counts", _COUNTS_RE), ("spots", _SPOTS_RE), ("image", _IMAGE_RE)):
            m = rx.match(p.name)
            if m:
                found.setdefault(f"{m.group(2)}_{m.group(3)}", {}).setdefault(kind, p)
                break
    return found


def list_cscc_sections(data_dir: Path) -> list[str]:
    """Section ids (``P2_rep1``, ...) that have a count table, in patient then replicate order."""
    secs = [s for s, f in _index(data_dir).items() if "counts" in f]

    def order(s: str) -> tuple[int, int]:
        p, r = s.split("_")
        return int(p[1:]), int(r[3:])

    return sorted(secs, key=order)


def decompressed_image(path: Path, cache: Cache | None = None) -> Path:
    """A plain copy of a gzipped image in the cache (made once, atomically); other paths as is."""
    path = Path(path)
    if path.suffix.lower() != ".gz":
        return path
    cache = cache or Cache()
    inner = Path(path.stem).suffix.lower() or ".jpg"
    target = cache.path("images", {"gz": fingerprint(path)}, inner)
    if target.exists():
        return target
    try:
        with atomic_path(target) as tmp, gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(
            path,
            f"gzipped image cannot be decompressed ({type(err).__name__}: {err})",
            "re-download the file (GSE144240_RAW.tar)",
        ) from None
    log.info("decompressed %s -> %s", path.name, target)
    return target


def estimate_st_mpp(spots: pd.DataFrame, pitch_um: float = ST_SPOT_PITCH_UM) -> float | None:
    """µm per pixel of a legacy-ST section from its spot grid, or None when it cannot be fitted.

    Fits pixel = A @ (array x, array y) + b by least squares (using the sub-spot
    ``new_x``/``new_y`` when present) and takes the pitch as sqrt(|det A|) pixels.
    """
    ax, ay = ("new_x", "new_y") if {"new_x", "new_y"} <= set(spots.columns) else ("x", "y")
    if len(spots) < 3:
        return None
    design = np.c_[spots[ax].to_numpy(float), spots[ay].to_numpy(float), np.ones(len(spots))]
    target = spots[["pixel_x", "pixel_y"]].to_numpy(float)
    if (
        not (np.isfinite(design).all() and np.isfinite(target).all())
        or np.linalg.matrix_rank(design) < 3
    ):
        return None
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    pitch_px = float(np.sqrt(abs(np.linalg.det(coef[:2].T))))
    resid = target - design @ coef
    if pitch_px <= 0 or np.sqrt((resid**2).sum(1).mean()) > 0.25 * pitch_px:
        return None  # positions do not follow a grid: the fit is not trustworthy
    mpp = pitch_um / pitch_px
    return mpp if MPP_RANGE[0] <= mpp <= MPP_RANGE[1] else None


def read_cscc_section(
    root: str | Path,
    section: str,
    *,
    mpp: float | None = None,
    cache: Cache | None = None,
) -> ad.AnnData:
    """Read one cSCC section (counts, spots and, where present, the H&E image).

    Parameters
    ----------
    root
        Folder holding the unpacked ``GSE144240_RAW.tar`` files.
    section
        ``{patient}_{replicate}``, e.g. ``P2_rep1``.
    mpp
        µm per full-resolution pixel; default: measured from the spot grid (see module
        docstring), else ``CSCC_MPP_DEFAULT``.
    cache
        Where gzipped images are decompressed (default: the geneshot cache).
    """
    root = Path(root)
    if not _SECTION_RE.match(section):
        raise InputError(
            root,
            f"unknown section name {section!r}",
            "cSCC sections are {patient}_{replicate}, e.g. P2_rep1",
        )
    index = _index(root)
    files = index.get(section, {})
    if "counts" not in files:
        known = ", ".join(list_cscc_sections(root)) or "none"
        raise InputError(
            root,
            f"no count table *_{section.replace('_', '_ST_')}_stdata.tsv.gz for section {section!r}",
            f"use a section present here ({known}) or unpack GSE144240_RAW.tar into this folder",
        )
    if "spots" not in files:
        raise InputError(
            root,
            f"no spot file *_spot_data-selection-{section.replace('_', '_ST_')}.tsv.gz for section {section!r}",
            "unpack all of GSE144240_RAW.tar into this folder",
        )
    spots = read_st_spotfile(files["spots"])
    image = decompressed_image(files["image"], cache) if "image" in files else None
    if image is None:
        log.info("%s: no H&E image in %s; loaded for expression-only work", section, root)
    if mpp is None:
        mpp = estimate_st_mpp(spots)
        if mpp is None:
            log.warning(
                "%s: spot grid too small or irregular to measure the scale; using %.2f µm/px",
                section,
                CSCC_MPP_DEFAULT,
            )
            mpp = CSCC_MPP_DEFAULT
    return make_section(
        read_count_table(files["counts"]),
        spots,
        section=section,
        patient=cscc_patient(section),
        dataset="cscc",
        image_path=image,
        mpp=mpp,
        spot_diameter_um=CSCC_SPOT_DIAMETER_UM,
        counts_source=files["counts"],
        spots_source=files["spots"],
    )


register_dataset(
    DatasetSpec(
        name="cscc",
        list_sections=list_cscc_sections,
        read_section=lambda root, section: read_cscc_section(root, section),
        patient_of=cscc_patient,
        description="Cutaneous squamous cell carcinoma, legacy ST (Ji et al. 2020, GSE144240)",
    )
)
