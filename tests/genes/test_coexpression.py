"""Co-expression in a reference as gene vectors: inner products approximate correlations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from geneshot.errors import InputError
from geneshot.genes import Reference, coexpression_vectors


def _reference(seed: int = 0, n: int = 400) -> tuple[Reference, np.ndarray]:
    """30 seen genes driven by 5 factors, plus A (follows S0), B (opposes S0) and a gene never
    detected (all zero, as in a count table)."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 5))
    seen = factors[:, np.arange(30) % 5] + 0.3 * rng.normal(size=(n, 30))
    a = seen[:, 0] + 0.1 * rng.normal(size=n)
    b = -seen[:, 0] + 0.1 * rng.normal(size=n)
    x = np.column_stack([seen + 5.0, a + 5.0, b + 5.0, np.zeros(n)])  # levels, as log1p CP10k
    genes = [f"S{i}" for i in range(30)] + ["A", "B", "FLAT"]
    ref = Reference(
        sp.csr_matrix(x.astype(np.float32)), genes, np.array(["s"] * n), "test", f"toy{seed}"
    )
    return ref, x


def test_inner_products_are_the_correlations_the_seen_axes_carry():
    ref, x = _reference()
    cv = coexpression_vectors(ref, [f"S{i}" for i in range(30)], k=5)
    v = cv.lookup(["S0", "S5", "S1", "A", "B", "FLAT", "NOT_IN_REF"])
    corr = np.corrcoef(x[:, [0, 5, 1, 30, 31]].T)
    k = v[:5] @ v[:5].T
    # genes the five factors explain are represented almost fully, with their sign
    assert np.abs(k - corr).max() < 0.1, np.round(k - corr, 3)
    assert k[3, 4] < -0.8 and k[0, 1] > 0.8 and abs(k[0, 2]) < 0.2
    assert np.all(np.linalg.norm(v, axis=1) <= 1.0 + 1e-6)
    # a flat gene and a gene the reference lacks are zero: they fall back on other knowledge
    assert np.all(v[5:] == 0.0)


def test_vectors_are_memoised_and_need_shared_seen_genes():
    ref, _ = _reference(1)
    seen = [f"S{i}" for i in range(30)]
    assert coexpression_vectors(ref, seen, k=5) is coexpression_vectors(ref, seen, k=5)
    with pytest.raises(InputError, match="shares only"):
        coexpression_vectors(ref, [f"X{i}" for i in range(30)], k=5)
