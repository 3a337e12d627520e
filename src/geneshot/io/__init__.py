"""Readers: each turns a dataset folder into one validated AnnData per section."""

from geneshot.io import _her2st  # noqa: F401  (registers the dataset)
from geneshot.io._her2st import read_her2st_section
from geneshot.io._registry import DATASETS, get_dataset, read_dataset, register_dataset
from geneshot.io._section import has_image, make_section, section_id, section_meta

__all__ = [
    "DATASETS",
    "get_dataset",
    "has_image",
    "make_section",
    "read_dataset",
    "read_her2st_section",
    "register_dataset",
    "section_id",
    "section_meta",
]
