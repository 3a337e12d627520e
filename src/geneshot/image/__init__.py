"""Slide images: windowed reading, tissue tiles, spot patches, stain normalisation and augmentation."""

from geneshot.image._context import context_features, ring_operators, spot_xy_um
from geneshot.image._patches import patch_window_px, spot_patches
from geneshot.image._slide import SlideImage, image_size
from geneshot.image._stain import STAIN_METHODS, StainJitter, StainNormalizer
from geneshot.image._tiles import TISSUE_FRAC, image_mpp, resolve_mpp, tissue_mask, tissue_tiles

__all__ = [
    "STAIN_METHODS",
    "TISSUE_FRAC",
    "SlideImage",
    "StainJitter",
    "StainNormalizer",
    "context_features",
    "image_mpp",
    "image_size",
    "patch_window_px",
    "resolve_mpp",
    "ring_operators",
    "spot_patches",
    "spot_xy_um",
    "tissue_mask",
    "tissue_tiles",
]
