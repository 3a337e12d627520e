"""Reports: plots and the self-contained HTML benchmark report."""

from geneshot.report._html import figure_to_base64, plot_gene_ranking, write_report

__all__ = ["figure_to_base64", "plot_gene_ranking", "write_report"]
