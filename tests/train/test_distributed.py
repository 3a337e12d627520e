"""Two gloo processes on CPU train the same model as one process with two slides per step."""

from __future__ import annotations

import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from geneshot.data import TargetTransform
from geneshot.io import make_section
from geneshot.prepare import PreparedGenes, PreparedSection

TRAIN_CFG = {"max_epochs": 1, "slides_per_step": 2, "patience": 100, "genes_per_step": 6, "context_per_step": 4, "n_val_genes": 3}
MODEL_CFG = {"dropout": 0.0, "n_text_layers": 1, "d_model": 16, "n_heads": 2, "use_ndaife": False}


def tiny_data(seed: int = 0) -> tuple[list[PreparedSection], PreparedGenes, list[str]]:
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(20)]
    sections = []
    for s in range(4):
        n = 16
        rows, cols = np.divmod(np.arange(n), 4)
        ids = [f"{c}x{r}" for r, c in zip(rows, cols)]
        counts = pd.DataFrame(rng.poisson(4, (n, len(genes))), index=ids, columns=genes)
        spots = pd.DataFrame({"pixel_x": cols * 10.0, "pixel_y": rows * 10.0, "array_row": rows, "array_col": cols}, index=ids)
        a = make_section(counts, spots, section=f"S{s}", patient="P", dataset="toy", image_path=None, mpp=None, spot_diameter_um=100)
        sections.append(PreparedSection(adata=a, image=rng.normal(size=(n, 8)).astype(np.float32)))
    tokens = rng.normal(size=(len(genes), 5, 6)).astype(np.float32)
    pg = PreparedGenes(symbols=genes, texts={g: g for g in genes}, pooled=tokens.mean(1), tokens=tokens, mask=np.ones((len(genes), 5), bool), encoder="toy")
    return sections, pg, genes


def train_once() -> dict[str, torch.Tensor]:
    from geneshot.train import GeneshotModel

    torch.set_num_threads(1)
    secs, pg, genes = tiny_data()
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    m = GeneshotModel("align-st", "zero-shot", TRAIN_CFG, **MODEL_CFG)
    m.train(secs, pg, seen_genes=genes[4:], unseen_genes=genes[:4], target=target, features={}, progress=False)
    return {k: v.detach().clone() for k, v in m.module.state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        state = train_once()
        if rank == 0:
            torch.save(state, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_match_single_process(tmp_path):
    single = train_once()
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    assert single.keys() == ddp.keys()
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")
    # and training moved the weights at all (the comparison is not vacuous)
    from geneshot.models import create_model

    fresh = create_model("align-st", **{**MODEL_CFG, "d_img": 8, "d_text": 6}).state_dict()
    assert any(not torch.allclose(fresh[k], single[k]) for k in single if fresh[k].dtype.is_floating_point)
