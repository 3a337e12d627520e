"""Slide images: windowed reading, spot patches, stain normalisation, tissue tiling."""

from geneshot.image._slide import SlideImage, image_size

__all__ = ["SlideImage", "image_size"]
