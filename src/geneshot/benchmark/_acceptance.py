"""An issue's acceptance, declared in the config and judged by every run (``acceptance.csv``).

The verdict (:mod:`geneshot.benchmark._verdict`) judges the long-standing quality goal. An
issue's acceptance says more: above which methods, with which paired test, at what MSE, and how
unlike the mapped genes' maps must be. Declared once in the config's ``acceptance`` field, every
point is computed from the run's own tables instead of by hand::

    acceptance:
      pcc_m: 0.20                          # the reference method's PCC@M at least this
      ratio: {permuted-text: 1.5}          # at least this many times the method's PCC@M
      above: {gene-kernel: null, depth: 0.01}  # mean PCC@M above the method's; with a number,
                                           # also a per-gene paired Wilcoxon p below it
      mse_at_most: [depth]                 # MSE no worse than the method's
      maps_below: {genes: [ERBB2, KRT19, COL1A1], pcc: 0.8}  # every pair of the reference's
                                           # maps of these genes, on every mapped section
      fallback: 0.01                       # no quartile of the reference's genes by departure
                                           # from the common pattern below depth with a paired
                                           # Wilcoxon p under this (departure.csv)
      genes_spread: true                   # the mean pairwise cosine of the reference's gene
                                           # vectors lower at its last training epoch than at
                                           # its first (mean over folds; trained models only)

Every point is on the headline convention, per-section PCC@M, as in the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from geneshot.benchmark._verdict import _pick, tk_for
from geneshot.errors import InputError
from geneshot.metrics import map_similarity

#: the fields an ``acceptance`` mapping may hold
FIELDS = ("pcc_m", "ratio", "above", "mse_at_most", "maps_below", "fallback", "genes_spread")
COLUMNS = ["criterion", "value", "needed", "holds"]
NOT_JUDGED = "not judged"


def check_acceptance_config(spec: dict | None, methods: Sequence[str], source: Any = None) -> None:
    """Fail early, naming the field, on an ``acceptance`` mapping the run could not judge.

    Its keys were checked with the config's other mappings (``_config._check_nested_keys``);
    this checks what they name: methods of the config, and the maps' genes and bound.
    """
    if spec is None:
        return
    named = {
        "ratio": list(spec.get("ratio") or {}),
        "above": list(spec.get("above") or {}),
        "mse_at_most": list(spec.get("mse_at_most") or []),
    }
    for field, names in named.items():
        missing = [n for n in names if n not in methods]
        if missing:
            raise InputError(
                source,
                f"acceptance.{field} names {missing}, which are not methods of this config",
                f"name methods listed under `methods:` ({', '.join(methods)})",
            )
    alpha = spec.get("fallback")
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1
    ):
        raise InputError(
            source,
            f"acceptance.fallback is {alpha!r}, not a p-value bound",
            "write `fallback: 0.01`",
        )
    spread = spec.get("genes_spread")
    if spread is not None and not isinstance(spread, bool):
        raise InputError(
            source,
            f"acceptance.genes_spread is {spread!r}, not true or false",
            "write `genes_spread: true`",
        )
    maps = spec.get("maps_below")
    if maps is not None and (
        not isinstance(maps, dict) or not maps.get("genes") or "pcc" not in maps
    ):
        raise InputError(
            source,
            "acceptance.maps_below needs `genes` and `pcc`",
            "write `maps_below: {genes: [ERBB2, KRT19, COL1A1], pcc: 0.8}`",
        )


def acceptance(
    results: pd.DataFrame,
    paired: pd.DataFrame,
    maps: Sequence[dict],
    cfg: dict,
    departure: pd.DataFrame | None = None,
    curves: Sequence[dict] = (),
) -> pd.DataFrame:
    """Judge ``cfg["acceptance"]`` for ``cfg["reference"]``: one row per point.

    Parameters
    ----------
    results, paired
        The run's results table and paired tests (:func:`geneshot.benchmark.aggregate`).
    maps
        The run's map inputs (``BenchmarkResult.maps``): each a section's ``values`` per kind
        (``"measured"`` and method labels) and ``genes``.
    cfg
        The resolved config.
    departure
        The run's departure quartiles (:func:`geneshot.benchmark._departure.departure_table`),
        for ``fallback``.
    curves
        Per fold and trained method, the gene-vector cosine at the first and the last epoch
        (``fold``, ``method``, ``first``, ``last``), for ``genes_spread``.

    Returns
    -------
    ``criterion``, ``value``, ``needed`` and ``holds`` (``"yes"``, ``"no"`` or ``"not judged"``
    where the run has no result to judge by); empty without an ``acceptance`` field.
    """
    spec = cfg.get("acceptance") or {}
    rows: list[dict] = []
    if not spec:
        return pd.DataFrame(rows, columns=COLUMNS)
    conv = cfg["headline"]
    tk = tk_for(conv, cfg)
    ref_name = cfg["reference"]
    ref = _pick(results, conv, tk, method=ref_name)
    v = np.nan if ref is None else float(ref["pcc_m_section"])

    def add(criterion: str, value: float, needed: str, holds: bool | None) -> None:
        judged = holds is not None and np.isfinite(value)
        rows.append(
            {
                "criterion": criterion,
                "value": value,
                "needed": needed,
                "holds": ("yes" if holds else "no") if judged else NOT_JUDGED,
            }
        )

    def other(name: str) -> pd.Series | None:
        return _pick(results, conv, tk, method=name, setting=cfg["methods"][name]["setting"])

    if "pcc_m" in spec:
        goal = float(spec["pcc_m"])
        add(f"{ref_name} PCC@M", v, f">= {goal}", v >= goal)
    for name, factor in (spec.get("ratio") or {}).items():
        o = other(name)
        ratio = np.nan if o is None or o["pcc_m_section"] <= 0 else v / float(o["pcc_m_section"])
        add(f"{ref_name} PCC@M / {name}'s", ratio, f">= {factor}", ratio >= float(factor))
    for name, alpha in (spec.get("above") or {}).items():
        o = other(name)
        diff = np.nan if o is None else v - float(o["pcc_m_section"])
        add(f"{ref_name} PCC@M minus {name}'s", diff, "> 0", diff > 0)
        if alpha is not None:
            p, per_gene = _paired(paired, ref_name, name, conv, tk)
            add(
                f"{ref_name} above {name} per gene (paired Wilcoxon p)",
                p,
                f"< {alpha}, mean per-gene difference > 0",
                p < float(alpha) and per_gene > 0,
            )
    for name in spec.get("mse_at_most") or []:
        o = other(name)
        mse = np.nan if ref is None else float(ref["mse"])
        bound = np.nan if o is None else float(o["mse"])
        add(f"{ref_name} MSE", mse, f"<= {name}'s {bound:.3f}", None if o is None else mse <= bound)
    if spec.get("maps_below"):
        _maps_rows(spec["maps_below"], maps, cfg, add)
    if spec.get("fallback") is not None:
        alpha = float(spec["fallback"])
        p = _fallback_p(departure, ref_name)
        add(
            f"{ref_name}: smallest paired p of a departure quartile below depth",
            p,
            f">= {alpha} (no quartile below depth)",
            p >= alpha,
        )
    if spec.get("genes_spread"):
        mine = [c["last"] - c["first"] for c in curves if c["method"] == ref_name]
        change = float(np.mean(mine)) if mine else np.nan
        add(
            f"{ref_name}: gene-vector cosine, last minus first epoch (mean over folds)",
            change,
            "< 0 (the genes spread apart in training)",
            change < 0,
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _fallback_p(departure: pd.DataFrame | None, method: str) -> float:
    """The smallest Wilcoxon p among ``method``'s departure quartiles whose mean per-gene PCC
    lies below depth's (1.0 when none does; NaN without the table)."""
    if departure is None or departure.empty:
        return np.nan
    mine = departure[departure["method"] == method]
    if mine.empty:
        return np.nan
    below = mine[mine["mean_diff_r"] < 0]
    return float(below["p_wilcoxon"].min()) if len(below) else 1.0


def _paired(paired: pd.DataFrame, ref: str, name: str, conv: str, tk: str) -> tuple[float, float]:
    """The paired test of ``ref`` minus ``name``: Wilcoxon p and mean per-gene difference."""
    if paired.empty:
        return np.nan, np.nan
    hit = paired[
        (paired["method_a"] == ref)
        & (paired["method_b"] == name)
        & (paired["convention"] == conv)
        & (paired["trained_on"] == tk)
    ]
    if hit.empty:
        return np.nan, np.nan
    return float(hit["p_wilcoxon"].iloc[0]), float(hit["mean_diff_r"].iloc[0])


def _maps_rows(want: dict, maps: Sequence[dict], cfg: dict, add) -> None:
    ref = cfg["reference"]
    label = cfg["methods"].get(ref, {}).get("label", ref)
    bound = float(want["pcc"])
    judged = False
    for m in maps:
        if label not in m["values"]:
            continue
        genes = [g for g in want["genes"] if g in m["genes"]]
        cols = [m["genes"].index(g) for g in genes]
        sim = map_similarity({label: np.asarray(m["values"][label])[:, cols]}, genes)
        for r in sim.itertuples(index=False):
            judged = True
            add(
                f"{ref}'s maps {r.gene_a}–{r.gene_b} on {m['section']} (PCC)",
                r.pcc,
                f"< {bound}",
                r.pcc < bound,
            )
        for a, b in combinations(want["genes"], 2):
            if a not in genes or b not in genes:
                judged = True
                add(f"{ref}'s maps {a}–{b} on {m['section']} (PCC)", np.nan, f"< {bound}", None)
    if not judged:
        add(f"{ref}'s maps of {', '.join(want['genes'])} (PCC)", np.nan, f"< {bound}", None)


def acceptance_summary(table: pd.DataFrame) -> str:
    """One line: how many points hold, and which do not (empty without acceptance)."""
    if table.empty:
        return ""
    held = int((table["holds"] == "yes").sum())
    failing = [
        f"{r.criterion} {_fmt(r.value)} (needed {r.needed})"
        for r in table.itertuples(index=False)
        if r.holds == "no"
    ]
    unjudged = [r.criterion for r in table.itertuples(index=False) if r.holds == NOT_JUDGED]
    line = f"Acceptance (config `acceptance`): {held} of {len(table)} points hold"
    if failing:
        line += "; not: " + "; ".join(failing)
    if unjudged:
        line += "; not judged (no result): " + ", ".join(unjudged)
    return line + "."


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.2g}" if 0 < abs(x) < 1e-3 else f"{x:.3f}"
