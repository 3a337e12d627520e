"""Gene knowledge base and description builders.

- :func:`load_knowledge` the shipped table (NCBI gene names, GO terms, Pfam; see
  ``resources/GENE_KNOWLEDGE_SOURCES.md``)
- :func:`resolve_symbols` count-table gene names -> current symbols (aliases, old names)
- :func:`build_description` / :func:`describe_genes` readable texts for text encoders
- :func:`describe_with_llm` texts from any OpenAI-compatible chat endpoint (cached)
- :func:`locus_kernel` how close two genes lie in the genome (shared arm, region, band)
- :func:`read_reference` / :func:`reference_from_sections` an expression atlas as gene
  knowledge; :func:`gene_axes` its low-rank summary around the seen genes;
  :func:`coexpression_vectors` its co-expression as gene vectors (a gene kernel);
  :func:`permute_reference` its gene labels shuffled, the reference-assisted models' control
"""

from geneshot.genes._coexpression import (
    N_COEXPRESSION_AXES,
    CoexpressionVectors,
    coexpression_vectors,
)
from geneshot.genes._describe import (
    STYLES,
    DescriptionReport,
    build_description,
    describe_genes,
    load_descriptions,
)
from geneshot.genes._knowledge import load_knowledge, resolve_symbol, resolve_symbols
from geneshot.genes._llm import GENE_PROMPT, describe_with_llm
from geneshot.genes._locus import LOCUS_LEVELS, band_levels, locus_kernel
from geneshot.genes._reference import (
    GeneAxes,
    Reference,
    gene_axes,
    gene_positions,
    permute_reference,
    read_reference,
    reference_from_sections,
    write_reference_h5ad,
)

__all__ = [
    "GENE_PROMPT",
    "LOCUS_LEVELS",
    "N_COEXPRESSION_AXES",
    "STYLES",
    "CoexpressionVectors",
    "DescriptionReport",
    "GeneAxes",
    "Reference",
    "band_levels",
    "build_description",
    "coexpression_vectors",
    "describe_genes",
    "describe_with_llm",
    "gene_axes",
    "gene_positions",
    "load_descriptions",
    "load_knowledge",
    "locus_kernel",
    "permute_reference",
    "read_reference",
    "reference_from_sections",
    "resolve_symbol",
    "resolve_symbols",
    "write_reference_h5ad",
]
