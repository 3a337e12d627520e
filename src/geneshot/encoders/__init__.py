"""Encoder registries: image encoders (patch -> vector) and text encoders (gene text -> tokens)."""

from geneshot.encoders._text_cache import encode_gene_texts, text_hash
from geneshot.encoders.image import IMAGE_ENCODERS, create_image_encoder
from geneshot.encoders.text import TEXT_ENCODERS, create_text_encoder

__all__ = [
    "IMAGE_ENCODERS",
    "TEXT_ENCODERS",
    "create_image_encoder",
    "create_text_encoder",
    "encode_gene_texts",
    "text_hash",
]
