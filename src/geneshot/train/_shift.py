"""How far a new slide's image features lie from the training slides', and what to do about it.

A model trained on one patient meets another patient's stain, scanner and morphology. What
transfers then is mostly the common per-spot pattern (how much tissue, how many cells), not the
gene-specific maps learned on the training patient. So geneshot measures the shift from the
image features alone — never from expression — and leans toward the common pattern as it grows.

Shift ratio
    Image features are standardised with the training statistics and projected on the 50
    whitened principal components of the training spots. For each spot of the new slide, the
    mean distance to its 5 nearest training spots; the ratio is the median of that over the
    slide's spots divided by the same median for training spots, where each training spot's
    neighbours are taken from the *other* training sections (so a new section of a training
    patient scores about 1). Held-out sections of HER2+ patient C score 0.88–0.99 against
    the other C sections; a section of another patient scores about 1.35.

Shrinkage
    ``weight = clip((ratio - 1.05) / (1.35 - 1.05), 0, 1)``: no change up to 1.05 (a new
    section of a training patient, with room for section-to-section noise), full shrinkage
    at 1.35 (another patient, where every gene-specific route measured so far fell below the
    depth control). Each gene's prediction moves toward the common pattern ``m(spot)`` (a
    ridge fitted at training time from image features to each spot's mean target over the
    seen genes), which is what the depth control predicts for every gene: the difference is
    scaled by ``1 - weight``. The two
    edges come from the two measurements above, not from tuning on a test section; with
    every imaged section here from one patient they cannot be tuned honestly, which is why
    the rule is this simple (see BENCHMARKS.md, "Shift").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geneshot._memo import fitted_pca

N_COMPONENTS = 50
N_NEIGHBOURS = 5
MAX_POINTS = 4000
SHRINK_START = 1.05
SHRINK_FULL = 1.35


@dataclass
class ShiftReference:
    """Training-side statistics for :func:`shift_ratio` (stored in the run folder)."""

    mean: np.ndarray  # (D,) of the standardised features
    projection: np.ndarray  # (D, k) whitened principal axes
    points: np.ndarray  # (m, k) training spots in the whitened space
    baseline: float  # median 5-NN distance of training spots to other training sections

    def to_arrays(self, prefix: str = "shift_") -> dict[str, np.ndarray]:
        """Flat arrays for an ``.npz``."""
        return {
            f"{prefix}mean": self.mean.astype(np.float32),
            f"{prefix}projection": self.projection.astype(np.float32),
            f"{prefix}points": self.points.astype(np.float32),
            f"{prefix}baseline": np.float64(self.baseline),
        }

    @classmethod
    def from_arrays(cls, z, prefix: str = "shift_") -> ShiftReference:
        """Inverse of :meth:`to_arrays`."""
        return cls(
            np.asarray(z[f"{prefix}mean"], np.float64),
            np.asarray(z[f"{prefix}projection"], np.float64),
            np.asarray(z[f"{prefix}points"], np.float64),
            float(z[f"{prefix}baseline"]),
        )

    def embed(self, features: np.ndarray) -> np.ndarray:
        """Standardised features -> whitened principal coordinates."""
        return (np.asarray(features, np.float64) - self.mean) @ self.projection


def _median_knn(query: np.ndarray, points: np.ndarray, k: int) -> float:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(points))
    dist, _ = NearestNeighbors(n_neighbors=k).fit(points).kneighbors(query)
    return float(np.median(dist.mean(1)))


def fit_shift(sections: Sequence[np.ndarray], seed: int = 0) -> ShiftReference | None:
    """Shift statistics of the (standardised) training features, one array per section.

    Returns None with a single training section: the leave-own-section-out baseline needs
    two.
    """
    if len(sections) < 2:
        return None
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.asarray(s, np.float64) for s in sections])
    owner = np.concatenate([np.full(len(s), i) for i, s in enumerate(sections)])
    k = int(min(N_COMPONENTS, x.shape[0] - 1, x.shape[1]))
    pca = fitted_pca(x, k, seed)  # whitened below: the projection divides by the spread
    proj = pca.components_.T / np.sqrt(np.maximum(pca.explained_variance_, 1e-12))
    z = (x - pca.mean_) @ proj
    keep = np.sort(rng.choice(len(z), min(MAX_POINTS, len(z)), replace=False))
    z, owner = z[keep], owner[keep]
    per_section = []
    for i in np.unique(owner):
        mine, other = z[owner == i], z[owner != i]
        if len(mine) and len(other):
            per_section.append(_median_knn(mine, other, N_NEIGHBOURS))
    baseline = float(np.median(per_section))
    return ShiftReference(pca.mean_, proj, z, max(baseline, 1e-9))


def shift_ratio(ref: ShiftReference, features: np.ndarray) -> float:
    """Median 5-NN distance of a slide's spots to the training spots, over the baseline."""
    return _median_knn(ref.embed(features), ref.points, N_NEIGHBOURS) / ref.baseline


def shrink_weight(ratio: float) -> float:
    """How far to lean on the common pattern at a given shift ratio (0 = not at all)."""
    return float(np.clip((ratio - SHRINK_START) / (SHRINK_FULL - SHRINK_START), 0.0, 1.0))


def shrink_toward_common(pred: np.ndarray, common: np.ndarray, weight: float) -> np.ndarray:
    """Move each gene toward the common pattern: ``m + (1 - weight) (pred - m)``.

    At ``weight = 1`` every gene is predicted as the depth control predicts it, shape and
    level. Not toward the gene's own projection on ``m``: a model whose gene knowledge is
    noise gives some genes a negative slope on the common pattern (and arbitrary levels), and
    keeping them would keep the noise.

    Parameters
    ----------
    pred
        (n_spots, n_genes) predictions.
    common
        (n_spots,) the common per-spot pattern ``m(spot)`` predicted from the image.
    weight
        0 (``pred`` unchanged) to 1 (the common pattern for every gene).
    """
    if weight <= 0:
        return pred
    pred = np.asarray(pred, np.float64)
    m = np.asarray(common, np.float64)
    return (m[:, None] + (1.0 - weight) * (pred - m[:, None])).astype(np.float32)


@dataclass
class CommonPattern:
    """Linear map from standardised image features to each spot's mean target (ridge)."""

    mean: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, sections: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> CommonPattern:
        """Fit on standardised features and the (n_spots, n_seen) training targets."""
        from sklearn.linear_model import RidgeCV

        x = np.concatenate([np.asarray(s, np.float64) for s in sections])
        y = np.concatenate([np.asarray(t, np.float64).mean(1) for t in targets])
        k = int(min(256, x.shape[0], x.shape[1]))
        pca = fitted_pca(x, k)  # shared with the estimators' PCA of the same features
        ridge = RidgeCV(alphas=np.logspace(-2, 5, 15)).fit(pca.transform(x), y)
        # fold the PCA into one linear map so the run folder stores a single vector
        return cls(pca.mean_, pca.components_.T @ ridge.coef_, float(ridge.intercept_))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(n_spots,) common pattern of a slide."""
        return (np.asarray(features, np.float64) - self.mean) @ self.coef + self.intercept

    def to_arrays(self, prefix: str = "common_") -> dict[str, np.ndarray]:
        """Flat arrays for an ``.npz``."""
        return {
            f"{prefix}mean": self.mean.astype(np.float32),
            f"{prefix}coef": self.coef.astype(np.float32),
            f"{prefix}intercept": np.float64(self.intercept),
        }

    @classmethod
    def from_arrays(cls, z, prefix: str = "common_") -> CommonPattern:
        """Inverse of :meth:`to_arrays`."""
        return cls(
            np.asarray(z[f"{prefix}mean"], np.float64),
            np.asarray(z[f"{prefix}coef"], np.float64),
            float(z[f"{prefix}intercept"]),
        )
