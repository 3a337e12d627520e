"""Predict any gene on a new slide and write a squidpy/scanpy-ready AnnData.

Two entry points:

- :func:`predict_sections`: sections of a registered dataset (spots known, counts too), so
  measured values sit beside the predictions (layer ``"measured"``);
- :func:`predict_image`: a bare H&E image, either with a spot table or tiled on a grid at
  the model's patch size over the tissue found on a thumbnail.

The output AnnData::

    X                        predictions in the model's target units (uns["geneshot"]["units"])
    layers["uncertainty"]    per-spot, per-gene standard deviation (ensemble or MC dropout)
    layers["measured"]       measured values in the same units (sections mode; NaN if unmeasured)
    obs                      section, array_row, array_col, in_tissue (+ tissue_frac for tiles)
    var                      seen_in_training, description
    obsm["spatial"]          full-resolution pixels (x = column, y = row)
    uns["spatial"][library]  images.hires + tissue_hires_scalef + spot_diameter_fullres
    uns["geneshot"]          provenance

Large TIFFs are read window by window (:class:`geneshot.image.SlideImage`) and tiles are
prepared in chunks, so memory stays bounded by the chunk size and the thumbnail.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from geneshot import __version__
from geneshot._constants import Key
from geneshot.cache import Cache, atomic_path, hash_parts
from geneshot.errors import InputError
from geneshot.image import SlideImage
from geneshot.prepare import (
    FeatureConfig,
    PreparedGenes,
    PreparedSection,
    prepare_genes,
    prepare_sections,
)

log = logging.getLogger(__name__)

MEASURED = "measured"  # layer: measured values in the model's target units
HIRES = "hires"  # uns["spatial"][lib]["images"] key read by scanpy / squidpy
TISSUE_FRAC = "tissue_frac"
_PLACEHOLDER_GENE = "__no_counts__"  # one zero column: tiles have no counts

UNITS = {
    "libsize": "log1p(counts per 10,000 per spot)",
    "sgn": "log10(1 + counts), min-max scaled per gene with the training sections' extremes",
}


# ----------------------------------------------------------------------------- model and genes
def _as_ensemble(run, mc_samples: int = 16):
    from geneshot.train import GeneshotModel
    from geneshot.train._ensemble import Ensemble

    if isinstance(run, Ensemble):
        return run
    if isinstance(run, GeneshotModel):
        return Ensemble([run], mc_samples=mc_samples)
    return Ensemble.load(run, mc_samples=mc_samples)


def _prepare_gene_inputs(
    model,
    names: Sequence[str],
    features: FeatureConfig,
    descriptions: Mapping[str, str] | None,
    cache: Cache,
    progress: bool,
) -> PreparedGenes:
    """Descriptions + embeddings of ``names`` and the model's seen genes (the gene-graph context).

    A requested gene that the run never saw, the knowledge base does not describe and the
    user did not describe is an error: a bare symbol is no description.
    """
    from geneshot.genes import describe_genes

    c = model.contract
    names = list(names)
    if not names:
        raise InputError(
            None,
            "no genes to predict",
            "pass --genes A,B,..., --gene-list FILE or --describe GENE=TEXT",
        )
    dup = sorted({g for g in names if names.count(g) > 1})
    if dup:
        raise InputError(
            None, f"genes are requested twice ({', '.join(dup[:5])})", "list each gene once"
        )
    descriptions = dict(descriptions or {})
    known_to_run = set(c.seen_genes) | set(c.unseen_genes)
    ask = [g for g in names if g not in descriptions and g not in known_to_run]
    if ask:
        texts, _ = describe_genes(ask, source=features.gene_text_source, missing="drop")
        unknown = [g for g in ask if g not in texts]
        if unknown:
            raise InputError(
                features.gene_text_source,
                f"{len(unknown)} genes have no description in the knowledge base (e.g. {', '.join(unknown[:5])})",
                f'describe them: --describe "{unknown[0]}=free text about the gene", or check the symbol',
            )
    # the same gene set the evaluator prepares, so predictions match `geneshot evaluate`
    return prepare_genes(
        sorted(set(names) | set(c.seen_genes)),
        features,
        cache=cache,
        progress=progress,
        extra_descriptions=descriptions or None,
    )


# ----------------------------------------------------------------------------- image scale and tiles
def image_mpp(path: str | os.PathLike) -> float | None:
    """µm per pixel from a TIFF's resolution tags or an SVS/OME description, else None."""
    import re

    path = Path(path)
    if path.suffix.lower() not in {".tif", ".tiff", ".svs", ".btf"}:
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            desc = page.description or ""
            m = re.search(r"MPP\s*=\s*([0-9.]+)", desc) or re.search(
                r'PhysicalSizeX="([0-9.eE+-]+)"', desc
            )
            if m:
                return float(m.group(1))
            tags = page.tags
            if "XResolution" in tags and "ResolutionUnit" in tags:
                num, den = tags["XResolution"].value
                unit = int(tags["ResolutionUnit"].value)
                px_per_unit = num / den if den else 0.0
                if px_per_unit > 0 and unit in (2, 3):  # inch, centimetre (1 = no unit)
                    return (25400.0 if unit == 2 else 10000.0) / px_per_unit
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, ZeroDivisionError):
        return None
    return None


def resolve_mpp(image: str | os.PathLike, mpp: float | None) -> float:
    """``mpp`` if given, else the image's resolution tag; a clear error when neither exists."""
    from geneshot.io._section import check_mpp

    if mpp is None:
        mpp = image_mpp(image)
        if mpp is None:
            raise InputError(
                image,
                "the image has no usable resolution tag (microns per pixel)",
                "pass --mpp (µm per full-resolution pixel, e.g. 0.5 at 20x, 0.25 at 40x)",
            )
        return check_mpp(mpp, image, "the image's resolution tag")
    return check_mpp(mpp, image, "--mpp")


def tissue_mask(thumb: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail (stained = saturated, not glass, not black)."""
    from scipy import ndimage as ndi
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu

    hsv = rgb2hsv(thumb[..., :3])
    sat, val = hsv[..., 1], hsv[..., 2]
    usable = val > 0.15  # scanner borders and pen marks are dark
    thr = 0.05
    if usable.sum() > 16 and np.ptp(sat[usable]) > 1e-6:
        thr = max(float(threshold_otsu(sat[usable])), 0.05)
    mask = (sat > thr) & usable
    r = max(1, round(min(thumb.shape[:2]) / 300))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = xx**2 + yy**2 <= r * r
    mask = ndi.binary_opening(ndi.binary_closing(mask, disk), disk)
    # drop specks (dust, debris) smaller than 0.02 % of the thumbnail
    labels, n = ndi.label(mask)
    if n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= max(4, mask.size // 5000)
        keep[0] = False
        mask = keep[labels]
    return mask


def tissue_tiles(
    slide: SlideImage,
    tile_um: float,
    mpp: float | None = None,
    *,
    min_tissue: float = 0.25,
    thumb_side: int = 2000,
    thumbnail: tuple[np.ndarray, float] | None = None,
) -> pd.DataFrame:
    """Square tiles of ``tile_um`` µm on a grid over the tissue of a slide.

    Parameters
    ----------
    slide
        The full-resolution image.
    tile_um
        Tile side in µm (the model's patch size, ``contract.features["patch_um"]``).
    mpp
        µm per full-resolution pixel (default: the image's resolution tag).
    min_tissue
        Smallest fraction of a tile covered by tissue on the thumbnail mask.
    thumb_side, thumbnail
        Thumbnail size, or an already made ``(rgb, scale)`` thumbnail.

    Returns
    -------
    DataFrame indexed by tile id with ``pixel_x``, ``pixel_y`` (tile centre, full-res
    pixels), integer ``array_row``, ``array_col`` (grid indices, for the spot graph) and
    ``tissue_frac``.
    """
    mpp = resolve_mpp(slide.path, mpp)
    if tile_um <= 0:
        raise InputError(
            None, f"tile size {tile_um} µm is not positive", "use the model's patch size"
        )
    thumb, scale = thumbnail if thumbnail is not None else slide.thumbnail(thumb_side)
    mask = tissue_mask(thumb).astype(np.float64)
    tile_px = tile_um / mpp
    n_rows, n_cols = int(np.ceil(slide.height / tile_px)), int(np.ceil(slide.width / tile_px))
    # integral image: the tissue fraction of any thumbnail box in O(1)
    integ = np.pad(mask.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    th, tw = mask.shape
    r = np.arange(n_rows)
    c = np.arange(n_cols)
    y0 = np.clip(np.floor(r * tile_px * scale).astype(int), 0, th)
    y1 = np.clip(np.maximum(np.ceil((r + 1) * tile_px * scale).astype(int), y0 + 1), 0, th)
    x0 = np.clip(np.floor(c * tile_px * scale).astype(int), 0, tw)
    x1 = np.clip(np.maximum(np.ceil((c + 1) * tile_px * scale).astype(int), x0 + 1), 0, tw)
    box = integ[y1][:, x1] - integ[y0][:, x1] - integ[y1][:, x0] + integ[y0][:, x0]
    # area of the full tile on the thumbnail, so a tile hanging off the edge counts glass
    area = np.outer(
        np.maximum((r + 1) * tile_px * scale - r * tile_px * scale, 1e-9),
        np.maximum((c + 1) * tile_px * scale - c * tile_px * scale, 1e-9),
    )
    frac = np.clip(box / area, 0.0, 1.0)
    rr, cc = np.nonzero(frac >= min_tissue)
    return pd.DataFrame(
        {
            "pixel_x": (cc + 0.5) * tile_px,
            "pixel_y": (rr + 0.5) * tile_px,
            Key.ARRAY_ROW: rr.astype(np.int64),
            Key.ARRAY_COL: cc.astype(np.int64),
            TISSUE_FRAC: frac[rr, cc].astype(np.float32),
        },
        index=pd.Index([f"r{a}_c{b}" for a, b in zip(rr, cc)], name="tile"),
    )


def read_spots(path: str | os.PathLike, slide: SlideImage, pitch_px: float) -> pd.DataFrame:
    """A spot table (CSV/TSV): ``pixel_x``, ``pixel_y`` and optionally ``array_row``, ``array_col``.

    The first column is the spot id when it is not one of those. Spots outside the image
    are an error. Without grid columns, spots are snapped to a grid of their own pitch.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "spot table does not exist", "check the --spots path")
    try:
        df = pd.read_csv(path, sep=None, engine="python")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise InputError(
            path, f"spot table cannot be parsed ({err})", "give a CSV with columns pixel_x,pixel_y"
        ) from None
    for col in ("pixel_x", "pixel_y"):
        if col not in df.columns:
            raise InputError(
                path,
                f"missing column {col!r}",
                "the spot table needs pixel_x (column) and pixel_y (row) in full-resolution pixels",
            )
    first = df.columns[0]
    if first not in ("pixel_x", "pixel_y", Key.ARRAY_ROW, Key.ARRAY_COL):
        df = df.set_index(first)
    else:
        df.index = pd.Index([f"spot{i}" for i in range(len(df))])
    df.index = df.index.astype(str)
    xy = df[["pixel_x", "pixel_y"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    if len(xy) == 0 or not np.isfinite(xy).all():
        raise InputError(
            path,
            "pixel_x / pixel_y are empty, NaN or not numeric",
            "give numeric pixel coordinates for every spot",
        )
    outside = (
        (xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] >= slide.width) | (xy[:, 1] >= slide.height)
    )
    if outside.any():
        i = int(np.argmax(outside))
        raise InputError(
            path,
            f"{int(outside.sum())} of {len(xy)} spots lie outside the {slide.width} x {slide.height} px image (first: {df.index[i]!r} at x={xy[i, 0]:.0f}, y={xy[i, 1]:.0f})",
            "pixel_x is the column and pixel_y the row, in full-resolution pixels of this image",
        )
    df["pixel_x"], df["pixel_y"] = xy[:, 0], xy[:, 1]
    if not {Key.ARRAY_ROW, Key.ARRAY_COL} <= set(df.columns):
        if len(xy) > 1:
            from scipy.spatial import cKDTree

            d, _ = cKDTree(xy).query(xy, k=2)
            pitch_px = float(np.median(d[:, 1])) or pitch_px
        df[Key.ARRAY_ROW] = np.round((xy[:, 1] - xy[:, 1].min()) / pitch_px).astype(np.int64)
        df[Key.ARRAY_COL] = np.round((xy[:, 0] - xy[:, 0].min()) / pitch_px).astype(np.int64)
    return df


# ----------------------------------------------------------------------------- AnnData assembly
def _spatial_entry(
    slide: SlideImage,
    thumb: np.ndarray,
    scale: float,
    spot_diameter_px: float,
    mpp: float,
    dataset: str | None,
) -> dict:
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


def _provenance(
    model, run, genes: PreparedGenes, names: Sequence[str], mode: str, extra: dict
) -> dict:
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


def _var(model, genes: PreparedGenes, names: Sequence[str]) -> pd.DataFrame:
    seen = set(model.contract.seen_genes)
    return pd.DataFrame(
        {
            Key.SEEN: [g in seen for g in names],
            Key.DESCRIPTION: [genes.texts.get(g, "") for g in names],
        },
        index=pd.Index(list(names), name="gene"),
    )


def write_h5ad(adata: ad.AnnData, out: str | os.PathLike) -> Path:
    """Write ``adata`` atomically (nothing is left at ``out`` if writing fails)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    return out


# ----------------------------------------------------------------------------- entry points
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
    model = _as_ensemble(run)
    c = model.contract
    features = FeatureConfig(**c.features)
    names = list(genes)
    gin = _prepare_gene_inputs(model, names, features, descriptions, cache, progress)
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
    for s, have in zip(secs, measured_in):
        mean, std = model.predict_with_uncertainty(s, gin, names)
        meas = target.transform(s.adata, names)
        meas[:, [g not in have for g in names]] = np.nan
        obs = s.adata.obs[[Key.SECTION, Key.PATIENT, Key.ARRAY_ROW, Key.ARRAY_COL]].copy()
        obs[Key.IN_TISSUE] = 1
        a = ad.AnnData(X=mean.astype(np.float32), obs=obs, var=_var(model, gin, names))
        a.layers[Key.UNCERTAINTY] = std.astype(np.float32)
        a.layers[MEASURED] = meas.astype(np.float32)
        a.obsm[Key.SPATIAL] = np.asarray(s.adata.obsm[Key.SPATIAL], np.float64)
        slide = SlideImage(s.adata.uns[Key.UNS_SPATIAL][s.name][Key.METADATA][Key.IMAGE_PATH])
        meta = s.adata.uns[Key.UNS_SPATIAL][s.name]
        thumb, scale = slide.thumbnail(thumb_side)
        spatial[s.name] = _spatial_entry(
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
    out.var = _var(model, gin, names)
    out.uns[Key.UNS_SPATIAL] = spatial
    out.uns[Key.GENESHOT] = _provenance(
        model,
        run,
        gin,
        names,
        "sections",
        {"dataset": dataset, "sections": list(sections), "measured_layer": MEASURED},
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
    from tqdm.auto import tqdm

    from geneshot.io import make_section

    cache = cache or Cache()
    model = _as_ensemble(run)
    c = model.contract
    features = FeatureConfig(**c.features)
    slide = SlideImage(image)  # InputError when the file is missing or not an image
    mpp = resolve_mpp(image, mpp)
    names = list(genes)
    gin = _prepare_gene_inputs(model, names, features, descriptions, cache, progress)
    lib = library_id or Path(image).name.split(".")[0]
    thumb, scale = slide.thumbnail(thumb_side)
    tile_px = features.patch_um / mpp
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
        table = spots if isinstance(spots, pd.DataFrame) else read_spots(spots, slide, tile_px)
        mode, diameter_um = "spots", features.patch_um
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
        spots_source=spots if isinstance(spots, (str, os.PathLike)) else None,
    )
    stain_ref = None
    if features.stain:
        stain_ref = slide.thumbnail(1024)[0]
    feats, nuc, summ = [], [], []
    starts = range(0, section.n_obs, chunk)
    for i in tqdm(
        starts, desc="prepare tiles", disable=not progress or len(starts) < 2, leave=False
    ):
        (p,) = prepare_sections(
            [section[i : i + chunk].copy()],
            features,
            cache=cache,
            progress=progress and len(starts) < 2,
            stain_reference=stain_ref,
        )
        feats.append(p.image)
        nuc.append(p.nuclei)
        summ.append(p.nuclei_summary)
    prepared = PreparedSection(
        adata=section,
        image=np.concatenate(feats),
        nuclei=None if nuc[0] is None else np.concatenate(nuc),
        nuclei_summary=None if summ[0] is None else np.concatenate(summ),
    )
    mean, std = model.predict_with_uncertainty(prepared, gin, names)
    obs = section.obs[[Key.SECTION, Key.ARRAY_ROW, Key.ARRAY_COL]].copy()
    obs[Key.IN_TISSUE] = 1
    if TISSUE_FRAC in table.columns:
        obs[TISSUE_FRAC] = table[TISSUE_FRAC].to_numpy(np.float32)
    out = ad.AnnData(X=mean.astype(np.float32), obs=obs, var=_var(model, gin, names))
    out.layers[Key.UNCERTAINTY] = std.astype(np.float32)
    out.obsm[Key.SPATIAL] = np.asarray(section.obsm[Key.SPATIAL], np.float64)
    out.uns[Key.UNS_SPATIAL] = {
        lib: _spatial_entry(slide, thumb, scale, diameter_um / mpp, mpp, None)
    }
    out.uns[Key.GENESHOT] = _provenance(
        model,
        run,
        gin,
        names,
        mode,
        {
            "image": str(Path(image).resolve()),
            "microns_per_pixel": float(mpp),
            "tile_um": float(features.patch_um),
            "n_obs": int(out.n_obs),
        },
    )
    return out
