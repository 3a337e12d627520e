"""How alike a section's maps of different genes are."""

import numpy as np
import pandas as pd
import pytest

from geneshot.errors import InputError
from geneshot.metrics import map_similarity


def test_pairs_in_gene_order_per_kind_with_the_pearson_correlation():
    rng = np.random.default_rng(0)
    common = rng.normal(size=200)
    own = rng.normal(size=(200, 3))
    measured = own + 0.2 * common[:, None]
    # a model that draws only the common pattern, up to a little noise
    pattern = common[:, None] + 0.05 * rng.normal(size=(200, 3))
    out = map_similarity({"measured": measured, "model": pattern}, ["A", "B", "C"])
    assert list(out["kind"]) == ["measured"] * 3 + ["model"] * 3
    assert list(zip(out["gene_a"], out["gene_b"]))[:3] == [("A", "B"), ("A", "C"), ("B", "C")]
    want = np.corrcoef(measured[:, 0], measured[:, 2])[0, 1]
    assert out.loc[1, "pcc"] == pytest.approx(want)
    assert (out.loc[out["kind"] == "model", "pcc"] > 0.95).all()
    assert (out.loc[out["kind"] == "measured", "pcc"].abs() < 0.3).all()


def test_nan_spots_are_left_out_of_each_pair_and_flat_maps_give_nan():
    a = np.array([1.0, 2.0, 3.0, np.nan, 5.0])
    b = np.array([2.0, 4.0, 6.0, 100.0, 10.0])
    flat = np.ones(5)
    out = map_similarity({"m": np.c_[a, b, flat]}, ["a", "b", "flat"])
    assert out.loc[0, "pcc"] == pytest.approx(1.0)
    assert out["pcc"].iloc[1:].isna().all()
    assert isinstance(out, pd.DataFrame)


def test_a_map_without_one_column_per_gene_is_an_input_error():
    with pytest.raises(InputError, match="expected \\(spots, 2\\)"):
        map_similarity({"m": np.zeros((4, 3))}, ["a", "b"])


def test_departure_is_one_minus_the_correlation_with_the_common_pattern():
    from geneshot.metrics import departure

    rng = np.random.default_rng(1)
    common = rng.normal(size=300)
    own = rng.normal(size=300)
    maps = np.c_[3 * common + 2, -common, own, common + own, np.ones(300)]
    d = departure(maps, common)
    assert d[:2] == pytest.approx([0.0, 2.0])
    assert d[2] == pytest.approx(1 - np.corrcoef(own, common)[0, 1])
    assert d[3] == pytest.approx(1 - np.corrcoef(common + own, common)[0, 1])
    assert 0.2 < d[3] < 0.4  # half its variance is the common pattern's
    assert d[4] == 0.0  # a flat map holds nothing gene-specific
    assert (departure(maps, np.ones(300)) == 0.0).all()


def test_departure_needs_maps_at_the_common_patterns_spots():
    from geneshot.metrics import departure

    with pytest.raises(InputError, match="same spots"):
        departure(np.zeros((4, 2)), np.zeros(5))
