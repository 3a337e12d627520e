"""GeneshotModel: training on tiny data, save/load, and the data contract on new data."""

from __future__ import annotations

import numpy as np
import pytest

from geneshot.data import TargetTransform
from geneshot.errors import InputError
from geneshot.prepare import PreparedGenes, PreparedSection
from geneshot.train import GeneshotModel
from tests.train.test_distributed import MODEL_CFG, tiny_data

FEATURES = {"image_encoder": "effnet-lite0", "text_encoder": "minilm", "nuclei": False, "patch_um": 112.0, "patch_px": 224, "tta": False, "stain": None}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    secs, pg, genes = tiny_data()
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    m = GeneshotModel("align-st", "zero-shot", {"max_epochs": 2, "genes_per_step": 6, "context_per_step": 4, "n_val_genes": 3}, **MODEL_CFG)
    m.train(secs, pg, seen_genes=genes[4:], unseen_genes=genes[:4], target=target, features=FEATURES, progress=False)
    run = tmp_path_factory.mktemp("run")
    m.save(run)
    return m, run, secs, pg, genes


def test_save_load_roundtrip_predicts_the_same(trained):
    m, run, secs, pg, genes = trained
    loaded = GeneshotModel.load(run)
    a = m.predict(secs[0], pg, genes[:4])
    b = loaded.predict(secs[0], pg, genes[:4])
    assert a.shape == (secs[0].adata.n_obs, 4) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert loaded.contract.unseen_genes == genes[:4]
    assert loaded.contract.train_sections == ["S0", "S1", "S2", "S3"]
    assert loaded.target_for("sgn").kind == "sgn"


def test_contract_rejects_wrong_feature_width(trained):
    m, _, secs, pg, genes = trained
    wide = PreparedSection(adata=secs[0].adata, image=np.zeros((secs[0].adata.n_obs, 12), np.float32))
    with pytest.raises(InputError, match="image features have 12 dimensions, the model expects 8"):
        m.predict(wide, pg, genes[:2])


def test_contract_rejects_other_text_encoder(trained):
    m, _, secs, pg, genes = trained
    other = PreparedGenes(symbols=pg.symbols, texts=pg.texts, pooled=np.zeros((len(genes), 9), np.float32), tokens=np.zeros((len(genes), 5, 9), np.float32), mask=pg.mask, encoder="other")
    with pytest.raises(InputError, match="text embeddings have 9 dimensions"):
        m.predict(secs[0], other, genes[:2])


def test_genes_without_description_fail_clearly(trained):
    m, _, secs, pg, _ = trained
    with pytest.raises(InputError, match="1 genes have no description.*NOVEL1"):
        m.predict(secs[0], pg, ["NOVEL1"])


def test_not_a_run_folder(tmp_path):
    with pytest.raises(InputError, match="not a geneshot run folder"):
        GeneshotModel.load(tmp_path)


def test_seen_and_unseen_must_be_disjoint():
    secs, pg, genes = tiny_data()
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    m = GeneshotModel("align-st", "zero-shot", {"max_epochs": 1}, **MODEL_CFG)
    with pytest.raises(InputError, match="both seen and unseen"):
        m.train(secs, pg, seen_genes=genes[2:], unseen_genes=genes[:4], target=target, features=FEATURES, progress=False)


@pytest.mark.parametrize("name", ["depth", "text-knn", "sgn", "permuted-text"])
def test_every_zero_shot_model_trains_and_predicts_unseen(name):
    secs, pg, genes = tiny_data()
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    cfg = {"n_components": 4} if name in ("depth", "text-knn") else ({"d_model": 16, "hidden": 16, "n_heads": 2} if name == "sgn" else MODEL_CFG)
    m = GeneshotModel(name, "zero-shot", {"max_epochs": 1, "genes_per_step": 6, "context_per_step": 4, "n_val_genes": 3}, **cfg)
    m.train(secs, pg, seen_genes=genes[4:], unseen_genes=genes[:4], target=target, features=FEATURES, progress=False)
    pred = m.predict(secs[1], pg, genes[:4])
    assert pred.shape == (secs[1].adata.n_obs, 4) and np.isfinite(pred).all()
    if name == "permuted-text":
        assert m.text_permutation is not None and any(k != v for k, v in m.text_permutation.items())


def test_gene_memory_trains_seen_slots_only():
    secs, pg, genes = tiny_data()
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    m = GeneshotModel("align-st", "zero-shot", {"max_epochs": 2, "genes_per_step": 6, "context_per_step": 4, "n_val_genes": 3}, **{**MODEL_CFG, "gene_memory": 1})
    m.train(secs, pg, seen_genes=genes[4:], unseen_genes=genes[:4], target=target, features=FEATURES, progress=False)
    mem = m.module.memory.weight.detach()
    assert mem.shape[0] == len(genes[4:])  # one slot per seen gene
    assert mem.abs().sum() > 0  # trained slots moved from their zero start
    gin = m._genes(pg, genes[:6])
    assert gin.ids.tolist() == [-1, -1, -1, -1, 0, 1]  # unseen genes have no slot
    assert np.isfinite(m.predict(secs[0], pg, genes[:4])).all()
