"""The benchmark runner: methods x folds x settings, stored per fold, aggregated with intervals.

Per fold (paper-notes §2.7, with the leaks of §2.9 closed):

1. read train + test sections on one gene universe (union of their gene *names*);
2. split genes (SGN: the most expressed are unseen) on the TRAINING sections only;
3. fit every target convention on the training sections only;
4. train each method once (on ``train_targets``), predict the unseen genes of the test
   sections, and store the predictions under ``OUT/folds/<fold_id>/`` keyed by the method's
   configuration and the code (see :mod:`._fold`), so that a re-run (or a run after an
   interruption) only trains what is missing.

Tables and the HTML report are written from the returned result by
:func:`geneshot.report.write_benchmark` (the report sits above the benchmark).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from geneshot._constants import Key
from geneshot._progress import progress_bar
from geneshot.benchmark._acceptance import acceptance, acceptance_summary
from geneshot.benchmark._aggregate import aggregate
from geneshot.benchmark._config import resolve_config
from geneshot.benchmark._departure import departure_table
from geneshot.benchmark._fold import RunState, run_fold
from geneshot.benchmark._plan import plan_folds, section_split
from geneshot.cache import Cache
from geneshot.data import write_split
from geneshot.errors import InputError
from geneshot.io import read_dataset, section_id


@dataclass
class BenchmarkResult:
    """What a benchmark run produced.

    ``aggregate``, ``config``, ``provenance`` and ``maps`` are the inputs of
    :func:`geneshot.report.write_benchmark`, which writes ``results.csv``, ``results.md``
    and ``report.html``; ``files`` lists what was written. ``acceptance`` judges the config's
    ``acceptance`` field (also ``aggregate["acceptance"]``; empty without one).
    """

    out: Path
    results: pd.DataFrame
    ablations: pd.DataFrame
    paired: pd.DataFrame
    verdict: str
    trained: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    aggregate: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    maps: list[dict] = field(default_factory=list)
    acceptance: pd.DataFrame = field(default_factory=pd.DataFrame)


def _machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    from geneshot import __version__

    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "geneshot": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def _sections(cfg: dict, data_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Imaged sections of the config and their patients."""
    secs_arg = cfg["sections"]
    if secs_arg == "imaged":
        raw = read_dataset(cfg["dataset"], data_dir, None, imaged_only=True)
    else:
        raw = read_dataset(cfg["dataset"], data_dir, secs_arg, require_image=True)
    if len(raw) < 2:
        raise InputError(
            data_dir, f"{len(raw)} section(s) with images", "a benchmark needs >= 2 imaged sections"
        )
    names = [section_id(a) for a in raw]
    patient_of = {section_id(a): str(a.obs[Key.PATIENT].iloc[0]) for a in raw}
    return names, patient_of


def run_benchmark(
    config: dict | str | os.PathLike,
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    cache: Cache | None = None,
    progress: bool = True,
    max_epochs: int | None = None,
    folds: str | int | None = None,
    command: str | None = None,
    ablations: bool = True,
) -> BenchmarkResult:
    """Run (or resume) a benchmark: train / load every fold, aggregate.

    Writes ``split.json`` and the per-fold result store ``folds/`` under ``out``; pass the
    result to :func:`geneshot.report.write_benchmark` for the tables and the report.

    Parameters
    ----------
    config
        Config mapping or YAML path (see ``configs/her2st_zero_shot.yaml`` and
        :data:`DEFAULT_CONFIG`).
    data_dir
        The dataset's folder.
    out
        Output folder; existing fold results there are reused when their key matches.
    cache
        Feature cache (default: the user cache).
    max_epochs
        Override ``max_epochs`` of every trained torch method (quick runs).
    folds
        ``None``/``"all"``, ``"first"`` or a number of leading folds to run.
    command
        Command line recorded in the provenance.
    ablations
        Run the config's ablations (on its ``ablation_folds``); False skips them.

    Returns
    -------
    BenchmarkResult
    """
    t_start = time.perf_counter()
    cfg = resolve_config(config)
    if not ablations:
        cfg["ablations"] = {}
    if max_epochs is not None:
        for spec in cfg["methods"].values():
            spec["train_config"]["max_epochs"] = int(max_epochs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir)
    names, patient_of = _sections(cfg, data_dir)
    split = section_split(cfg, names, patient_of)
    write_split(split, out / "split.json")
    plan = plan_folds(cfg, split, folds)

    state = RunState(cfg=cfg, out=out, cache=cache or Cache(), progress=progress, data_dir=data_dir)
    for fid, f, g in progress_bar(plan.folds, progress=progress, desc="benchmark folds"):
        t0 = time.perf_counter()
        run_fold(
            state,
            fid,
            f,
            g,
            with_ablations=fid in plan.ablation_ids,
            with_maps=fid in plan.map_ids,
        )
        state.timings[f"fold {fid}"] = round(time.perf_counter() - t0, 1)

    agg = aggregate(state.records, cfg)
    agg["departure"] = departure_table(state.departures, agg["per_gene"], cfg)
    agg["acceptance"] = acceptance(
        agg["results"], agg["paired"], state.maps, cfg, agg["departure"], state.curves
    )
    # the report takes results as data (it never imports the benchmark): the line, as the verdict
    agg["acceptance_line"] = acceptance_summary(agg["acceptance"])
    state.timings["total"] = round(time.perf_counter() - t_start, 1)
    provenance = {
        "command": command or " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "timings_s": state.timings,
        "trained": state.trained,
        "loaded": state.loaded,
        "split": {
            "id": split["id"],
            "name": split["name"],
            "file": "split.json",
            "n_folds": len(plan.folds),
        },
        "data_dir": str(data_dir),
        "config": cfg,
    }
    return BenchmarkResult(
        out=out,
        results=agg["results"],
        ablations=agg["ablations"],
        paired=agg["paired"],
        verdict=agg["verdict"],
        trained=state.trained,
        loaded=state.loaded,
        timings=state.timings,
        files={"split": out / "split.json", "folds": out / "folds"},
        aggregate=agg,
        config=cfg,
        provenance=provenance,
        maps=state.maps,
        acceptance=agg["acceptance"],
    )
