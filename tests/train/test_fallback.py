"""The validation rule that decides how much of a zero-shot model's own maps to keep."""

from __future__ import annotations

import numpy as np
import pytest

from geneshot.train import GeneshotModel
from geneshot.train._fallback import KEEP_WEIGHTS, best_weight
from geneshot.train._shift import shrink_toward_common
from tests.models.test_planted_signal import CONFIGS, FIT, fit_planted, planted


def test_best_weight_keeps_signal_and_drops_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 5))
    signal = rng.normal(size=(200, 5))
    y = base + signal
    assert best_weight([(y, base, signal)], KEEP_WEIGHTS)[0] == 1.0
    noise = 3 * rng.normal(size=(200, 5))
    best, means = best_weight([(base + 0.1 * signal, base, noise)], KEEP_WEIGHTS)
    assert best == 0.0 and means[0.0] > means[1.0]


def test_best_weight_ties_go_to_the_base():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 3))
    # a change that only rescales the base scores the same for every weight
    assert best_weight([(base, base, 0.5 * base)], (0.0, 0.5, 1.0))[0] == 0.0


@pytest.fixture(scope="module")
def runs():
    data = planted(seed=5)
    _, test, pg, _, unseen = data
    # the paper's head and its control, with the rule on (their default: align-st-paper's)
    out = {
        name: fit_planted(
            name,
            data,
            {**FIT, "time_budget_s": 0, "keep_rule": True},
            **{**CONFIGS[name], "head": "dot"},
        )
        for name in ("align-st", "permuted-text")
    }
    return out, test, pg, unseen


def test_the_choice_is_recorded_and_follows_the_text(runs):
    models, *_ = runs
    for m in models.values():
        rows = [h for h in m.history if "common_keep" in h]
        assert rows and rows[-1]["common_keep"] == m.common_keep
        assert set(rows[-1]["common_keep_scores"]) == {str(w) for w in KEEP_WEIGHTS}
    # the planted text carries each gene's rule: the model keeps its maps, the control
    # (whose texts belong to other genes) keeps less of them
    assert models["align-st"].common_keep >= 0.75
    assert models["permuted-text"].common_keep < models["align-st"].common_keep


def test_prediction_applies_the_kept_share_and_survives_saving(runs, tmp_path):
    models, test, pg, unseen = runs
    m = models["permuted-text"]
    own = m.predict(test, pg, unseen, shrink=0.0)
    pred = m.predict(test, pg, unseen)
    assert m.last_shift["keep"] == m.common_keep
    weight = m.last_shift["shrink"]
    assert weight >= 1.0 - m.common_keep
    common = m.common.predict(m._slide(test).image.numpy())
    assert np.allclose(pred, shrink_toward_common(own, common, weight), atol=1e-4)
    again = GeneshotModel.load(m.save(tmp_path / "run"))
    assert again.common_keep == m.common_keep
    assert np.allclose(again.predict(test, pg, unseen), pred, atol=1e-4)
