"""Tiny HER2+-layout datasets on disk and helpers to run the CLI and check its failures.

Imported by the tests in this folder (a plain module: ``conftest`` names clash across folders).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner, Result
from PIL import Image

GENES = ["ERBB2", "KRT19", "ACTB", "CD74", "MT-CO3"]
PITCH_PX = 60.0  # spot pitch of the synthetic grid in full-resolution pixels


def write_section(
    root: Path,
    section: str = "C2",
    n: int = 12,
    image: bool = True,
    img_size: tuple[int, int] = (400, 300),
    seed: int = 0,
) -> Path:
    """Write one section in the HER2+ Zenodo layout under ``root``; return ``root``.

    Spots sit on a 3-column grid, ``PITCH_PX`` apart; the image has dark speckle so that
    the nuclei step finds something.
    """
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(1, 4), np.arange(1, 1 + (n + 2) // 3))
    xs, ys = xs.ravel()[:n], ys.ravel()[:n]
    ids = [f"{x}x{y}" for x, y in zip(xs, ys)]
    counts = pd.DataFrame(rng.poisson(3, size=(n, len(GENES))), index=ids, columns=GENES)
    write_counts(root, section, counts)
    spots = pd.DataFrame(
        {
            "x": xs,
            "y": ys,
            "new_x": xs + 0.01,
            "new_y": ys,
            "pixel_x": PITCH_PX * xs + 20,
            "pixel_y": PITCH_PX * ys + 20,
            "selected": 1,
        }
    )
    (root / "ST-spotfiles").mkdir(parents=True, exist_ok=True)
    spots.to_csv(spot_path(root, section), sep="\t", index=False)
    if image:
        arr = np.full((img_size[1], img_size[0], 3), 225, np.uint8)
        yy, xx = np.mgrid[: img_size[1], : img_size[0]]
        for cx, cy in rng.uniform(0, 1, (img_size[0] * img_size[1] // 400, 2)) * img_size:
            arr[(xx - cx) ** 2 + (yy - cy) ** 2 < 16] = (70, 40, 130)  # dark round "nuclei"
        img = image_path(root, section)
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(img, quality=90)
    return root


def counts_path(root: Path, section: str = "C2") -> Path:
    """Count table of a section."""
    return root / "ST-cnts" / f"{section}.tsv.gz"


def spot_path(root: Path, section: str = "C2") -> Path:
    """Spot file of a section."""
    return root / "ST-spotfiles" / f"{section}_selection.tsv"


def image_path(root: Path, section: str = "C2") -> Path:
    """H&E image of a section."""
    return root / "ST-imgs" / section[0] / section / "HE.jpg"


def write_counts(root: Path, section: str, counts: pd.DataFrame) -> None:
    """Write a count table (gzipped TSV, spot id in the first column)."""
    p = counts_path(root, section)
    p.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(p, "wt") as fh:
        counts.to_csv(fh, sep="\t")


def edit_counts(root: Path, section: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Rewrite a section's count table through ``edit``."""
    df = pd.read_csv(counts_path(root, section), sep="\t", index_col=0)
    write_counts(root, section, edit(df))


def invoke(args: list[str], input: str | None = None) -> Result:
    """Run ``geneshot ARGS`` in-process (``input`` is fed to stdin)."""
    from geneshot.cli import main

    return CliRunner().invoke(main, args, input=input)


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (relative paths), or [] when it does not exist."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_clean_failure(
    res: Result, *needles: str, out: Path | None = None, cache: Path | None = None
) -> str:
    """Exit code 2, one ``error:`` line on stderr holding ``needles`` and ``Fix:``, no traceback.

    ``out`` must hold no file afterwards and ``cache`` no temporary file. Returns the line.
    """
    assert res.exit_code == 2, f"exit code {res.exit_code}\n{res.output}\n{res.exception!r}"
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    err = res.stderr.strip()
    assert "Traceback" not in res.output and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith("error: ") and "Fix: " in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    if out is not None:
        assert files_under(out) == [], f"left behind in --out: {files_under(out)}"
    if cache is not None:
        leftovers = [
            f for f in files_under(cache) if Path(f).name.startswith(".") or f.endswith(".tmp")
        ]
        assert leftovers == [], f"temporary files left in the cache: {leftovers}"
    return line
