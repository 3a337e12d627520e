"""Bad input to ``geneshot prepare``: exit code 2, one line naming file, field and fix.

Each case runs the real command on a tiny HER2+-layout folder and checks that neither the
output folder nor the cache is left with a half-written file.
"""

from __future__ import annotations

import gzip
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
from PIL import Image

import geneshot.read
from geneshot.errors import InputError


def prepare(data: Path, tmp_path: Path, *extra: str):
    """Run ``geneshot prepare`` (no nuclei, no progress) with a private cache and --out."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["prepare", "--data", str(data), "--out", str(out), "--cache", str(cache)]
    res = invoke(["-q", *args, "--no-nuclei", *extra])
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
    res = invoke(["-q", "prepare", "--out", str(out), "--cache", str(tmp_path / "c")])
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
    # --dataset is a click Choice: rejected while parsing, before anything is read or written
    assert res.exit_code == 2 and "'visium-hd' is not one of 'cscc', 'her2st'" in res.output
    assert "Traceback" not in res.output and not out.exists() and not cache.exists()


def test_failure_after_a_good_section_writes_nothing(her2st, tmp_path):
    """C2 is fine, C3's image is truncated: no C2.h5ad, no summary."""
    write_section(her2st, "C3", seed=1)
    img = image_path(her2st, "C3")
    raw = img.read_bytes()
    img.write_bytes(raw[: len(raw) // 2])
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2,C3")
    assert_clean_failure(res, str(img), "truncated", out=out, cache=cache)
    # C2's patches (the spot window and each larger one) were done before C3 failed; they
    # are complete cache entries
    from geneshot.prepare import FeatureConfig

    assert len(list((cache / "patches").rglob("*.npz"))) == 1 + len(FeatureConfig().fov_um)


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
    args = ["-q", "prepare", "--data", str(her2st), "--sections", "C2", "--out", str(out)]
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


# ---------------------------------------------------------------------------- broken files
# Each case breaks one file of section C2 the way downloads and hand edits break files.
# pandas, gzip, PIL and tifffile report these with a dozen exception types; the readers
# must turn every one into the same one-line error naming the file.


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode())


COUNT_CASES = {
    "zero_bytes": (lambda p: p.write_bytes(b""), "count table is empty (0 bytes)"),
    "gzip_of_nothing": (lambda p: p.write_bytes(_gz("")), "count table holds no data"),
    "header_only": (
        lambda p: p.write_bytes(_gz("\tERBB2\tKRT19\n")),
        "count table is empty (0 spots x 2 genes)",
    ),
    "truncated_gz": (
        lambda p: p.write_bytes(p.read_bytes()[:60]),
        "count table cannot be parsed (EOFError",
    ),
    "not_gzip": (
        lambda p: p.write_text("spot\tERBB2\n1x1\t3\n"),
        "count table cannot be parsed (BadGzipFile",
    ),
    "binary_junk": (
        lambda p: p.write_bytes(_gz("\x00\x01") + bytes(range(256)) * 8),
        "count table cannot be parsed",
    ),
    "a_folder": (lambda p: (p.unlink(), p.mkdir()), "count table is a folder, not a file"),
}


@pytest.mark.parametrize("case", sorted(COUNT_CASES))
def test_broken_count_table(her2st, tmp_path, case):
    breaks, needle = COUNT_CASES[case]
    breaks(counts_path(her2st))
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(res, str(counts_path(her2st)), needle, out=out, cache=cache)
    assert not (cache / "counts").exists()  # a broken table is never cached


def _edit_line(path: Path, line: int, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in one line (1 = header) of a text file."""
    lines = path.read_text().splitlines()
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("\n".join(lines) + "\n")


def _spot_cell(path: Path, line: int, column: str, value: str) -> None:
    """Set one cell of the spot file to the raw text ``value``."""
    lines = path.read_text().splitlines()
    col = lines[0].split("\t").index(column)
    cells = lines[line - 1].split("\t")
    cells[col] = value
    lines[line - 1] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")


SPOT_CASES = {
    "zero_bytes": (lambda p: p.write_bytes(b""), ["spot file is empty (0 bytes)"]),
    "header_only": (
        lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"),
        ["spot file has a header but no spots"],
    ),
    "no_x_column": (
        lambda p: _edit_line(p, 1, "x\ty\tnew_x", "col\ty\tnew_x"),
        ["missing column 'x'", "x y new_x new_y pixel_x pixel_y"],
    ),
    "no_pixel_y_column": (
        lambda p: _edit_line(p, 1, "\tpixel_y", "\tpy"),
        ["missing column 'pixel_y'"],
    ),
    "text_pixel_x": (
        lambda p: _spot_cell(p, 4, "pixel_x", "12O.5"),
        ["column 'pixel_x'", "1 non-numeric", "line 4", "'12O.5'", "must be numbers"],
    ),
    "text_array_y": (
        lambda p: _spot_cell(p, 3, "y", "one"),
        ["column 'y'", "line 3", "'one'"],
    ),
    "empty_cell": (
        lambda p: _spot_cell(p, 2, "pixel_y", ""),
        ["column 'pixel_y'", "line 2, empty or NA)"],
    ),
    "fractional_array_x": (
        lambda p: _spot_cell(p, 2, "x", "1.5"),
        ["non-integer array positions"],
    ),
    "binary_junk": (
        lambda p: p.write_bytes(bytes(range(256)) * 8),
        ["spot file cannot be parsed (UnicodeDecodeError"],
    ),
}


@pytest.mark.parametrize("case", sorted(SPOT_CASES))
def test_broken_spot_file(her2st, tmp_path, case):
    breaks, needles = SPOT_CASES[case]
    breaks(spot_path(her2st))
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(res, str(spot_path(her2st)), *needles, out=out, cache=cache)


def _write_tiff(path: Path, truncate: bool) -> None:
    import tifffile

    rgb = np.asarray(Image.open(path.with_suffix(".jpg")).convert("RGB"))
    tifffile.imwrite(path, rgb, photometric="rgb")
    if truncate:
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])  # header and IFD survive, pixel data does not


IMAGE_CASES = {
    "zero_bytes": (lambda p: p.write_bytes(b""), ["image file is empty (0 bytes)", "re-download"]),
    "text_named_jpg": (
        lambda p: p.write_text("<html>404 Not Found</html>"),
        ["not a readable image", "JPEG, PNG or TIFF"],
    ),
    "a_folder": (lambda p: (p.unlink(), p.mkdir()), ["is a folder, not an image file"]),
    "truncated_jpeg": (
        lambda p: p.write_bytes(p.read_bytes()[:2000]),
        ["image cannot be decoded (truncated or corrupt", "re-download"],
    ),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_broken_image(her2st, tmp_path, case):
    breaks, needles = IMAGE_CASES[case]
    breaks(image_path(her2st))
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(res, str(image_path(her2st)), *needles, out=out, cache=cache)


def test_truncated_tiff(her2st, tmp_path):
    """A TIFF cut short opens (its header is intact); reading its pixels must fail cleanly."""
    pytest.importorskip("tifffile")
    tif = image_path(her2st).with_suffix(".tif")
    _write_tiff(tif, truncate=True)
    image_path(her2st).unlink()  # the section's only image is now the broken TIFF
    res, out, cache = prepare(her2st, tmp_path, "--sections", "C2")
    assert_clean_failure(
        res, str(tif), "image cannot be decoded (truncated or corrupt", out=out, cache=cache
    )
    assert not (cache / "patches").exists()


def test_intact_tiff_is_read(her2st, tmp_path):
    """The control for the case above: the same TIFF, not truncated, prepares fine."""
    pytest.importorskip("tifffile")
    tif = image_path(her2st).with_suffix(".tif")
    _write_tiff(tif, truncate=False)
    image_path(her2st).unlink()
    res, out, _ = prepare(her2st, tmp_path, "--sections", "C2")
    assert res.exit_code == 0, res.output
    assert (out / "C2.h5ad").exists()
