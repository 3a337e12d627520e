"""Slide images: windowed reading, spot patches, stain normalisation."""

from geneshot.image._patches import patch_window_px, spot_patches
from geneshot.image._slide import SlideImage, image_size
from geneshot.image._stain import STAIN_METHODS, StainNormalizer

__all__ = ["STAIN_METHODS", "SlideImage", "StainNormalizer", "image_size", "patch_window_px", "spot_patches"]
