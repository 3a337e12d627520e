"""Encoder registries: image encoders (patch -> vector) and text encoders (gene text -> tokens)."""

from geneshot.encoders.image import IMAGE_ENCODERS, create_image_encoder
from geneshot.encoders.text import TEXT_ENCODERS, create_text_encoder

__all__ = ["IMAGE_ENCODERS", "TEXT_ENCODERS", "create_image_encoder", "create_text_encoder"]
