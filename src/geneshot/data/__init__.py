"""Genes and targets: universe across sections, selection, normalisation."""

from geneshot.data._gene_splits import gene_split_given, gene_split_random_kfold, gene_split_sgn
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
from geneshot.data._splits import (
    LEGACY_HER2ST_32,
    default_split,
    leave_one_section_out,
    legacy_loocv_32,
    patient_kfold,
    read_split,
    split_id,
    validate_split,
    validation_split,
    validation_spot_mask,
    write_split,
)
from geneshot.data._targets import TARGET_KINDS, TargetTransform

__all__ = [
    "LEGACY_HER2ST_32",
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
    # split protocols
    "default_split",
    "gene_split_given",
    "gene_split_random_kfold",
    "gene_split_sgn",
    "leave_one_section_out",
    "legacy_loocv_32",
    "patient_kfold",
    "read_split",
    "split_id",
    "validate_split",
    "validation_split",
    "validation_spot_mask",
    "write_split",
]
