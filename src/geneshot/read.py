"""Public readers (``geneshot.read.her2st(...)``, ``geneshot.read.dataset(...)``)."""

from geneshot.io import read_dataset as dataset
from geneshot.io import read_her2st_section as her2st

__all__ = ["dataset", "her2st"]
