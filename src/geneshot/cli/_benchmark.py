"""``geneshot benchmark``: the honest benchmark (methods x folds x settings, resumable)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from geneshot.cli._main import cache_option, main, make_cache, progress_enabled, resolve_data_dir


@main.command("benchmark")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Benchmark YAML (e.g. configs/her2st_zero_shot.yaml).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="The dataset's own folder (default: $GENESHOT_DATA/<dataset of the config>, else the user data folder).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder; finished fold results there are reused (resume).",
)
@click.option(
    "--max-epochs",
    type=int,
    default=None,
    help="Override max_epochs of every trained method (quick runs).",
)
@click.option(
    "--folds", default="all", show_default=True, help="all | first | N (the first N folds)."
)
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--skip-ablations", is_flag=True, help="Do not run the config's ablations.")
@cache_option
def benchmark_cmd(
    config_path, data, out, max_epochs, folds, no_report, skip_ablations, cache_dir
) -> None:
    """Run or resume a benchmark; write results.csv/.md, per-gene tables and report.html."""
    from geneshot.benchmark import resolve_config, run_benchmark
    from geneshot.errors import InputError
    from geneshot.report import write_benchmark

    cfg = resolve_config(config_path)
    if folds not in ("all", "first") and not folds.isdigit():
        raise InputError(None, f"--folds {folds!r}", "use all, first or a number")
    cache = make_cache(cache_dir)
    data = resolve_data_dir(data, cfg["dataset"])
    res = run_benchmark(
        config_path,
        data,
        out,
        cache=cache,
        progress=progress_enabled(),
        max_epochs=max_epochs,
        folds=folds,
        ablations=not skip_ablations,
        command="geneshot " + " ".join(sys.argv[1:]),
    )
    res.files.update(
        write_benchmark(
            res.out, res.aggregate, res.config, res.provenance, res.maps, html=not no_report
        )
    )
    click.echo(res.verdict)
    if res.aggregate.get("acceptance_line"):
        click.echo(res.aggregate["acceptance_line"])
    click.echo(
        f"{len(res.trained)} runs trained, {len(res.loaded)} reused; {res.timings.get('total', 0):.0f} s"
    )
    for key in ("results_md", "results_csv", "report"):
        if key in res.files:
            click.echo(f"wrote {res.files[key]}")
