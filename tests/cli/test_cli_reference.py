"""`geneshot train --model ref-impute|gene-kernel+ref --reference REF.h5ad`, then evaluate / predict with the check."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_clean_failure, edit_counts, invoke, write_section

# real symbols (the shipped gene table describes them), driven by two hidden programmes
SYMBOLS = [
    "ERBB2", "KRT19", "ACTB", "CD74", "GAPDH", "EEF1A1", "TPT1", "RPLP0", "FTL", "FTH1",
    "MGP", "COL1A1", "COL1A2", "COL3A1", "SPARC", "IGKC", "KRT8", "KRT18", "TMSB4X", "B2M",
]  # fmt: skip


def _counts(rng, n):
    h = rng.normal(size=(n, 2))
    w = rng.normal(size=(2, len(SYMBOLS)))
    return rng.poisson(np.exp(2.0 + 0.5 * h @ w)).astype(np.int64)


def _data(tmp_path):
    root = tmp_path / "her2st"
    rng = np.random.default_rng(0)
    for i, sec in enumerate(["C2", "C3", "C4"]):
        write_section(root, sec, n=15, seed=i, img_size=(400, 500))
        edit_counts(
            root,
            sec,
            lambda df: pd.DataFrame(_counts(rng, len(df)), index=df.index, columns=SYMBOLS),
        )
    X = _counts(rng, 300)
    obs = pd.DataFrame({"patient": ["D"] * 150 + ["E"] * 150}, index=[f"r{i}" for i in range(300)])
    ref = tmp_path / "ref.h5ad"
    ad.AnnData(X=X.astype(np.float32), obs=obs, var=pd.DataFrame(index=SYMBOLS)).write_h5ad(ref)
    return root, ref


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ref-impute", "gene-kernel+ref"])
def test_train_evaluate_predict_with_a_reference(tmp_path, model):
    root, ref = _data(tmp_path)
    cache, run = tmp_path / "cache", tmp_path / "run"
    common = ["--data", str(root), "--dataset", "her2st", "--cache", str(cache)]
    train = [
        "-q",
        "train",
        *common,
        "--train-sections",
        "C2,C3",
        "--setting",
        "zero-shot",
        "--model",
        model,
        "--n-unseen",
        "4",
        "--seen-pool",
        "16",
    ]
    # a model that needs a reference refuses to train without one, writing nothing
    assert_clean_failure(invoke([*train, "--out", str(run)]), "needs --reference", out=run)
    res = invoke([*train, "--reference", str(ref), "--out", str(run)])
    assert res.exit_code == 0, res.output
    meta = json.loads((run / "run.json").read_text())
    rec = meta["contract"]["reference"]
    assert rec["samples"] == ["D", "E"] and rec["n_obs"] == 300 and rec["n_genes"] == len(SYMBOLS)
    out = tmp_path / "m.json"
    res = invoke(
        [
            "evaluate",
            "--run",
            str(run),
            *common,
            "--sections",
            "C4",
            "--genes",
            "unseen",
            "--targets",
            "libsize",
            "--reference",
            str(ref),
            "--out",
            str(out),
        ]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(out.read_text())
    assert summary["n_genes"] == 4 and np.isfinite(summary["per_section"]["pcc_m"])
    # a different reference file is refused in one line, nothing written
    other = tmp_path / "other.h5ad"
    a = ad.read_h5ad(ref)
    a.X = a.X + 1
    a.write_h5ad(other)
    out2 = tmp_path / "o" / "m.json"
    assert_clean_failure(
        invoke(
            [
                "evaluate",
                "--run",
                str(run),
                *common,
                "--sections",
                "C4",
                "--reference",
                str(other),
                "--out",
                str(out2),
            ]
        ),
        "reference differs from the run's",
        out=out2.parent,
    )
    pred = tmp_path / "p" / "pred.h5ad"

    def predict(genes: str, reference):
        args = ["predict", "--run", str(run), *common, "--sections", "C4", "--genes", genes]
        return invoke([*args, "--reference", str(reference), "--out", str(pred)])

    assert_clean_failure(predict("ERBB2", other), "reference differs", out=pred.parent)
    # with the run's reference, any gene it measured is predicted (here one never trained on)
    res = predict("ERBB2,COL1A1", ref)
    assert res.exit_code == 0, res.output
    out_adata = ad.read_h5ad(pred)
    assert list(out_adata.var_names) == ["ERBB2", "COL1A1"]
    assert np.isfinite(np.asarray(out_adata.X)).all()


def test_a_bad_reference_is_one_line(tmp_path):
    root = write_section(tmp_path / "her2st", "C2")
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    run = tmp_path / "run"
    res = invoke(
        [
            "train",
            "--data",
            str(root),
            "--dataset",
            "her2st",
            "--cache",
            str(tmp_path / "c"),
            "--train-sections",
            "C2",
            "--model",
            "ref-impute",
            "--reference",
            str(bad),
            "--out",
            str(run),
        ]
    )
    assert_clean_failure(res, str(bad), "not an .h5ad", out=run)
