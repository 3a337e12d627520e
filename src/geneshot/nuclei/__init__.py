"""Nuclei segmentation and nuclei-distribution maps (the NDAIFE nuclei-branch input)."""

from geneshot.nuclei._api import NucleiResult, segment_patch, segment_patches
from geneshot.nuclei._backends import (
    NUCLEI_BACKENDS,
    CellposeBackend,
    NucleiBackend,
    SkimageBackend,
    StarDistBackend,
    get_nuclei_backend,
)
from geneshot.nuclei._features import (
    H_REF,
    MAP_CHANNELS,
    SUMMARY_NAMES,
    distribution_map,
    nuclei_table,
    nucleus_moments,
    summary_vector,
)
from geneshot.nuclei._segment import SkimageParams, haematoxylin, segment_skimage

__all__ = [
    "H_REF",
    "MAP_CHANNELS",
    "NUCLEI_BACKENDS",
    "SUMMARY_NAMES",
    "CellposeBackend",
    "NucleiBackend",
    "NucleiResult",
    "SkimageBackend",
    "SkimageParams",
    "StarDistBackend",
    "distribution_map",
    "get_nuclei_backend",
    "haematoxylin",
    "nuclei_table",
    "nucleus_moments",
    "segment_patch",
    "segment_patches",
    "segment_skimage",
    "summary_vector",
]
