"""End-to-end steps shared by the CLI, the benchmark and the predictor.

read + align sections -> prepare inputs -> split genes on TRAINING data -> train -> evaluate.
Each function takes plain objects and can be called alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from geneshot.cache import Cache
from geneshot.data import TargetTransform, gene_means, gene_universe
from geneshot.errors import InputError
from geneshot.io import read_dataset
from geneshot.prepare import (
    FeatureConfig,
    PreparedGenes,
    PreparedSection,
    prepare_genes,
    prepare_sections,
)

log = logging.getLogger(__name__)


@dataclass
class GeneSplit:
    """Seen (training) and unseen (zero-shot test) genes; seen ordered by training mean."""

    seen: list[str]
    unseen: list[str]

    def to_dict(self) -> dict:
        """Plain dict."""
        return {"seen": self.seen, "unseen": self.unseen}


def load_sections(
    dataset: str,
    data_dir,
    sections: Sequence[str],
    features: FeatureConfig,
    *,
    cache: Cache,
    progress: bool = True,
    universe: Sequence[str] | None = None,
) -> list[PreparedSection]:
    """Read, align to one gene universe (union over these sections unless given) and prepare."""
    secs = read_dataset(dataset, data_dir, list(sections), require_image=True)
    if universe is None:
        secs = gene_universe(secs, "union")
    else:
        from geneshot.data import align_genes, clean_var_names

        secs = [align_genes(clean_var_names(a), list(universe)) for a in secs]
    from geneshot.train._distributed import rank_world, sharded

    # under torchrun each process fills the cache for its shard first; then all read everything
    sharded(secs, lambda part: prepare_sections(part, features, cache=cache, progress=progress))
    return prepare_sections(secs, features, cache=cache, progress=progress and rank_world()[0] == 0)


def split_genes(
    train: Sequence[PreparedSection],
    *,
    n_unseen: int = 250,
    seen_pool: int = 2000,
    unseen: Sequence[str] | None = None,
    described: set[str] | None = None,
) -> GeneSplit:
    """SGN's gene split computed on TRAINING sections only.

    The ``n_unseen`` genes with the highest mean raw count are unseen (unless ``unseen`` is
    given); the seen genes are the next ``seen_pool`` most expressed genes. SGN trains on
    all remaining genes (~15,000); most of them are almost always zero in legacy ST spots,
    so geneshot keeps the most expressed ones (a measured choice, see BENCHMARKS.md).

    ``described`` (genes that have a text description) drops the seen genes outside it
    AFTER the pool is taken, without refilling it, and never changes the unseen genes: the
    test genes depend on expression alone, whatever text source is used. Use
    :func:`split_and_describe` to split and describe in one step.
    """
    means = gene_means([s.adata for s in train])
    order = sorted(means.index, key=lambda g: (-means[g], g))
    if unseen is None:
        unseen = order[:n_unseen]
    unseen = list(unseen)
    missing = [g for g in unseen if g not in means.index]
    if missing:
        raise InputError(None, f"{len(missing)} unseen genes are not measured (e.g. {missing[:3]})", "give genes present in the count tables")
    uset = set(unseen)
    seen = [g for g in order if g not in uset and means[g] > 0][:seen_pool]
    if described is not None:
        seen = [g for g in seen if g in described]
    return GeneSplit(seen=seen, unseen=unseen)


def genes_for(split: GeneSplit, features: FeatureConfig, *, cache: Cache, progress: bool = True) -> PreparedGenes:
    """Descriptions + embeddings of every gene of a split."""
    return prepare_genes(split.unseen + split.seen, features, cache=cache, progress=progress)


def split_and_describe(
    train: Sequence[PreparedSection],
    features: FeatureConfig,
    *,
    cache: Cache,
    n_unseen: int = 250,
    seen_pool: int = 2000,
    unseen: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[GeneSplit, PreparedGenes]:
    """Split genes on TRAINING sections and describe them: the one rule for every caller.

    Seen genes without a description are dropped (see :func:`split_genes`); the unseen
    genes are the split's whatever their texts. Returns the split and the genes' texts and
    embeddings (which cover every gene of the returned split that has a description).
    """
    split = split_genes(train, n_unseen=n_unseen, seen_pool=seen_pool, unseen=unseen)
    genes = genes_for(split, features, cache=cache, progress=progress)
    split = split_genes(
        train, n_unseen=n_unseen, seen_pool=seen_pool, unseen=split.unseen, described=set(genes.symbols)
    )
    return split, genes


def train_model(
    model_name: str,
    setting: str,
    train: Sequence[PreparedSection],
    genes: PreparedGenes,
    split: GeneSplit,
    target: TargetTransform,
    features: FeatureConfig,
    *,
    train_config: dict | None = None,
    model_config: dict | None = None,
    accelerator: str = "cpu",
    progress: bool = True,
    reference=None,
    cache: Cache | None = None,
):
    """Build and train a :class:`~geneshot.train.GeneshotModel`: the one training path.

    The CLI, the benchmark and the scripts all train through here, so the rule of what a
    setting trains on lives in one place: zero-shot fits the seen genes (the unseen ones are
    recorded in the contract and never touched); supervised fits the unseen genes themselves
    (the ceiling), on the same training sections. ``reference`` (a
    :class:`geneshot.genes.Reference`) is passed to models that need one; ``cache`` holds
    what training derives from its inputs (a fine-tuned image encoder).
    """
    from geneshot.train import GeneshotModel

    model = GeneshotModel(model_name, setting, dict(train_config or {}), **dict(model_config or {}))
    fit_genes = {"seen_genes": split.seen, "unseen_genes": split.unseen} if setting == "zero-shot" else {"seen_genes": split.unseen}
    return model.train(
        list(train), genes, **fit_genes, target=target, features=features.to_dict(),
        accelerator=accelerator, progress=progress, reference=reference, cache=cache,
    )


def evaluate(
    model,
    sections: Sequence[PreparedSection],
    genes: PreparedGenes,
    names: Sequence[str],
    *,
    target: TargetTransform | None = None,
    predictions: Sequence[np.ndarray] | None = None,
) -> tuple[dict, pd.DataFrame, list[np.ndarray], list[np.ndarray]]:
    """Metrics of ``model`` on ``sections`` for genes ``names``.

    Targets use the model's own transform (fitted on its training sections) unless
    ``target`` is given. Returns (summary, per-gene table, targets, predictions).
    """
    from geneshot.metrics import evaluate_predictions

    target = target or model.target
    ys = [target.transform(s.adata, list(names)) for s in sections]
    preds = list(predictions) if predictions is not None else [model.predict(s, genes, names) for s in sections]
    sec_ids = np.concatenate([[s.name] * s.adata.n_obs for s in sections])
    summary, per_gene = evaluate_predictions(np.concatenate(ys), np.concatenate(preds), list(names), sec_ids)
    return summary, per_gene, ys, preds
