"""The per-gene comparison with a control: loss-averse score and misses."""

import numpy as np
import pandas as pd
import pytest

from geneshot.metrics import MISS_MARGIN, loss_averse_score, miss_share, n_misses


def test_a_loss_below_the_control_counts_twice_and_a_gain_once():
    control = {"a": 0.2, "b": 0.2, "c": 0.2}
    r = {"a": 0.5, "b": 0.1, "c": 0.2}  # +0.3, -0.1, 0
    # mean 0.8 / 3 plus the mean shortfall -0.1 / 3
    assert loss_averse_score(r, control) == pytest.approx(0.7 / 3)
    # the same mean PCC without the loss scores higher
    assert loss_averse_score({"a": 0.4, "b": 0.2, "c": 0.2}, control) == pytest.approx(0.8 / 3)


def test_genes_are_matched_by_name_and_unscored_ones_left_out():
    r = pd.Series({"b": 0.0, "a": 1.0, "x": 5.0, "n": np.nan})
    control = {"a": 0.0, "b": 0.5, "n": 0.1}
    # a: +1, b: -0.5 (twice); x and n are not scored by both
    assert loss_averse_score(r, control) == pytest.approx(0.5 + (-0.5) / 2)
    assert miss_share(r, control) == pytest.approx(0.5)


def test_a_miss_is_more_than_the_margin_below():
    control = {"a": 0.3, "b": 0.3, "c": 0.3}
    r = {"a": 0.3 - MISS_MARGIN / 2, "b": 0.3 - 2 * MISS_MARGIN, "c": 0.9}
    assert miss_share(r, control) == pytest.approx(1 / 3)
    assert n_misses(r, control) == 1
    assert miss_share(r, control, margin=0.0) == pytest.approx(2 / 3)


def test_no_common_gene_gives_nan():
    assert np.isnan(loss_averse_score({"a": 0.1}, {"b": 0.1}))
    assert np.isnan(miss_share({"a": 0.1}, {"b": 0.1}))
    assert n_misses({"a": 0.1}, {"b": 0.1}) == 0
