"""HEST-1k layout and generic AnnData readers."""

from __future__ import annotations

import json
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tifffile

from geneshot import read
from geneshot._constants import Key
from geneshot.errors import InputError
from geneshot.io import list_hest_samples
from geneshot.io._section import section_meta


def _adata(n: int = 10, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    a = ad.AnnData(
        X=sp.csr_matrix(rng.poisson(2, (n, 4)).astype(np.float32)),
        obs=pd.DataFrame(
            {
                "in_tissue": [1] * (n - 2) + [0, 0],
                "array_row": np.arange(n) // 5,
                "array_col": np.arange(n) % 5,
            },
            index=[f"s{i}" for i in range(n)],
        ),
        var=pd.DataFrame(index=["A", "B", "C", "D"]),
    )
    a.obsm["spatial"] = np.c_[20 + 10 * (np.arange(n) % 5), 15 + 12 * (np.arange(n) // 5)].astype(
        float
    )
    return a


@pytest.fixture
def hest_root(tmp_path):
    root = tmp_path / "hest"
    for d in ("st", "wsis", "metadata"):
        (root / d).mkdir(parents=True)
    _adata().write_h5ad(root / "st" / "TENX1.h5ad")
    tifffile.imwrite(
        root / "wsis" / "TENX1.tif", np.full((80, 90, 3), 200, np.uint8), photometric="rgb"
    )
    meta = {
        "pixel_size_um_estimated": 0.5,
        "patient": "Pt7",
        "st_technology": "Visium",
        "spot_diameter": 55.0,
    }
    (root / "metadata" / "TENX1.json").write_text(json.dumps(meta))
    _adata(seed=1).write_h5ad(root / "st" / "SPA1.h5ad")
    (root / "metadata" / "SPA1.json").write_text(
        json.dumps({"st_technology": "Spatial Transcriptomics"})
    )
    return root


def test_hest_sample_with_wsi(hest_root):
    a = read.hest(hest_root, "TENX1")
    assert a.n_obs == 8  # in_tissue == 0 spots dropped
    assert set(a.obs[Key.PATIENT]) == {"Pt7"} and set(a.obs[Key.SECTION]) == {"TENX1"}
    meta = section_meta(a)
    assert (
        meta[Key.MPP] == 0.5
        and meta[Key.DATASET] == "hest"
        and meta[Key.IMAGE_PATH].endswith("TENX1.tif")
    )
    assert a.uns[Key.UNS_SPATIAL]["TENX1"][Key.SCALEFACTORS][Key.SPOT_DIAMETER] == pytest.approx(
        110.0
    )
    np.testing.assert_array_equal(a.obsm[Key.SPATIAL], _adata().obsm["spatial"][:8])
    np.testing.assert_array_equal(a.X.toarray(), _adata().X.toarray()[:8])


def test_hest_sample_without_wsi_is_expression_only(hest_root, caplog):
    with caplog.at_level(logging.INFO, logger="geneshot"):
        a = read.hest(hest_root, "SPA1")
    assert section_meta(a)[Key.IMAGE_PATH] is None and "expression-only" in caplog.text
    assert set(a.obs[Key.PATIENT]) == {"SPA1"}
    assert list_hest_samples(hest_root) == ["SPA1", "TENX1"]


def test_hest_errors(hest_root):
    with pytest.raises(
        InputError,
        match=r"TENX9\.h5ad: no expression file for sample 'TENX9'. Fix: use one of: SPA1, TENX1",
    ):
        read.hest(hest_root, "TENX9")
    (hest_root / "metadata" / "TENX1.json").write_text(json.dumps({"patient": "Pt7"}))
    with pytest.raises(InputError, match="field 'pixel_size_um_estimated' is missing"):
        read.hest(hest_root, "TENX1")
    assert section_meta(read.hest(hest_root, "TENX1", mpp=0.25))[Key.MPP] == 0.25
    (hest_root / "metadata" / "TENX1.json").write_text("{not json")
    with pytest.raises(InputError, match="TENX1.json: not valid JSON"):
        read.hest(hest_root, "TENX1")


def test_anndata_object_uses_counts_layer(build, tmp_path):
    a = _adata()
    a.layers[Key.COUNTS] = a.X.copy()
    a.X = a.X.toarray() * 0.5 - 1  # normalised values in X must be ignored
    img = build.write_image(tmp_path / "he.png", size=(100, 100))
    s = read.anndata(a, image_path=img, mpp=0.5, section="mine")
    assert s.n_obs == 8 and (s.X.toarray() >= 0).all()
    np.testing.assert_array_equal(s.X.toarray(), _adata().X.toarray()[:8])
    assert set(s.obs[Key.SECTION]) == {"mine"} and section_meta(s)[Key.DATASET] == "user"


def test_anndata_path_and_roundtrip_of_a_section(build, tmp_path):
    img = build.write_image(tmp_path / "he.png", size=(100, 100))
    first = read.anndata(_adata(), image_path=img, mpp=0.5, section="S9")
    first.write_h5ad(tmp_path / "s9.h5ad")
    # a geneshot section re-reads with its own image, scale and ids
    again = read.anndata(tmp_path / "s9.h5ad")
    assert section_meta(again)[Key.IMAGE_PATH] == str(img.resolve())
    assert section_meta(again)[Key.MPP] == 0.5 and set(again.obs[Key.SECTION]) == {"S9"}
    sf = again.uns[Key.UNS_SPATIAL]["S9"][Key.SCALEFACTORS][Key.SPOT_DIAMETER]
    assert sf == pytest.approx(
        first.uns[Key.UNS_SPATIAL]["S9"][Key.SCALEFACTORS][Key.SPOT_DIAMETER]
    )


def test_anndata_without_grid_or_image(caplog):
    a = _adata()
    del a.obs["array_row"], a.obs["array_col"]
    with caplog.at_level(logging.INFO, logger="geneshot"):
        s = read.anndata(a)
    assert (s.obs[Key.ARRAY_ROW] == -1).all() and section_meta(s)[Key.IMAGE_PATH] is None
    assert "expression-only" in caplog.text


def test_anndata_errors(build, tmp_path):
    img = build.write_image(tmp_path / "he.png", size=(100, 100))
    a = _adata()
    del a.obsm["spatial"]
    with pytest.raises(InputError, match=r"obsm\[\"spatial\"\] is missing"):
        read.anndata(a)
    with pytest.raises(InputError, match="microns per pixel of the image is unknown.*pass mpp="):
        read.anndata(_adata(), image_path=img)
    neg = _adata()
    neg.X = neg.X.toarray() - 5
    with pytest.raises(InputError, match="X: count matrix has negative values"):
        read.anndata(neg)
    nan = _adata()
    nan.X = nan.X.toarray()
    nan.X[0, 0] = np.nan
    with pytest.raises(InputError, match="1 NaN or infinite values"):
        read.anndata(nan)
    with pytest.raises(InputError, match="AnnData file does not exist"):
        read.anndata(tmp_path / "missing.h5ad")
    (tmp_path / "bad.h5ad").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match=r"bad\.h5ad: not a readable \.h5ad file"):
        read.anndata(tmp_path / "bad.h5ad")
    with pytest.raises(InputError, match="not a plausible scale"):
        read.anndata(_adata(), image_path=img, mpp=500)
    dup = _adata()
    dup.obs_names = ["s0"] * dup.n_obs
    with pytest.raises(InputError, match="duplicated spot ids"):
        read.anndata(dup)
