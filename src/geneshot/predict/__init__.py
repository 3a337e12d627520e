"""Predict any gene on a new slide and write a squidpy/scanpy-ready AnnData.

Two entry points:

- :func:`predict_sections`: sections of a registered dataset (spots known, counts too), so
  measured values sit beside the predictions (layer ``"measured"``);
- :func:`predict_image`: a bare H&E image, either with a spot table or tiled on a grid at
  the model's patch size over the tissue found on a thumbnail.

The output AnnData::

    X                        predictions in the model's target units (uns["geneshot"]["units"])
    layers["uncertainty"]    per-spot, per-gene standard deviation (ensemble or MC dropout;
                             NaN for closed-form models such as ALIGN-ST's kernel head)
    layers["measured"]       measured values in the same units (sections mode; NaN if unmeasured)
    obs                      section, array_row, array_col, in_tissue (+ tissue_frac for tiles)
    var                      seen_in_training, description, departure (1 - PCC of the gene's
                             map with the common per-spot pattern; mean over sections)
    varm["departure_per_section"]  sections mode: each section's departure (genes x sections)
    obsm["spatial"]          full-resolution pixels (x = column, y = row)
    uns["spatial"][library]  images.hires + tissue_hires_scalef + spot_diameter_fullres
    uns["geneshot"]          provenance

Large TIFFs are read window by window (:class:`geneshot.image.SlideImage`) and tiles are
prepared in chunks, so memory stays bounded by the chunk size and the thumbnail.

Tiling and resolution tags live in :mod:`geneshot.image` (``tissue_tiles``, ``image_mpp``),
spot tables in :mod:`geneshot.io` (``read_spots``); they are re-exported here, where they
were first published.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from geneshot._constants import Key
from geneshot._progress import progress_bar
from geneshot.cache import Cache
from geneshot.errors import InputError
from geneshot.image import SlideImage, resolve_mpp, tissue_tiles
from geneshot.image._tiles import TISSUE_FRAC, image_mpp, tissue_mask  # noqa: F401  (public here too)
from geneshot.io._spots import read_spots
from geneshot.predict._anndata import (
    HIRES,
    MEASURED,
    UNITS,
    gene_var,
    map_departure,
    provenance,
    spatial_entry,
    write_h5ad,
)
from geneshot.predict._inputs import as_ensemble, prepare_gene_inputs
from geneshot.prepare import FeatureConfig, PreparedSection, add_context, prepare_sections

_PLACEHOLDER_GENE = "__no_counts__"  # one zero column: tiles have no counts
DEPARTURE_PER_SECTION = "departure_per_section"  # varm key (sections mode)

__all__ = [
    "HIRES",
    "MEASURED",
    "TISSUE_FRAC",
    "UNITS",
    "image_mpp",
    "predict_image",
    "predict_sections",
    "read_spots",
    "resolve_mpp",
    "tissue_mask",
    "tissue_tiles",
    "write_h5ad",
]


def predict_sections(
    run,
    dataset: str,
    data_dir: str | os.PathLike,
    sections: Sequence[str],
    genes: Sequence[str],
    *,
    descriptions: Mapping[str, str] | None = None,
    cache: Cache | None = None,
    progress: bool = True,
    thumb_side: int = 2000,
) -> ad.AnnData:
    """Predict ``genes`` on sections of a registered dataset (spots and counts known).

    Sections are read, aligned to the same gene universe and prepared exactly as
    ``geneshot evaluate`` does, so ``layers["measured"]`` vs ``X`` gives its numbers.

    Parameters
    ----------
    run
        Run folder, :class:`~geneshot.train.GeneshotModel` or :class:`~geneshot.train._ensemble.Ensemble`.
    dataset, data_dir, sections
        Registered dataset name, its folder and section ids.
    genes
        Genes to predict (seen, unseen, or described in ``descriptions``).
    descriptions
        ``{gene: free text}`` for genes the knowledge base lacks (or to override it).
    """
    from geneshot.data import align_genes, clean_var_names
    from geneshot.io import read_dataset

    cache = cache or Cache()
    model = as_ensemble(run)
    c = model.contract
    features = FeatureConfig(**c.features)
    names = list(genes)
    gin = prepare_gene_inputs(model, names, features, descriptions, cache, progress)
    raw = read_dataset(dataset, data_dir, list(sections), require_image=True)
    universe = sorted(set(c.seen_genes) | set(c.unseen_genes) | set(names))
    measured_in = [set(clean_var_names(a).var_names) for a in raw]
    secs = prepare_sections(
        [align_genes(clean_var_names(a), universe) for a in raw],
        features,
        cache=cache,
        progress=progress,
    )
    target = model.target
    parts = []
    spatial = {}
    shifts: dict[str, dict] = {}  # section -> shift ratio and shrinkage (zero-shot runs)
    departures = []  # per section; var holds their mean
    for s, have in zip(secs, measured_in):
        mean, std = model.predict_with_uncertainty(s, gin, names)
        departures.append(map_departure(model, mean))
        shifts[s.name] = {k: v for k, v in model.last_shift.items() if k != "section"}
        meas = target.transform(s.adata, names)
        meas[:, [g not in have for g in names]] = np.nan
        obs = s.adata.obs[[Key.SECTION, Key.PATIENT, Key.ARRAY_ROW, Key.ARRAY_COL]].copy()
        obs[Key.IN_TISSUE] = 1
        a = ad.AnnData(X=mean.astype(np.float32), obs=obs, var=gene_var(model, gin, names))
        a.layers[Key.UNCERTAINTY] = std.astype(np.float32)
        a.layers[MEASURED] = meas.astype(np.float32)
        a.obsm[Key.SPATIAL] = np.asarray(s.adata.obsm[Key.SPATIAL], np.float64)
        slide = SlideImage(s.adata.uns[Key.UNS_SPATIAL][s.name][Key.METADATA][Key.IMAGE_PATH])
        meta = s.adata.uns[Key.UNS_SPATIAL][s.name]
        thumb, scale = slide.thumbnail(thumb_side)
        spatial[s.name] = spatial_entry(
            slide,
            thumb,
            scale,
            meta[Key.SCALEFACTORS][Key.SPOT_DIAMETER],
            meta[Key.METADATA][Key.MPP],
            dataset,
        )
        parts.append(a)
    out = ad.concat(parts, merge="first") if len(parts) > 1 else parts[0]
    out.obs[Key.SECTION] = out.obs[Key.SECTION].astype("category")
    out.var = gene_var(
        model, gin, names, None if departures[0] is None else np.mean(departures, axis=0)
    )
    if departures[0] is not None:  # each section's, beside their mean in var
        out.varm[DEPARTURE_PER_SECTION] = pd.DataFrame(
            np.column_stack(departures), index=out.var_names, columns=[s.name for s in secs]
        )
    out.uns[Key.UNS_SPATIAL] = spatial
    out.uns[Key.GENESHOT] = provenance(
        model,
        run,
        gin,
        names,
        "sections",
        {"dataset": dataset, "sections": list(sections), "measured_layer": MEASURED, "shift": shifts},
    )
    return out


def predict_image(
    run,
    image: str | os.PathLike,
    genes: Sequence[str],
    *,
    spots: str | os.PathLike | pd.DataFrame | None = None,
    mpp: float | None = None,
    descriptions: Mapping[str, str] | None = None,
    library_id: str | None = None,
    min_tissue: float = 0.25,
    chunk: int = 1024,
    cache: Cache | None = None,
    progress: bool = True,
    thumb_side: int = 2000,
) -> ad.AnnData:
    """Predict ``genes`` on a bare H&E image, at given spots or on tissue tiles.

    Parameters
    ----------
    run
        Run folder, model or ensemble.
    image
        JPEG, PNG or (pyramidal) TIFF; TIFFs are read window by window.
    genes
        Genes to predict.
    spots
        Spot table (path or DataFrame with ``pixel_x``, ``pixel_y`` [, ``array_row``,
        ``array_col``]); None tiles the tissue at the model's patch size.
    mpp
        µm per full-resolution pixel (default: the image's resolution tag).
    descriptions
        ``{gene: free text}`` for genes the knowledge base lacks.
    library_id
        Key under ``uns["spatial"]`` (default: the image's file stem).
    min_tissue
        Tile mode: smallest tissue fraction of a kept tile.
    chunk
        Tiles prepared together; bounds the memory of patch arrays.
    """
    from geneshot.io import make_section

    cache = cache or Cache()
    model = as_ensemble(run)
    c = model.contract
    features = FeatureConfig(**c.features)
    # the user's files first: a bad image or spot table fails before any encoder loads
    slide = SlideImage(image)  # InputError when the file is missing or not an image
    mpp = resolve_mpp(image, mpp)
    tile_px = features.patch_um / mpp
    if isinstance(spots, (str, os.PathLike)):
        spots_path, spots = spots, read_spots(spots, slide.size, tile_px)
    else:
        spots_path = None
    thumb, scale = slide.thumbnail(thumb_side)  # decodes the whole image: truncation shows here
    if spots is None:
        table = tissue_tiles(
            slide, features.patch_um, mpp, min_tissue=min_tissue, thumbnail=(thumb, scale)
        )
        if table.empty:
            raise InputError(
                image,
                f"no tissue found (no tile of {features.patch_um:g} µm is {min_tissue:.0%} tissue)",
                "check the image, lower --min-tissue, or pass --spots",
            )
        mode, diameter_um = "tiles", features.patch_um
    else:
        table = spots
        mode, diameter_um = "spots", features.patch_um
    names = list(genes)
    gin = prepare_gene_inputs(model, names, features, descriptions, cache, progress)
    lib = library_id or Path(image).name.split(".")[0]
    ids = table.index.astype(str)
    section = make_section(
        pd.DataFrame(np.zeros((len(ids), 1), np.float32), index=ids, columns=[_PLACEHOLDER_GENE]),
        table.assign(
            pixel_x=table["pixel_x"].astype(float), pixel_y=table["pixel_y"].astype(float)
        ),
        section=lib,
        patient=lib,
        dataset="image",
        image_path=image,
        mpp=mpp,
        spot_diameter_um=diameter_um,
        spots_source=spots_path,
    )
    stain_ref = None
    if features.stain:
        stain_ref = slide.thumbnail(1024)[0]
    feats, nuc, summ, trunk = [], [], [], []
    starts = range(0, section.n_obs, chunk)
    for i in progress_bar(
        starts, progress=progress and len(starts) >= 2, desc="prepare tiles", leave=False
    ):
        (p,) = prepare_sections(
            [section[i : i + chunk].copy()],
            features,
            cache=cache,
            progress=progress and len(starts) < 2,
            stain_reference=stain_ref,
            context=False,  # rings span chunks: added below over all tiles
        )
        feats.append(p.image)
        nuc.append(p.nuclei)
        summ.append(p.nuclei_summary)
        trunk.append(p.trunk)
    prepared = add_context(
        PreparedSection(
            adata=section,
            image=np.concatenate(feats),
            nuclei=None if nuc[0] is None else np.concatenate(nuc),
            nuclei_summary=None if summ[0] is None else np.concatenate(summ),
            trunk=None if trunk[0] is None else np.concatenate(trunk),
        ),
        features,
    )
    mean, std = model.predict_with_uncertainty(prepared, gin, names)
    obs = section.obs[[Key.SECTION, Key.ARRAY_ROW, Key.ARRAY_COL]].copy()
    obs[Key.IN_TISSUE] = 1
    if TISSUE_FRAC in table.columns:
        obs[TISSUE_FRAC] = table[TISSUE_FRAC].to_numpy(np.float32)
    var = gene_var(model, gin, names, map_departure(model, mean))
    out = ad.AnnData(X=mean.astype(np.float32), obs=obs, var=var)
    out.layers[Key.UNCERTAINTY] = std.astype(np.float32)
    out.obsm[Key.SPATIAL] = np.asarray(section.obsm[Key.SPATIAL], np.float64)
    out.uns[Key.UNS_SPATIAL] = {
        lib: spatial_entry(slide, thumb, scale, diameter_um / mpp, mpp, None)
    }
    out.uns[Key.GENESHOT] = provenance(
        model,
        run,
        gin,
        names,
        mode,
        {
            "image": str(Path(image).resolve()),
            "shift": {k: v for k, v in model.last_shift.items() if k != "section"},
            "microns_per_pixel": float(mpp),
            "tile_um": float(features.patch_um),
            "n_obs": int(out.n_obs),
        },
    )
    return out
