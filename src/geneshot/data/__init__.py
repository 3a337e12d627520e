"""Genes and targets: universe across sections, selection, normalisation."""

from geneshot.data._genes import (
    align_genes,
    clean_symbol,
    clean_var_names,
    gene_means,
    gene_universe,
    gene_variances,
    load_gene_list,
    select_genes,
)
from geneshot.data._targets import TARGET_KINDS, TargetTransform

__all__ = [
    "TARGET_KINDS",
    "TargetTransform",
    "align_genes",
    "clean_symbol",
    "clean_var_names",
    "gene_means",
    "gene_universe",
    "gene_variances",
    "load_gene_list",
    "select_genes",
]
