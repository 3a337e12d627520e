"""The data contract saved with every trained model and checked on new data.

Every path that prepares new data for a trained model (evaluate, predict, the benchmark)
builds its :class:`~geneshot.prepare.FeatureConfig` from ``contract.features``, so the
encoders and patch settings match by construction; :meth:`DataContract.check_arrays`
catches arrays prepared some other way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from geneshot.errors import InputError


@dataclass
class DataContract:
    """What a trained model expects of its inputs.

    Attributes
    ----------
    features
        :class:`~geneshot.prepare.FeatureConfig` as a dict (encoders, patch size, nuclei).
    image_dim, nuclei_shape, text_dim
        Input dimensions the weights were trained on.
    target
        :class:`~geneshot.data.TargetTransform` state (convention + training statistics).
    seen_genes
        Genes the model was trained on.
    unseen_genes
        Genes held out of training (the zero-shot test set), possibly empty.
    feature_mean, feature_std
        Standardisation of image features, fitted on training spots.
    reference
        :meth:`geneshot.genes.Reference.describe` of the reference expression matrix the
        model was fit with (hash, rows, genes, samples), or ``None``.
    """

    features: dict
    image_dim: int
    nuclei_shape: list[int] | None
    text_dim: int
    target: dict
    seen_genes: list[str]
    unseen_genes: list[str] = field(default_factory=list)
    feature_mean: list[float] = field(default_factory=list)
    feature_std: list[float] = field(default_factory=list)
    targets: dict = field(default_factory=dict)  # every convention's training statistics, by kind
    train_sections: list[str] = field(default_factory=list)
    reference: dict | None = None

    def to_dict(self) -> dict:
        """JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataContract:
        """Inverse of :meth:`to_dict`; feature keys newer than the run read as off."""
        from geneshot.prepare import FEATURES_OFF

        return cls(**{**d, "features": {**FEATURES_OFF, **d["features"]}})

    def check_arrays(self, image: np.ndarray, nuclei: np.ndarray | None, text_dim: int, source: str | None = None) -> None:
        """Raise unless array shapes match the trained weights."""
        if image.shape[1] != self.image_dim:
            raise InputError(source, f"image features have {image.shape[1]} dimensions, the model expects {self.image_dim}", f"use image encoder {self.features.get('image_encoder')!r}")
        if self.nuclei_shape is not None and (nuclei is None or list(nuclei.shape[1:]) != self.nuclei_shape):
            got = None if nuclei is None else list(nuclei.shape[1:])
            raise InputError(source, f"nuclei maps have shape {got}, the model expects {self.nuclei_shape}", "prepare with --nuclei and the same nuclei settings")
        if text_dim != self.text_dim:
            raise InputError(source, f"gene text embeddings have {text_dim} dimensions, the model expects {self.text_dim}", f"use text encoder {self.features.get('text_encoder')!r}")
