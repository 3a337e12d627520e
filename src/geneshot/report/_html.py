"""The benchmark's single self-contained HTML report (tables, plots as base64 PNG, provenance)."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geneshot.cache import atomic_path
from geneshot.report._maps import plot_gene_maps
from geneshot.report._tables import (
    DEPARTURE_NOTE,
    DEPARTURE_TITLE,
    detail_table,
    map_similarity_table,
    map_similarity_wide,
    notes,
    table1,
)

log = logging.getLogger(__name__)

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr:nth-child(even){background:#fafafa}
.verdict{padding:.7em 1em;border-radius:4px;font-weight:600}
.met{background:#e6f4ea;border:1px solid #8bc79a}.notmet{background:#fdecea;border:1px solid #e5a19a}
.note{color:#555;font-size:.9em}img{max-width:100%}
pre{background:#f6f6f6;padding:.7em;overflow-x:auto;font-size:.8em}
"""


def figure_to_base64(fig) -> str:
    """PNG bytes of a matplotlib figure as a base64 string (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def plot_gene_ranking(per_gene: dict[str, pd.Series], title: str = ""):
    """Per-gene r of each method, sorted descending (one line per method).

    Parameters
    ----------
    per_gene
        Method label -> per-gene correlation Series.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for label, r in per_gene.items():
        v = np.sort(np.asarray(r, np.float64)[~np.isnan(np.asarray(r, np.float64))])[::-1]
        ax.plot(
            np.arange(1, v.size + 1),
            v,
            label=f"{label} (mean {v.mean():.3f})" if v.size else label,
            lw=1.4,
        )
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_xlabel("gene rank")
    ax.set_ylabel("Pearson r (per section, mean over test sections)")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def _maps_figure(m: dict):
    image, scale = None, 1.0
    if m.get("image_path"):
        try:
            from geneshot.image import SlideImage

            image, scale = SlideImage(m["image_path"]).thumbnail(2000)
        except Exception as err:  # noqa: BLE001 (a missing image must not lose the report)
            log.warning("no H&E under the maps of %s: %s", m["section"], err)
    xy = np.asarray(m["xy"]) * scale
    title = f"{m['section']} (fold {m['fold']}, {m['convention']} targets): measured vs predicted"
    return plot_gene_maps(
        image, xy, m["values"], m["genes"], m["spot_diameter"] * scale, out=None, title=title
    )


def _section(title_html: str, note: str, df: pd.DataFrame, floatfmt: str) -> list[str]:
    """A report section: heading (already HTML), one escaped paragraph, the table."""
    return [f"<h2>{title_html}</h2>", f"<p>{html.escape(note)}</p>", _table(df, floatfmt)]


def _table(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    if df is None or df.empty:
        return "<p class='note'>(none)</p>"

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "n/a" if np.isnan(v) else floatfmt.format(v)
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False, name=None)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    path: str | Path, agg: dict, cfg: dict, provenance: dict, maps: Sequence[dict] = ()
) -> Path:
    """Write the self-contained HTML report of a benchmark (no external files or links).

    Parameters
    ----------
    path
        Output ``report.html`` (written atomically).
    agg
        The aggregate mapping of a benchmark run (``BenchmarkResult.aggregate``).
    cfg
        Resolved benchmark config.
    provenance
        Command, date, machine, versions and timings.
    maps
        Map inputs (section, xy, values, genes, image path) of the test sections to draw.
    """
    path = Path(path)
    verdict = agg["verdict"]
    cls = "met" if " MET " in f" {verdict} " and "NOT MET" not in verdict else "notmet"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>geneshot benchmark</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>geneshot benchmark</h1>",
        f"<p>Protocol <b>{html.escape(provenance['split']['name'])}</b> (split id <code>{provenance['split']['id']}</code>, "
        f"{provenance['split']['n_folds']} folds); {cfg['gene_split']['n_unseen']} unseen genes ({html.escape(cfg['gene_split']['kind'])} split on training sections); "
        f"headline targets <b>{cfg['headline']}</b>.</p>",
        f"<p class='verdict {cls}'>{html.escape(verdict)}</p>",
    ]
    accept = agg.get("acceptance")
    if accept is not None and not accept.empty:
        title = "Acceptance (config <code>acceptance</code>)"
        parts += _section(title, agg["acceptance_line"], accept, "{:.4g}")
    parts += [
        "<h2>Table 1</h2>",
        _table(table1(agg, cfg)),
        "<h2>All metrics, both pooling conventions, 95% intervals</h2>",
        _table(detail_table(agg)),
    ]
    if not agg["paired"].empty:
        parts += [
            f"<h2>Paired tests over genes ({html.escape(cfg['reference'])} minus each method)</h2>",
            _table(agg["paired"], "{:.4g}"),
        ]
    dep = agg.get("departure")
    if dep is not None and not dep.empty:
        parts += _section(html.escape(DEPARTURE_TITLE), DEPARTURE_NOTE, dep, "{:.3g}")
    if not agg["ablations"].empty:
        parts += ["<h2>Ablations and sensitivity</h2>", _table(agg["ablations"])]
    # per-gene ranking on the headline convention
    tk = cfg["train_targets"][0]
    ranks = {}
    for (m, k, conv), df in agg["per_gene"].items():
        if k == tk and conv == cfg["headline"] and not m.startswith("ablation:"):
            ranks[cfg["methods"][m]["label"] if m in cfg["methods"] else m] = df["r_per_section"]
    if ranks:
        try:
            parts += [
                "<h2>Per-gene ranking</h2>",
                _img(
                    figure_to_base64(
                        plot_gene_ranking(ranks, f"unseen genes, {cfg['headline']} targets")
                    ),
                    "per-gene ranking",
                ),
            ]
            ref = cfg["reference"]
            if (ref, tk, cfg["headline"]) in agg["per_gene"]:
                top = agg["per_gene"][(ref, tk, cfg["headline"])].sort_values(
                    "r_per_section", ascending=False
                )
                both = pd.concat([top.head(15), top.tail(10)]).reset_index()
                parts += [f"<p>Best and worst genes of {html.escape(ref)}:</p>", _table(both)]
        except Exception as err:  # noqa: BLE001
            parts.append(f"<p class='note'>ranking plot failed: {html.escape(str(err))}</p>")
    if maps:
        parts.append("<h2>Spatial maps over the H&amp;E</h2>")
        for m in maps:
            if not m["genes"]:
                parts.append(
                    f"<p class='note'>{html.escape(m['section'])}: none of the map genes {html.escape(', '.join(cfg['map_genes']))} is among the unseen genes.</p>"
                )
                continue
            try:
                parts.append(_img(figure_to_base64(_maps_figure(m)), f"maps {m['section']}"))
            except Exception as err:  # noqa: BLE001
                parts.append(
                    f"<p class='note'>maps of {html.escape(m['section'])} failed: {html.escape(str(err))}</p>"
                )
            if len(m["genes"]) >= 2:
                parts += [
                    f"<p>How alike the maps of {html.escape(m['section'])} are (pairwise PCC "
                    "over its spots; the measured row is the yardstick):</p>",
                    _table(map_similarity_wide(map_similarity_table([m]))),
                ]
    parts += (
        ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes(cfg, agg)] + ["</ul>"]
    )
    prov = {k: v for k, v in provenance.items() if k != "config"}
    parts += [
        "<h2>Provenance</h2>",
        f"<pre>{html.escape(json.dumps(prov, indent=1, default=str))}</pre>",
        "<details><summary>Config</summary>",
        f"<pre>{html.escape(json.dumps(provenance.get('config', cfg), indent=1, default=str))}</pre></details>",
        "</body></html>",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return path
