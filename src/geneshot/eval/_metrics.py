"""Metrics, gene subsets for PCC@H, bootstrap intervals and paired tests.

Everything here is a pure function of numpy / pandas inputs: no model code, no I/O.

Conventions (paper-notes §1.1):

* ``r_g`` is the Pearson correlation of gene ``g`` across spots. A constant prediction or
  target (zero variance) has no correlation: it is NaN, then the NaN policy applies.
  ``"drop"`` keeps the NaN and every summary ignores it (TRIPLEX ``nanmean``);
  ``"minus_one"`` replaces it by -1 (SGN/EGN ``compute_correlations``).
* PCC@F = Q1, PCC@S = median, PCC@M = mean of ``{r_g}``.
* "pooled" concatenates the spots of all test sections before computing ``r_g`` (SGN/EGN);
  "per_section" computes ``r_g`` per section and averages over sections weighted by their
  spot counts (TRIPLEX: one slide per test batch, Lightning epoch mean weighted by batch size).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from geneshot.errors import InputError

NanPolicy = Literal["drop", "minus_one"]
NAN_POLICIES: tuple[str, ...] = ("drop", "minus_one")
HPG_NOTE = "chosen on test results (TRIPLEX HPG: optimistic, not an a-priori gene set)"


# ----------------------------------------------------------------------------- helpers


def _check_policy(nan_policy: str) -> None:
    if nan_policy not in NAN_POLICIES:
        raise InputError(
            None,
            f"nan_policy={nan_policy!r} is not known",
            f"use one of: {', '.join(NAN_POLICIES)}",
        )


def _as_2d(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(None, f"{name} has {arr.ndim} dimensions", "give a (spots x genes) array")
    if not np.isfinite(arr).all():
        raise InputError(
            None,
            f"{name} has {int((~np.isfinite(arr)).sum())} NaN or infinite values",
            "evaluate finite values only (check the model output)",
        )
    return arr


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _as_2d(y_true, "y_true")
    p = _as_2d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise InputError(
            None,
            f"y_true has shape {t.shape} but y_pred has shape {p.shape}",
            "give targets and predictions for the same spots and genes",
        )
    return t, p


def _apply_policy(r: np.ndarray, nan_policy: str) -> np.ndarray:
    if nan_policy == "minus_one":
        r = np.where(np.isnan(r), -1.0, r)
    return r


def _column_pearson(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pearson r of matching columns; NaN where either column is exactly constant."""
    if t.shape[0] < 2:
        return np.full(t.shape[1], np.nan)
    # "constant" means max == min: a rounding residue after centring must not count as variance.
    const = (np.ptp(t, axis=0) == 0) | (np.ptp(p, axis=0) == 0)
    dt = t - t.mean(axis=0)
    dp = p - p.mean(axis=0)
    num = (dt * dp).sum(axis=0)
    den = np.sqrt((dt * dt).sum(axis=0) * (dp * dp).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[const] = np.nan
    return np.clip(r, -1.0, 1.0)


# ----------------------------------------------------------------------------- metrics


def per_gene_pearson(y_true: Any, y_pred: Any, nan_policy: NanPolicy = "drop") -> np.ndarray:
    """Pearson correlation across spots for each gene (column).

    Parameters
    ----------
    y_true, y_pred
        ``(n_spots, n_genes)`` arrays (a 1-D array is one gene).
    nan_policy
        ``"drop"``: a constant column gives NaN, left for the summaries to ignore (TRIPLEX).
        ``"minus_one"``: it gives -1 (SGN/EGN code).

    Returns
    -------
    numpy.ndarray
        ``(n_genes,)`` correlations.
    """
    _check_policy(nan_policy)
    t, p = _pair(y_true, y_pred)
    return _apply_policy(_column_pearson(t, p), nan_policy)


def per_gene_spearman(y_true: Any, y_pred: Any, nan_policy: NanPolicy = "drop") -> np.ndarray:
    """Spearman correlation (Pearson of average ranks) across spots for each gene."""
    from scipy.stats import rankdata

    _check_policy(nan_policy)
    t, p = _pair(y_true, y_pred)
    # Ranking contiguous rows is ~1.5x faster than ranking strided columns.
    rt = rankdata(np.ascontiguousarray(t.T), axis=1).T
    rp = rankdata(np.ascontiguousarray(p.T), axis=1).T
    r = _column_pearson(rt, rp)
    return _apply_policy(r, nan_policy)


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error over all spots and genes (EGN definition)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean((p - t) ** 2))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error over all spots and genes (EGN definition)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t)))


def summarise(r: Any) -> dict[str, float | int]:
    """PCC@F (Q1), PCC@S (median) and PCC@M (mean) of per-gene correlations, NaNs ignored.

    Returns
    -------
    dict
        ``pcc_f``, ``pcc_s``, ``pcc_m``, ``n_genes`` (all genes given) and ``n_nan`` (genes
        left out because their r is NaN). The statistics are NaN when every r is NaN.
    """
    r = np.asarray(r, dtype=np.float64).ravel()
    ok = r[~np.isnan(r)]
    if ok.size == 0:
        f = s = m = float("nan")
    else:
        f, s = (float(v) for v in np.quantile(ok, [0.25, 0.5]))
        m = float(ok.mean())
    return {
        "pcc_f": f,
        "pcc_s": s,
        "pcc_m": m,
        "n_genes": int(r.size),
        "n_nan": int(r.size - ok.size),
    }


def per_section_pearson(
    y_true: Any, y_pred: Any, sections: Sequence[str], nan_policy: NanPolicy = "drop"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per-gene Pearson r computed separately in each section.

    Returns
    -------
    names
        Section ids in order of first appearance.
    r
        ``(n_sections, n_genes)`` correlations (policy applied).
    n_spots
        ``(n_sections,)`` spot counts, the TRIPLEX weights.
    """
    _check_policy(nan_policy)
    t, p = _pair(y_true, y_pred)
    sec = np.asarray(sections).astype(str)
    if sec.shape != (t.shape[0],):
        raise InputError(
            None,
            f"sections has {sec.size} labels for {t.shape[0]} spots",
            "give one section label per spot (row)",
        )
    names = list(dict.fromkeys(sec.tolist()))
    r = np.empty((len(names), t.shape[1]))
    n = np.empty(len(names), dtype=np.int64)
    for i, s in enumerate(names):
        m = sec == s
        n[i] = int(m.sum())
        r[i] = _apply_policy(_column_pearson(t[m], p[m]), nan_policy)
    return names, r, n


def _weighted_nanmean(values: np.ndarray, weights: np.ndarray) -> Any:
    """Weighted mean over the first axis ignoring NaNs (NaN where every value is NaN)."""
    ok = ~np.isnan(values)
    w = np.where(ok, weights.reshape((-1,) + (1,) * (values.ndim - 1)), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(ok, values, 0.0) * w).sum(axis=0) / w.sum(axis=0)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Mean of each row ignoring NaNs, NaN for an all-NaN row (without numpy's warning)."""
    ok = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, values, 0.0).sum(axis=1) / ok.sum(axis=1)


def evaluate_predictions(
    y_true: Any,
    y_pred: Any,
    genes: Sequence[str],
    sections: Sequence[str],
    nan_policy: NanPolicy = "drop",
    subsets: Mapping[str, GeneSubset | Sequence[str]] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Every metric under both pooling conventions.

    Parameters
    ----------
    y_true, y_pred
        ``(n_spots, n_genes)`` normalised targets and predictions of all test spots.
    genes
        Gene names, one per column.
    sections
        Section id of each spot (row).
    nan_policy
        How a NaN r_g (constant vector) is treated; recorded in the output.
    subsets
        Named gene sets (e.g. ``{"hpg": hpg_select(...), "top_expressed": ...}``); the mean r
        over each is reported as ``pcc_at_<name>`` under both conventions, with the subset's
        provenance (``chosen_on_test``).

    Returns
    -------
    summary
        ``{"nan_policy", "n_spots", "n_genes", "n_sections", "mse", "mae",
        "pooled": {...}, "per_section": {...}, "sections": {id: {...}}, "subsets": {...}}``.
        ``pooled`` summarises r_g over the concatenated spots (SGN/EGN). ``per_section`` is the
        spot-weighted mean over sections of each section's PCC@F/S/M; its ``pcc_m`` is
        exactly TRIPLEX's number. MSE and MAE are the same under both conventions.
    per_gene
        DataFrame indexed by gene: ``r_pooled``, ``r_per_section`` (spot-weighted mean of the
        per-section r, NaNs ignored), ``spearman_pooled``, ``mse``, ``mae``,
        ``n_sections_nan``.
    """
    t, p = _pair(y_true, y_pred)
    genes = [str(g) for g in genes]
    if len(genes) != t.shape[1]:
        raise InputError(
            None,
            f"genes has {len(genes)} names for {t.shape[1]} columns",
            "give one gene name per column",
        )
    if len(set(genes)) != len(genes):
        raise InputError(None, "genes has duplicated names", "give each evaluated gene once")
    _check_policy(nan_policy)
    names, r_sec, n_sec = per_section_pearson(t, p, sections, nan_policy)
    r_pool = per_gene_pearson(t, p, nan_policy)
    w = n_sec.astype(np.float64)

    sec_summ = {s: {**summarise(r_sec[i]), "n_spots": int(n_sec[i])} for i, s in enumerate(names)}
    per_section: dict[str, Any] = {}
    for key in ("pcc_f", "pcc_s", "pcc_m"):
        vals = np.array([sec_summ[s][key] for s in names])
        per_section[key] = float(_weighted_nanmean(vals, w))
    per_section["n_genes"] = len(genes)
    per_section["n_nan"] = int(np.isnan(r_sec).sum())  # (section, gene) pairs left out

    err = p - t
    per_gene = pd.DataFrame(
        {
            "r_pooled": r_pool,
            "r_per_section": _weighted_nanmean(r_sec, w),
            "spearman_pooled": per_gene_spearman(t, p, nan_policy),
            "mse": np.mean(err**2, axis=0),
            "mae": np.mean(np.abs(err), axis=0),
            "n_sections_nan": np.isnan(r_sec).sum(axis=0),
        },
        index=pd.Index(genes, name="gene"),
    )
    summary: dict[str, Any] = {
        "nan_policy": nan_policy,
        "n_spots": int(t.shape[0]),
        "n_genes": len(genes),
        "n_sections": len(names),
        "mse": float(np.mean(err**2)),
        "mae": float(np.mean(np.abs(err))),
        "pooled": summarise(r_pool),
        "per_section": per_section,
        "sections": sec_summ,
        "subsets": {},
    }
    for name, subset in (subsets or {}).items():
        gs = (
            subset
            if isinstance(subset, GeneSubset)
            else GeneSubset(name, list(subset), "given", False)
        )
        idx = _subset_index(genes, gs.genes)
        sec_means = _nanmean_rows(r_sec[:, idx])
        summary["pooled"][f"pcc_at_{name}"] = pcc_at(per_gene["r_pooled"], gs)
        summary["per_section"][f"pcc_at_{name}"] = float(_weighted_nanmean(sec_means, w))
        summary["subsets"][name] = gs.describe()
    return summary, per_gene


# ----------------------------------------------------------------------------- PCC@H and gene subsets


@dataclass(frozen=True)
class GeneSubset:
    """A named gene set and how it was chosen.

    ``chosen_on_test`` is True for sets selected from test-set results (TRIPLEX HPG):
    a metric on such a set is optimistic and must be labelled as such.
    """

    name: str
    genes: list[str]
    source: str
    chosen_on_test: bool
    scores: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance (without the scores)."""
        return {
            "name": self.name,
            "n": len(self.genes),
            "source": self.source,
            "chosen_on_test": self.chosen_on_test,
            "genes": list(self.genes),
        }


def _subset_index(genes: Sequence[str], subset: Sequence[str]) -> np.ndarray:
    pos = {g: i for i, g in enumerate(genes)}
    missing = [g for g in subset if g not in pos]
    if missing:
        raise InputError(
            None,
            f"{len(missing)} subset genes are not evaluated (e.g. {missing[0]!r})",
            "choose the subset among the evaluated genes",
        )
    return np.array([pos[g] for g in subset], dtype=np.int64)


def _top_k(scores: pd.Series, k: int, what: str) -> list[str]:
    if k < 1:
        raise InputError(None, f"k={k} for {what}", "give k >= 1")
    if len(scores) < k:
        raise InputError(
            None,
            f"only {len(scores)} genes for a top-{k} {what} set",
            f"give at least {k} genes or a smaller k",
        )
    # Sort by score descending, ties by gene name, so the set does not depend on input order.
    df = pd.DataFrame({"g": scores.index.astype(str), "s": scores.to_numpy(dtype=np.float64)})
    df = df.sort_values(["s", "g"], ascending=[False, True], na_position="last", kind="mergesort")
    return df["g"].head(k).tolist()


def hpg_select(
    rank_tables_per_fold: Mapping[Any, pd.Series] | Sequence[pd.Series] | pd.DataFrame, k: int = 50
) -> GeneSubset:
    """TRIPLEX "highly predictive genes": top-k by per-fold PCC rank averaged over folds.

    Parameters
    ----------
    rank_tables_per_fold
        Per fold, a Series of per-gene test PCC (or already its ranks: ranks of ranks are
        the same) indexed by gene; or a DataFrame with genes as rows and folds as columns.
        Every fold must cover the same genes.
    k
        Set size (50 in TRIPLEX).

    Returns
    -------
    GeneSubset
        ``chosen_on_test=True``: the set is picked after seeing the test results of the
        model it scores (paper-notes §2.9.2), so PCC@H on it is optimistic.

    Notes
    -----
    Within a fold, genes are ranked 1..G by ascending PCC (ties share their average rank).
    TRIPLEX ranks with ``argsort``, which puts NaN above every number; here a NaN PCC gets the
    lowest rank instead, so a gene that could not be scored is never "highly predictive".
    """
    from scipy.stats import rankdata

    if isinstance(rank_tables_per_fold, pd.DataFrame):
        table = rank_tables_per_fold
    else:
        items = (
            rank_tables_per_fold.values()
            if isinstance(rank_tables_per_fold, Mapping)
            else rank_tables_per_fold
        )
        cols = [pd.Series(s) for s in items]
        if not cols:
            raise InputError(
                None, "no folds given to hpg_select", "pass one per-gene PCC Series per fold"
            )
        genes0 = set(cols[0].index)
        if any(set(c.index) != genes0 for c in cols):
            raise InputError(
                None, "folds cover different genes", "evaluate the same genes in every fold"
            )
        table = pd.concat(cols, axis=1)
    vals = table.to_numpy(dtype=np.float64)
    filled = np.where(np.isnan(vals), -np.inf, vals)
    ranks = rankdata(filled, axis=0)
    avg = pd.Series(ranks.mean(axis=1), index=table.index.astype(str))
    genes = _top_k(avg, k, "HPG")
    return GeneSubset(f"hpg{k}", genes, HPG_NOTE, True, {g: float(avg[g]) for g in genes})


def top_expressed(train_counts_mean: pd.Series, k: int = 50) -> GeneSubset:
    """A-priori set: the k genes with the highest mean raw count on TRAINING spots."""
    s = pd.Series(train_counts_mean)
    genes = _top_k(s, k, "top-expressed")
    return GeneSubset(
        f"top_expressed{k}",
        genes,
        "a priori: highest mean count on training data",
        False,
        {g: float(s[g]) for g in genes},
    )


def top_variable(train_values: pd.DataFrame, k: int = 50) -> GeneSubset:
    """A-priori set: the k genes with the highest variance across TRAINING spots.

    Parameters
    ----------
    train_values
        ``(spots x genes)`` DataFrame of training-set values (normalised or log counts: the
        ranking is computed on what is given).
    """
    if not isinstance(train_values, pd.DataFrame):
        raise InputError(
            None,
            "train_values is not a DataFrame",
            "give a spots x genes DataFrame with gene names as columns",
        )
    var = train_values.var(axis=0, ddof=1)
    genes = _top_k(var, k, "top-variable")
    return GeneSubset(
        f"top_variable{k}",
        genes,
        "a priori: highest variance on training data",
        False,
        {g: float(var[g]) for g in genes},
    )


def pcc_at(r_per_gene: pd.Series, gene_subset: GeneSubset | Sequence[str]) -> float:
    """Mean per-gene r over a gene subset, NaNs ignored (NaN if all are NaN)."""
    r = pd.Series(r_per_gene)
    genes = gene_subset.genes if isinstance(gene_subset, GeneSubset) else list(gene_subset)
    idx = _subset_index([str(g) for g in r.index], genes)
    vals = r.to_numpy(dtype=np.float64)[idx]
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")


# ----------------------------------------------------------------------------- bootstrap and tests


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


def _boot_means(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, chunk: int = 128
) -> np.ndarray:
    """Bootstrap replicates of the mean, in chunks so memory stays ~chunk x n."""
    n = values.size
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        out[start : start + b] = values[rng.integers(0, n, size=(b, n))].mean(axis=1)
    return out


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
        Statistic; it must accept ``axis=1`` for speed, else it is called per replicate.
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
    rng = np.random.default_rng(seed)
    if stat is np.mean or stat is np.nanmean:
        boot = _boot_means(v, n_boot, rng)
    else:
        boot = np.empty(n_boot)
        for start in range(0, n_boot, 256):
            idx = rng.integers(0, v.size, size=(min(256, n_boot - start), v.size))
            try:
                b = np.asarray(stat(v[idx], axis=1), dtype=np.float64)
            except TypeError:
                b = np.array([stat(row) for row in v[idx]], dtype=np.float64)
            boot[start : start + idx.shape[0]] = b
    res["ci"] = _interval(boot, level)
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
    for start in range(0, n_boot, 128):
        b = min(128, n_boot - start)
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
        ``mean_diff`` (mean of a - b), ``ci`` (paired bootstrap of the mean difference),
        ``p_value`` (two-sided Wilcoxon signed-rank, scipy), ``p_value_bootstrap``
        (two-sided, from the bootstrap distribution), ``n`` (pairs used), ``n_dropped``.
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
    boot = _boot_means(d, n_boot, np.random.default_rng(seed))
    out["ci"] = _interval(boot, level)
    out["p_value_bootstrap"] = float(min(1.0, 2.0 * min((boot <= 0).mean(), (boot >= 0).mean())))
    out["p_value"] = 1.0 if np.all(d == 0) else float(wilcoxon(d).pvalue)
    return out


def format_table(df: pd.DataFrame, floatfmt: str = ".3f", index: bool = True) -> str:
    """Render a DataFrame as a GitHub markdown table (no extra dependency).

    Floats use ``floatfmt``, integers are printed as integers, NaN/None as ``n/a``;
    numeric columns are right-aligned.
    """

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float | np.floating) and np.isnan(v)):
            return "n/a"
        if isinstance(v, bool | np.bool_):
            return str(bool(v))
        if isinstance(v, int | np.integer):
            return str(int(v))
        if isinstance(v, float | np.floating):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    frame = df.reset_index() if index else df
    cols = [str(c) for c in frame.columns]
    numeric = [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        for c in frame.columns
    ]
    rows = [[cell(v) for v in rec] for rec in frame.itertuples(index=False, name=None)]
    widths = [max([len(c)] + [len(r[i]) for r in rows] + [3]) for i, c in enumerate(cols)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(wd) if num else c.ljust(wd)
                for c, wd, num in zip(cells, widths, numeric, strict=True)
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ("-" * (wd + 1) + ":") if num else ("-" * (wd + 2))
            for wd, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(cols), rule, *(line(r) for r in rows)]) + "\n"
