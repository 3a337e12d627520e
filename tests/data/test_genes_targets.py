"""Gene universe, selection and target conventions on tiny synthetic sections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geneshot.data import TargetTransform, gene_universe, load_gene_list, select_genes
from geneshot.errors import InputError
from geneshot.io import make_section


def section(name: str, counts: dict[str, list[float]]) -> object:
    df = pd.DataFrame(counts, index=[f"{i}x1" for i in range(len(next(iter(counts.values()))))])
    spots = pd.DataFrame({"pixel_x": np.arange(len(df)) * 10.0, "pixel_y": 5.0, "array_row": 1, "array_col": np.arange(len(df))}, index=df.index)
    return make_section(df, spots, section=name, patient="P", dataset="toy", image_path=None, mpp=None, spot_diameter_um=100)


def test_union_zero_fills_and_intersection_keeps_shared():
    a = section("A", {"ERBB2": [1, 2], "ACTB": [5, 5]})
    b = section("B", {"ACTB": [3, 3], "CD74": [0, 9]})
    ua, ub = gene_universe([a, b], "union")
    assert list(ua.var_names) == ["ACTB", "CD74", "ERBB2"] == list(ub.var_names)
    np.testing.assert_array_equal(ub[:, "ERBB2"].X.toarray().ravel(), [0, 0])
    np.testing.assert_array_equal(ua[:, "ERBB2"].X.toarray().ravel(), [1, 2])
    ia, ib = gene_universe([a, b], "intersection")
    assert list(ia.var_names) == ["ACTB"]


def test_duplicated_symbols_are_merged_with_warning():
    df = pd.DataFrame([[1, 2, 3]], columns=["ACTB", "ACTB ", "KRT19"], index=["1x1"])
    spots = pd.DataFrame({"pixel_x": [1.0], "pixel_y": [1.0], "array_row": [1], "array_col": [1]}, index=["1x1"])
    a = make_section(df, spots, section="A", patient="P", dataset="toy", image_path=None, mpp=None, spot_diameter_um=100)
    with pytest.warns(UserWarning, match="duplicated gene names merged"):
        (u,) = gene_universe([a])
    assert list(u.var_names) == ["ACTB", "KRT19"]
    assert u[:, "ACTB"].X.toarray().item() == 3


def test_selection_by_mean_variance_and_list(tmp_path):
    a = section("A", {"HIGH": [10, 10, 10], "VAR": [0, 0, 12], "LOW": [1, 0, 1]})
    (a,) = gene_universe([a])
    assert select_genes([a], "top_mean", 1) == ["HIGH"]
    assert select_genes([a], "top_var", 1) == ["VAR"]
    assert select_genes([a], "list", genes=["LOW", "NOPE"]) == ["LOW"]
    np.save(tmp_path / "g.npy", np.array(["VAR", "HIGH"]))
    assert load_gene_list(tmp_path / "g.npy") == ["VAR", "HIGH"]
    with pytest.raises(InputError, match="not known"):
        select_genes([a], "magic", 1)


def test_sgn_targets_use_training_extremes_only():
    train = section("T", {"G": [0, 9], "H": [1, 3]})
    test = section("X", {"G": [99, 0], "H": [2, 2]})
    train, test = gene_universe([train, test])
    t = TargetTransform.fit([train], "sgn")
    y = t.transform(train, ["G", "H"])
    np.testing.assert_allclose(y[:, 0], [0, 1], atol=1e-6)
    # the test section's 99 exceeds the training max: it is NOT rescaled into [0, 1]
    assert t.transform(test, ["G"])[0, 0] > 1
    back = TargetTransform.from_dict(t.to_dict())
    np.testing.assert_allclose(back.transform(test, ["G"]), t.transform(test, ["G"]))


def test_libsize_targets_remove_depth():
    a = section("A", {"G": [1, 10], "H": [9, 90]})
    (a,) = gene_universe([a])
    y = TargetTransform(kind="libsize").transform(a, ["G", "H"])
    # both spots have the same composition: identical targets despite 10x depth
    np.testing.assert_allclose(y[0], y[1], rtol=1e-6)
    np.testing.assert_allclose(y[0, 0], np.log1p(1e4 * 0.1), rtol=1e-6)


def test_libsize_uses_every_measured_gene_whatever_the_alignment():
    from geneshot.data import align_genes

    a = section("A", {"G": [1, 10], "H": [9, 90], "OTHER": [90, 0]})
    full = TargetTransform(kind="libsize").transform(a, ["G"])
    narrow = TargetTransform(kind="libsize").transform(align_genes(a, ["G", "H"]), ["G"])
    np.testing.assert_allclose(narrow, full)
    np.testing.assert_allclose(full[0, 0], np.log1p(1e4 * 1 / 100), rtol=1e-6)
