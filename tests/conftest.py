"""Shared fixtures: real-data location and a private cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def her2st_dir() -> Path:
    """``$GENESHOT_DATA/her2st``; tests using it skip with a reason when it is unset."""
    root = os.environ.get("GENESHOT_DATA")
    if not root:
        pytest.skip("GENESHOT_DATA is not set: real-data test skipped")
    path = Path(root) / "her2st"
    if not path.is_dir():
        pytest.skip(f"{path} does not exist: real-data test skipped")
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test session writes to its own cache, never the user's."""
    monkeypatch.setenv("GENESHOT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
