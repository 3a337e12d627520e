"""``geneshot prepare`` on real HER2+ sections C2 and C3 with a fresh cache."""

from __future__ import annotations

import json
import time

import anndata as ad
import numpy as np
import pytest
from cli_helpers import invoke

from geneshot._constants import Key
from geneshot.prepare import FeatureConfig

# default features: own patch + each larger window, each with its context-ring means
WINDOWS = 1 + len(FeatureConfig().fov_um)
DIM = 1280 * WINDOWS * (1 + len(FeatureConfig().context_um))

# Cold cost on 2 cores is dominated by nuclei (about 370 patches) and the gene texts, so
# the test keeps nuclei on and encodes the descriptions of 300 genes, not 2250.
N_GENES = 300


@pytest.mark.realdata
@pytest.mark.slow
def test_prepare_c2_c3_every_spot_has_a_patch_then_cache(her2st_dir, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["-q", "prepare", "--data", str(her2st_dir), "--dataset", "her2st", "--sections", "C2,C3"]
    args += ["--out", str(out), "--cache", str(cache), "--n-genes", str(N_GENES)]

    t0 = time.perf_counter()
    cold = invoke(args)
    t_cold = time.perf_counter() - t0
    assert cold.exit_code == 0, cold.output
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["sections"] == {"C2": 187, "C3": 180}
    assert summary["genes_described"] == N_GENES
    assert summary["cache"]["computed"]["patches"] == 2 * WINDOWS

    for name, n in (("C2", 187), ("C3", 180)):
        a = ad.read_h5ad(out / f"{name}.h5ad")
        assert a.n_obs == n
        feats = a.obsm[f"X_{FeatureConfig().image_encoder}"]
        # every spot has its own patch: finite features and no two spots alike
        assert feats.shape == (n, DIM) and np.isfinite(feats).all()
        assert len(np.unique(feats.round(4), axis=0)) == n
        assert a.obsm["nuclei_summary"].shape[0] == n
        xy = a.obsm[Key.SPATIAL]
        assert np.isfinite(xy).all() and (xy > 0).all()

    # the cached patches are complete: one 224 px patch per spot, on tissue
    patches = sorted((cache / "patches").rglob("*.npz"))
    sizes = []
    for p in patches:
        with np.load(p) as z:
            sizes.append(z["patches"].shape[0])
            assert z["patches"].shape[1:] == (224, 224, 3)
            assert z["valid"].mean() > 0.99 and z["patches"].mean() < 215
    assert sorted(sizes) == [180] * WINDOWS + [187] * WINDOWS

    t0 = time.perf_counter()
    warm = invoke(args)
    t_warm = time.perf_counter() - t0
    assert warm.exit_code == 0, warm.output
    again = json.loads((out / "prepare_summary.json").read_text())
    assert again["cache"]["computed"] == {}
    assert again["cache"]["hits"] == {
        "patches": 2 * WINDOWS,
        "image-features": 2 * WINDOWS,
        "nuclei": 2,
        "image-trunk": 2,  # the own window's activations for fine-tuning, one per section
        "sentence-embeddings": 1,
    }
    assert t_warm * 10 <= t_cold, f"cold {t_cold:.1f} s, warm {t_warm:.1f} s"
