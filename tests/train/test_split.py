"""``workflow.split_and_describe``: the one gene-split rule, equal to the former inline recipe."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import geneshot.workflow as wf
from geneshot.io import make_section
from geneshot.prepare import FeatureConfig, PreparedGenes, PreparedSection


def sections() -> list[PreparedSection]:
    rng = np.random.default_rng(0)
    genes = [f"G{i:02d}" for i in range(30)]
    means = np.linspace(300, 0, len(genes))  # G00 most expressed; the last gene never seen
    out = []
    for s in range(2):
        ids = [f"{i}x1" for i in range(40)]
        counts = pd.DataFrame(rng.poisson(means, (40, len(genes))), index=ids, columns=genes)
        spots = pd.DataFrame(
            {
                "pixel_x": np.arange(40.0),
                "pixel_y": 1.0,
                "array_row": 1,
                "array_col": np.arange(40),
            },
            index=ids,
        )
        a = make_section(
            counts,
            spots,
            section=f"S{s}",
            patient="P",
            dataset="toy",
            image_path=None,
            mpp=None,
            spot_diameter_um=100,
        )
        out.append(PreparedSection(adata=a, image=np.zeros((40, 2), np.float32)))
    return out


def fake_genes(undescribed: set[str]):
    """Stand-in for genes_for: describes every gene of the split except ``undescribed``."""

    def genes_for(split, features, *, cache, progress=True):
        syms = [g for g in split.unseen + split.seen if g not in undescribed]
        z = np.zeros((len(syms), 3), np.float32)
        return PreparedGenes(
            symbols=syms,
            texts={g: g for g in syms},
            pooled=z,
            tokens=z[:, None],
            mask=np.ones((len(syms), 1), bool),
            encoder="toy",
        )

    return genes_for


@pytest.mark.parametrize("unseen", [None, ["G05", "G01"]])
@pytest.mark.parametrize("undescribed", [set(), {"G02", "G09", "G12"}])
def test_split_and_describe_equals_the_former_recipe(monkeypatch, unseen, undescribed):
    monkeypatch.setattr(wf, "genes_for", fake_genes(undescribed))
    train = sections()
    # the recipe the CLI, the benchmark and the tuning script each used to inline
    old = wf.split_genes(train, n_unseen=4, seen_pool=10, unseen=unseen)
    genes = wf.genes_for(old, FeatureConfig(), cache=None)
    old.seen = [g for g in old.seen if g in set(genes.symbols)]

    split, genes2 = wf.split_and_describe(
        train, FeatureConfig(), cache=None, n_unseen=4, seen_pool=10, unseen=unseen
    )
    assert split.to_dict() == old.to_dict()
    assert genes2.symbols == genes.symbols
    assert not set(split.seen) & undescribed and not set(split.seen) & set(split.unseen)
    if unseen is None:
        assert split.unseen == ["G00", "G01", "G02", "G03"]  # undescribed G02 stays a test gene
    assert len(split.seen) == 10 - len(
        undescribed & {f"G{i:02d}" for i in range(4, 14)} - set(split.unseen)
    )
