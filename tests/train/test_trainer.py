"""The trainer: a held-out training section for validation, a gene-specific selection criterion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from geneshot.data import TargetTransform, validation_split
from geneshot.io import make_section
from geneshot.prepare import PreparedGenes, PreparedSection
from geneshot.train import GeneshotModel, _trainer
from geneshot.train._trainer import gene_specific_pcc

# the trainer's mechanics on the paper's head (the kernel head's path: tests/models/test_kernel_head.py)
MODEL_CFG = {"dropout": 0.0, "n_text_layers": 1, "d_model": 16, "n_heads": 2, "use_ndaife": False, "head": "dot"}


def sections_of_sizes(sizes, n_genes=24, seed=0):
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(n_genes)]
    out = []
    for s, n in enumerate(sizes):
        rows, cols = np.divmod(np.arange(n), 4)
        ids = [f"{c}x{r}" for r, c in zip(rows, cols)]
        counts = pd.DataFrame(rng.poisson(4, (n, n_genes)), index=ids, columns=genes)
        spots = pd.DataFrame({"pixel_x": cols * 10.0, "pixel_y": rows * 10.0, "array_row": rows, "array_col": cols}, index=ids)
        a = make_section(counts, spots, section=f"S{s}", patient="P", dataset="toy", image_path=None, mpp=None, spot_diameter_um=100)
        out.append(PreparedSection(adata=a, image=rng.normal(size=(n, 8)).astype(np.float32)))
    tokens = rng.normal(size=(n_genes, 5, 6)).astype(np.float32)
    pg = PreparedGenes(symbols=genes, texts={g: g for g in genes}, pooled=tokens.mean(1), tokens=tokens, mask=np.ones((n_genes, 5), bool), encoder="toy")
    return out, pg, genes


def test_validation_section_is_held_out_of_the_loss(monkeypatch):
    torch.set_num_threads(1)
    sizes = [16, 20, 24, 28]  # distinct sizes identify the section behind each loss call
    secs, pg, genes = sections_of_sizes(sizes)
    val = validation_split([s.name for s in secs], strategy="section", frac=0.2, seed=0)["val"]
    assert len(val) == 1
    val_size = sizes[[s.name for s in secs].index(val[0])]
    seen_sizes = []
    real = _trainer.mse_pcc_loss

    def spy(pred, target, w):
        seen_sizes.append(pred.shape[0])
        return real(pred, target, w)

    monkeypatch.setattr(_trainer, "mse_pcc_loss", spy)
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    m = GeneshotModel("align-st", "zero-shot", {"max_epochs": 2, "steps_per_epoch": 2, "slides_per_step": 0, "genes_per_step": 8, "n_val_genes": 4}, **MODEL_CFG)
    m.train(secs, pg, seen_genes=genes[4:], unseen_genes=genes[:4], target=target, features={}, progress=False)
    # every step saw every other section (gradients accumulated), never the validation one
    assert len(seen_sizes) == 2 * 2 * 3
    assert val_size not in seen_sizes and set(seen_sizes) == set(sizes) - {val_size}
    h = [r for r in m.history if "epoch" in r]
    assert len(h) == 2
    for key in (
        "val_score",
        "val_pcc",
        "val_shuffled",
        "gene_cosine",
        "gene_cosine_centred",
        "map_corr",
    ):
        assert all(np.isfinite(r[key]) for r in h), key


def test_collapse_diagnostics():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(1, 16))
    w = 10 * shared + rng.normal(size=(50, 16))  # one big shared part, genes spread around it
    assert _trainer._mean_pairwise_cosine(torch.from_numpy(w)) > 0.95
    assert abs(_trainer._mean_pairwise_cosine(torch.from_numpy(w - w.mean(0)))) < 0.1
    m = rng.normal(size=(200, 1))
    assert _trainer._mean_map_corr(np.repeat(m, 5, 1) + 1e-3 * rng.normal(size=(200, 5))) > 0.99
    assert abs(_trainer._mean_map_corr(rng.normal(size=(200, 5)))) < 0.1


def test_selection_criterion_ignores_a_pure_common_pattern():
    rng = np.random.default_rng(0)
    n, g = 300, 40
    common = rng.normal(size=n)
    own = rng.normal(size=(n, g))
    y = 2.0 + 1.5 * common[:, None] + 0.5 * own
    shared_only = np.repeat(common[:, None], g, 1) + rng.normal(size=g)  # the depth control's kind
    gene_aware = common[:, None] + 0.5 * own
    plain = np.mean([np.corrcoef(y[:, j], shared_only[:, j])[0, 1] for j in range(g)])
    assert plain > 0.8  # the shared pattern alone earns a high plain PCC ...
    assert abs(gene_specific_pcc(y, shared_only)) < 0.05  # ... and nothing here
    assert gene_specific_pcc(y, gene_aware) > 0.9


def test_selection_criterion_and_old_trainer_knobs():
    torch.set_num_threads(1)
    secs, pg, genes = sections_of_sizes([16, 20, 24, 28])
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    old = {"slides_per_step": 1, "gene_sampling": "uniform", "val_strategy": "spots", "select_on": "pcc"}
    for extra, key in (({}, "val_score"), (old, "val_pcc")):
        cfg = {"max_epochs": 4, "steps_per_epoch": 2, "genes_per_step": 8, "n_val_genes": 4, "time_budget_s": 0, **extra}
        m = GeneshotModel("align-st", "zero-shot", cfg, **MODEL_CFG)
        m.train(secs, pg, seen_genes=genes[4:], unseen_genes=genes[:4], target=target, features={}, progress=False)
        h = [r for r in m.history if "epoch" in r]
        # the kept model is the best epoch on the configured criterion, and timings are recorded
        assert m.best_val == max(r[key] for r in h)
        assert all(r["train_s"] >= 0 and r["val_s"] >= 0 for r in h)
        # each is rounded to 0.01 s in the history, so the sum may exceed the total by 0.01
        assert h[-1]["train_s"] + h[-1]["val_s"] <= h[-1]["elapsed_s"] + 0.011


def test_training_is_deterministic_and_restores_the_torch_setting():
    # two threads: the parallel scatter-adds that made runs differ need more than one
    torch.set_num_threads(2)
    secs, pg, genes = sections_of_sizes([300, 320, 340], n_genes=40, seed=2)
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    preds, inside = [], []
    real = _trainer._fit_torch

    def spy(*args, **kwargs):
        inside.append(torch.are_deterministic_algorithms_enabled())
        return real(*args, **kwargs)

    states = []
    before = torch.are_deterministic_algorithms_enabled()
    for _ in range(2):
        m = GeneshotModel("align-st", "zero-shot", {"max_epochs": 3, "genes_per_step": 16, "n_val_genes": 4, "time_budget_s": 0}, **MODEL_CFG)
        _trainer._fit_torch, saved = spy, _trainer._fit_torch
        try:
            m.train(secs, pg, seen_genes=genes[:32], unseen_genes=genes[32:], target=target, features={}, progress=False)
        finally:
            _trainer._fit_torch = saved
        states.append(m.module.state_dict())
        preds.append(m.predict(secs[0], pg, genes[32:], shrink=0.0))
    torch.set_num_threads(1)
    assert inside == [True, True] and torch.are_deterministic_algorithms_enabled() == before
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    assert np.array_equal(preds[0], preds[1])
