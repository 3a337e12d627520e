"""Public readers (``geneshot.read.her2st(...)``, ``geneshot.read.dataset(...)``)."""

from geneshot.io import read_anndata as anndata
from geneshot.io import read_cscc_section as cscc_section
from geneshot.io import read_dataset as dataset
from geneshot.io import read_her2st_section as her2st
from geneshot.io import read_hest as hest
from geneshot.io import read_visium as visium

__all__ = ["dataset", "her2st", "anndata", "cscc_section", "hest", "visium"]
