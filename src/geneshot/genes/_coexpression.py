"""Co-expression in an expression reference, as gene vectors whose inner product is a kernel.

Genes that rise and fall together across a reference's spots or cells (other patients' count
tables, a single-cell atlas of the tissue) tend to share their spatial maps: co-expression is
the strongest gene knowledge measured here (BENCHMARKS.md, "Session 12"), far stronger than
any description. :func:`coexpression_vectors` summarises it around the seen genes: with ``Z``
the seen genes' z-scores over the reference rows and ``U`` its top ``k`` left singular
vectors, every reference gene ``g`` gets ``v_g = U^T z_g / sqrt(n)``, so that ``v_g . v_h`` is
the part of the correlation of ``g`` and ``h`` that the seen genes' main axes carry
(``|v_g| <= 1``; 1 for a gene the axes explain fully). A gene the reference lacks gets the
zero vector: 0 to every gene, so it falls back on the other gene knowledge. Each gene's level
in the reference (its mean log1p CP10k over the rows, the targets' unit) comes with it.

The vectors are computed from the reference and the seen genes only (never from an unseen
gene's expression in the training or test sections), as :func:`geneshot.genes.gene_axes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geneshot._memo import memoized
from geneshot.genes._reference import SD_FLOOR, Reference, gene_positions, seen_zscores

#: axes kept: on two inner splits 64 scored as the exact correlation (BENCHMARKS.md)
N_COEXPRESSION_AXES = 64


@dataclass
class CoexpressionVectors:
    """Every reference gene's co-expression vector (see the module docstring).

    Attributes
    ----------
    genes
        Reference gene symbols, the rows of ``vectors``.
    vectors
        ``(n_genes, k)`` float32.
    level
        ``(n_genes,)`` float32: each gene's mean over the reference rows (log1p CP10k).
    """

    genes: list[str]
    vectors: np.ndarray
    level: np.ndarray

    def rows(self, names: Sequence[str]) -> np.ndarray:
        """Row of each name in :attr:`genes` (-1 when the reference lacks it)."""
        return gene_positions(self.genes, names)

    def lookup(self, names: Sequence[str]) -> np.ndarray:
        """``(len(names), k)`` vectors of ``names``; zeros for genes the reference lacks."""
        out = np.zeros((len(names), self.vectors.shape[1]), np.float64)
        idx = self.rows(names)
        found = idx >= 0
        out[found] = self.vectors[idx[found]]
        return out


def coexpression_vectors(
    ref: Reference,
    seen: Sequence[str],
    k: int = N_COEXPRESSION_AXES,
    *,
    max_rows: int = 50_000,
    seed: int = 0,
) -> CoexpressionVectors:
    """Co-expression vectors of every gene of ``ref`` on the seen genes' top ``k`` axes.

    Parameters
    ----------
    ref
        The reference (rows: spots or cells; log1p CP10k).
    seen
        Seen (training) genes whose axes the vectors live on; the reference must share at
        least 10 of them.
    k
        Number of axes (capped by the shared genes and rows).
    max_rows
        Rows used (a seeded random subset of a larger atlas).

    Returns
    -------
    :class:`CoexpressionVectors`; memoised in the process by the reference's digest and
    the arguments (``gene-kernel+ref`` and its controls in one benchmark fold share it).
    """

    def compute() -> CoexpressionVectors:
        from sklearn.utils.extmath import randomized_svd

        X, mean, sd, _, Z = seen_zscores(ref, seen, max_rows=max_rows, seed=seed)
        n = X.shape[0]
        kk = int(max(1, min(k, Z.shape[1] - 1, n - 1)))
        U, _, _ = randomized_svd(Z, kk, random_state=seed)
        # U's columns are centred (Z is), so X's column means drop out of U^T z_g
        v = np.asarray(X.T @ U, np.float64) / (np.maximum(sd, SD_FLOOR)[:, None] * np.sqrt(n))
        v[sd < SD_FLOOR] = 0.0  # a gene flat over the rows says nothing about co-expression
        return CoexpressionVectors(list(ref.genes), v.astype(np.float32), mean.astype(np.float32))

    key = (ref.digest, tuple(str(g) for g in seen), int(k), int(max_rows), int(seed))
    return memoized("coexpression-vectors", key, compute, maxsize=2)
