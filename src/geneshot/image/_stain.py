"""Stain normalisation (Macenko or Reinhard, torchstain) and stain augmentation (HED jitter).

Normalisation maps patches to a reference's stain appearance; the caller passes the
reference (e.g. a thumbnail of a training section) so that the run records it.
Augmentation perturbs a whole slide's stain the way one lab's staining differs from
another's: every patch of a slide gets the same scaling (and shift) of its haematoxylin,
eosin and DAB optical densities (skimage's colour deconvolution), drawn once per seed.
"""

from __future__ import annotations

import numpy as np

from geneshot.errors import InputError

STAIN_METHODS = ("macenko", "reinhard")


class StainNormalizer:
    """Fit on a reference RGB image, then map patches to its stain appearance.

    Parameters
    ----------
    method
        ``"macenko"`` or ``"reinhard"``.
    reference
        (H, W, 3) uint8 reference image (tissue, not glass).
    """

    def __init__(self, method: str, reference: np.ndarray) -> None:
        if method not in STAIN_METHODS:
            raise InputError(
                None,
                f"unknown stain normalisation {method!r}",
                f"use one of: {', '.join(STAIN_METHODS)} or none",
            )
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer, NumpyReinhardNormalizer

        self.method = method
        self._norm = NumpyMacenkoNormalizer() if method == "macenko" else NumpyReinhardNormalizer()
        self._norm.fit(np.ascontiguousarray(reference, dtype=np.uint8))

    def __call__(self, patch: np.ndarray) -> np.ndarray:
        """Normalise one (H, W, 3) uint8 patch; patches with too little tissue are returned as is."""
        try:
            out = (
                self._norm.normalize(patch)
                if self.method == "reinhard"
                else self._norm.normalize(patch, stains=False)[0]
            )
        except (np.linalg.LinAlgError, ValueError, IndexError):
            return patch  # mostly glass: no stain vectors to estimate
        out = np.asarray(out)
        return np.clip(out, 0, 255).astype(np.uint8)


class StainJitter:
    """One slide-level stain perturbation in HED space (the same for every patch).

    Parameters
    ----------
    sigma
        Each of the H, E and D optical densities is scaled by a factor drawn from
        ``U(1 - sigma, 1 + sigma)``.
    bias
        ... and shifted by a value from ``U(-bias, bias)`` (optical-density units; skimage's
        H and E channels of a typical patch span about 0-0.2, so keep it small).
    seed
        Draws the factors; one seed is one "lab".
    """

    def __init__(self, sigma: float, bias: float = 0.0, seed: int = 0) -> None:
        if not (0.0 <= sigma < 1.0) or bias < 0.0:
            raise InputError(
                None, f"stain jitter sigma={sigma}, bias={bias}", "use 0 <= sigma < 1 and bias >= 0"
            )
        rng = np.random.default_rng(seed)
        self.scale = rng.uniform(1.0 - sigma, 1.0 + sigma, 3)
        self.shift = rng.uniform(-bias, bias, 3)
        self.key = f"hed-jitter:{sigma}:{bias}:{seed}"

    def __call__(self, patch: np.ndarray) -> np.ndarray:
        """Perturb one (H, W, 3) uint8 patch."""
        from skimage.color import hed2rgb, rgb2hed

        out = hed2rgb(rgb2hed(patch) * self.scale + self.shift)
        return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
