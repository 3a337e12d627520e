"""Every file of a finished benchmark: tables (CSV / markdown), provenance and the HTML report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from geneshot.report._html import write_report
from geneshot.report._tables import write_tables


def write_benchmark(
    out: str | Path,
    agg: dict,
    cfg: dict,
    provenance: dict,
    maps: Sequence[dict] = (),
    *,
    html: bool = True,
) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md``, per-gene / paired / ablation tables,
    ``provenance.json``, ``map_similarity.csv`` (with ``maps``) and (``html=True``)
    ``report.html`` under ``out``.

    Parameters
    ----------
    out
        The benchmark's output folder.
    agg
        The aggregate mapping (``results``, ``main``, ``per_gene``, ``paired``,
        ``ablations``, ``verdict``, ``hpg_note``; with an acceptance, ``acceptance`` and
        ``acceptance_line``), e.g. ``BenchmarkResult.aggregate``.
    cfg
        The resolved benchmark config.
    provenance
        Command, date, machine, timings, split and config of the run.
    maps
        Map inputs of the test sections to draw in the report.
    html
        Write ``report.html`` (matplotlib needed).

    Returns
    -------
    dict
        Name -> path of everything written.
    """
    out = Path(out)
    files = write_tables(agg, cfg, out, provenance, maps)
    if html:
        files["report"] = write_report(out / "report.html", agg, cfg, provenance, maps)
    return files
