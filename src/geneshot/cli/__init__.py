"""Command-line interface: ``geneshot <command>``. A thin layer over the library functions."""

from __future__ import annotations

import importlib

from geneshot.cli._main import main

# Each module adds its commands to ``main``; a module that is not there yet is skipped.
for _mod in ("_cache", "_data", "_prepare", "_genes", "_train", "_benchmark", "_predict"):
    try:
        importlib.import_module(f"geneshot.cli.{_mod}")
    except ModuleNotFoundError as _err:
        if _err.name != f"geneshot.cli.{_mod}":
            raise

__all__ = ["main"]
