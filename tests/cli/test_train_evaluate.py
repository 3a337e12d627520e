"""`geneshot train` then `geneshot evaluate` end to end on tiny synthetic sections."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, write_section


@pytest.mark.slow
def test_train_then_evaluate(tmp_path):
    # five genes in all: the paper head (the kernel head needs two training genes to fit)
    root = tmp_path / "her2st"
    for i, sec in enumerate(["C2", "C3", "C4"]):
        write_section(root, sec, n=9, seed=i)
    cache, run = tmp_path / "cache", tmp_path / "run"
    common = ["--data", str(root), "--dataset", "her2st", "--cache", str(cache)]
    res = invoke(["-q", "train", *common, "--train-sections", "C2,C3", "--model", "align-st-paper", "--n-unseen", "2", "--seen-pool", "3", "--max-epochs", "1", "--out", str(run)])
    assert res.exit_code == 0, res.output
    meta = json.loads((run / "run.json").read_text())
    assert len(meta["contract"]["unseen_genes"]) == 2 and meta["contract"]["train_sections"] == ["C2", "C3"]
    out = tmp_path / "m.json"
    res = invoke(["evaluate", "--run", str(run), *common, "--sections", "C4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads(out.read_text())
    assert summary["n_genes"] == 2 and summary["test_sections"] == ["C4"]
    assert "PCC@M" in res.output and (tmp_path / "m_per_gene.csv").exists()
    # the run's maps against its own common pattern: per gene, and by quarter of departure
    pg = pd.read_csv(tmp_path / "m_per_gene.csv", index_col=0)
    np.testing.assert_allclose(pg["gain"], pg["r_per_section"] - pg["r_common"])
    assert pg["departure"].between(0, 2).all()
    bins = summary["common_pattern"]["departure_bins"]
    assert sum(b["genes"] for b in bins) == 2 and -1 <= summary["common_pattern"]["pcc_m_per_section"] <= 1
    assert "common per-spot pattern alone" in res.output
    # evaluating on a training section is allowed but flagged
    res = invoke(["evaluate", "--run", str(run), *common, "--sections", "C2", "--out", str(tmp_path / "t.json")])
    assert "were training sections" in res.output


def test_evaluate_rejects_a_folder_that_is_not_a_run(tmp_path):
    root = write_section(tmp_path / "her2st", "C2")
    res = invoke(["evaluate", "--run", str(tmp_path), "--data", str(root), "--sections", "C2", "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 2
    assert "not a geneshot run folder" in res.output
    assert not (tmp_path / "m.json").exists()
