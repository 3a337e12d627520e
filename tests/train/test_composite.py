"""Stacked models (a closed-form base plus ALIGN-ST on its residuals) and the shift rule in runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geneshot.data import TargetTransform
from geneshot.genes import reference_from_sections
from geneshot.train import GeneshotModel
from geneshot.train._composite import RESIDUAL_WEIGHTS
from tests.models.test_planted_signal import CONFIGS, FIT, mean_pcc, planted


@pytest.fixture(scope="module")
def world():
    train, test, pg, seen, unseen = planted(seed=3)
    # the reference: other "patients" of the same planted world (never the train/test sections)
    more, extra, *_ = planted(seed=3, section_prefix="R")
    ref = reference_from_sections([s.adata for s in more + [extra]])
    target = TargetTransform.fit([s.adata for s in train], "libsize")
    return train, test, pg, seen, unseen, ref, target


def _fit(name, world, **model_config):
    train, test, pg, seen, unseen, ref, target = world
    torch.set_num_threads(1)
    cfg = {**CONFIGS["align-st"], **model_config} if name.startswith("align-st+") else model_config
    m = GeneshotModel(name, "zero-shot", {**FIT, "time_budget_s": 0}, **cfg)
    m.train(train, pg, seen_genes=seen, unseen_genes=unseen, target=target, features={}, progress=False, reference=ref)
    return m


BASE_CONFIGS = {"align-st+ref": {"k": 5, "n_components": 4}, "align-st+kernel": {"n_components": 4}}


@pytest.fixture(scope="module", params=sorted(BASE_CONFIGS))
def stacked(world, request):
    return _fit(request.param, world, base_config=BASE_CONFIGS[request.param])


def test_stacked_model_learns_unseen_genes_and_records_its_weight(world, stacked):
    train, test, pg, seen, unseen, ref, target = world
    assert stacked.residual_weight in RESIDUAL_WEIGHTS
    chosen = [h for h in stacked.history if "residual_weight" in h]
    assert chosen and chosen[-1]["residual_weight"] == stacked.residual_weight
    assert set(stacked.validation) == {"slides", "genes", "held_out"} and stacked.validation["slides"]
    y = target.transform(test.adata, unseen)
    pred = stacked.predict(test, pg, unseen, shrink=0.0)
    depth = _fit("depth", world, n_components=4).predict(test, pg, unseen, shrink=0.0)
    assert mean_pcc(y, pred) > mean_pcc(y, depth) + 0.2
    # the prediction is the base plus the chosen share of the module's residual
    base = stacked.base.predict(stacked._slide(test), stacked._genes(pg, unseen))
    if stacked.residual_weight == 0:
        assert np.allclose(pred, base, atol=1e-5)
    else:
        assert not np.allclose(pred, base, atol=1e-5)


def test_stacked_run_round_trips(world, stacked, tmp_path):
    train, test, pg, seen, unseen, ref, target = world
    stacked.save(tmp_path / "run")
    assert (tmp_path / "run" / "base.pkl").is_file() and (tmp_path / "run" / "shift.npz").is_file()
    again = GeneshotModel.load(tmp_path / "run")
    assert again.residual_weight == stacked.residual_weight
    assert np.allclose(again.predict(test, pg, unseen), stacked.predict(test, pg, unseen), atol=1e-5)
    assert again.last_shift["section"] == test.name and np.isfinite(again.last_shift["ratio"])


def test_full_shrinkage_leaves_only_the_common_pattern(world, stacked):
    train, test, pg, seen, unseen, ref, target = world
    full = stacked.predict(test, pg, unseen, shrink=1.0)
    assert stacked.last_shift["shrink"] == 1.0
    m = stacked.common.predict(stacked._slide(test).image.numpy())
    for g in range(full.shape[1]):
        if full[:, g].std() > 1e-6:
            assert abs(np.corrcoef(full[:, g], m)[0, 1]) > 0.999
    auto = stacked.predict(test, pg, unseen)  # a section like the training ones: ~no shrinkage
    assert stacked.last_shift["shrink"] < 0.5
    assert mean_pcc(target.transform(test.adata, unseen), auto) > 0.2
