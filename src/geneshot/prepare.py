"""``prepare``: patches -> image features -> nuclei maps -> gene texts -> text embeddings.

Every step is cached on disk keyed by its inputs, so a second run only loads arrays.
The result, :class:`Prepared`, is what the trainer, evaluator and predictor consume.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np

from geneshot._constants import DEFAULT_PATCH_PX, DEFAULT_PATCH_UM, Key
from geneshot.cache import Cache, hash_parts
from geneshot.errors import InputError
from geneshot.io._section import section_id, section_meta

if TYPE_CHECKING:
    from geneshot.image import StainJitter

log = logging.getLogger(__name__)

NUCLEI_VERSION = "nuclei-v1"  # bump when segmentation or maps change
IMAGE_FEATURES_VERSION = "image-features-v1"
CONTEXT_ON = ("all", "patch")
# FeatureConfig keys added after runs were first saved, with the value that reproduces those
# runs' features; a saved contract without a key means this value, not today's default
FEATURES_OFF = {
    "fov_um": [],
    "context_um": [],
    "context_on": "all",
    "gene_encoder": "description",
    "finetune": False,
}
IMAGE_TRUNK_VERSION = "image-trunk-v1"


@dataclass
class PreparedSection:
    """One section with its per-spot model inputs.

    Attributes
    ----------
    adata
        The section (raw counts, aligned to the run's gene universe when prepared together).
    image
        (n_spots, D_img) frozen patch features.
    nuclei
        (n_spots, C, S, S) nuclei-distribution maps, or None when nuclei are off.
    nuclei_summary
        (n_spots, K) per-patch nuclei statistics, or None.
    trunk
        (n_spots, C, s, s) float16 activations of the own window before the image
        encoder's last block (``FeatureConfig.finetune``), or None.
    """

    adata: ad.AnnData
    image: np.ndarray
    nuclei: np.ndarray | None = None
    nuclei_summary: np.ndarray | None = None
    trunk: np.ndarray | None = None

    @property
    def name(self) -> str:
        """Section id."""
        return section_id(self.adata)

    @property
    def grid(self) -> np.ndarray:
        """(n, 2) array row and column of each spot."""
        return self.adata.obs[[Key.ARRAY_ROW, Key.ARRAY_COL]].to_numpy(np.int64)


@dataclass
class PreparedGenes:
    """Gene texts and their text-encoder embeddings (rows follow ``symbols``)."""

    symbols: list[str]
    texts: dict[str, str]
    pooled: np.ndarray
    tokens: np.ndarray
    mask: np.ndarray
    encoder: str
    report: dict = field(default_factory=dict)

    def index(self, genes: Sequence[str]) -> np.ndarray:
        """Row indices of ``genes`` (all must be present)."""
        pos = {g: i for i, g in enumerate(self.symbols)}
        return np.asarray([pos[g] for g in genes], dtype=np.int64)


@dataclass
class FeatureConfig:
    """How per-spot inputs are made (saved with models as part of their data contract).

    The image features of a spot are, in this order: the encoder's features of its own
    ``patch_um`` window; of each larger window in ``fov_um`` (resampled to ``patch_px``
    pixels, same encoder); then, for each ring of ``context_um``, the mean of those
    features over the spots in the ring (``context_on="all"``) or of the own-window
    features only (``"patch"``). Rings and windows are in micrometres, so one setting holds
    for legacy ST, Visium and the tiles of tile-mode prediction. Contracts written before
    these keys existed load with them off.
    """

    # chosen by nested CV on HER2+ (scripts/choose_features.py: effnet-lite1 in 3 of 5 folds)
    image_encoder: str = "effnet-lite1"
    tta: bool = False
    nuclei: bool = True
    nuclei_backend: str = "skimage"
    patch_um: float = DEFAULT_PATCH_UM
    patch_px: int = DEFAULT_PATCH_PX
    stain: str | None = None
    text_encoder: str = "minilm"
    # how a gene becomes tokens + pooled vector (geneshot.encoders.gene.GENE_ENCODERS); chosen
    # by nested CV on HER2+ (scripts/choose_features.py --what gene-encoder: 5 of 5 outer folds)
    gene_encoder: str = "go-tokens"
    gene_text_source: str | None = None  # None = shipped knowledge base; else a JSON/TSV file
    # defaults chosen by nested CV on HER2+ (scripts/choose_features.py); () = none
    fov_um: tuple[float, ...] = (224.0, 448.0)  # larger windows around each spot (µm)
    context_um: tuple[float, ...] = (300.0, 500.0)  # outer radii of the context rings (µm)
    context_on: str = "all"  # what the rings average: "all" (patch + windows) or "patch"
    # keep the own window's activations before the encoder's last block, so that a model
    # fine-tunes that block on its training genes (train._finetune). None = on for the
    # effnet-lite encoders, the only ones it can fine-tune (chosen by nested CV on HER2+:
    # scripts/choose_features.py --what augment; BENCHMARKS.md)
    finetune: bool | None = None

    def __post_init__(self) -> None:
        # JSON (contracts, YAML) stores lists: accept any sequence, keep tuples
        from geneshot.image._context import check_ring_edges

        self.fov_um = tuple(float(w) for w in (self.fov_um or ()))
        if any(not np.isfinite(w) or w <= 0 for w in self.fov_um):
            raise InputError(
                None,
                f"fov_um {list(self.fov_um)} holds a window that is not a positive size",
                "give window sizes in µm, e.g. fov_um: [224, 448], or [] for none",
            )
        self.context_um = check_ring_edges(self.context_um or ())
        from geneshot.encoders.gene import GENE_ENCODERS

        if self.gene_encoder not in GENE_ENCODERS:
            raise InputError(
                None,
                f"gene_encoder {self.gene_encoder!r} is not a registered gene encoder",
                f"use one of: {', '.join(GENE_ENCODERS)}",
            )
        from geneshot.encoders.image import can_finetune

        if self.finetune is None:
            self.finetune = can_finetune(self.image_encoder)
        if self.finetune and not can_finetune(self.image_encoder):
            raise InputError(
                None,
                f"finetune needs an effnet-lite image encoder, not {self.image_encoder!r}",
                "use image_encoder: effnet-lite1 (or lite0/lite2), or finetune: false",
            )
        if self.context_on not in CONTEXT_ON:
            raise InputError(
                None,
                f"context_on {self.context_on!r} is not one of {list(CONTEXT_ON)}",
                "use context_on: all (rings of patch + windows) or patch",
            )

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for configs and checkpoints); windows and rings as lists."""
        d = dict(self.__dict__)
        d["fov_um"], d["context_um"] = list(self.fov_um), list(self.context_um)
        return d


class Timer:
    """Accumulates wall time per step for the closing summary."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[name] = timer.times.get(name, 0.0) + time.perf_counter() - self.t

        return _Ctx()


def prepare_sections(
    sections: Sequence[ad.AnnData],
    config: FeatureConfig | None = None,
    *,
    cache: Cache | None = None,
    progress: bool = True,
    timer: Timer | None = None,
    stain_reference: np.ndarray | None = None,
    context: bool = True,
    augment: StainJitter | None = None,
) -> list[PreparedSection]:
    """Patches, image features (own window, larger windows, context rings) and nuclei maps.

    Every step is cached. Reads ``obsm["spatial"]`` and ``uns["spatial"][section]["metadata"]``;
    writes nothing into the AnnData.

    Parameters
    ----------
    sections
        Sections to prepare (each one whole: context rings link spots of one section).
    config
        Feature settings (default :class:`FeatureConfig`).
    context
        Append the context rings of ``config.context_um``. False leaves them out, for a
        caller that prepares a section in chunks and adds them over the whole section with
        :func:`add_context` (tile-mode prediction).
    augment
        A stain perturbation applied to every patch (after any normalisation): the
        sections' features as another lab's staining would give them, cached apart.
    """
    from geneshot.encoders.image import create_image_encoder
    from geneshot.image import StainNormalizer, spot_patches

    config = config or FeatureConfig()
    cache = cache or Cache()
    timer = timer or Timer()
    stain = stain_key = None
    if config.stain:
        if stain_reference is None:
            stain_reference = _default_stain_reference(sections[0])
        stain = StainNormalizer(config.stain, stain_reference)
        stain_key = f"{config.stain}:{hash_parts(stain_reference)}"
    if augment is not None:
        normalise = stain
        stain = augment if normalise is None else (lambda rgb: augment(normalise(rgb)))
        stain_key = f"{stain_key}+{augment.key}" if stain_key else augment.key
    encoder = None

    def embed(pt: dict, with_trunk: bool = False) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """Features (and, for fine-tuning, the trunk activations) of one window's patches."""
        nonlocal encoder
        key_parts = {"patches": hash_parts(pt["patches"][:, ::8, ::8]), "n": len(pt["patches"])}
        parts = {
            "v": IMAGE_FEATURES_VERSION,
            "encoder": config.image_encoder,
            "tta": config.tta,
            **key_parts,
        }
        joint: dict[str, np.ndarray] = {}

        def load_encoder():
            nonlocal encoder
            # the encoder is built only on a cache miss (loading it costs seconds)
            encoder = encoder or create_image_encoder(config.image_encoder, cache=cache)
            return encoder

        def one_pass(name: str) -> dict[str, np.ndarray]:
            # features and trunk come from one forward pass; whichever cache misses first
            # runs it and the other reuses it (TTA features need their own passes)
            if name not in joint:
                joint["features"], joint["trunk"] = load_encoder().embed_with_trunk(
                    pt["patches"], progress=progress
                )
            return {name: joint[name]}

        def features():
            if with_trunk and not config.tta:
                return one_pass("features")
            return {
                "features": load_encoder().embed(pt["patches"], tta=config.tta, progress=progress)
            }

        trunk = None
        if with_trunk:
            trunk_parts = {"v": IMAGE_TRUNK_VERSION, "encoder": config.image_encoder, **key_parts}
            trunk = cache.arrays("image-trunk", trunk_parts, lambda: one_pass("trunk"))["trunk"]
        return cache.arrays("image-features", parts, features)["features"], trunk, key_parts

    def patches(a: ad.AnnData, size_um: float) -> dict:
        return spot_patches(
            a,
            size_um=size_um,
            out_px=config.patch_px,
            stain=stain,
            stain_key=stain_key,
            cache=cache,
            progress=progress,
        )

    out = []
    for a in sections:
        with timer("patches"):
            pt = patches(a, config.patch_um)
        with timer("image features"):
            feats, trunk, key_parts = embed(pt, with_trunk=bool(config.finetune))
        maps = summary = None
        if config.nuclei:
            with timer("nuclei"):
                nz = _nuclei_cached(pt, config, cache, progress, key_parts)
                maps, summary = nz["maps"], nz["summary"]
        del pt  # one window's patches in memory at a time
        views = [np.asarray(feats, np.float32)]
        for size in config.fov_um:
            # a larger field of view through the same encoder, resampled to the same pixels
            with timer("fov patches"):
                pw = patches(a, size)
            with timer("fov features"):
                views.append(np.asarray(embed(pw)[0], np.float32))
            del pw
        image = np.hstack(views) if len(views) > 1 else views[0]
        section = PreparedSection(
            adata=a, image=image, nuclei=maps, nuclei_summary=summary, trunk=trunk
        )
        if context and config.context_um:
            with timer("context"):
                section = add_context(section, config)
        out.append(section)
        log.info(
            "%s: %d spots prepared (%s features, %d dims%s)",
            section_id(a),
            a.n_obs,
            config.image_encoder,
            section.image.shape[1],
            ", nuclei maps" if config.nuclei else "",
        )
    return out


def add_context(section: PreparedSection, config: FeatureConfig) -> PreparedSection:
    """Append the context-ring means of ``config.context_um`` to a section's image features.

    ``section.image`` must hold the features before context: own window, then each window of
    ``config.fov_um`` (what :func:`prepare_sections` makes with ``context=False``). Rings
    average over all spots of ``section``, so call it on a whole section, not on chunks.
    """
    from geneshot.image import context_features, spot_xy_um

    if not config.context_um:
        return section
    x = np.asarray(section.image, np.float32)
    # context_on="patch": rings of the own-window features only (the first D columns)
    own = x if config.context_on == "all" else x[:, : x.shape[1] // (1 + len(config.fov_um))]
    ctx = context_features(own, spot_xy_um(section.adata), config.context_um)[:, own.shape[1] :]
    return dataclasses.replace(section, image=np.hstack([x, ctx]))


def _nuclei_cached(
    pt: dict, config: FeatureConfig, cache: Cache, progress: bool, key_parts: dict
) -> dict:
    from geneshot.nuclei import segment_patches

    mpp = config.patch_um / config.patch_px
    parts = {"v": NUCLEI_VERSION, "backend": config.nuclei_backend, "mpp": mpp, **key_parts}

    def compute():
        res = segment_patches(
            pt["patches"],
            valid=pt["valid"],
            mpp=mpp,
            backend=config.nuclei_backend,
            progress=progress,
        )
        return {
            "maps": np.asarray(res.maps, np.float16),
            "summary": np.asarray(res.summary, np.float32),
        }

    return cache.arrays("nuclei", parts, compute)


def _default_stain_reference(adata: ad.AnnData) -> np.ndarray:
    from geneshot.image import SlideImage

    thumb, _ = SlideImage(section_meta(adata)[Key.IMAGE_PATH]).thumbnail(1024)
    return thumb


def prepare_genes(
    symbols: Sequence[str],
    config: FeatureConfig | None = None,
    *,
    cache: Cache | None = None,
    progress: bool = True,
    extra_descriptions: dict[str, str] | None = None,
    missing: str = "symbol",
) -> PreparedGenes:
    """Descriptions and text embeddings for ``symbols`` (cached per text and encoder).

    Parameters
    ----------
    symbols
        Gene symbols.
    config
        Which text source and encoder to use.
    extra_descriptions
        Free-text descriptions that override the knowledge base (e.g. ``--describe``).
    missing
        Genes without annotation: ``"symbol"`` (described by symbol alone) or ``"drop"``.
    """
    from geneshot.encoders import create_text_encoder
    from geneshot.encoders.gene import encode_genes
    from geneshot.genes import describe_genes

    config = config or FeatureConfig()
    cache = cache or Cache()
    texts, report = describe_genes(list(symbols), source=config.gene_text_source, missing=missing)
    if extra_descriptions:
        texts.update(extra_descriptions)
    keep = [s for s in dict.fromkeys(symbols) if s in texts]
    user_given = set(report.from_source) | set(extra_descriptions or ())
    # the text encoder loads only when some text or term is not cached yet
    emb = encode_genes(
        config.gene_encoder,
        create_text_encoder(config.text_encoder),
        {s: texts[s] for s in keep},
        cache,
        described=[s for s in keep if s in user_given],
        progress=progress,
    )
    return PreparedGenes(
        symbols=keep,
        texts={s: texts[s] for s in keep},
        pooled=emb.pooled,
        tokens=emb.tokens,
        mask=emb.mask,
        encoder=f"{config.gene_encoder}/{config.text_encoder}",
        report=report if isinstance(report, dict) else {"report": str(report)},
    )


def prepare_dataset(
    sections: Sequence[ad.AnnData],
    genes: Sequence[str],
    config: FeatureConfig | None = None,
    *,
    cache: Cache | None = None,
    progress: bool = True,
    timer: Timer | None = None,
) -> tuple[list[PreparedSection], PreparedGenes]:
    """:func:`prepare_sections` and :func:`prepare_genes` at once.

    The gene texts do not depend on the images, so they are encoded in a second thread
    while the slides are read and encoded: reading patches keeps one core busy and leaves
    the other free, and both encoders spend their time in native code that releases the
    GIL. On two cores this alone took a cold ``prepare`` of C2–C6 from 39.7 to 35.7 s
    (BENCHMARKS.md). The gene side shows no progress bar, so the two do not interleave.
    """
    from concurrent.futures import ThreadPoolExecutor

    timer = timer or Timer()

    def genes_side() -> PreparedGenes:
        import torch

        # one core for the text encoder (torch runs nothing else here): the image side keeps
        # the other busy, and two torch threads would only compete with it
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with timer("gene texts + embeddings"):
                return prepare_genes(genes, config, cache=cache, progress=False)
        finally:
            torch.set_num_threads(threads)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geneshot-genes") as pool:
        pending = pool.submit(genes_side)
        try:
            prepared = prepare_sections(
                sections, config, cache=cache, progress=progress, timer=timer
            )
        except BaseException:
            pending.cancel()
            raise
        return prepared, pending.result()
