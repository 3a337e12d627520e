"""The locus kernel: genes in the same chromosome arm, region and band are close."""

from __future__ import annotations

import numpy as np
import pytest

from geneshot.genes import LOCUS_LEVELS, band_levels, locus_kernel


@pytest.mark.parametrize(
    ("band", "levels"),
    [
        ("17q12", ("17q", "17q1", "17q12")),
        ("6p21.33", ("6p", "6p2", "6p21")),
        ("Xq28", ("Xq", "Xq2", "Xq28")),
        ("17q", ("17q",)),
        ("1p3", ("1p", "1p3")),
        ("mitochondria", ()),
        ("", ()),
    ],
)
def test_band_levels(band, levels):
    assert band_levels(band) == levels


def test_kernel_follows_the_shared_levels():
    # ERBB2 and GRB7 share band 17q12; KRT19 (17q21.2) shares only the arm; IGKC is on 2p
    genes = ["ERBB2", "GRB7", "KRT19", "IGKC"]
    k = locus_kernel(genes, genes)
    arm = dict(LOCUS_LEVELS)["arm"]
    assert np.allclose(np.diag(k), 1.0)
    assert k[0, 1] == pytest.approx(1.0)
    assert k[0, 2] == pytest.approx(arm)
    assert k[0, 3] == 0.0 and k[2, 3] == 0.0
    assert np.allclose(k, k.T)


def test_genes_without_a_band_are_zero_to_all():
    k = locus_kernel(["ERBB2", "NOT-A-GENE"], ["ERBB2", "NOT-A-GENE", "GRB7"])
    assert k.shape == (2, 3)
    assert np.all(k[1] == 0.0)
    assert k[0, 0] == pytest.approx(1.0)


def test_rows_and_columns_need_not_overlap():
    # the vocabulary is shared between the two lists, so a band seen only in cols still matches
    assert locus_kernel(["GRB7"], ["ERBB2"])[0, 0] == pytest.approx(1.0)
