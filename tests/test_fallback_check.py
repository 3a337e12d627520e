"""scripts/fallback_check.py on a tiny synthetic benchmark folder."""

import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fallback_check.py"
GENES = [f"G{i}" for i in range(8)]


@pytest.fixture()
def run(tmp_path):
    rng = np.random.default_rng(0)
    for fold in ("f0", "f1"):
        d = tmp_path / "folds" / fold
        d.mkdir(parents=True)
        (d / "fold.json").write_text(json.dumps({"fold": fold}))
        m = rng.normal(size=40)
        depth = np.repeat(m[:, None], len(GENES), axis=1)
        model = depth.copy()
        model[:, 4:] = rng.normal(size=(40, 4))  # genes 4-7 leave depth's map; 0-3 keep it
        np.savez(d / "depth__libsize__a.npz", pred_S1=depth, genes=np.array(GENES), fit_s=1.0)
        np.savez(d / "m__libsize__b.npz", pred_S1=model, genes=np.array(GENES), fit_s=1.0)
    (tmp_path / "per_gene").mkdir()
    r_depth = np.full(8, 0.1)
    r_model = np.r_[np.full(4, 0.1), np.full(4, 0.5)]
    for name, r in (("depth", r_depth), ("m", r_model)):
        pd.DataFrame({"gene": GENES, "r_per_section": r, "n_folds": 2}).to_csv(
            tmp_path / "per_gene" / f"{name}__libsize__libsize.csv", index=False
        )
    return tmp_path, runpy.run_path(str(SCRIPT))


def test_departure_reads_predictions_against_depth(run):
    out, mod = run
    d = mod["departure"](out, "m")
    np.testing.assert_allclose(d[GENES[:4]], 0.0, atol=1e-12)  # same map as depth
    assert (d[GENES[4:]] > 0.5).all()  # unrelated maps


def test_bins_put_the_fallback_genes_at_depth(run):
    out, mod = run
    table, points = mod["bins"](out, "m", "libsize", "libsize", 2)
    assert table["genes"].tolist() == [4, 4]
    assert table["mean_diff_r"].tolist() == pytest.approx([0.0, 0.4])
    assert table["n_below_depth"].tolist() == [0, 0]
    assert len(points) == 8


def test_main_writes_the_table_and_the_picture(run, capsys):
    out, mod = run
    assert (
        mod["main"]([str(out), "--methods", "m", "--bins", "2", "--png", str(out / "f.png")]) == 0
    )
    assert "| m " in capsys.readouterr().out and (out / "f.png").is_file()
