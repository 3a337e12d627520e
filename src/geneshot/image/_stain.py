"""Optional stain normalisation (Macenko or Reinhard), backed by torchstain's numpy backend.

The target is a reference H&E patch or thumbnail; by default a built-in synthetic-free
choice is avoided: the caller passes a reference (e.g. a thumbnail of a training section)
so that the normalisation is reproducible and documented with the run.
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
            raise InputError(None, f"unknown stain normalisation {method!r}", f"use one of: {', '.join(STAIN_METHODS)} or none")
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer, NumpyReinhardNormalizer

        self.method = method
        self._norm = NumpyMacenkoNormalizer() if method == "macenko" else NumpyReinhardNormalizer()
        self._norm.fit(np.ascontiguousarray(reference, dtype=np.uint8))

    def __call__(self, patch: np.ndarray) -> np.ndarray:
        """Normalise one (H, W, 3) uint8 patch; patches with too little tissue are returned as is."""
        try:
            out = self._norm.normalize(patch) if self.method == "reinhard" else self._norm.normalize(patch, stains=False)[0]
        except (np.linalg.LinAlgError, ValueError, IndexError):
            return patch  # mostly glass: no stain vectors to estimate
        out = np.asarray(out)
        return np.clip(out, 0, 255).astype(np.uint8)
