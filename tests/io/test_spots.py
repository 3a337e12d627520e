"""``read_spots`` (``geneshot predict --spots``) and the table helpers every reader shares."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from geneshot.errors import InputError
from geneshot.io import read_spots
from geneshot.io._tables import numeric_column, read_delimited

SIZE = (1000, 800)  # image width, height in pixels


def _write(tmp_path, text: str, name: str = "spots.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("sep", [",", "\t", ";"])
def test_delimiter_is_sniffed_and_grid_derived_from_the_pitch(tmp_path, sep):
    rows = ["id,pixel_x,pixel_y", "a,100,100", "b,300,100", "c,100,300", "d,500,300"]
    p = _write(tmp_path, "\n".join(r.replace(",", sep) for r in rows) + "\n")
    df = read_spots(p, SIZE, pitch_px=50.0)
    assert list(df.index) == ["a", "b", "c", "d"]
    # nearest-neighbour pitch is 200 px, not the 50 px fallback
    assert df[["array_row", "array_col"]].to_numpy().tolist() == [[0, 0], [0, 1], [1, 0], [1, 2]]
    assert df["pixel_x"].dtype == np.float64


def test_given_grid_is_kept_and_ids_are_generated_without_an_id_column(tmp_path):
    p = _write(tmp_path, "pixel_x,pixel_y,array_row,array_col\n10,20,5,7\n30,40,6,8\n")
    df = read_spots(p, SIZE, pitch_px=50.0)
    assert list(df.index) == ["spot0", "spot1"]
    assert df["array_row"].tolist() == [5, 6] and df["array_col"].tolist() == [7, 8]
    assert df["array_row"].dtype == np.int64


def test_single_spot_uses_the_fallback_pitch(tmp_path):
    df = read_spots(_write(tmp_path, "id,pixel_x,pixel_y\nonly,10,10\n"), SIZE, pitch_px=50.0)
    assert df[["array_row", "array_col"]].to_numpy().tolist() == [[0, 0]]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "spot table is empty (0 bytes)"),
        ("id,pixel_x,pixel_y\n", "spot table has a header but no spots"),
        ("id,x,pixel_y\na,1,2\n", "missing column 'pixel_x'"),
        ("id,pixel_x,pixel_y\na,1,2\nb,3,n-a\n", "first: spot 'b', value 'n-a'"),
        (
            "pixel_x,pixel_y\n1,2\n3,\n",
            "column 'pixel_y' has 1 non-numeric or missing values (first: line 3, empty or NA)",
        ),
        ("id,pixel_x,pixel_y\na,1,2\na,3,4\n", "1 duplicated spot ids in column 'id'"),
        (
            "id,pixel_x,pixel_y\na,1,2\nb,1000,4\n",
            "1 of 2 spots lie outside the 1000 x 800 px image",
        ),
        ("id,pixel_x,pixel_y\na,-1,2\n", "outside"),
        (
            "id,pixel_x,pixel_y,array_row\na,1,2,0\n",
            "column 'array_row' is given without its partner",
        ),
        (
            "id,pixel_x,pixel_y,array_row,array_col\na,1,2,0.5,1\n",
            "'array_row' holds non-integer grid positions",
        ),
    ],
)
def test_bad_spot_tables_name_the_file_and_the_problem(tmp_path, text, problem):
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as err:
        read_spots(p, SIZE, pitch_px=50.0)
    msg = str(err.value)
    assert msg.startswith(f"{p}: ") and problem in msg and "Fix: " in msg and "\n" not in msg


def test_spot_table_that_is_a_folder_or_missing(tmp_path):
    with pytest.raises(InputError, match="spot table is a folder"):
        read_spots(tmp_path, SIZE, 50.0)
    with pytest.raises(InputError, match="spot table does not exist"):
        read_spots(tmp_path / "nope.csv", SIZE, 50.0)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (gzip.compress(b""), "holds no data"),
        (gzip.compress(b"a\tb\n1\t2\n")[:-9], "cannot be parsed (EOFError"),
        (b"plain text, not gzip", "cannot be parsed (BadGzipFile"),
        (gzip.compress(bytes(range(256))), "cannot be parsed (UnicodeDecodeError"),
    ],
)
def test_read_delimited_turns_parser_errors_into_one_line(tmp_path, content, problem):
    p = tmp_path / "t.tsv.gz"
    p.write_bytes(content)
    with pytest.raises(InputError, match="re-download") as err:
        read_delimited(p, "count table", "re-download it", sep="\t", index_col=0)
    msg = str(err.value)
    assert msg.startswith(f"{p}: count table ") and problem in msg and "\n" not in msg


def test_numeric_column_reports_the_first_bad_cell():
    df = pd.DataFrame({"v": ["1", "2.5", "x", "y"]}, index=["s1", "s2", "s3", "s4"])
    with pytest.raises(InputError, match=r"2 non-numeric .*first: spot 's3', value 'x'"):
        numeric_column(df, "v", "f.tsv", "spot file", "fix it")
    assert numeric_column(df.iloc[:2], "v", "f.tsv", "spot file", "fix").tolist() == [1.0, 2.5]
