"""Benchmark tables (Table 1, every metric, notes) and their markdown / CSV files.

Results come in as data: the aggregate mapping (``results``, ``main``, ``per_gene``,
``paired``, ``ablations``, ``verdict``, ``hpg_note``), the resolved config and the provenance.
Nothing here runs or imports the benchmark.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geneshot.cache import atomic_path, write_json_atomic
from geneshot.errors import InputError
from geneshot.metrics import MISS_MARGIN, map_similarity


def format_table(df: pd.DataFrame, floatfmt: str = ".3f", index: bool = True) -> str:
    """Render a DataFrame as a GitHub markdown table (``DataFrame.to_markdown``).

    Floats use ``floatfmt``, NaN/None print as ``n/a``, numeric columns are right-aligned and
    ``|`` / newlines inside cells are escaped so a cell cannot break the table.
    """
    source = df.reset_index() if index else df
    frame = source.astype(object).where(source.notna(), None)
    for c in frame.columns:
        if not pd.api.types.is_numeric_dtype(source[c]):
            frame[c] = [
                v if v is None else str(v).replace("|", "\\|").replace("\n", " ") for v in frame[c]
            ]
    return frame.to_markdown(index=False, floatfmt=floatfmt, missingval="n/a") + "\n"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _tk_for(conv: str, cfg: dict) -> str:
    """Training convention whose rows represent ``conv``: itself when trained on, else the first."""
    return conv if conv in cfg["train_targets"] else cfg["train_targets"][0]


def _fmt_ci(lo: float, hi: float) -> str:
    return "n/a" if np.isnan(lo) or np.isnan(hi) else f"[{lo:.3f}, {hi:.3f}]"


GROUP_TITLES = {
    "zero-shot": "zero-shot (text only)",
    "reference": "reference-assisted zero-shot",
    "control": "controls",
    "supervised": "supervised ceiling",
}


def table1(agg: dict, cfg: dict) -> pd.DataFrame:
    """Table-1 layout: rows methods grouped, columns MSE / PCC@M / PCC@H per convention."""
    res = agg["main"]
    if res.empty:
        return pd.DataFrame()
    rows = []
    for grp in GROUP_TITLES:
        sub = res[res["group"] == grp]
        for m in dict.fromkeys(sub["method"]):
            row: dict[str, Any] = {
                "block": GROUP_TITLES[grp],
                "method": sub[sub["method"] == m].iloc[0]["label"],
                "ZSL": "yes" if grp != "supervised" else "no",
            }
            for conv in cfg["conventions"]:
                r = sub[
                    (sub["method"] == m)
                    & (sub["convention"] == conv)
                    & (sub["trained_on"] == _tk_for(conv, cfg))
                ]
                if r.empty:
                    continue
                r = r.iloc[0]
                row[f"{conv} MSE"] = r["mse"]
                row[f"{conv} PCC@M"] = r["pcc_m_section"]
                row[f"{conv} PCC@M 95% CI"] = _fmt_ci(
                    r["pcc_m_section_ci_lo"], r["pcc_m_section_ci_hi"]
                )
                row[f"{conv} PCC@H*"] = r["pcc_h_section"]
                row[f"{conv} PCC@top-expr"] = r["pcc_top_expressed_section"]
            rows.append(row)
    return pd.DataFrame(rows)


def detail_table(agg: dict) -> pd.DataFrame:
    """Every metric of every row, both pooling conventions, with intervals."""
    res = agg["main"]
    if res.empty:
        return res
    df = pd.DataFrame(
        {
            "method": res["label"],
            "group": res["group"],
            "trained_on": res["trained_on"],
            "convention": res["convention"],
            "MSE": res["mse"],
            "MAE": res["mae"],
            "PCC@F sec": res["pcc_f_section"],
            "PCC@S sec": res["pcc_s_section"],
            "PCC@M sec": res["pcc_m_section"],
            "PCC@M sec CI": [
                _fmt_ci(a, b)
                for a, b in zip(res["pcc_m_section_ci_lo"], res["pcc_m_section_ci_hi"])
            ],
            "PCC@F pool": res["pcc_f_pooled"],
            "PCC@S pool": res["pcc_s_pooled"],
            "PCC@M pool": res["pcc_m_pooled"],
            "PCC@M pool CI (genes)": [
                _fmt_ci(a, b) for a, b in zip(res["pcc_m_pooled_ci_lo"], res["pcc_m_pooled_ci_hi"])
            ],
            "PCC@H* sec": res["pcc_h_section"],
            "PCC@top-expr sec": res["pcc_top_expressed_section"],
            "PCC@top-var sec": res["pcc_top_variable_section"],
            "fit s": res["fit_s_mean"],
        }
    )
    return df


def notes(cfg: dict, agg: dict) -> list[str]:
    """Plain-language notes printed under the tables."""
    k = cfg["subset_k"]
    tk = cfg["train_targets"][0]
    out = [
        f"PCC@H* = mean r over the top-{k} 'highly predictive genes' (TRIPLEX), {agg['hpg_note']}; chosen per method from its own test results. "
        f"PCC@top-expr / top-var use the {k} unseen genes with the highest mean count / variance on TRAINING sections (a priori, honest).",
        "PCC@M sec: r per gene within each test section, averaged over genes, then over sections weighted by spots (TRIPLEX). "
        "PCC@M pool: r over the concatenated test spots of a fold (SGN/EGN), averaged over folds.",
        f"NaN policy: {cfg['nan_policy']} (a constant prediction or target gives no r; 'drop' leaves it out, 'minus_one' counts it as -1).",
        "95% CI: percentile bootstrap; 'sec' resamples test sections and genes (hierarchical), 'pool' resamples genes only (genes are correlated, so it is narrower than it should be).",
        f"Models are trained on {tk} targets; rows of another convention compare those predictions with that convention's targets by correlation only (MSE/MAE n/a: different units).",
        "Every gene split, target normalisation and a-priori gene set is computed on the training sections of each fold; test sections are used only for scoring.",
        "Supervised ceiling: trained on the unseen genes themselves (training sections only), i.e. not zero-shot.",
    ]
    return out


def per_gene_path(out: Path, method: str, trained_on: str, convention: str) -> Path:
    """Where :func:`write_tables` puts a method's per-gene table in the output folder ``out``."""
    return Path(out) / "per_gene" / f"{_safe(method)}__{trained_on}__{convention}.csv"


def read_per_gene(
    out: Path, method: str, trained_on: str = "libsize", convention: str = "libsize"
) -> pd.Series:
    """Per-section r of every gene a finished run scored in all of its folds, by gene.

    Raises
    ------
    InputError
        The run has no such table (``method`` not in it, or another ``trained_on``).
    """
    path = per_gene_path(out, method, trained_on, convention)
    if not path.is_file():
        raise InputError(
            path,
            "no per-gene table",
            f"is {method!r} a method of this run, trained on {trained_on!r}?",
        )
    table = pd.read_csv(path, index_col="gene")
    return table.loc[table["n_folds"] == table["n_folds"].max(), "r_per_section"]


def map_similarity_table(maps: Sequence[dict]) -> pd.DataFrame:
    """Pairwise correlation of the map genes' maps, per test section and kind of map.

    ``maps``: the benchmark's map inputs (``fold``, ``section``, ``genes`` and ``values``:
    ``"measured"`` and each map method's predictions). Long format: ``fold``, ``section``,
    ``kind``, ``gene_a``, ``gene_b``, ``pcc`` (:func:`geneshot.metrics.map_similarity`).
    """
    parts = [
        map_similarity(m["values"], m["genes"]).assign(fold=m["fold"], section=m["section"])
        for m in maps
        if len(m["genes"]) >= 2
    ]
    cols = ["fold", "section", "kind", "gene_a", "gene_b", "pcc"]
    return pd.concat(parts)[cols] if parts else pd.DataFrame(columns=cols)


def map_similarity_wide(long: pd.DataFrame) -> pd.DataFrame:
    """One section's :func:`map_similarity_table` rows as kinds x gene pairs (kinds in order)."""
    pair = long["gene_a"] + "–" + long["gene_b"]
    wide = long.assign(pair=pair).pivot(index="kind", columns="pair", values="pcc")
    return wide.loc[list(dict.fromkeys(long["kind"])), list(dict.fromkeys(pair))].reset_index()


DEPARTURE_TITLE = "Where the maps leave the common pattern (departure quartiles)"
DEPARTURE_NOTE = (
    "Each gene's departure is 1 - PCC of the model's map with depth's (the common per-spot "
    "pattern), from predictions only; per quartile of it: the mean per-gene PCC minus "
    f"depth's, its CI and Wilcoxon p, and the genes more than {MISS_MARGIN} below depth. "
    "Where gene knowledge says little, a model should stay at the common pattern (a "
    "near-zero difference in its lowest quartiles) rather than go below it."
)


def _md_section(title: str, note: str, df: pd.DataFrame, floatfmt: str) -> list[str]:
    """A ``results.md`` section: heading, one paragraph, the table."""
    return [f"## {title}", "", note, "", format_table(df, floatfmt=floatfmt, index=False), ""]


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    """``df`` to ``path`` (no index), whole or not at all."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def write_tables(
    agg: dict, cfg: dict, out: Path, provenance: dict, maps: Sequence[dict] = ()
) -> dict[str, Path]:
    """``results.csv``, ``results.md``, per-gene tables, ablations, paired tests, provenance,
    and with ``maps`` the pairwise correlation of the mapped genes' maps
    (``map_similarity.csv``)."""
    files: dict[str, Path] = {}
    res = agg["results"].drop(columns=["hpg_genes"], errors="ignore")
    files["results_csv"] = _write_csv(res, out / "results.csv")
    pg_dir = out / "per_gene"
    for (m, tk, conv), df in agg["per_gene"].items():
        with atomic_path(per_gene_path(out, m, tk, conv)) as tmp:
            df.sort_values("r_per_section", ascending=False).to_csv(tmp)
    files["per_gene"] = pg_dir
    for name in ("paired", "ablations"):
        files[name] = _write_csv(agg[name], out / f"{name}.csv")
    sp = provenance["split"]
    lines = [
        "# Benchmark results",
        "",
        f"Protocol `{sp['name']}` (split id `{sp['id']}`, {sp['n_folds']} folds, `split.json`); gene split `{cfg['gene_split']['kind']}` "
        f"({cfg['gene_split']['n_unseen']} unseen genes chosen on training sections); models trained on `{cfg['train_targets'][0]}` targets; headline convention `{cfg['headline']}`.",
        "",
        f"**Verdict.** {agg['verdict']}",
        "",
    ]
    accept = agg.get("acceptance")
    if accept is not None and not accept.empty:
        files["acceptance"] = _write_csv(accept, out / "acceptance.csv")
        lines += _md_section("Acceptance (config `acceptance`)", agg["acceptance_line"], accept, ".4g")
    lines += [
        "## Table 1 (per-section PCC, mean over folds)",
        "",
        format_table(table1(agg, cfg), index=False),
        "",
        "## All metrics and intervals",
        "",
        format_table(detail_table(agg), index=False),
        "",
    ]
    if not agg["paired"].empty:
        lines += [
            f"## Paired tests over genes ({cfg['reference']} minus each method, per-gene r)",
            "",
            f"`n_a_below_b`: genes on which {cfg['reference']} lies more than "
            f"{MISS_MARGIN} below the method (against depth: genes dragged below the common "
            "pattern).",
            "",
            format_table(agg["paired"], floatfmt=".4g", index=False),
            "",
        ]
    dep = agg.get("departure")
    if dep is not None and not dep.empty:
        files["departure"] = _write_csv(dep, out / "departure.csv")
        lines += _md_section(DEPARTURE_TITLE, DEPARTURE_NOTE, dep, ".3g")
    if not agg["ablations"].empty:
        lines += [
            f"## Ablations ({cfg['ablation_base']}, {cfg['headline']} targets)",
            "",
            format_table(agg["ablations"], index=False),
            "",
        ]
    sim = map_similarity_table(maps)
    if not sim.empty:
        files["map_similarity"] = _write_csv(sim, out / "map_similarity.csv")
        lines += [
            "## How alike the maps are (pairwise PCC over the test section's spots)",
            "",
            "A model that draws only the tissue's common pattern draws every gene alike; "
            "the measured row says how alike the genes really are.",
            "",
        ]
        for (fid, section), df in sim.groupby(["fold", "section"], sort=False):
            lines += [f"{section} (fold {fid}):", "", format_table(map_similarity_wide(df), index=False), ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in notes(cfg, agg)]
    t = provenance["timings_s"]
    lines += [
        "",
        f"Run: {provenance['date']}, {provenance['machine']['cores']} cores ({provenance['machine']['cpu']}), total {t.get('total', float('nan')):.0f} s; "
        f"{len(provenance['trained'])} runs trained, {len(provenance['loaded'])} loaded from earlier runs.",
        "",
    ]
    files["results_md"] = out / "results.md"
    with atomic_path(files["results_md"]) as tmp:
        tmp.write_text("\n".join(lines))
    files["provenance"] = out / "provenance.json"
    write_json_atomic(files["provenance"], provenance)
    return files
