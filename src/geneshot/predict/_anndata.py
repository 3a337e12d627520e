"""The prediction AnnData: ``uns["spatial"]`` entries, ``var``, provenance and the h5ad writer."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from geneshot import __version__
from geneshot._constants import Key
from geneshot.cache import atomic_path, hash_parts
from geneshot.image import SlideImage
from geneshot.metrics import departure
from geneshot.prepare import PreparedGenes

MEASURED = "measured"  # layer: measured values in the model's target units
HIRES = "hires"  # uns["spatial"][lib]["images"] key read by scanpy / squidpy

UNITS = {
    "libsize": "log1p(counts per 10,000 per spot)",
    "sgn": "log10(1 + counts), min-max scaled per gene with the training sections' extremes",
}


def spatial_entry(
    slide: SlideImage,
    thumb: np.ndarray,
    scale: float,
    spot_diameter_px: float,
    mpp: float,
    dataset: str | None,
) -> dict:
    """``uns["spatial"][library]``: the thumbnail as ``hires`` with its scale factors (scanpy layout)."""
    meta = {Key.IMAGE_PATH: str(slide.path.resolve()), Key.MPP: float(mpp)}
    if dataset:
        meta[Key.DATASET] = dataset
    return {
        Key.IMAGES: {HIRES: np.ascontiguousarray(thumb[..., :3], dtype=np.uint8)},
        Key.SCALEFACTORS: {
            Key.HIRES_SCALEF: float(scale),
            Key.SPOT_DIAMETER: float(spot_diameter_px),
        },
        Key.METADATA: meta,
    }


def provenance(
    model, run, genes: PreparedGenes, names: Sequence[str], mode: str, extra: dict
) -> dict:
    """``uns["geneshot"]``: what produced the predictions (run, encoders, units, genes, date)."""
    c = model.contract
    feats = c.features
    target = model.target.kind
    cfg = {
        "features": feats,
        "model": model.name,
        "model_config": model.members[0].model_config,
        "target": target,
    }
    return {
        "geneshot_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "run": str(run) if isinstance(run, (str, os.PathLike)) else "",
        "model": model.name,
        "setting": model.setting,
        "image_encoder": str(feats.get("image_encoder")),
        "text_encoder": str(feats.get("text_encoder")),
        "text_source": str(
            feats.get("gene_text_source")
            or "shipped knowledge base (geneshot/resources/gene_knowledge.tsv.gz)"
        ),
        "patch_um": float(feats.get("patch_um")),
        "patch_px": int(feats.get("patch_px")),
        "config_hash": hash_parts(cfg),
        "target": target,
        "units": UNITS.get(target, target),
        "uncertainty": model.describe(),
        "train_sections": list(c.train_sections),
        "genes": list(names),
        **extra,
    }


def gene_var(
    model, genes: PreparedGenes, names: Sequence[str], departure: np.ndarray | None = None
) -> pd.DataFrame:
    """``var``: whether each gene was seen in training, the description it was predicted from,
    and how far its map departs from the common per-spot pattern (``departure``, from
    :func:`map_departure`; NaN where the run has no common pattern)."""
    seen = set(model.contract.seen_genes)
    return pd.DataFrame(
        {
            Key.SEEN: [g in seen for g in names],
            Key.DESCRIPTION: [genes.texts.get(g, "") for g in names],
            Key.DEPARTURE: np.full(len(names), np.nan) if departure is None else departure,
        },
        index=pd.Index(list(names), name="gene"),
    )


def map_departure(model, pred: np.ndarray) -> np.ndarray | None:
    """Each gene's :func:`geneshot.metrics.departure` on the section ``model`` last predicted
    (``pred``, its prediction): ``1 - PCC`` of its map with the model's common per-spot
    pattern there (``model.last_common``, kept by the prediction); None without one.

    Near 0, the map is the tissue's common pattern: the model's gene knowledge moved it
    little, and it says nothing gene-specific. On the HER2+ benchmark, zero-shot models'
    whole gain over the common pattern lay in the genes they moved furthest from it
    (BENCHMARKS.md, session 18).
    """
    common = model.last_common
    return None if common is None else departure(pred, common)


def write_h5ad(adata: ad.AnnData, out: str | os.PathLike) -> Path:
    """Write ``adata`` atomically (nothing is left at ``out`` if writing fails)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    return out
