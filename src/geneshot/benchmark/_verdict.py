"""The plain-language verdict: does the reference method meet the quality goal?"""

from __future__ import annotations

import pandas as pd


def _pick(
    results: pd.DataFrame,
    conv: str,
    tk: str,
    *,
    method: str | None = None,
    model: str | None = None,
    setting: str = "zero-shot",
) -> pd.Series | None:
    df = results[
        (results["convention"] == conv)
        & (results["trained_on"] == tk)
        & (results["setting"] == setting)
        & (results["group"] != "ablation")
    ]
    df = df[df["method"] == method] if method else df[df["model"] == model]
    return None if df.empty else df.iloc[0]


def tk_for(conv: str, cfg: dict) -> str:
    """Training convention whose rows represent ``conv``: itself when trained on, else the first."""
    return conv if conv in cfg["train_targets"] else cfg["train_targets"][0]


def verdict(results: pd.DataFrame, cfg: dict) -> str:
    """Plain-language check of the quality goal on the headline convention (per-section PCC@M)."""
    if results.empty:
        return "No results."
    conv, goal = cfg["headline"], cfg["quality_goal"]
    tk = tk_for(conv, cfg)
    ref = _pick(results, conv, tk, method=cfg["reference"])
    if ref is None:
        return f"Quality goal not judged: reference method {cfg['reference']!r} has no zero-shot {conv} result."
    v = ref["pcc_m_section"]
    checks = [(f"PCC@M {v:.3f} >= {goal['pcc_m']}", v >= goal["pcc_m"])]
    missing = []
    for what, model, factor in (
        ("SGN", "sgn", goal["vs_sgn"]),
        ("permuted-text", "permuted-text", goal["vs_permuted"]),
        ("depth", "depth", None),
    ):
        other = _pick(results, conv, tk, model=model)
        if other is None:
            missing.append(what)
            continue
        o = other["pcc_m_section"]
        if factor is None:
            checks.append((f"above depth ({o:.3f})", v > o))
        else:
            ok = bool(o <= 0 and v > 0) or (o > 0 and v >= factor * o)
            ratio = f"{v / o:.2f}x" if o > 0 else "n/a (baseline <= 0)"
            checks.append((f">= {factor}x {what} ({o:.3f}; ratio {ratio})", ok))
    met = all(ok for _, ok in checks) and not missing
    parts = "; ".join(f"{'PASS' if ok else 'FAIL'} {txt}" for txt, ok in checks)
    head = f"Quality goal {'MET' if met else 'NOT MET'} for {ref['label']} zero-shot ({conv} targets, per-section PCC@M, {int(ref['n_folds'])} folds)"
    tail = f"; not judged (no result): {', '.join(missing)}" if missing else ""
    return f"{head}: {parts}{tail}."
