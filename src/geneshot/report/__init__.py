"""Reports: tables, plots and the self-contained HTML benchmark report.

Everything here takes results as data (the aggregate mapping, DataFrames, the resolved config
and the provenance) and never imports :mod:`geneshot.benchmark`.
"""

from geneshot.report._html import figure_to_base64, plot_gene_ranking, write_report
from geneshot.report._outputs import write_benchmark
from geneshot.report._tables import (
    detail_table,
    format_table,
    notes,
    per_gene_path,
    read_per_gene,
    table1,
    write_tables,
)

__all__ = [
    "detail_table",
    "figure_to_base64",
    "format_table",
    "notes",
    "per_gene_path",
    "plot_gene_ranking",
    "read_per_gene",
    "table1",
    "write_benchmark",
    "write_report",
    "write_tables",
]
