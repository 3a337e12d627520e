"""``geneshot prepare`` end to end on a tiny section, and ``geneshot cache info|clear``.

Real offline encoders (effnet-lite0 in ONNX Runtime, MiniLM) and the scikit-image nuclei
step run on a 12-spot synthetic section; the second run must come from the cache.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from cli_helpers import GENES, files_under, invoke, write_section

from geneshot._constants import Key
from geneshot.prepare import FeatureConfig

# default features: own patch + each larger window, each with its context-ring means
WINDOWS = 1 + len(FeatureConfig().fov_um)
ENC = FeatureConfig().image_encoder
DIM = 1280 * WINDOWS * (1 + len(FeatureConfig().context_um))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """Two imaged sections and a cache shared by the tests of this module."""
    root = tmp_path_factory.mktemp("prepare")
    data = write_section(root / "her2st", "C2", n=12, seed=0)
    write_section(data, "C3", n=9, seed=1)
    return {"data": data, "cache": root / "cache", "root": root}


def run_prepare(ws: dict[str, Path], out: Path, *extra: str):
    args = ["prepare", "--data", str(ws["data"]), "--sections", "C2,C3", "--out", str(out)]
    return invoke(["-q", *args, "--cache", str(ws["cache"]), *extra])


@pytest.mark.slow
def test_prepare_end_to_end_then_from_cache(workspace):
    out = workspace["root"] / "out"
    t0 = time.perf_counter()
    cold = run_prepare(workspace, out)
    t_cold = time.perf_counter() - t0
    assert cold.exit_code == 0, cold.output
    assert sorted(files_under(out)) == ["C2.h5ad", "C3.h5ad", "prepare_summary.json"]

    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["sections"] == {"C2": 12, "C3": 9} and summary["spots"] == 21
    assert summary["genes_in_universe"] == len(GENES) and summary["genes_described"] == len(GENES)
    assert summary["image_feature_dim"] == DIM
    assert summary["features"]["image_encoder"] == ENC and summary["features"]["nuclei"]
    computed = summary["cache"]["computed"]
    for step in ("patches", "image-features"):
        assert computed[step] == 2 * WINDOWS, computed  # one entry per section and window
    assert computed["nuclei"] == 2, computed  # nuclei of the own patch only
    assert computed["image-trunk"] == 2, computed  # fine-tuning input: the own patch only
    assert computed["sentence-embeddings"] == 1  # the go-tokens gene encoder's term vectors
    assert summary["cache"]["hits"] == {}

    a = ad.read_h5ad(out / "C2.h5ad")
    assert a.shape == (12, len(GENES)) and list(a.var_names) == sorted(GENES)
    feats = a.obsm[f"X_{ENC}"]
    assert feats.shape == (12, DIM) and np.isfinite(feats).all() and feats.std(0).max() > 0
    nuc = a.obsm["nuclei_summary"]
    assert nuc.shape[0] == 12 and np.isfinite(nuc).all() and nuc.any()
    assert a.uns[Key.UNS_SPATIAL]["C2"][Key.METADATA][Key.MPP] == pytest.approx(0.69)

    t0 = time.perf_counter()
    warm = run_prepare(workspace, out)
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
    np.testing.assert_array_equal(ad.read_h5ad(out / "C2.h5ad").obsm[f"X_{ENC}"], feats)
    assert t_warm < t_cold / 3, (t_cold, t_warm)
    assert "0 computed" in warm.output and "prepared 21 spots in 2 sections (C2, C3)" in warm.output


@pytest.mark.slow
def test_failed_write_leaves_no_output(workspace, monkeypatch):
    """A crash while writing the second section removes the first one too."""
    out = workspace["root"] / "out-crash"
    calls = []
    real_write = ad.AnnData.write_h5ad

    def flaky(self, filename, *args, **kw):
        calls.append(filename)
        if len(calls) == 2:
            Path(filename).write_bytes(b"half")
            raise OSError("No space left on device")
        return real_write(self, filename, *args, **kw)

    monkeypatch.setattr(ad.AnnData, "write_h5ad", flaky)
    res = run_prepare(workspace, out, "--no-nuclei")
    assert res.exit_code != 0 and isinstance(res.exception, OSError)
    assert len(calls) == 2
    assert files_under(out) == []


def test_cache_info_and_clear(tmp_path):
    from geneshot.cache import Cache

    cache = Cache(tmp_path / "c")
    cache.arrays("patches", {"a": 1}, lambda: {"x": np.zeros(1000, np.float32)})
    cache.arrays("nuclei", {"a": 1}, lambda: {"x": np.zeros(10, np.float32)})
    cache.arrays("nuclei", {"a": 2}, lambda: {"x": np.zeros(10, np.float32)})

    info = invoke(["cache", "info", "--cache", str(cache.root)])
    assert info.exit_code == 0, info.output
    assert f"cache: {cache.root}" in info.output
    lines = {ln.split()[0]: ln.split() for ln in info.output.splitlines()[1:]}
    assert lines["patches"][1] == "1" and lines["nuclei"][1] == "2" and "total" in lines

    # without --yes it asks; answering no keeps everything
    kept = invoke(["cache", "clear", "--cache", str(cache.root)], input="n\n")
    assert kept.exit_code == 1 and set(cache.info()) == {"patches", "nuclei"}

    one = invoke(["cache", "clear", "--kind", "nuclei", "--yes", "--cache", str(cache.root)])
    assert one.exit_code == 0 and "freed" in one.output
    assert set(cache.info()) == {"patches"}

    everything = invoke(["cache", "clear", "--yes", "--cache", str(cache.root)])
    assert everything.exit_code == 0 and cache.info() == {}
    empty = invoke(["cache", "info", "--cache", str(cache.root)])
    assert "(empty)" in empty.output


def test_cache_info_uses_env(tmp_path, monkeypatch):
    monkeypatch.setenv("GENESHOT_CACHE", str(tmp_path / "env-cache"))
    res = invoke(["cache", "info"])
    assert res.exit_code == 0 and f"cache: {tmp_path / 'env-cache'}" in res.output
