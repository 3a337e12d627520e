"""The model and gene inputs of a prediction: a run as an ensemble, genes described and embedded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from geneshot.cache import Cache
from geneshot.errors import InputError
from geneshot.prepare import FeatureConfig, PreparedGenes, prepare_genes


def as_ensemble(run, mc_samples: int = 16):
    """``run`` (folder, model or ensemble) as an :class:`~geneshot.train._ensemble.Ensemble`."""
    from geneshot.train import GeneshotModel
    from geneshot.train._ensemble import Ensemble

    if isinstance(run, Ensemble):
        return run
    if isinstance(run, GeneshotModel):
        return Ensemble([run], mc_samples=mc_samples)
    return Ensemble.load(run, mc_samples=mc_samples)


def prepare_gene_inputs(
    model,
    names: Sequence[str],
    features: FeatureConfig,
    descriptions: Mapping[str, str] | None,
    cache: Cache,
    progress: bool,
) -> PreparedGenes:
    """Descriptions + embeddings of ``names`` and the model's seen genes (the gene-graph context).

    A requested gene that the run never saw, the knowledge base does not describe and the
    user did not describe is an error: a bare symbol is no description.
    """
    from geneshot.genes import describe_genes

    c = model.contract
    names = list(names)
    if not names:
        raise InputError(
            None,
            "no genes to predict",
            "pass --genes A,B,..., --gene-list FILE or --describe GENE=TEXT",
        )
    dup = sorted({g for g in names if names.count(g) > 1})
    if dup:
        raise InputError(
            None, f"genes are requested twice ({', '.join(dup[:5])})", "list each gene once"
        )
    descriptions = dict(descriptions or {})
    known_to_run = set(c.seen_genes) | set(c.unseen_genes)
    ask = [g for g in names if g not in descriptions and g not in known_to_run]
    if ask:
        texts, _ = describe_genes(ask, source=features.gene_text_source, missing="drop")
        unknown = [g for g in ask if g not in texts]
        if unknown:
            raise InputError(
                features.gene_text_source,
                f"{len(unknown)} genes have no description in the knowledge base (e.g. {', '.join(unknown[:5])})",
                f'describe them: --describe "{unknown[0]}=free text about the gene", or check the symbol',
            )
    # the same gene set the evaluator prepares, so predictions match `geneshot evaluate`
    return prepare_genes(
        sorted(set(names) | set(c.seen_genes)),
        features,
        cache=cache,
        progress=progress,
        extra_descriptions=descriptions or None,
    )
