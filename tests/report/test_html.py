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


def _empty_run(cfg: dict) -> tuple[dict, dict]:
    """The aggregate and provenance of a run with no results (what write_benchmark reads)."""
    agg = {
        "verdict": "v",
        "main": pd.DataFrame(),
        "results": pd.DataFrame(),
        "paired": pd.DataFrame(),
        "ablations": pd.DataFrame(),
        "per_gene": {},
        "hpg_note": "",
    }
    prov = {
        "split": {"name": "loso", "id": "abc", "n_folds": 1},
        "machine": {"cores": 2, "cpu": "x"},
        "config": cfg,
        "date": "today",
        "timings_s": {"total": 1.0},
        "trained": [],
        "loaded": [],
    }
    return agg, prov


def test_maps_come_with_how_alike_they_are_in_the_report_and_a_csv(tmp_path):
    from geneshot.benchmark import resolve_config
    from geneshot.report import write_benchmark

    cfg = resolve_config({"methods": {"depth": {}}})
    rng = np.random.default_rng(1)
    measured = rng.normal(size=(30, 3))
    alike = np.repeat(rng.normal(size=(30, 1)), 3, axis=1) + 0.01 * rng.normal(size=(30, 3))
    maps = [
        {
            "fold": "f0",
            "section": "S1",
            "image_path": None,
            "xy": rng.uniform(0, 500, size=(30, 2)),
            "spot_diameter": 20.0,
            "genes": ["ERBB2", "KRT19", "COL1A1"],
            "values": {"measured": measured, "model": alike},
            "convention": "libsize",
        }
    ]
    agg, prov = _empty_run(cfg)
    files = write_benchmark(tmp_path, agg, cfg, prov, maps)
    sim = pd.read_csv(files["map_similarity"])
    assert len(sim) == 6 and set(sim["kind"]) == {"measured", "model"}
    assert (sim.loc[sim["kind"] == "model", "pcc"] > 0.99).all()
    assert (sim.loc[sim["kind"] == "measured", "pcc"].abs() < 0.6).all()
    md = files["results_md"].read_text()
    assert "How alike the maps are" in md and "ERBB2–KRT19" in md
    html = files["report"].read_text()
    assert "How alike the maps of S1 are" in html and "ERBB2–KRT19" in html


def test_the_acceptance_table_is_written_beside_the_verdict(tmp_path):
    from geneshot.benchmark import acceptance_summary, resolve_config
    from geneshot.report import write_benchmark

    cfg = resolve_config({"methods": {"depth": {}}})
    table = pd.DataFrame(
        {
            "criterion": ["align-st PCC@M", "align-st's maps ERBB2–KRT19 on C2 (PCC)"],
            "value": [0.21, 0.96],
            "needed": [">= 0.2", "< 0.8"],
            "holds": ["yes", "no"],
        }
    )
    agg, prov = _empty_run(cfg)
    agg["acceptance"], agg["acceptance_line"] = table, acceptance_summary(table)
    files = write_benchmark(tmp_path, agg, cfg, prov)
    assert pd.read_csv(files["acceptance"])["holds"].tolist() == ["yes", "no"]
    line = "1 of 2 points hold; not: align-st's maps ERBB2–KRT19 on C2 (PCC) 0.960 (needed < 0.8)"
    assert line in files["results_md"].read_text()
    html = files["report"].read_text()
    assert "<h2>Acceptance" in html and "ERBB2–KRT19 on C2" in html
