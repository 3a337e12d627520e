"""Bootstrap intervals and paired tests of per-gene / per-section scores.

Plain percentile intervals and the paired test use :func:`scipy.stats.bootstrap` and
:func:`scipy.stats.wilcoxon`. The two-level (sections + genes) bootstrap is written by hand:
scipy resamples one axis of independent observations and cannot resample sections and,
independently, genes of one score matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from geneshot.errors import InputError
from geneshot.metrics._correlation import _weighted_nanmean

# Replicates drawn per batch. scipy draws ``rng.integers(0, n, (batch, n))`` per batch, so a
# fixed batch keeps the resamples (and the intervals) the same for a given seed.
_MEAN_BATCH = 128
_STAT_BATCH = 256


def _interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [a, 1.0 - a])
    return float(lo), float(hi)


def _check_boot(n_boot: int, level: float) -> None:
    if n_boot < 10:
        raise InputError(None, f"n_boot={n_boot}", "use n_boot >= 10 (2000 is usual)")
    if not 0.0 < level < 1.0:
        raise InputError(
            None, f"level={level}", "give a confidence level between 0 and 1, e.g. 0.95"
        )


def _boot_counts(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, n)`` resampling counts: how often each of n items is drawn in each replicate."""
    idx = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=size * n).reshape(size, n)


def _is_vectorised(stat: Callable[..., Any]) -> bool:
    """Whether ``stat`` accepts ``axis=`` (numpy reductions do): scipy then calls it per batch."""
    try:
        np.asarray(stat(np.zeros((2, 2)), axis=-1), dtype=np.float64)
    except TypeError:
        return False
    return True


def _percentile_bootstrap(
    values: np.ndarray,
    stat: Callable[..., Any],
    n_boot: int,
    seed: int,
    level: float,
    batch: int,
) -> tuple[tuple[float, float], np.ndarray]:
    """scipy's percentile bootstrap of ``stat(values)``: (interval, replicates)."""
    from scipy.stats import bootstrap

    res = bootstrap(
        (values,),
        stat,
        n_resamples=n_boot,
        batch=batch,
        vectorized=_is_vectorised(stat),
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    boot = np.asarray(res.bootstrap_distribution, np.float64)
    # scipy's own percentile (``stats.quantile``) can differ from numpy's in the last bit;
    # reading the same replicates with numpy keeps earlier results bit-identical.
    return _interval(boot, level), boot


def bootstrap_ci(
    values: Any,
    stat: Callable[..., Any] = np.mean,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap interval of ``stat(values)`` (resample the values).

    Parameters
    ----------
    values
        1-D values, e.g. per-gene r (resampling genes) or per-section scores (resampling
        sections). NaNs are dropped first and counted in ``n_nan``.
    stat
        Statistic; when it accepts ``axis=`` it is called once per batch of replicates.
    n_boot, seed, level
        Replicates, seed (same seed, same interval) and confidence level.

    Returns
    -------
    dict
        ``estimate``, ``ci`` (low, high), ``n``, ``n_nan``, ``n_boot``, ``level``.

    Notes
    -----
    Genes are correlated, so an interval over genes treats them as exchangeable and is
    narrower than one over independent samples; with several test sections, the
    section-level or hierarchical interval is the honest one.
    """
    _check_boot(n_boot, level)
    v = np.asarray(values, dtype=np.float64).ravel()
    n_nan = int(np.isnan(v).sum())
    v = v[~np.isnan(v)]
    res: dict[str, Any] = {
        "estimate": float("nan"),
        "ci": (float("nan"), float("nan")),
        "n": int(v.size),
        "n_nan": n_nan,
        "n_boot": n_boot,
        "level": level,
    }
    if v.size == 0:
        return res
    res["estimate"] = float(stat(v))
    if v.size == 1:
        res["ci"] = (res["estimate"], res["estimate"])
        return res
    batch = _MEAN_BATCH if stat is np.mean or stat is np.nanmean else _STAT_BATCH
    res["ci"] = _percentile_bootstrap(v, stat, n_boot, seed, level, batch)[0]
    return res


def bootstrap_ci_hierarchical(
    matrix: Any,
    weights: Any | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Two-level bootstrap of a (section x gene) score matrix.

    Each replicate resamples sections (when there is more than one) and, independently,
    genes; the statistic is the weighted mean over the resampled sections of each
    section's mean over the resampled genes (NaNs ignored), i.e. TRIPLEX's per-section
    PCC@M. Weights are typically spot counts.

    Returns
    -------
    dict
        ``estimate``, ``ci``, ``n_sections``, ``n_genes``, ``resampled`` (the levels that
        were resampled), ``n_boot``, ``level``.
    """
    _check_boot(n_boot, level)
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise InputError(
            None, f"matrix has shape {m.shape}", "give a non-empty (sections x genes) matrix"
        )
    n_sec, n_gene = m.shape
    w = np.ones(n_sec) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n_sec,) or (w < 0).any():
        raise InputError(
            None,
            f"weights has shape {w.shape} for {n_sec} sections",
            "give one non-negative weight per section",
        )
    ok = (~np.isnan(m)).astype(np.float64)
    filled = np.where(np.isnan(m), 0.0, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        sec_mean = filled.sum(1) / ok.sum(1)
    estimate = float(_weighted_nanmean(sec_mean, w))
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, _MEAN_BATCH):
        b = min(_MEAN_BATCH, n_boot - start)
        # Resampling counts turn "mean over resampled genes" into one matrix product.
        gc = np.ascontiguousarray(_boot_counts(n_gene, b, rng).T, dtype=np.float64)  # (G, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            sm = (filled @ gc) / (ok @ gc)  # (S, b) section means over resampled genes
        sc = _boot_counts(n_sec, b, rng).T if n_sec > 1 else np.ones((1, b))
        sw = sc * w[:, None] * ~np.isnan(sm)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot[start : start + b] = np.nansum(np.where(np.isnan(sm), 0.0, sm) * sw, 0) / sw.sum(0)
    boot = boot[~np.isnan(boot)]
    ci = _interval(boot, level) if boot.size else (float("nan"), float("nan"))
    return {
        "estimate": estimate,
        "ci": ci,
        "n_sections": n_sec,
        "n_genes": n_gene,
        "resampled": ["sections", "genes"] if n_sec > 1 else ["genes"],
        "n_boot": n_boot,
        "level": level,
    }


def paired_test(
    a: Any, b: Any, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Compare two methods scored on the same genes (e.g. per-gene r of A and of B).

    Pairs where either value is NaN are dropped. If both inputs are Series they are aligned
    on their index first (genes missing from either are an error).

    Returns
    -------
    dict
        ``mean_diff`` (mean of a - b), ``ci`` (paired percentile bootstrap of the mean
        difference, scipy), ``p_value`` (two-sided Wilcoxon signed-rank, scipy),
        ``p_value_bootstrap`` (two-sided, from the bootstrap distribution), ``n`` (pairs
        used), ``n_dropped``.
    """
    from scipy.stats import wilcoxon

    _check_boot(n_boot, level)
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if set(a.index) != set(b.index):
            raise InputError(
                None,
                "the two methods were scored on different genes",
                "compare per-gene scores over the same genes",
            )
        b = b.reindex(a.index)
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise InputError(
            None,
            f"paired inputs have {x.size} and {y.size} values",
            "give one value per gene for both methods",
        )
    keep = ~(np.isnan(x) | np.isnan(y))
    d = x[keep] - y[keep]
    out: dict[str, Any] = {
        "mean_diff": float("nan"),
        "ci": (float("nan"), float("nan")),
        "p_value": float("nan"),
        "p_value_bootstrap": float("nan"),
        "n": int(d.size),
        "n_dropped": int((~keep).sum()),
        "test": "wilcoxon signed-rank, two-sided",
    }
    if d.size == 0:
        return out
    out["mean_diff"] = float(d.mean())
    if d.size < 2:
        return out
    # resampling the differences is the paired bootstrap (each gene keeps its a/b pair)
    out["ci"], boot = _percentile_bootstrap(d, np.mean, n_boot, seed, level, _MEAN_BATCH)
    out["p_value_bootstrap"] = float(min(1.0, 2.0 * min((boot <= 0).mean(), (boot >= 0).mean())))
    out["p_value"] = 1.0 if np.all(d == 0) else float(wilcoxon(d).pvalue)
    return out
