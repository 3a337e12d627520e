"""Base classes: trainable torch modules and closed-form estimators share one prediction contract."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from geneshot.models._inputs import GeneInputs, SlideInputs


class GeneExpressionModule(nn.Module):
    """A model whose prediction is ``encode_spots(slide) @ weights.T + bias``.

    Subclasses implement :meth:`encode_spots` and :meth:`encode_genes`; :meth:`forward` may be
    overridden to share work between the two sides.
    """

    #: name in :data:`geneshot.models.MODELS`, set by :func:`geneshot.models.create_model`.
    name: str = ""
    #: the config the model was built from.
    config: dict

    @property
    def spread_is_uncertainty(self) -> bool:
        """Whether the spread of this model's predictions over training seeds or dropout
        passes measures how uncertain they are (read by :class:`geneshot.train.Ensemble`).

        False for a model whose prediction is a closed form that seeds and dropout barely
        touch: its spread would claim a certainty it does not have.
        """
        return True

    def encode_spots(self, slide: SlideInputs) -> torch.Tensor:
        """Spot embeddings ``(N, D_e)``."""
        raise NotImplementedError

    def encode_genes(
        self, genes: GeneInputs, slide: SlideInputs, context: GeneInputs | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gene weights ``(G, D_e)`` and biases ``(G,)`` for ``genes`` (``context`` is not output)."""
        raise NotImplementedError

    def forward(
        self, slide: SlideInputs, genes: GeneInputs, context: GeneInputs | None = None
    ) -> torch.Tensor:
        """Predicted expression ``(N, G)``."""
        z = self.encode_spots(slide)
        w, b = self.encode_genes(genes, slide, context)
        return z @ w.T + b


class Estimator:
    """A closed-form baseline: ``fit`` on training slides, ``predict`` per slide (NumPy out)."""

    name: str = ""
    config: dict
    #: a closed form fits the same whatever the seed, so members' spread is no uncertainty
    spread_is_uncertainty: bool = False

    def fit(
        self, slides: list[SlideInputs], targets: list[np.ndarray], genes: GeneInputs
    ) -> Estimator:
        """Fit on ``slides`` with ``targets[i]`` of shape ``(N_i, G)`` for the genes in ``genes``."""
        raise NotImplementedError

    def predict(self, slide: SlideInputs, genes: GeneInputs) -> np.ndarray:
        """Predicted expression ``(N, G)`` for ``genes``."""
        raise NotImplementedError
