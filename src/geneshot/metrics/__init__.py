"""Metrics: correlations, PCC@H gene subsets, bootstrap intervals and paired tests.

A leaf of the package: pure functions of numpy / pandas inputs (no model code, no I/O); it
imports nothing from geneshot but :mod:`geneshot.errors`. See paper-notes §1.1 for the
metric definitions.
"""

from geneshot.metrics._control import MISS_MARGIN, loss_averse_score, miss_share, n_misses
from geneshot.metrics._correlation import (
    NAN_POLICIES,
    NanPolicy,
    mae,
    mse,
    per_gene_pearson,
    per_gene_spearman,
    per_section_pearson,
    summarise,
)
from geneshot.metrics._evaluate import evaluate_predictions
from geneshot.metrics._maps import departure, map_similarity
from geneshot.metrics._stats import bootstrap_ci, bootstrap_ci_hierarchical, paired_test
from geneshot.metrics._subsets import (
    HPG_NOTE,
    GeneSubset,
    hpg_select,
    pcc_at,
    top_expressed,
    top_variable,
)

__all__ = [
    "HPG_NOTE",
    "MISS_MARGIN",
    "NAN_POLICIES",
    "GeneSubset",
    "NanPolicy",
    "bootstrap_ci",
    "bootstrap_ci_hierarchical",
    "departure",
    "evaluate_predictions",
    "hpg_select",
    "loss_averse_score",
    "mae",
    "map_similarity",
    "miss_share",
    "n_misses",
    "mse",
    "paired_test",
    "pcc_at",
    "per_gene_pearson",
    "per_gene_spearman",
    "per_section_pearson",
    "summarise",
    "top_expressed",
    "top_variable",
]
