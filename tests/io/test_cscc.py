"""cSCC (GSE144240) reader on GEO-layout fixtures."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from geneshot import read
from geneshot._constants import Key
from geneshot.errors import InputError
from geneshot.image._slide import SlideImage
from geneshot.io import read_dataset
from geneshot.io._cscc import CSCC_MPP_DEFAULT, estimate_st_mpp, list_cscc_sections
from geneshot.io._section import section_meta


@pytest.fixture
def cscc_root(tmp_path, build):
    return build.write_cscc(
        tmp_path / "cscc", {"P10_rep1": ".jpg.gz", "P2_rep2": ".jpg", "P2_rep1": None}
    )


def test_lists_sections_in_patient_order(cscc_root):
    assert list_cscc_sections(cscc_root) == ["P2_rep1", "P2_rep2", "P10_rep1"]


def test_reads_section_with_gzipped_image(cscc_root, build):
    a = read.cscc_section(cscc_root, "P10_rep1")
    counts, spots = build.st_tables(0)
    assert a.n_obs == len(counts) and a.n_vars == counts.shape[1]
    assert set(a.obs[Key.PATIENT]) == {"P10"} and set(a.obs[Key.SECTION]) == {"P10_rep1"}
    # counts land on the right spots: spot "2x3" is the first row of the table
    assert a.obs_names[0] == "P10_rep1_2x3"
    np.testing.assert_array_equal(a.X[0].toarray().ravel(), counts.iloc[0].to_numpy())
    np.testing.assert_allclose(a.obsm[Key.SPATIAL], spots[["pixel_x", "pixel_y"]].to_numpy())
    meta = section_meta(a)
    assert meta[Key.DATASET] == "cscc"
    # the scale is measured from the spot grid: 200 µm over 40 px
    assert meta[Key.MPP] == pytest.approx(build.st_mpp, rel=0.02)
    img = SlideImage(meta[Key.IMAGE_PATH])
    assert img.size == (320, 300) and meta[Key.IMAGE_PATH].endswith(".jpg")
    rgb, valid = img.read_window(10, 10, 8, 8)
    assert rgb.shape == (8, 8, 3) and valid.all()


def test_gz_image_is_decompressed_once(cscc_root):
    first = section_meta(read.cscc_section(cscc_root, "P10_rep1"))[Key.IMAGE_PATH]
    mtime = __import__("os").stat(first).st_mtime_ns
    again = section_meta(read.cscc_section(cscc_root, "P10_rep1"))[Key.IMAGE_PATH]
    assert again == first and __import__("os").stat(again).st_mtime_ns == mtime


def test_plain_jpg_is_used_in_place(cscc_root):
    meta = section_meta(read.cscc_section(cscc_root, "P2_rep2"))
    assert meta[Key.IMAGE_PATH] == str(next(cscc_root.glob("*P2_ST_rep2.jpg")).resolve())


def test_section_without_image_is_expression_only(cscc_root, caplog):
    with caplog.at_level(logging.INFO, logger="geneshot"):
        a = read.cscc_section(cscc_root, "P2_rep1")
    assert section_meta(a)[Key.IMAGE_PATH] is None
    assert "expression-only" in caplog.text


def test_registry_reads_all_sections(cscc_root):
    out = read_dataset("cscc", cscc_root)
    assert [a.obs[Key.SECTION].iloc[0] for a in out] == ["P2_rep1", "P2_rep2", "P10_rep1"]
    with pytest.raises(InputError, match="have no H&E image"):
        read_dataset("cscc", cscc_root, "P2_rep1", require_image=True)


def test_mpp_override(cscc_root):
    assert section_meta(read.cscc_section(cscc_root, "P2_rep2", mpp=1.5))[Key.MPP] == 1.5


def test_unknown_and_missing_sections(cscc_root):
    with pytest.raises(InputError, match=r"unknown section name 'C2'.*P2_rep1"):
        read.cscc_section(cscc_root, "C2")
    with pytest.raises(
        InputError,
        match=r"no count table .*P9_ST_rep3.*use a section present here \(P2_rep1, P2_rep2, P10_rep1\)",
    ):
        read.cscc_section(cscc_root, "P9_rep3")


def test_missing_spot_file(cscc_root):
    next(cscc_root.glob("*selection-P2_ST_rep2*")).unlink()
    with pytest.raises(InputError, match=r"no spot file .*P2_ST_rep2"):
        read.cscc_section(cscc_root, "P2_rep2")


def test_corrupt_gz_image_leaves_no_cache_entry(cscc_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GENESHOT_CACHE", str(tmp_path / "cache2"))
    img = next(cscc_root.glob("*.jpg.gz"))
    img.write_bytes(img.read_bytes()[:200])  # truncated download
    with pytest.raises(InputError, match=r"jpg\.gz: gzipped image cannot be decompressed"):
        read.cscc_section(cscc_root, "P10_rep1")
    left = [p for p in (tmp_path / "cache2").rglob("*") if p.is_file()]
    assert left == []


def test_spots_outside_image_are_rejected(cscc_root, build):
    img = next(cscc_root.glob("*P2_ST_rep2.jpg"))
    build.write_image(img, size=(60, 60))
    with pytest.raises(InputError, match="lie outside the 60 x 60 px image"):
        read.cscc_section(cscc_root, "P2_rep2")


def test_missing_folder():
    with pytest.raises(InputError, match="cSCC folder does not exist"):
        list_cscc_sections(__import__("pathlib").Path("/nonexistent/cscc"))


def test_estimate_mpp_rejects_irregular_and_tiny_grids(build, caplog, cscc_root):
    _, spots = build.st_tables(0)
    assert estimate_st_mpp(spots) == pytest.approx(build.st_mpp, rel=0.02)
    assert estimate_st_mpp(spots.iloc[:2]) is None
    shuffled = spots.assign(
        pixel_x=np.random.default_rng(1).permutation(spots["pixel_x"].to_numpy())
    )
    assert estimate_st_mpp(shuffled) is None
    # a section whose grid cannot be fitted falls back to the documented default
    f = next(cscc_root.glob("*selection-P2_ST_rep1*"))
    pd.read_csv(f, sep="\t").iloc[:2].to_csv(f, sep="\t", index=False)
    with caplog.at_level(logging.WARNING, logger="geneshot"):
        a = read.cscc_section(cscc_root, "P2_rep1")
    assert section_meta(a)[Key.MPP] == CSCC_MPP_DEFAULT and "using 0.70" in caplog.text


@pytest.mark.realdata
def test_estimate_mpp_matches_hest_on_her2st(her2st_dir):
    from geneshot.io._her2st import read_st_spotfile

    c2 = estimate_st_mpp(read_st_spotfile(her2st_dir / "ST-spotfiles" / "C2_selection.tsv"))
    a1 = estimate_st_mpp(read_st_spotfile(her2st_dir / "ST-spotfiles" / "A1_selection.tsv"))
    assert c2 == pytest.approx(0.69, abs=0.01) and a1 == pytest.approx(0.92, abs=0.01)
