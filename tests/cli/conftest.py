"""Fixtures of the CLI tests (helpers live in ``cli_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import write_section


@pytest.fixture
def her2st(tmp_path: Path) -> Path:
    """A HER2+ folder with one imaged section, C2 (12 spots, 400 x 300 px)."""
    return write_section(tmp_path / "her2st")
