"""Bad input to ``geneshot prepare``: exit code 2, one line naming file, field and fix.

Each case runs the real command on a tiny HER2+-layout folder and checks that neither the
output folder nor the cache is left with a half-written file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from cli_helpers import (
    assert_clean_failure,
    counts_path,
    edit_counts,
    image_path,
    invoke,
    spot_path,
    write_section,
)

import geneshot.read
from geneshot.errors import InputError


def prepare(data: Path, tmp_path: Path, *extra: str):
    """Run ``geneshot prepare`` (no nuclei, no progress) with a private cache and --out."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["prepare", "--data", str(data), "--out", str(out), "--cache", str(cache)]
    res = invoke([*args, "--no-nuclei", "--quiet", *extra])
    return res, out, cache


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nowhere" / "her2st"
    res, out, cache = prepare(missing, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res, str(missing), "does not exist", "geneshot data fetch", out=out, cache=cache
    )


def test_missing_data_and_no_env(tmp_path, monkeypatch):
    monkeypatch.delenv("GENESHOT_DATA", raising=False)
    out = tmp_path / "out"
    res = invoke(["prepare", "--out", str(out), "--cache", str(tmp_path / "c"), "--quiet"])
    assert_clean_failure(res, "--data", "GENESHOT_DATA", out=out)


def test_missing_count_table(her2st, tmp_path):
    counts_path(her2st).unlink()
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res, str(counts_path(her2st)), "count table does not exist", out=out, cache=cache
    )


def test_missing_spot_file(her2st, tmp_path):
    spot_path(her2st).unlink()
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res, str(spot_path(her2st)), "spot file does not exist", out=out, cache=cache
    )


def test_truncated_image(her2st, tmp_path):
    # the header survives, so the image opens; decoding the pixels fails during patch extraction
    img = image_path(her2st)
    raw = img.read_bytes()
    img.write_bytes(raw[: len(raw) // 2])
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(res, str(img), "truncated", "re-download", out=out, cache=cache)
    # nothing about the patches was cached
    assert not (cache / "patches").exists()


def test_unreadable_image(her2st, tmp_path):
    img = image_path(her2st)
    img.write_bytes(b"this is not a JPEG")
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res, str(img), "not a readable image", "JPEG, PNG or TIFF", out=out, cache=cache
    )


def test_non_numeric_counts(her2st, tmp_path):
    def edit(df):
        df = df.astype(object)
        df.loc["2x1", "ACTB"] = "abc"
        return df

    edit_counts(her2st, "C2", edit)
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    line = assert_clean_failure(
        res,
        str(counts_path(her2st)),
        "non-numeric",
        "'2x1'",
        "'ACTB'",
        "'abc'",
        out=out,
        cache=cache,
    )
    assert "1 non-numeric or NaN" in line


def test_nan_counts(her2st, tmp_path):
    def edit(df):
        df = df.astype(float)
        df.loc["3x2", "KRT19"] = np.nan
        df.loc["1x3", "CD74"] = np.nan
        return df

    edit_counts(her2st, "C2", edit)
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    line = assert_clean_failure(
        res, str(counts_path(her2st)), "2 non-numeric or NaN", "gene 'KRT19'", out=out, cache=cache
    )
    assert "value nan" in line  # not numpy's repr
    # a bad table is never cached, so the second run fails the same way
    res2, _, _ = prepare(her2st, tmp_path, "--sections", "C2")
    assert res2.exit_code == 2 and res2.stderr == res.stderr


def test_spot_ids_do_not_join(her2st, tmp_path):
    edit_counts(
        her2st, "C2", lambda df: df.set_axis([f"{i + 50}x{i + 50}" for i in range(len(df))])
    )
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res,
        str(spot_path(her2st)),
        "no spot id joins",
        "12 count rows, 12 spot rows",
        "'50x50'",
        out=out,
        cache=cache,
    )


def test_duplicated_spot_ids(her2st, tmp_path):
    edit_counts(her2st, "C2", lambda df: df.set_axis([*df.index[:-2], df.index[0], df.index[1]]))
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res, str(counts_path(her2st)), "2 duplicated spot ids", "'1x1'", out=out, cache=cache
    )


def test_duplicated_spot_file_rows(her2st, tmp_path):
    spots = pd.read_csv(spot_path(her2st), sep="\t")
    pd.concat([spots, spots.iloc[[3]]]).to_csv(spot_path(her2st), sep="\t", index=False)
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res, str(spot_path(her2st)), "1 duplicated spot ids", "'1x2'", out=out, cache=cache
    )


def test_coordinates_outside_image(her2st, tmp_path):
    spots = pd.read_csv(spot_path(her2st), sep="\t")
    spots.loc[4, "pixel_y"] = 9000.0
    spots.to_csv(spot_path(her2st), sep="\t", index=False)
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res,
        str(spot_path(her2st)),
        "1 of 12 spots lie outside the 400 x 300 px image",
        "y=9000",
        "pixel_x",
        out=out,
        cache=cache,
    )


def test_empty_section(her2st, tmp_path):
    edit_counts(her2st, "C2", lambda df: df.iloc[:0])
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res,
        str(counts_path(her2st)),
        "count table is empty (0 spots x 5 genes)",
        out=out,
        cache=cache,
    )


@pytest.mark.parametrize("name", ["C9", "Z1"])
def test_unknown_section(her2st, tmp_path, name):
    res, out, cache = prepare(her2st, tmp_path, "--sections", f"C2,{name}")
    assert_clean_failure(
        res,
        str(her2st),
        f"unknown section(s) {name}",
        "use sections among: C2",
        out=out,
        cache=cache,
    )


def test_unknown_dataset(her2st, tmp_path):
    res, out, cache = prepare(her2st, tmp_path, "--dataset", "visium-hd")
    assert_clean_failure(res, "unknown dataset 'visium-hd'", "cscc", "her2st", out=out, cache=cache)


def test_failure_after_a_good_section_writes_nothing(her2st, tmp_path):
    """C2 is fine, C3's image is truncated: no C2.h5ad, no summary."""
    write_section(her2st, "C3", seed=1)
    img = image_path(her2st, "C3")
    raw = img.read_bytes()
    img.write_bytes(raw[: len(raw) // 2])
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2,C3")
    assert_clean_failure(res, str(img), "truncated", out=out, cache=cache)
    # C2's patches were done before C3 failed; they are a complete cache entry
    assert len(list((cache / "patches").rglob("*.npz"))) == 1


@pytest.mark.parametrize("mpp", [0.0, 1e6, float("nan")])
def test_nonsense_microns_per_pixel(tmp_path, mpp):
    """No command takes µm/px, so the readers that do are checked directly."""
    root = write_section(tmp_path / "her2st")
    a = geneshot.read.her2st(root, "C2")
    h5ad = tmp_path / "section.h5ad"
    ad.AnnData(X=a.X, obs=a.obs[[]], var=a.var, obsm={"spatial": a.obsm["spatial"]}).write_h5ad(
        h5ad
    )
    with pytest.raises(InputError) as err:
        geneshot.read.anndata(h5ad, image_path=image_path(root), mpp=mpp)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(h5ad) in msg and "microns per pixel" in msg and "not a plausible scale" in msg
    assert "Fix: give µm per full-resolution pixel" in msg


def _run_module(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_real_process_exit_code_and_no_traceback(her2st, tmp_path):
    """`python -m geneshot.cli` and `python -m geneshot` in a fresh interpreter."""
    counts_path(her2st).unlink()
    out = tmp_path / "out"
    env = {**os.environ, "GENESHOT_CACHE": str(tmp_path / "cache")}
    args = ["prepare", "--data", str(her2st), "--sections", "C2", "--out", str(out), "--quiet"]
    for module in ("geneshot.cli", "geneshot"):
        proc = _run_module([module, *args], env)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(
            f"error: {counts_path(her2st)}: count table does not exist"
        )
        assert proc.stdout == ""
        assert not out.exists()
    env.pop("GENESHOT_DATA", None)
    proc = _run_module(["geneshot", "prepare", "--out", str(out)], env)
    assert (
        proc.returncode == 2 and "Traceback" not in proc.stderr and "GENESHOT_DATA" in proc.stderr
    )
