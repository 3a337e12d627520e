"""Models: ALIGN-ST, SGN, baselines and controls behind one registry (pure torch / NumPy, no I/O).

Every torch model maps ``(SlideInputs, GeneInputs[, context GeneInputs])`` to an ``(N, G)``
prediction; every estimator has ``fit(slides, targets, genes)`` and ``predict(slide, genes)``.
"""

from geneshot.models._align_st import ASIG, NDAIFE, PGGP, AlignST
from geneshot.models._align_st_config import ALIGN_ST_DEFAULTS
from geneshot.models._base import Estimator, GeneExpressionModule
from geneshot.models._estimators import (
    DepthEstimator,
    GeneKernelEstimator,
    RidgeEstimator,
    TextKNNEstimator,
)
from geneshot.models._graph import knn_edges, near_edges, spatial_edges, spot_edges
from geneshot.models._inputs import GeneInputs, SlideInputs
from geneshot.models._losses import gene_specific_loss, mse_pcc_loss, pearson_loss
from geneshot.models._reference import RefImputeEstimator
from geneshot.models._registry import MODELS, ModelSpec, create_model, default_config, list_models
from geneshot.models._sgn import SGN, SGN_DEFAULTS

__all__ = [
    "ALIGN_ST_DEFAULTS",
    "ASIG",
    "MODELS",
    "NDAIFE",
    "PGGP",
    "SGN",
    "SGN_DEFAULTS",
    "AlignST",
    "DepthEstimator",
    "Estimator",
    "GeneExpressionModule",
    "GeneInputs",
    "GeneKernelEstimator",
    "ModelSpec",
    "RefImputeEstimator",
    "RidgeEstimator",
    "SlideInputs",
    "TextKNNEstimator",
    "create_model",
    "default_config",
    "knn_edges",
    "list_models",
    "gene_specific_loss",
    "mse_pcc_loss",
    "near_edges",
    "pearson_loss",
    "spatial_edges",
    "spot_edges",
]
