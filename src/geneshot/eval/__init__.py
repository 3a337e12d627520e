"""Evaluation: metrics, PCC@H gene subsets, bootstrap intervals, paired tests and protocols.

Pure functions on numpy / pandas inputs; no model code. See paper-notes §1.1 for the
metric definitions and §2.7 for the cross-validation protocol.
"""

from geneshot.eval._metrics import (
    HPG_NOTE,
    NAN_POLICIES,
    GeneSubset,
    bootstrap_ci,
    bootstrap_ci_hierarchical,
    evaluate_predictions,
    format_table,
    hpg_select,
    mae,
    mse,
    paired_test,
    pcc_at,
    per_gene_pearson,
    per_gene_spearman,
    per_section_pearson,
    summarise,
    top_expressed,
    top_variable,
)
from geneshot.eval._protocols import (
    LEGACY_HER2ST_32,
    default_split,
    gene_split_given,
    gene_split_random_kfold,
    gene_split_sgn,
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

__all__ = [
    "HPG_NOTE",
    "LEGACY_HER2ST_32",
    "NAN_POLICIES",
    "GeneSubset",
    "bootstrap_ci",
    "bootstrap_ci_hierarchical",
    "default_split",
    "evaluate_predictions",
    "format_table",
    "gene_split_given",
    "gene_split_random_kfold",
    "gene_split_sgn",
    "hpg_select",
    "leave_one_section_out",
    "legacy_loocv_32",
    "mae",
    "mse",
    "paired_test",
    "patient_kfold",
    "pcc_at",
    "per_gene_pearson",
    "per_gene_spearman",
    "per_section_pearson",
    "read_split",
    "split_id",
    "summarise",
    "top_expressed",
    "top_variable",
    "validate_split",
    "validation_split",
    "validation_spot_mask",
    "write_split",
]

from geneshot.eval._benchmark import (  # noqa: E402
    DEFAULT_CONFIG,
    BenchmarkResult,
    aggregate,
    resolve_config,
    run_benchmark,
)

__all__ += ["DEFAULT_CONFIG", "BenchmarkResult", "aggregate", "resolve_config", "run_benchmark"]
