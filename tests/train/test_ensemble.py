"""Deep ensembles and MC dropout on tiny synthetic inputs (no encoders, a few seconds)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from geneshot.data import TargetTransform
from geneshot.errors import InputError
from geneshot.io import make_section
from geneshot.prepare import PreparedGenes, PreparedSection
from geneshot.train import GeneshotModel
from geneshot.train._ensemble import Ensemble

GENES = [f"G{i}" for i in range(12)]
SEEN, UNSEEN = GENES[:10], GENES[10:]
D_IMG, D_TXT, L = 16, 8, 6


def _section(name: str, seed: int) -> PreparedSection:
    rng = np.random.default_rng(seed)
    side = 6
    r, c = np.divmod(np.arange(side * side), side)
    feats = rng.normal(size=(side * side, D_IMG)).astype(np.float32)
    rates = np.exp(1 + 0.5 * feats[:, : len(GENES)])
    ids = [f"s{i}" for i in range(side * side)]
    counts = pd.DataFrame(rng.poisson(rates), index=ids, columns=GENES)
    spots = pd.DataFrame(
        {"pixel_x": c * 10.0, "pixel_y": r * 10.0, "array_row": r, "array_col": c}, index=ids
    )
    a = make_section(
        counts,
        spots,
        section=name,
        patient=name,
        dataset="toy",
        image_path=None,
        mpp=None,
        spot_diameter_um=100.0,
    )
    return PreparedSection(adata=a, image=feats)


def _genes() -> PreparedGenes:
    rng = np.random.default_rng(7)
    return PreparedGenes(
        symbols=GENES,
        texts={g: f"gene {g}" for g in GENES},
        pooled=rng.normal(size=(len(GENES), D_TXT)).astype(np.float32),
        tokens=rng.normal(size=(len(GENES), L, D_TXT)).astype(np.float32),
        mask=np.ones((len(GENES), L), bool),
        encoder="toy",
    )


SECS = [_section("T1", 0), _section("T2", 1)]
TEST = _section("T3", 2)
GIN = _genes()


def _fit(seed: int, **model_config) -> GeneshotModel:
    # the paper's dot head: the kernel head's spread is no uncertainty (tested below)
    cfg = {"d_model": 16, "n_text_layers": 1, "n_heads": 2, "head": "dot", **model_config}
    m = GeneshotModel(
        "align-st",
        "zero-shot",
        {"max_epochs": 1, "genes_per_step": 6, "n_val_genes": 2, "seed": seed},
        **cfg,
    )
    target = TargetTransform.fit([s.adata for s in SECS], "libsize")
    return m.train(
        SECS,
        GIN,
        seen_genes=SEEN,
        unseen_genes=UNSEEN,
        target=target,
        features={"nuclei": False},
        progress=False,
    )


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    return Ensemble.train(2, _fit, base_seed=5)


def test_mean_and_spread_are_across_members(ensemble):
    assert ensemble.seeds == [5, 6] and ensemble.uncertainty == "deep-ensemble"
    mean, std = ensemble.predict_with_uncertainty(TEST, GIN, UNSEEN)
    each = np.stack([m.predict(TEST, GIN, UNSEEN) for m in ensemble.members])
    assert not np.allclose(each[0], each[1])  # seeds give different members
    np.testing.assert_allclose(mean, each.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, each.std(0), rtol=1e-5)
    np.testing.assert_allclose(ensemble.predict(TEST, GIN, UNSEEN), mean)


def test_save_load_round_trip_and_single_model_compat(ensemble, tmp_path):
    ensemble.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["ensemble"]["members"] == ["members/0", "members/1"]
    back = Ensemble.load(tmp_path / "run")
    assert back.n_members == 2 and back.seeds == [5, 6]
    for a, b in zip(
        ensemble.predict_with_uncertainty(TEST, GIN, UNSEEN),
        back.predict_with_uncertainty(TEST, GIN, UNSEEN),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # the top-level folder still loads as a plain model (member 0)
    single = GeneshotModel.load(tmp_path / "run")
    np.testing.assert_allclose(
        single.predict(TEST, GIN, UNSEEN), ensemble.members[0].predict(TEST, GIN, UNSEEN), rtol=1e-6
    )


def test_single_run_uses_mc_dropout(ensemble, tmp_path):
    m = ensemble.members[0]
    m.save(tmp_path / "one")
    one = Ensemble.load(tmp_path / "one", mc_samples=3)
    assert one.n_members == 1 and one.uncertainty == "mc-dropout"
    mean, std = one.predict_with_uncertainty(TEST, GIN, UNSEEN, seed=3)
    # the mean is the deterministic prediction, so a one-member ensemble predicts like its model
    np.testing.assert_array_equal(mean, m.predict(TEST, GIN, UNSEEN))
    assert (std > 0).mean() > 0.8
    _, std2 = one.predict_with_uncertainty(TEST, GIN, UNSEEN, seed=3)
    np.testing.assert_array_equal(std, std2)  # seeded passes
    np.testing.assert_array_equal(one.predict(TEST, GIN, UNSEEN), mean)  # dropout is off again
    assert one.describe()["mc_samples"] == 3


def test_no_dropout_means_no_uncertainty(ensemble):
    m = copy.deepcopy(ensemble.members[0])
    for layer in m.module.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    e = Ensemble([m])
    assert e.uncertainty == "none"
    _, std = e.predict_with_uncertainty(TEST, GIN, UNSEEN)
    assert np.isnan(std).all()


def test_the_kernel_heads_spread_is_not_reported_as_an_uncertainty(tmp_path):
    # the kernel starts at its config values (on 10 toy genes with random texts the gene CV
    # would pick the common pattern)
    kernel = Ensemble.train(2, lambda seed: _fit(seed, head="kernel", kernel_cv_start=False))
    assert kernel.uncertainty == "none"
    mean, std = kernel.predict_with_uncertainty(TEST, GIN, UNSEEN)
    assert np.isnan(std).all() and np.isfinite(mean).all()
    assert "closed form" in kernel.describe()["statistic"]
    # what the layer would otherwise have said: a spread far below the maps' own variation
    own = np.stack([m.predict(TEST, GIN, UNSEEN) for m in kernel.members])
    assert own.std(0).mean() < 0.05 * own[0].std(0).mean()
    kernel.members[0].save(tmp_path / "one")
    assert Ensemble.load(tmp_path / "one", mc_samples=4).uncertainty == "none"


def test_members_must_share_the_contract(ensemble):
    other = copy.deepcopy(ensemble.members[1])
    other.contract.seen_genes = SEEN[:-1]
    with pytest.raises(InputError, match="seen_genes"):
        Ensemble([ensemble.members[0], other])


def test_load_rejects_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(InputError, match="not a geneshot run"):
        Ensemble.load(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        Ensemble.load(tmp_path / "nope")
