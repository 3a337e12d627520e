"""Closed-form baselines and controls: PCA + ridge on frozen image features."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV

from geneshot.errors import InputError
from geneshot.models._base import Estimator
from geneshot.models._inputs import GeneInputs, SlideInputs

_ALPHAS = [float(a) for a in np.logspace(-2, 5, 15)]


def _features(slide: SlideInputs, use_nuclei: bool) -> np.ndarray:
    x = slide.image.detach().cpu().numpy().astype(np.float64)
    if use_nuclei and slide.nuclei is not None:
        # Per-channel mean density: a cheap nuclei summary appended to the image features.
        x = np.hstack([x, slide.nuclei.detach().cpu().flatten(2).mean(2).numpy()])
    return x


def _check_targets(
    slides: list[SlideInputs], targets: list[np.ndarray], n_genes: int
) -> np.ndarray:
    if len(slides) != len(targets) or not slides:
        raise InputError(
            None,
            f"got {len(slides)} slides and {len(targets)} target arrays",
            "pass one (N_i, G) target array per training slide",
        )
    for i, (s, y) in enumerate(zip(slides, targets, strict=True)):
        if np.shape(y) != (s.n_spots, n_genes):
            raise InputError(
                None,
                f"targets[{i}] has shape {np.shape(y)}, expected ({s.n_spots}, {n_genes})",
                "pass targets for every spot and every gene in `genes`, in that order",
            )
    return np.vstack([np.asarray(y, dtype=np.float64) for y in targets])


class _PCARidge(Estimator):
    """PCA (fitted on training spots) then ``RidgeCV`` (alpha by efficient leave-one-out / GCV)."""

    def __init__(
        self,
        n_components: int = 256,
        alphas: list[float] | None = None,
        use_nuclei: bool = False,
        **config,
    ) -> None:
        self.config = {
            "n_components": n_components,
            "alphas": alphas or _ALPHAS,
            "use_nuclei": use_nuclei,
            **config,
        }

    def _fit_xy(self, slides: list[SlideInputs], y: np.ndarray) -> None:
        x = np.vstack([_features(s, self.config["use_nuclei"]) for s in slides])
        k = int(min(self.config["n_components"], x.shape[0], x.shape[1]))
        self.pca_ = PCA(n_components=k, random_state=0).fit(x)
        self.ridge_ = RidgeCV(
            alphas=self.config["alphas"] or _ALPHAS, alpha_per_target=y.ndim == 2
        ).fit(self.pca_.transform(x), y)

    def _predict_fitted(self, slide: SlideInputs) -> np.ndarray:
        if not hasattr(self, "ridge_"):
            raise InputError(
                None,
                f"{type(self).__name__} is not fitted",
                "call fit(slides, targets, genes) first",
            )
        return self.ridge_.predict(self.pca_.transform(_features(slide, self.config["use_nuclei"])))


class RidgeEstimator(_PCARidge):
    """Supervised PCA + ridge: predicts only the genes it was fit on (matched by text embedding)."""

    def fit(
        self, slides: list[SlideInputs], targets: list[np.ndarray], genes: GeneInputs
    ) -> RidgeEstimator:
        """Fit one ridge per gene in ``genes``."""
        self._fit_xy(slides, _check_targets(slides, targets, genes.n_genes))
        self.pooled_ = genes.pooled.detach().cpu().numpy().astype(np.float64)
        return self

    def _columns(self, genes: GeneInputs) -> np.ndarray:
        """Column of each requested gene in the fit set, found by its pooled text embedding."""
        q = genes.pooled.detach().cpu().numpy().astype(np.float64)
        ref = self.pooled_
        if q.shape == ref.shape and np.allclose(q, ref, atol=1e-6):
            return np.arange(ref.shape[0])
        if q.shape[1] != ref.shape[1]:
            raise InputError(
                None,
                f"GeneInputs.pooled has width {q.shape[1]}, the ridge was fit on width {ref.shape[1]}",
                "use the same text encoder as at fit",
            )
        same = np.all(np.isclose(q[:, None, :], ref[None, :, :], atol=1e-6), axis=2)  # (G, G_fit)
        unseen = np.flatnonzero(~same.any(1))
        if unseen.size:
            raise InputError(
                None,
                f"ridge cannot predict genes it was not fit on: {unseen.size} of {q.shape[0]} requested genes (positions {unseen[:5].tolist()}...) are unseen",
                "ridge is supervised-only; use 'text-knn' or a torch model for zero-shot genes",
            )
        if (same.sum(1) > 1).any():
            raise InputError(
                None,
                "two fitted genes share one text embedding, so a subset cannot be matched",
                "predict with exactly the gene set (and order) used at fit",
            )
        return same.argmax(1)

    def predict(self, slide: SlideInputs, genes: GeneInputs) -> np.ndarray:
        """Predictions ``(N, G)`` for fitted genes; raises :class:`InputError` on unseen genes."""
        return self._predict_fitted(slide)[:, self._columns(genes)]


class TextKNNEstimator(_PCARidge):
    """Zero-shot baseline: ridge on seen genes; an unseen gene mixes its ``k`` text-nearest seen genes.

    Weights are ``softmax(cos / temperature)`` over the ``k`` most cosine-similar seen genes
    (``pooled`` embeddings).
    """

    def __init__(self, k: int = 10, temperature: float = 0.1, **config) -> None:
        super().__init__(**config)
        self.config.update(k=k, temperature=temperature)

    def fit(
        self, slides: list[SlideInputs], targets: list[np.ndarray], genes: GeneInputs
    ) -> TextKNNEstimator:
        """Fit ridge for the seen ``genes`` and store their pooled embeddings."""
        self._fit_xy(slides, _check_targets(slides, targets, genes.n_genes))
        p = genes.pooled.detach().cpu().numpy().astype(np.float64)
        self.pooled_ = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        return self

    def mixing(self, genes: GeneInputs) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour indices ``(G, k)`` into the seen genes and their weights ``(G, k)``."""
        q = genes.pooled.detach().cpu().numpy().astype(np.float64)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        sim = q @ self.pooled_.T
        k = min(int(self.config["k"]), sim.shape[1])
        idx = np.argsort(-sim, axis=1)[:, :k]
        s = np.take_along_axis(sim, idx, 1) / self.config["temperature"]
        w = np.exp(s - s.max(1, keepdims=True))
        return idx, w / w.sum(1, keepdims=True)

    def predict(self, slide: SlideInputs, genes: GeneInputs) -> np.ndarray:
        """Predictions ``(N, G)`` for any genes, seen or not."""
        seen = self._predict_fitted(slide)
        idx, w = self.mixing(genes)
        return np.einsum("ngk,gk->ng", seen[:, idx], w)


class DepthEstimator(_PCARidge):
    """Zero-shot control: predicts each spot's mean target over the seen genes for every gene."""

    def fit(
        self, slides: list[SlideInputs], targets: list[np.ndarray], genes: GeneInputs
    ) -> DepthEstimator:
        """Fit ridge from image features to the per-spot mean over ``genes``."""
        self._fit_xy(slides, _check_targets(slides, targets, genes.n_genes).mean(1))
        return self

    def predict(self, slide: SlideInputs, genes: GeneInputs) -> np.ndarray:
        """The same per-spot value for every gene, ``(N, G)``."""
        return np.repeat(self._predict_fitted(slide)[:, None], genes.n_genes, axis=1)
