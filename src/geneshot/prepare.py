"""``prepare``: patches -> image features -> nuclei maps -> gene texts -> text embeddings.

Every step is cached on disk keyed by its inputs, so a second run only loads arrays.
The result, :class:`Prepared`, is what the trainer, evaluator and predictor consume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np

from geneshot._constants import DEFAULT_PATCH_PX, DEFAULT_PATCH_UM, Key
from geneshot.cache import Cache, hash_parts
from geneshot.io._section import section_id, section_meta

log = logging.getLogger(__name__)

NUCLEI_VERSION = "nuclei-v1"  # bump when segmentation or maps change
IMAGE_FEATURES_VERSION = "image-features-v1"


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
    """

    adata: ad.AnnData
    image: np.ndarray
    nuclei: np.ndarray | None = None
    nuclei_summary: np.ndarray | None = None

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
    """How per-spot inputs are made (saved with models as part of their data contract)."""

    image_encoder: str = "effnet-lite0"
    tta: bool = False
    nuclei: bool = True
    nuclei_backend: str = "skimage"
    patch_um: float = DEFAULT_PATCH_UM
    patch_px: int = DEFAULT_PATCH_PX
    stain: str | None = None
    text_encoder: str = "minilm"
    gene_text_source: str | None = None  # None = shipped knowledge base; else a JSON/TSV file

    def to_dict(self) -> dict:
        """Plain dict (for configs and checkpoints)."""
        return dict(self.__dict__)


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
) -> list[PreparedSection]:
    """Patches, image features and nuclei maps for each section (cached).

    Reads ``obsm["spatial"]`` and ``uns["spatial"][section]["metadata"]``; writes nothing
    into the AnnData.
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
    encoder = None
    out = []
    for a in sections:
        with timer("patches"):
            pt = spot_patches(a, size_um=config.patch_um, out_px=config.patch_px, stain=stain, stain_key=stain_key, cache=cache, progress=progress)
        with timer("image features"):
            key_parts = {"patches": hash_parts(pt["patches"][:, ::8, ::8]), "n": len(pt["patches"])}
            parts = {"v": IMAGE_FEATURES_VERSION, "encoder": config.image_encoder, "tta": config.tta, **key_parts}

            def embed(pt=pt):
                nonlocal encoder
                # the encoder is built only on a cache miss (loading it costs seconds)
                encoder = encoder or create_image_encoder(config.image_encoder, cache=cache)
                return {"features": encoder.embed(pt["patches"], tta=config.tta, progress=progress)}

            feats = cache.arrays("image-features", parts, embed)["features"]
        maps = summary = None
        if config.nuclei:
            with timer("nuclei"):
                nz = _nuclei_cached(pt, config, cache, progress, key_parts)
                maps, summary = nz["maps"], nz["summary"]
        out.append(PreparedSection(adata=a, image=np.asarray(feats, np.float32), nuclei=maps, nuclei_summary=summary))
        log.info("%s: %d spots prepared (%s features%s)", section_id(a), a.n_obs, config.image_encoder, ", nuclei maps" if config.nuclei else "")
    return out


def _nuclei_cached(pt: dict, config: FeatureConfig, cache: Cache, progress: bool, key_parts: dict) -> dict:
    from geneshot.nuclei import segment_patches

    mpp = config.patch_um / config.patch_px
    parts = {"v": NUCLEI_VERSION, "backend": config.nuclei_backend, "mpp": mpp, **key_parts}

    def compute():
        res = segment_patches(pt["patches"], valid=pt["valid"], mpp=mpp, backend=config.nuclei_backend, progress=progress)
        return {"maps": np.asarray(res.maps, np.float16), "summary": np.asarray(res.summary, np.float32)}

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
    from geneshot.encoders import create_text_encoder, encode_gene_texts
    from geneshot.genes import describe_genes

    config = config or FeatureConfig()
    cache = cache or Cache()
    texts, report = describe_genes(list(symbols), source=config.gene_text_source, missing=missing)
    if extra_descriptions:
        texts.update(extra_descriptions)
    keep = [s for s in symbols if s in texts]
    # encode_gene_texts caches the whole set and each text; the model loads only on a miss
    syms, emb = encode_gene_texts(create_text_encoder(config.text_encoder), {s: texts[s] for s in keep}, cache, progress=progress)
    return PreparedGenes(
        symbols=syms,
        texts={s: texts[s] for s in syms},
        pooled=emb.pooled,
        tokens=emb.tokens,
        mask=emb.mask,
        encoder=config.text_encoder,
        report=report if isinstance(report, dict) else {"report": str(report)},
    )
