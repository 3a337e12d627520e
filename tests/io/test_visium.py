"""Visium / Space Ranger reader on synthetic outs/ folders."""

from __future__ import annotations

import gzip
import importlib.util
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from geneshot import read
from geneshot._constants import Key
from geneshot.errors import InputError, MissingDependencyError
from geneshot.io._section import section_meta

N_SPOTS, GENES = 12, ["GA", "GB", "GC", "GA", "GD"]  # GA twice: 10x names are not unique
ANTIBODY = "CD3_TotalSeqB"
SPOT_DIAM_PX = 110.0  # 55 µm / 110 px = 0.5 µm/px


def _positions(n: int) -> pd.DataFrame:
    rows, cols = np.divmod(np.arange(n), 4)
    return pd.DataFrame(
        {
            "barcode": [f"AAAC{i:04d}-1" for i in range(n)],
            "in_tissue": (np.arange(n) % 3 != 0).astype(int),  # every third spot off tissue
            "array_row": rows,
            "array_col": cols * 2 + rows % 2,
            "pxl_row_in_fullres": 40 + rows * 60,
            "pxl_col_in_fullres": 30 + cols * 70,
        }
    )


@pytest.fixture
def counts():
    rng = np.random.default_rng(3)
    return rng.poisson(2, (N_SPOTS, len(GENES) + 1)).astype(np.int32)  # last column: antibody


def _write_h5(path, counts, barcodes) -> None:
    csc = sp.csc_matrix(counts.T)  # 10x stores features x barcodes, CSC by barcode
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["data"], g["indices"], g["indptr"] = csc.data, csc.indices, csc.indptr
        g["shape"] = np.array(csc.shape)
        g["barcodes"] = np.array(barcodes, dtype="S")
        ft = g.create_group("features")
        ft["name"] = np.array([*GENES, ANTIBODY], dtype="S")
        ft["id"] = np.array([f"ENSG{i}" for i in range(len(GENES) + 1)], dtype="S")
        ft["feature_type"] = np.array(
            ["Gene Expression"] * len(GENES) + ["Antibody Capture"], dtype="S"
        )


def _write_mtx(folder, counts, barcodes) -> None:
    folder.mkdir()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(counts.T))
    pd.Series(barcodes).to_csv(folder / "barcodes.tsv.gz", sep="\t", header=False, index=False)
    pd.DataFrame(
        {
            "id": [f"ENSG{i}" for i in range(len(GENES) + 1)],
            "name": [*GENES, ANTIBODY],
            "type": ["Gene Expression"] * len(GENES) + ["Antibody Capture"],
        }
    ).to_csv(folder / "features.tsv.gz", sep="\t", header=False, index=False)


def _outs(tmp_path, counts, *, version: int = 2, matrix: str = "h5"):
    outs = tmp_path / "sample1" / "outs"
    spatial = outs / "spatial"
    spatial.mkdir(parents=True)
    pos = _positions(N_SPOTS)
    if version == 2:
        pos.to_csv(spatial / "tissue_positions.csv", index=False)
    else:
        pos.to_csv(spatial / "tissue_positions_list.csv", index=False, header=False)
    (spatial / "scalefactors_json.json").write_text(
        json.dumps(
            {
                "spot_diameter_fullres": SPOT_DIAM_PX,
                "tissue_hires_scalef": 0.2,
                "tissue_lowres_scalef": 0.05,
            }
        )
    )
    barcodes = pos["barcode"].tolist()[::-1]  # matrix order differs from the positions order
    if matrix == "h5":
        _write_h5(outs / "filtered_feature_bc_matrix.h5", counts[::-1], barcodes)
    else:
        _write_mtx(outs / "filtered_feature_bc_matrix", counts[::-1], barcodes)
    return outs, pos


@pytest.mark.parametrize(("version", "matrix"), [(2, "h5"), (1, "mtx")])
def test_reads_in_tissue_spots(tmp_path, counts, build, version, matrix):
    outs, pos = _outs(tmp_path, counts, version=version, matrix=matrix)
    img = build.write_image(tmp_path / "full.png", size=(400, 300))
    a = read.visium(outs, image_path=img)
    keep = pos["in_tissue"] == 1
    assert a.n_obs == keep.sum() and a.n_vars == len(GENES)
    assert list(a.var_names) == ["GA", "GB", "GC", "GA-1", "GD"]  # antibody dropped, names unique
    assert set(a.obs[Key.SECTION]) == {"sample1"}  # outs/ -> the run folder's name
    got = pd.DataFrame(a.X.toarray(), index=[n.split("_", 1)[1] for n in a.obs_names])
    want = pd.DataFrame(counts[:, : len(GENES)], index=pos["barcode"]).loc[got.index]
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    p = pos.set_index("barcode").loc[got.index]
    np.testing.assert_array_equal(
        a.obsm[Key.SPATIAL], p[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy()
    )
    np.testing.assert_array_equal(a.obs[Key.ARRAY_ROW].to_numpy(), p["array_row"].to_numpy())
    meta = section_meta(a)
    assert meta[Key.MPP] == pytest.approx(55.0 / SPOT_DIAM_PX)
    sf = a.uns[Key.UNS_SPATIAL]["sample1"][Key.SCALEFACTORS]
    assert sf[Key.SPOT_DIAMETER] == pytest.approx(SPOT_DIAM_PX)
    assert sp.issparse(a.X) and a.X.dtype == np.float32


def test_without_image_is_expression_only(tmp_path, counts, caplog):
    outs, _ = _outs(tmp_path, counts)
    import logging

    with caplog.at_level(logging.INFO, logger="geneshot"):
        a = read.visium(outs, section="S1", patient="P1")
    assert section_meta(a)[Key.IMAGE_PATH] is None and "expression-only" in caplog.text
    assert set(a.obs[Key.PATIENT]) == {"P1"}


def test_spots_outside_image(tmp_path, counts, build):
    outs, _ = _outs(tmp_path, counts)
    img = build.write_image(tmp_path / "small.png", size=(100, 100))
    with pytest.raises(
        InputError, match=r"tissue_positions\.csv: .* lie outside the 100 x 100 px image small\.png"
    ):
        read.visium(outs, image_path=img)


def test_missing_scalefactors_and_bad_fields(tmp_path, counts):
    outs, _ = _outs(tmp_path, counts)
    sf = outs / "spatial" / "scalefactors_json.json"
    sf.write_text(json.dumps({"tissue_hires_scalef": 0.2}))
    with pytest.raises(
        InputError, match=r"scalefactors_json\.json: field 'spot_diameter_fullres' is missing"
    ):
        read.visium(outs)
    assert section_meta(read.visium(outs, mpp=0.5))[Key.MPP] == 0.5  # mpp= bypasses the file
    sf.unlink()
    with pytest.raises(InputError, match="scalefactors file does not exist"):
        read.visium(outs)


def test_missing_position_columns(tmp_path, counts):
    outs, pos = _outs(tmp_path, counts)
    pos.drop(columns="pxl_row_in_fullres").to_csv(
        outs / "spatial" / "tissue_positions.csv", index=False
    )
    with pytest.raises(InputError, match="missing column.*pxl_row_in_fullres"):
        read.visium(outs)


def test_broken_position_files(tmp_path, counts):
    outs, pos = _outs(tmp_path, counts)
    csv = outs / "spatial" / "tissue_positions.csv"
    csv.write_bytes(b"")
    with pytest.raises(InputError, match="tissue positions cannot be parsed \\(EmptyDataError"):
        read.visium(outs)
    bad = pos.astype(object)
    bad.loc[4, "pxl_col_in_fullres"] = "12,5"  # a decimal comma (spot 4 is in tissue)
    bad.loc[3, "pxl_col_in_fullres"] = "off"  # spot 3 is off tissue: never used, not checked
    bad.to_csv(csv, index=False)
    with pytest.raises(InputError) as err:
        read.visium(outs)
    msg = str(err.value)
    assert msg.startswith(str(csv)) and "column 'pxl_col_in_fullres' has 1 non-numeric" in msg
    assert "value '12,5'" in msg
    csv.unlink()
    with pytest.raises(InputError, match="^[^(]*no tissue_positions.csv"):  # not re-wrapped
        read.visium(outs)


def test_missing_matrix_and_folders(tmp_path, counts):
    outs, _ = _outs(tmp_path, counts)
    (outs / "filtered_feature_bc_matrix.h5").unlink()
    with pytest.raises(
        InputError,
        match="no filtered_feature_bc_matrix.h5 and no filtered_feature_bc_matrix/ folder",
    ):
        read.visium(outs)
    with pytest.raises(InputError, match="Visium folder does not exist"):
        read.visium(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"spatial: folder does not exist"):
        read.visium(tmp_path / "empty")


def test_not_a_10x_h5(tmp_path, counts):
    outs, _ = _outs(tmp_path, counts)
    with h5py.File(outs / "filtered_feature_bc_matrix.h5", "w") as f:
        f["X"] = np.zeros(3)
    with pytest.raises(InputError, match="no 'matrix' group"):
        read.visium(outs)


def test_parquet_positions(tmp_path, counts):
    outs, pos = _outs(tmp_path, counts)
    (outs / "spatial" / "tissue_positions.csv").unlink()
    if importlib.util.find_spec("pyarrow") is None:
        (outs / "spatial" / "tissue_positions.parquet").write_bytes(b"PAR1")
        with pytest.raises(MissingDependencyError, match="pip install pyarrow"):
            read.visium(outs)
    else:
        pos.to_parquet(outs / "spatial" / "tissue_positions.parquet")
        assert read.visium(outs).n_obs == (pos["in_tissue"] == 1).sum()
