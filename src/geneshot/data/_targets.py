"""Target normalisation, fitted on training sections only.

Two conventions:

``sgn``
    SGN/EGN (paper-notes §1.2): ``log10(1 + x)`` then per-gene min–max with the raw-count
    extremes. SGN took the extremes over all slides (test included); geneshot takes them from
    the TRAINING sections only, so test targets may leave [0, 1] slightly.
``libsize``
    Library-size normalisation: counts per 10,000 per spot, then ``log1p``. Nothing is
    fitted; it removes per-spot depth, which dominates the ``sgn`` convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import scipy.sparse as sp

from geneshot._constants import Key
from geneshot.errors import InputError

TARGET_KINDS = ("libsize", "sgn")


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


@dataclass
class TargetTransform:
    """Map raw counts to model targets.

    Attributes
    ----------
    kind
        ``"libsize"`` or ``"sgn"``.
    genes
        Genes the statistics were fitted on (order of ``gmin`` / ``gmax``).
    gmin, gmax
        Per-gene raw-count extremes over training spots (``sgn`` only).
    """

    kind: str = "libsize"
    genes: list[str] = field(default_factory=list)
    gmin: np.ndarray | None = None
    gmax: np.ndarray | None = None
    target_sum: float = 1e4

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise InputError(None, f"unknown target convention {self.kind!r}", f"use one of: {', '.join(TARGET_KINDS)}")

    @classmethod
    def fit(cls, train_sections: Sequence[ad.AnnData], kind: str = "libsize") -> TargetTransform:
        """Fit on aligned TRAINING sections (all genes they carry)."""
        t = cls(kind=kind, genes=list(train_sections[0].var_names))
        if kind == "sgn":
            mins = [np.asarray(sp.csr_matrix(a.X).min(axis=0).toarray()).ravel() for a in train_sections]
            maxs = [np.asarray(sp.csr_matrix(a.X).max(axis=0).toarray()).ravel() for a in train_sections]
            t.gmin = np.min(mins, axis=0)
            t.gmax = np.max(maxs, axis=0)
        return t

    def transform(self, adata: ad.AnnData, genes: Sequence[str]) -> np.ndarray:
        """Targets (n_spots, len(genes)) float32 for ``genes`` of one aligned section."""
        idx = adata.var_names.get_indexer(list(genes))
        if (idx < 0).any():
            miss = [g for g, i in zip(genes, idx) if i < 0]
            raise InputError(None, f"{len(miss)} genes are not in the section (e.g. {miss[:3]})", "align sections to the run's gene universe first")
        if self.kind == "libsize":
            x = sp.csr_matrix(adata.X)
            # library size over every measured gene (recorded at read time), not just the genes
            # this AnnData was aligned to; fall back to the row sums for foreign AnnData
            if Key.TOTAL_COUNTS in adata.obs:
                lib = adata.obs[Key.TOTAL_COUNTS].to_numpy(dtype=np.float64).copy()
            else:
                lib = np.asarray(x.sum(axis=1)).ravel()
            lib[lib == 0] = 1.0
            y = _dense(x[:, idx]) / lib[:, None] * self.target_sum
            return np.log1p(y).astype(np.float32)
        pos = {g: i for i, g in enumerate(self.genes)}
        gidx = np.asarray([pos.get(g, -1) for g in genes])
        if (gidx < 0).any():
            raise InputError(None, "some genes have no fitted min–max statistics", "refit the target transform on the training sections")
        lo = np.log10(self.gmin[gidx] + 1)
        hi = np.log10(self.gmax[gidx] + 1)
        y = np.log10(_dense(adata.X[:, idx]) + 1)
        return ((y - lo) / (hi - lo + 1e-8)).astype(np.float32)

    def subset(self, genes: Sequence[str]) -> TargetTransform:
        """The same transform with statistics kept for ``genes`` only (smaller checkpoints)."""
        if self.kind != "sgn":
            return TargetTransform(kind=self.kind, target_sum=self.target_sum)
        pos = {g: i for i, g in enumerate(self.genes)}
        idx = np.asarray([pos[g] for g in genes])
        return TargetTransform(kind="sgn", genes=list(genes), gmin=self.gmin[idx], gmax=self.gmax[idx], target_sum=self.target_sum)

    def to_dict(self) -> dict:
        """JSON-able state (saved with checkpoints)."""
        return {
            "kind": self.kind,
            "genes": self.genes if self.kind == "sgn" else [],
            "gmin": None if self.gmin is None else self.gmin.tolist(),
            "gmax": None if self.gmax is None else self.gmax.tolist(),
            "target_sum": self.target_sum,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TargetTransform:
        """Inverse of :meth:`to_dict`."""
        return cls(
            kind=d["kind"],
            genes=list(d.get("genes", [])),
            gmin=None if d.get("gmin") is None else np.asarray(d["gmin"]),
            gmax=None if d.get("gmax") is None else np.asarray(d["gmax"]),
            target_sum=d.get("target_sum", 1e4),
        )
