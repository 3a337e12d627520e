"""Readers: each turns a dataset folder into one validated AnnData per section."""

from geneshot.io import _her2st  # noqa: F401  (registers the dataset)
from geneshot.io._anndata import read_anndata, section_from_matrix
from geneshot.io._archive import extract
from geneshot.io._cscc import list_cscc_sections, read_cscc_section
from geneshot.io._download import fetch_cscc, fetch_dataset, fetch_her2st
from geneshot.io._her2st import read_her2st_section
from geneshot.io._hest import list_hest_samples, read_hest
from geneshot.io._http import download
from geneshot.io._registry import DATASETS, get_dataset, read_dataset, register_dataset
from geneshot.io._section import has_image, make_section, section_id, section_meta
from geneshot.io._spots import read_spots
from geneshot.io._visium import read_visium

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
    "read_anndata",
    "section_from_matrix",
    "list_cscc_sections",
    "read_cscc_section",
    "download",
    "extract",
    "fetch_cscc",
    "fetch_dataset",
    "fetch_her2st",
    "list_hest_samples",
    "read_hest",
    "read_spots",
    "read_visium",
]
