"""Report helpers: ranking plot, self-contained HTML."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd

from geneshot.report import figure_to_base64, plot_gene_ranking, write_report


def test_ranking_plot_is_a_png():
    r = pd.Series(np.linspace(-0.2, 0.8, 20), index=[f"g{i}" for i in range(20)])
    fig = plot_gene_ranking({"a": r, "b": r - 0.1}, "t")
    line = fig.axes[0].lines[0].get_ydata()
    assert np.all(np.diff(line) <= 0)  # sorted descending
    png = base64.b64decode(figure_to_base64(fig))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_report_escapes_and_embeds(tmp_path):
    from geneshot.benchmark import resolve_config

    cfg = resolve_config({"methods": {"depth": {}}})
    agg = {
        "verdict": "Quality goal NOT MET <b>",
        "main": pd.DataFrame(),
        "results": pd.DataFrame(),
        "paired": pd.DataFrame(),
        "ablations": pd.DataFrame(),
        "per_gene": {
            ("depth", "libsize", "libsize"): pd.DataFrame(
                {"r_per_section": [0.3, 0.1]}, index=["A", "B"]
            )
        },
        "hpg_note": "chosen on test results",
    }
    prov = {
        "split": {"name": "loso", "id": "abc", "n_folds": 2},
        "machine": {"cores": 2},
        "config": cfg,
    }
    p = write_report(tmp_path / "r.html", agg, cfg, prov)
    html = p.read_text()
    assert "NOT MET &lt;b&gt;" in html and "class='verdict notmet'" in html
    assert html.count("data:image/png;base64,") == 1 and "<script" not in html
