"""Reading delimited tables (count tables, spot files) so that bad files fail in one line.

pandas reports a bad file in many ways: ``EmptyDataError`` for 0 bytes, ``ParserError`` for
ragged rows, ``BadGzipFile``/``EOFError`` for a cut-short ``.gz``, ``UnicodeDecodeError``
for binary junk, ``csv.Error`` when the delimiter cannot be sniffed, ``IsADirectoryError``
for a folder. Every reader in :mod:`geneshot.io` goes through :func:`read_delimited`,
which turns all of them into one :class:`~geneshot.errors.InputError` naming the file.
"""

from __future__ import annotations

import csv
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from geneshot.errors import InputError

# ValueError covers pandas' EmptyDataError and ParserError and the codecs' decode errors
_PARSE_ERRORS = (OSError, EOFError, ValueError, csv.Error, zlib.error, UnicodeError)


def check_table_file(path: str | os.PathLike, what: str, fix_missing: str) -> Path:
    """Fail on a table path that is missing, a folder or 0 bytes; return it as a Path."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{what} does not exist", fix_missing)
    if path.is_dir():
        raise InputError(
            path, f"{what} is a folder, not a file", f"give the path of the {what} itself"
        )
    if path.stat().st_size == 0:
        raise InputError(path, f"{what} is empty (0 bytes)", "re-download or re-export the file")
    return path


def read_delimited(path: str | os.PathLike, what: str, fix: str, **kwargs) -> pd.DataFrame:
    """``pd.read_csv(path, **kwargs)``; any parse failure is an InputError naming ``what``.

    Parameters
    ----------
    path
        The file (``.gz`` and other compressions are inferred from the name).
    what
        What the file is, for the message (``"count table"``, ``"spot file"``).
    fix
        What the user should do when the file cannot be parsed.
    **kwargs
        Passed to :func:`pandas.read_csv`.
    """
    path = check_table_file(path, what, "check the path")
    try:
        return pd.read_csv(path, **kwargs)
    except _PARSE_ERRORS as err:
        if isinstance(err, pd.errors.EmptyDataError):
            problem = f"{what} holds no data (no header, no rows)"
        else:
            problem = f"{what} cannot be parsed ({type(err).__name__}: {_first_line(err)})"
        raise InputError(path, problem, fix) from None


def numeric_column(
    df: pd.DataFrame, col: str, path: str | os.PathLike | None, what: str, fix: str
) -> np.ndarray:
    """Column ``col`` as float64; an InputError naming the first row whose value is not a number."""
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raw = df[col].iloc[i]
        # pandas reads an empty cell (and "NA", "n/a", ...) as NaN: say so, not np.float64(nan)
        value = (
            "empty or NA"
            if pd.isna(raw)
            else f"value {raw!r}"
            if isinstance(raw, str)
            else f"value {raw}"
        )
        # a RangeIndex means no id column: name the file line (line 1 is the header)
        row = f"line {i + 2}" if isinstance(df.index, pd.RangeIndex) else f"spot {df.index[i]!r}"
        raise InputError(
            path,
            f"{what} column {col!r} has {int(bad.sum())} non-numeric or missing values (first: {row}, {value})",
            fix,
        )
    return values


def _first_line(err: Exception) -> str:
    """The first line of an exception message (pandas' can span several lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
