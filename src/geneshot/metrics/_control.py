"""A zero-shot model's per-gene scores against a control's (the depth control, usually).

Where a model's gene knowledge is weak, its map should fall back to the common per-spot
pattern, which the depth control predicts, rather than drop below it. These two numbers say
how far a model honours that, gene by gene; ``scripts/choose_features.py --criterion
loss-averse`` chooses by the first, ``scripts/fallback_check.py`` counts the second.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: a gene scores a miss when its PCC lies more than this below the control's
MISS_MARGIN = 0.05


def _paired(r: Mapping[str, float] | pd.Series, control: Mapping[str, float] | pd.Series):
    a, b = pd.Series(r, dtype=float).dropna(), pd.Series(control, dtype=float).dropna()
    genes = a.index.intersection(b.index)
    return a[genes].to_numpy(), b[genes].to_numpy()


def loss_averse_score(
    r: Mapping[str, float] | pd.Series, control: Mapping[str, float] | pd.Series
) -> float:
    """Mean PCC plus the mean shortfall below the control: a loss counts twice, a gain once.

    ``r`` and ``control``: PCC per gene (by name); genes scored by both only. Equals the
    control's mean PCC plus the mean of ``u(r - r_control)`` with ``u(d) = d`` for ``d >= 0``
    and ``2 d`` below, so a setting cannot buy its mean with genes it drags below the control.
    """
    a, b = _paired(r, control)
    if not len(a):
        return float("nan")
    return float(a.mean() + np.minimum(a - b, 0.0).mean())


def n_misses(
    r: Mapping[str, float] | pd.Series,
    control: Mapping[str, float] | pd.Series,
    margin: float = MISS_MARGIN,
) -> int:
    """The number of genes (scored by both) whose PCC lies more than ``margin`` below the control's."""
    a, b = _paired(r, control)
    return int((a - b < -margin).sum())


def miss_share(
    r: Mapping[str, float] | pd.Series,
    control: Mapping[str, float] | pd.Series,
    margin: float = MISS_MARGIN,
) -> float:
    """:func:`n_misses` over the number of genes scored by both (NaN when there are none)."""
    n = len(_paired(r, control)[0])
    return n_misses(r, control, margin) / n if n else float("nan")
