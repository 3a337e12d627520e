"""Errors that describe bad input in one line: the file, the field and the fix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike


class GeneshotError(Exception):
    """Base class for errors geneshot reports to users (CLI exit code 2, no traceback)."""


class InputError(GeneshotError, ValueError):
    """Bad or missing input.

    Parameters
    ----------
    path
        The file or folder at fault (``None`` when the input is not a file).
    problem
        What is wrong, naming the field (column, key, option) where there is one.
    fix
        What the user should do.
    """

    def __init__(self, path: str | PathLike | None, problem: str, fix: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}. Fix: {fix}")


class MissingDependencyError(GeneshotError, ImportError):
    """An optional backend is not installed or its weights cannot be reached."""


def check_choice(field: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else an :class:`InputError` naming ``field``."""
    if value not in choices:
        raise InputError(None, f"unknown {field} {value!r}", f"use one of {list(choices)}")
    return value


def check_positive(field: str, value: object, allow_zero: bool = False) -> float:
    """``value`` as a finite number > 0 (``allow_zero``: >= 0), else an :class:`InputError`."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        kind, bound = ("non-negative", ">= 0") if allow_zero else ("positive", "> 0")
        raise InputError(
            None, f"{field} {value!r} is not a {kind} number", f"set {field} to a number {bound}"
        )
    return number
