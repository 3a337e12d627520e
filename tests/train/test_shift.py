"""Shift ratio and shrinkage toward the common pattern (geneshot.train._shift)."""

from __future__ import annotations

import numpy as np
import pytest

from geneshot.train._shift import (
    SHRINK_FULL,
    SHRINK_START,
    CommonPattern,
    ShiftReference,
    fit_shift,
    shift_ratio,
    shrink_toward_common,
    shrink_weight,
)


def _sections(rng, n_sections=4, n=150, d=60, offset=0.0):
    # sections share a low-dimensional structure plus a small per-section offset
    basis = np.random.default_rng(0).normal(size=(8, d))
    return [rng.normal(size=(n, 8)) @ basis + rng.normal(scale=0.3, size=(n, d)) + offset for _ in range(n_sections)]


def test_new_section_of_the_same_kind_scores_about_one():
    rng = np.random.default_rng(1)
    ref = fit_shift(_sections(rng))
    new = _sections(rng, n_sections=1)[0]
    assert 0.85 < shift_ratio(ref, new) < 1.15


def test_shifted_features_score_higher_and_shrink():
    rng = np.random.default_rng(2)
    ref = fit_shift(_sections(rng))
    same = shift_ratio(ref, _sections(rng, 1)[0])
    shifted = shift_ratio(ref, _sections(rng, 1, offset=1.5)[0])
    assert shifted > same + 0.3
    assert shrink_weight(shifted) > shrink_weight(same)


def test_single_training_section_has_no_baseline():
    assert fit_shift([np.zeros((10, 4))]) is None


def test_shrink_weight_edges():
    assert shrink_weight(0.9) == 0.0
    assert shrink_weight(SHRINK_START) == 0.0
    assert shrink_weight(SHRINK_FULL) == 1.0
    assert shrink_weight(5.0) == 1.0
    mid = (SHRINK_START + SHRINK_FULL) / 2
    assert shrink_weight(mid) == pytest.approx(0.5)


def test_shrink_keeps_the_common_part_and_scales_the_rest():
    rng = np.random.default_rng(3)
    m = rng.normal(size=200)
    specific = rng.normal(size=(200, 3))
    pred = 2.0 + 0.5 * m[:, None] + specific
    assert np.array_equal(shrink_toward_common(pred, m, 0.0), pred)
    full = shrink_toward_common(pred, m, 1.0)
    # fully shrunk: every gene is the common pattern, as the depth control predicts it
    assert np.allclose(full, m[:, None], atol=1e-5)
    half = shrink_toward_common(pred, m, 0.5)
    resid_full = pred - full
    assert np.allclose(half - full, 0.5 * resid_full, atol=1e-5)


def test_shrinking_helps_when_only_the_common_pattern_transfers():
    rng = np.random.default_rng(4)
    m = rng.normal(size=300)
    truth = m[:, None] + 0.3 * rng.normal(size=(300, 20))
    pred = 0.5 * m[:, None] + rng.normal(size=(300, 20))  # gene-specific part is noise
    r0 = np.mean([np.corrcoef(pred[:, g], truth[:, g])[0, 1] for g in range(20)])
    shrunk = shrink_toward_common(pred, m, 1.0)
    r1 = np.mean([np.corrcoef(shrunk[:, g], truth[:, g])[0, 1] for g in range(20)])
    assert r1 > r0 + 0.2


def test_shrinking_undoes_a_noisy_sign():
    # a model whose gene knowledge is noise flips some genes against the common pattern;
    # the shrunk maps follow the common pattern with the right sign
    rng = np.random.default_rng(6)
    m = rng.normal(size=300)
    truth = m[:, None] + 0.3 * rng.normal(size=(300, 4))
    pred = np.column_stack([m, -m, 2 * m, -0.5 * m]) + 0.1 * rng.normal(size=(300, 4))
    shrunk = shrink_toward_common(pred, m, 1.0)
    r = [np.corrcoef(shrunk[:, g], truth[:, g])[0, 1] for g in range(4)]
    assert min(r) > 0.9


def test_round_trips_through_arrays():
    rng = np.random.default_rng(5)
    secs = _sections(rng)
    ref = fit_shift(secs)
    again = ShiftReference.from_arrays(ref.to_arrays())
    new = _sections(rng, 1)[0]
    assert shift_ratio(again, new) == pytest.approx(shift_ratio(ref, new), rel=1e-5)
    ys = [s[:, :5] * 0.1 + 1.0 for s in secs]
    cp = CommonPattern.fit(secs, ys)
    cp2 = CommonPattern.from_arrays(cp.to_arrays())
    assert np.allclose(cp.predict(new), cp2.predict(new), atol=1e-4)
    # the common pattern is learnable here: it is a linear function of the features
    target = np.concatenate([y.mean(1) for y in ys])
    fitted = np.concatenate([cp.predict(s) for s in secs])
    assert np.corrcoef(fitted, target)[0, 1] > 0.95
