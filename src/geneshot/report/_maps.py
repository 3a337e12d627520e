"""Gene maps over the H&E: one row per gene, one column per value kind (measured, predicted, ...)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.collections import EllipseCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from geneshot.cache import atomic_path
from geneshot.errors import InputError

# spread-like kinds get a different colour map, so they are not read as expression
_SPREAD_WORDS = ("uncert", "std", "spread", "error")


def _cmap_for(kind: str) -> str:
    name = "magma" if any(w in kind.lower() for w in _SPREAD_WORDS) else "viridis"
    return matplotlib.colormaps[name].with_extremes(bad="#bbbbbb")  # NaN spots are grey


def plot_gene_maps(
    image: np.ndarray | None,
    xy: np.ndarray,
    values: dict[str, np.ndarray],
    genes: list[str],
    spot_size: float,
    out: str | Path | None = None,
    title: str = "",
    panel_titles: Mapping[tuple[str, str], str] | None = None,
) -> Figure:
    """Spots coloured by value over a thumbnail, one panel per gene and value kind.

    Parameters
    ----------
    image
        RGB thumbnail (H, W, 3), or None for spots on a blank background.
    xy
        (N, 2) spot centres in thumbnail pixels (x = column, y = row).
    values
        ``{"measured": (N, G), "predicted": (N, G), ...}``; column ``g`` belongs to
        ``genes[g]``. Columns (kinds) appear in the mapping's order; NaN spots are grey.
    genes
        Gene names, one row each.
    spot_size
        Spot diameter in thumbnail pixels (drawn to scale).
    out
        PNG to write (atomically); None only returns the figure.
    title
        Figure title.
    panel_titles
        ``{(gene, kind): title}`` for panels whose title says more than ``"gene: kind"``.

    Returns
    -------
    The matplotlib figure (not attached to pyplot, so nothing leaks between calls).
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise InputError(
            None,
            f"xy has shape {xy.shape}, expected (n_spots, 2)",
            "pass spot centres as (x, y) thumbnail pixels",
        )
    if not values:
        raise InputError(
            None, "no values to plot", "pass e.g. {'predicted': array (n_spots, n_genes)}"
        )
    kinds = list(values)
    arrays = {}
    for k in kinds:
        v = np.asarray(values[k], dtype=np.float64)
        if v.ndim == 1:
            v = v[:, None]
        if v.shape != (len(xy), len(genes)):
            raise InputError(
                None,
                f"values[{k!r}] has shape {v.shape}, expected ({len(xy)}, {len(genes)})",
                "give one column per gene and one row per spot",
            )
        arrays[k] = v
    n_rows, n_cols = len(genes), len(kinds)
    fig = Figure(
        figsize=(3.6 * n_cols, 3.2 * n_rows + (0.4 if title else 0)), dpi=100, layout="constrained"
    )
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    if image is not None:
        h, w = image.shape[:2]
    else:
        pad = spot_size
        w, h = xy[:, 0].max() + pad, xy[:, 1].max() + pad
    for r, gene in enumerate(genes):
        for c, kind in enumerate(kinds):
            ax = axes[r, c]
            v = arrays[kind][:, r]
            finite = np.isfinite(v)
            lo, hi = (np.min(v[finite]), np.max(v[finite])) if finite.any() else (0.0, 1.0)
            if hi <= lo:
                hi = lo + 1e-6
            if image is not None:
                ax.imshow(image, interpolation="antialiased")
            coll = EllipseCollection(
                widths=spot_size,
                heights=spot_size,
                angles=0,
                units="xy",
                offsets=xy,
                offset_transform=ax.transData,
                cmap=_cmap_for(kind),
                norm=Normalize(lo, hi),
                linewidths=0,
            )
            coll.set_array(np.ma.masked_invalid(v))
            ax.add_collection(coll)
            # zoom on the spots (with a margin) rather than the whole slide
            margin = 1.5 * spot_size
            ax.set_xlim(max(0.0, xy[:, 0].min() - margin), min(w, xy[:, 0].max() + margin))
            ax.set_ylim(min(h, xy[:, 1].max() + margin), max(0.0, xy[:, 1].min() - margin))  # rows grow downwards
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title((panel_titles or {}).get((gene, kind), f"{gene}: {kind}"), fontsize=10)
            fig.colorbar(coll, ax=ax, fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title)
    if out is not None:
        out = Path(out)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png")
    return fig


def write_gene_maps(
    image: np.ndarray | None,
    xy: np.ndarray,
    values: Mapping[str, np.ndarray],
    genes: list[str],
    spot_size: float,
    out_dir: str | os.PathLike,
    prefix: str = "",
    panel_titles: Mapping[tuple[str, str], str] | None = None,
) -> list[Path]:
    """One PNG per gene (``<prefix><gene>.png``) under ``out_dir``; returns the paths.

    ``panel_titles`` as in :func:`plot_gene_maps`."""
    out_dir = Path(out_dir)
    paths = []
    for g, gene in enumerate(genes):
        path = out_dir / f"{prefix}{gene}.png"
        fig = plot_gene_maps(
            image,
            xy,
            {k: np.asarray(v)[:, [g]] for k, v in values.items()},
            [gene],
            spot_size,
            path,
            title=f"{prefix.rstrip('_')} {gene}".strip(),
            panel_titles=panel_titles,
        )
        fig.clear()
        paths.append(path)
    return paths
