"""HEST-1k (Jaume et al. 2024) samples in the layout of its Hugging Face release.

::

    st/{id}.h5ad          counts; obsm["spatial"] = full-resolution pixels (x, y)
    wsis/{id}.tif         pyramidal whole-slide image
    metadata/{id}.json    pixel_size_um_estimated, patient, st_technology, spot_diameter, ...
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import anndata as ad

from geneshot.errors import InputError
from geneshot.io._anndata import read_anndata

log = logging.getLogger(__name__)

# spot diameter (µm) by HEST ``st_technology`` when the metadata has no ``spot_diameter``
_SPOT_UM = {"visium": 55.0, "spatial transcriptomics": 100.0, "visium hd": 2.0}
_WSI_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".svs", ".btf")


def list_hest_samples(root: str | os.PathLike) -> list[str]:
    """Sample ids with an ``st/{id}.h5ad`` file."""
    st = Path(root) / "st"
    if not st.is_dir():
        raise InputError(
            st,
            "folder does not exist",
            "point at the HEST-1k folder (it holds st/, wsis/, metadata/)",
        )
    return sorted(p.stem for p in st.glob("*.h5ad"))


def read_hest_metadata(root: Path, sample_id: str) -> dict:
    """The sample's metadata JSON, or {} when there is none."""
    path = root / "metadata" / f"{sample_id}.json"
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, f"not valid JSON ({err})", "re-download the metadata file") from None
    if not isinstance(meta, dict):
        raise InputError(path, "metadata is not a JSON object", "re-download the metadata file")
    return meta


def read_hest(root: str | os.PathLike, sample_id: str, *, mpp: float | None = None) -> ad.AnnData:
    """Read one HEST-1k sample into a validated section.

    Parameters
    ----------
    root
        HEST-1k folder (holding ``st/``, ``wsis/``, ``metadata/``).
    sample_id
        Sample id, e.g. ``TENX95`` or ``SPA119``.
    mpp
        µm per full-resolution pixel (default: metadata ``pixel_size_um_estimated``, else
        ``pixel_size_um_embedded``).
    """
    root = Path(root)
    h5ad = root / "st" / f"{sample_id}.h5ad"
    if not h5ad.exists():
        known = list_hest_samples(root)
        hint = (
            f"use one of: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}"
            if known
            else "download the sample's st/ file"
        )
        raise InputError(h5ad, f"no expression file for sample {sample_id!r}", hint)
    meta = read_hest_metadata(root, sample_id)
    if mpp is None:
        mpp = meta.get("pixel_size_um_estimated") or meta.get("pixel_size_um_embedded")
    wsi = next(
        (
            root / "wsis" / f"{sample_id}{s}"
            for s in _WSI_SUFFIXES
            if (root / "wsis" / f"{sample_id}{s}").exists()
        ),
        None,
    )
    if wsi is not None and mpp is None:
        raise InputError(
            root / "metadata" / f"{sample_id}.json",
            "field 'pixel_size_um_estimated' is missing",
            "pass mpp= (µm per pixel of the WSI)",
        )
    spot_um = meta.get("spot_diameter")
    if not isinstance(spot_um, (int, float)) or spot_um <= 0:
        spot_um = _SPOT_UM.get(str(meta.get("st_technology", "")).lower(), 55.0)
    return read_anndata(
        h5ad,
        image_path=wsi,
        mpp=mpp,
        section=sample_id,
        patient=str(meta.get("patient") or sample_id),
        spot_diameter_um=float(spot_um),
        dataset="hest",
    )
