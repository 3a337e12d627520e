"""Do the models learn? A synthetic set where each gene's text carries its expression rule.

Gene g's expression at a spot is ``exp(w_g . f)`` (Poisson counts), with ``f`` the spot's
image feature vector and ``w_g = A t_g`` a fixed linear function of the gene's text
embedding ``t_g``. A zero-shot model that reads the text can therefore predict HELD-OUT
genes; the depth control (one value per spot for every gene) and the permuted-text control
(each gene reads another gene's text) cannot. The supervised ridge must learn the seen genes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geneshot.data import TargetTransform
from geneshot.prepare import PreparedGenes, PreparedSection
from geneshot.train import GeneshotModel
from tests._toy import grid_section

D_IMG, D_T, L = 6, 8, 4
N_SEEN, N_UNSEEN = 60, 20
FIT = {
    "max_epochs": 25,
    "genes_per_step": 32,
    "context_per_step": 16,
    "n_val_genes": 8,
    "patience": 25,
    "lr": 3e-3,
}
CONFIGS = {
    "align-st": {
        "dropout": 0.0,
        "n_text_layers": 1,
        "d_model": 16,
        "n_heads": 2,
        "use_ndaife": False,
    },
    "permuted-text": {
        "dropout": 0.0,
        "n_text_layers": 1,
        "d_model": 16,
        "n_heads": 2,
        "use_ndaife": False,
    },
    "sgn": {"d_model": 16, "hidden": 16, "n_heads": 2},
    "text-knn": {"n_components": 4},
    "depth": {"n_components": 4},
}


def planted(seed: int = 0, section_prefix: str = "S"):
    """Five 10x10 sections (four to train, one to test) and gene texts carrying the signal.

    The gene rules depend on ``seed`` only, so another ``section_prefix`` gives new sections
    of the same world (e.g. a reference of other samples).
    """
    rng = np.random.default_rng(seed)
    genes = [f"G{i:03d}" for i in range(N_SEEN + N_UNSEEN)]
    tokens = rng.normal(size=(len(genes), L, D_T)).astype(np.float32)
    pooled = tokens.mean(1)
    a = rng.normal(size=(D_IMG, D_T)) / np.sqrt(D_T) * 2.0
    w = pooled @ a.T  # (G, D_IMG): the gene's rule, a function of its text
    if section_prefix != "S":  # other samples of the same world: new spots, same gene rules
        rng = np.random.default_rng([seed, sum(map(ord, section_prefix))])
    sections = []
    for s in range(5):
        n = 100
        f = rng.normal(size=(n, D_IMG)).astype(np.float32)
        rate = 8.0 * np.exp(np.clip(f @ w.T, -3, 3))
        adata = grid_section(rng.poisson(rate), genes, f"{section_prefix}{s}", width=10)
        sections.append(PreparedSection(adata=adata, image=f))
    pg = PreparedGenes(
        symbols=genes,
        texts={g: g for g in genes},
        pooled=pooled,
        tokens=tokens,
        mask=np.ones((len(genes), L), bool),
        encoder="toy",
    )
    # unseen = the first genes; all genes are comparably expressed, so no ordering matters
    return sections[:4], sections[4], pg, genes[N_UNSEEN:], genes[:N_UNSEEN]


def mean_pcc(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean over genes of the Pearson correlation across spots (constant predictions -> 0)."""
    yc, pc = y - y.mean(0), pred - pred.mean(0)
    den = np.sqrt((yc**2).sum(0) * (pc**2).sum(0))
    r = np.where(den > 0, (yc * pc).sum(0) / np.where(den > 0, den, 1), 0.0)
    return float(r.mean())


def fit_planted(name: str, data, train_config: dict, **model_config) -> GeneshotModel:
    """A zero-shot ``name`` trained on a planted world's training sections, on one thread."""
    train, _, pg, seen, unseen = data
    target = TargetTransform.fit([s.adata for s in train], "libsize")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = GeneshotModel(name, "zero-shot", train_config, **model_config)
        return m.train(
            train,
            pg,
            seen_genes=seen,
            unseen_genes=unseen,
            target=target,
            features={},
            progress=False,
        )
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def held_out_pcc(data):
    """Per model: mean PCC on the test section's held-out (unseen) genes; computed lazily."""
    train, test, pg, seen, unseen = data
    target = TargetTransform.fit([s.adata for s in train], "libsize")
    y = target.transform(test.adata, unseen)
    cache: dict[str, float] = {}

    def score(name: str) -> float:
        if name not in cache:
            m = fit_planted(name, data, {**FIT, "seed": 0}, **CONFIGS[name])
            cache[name] = mean_pcc(y, m.predict(test, pg, unseen))
        return cache[name]

    return score


def test_depth_control_cannot_predict_held_out_genes(held_out_pcc):
    # the genes' rules point in different directions, so one per-spot value does not fit them
    assert abs(held_out_pcc("depth")) < 0.2


@pytest.mark.parametrize("name", ["text-knn", "align-st", "sgn"])
def test_zero_shot_model_predicts_held_out_genes_from_text(held_out_pcc, name):
    assert held_out_pcc(name) > held_out_pcc("depth") + 0.3, held_out_pcc(name)


def test_permuted_text_control_does_not(held_out_pcc):
    assert held_out_pcc("permuted-text") < held_out_pcc("depth") + 0.15


def test_ridge_learns_the_seen_genes(data):
    train, test, pg, seen, _ = data
    target = TargetTransform.fit([s.adata for s in train], "libsize")
    m = GeneshotModel("ridge", "supervised", {"seed": 0}, n_components=4)
    m.train(train, pg, seen_genes=seen, target=target, features={}, progress=False)
    assert mean_pcc(target.transform(test.adata, seen), m.predict(test, pg, seen)) > 0.5
