"""timm-style registry of named models: torch modules and closed-form estimators."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from geneshot.errors import InputError
from geneshot.genes import N_COEXPRESSION_AXES
from geneshot.models._align_st import AlignST
from geneshot.models._align_st_config import ALIGN_ST_DEFAULTS
from geneshot.models._base import Estimator, GeneExpressionModule
from geneshot.models._estimators import (
    DepthEstimator,
    GeneKernelEstimator,
    RidgeEstimator,
    TextKNNEstimator,
)
from geneshot.models._reference import RefImputeEstimator
from geneshot.models._sgn import SGN, SGN_DEFAULTS


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes
    ----------
    name
        Registry key.
    kind
        ``"torch"`` (a :class:`GeneExpressionModule` the trainer optimises) or ``"estimator"``
        (an :class:`Estimator` with ``fit``/``predict``).
    factory
        Callable taking the full config as keyword arguments.
    defaults
        Default config; :func:`create_model` overrides it with the given keys.
    description
        One line for ``list_models``/CLI help.
    zero_shot, supervised
        Settings the model supports (zero-shot = predicting genes never seen in training).
    needs_reference
        The model reads a reference expression matrix (:class:`geneshot.genes.Reference`)
        at fit: training without one is an error.
    base
        A registered estimator this torch model is stacked on: the trainer fits the base,
        then the module on the base's cross-fitted residuals (``geneshot.train._composite``).
    """

    name: str
    kind: Literal["torch", "estimator"]
    factory: Callable[..., GeneExpressionModule | Estimator]
    defaults: dict = field(default_factory=dict)
    description: str = ""
    zero_shot: bool = True
    supervised: bool = True
    needs_reference: bool = False
    base: str | None = None


def _align_st_on_base(base_config: dict | None = None, **config) -> AlignST:
    """ALIGN-ST for a stacked model; ``base_config`` configures the base, not this module."""
    return AlignST(**config)


# The paper's configuration: every stage on, the dot-product head. Stacked models learn a
# residual with it, as measured (BENCHMARKS.md).
_PAPER = {
    **ALIGN_ST_DEFAULTS,
    "head": "dot",
    **dict.fromkeys(("use_ndaife", "use_text_prompts", "use_visual_prompts", "use_asig", "use_spot_graph"), True),
}
_ESTIMATOR_DEFAULTS = {"n_components": 256, "alphas": None, "use_nuclei": False}
# gene-kernel's gene CV (grids None = models._gene_cv's), shared with gene-kernel+ref
_GENE_KERNEL_DEFAULTS = {
    **_ESTIMATOR_DEFAULTS,
    "lambdas": None,
    "gammas": None,
    "locus_weights": None,
    "cv_spots": 600,
    "cv_top": 400,
    "cv_fits": "in-sample",
    "common_fit": "mean",
}

# gene-kernel+ref's defaults, shared with its control permuted-reference
_GENE_KERNEL_REF = {
    **_GENE_KERNEL_DEFAULTS,
    "use_reference": True,
    "reference_weights": None,
    "coexp_axes": N_COEXPRESSION_AXES,
    # (2, 0.8) by the nested CV of gene-kernel's factor (session 12, loss-averse;
    # choose_features.py --what reference-departure): the surface is flat along
    # its ridge (0.2607 at (1, 0), 0.2619 here) and each outer fold voted for
    # another cell, so the pick rule's tie-break (the inner mean) decided
    "departure_scale": 2.0,
    "departure_shrink": 0.8,
    # 512 principal components won 4 of 5 outer folds of the nested CV against 128 and 256,
    # and the inner mean (session 17; loss-averse 0.2617 / 0.2620 / 0.2633;
    # choose_features.py --what reference-components --criterion loss-averse)
    "n_components": 512,
    "permute_reference": False,
    "permute_seed": 0,
    # the reference's weight is kept only if its gain on the gene CV exceeds one standard
    # error over the scored genes (session 14: a shuffled reference had been taken on +0.001)
    "reference_min_gain_se": 1.0,
}

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "align-st",
            "torch",
            AlignST,
            ALIGN_ST_DEFAULTS,
            "ALIGN-ST, geneshot defaults: kernel head over the seen genes' fits; the paper's stages off (none added 0.005 by nested CV; switches use_ndaife, use_*_prompts, use_asig, use_spot_graph)",
        ),
        ModelSpec(
            "align-st-paper",
            "torch",
            AlignST,
            _PAPER,
            "ALIGN-ST as published: nuclei-aware image features, dual-stream prompted text encoder, gene graph (ASIG), GraphSAGE spots, dot-product head",
        ),
        ModelSpec(
            "align-st+ref",
            "torch",
            _align_st_on_base,
            {**_PAPER, "base_config": {}},
            "Reference-assisted ALIGN-ST: ref-impute as the base, ALIGN-ST trained on what it misses (weight chosen on validation)",
            zero_shot=True,
            supervised=False,
            needs_reference=True,
            base="ref-impute",
        ),
        ModelSpec(
            "align-st+kernel",
            "torch",
            _align_st_on_base,
            {**_PAPER, "base_config": {}},
            "ALIGN-ST stacked on gene-kernel: the closed-form kernel as the base, ALIGN-ST trained on what it misses (weight chosen on validation)",
            zero_shot=True,
            supervised=False,
            base="gene-kernel",
        ),
        ModelSpec(
            "sgn",
            "torch",
            SGN,
            SGN_DEFAULTS,
            "SGN (released code): GraphSAGE spots x transformer weight generator over description tokens",
        ),
        ModelSpec(
            "permuted-text",
            "torch",
            AlignST,
            {**ALIGN_ST_DEFAULTS, "permute_text": True},  # the control of `align-st`: same head
            "Control: ALIGN-ST trained with descriptions shuffled among genes (the trainer shuffles)",
            zero_shot=True,
            supervised=False,
        ),
        ModelSpec(
            "ridge",
            "estimator",
            RidgeEstimator,
            dict(_ESTIMATOR_DEFAULTS),
            "Supervised baseline: PCA + ridge (GCV alpha) per gene on image features",
            zero_shot=False,
            supervised=True,
        ),
        ModelSpec(
            "text-knn",
            "estimator",
            TextKNNEstimator,
            {**_ESTIMATOR_DEFAULTS, "k": 10, "temperature": 0.1},
            "Zero-shot baseline: ridge on seen genes, unseen gene = softmax-weighted mix of its k nearest seen genes (cosine of the gene encoder's pooled vectors)",
            zero_shot=True,
            supervised=False,
        ),
        ModelSpec(
            "gene-kernel",
            "estimator",
            GeneKernelEstimator,
            {
                **_GENE_KERNEL_DEFAULTS,
                # (8, 3.2) won 5 of 5 outer folds of the nested CV under the loss-averse
                # criterion (session 11; loss-averse 0.1839 -> 0.1932, PCC@M 0.2124 -> 0.2086,
                # genes > 0.05 below depth 16.1 % -> 8.5 %; choose_features.py --what
                # departure-scale --criterion loss-averse --select-on gene-kernel)
                "departure_scale": 8.0,
                "departure_shrink": 3.2,
                # 512 principal components won 3 of 5 outer folds of the nested CV against 128
                # and 256 (session 16; loss-averse 0.1928 / 0.1932 / 0.1936; choose_features.py
                # --what components --criterion loss-averse --select-on gene-kernel)
                "n_components": 512,
            },
            "Zero-shot baseline: ridge on seen genes, carried to any gene by kernel ridge over the gene encoder's pooled-vector cosine plus the genes' locus kernel (weights and lambda by gene CV; departure from the common pattern scaled by nested CV)",
            zero_shot=True,
            supervised=False,
        ),
        ModelSpec(
            "gene-kernel+ref",
            "estimator",
            GeneKernelEstimator,
            _GENE_KERNEL_REF,
            "Reference-assisted zero-shot: gene-kernel whose kernel also holds the genes' co-expression in an expression reference (its weight by gene CV, 0 included)",
            zero_shot=True,
            supervised=False,
            needs_reference=True,
        ),
        ModelSpec(
            "permuted-reference",
            "estimator",
            GeneKernelEstimator,
            {**_GENE_KERNEL_REF, "permute_reference": True},
            "Control of gene-kernel+ref: the same model on the reference with its gene labels shuffled among genes of a similar level",
            zero_shot=True,
            supervised=False,
            needs_reference=True,
        ),
        ModelSpec(
            "ref-impute",
            "estimator",
            RefImputeEstimator,
            {
                **_ESTIMATOR_DEFAULTS,
                "k": 30,
                "max_rows": 50_000,
                "shrink": 0.0,
                "permute_reference": False,
                "permute_seed": 0,
            },
            "Reference-assisted zero-shot: image -> a reference's top-k seen-gene axes -> any reference gene by its loadings",
            zero_shot=True,
            supervised=False,
            needs_reference=True,
        ),
        ModelSpec(
            "depth",
            "estimator",
            DepthEstimator,
            dict(_ESTIMATOR_DEFAULTS),
            "Control: ridge to each spot's mean seen-gene expression, the same value for every gene",
            zero_shot=True,
            supervised=True,
        ),
    ]
}


def list_models(setting: Literal["zero-shot", "supervised"] | None = None) -> list[str]:
    """Registered names, optionally only those supporting ``setting``."""
    if setting is None:
        return list(MODELS)
    attr = {"zero-shot": "zero_shot", "supervised": "supervised"}.get(setting)
    if attr is None:
        raise InputError(None, f"unknown setting '{setting}'", "use 'zero-shot' or 'supervised'")
    return [n for n, s in MODELS.items() if getattr(s, attr)]


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise InputError(None, f"unknown model '{name}'", f"use one of {', '.join(MODELS)}")
    return MODELS[name]


def default_config(name: str) -> dict:
    """A copy of the default config of model ``name``."""
    return copy.deepcopy(_spec(name).defaults)


def create_model(name: str, **config) -> GeneExpressionModule | Estimator:
    """Build model ``name`` with its default config overridden by ``config``.

    Raises
    ------
    InputError
        Unknown model or config key.
    """
    spec = _spec(name)
    unknown = sorted(set(config) - set(spec.defaults))
    if unknown:
        raise InputError(
            None,
            f"model '{name}' has no config field(s) {unknown}",
            f"use only {sorted(spec.defaults)}",
        )
    cfg = {**default_config(name), **config}
    model = spec.factory(**cfg)
    model.name = name
    model.config = cfg
    return model
