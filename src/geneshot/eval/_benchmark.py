"""The honest benchmark: methods x folds x settings, cached per fold, aggregated with intervals.

Per fold (paper-notes §2.7, with the leaks of §2.9 closed):

1. read train + test sections on one gene universe (union of their gene *names*);
2. split genes (SGN: the most expressed are unseen) on the TRAINING sections only;
3. fit every target convention on the training sections only;
4. train each method once (on ``train_targets``), predict the unseen genes of the test
   sections, and store the predictions under ``OUT/folds/<fold_id>/`` keyed by a hash of the
   method's configuration, so that a re-run (or a run after an interruption) only trains
   what is missing.

The aggregation reports both pooling conventions (§1.1), PCC@H on TRIPLEX's test-chosen
gene set (flagged) beside a-priori sets chosen on training data, hierarchical bootstrap
intervals and paired tests of the reference method against each other method.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geneshot._constants import Key
from geneshot.cache import Cache, atomic_path, hash_parts, save_npz_atomic
from geneshot.errors import InputError

log = logging.getLogger(__name__)

BENCHMARK_VERSION = "benchmark-v1"  # bump when a fold's stored content changes meaning
GROUPS = ("zero-shot", "control", "supervised", "ablation")
CONTROL_MODELS = ("depth", "permuted-text")
PROTOCOLS = ("auto", "patient_kfold", "loso", "legacy32")

DEFAULT_CONFIG: dict[str, Any] = {
    "dataset": "her2st",
    "sections": None,  # list of ids, "imaged" (every section with an image) or None (all)
    "protocol": "auto",  # auto | patient_kfold | loso | legacy32
    "protocol_k": None,  # patient_kfold: number of folds (None = leave-one-patient-out)
    "gene_split": {
        "kind": "sgn",
        "n_unseen": 250,
        "seen_pool": 2000,
        "k": 5,
        "seed": 0,
        "unseen": None,
    },
    "conventions": ["libsize", "sgn"],
    "headline": "libsize",
    "train_targets": ["libsize"],
    "nan_policy": "drop",
    "features": {},
    "methods": {},
    "reference": "align-st",
    "ablation_base": "align-st",
    "ablations": {},
    "ablation_folds": ["first"],
    "subset_k": 50,
    "bootstrap": {"n_boot": 1000, "seed": 0, "level": 0.95},
    "map_genes": ["ERBB2", "KRT19", "COL1A1", "IGKC", "CD74"],
    "map_methods": None,  # None = reference, "sgn" and the supervised ceiling when present
    "map_folds": ["first"],
    "quality_goal": {"pcc_m": 0.26, "vs_sgn": 1.3, "vs_permuted": 1.5},
}


# ----------------------------------------------------------------------------- config


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if (
            isinstance(v, dict)
            and isinstance(out.get(k), dict)
            and k not in ("methods", "ablations")
        ):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _method_spec(name: str, raw: Any, source: Any) -> dict:
    from geneshot.models import MODELS

    if not isinstance(raw, dict):
        raise InputError(
            source, f"methods.{name} is not a mapping", "write `name: {model: ..., setting: ...}`"
        )
    model = raw.get("model", name)
    if model not in MODELS:
        raise InputError(
            source, f"methods.{name}.model is {model!r}", f"use one of: {', '.join(MODELS)}"
        )
    setting = raw.get("setting", "zero-shot")
    if setting not in ("zero-shot", "supervised"):
        raise InputError(
            source, f"methods.{name}.setting is {setting!r}", "use zero-shot or supervised"
        )
    group = raw.get("group") or (
        "supervised"
        if setting == "supervised"
        else "control"
        if model in CONTROL_MODELS
        else "zero-shot"
    )
    if group not in GROUPS:
        raise InputError(
            source, f"methods.{name}.group is {group!r}", f"use one of: {', '.join(GROUPS)}"
        )
    unknown = sorted(
        set(raw)
        - {"model", "setting", "group", "model_config", "train_config", "train_targets", "label"}
    )
    if unknown:
        raise InputError(
            source,
            f"methods.{name} has unknown field(s) {unknown}",
            "use model, setting, group, model_config, train_config, train_targets, label",
        )
    return {
        "model": model,
        "setting": setting,
        "group": group,
        "label": raw.get("label", name),
        "model_config": dict(raw.get("model_config") or {}),
        "train_config": dict(raw.get("train_config") or {}),
        "train_targets": raw.get("train_targets"),
    }


def resolve_config(config: dict | str | os.PathLike | None, source: Any = None) -> dict:
    """Defaults merged with a config mapping or YAML file, validated.

    Raises
    ------
    InputError
        Unreadable YAML, unknown protocol / convention / model, or no method.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        import yaml

        source = Path(config)
        if not source.exists():
            raise InputError(
                source,
                "config file does not exist",
                "check the path (see configs/her2st_zero_shot.yaml)",
            )
        try:
            config = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(
                source, f"config is not valid YAML ({err})", "fix the YAML syntax"
            ) from None
        if not isinstance(config, dict):
            raise InputError(
                source,
                "config must be a mapping",
                "write `methods:`, `protocol:`, ... at the top level",
            )
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise InputError(
            source, f"unknown config field(s) {unknown}", f"use only {sorted(DEFAULT_CONFIG)}"
        )
    cfg = _merge(DEFAULT_CONFIG, config)
    if cfg["protocol"] not in PROTOCOLS:
        raise InputError(
            source,
            f"field 'protocol' is {cfg['protocol']!r}",
            f"use one of: {', '.join(PROTOCOLS)}",
        )
    from geneshot.data import TARGET_KINDS

    if isinstance(cfg["train_targets"], str):
        cfg["train_targets"] = [cfg["train_targets"]]
    for key in ("conventions", "train_targets"):
        bad = [c for c in cfg[key] if c not in TARGET_KINDS]
        if bad or not cfg[key]:
            raise InputError(
                source,
                f"field {key!r} is {cfg[key]!r}",
                f"list conventions among: {', '.join(TARGET_KINDS)}",
            )
    if cfg["headline"] not in cfg["conventions"]:
        cfg["headline"] = cfg["conventions"][0]
    if cfg["gene_split"].get("kind") not in ("sgn", "random", "given"):
        raise InputError(
            source,
            f"field 'gene_split.kind' is {cfg['gene_split'].get('kind')!r}",
            "use sgn, random or given",
        )
    if not cfg["methods"]:
        raise InputError(
            source,
            "field 'methods' is empty",
            "list at least one method, e.g. `methods: {align-st: {model: align-st}}`",
        )
    cfg["methods"] = {str(n): _method_spec(str(n), m, source) for n, m in cfg["methods"].items()}
    abl = cfg["ablations"] or {}
    if abl and cfg["ablation_base"] not in cfg["methods"]:
        raise InputError(
            source,
            f"field 'ablation_base' is {cfg['ablation_base']!r}, not a method",
            "name one of the methods",
        )
    for n, ov in abl.items():
        if not isinstance(ov, dict):
            raise InputError(
                source, f"ablations.{n} is not a mapping", "write `name: {model_config_key: value}`"
            )
    cfg["ablations"] = {str(n): dict(v) for n, v in abl.items()}
    return cfg


# ----------------------------------------------------------------------------- folds


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def section_split(cfg: dict, sections: Sequence[str], patient_of: dict[str, str]) -> dict:
    """The section protocol of a config (``auto``: patient k-fold with >= 2 patients, else LOSO)."""
    from geneshot.eval._protocols import (
        default_split,
        leave_one_section_out,
        legacy_loocv_32,
        patient_kfold,
    )

    proto = cfg["protocol"]
    if proto == "auto":
        return default_split(sections, patient_of)
    if proto == "patient_kfold":
        if len(set(patient_of[s] for s in sections)) < 2:
            raise InputError(
                None,
                "protocol patient_kfold needs sections of >= 2 patients",
                "use protocol: loso (or auto)",
            )
        return patient_kfold(sections, patient_of, cfg["protocol_k"])
    if proto == "loso":
        return leave_one_section_out(sections, patient_of)
    split = legacy_loocv_32(sections)
    return split


def _gene_folds(cfg: dict) -> list[dict]:
    """Gene-fold plans; the genes themselves are chosen per section fold on training data."""
    g = cfg["gene_split"]
    if g["kind"] == "random":
        return [
            {"gene_fold": i, "k": int(g["k"]), "seed": int(g.get("seed", 0))}
            for i in range(int(g["k"]))
        ]
    return [{"gene_fold": None}]


def _load_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    from geneshot.data import load_gene_list

    return list(load_gene_list(Path(value)))


# ----------------------------------------------------------------------------- results


@dataclass
class BenchmarkResult:
    """What a benchmark run produced (also written under ``out``)."""

    out: Path
    results: pd.DataFrame
    ablations: pd.DataFrame
    paired: pd.DataFrame
    verdict: str
    trained: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def _run_key(spec: dict, train_kind: str, fold: dict, features: dict) -> str:
    return hash_parts(
        {
            "v": BENCHMARK_VERSION,
            "model": spec["model"],
            "setting": spec["setting"],
            "model_config": spec["model_config"],
            "train_config": spec["train_config"],
            "train_kind": train_kind,
            "train": fold["train"],
            "test": fold["test"],
            "unseen": fold["unseen"],
            "seen": hash_parts(fold["seen"]),
            "features": features,
        }
    )[:12]


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


def run_benchmark(
    config: dict | str | os.PathLike,
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    cache: Cache | None = None,
    progress: bool = True,
    max_epochs: int | None = None,
    folds: str | int | None = None,
    report: bool = True,
    command: str | None = None,
    ablations: bool = True,
) -> BenchmarkResult:
    """Run (or resume) a benchmark and write its tables and report.

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
    report
        Write ``report.html`` (matplotlib needed).
    command
        Command line recorded in the provenance.
    ablations
        Run the config's ablations (on its ``ablation_folds``); False skips them.

    Returns
    -------
    BenchmarkResult
    """
    from geneshot.io import read_dataset, section_id

    t_start = time.perf_counter()
    cfg = resolve_config(config)
    if not ablations:
        cfg["ablations"] = {}
    if max_epochs is not None:
        for spec in cfg["methods"].values():
            spec["train_config"]["max_epochs"] = int(max_epochs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = cache or Cache()
    data_dir = Path(data_dir)
    secs_arg = cfg["sections"]
    if secs_arg == "imaged":
        from geneshot.io import has_image

        raw = [a for a in read_dataset(cfg["dataset"], data_dir, None) if has_image(a)]
    else:
        raw = read_dataset(cfg["dataset"], data_dir, secs_arg, require_image=True)
    if len(raw) < 2:
        raise InputError(
            data_dir, f"{len(raw)} section(s) with images", "a benchmark needs >= 2 imaged sections"
        )
    names = [section_id(a) for a in raw]
    patient_of = {section_id(a): str(a.obs[Key.PATIENT].iloc[0]) for a in raw}
    del raw
    from geneshot.eval._protocols import write_split

    split = section_split(cfg, names, patient_of)
    write_split(split, out / "split.json")
    sec_folds = split["folds"]
    if folds in ("first",):
        sec_folds = sec_folds[:1]
    elif folds not in (None, "all"):
        sec_folds = sec_folds[: int(folds)]
    plan = []
    for f in sec_folds:
        for g in _gene_folds(cfg):
            fid = f"f{f['fold']}" + ("" if g["gene_fold"] is None else f"-g{g['gene_fold']}")
            plan.append((fid, f, g))
    abl_sel = cfg["ablation_folds"]
    abl_ids = (
        {plan[0][0]}
        if abl_sel in (["first"], "first")
        else {p[0] for p in plan}
        if abl_sel in (["all"], "all")
        else {str(x) for x in abl_sel}
    )
    map_sel = cfg["map_folds"]
    map_ids = (
        {plan[0][0]}
        if map_sel in (["first"], "first")
        else {p[0] for p in plan}
        if map_sel in (["all"], "all")
        else {str(x) for x in map_sel}
    )

    state = _State(cfg=cfg, out=out, cache=cache, progress=progress, data_dir=data_dir)
    from tqdm.auto import tqdm

    for fid, f, g in tqdm(plan, desc="benchmark folds", disable=not progress):
        t0 = time.perf_counter()
        _run_fold(state, fid, f, g, with_ablations=fid in abl_ids, with_maps=fid in map_ids)
        state.timings[f"fold {fid}"] = round(time.perf_counter() - t0, 1)

    agg = aggregate(state.records, cfg)
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
            "n_folds": len(plan),
        },
        "data_dir": str(data_dir),
        "config": cfg,
    }
    files = write_tables(agg, cfg, out, provenance)
    if report:
        from geneshot.report import write_report

        files["report"] = write_report(out / "report.html", agg, cfg, provenance, state.maps)
    return BenchmarkResult(
        out=out,
        results=agg["results"],
        ablations=agg["ablations"],
        paired=agg["paired"],
        verdict=agg["verdict"],
        trained=state.trained,
        loaded=state.loaded,
        timings=state.timings,
        files=files,
    )


@dataclass
class _State:
    cfg: dict
    out: Path
    cache: Cache
    progress: bool
    data_dir: Path
    records: list[dict] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    maps: list[dict] = field(default_factory=list)


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _run_fold(
    state: _State, fid: str, fold: dict, gplan: dict, *, with_ablations: bool, with_maps: bool
) -> None:
    """Train / load every method of one fold and append its per-convention records."""
    from geneshot.data import TargetTransform, gene_means
    from geneshot.eval._metrics import evaluate_predictions, top_expressed, top_variable
    from geneshot.eval._protocols import gene_split_given, gene_split_random_kfold, write_split
    from geneshot.prepare import FeatureConfig
    from geneshot.workflow import genes_for, load_sections, split_genes

    cfg, cache, progress = state.cfg, state.cache, state.progress
    features = FeatureConfig(**cfg["features"])
    fdir = state.out / "folds" / fid
    train_names, test_names = list(fold["train"]), list(fold["test"])
    # one gene universe from the NAMES of train + test genes (no values): test genes the
    # training sections never measured are zero there, as in SGN's zero-padding
    prepared = load_sections(
        cfg["dataset"],
        state.data_dir,
        train_names + test_names,
        features,
        cache=cache,
        progress=progress,
    )
    train = [p for p in prepared if p.name in set(train_names)]
    test = [p for p in prepared if p.name in set(test_names)]
    g = cfg["gene_split"]
    unseen = None
    if g["kind"] == "given":
        if not g.get("unseen"):
            raise InputError(
                None,
                "gene_split.kind is 'given' but gene_split.unseen is empty",
                "give a list or a gene-list file",
            )
        unseen = _load_list(g["unseen"])
    elif g["kind"] == "random":
        # the candidate pool is chosen on TRAINING data, then split in k random gene folds
        pool = split_genes(train, n_unseen=int(g["n_unseen"]) * int(g["k"]), seen_pool=0)
        gsplit = gene_split_random_kfold(pool.unseen, int(g["k"]), int(g.get("seed", 0)))
        unseen = sorted(gsplit["folds"][gplan["gene_fold"]]["unseen"])
    split = split_genes(
        train, n_unseen=int(g["n_unseen"]), seen_pool=int(g["seen_pool"]), unseen=unseen
    )
    genes = genes_for(split, features, cache=cache, progress=progress)
    described = set(genes.symbols)
    split.seen = [s for s in split.seen if s in described]
    kinds = list(dict.fromkeys(list(cfg["conventions"]) + list(cfg["train_targets"])))
    targets = {k: TargetTransform.fit([s.adata for s in train], k) for k in kinds}
    means = gene_means([s.adata for s in train])
    k_sub = min(int(cfg["subset_k"]), len(split.unseen))
    subsets = {}
    for conv in cfg["conventions"]:
        tv = pd.DataFrame(
            np.concatenate([targets[conv].transform(s.adata, split.unseen) for s in train]),
            columns=split.unseen,
        )
        subsets[conv] = {
            "top_expressed": top_expressed(means[split.unseen], k_sub),
            "top_variable": top_variable(tv, k_sub),
        }
    record = {
        "fold": fid,
        "train": train_names,
        "test": test_names,
        "gene_split_on": [s.name for s in train],
        "targets_fitted_on": [s.name for s in train],
        "gene_split": {
            "kind": g["kind"],
            "gene_fold": gplan["gene_fold"],
            "unseen": split.unseen,
            "seen": split.seen,
        },
        "a_priori_subsets": {
            c: {k: v.describe() for k, v in d.items()} for c, d in subsets.items()
        },
    }
    _write_json(fdir / "fold.json", record)
    # the fold's gene split as a split file with its own id (seen + unseen genes only)
    write_split(gene_split_given(split.unseen, split.unseen + split.seen), fdir / "gene_split.json")
    fold_key = {
        "train": train_names,
        "test": test_names,
        "unseen": split.unseen,
        "seen": split.seen,
    }
    ys = {
        conv: [targets[conv].transform(s.adata, split.unseen) for s in test]
        for conv in cfg["conventions"]
    }
    sec_ids = np.concatenate([[s.name] * s.adata.n_obs for s in test])

    runs: list[tuple[str, dict, str]] = []
    for name, spec in cfg["methods"].items():
        tks = spec["train_targets"] or cfg["train_targets"]
        for tk in [tks] if isinstance(tks, str) else tks:
            runs.append((name, spec, tk))
    if with_ablations:
        base = cfg["methods"][cfg["ablation_base"]]
        for aname, over in cfg["ablations"].items():
            spec = copy.deepcopy(base)
            spec["group"] = "ablation"
            spec["label"] = aname
            spec["model_config"] = {**spec["model_config"], **over}
            spec["ablation_overrides"] = dict(over)
            runs.append((f"ablation:{aname}", spec, cfg["train_targets"][0]))

    preds_by: dict[str, list[np.ndarray]] = {}
    for name, spec, tk in runs:
        key = _run_key(spec, tk, fold_key, features.to_dict())
        path = fdir / f"{_safe(name)}__{tk}__{key}.npz"
        rid = f"{fid}/{name}/{tk}"
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                preds = [z[f"pred_{s.name}"] for s in test]
                fit_s = float(z["fit_s"])
            state.loaded.append(rid)
        else:
            preds, fit_s = _train_predict(
                spec, train, test, genes, split, targets[tk], features, progress
            )
            save_npz_atomic(
                path,
                {
                    **{f"pred_{s.name}": p for s, p in zip(test, preds)},
                    "genes": np.asarray(split.unseen),
                    "fit_s": np.float64(fit_s),
                },
            )
            state.trained.append(rid)
        preds_by[name] = preds
        metrics = {}
        for conv in cfg["conventions"]:
            yt, yp = np.concatenate(ys[conv]), np.concatenate(preds)
            summary, per_gene = evaluate_predictions(
                yt, yp, split.unseen, sec_ids, cfg["nan_policy"], subsets=subsets[conv]
            )
            from geneshot.eval._metrics import per_section_pearson

            snames, r_sec, n_sec = per_section_pearson(yt, yp, sec_ids, cfg["nan_policy"])
            cross = conv != tk
            metrics[conv] = summary
            state.records.append(
                {
                    "fold": fid,
                    "method": name,
                    "label": spec["label"],
                    "group": spec["group"],
                    "model": spec["model"],
                    "setting": spec["setting"],
                    "train_kind": tk,
                    "conv": conv,
                    "cross": cross,
                    "genes": list(split.unseen),
                    "sections": snames,
                    "r_sec": r_sec,
                    "n_sec": n_sec,
                    "per_gene": per_gene,
                    "summary": summary,
                    "fit_s": fit_s,
                    "overrides": spec.get("ablation_overrides", {}),
                }
            )
        mpath = path.with_suffix(".metrics.json")
        if not mpath.exists():
            _write_json(
                mpath,
                {"run": rid, "spec": spec, "train_targets": tk, "fit_s": fit_s, "metrics": metrics},
            )
    if with_maps:
        state.maps.append(
            _map_data(
                cfg,
                test[0],
                split.unseen,
                ys[cfg["headline"]][0],
                {n: p[0] for n, p in preds_by.items()},
                fid,
            )
        )


def _train_predict(
    spec: dict, train, test, genes, split, target, features, progress: bool
) -> tuple[list[np.ndarray], float]:
    from geneshot.train import GeneshotModel

    t0 = time.perf_counter()
    model = GeneshotModel(
        spec["model"], spec["setting"], dict(spec["train_config"]), **spec["model_config"]
    )
    if spec["setting"] == "zero-shot":
        model.train(
            train,
            genes,
            seen_genes=split.seen,
            unseen_genes=split.unseen,
            target=target,
            features=features.to_dict(),
            progress=progress,
        )
    else:  # the supervised ceiling: trained on the unseen genes themselves (training sections only)
        model.train(
            train,
            genes,
            seen_genes=split.unseen,
            target=target,
            features=features.to_dict(),
            progress=progress,
        )
    preds = [np.asarray(model.predict(s, genes, split.unseen), np.float32) for s in test]
    return preds, round(time.perf_counter() - t0, 2)


def _map_data(
    cfg: dict, section, unseen: list[str], y: np.ndarray, preds: dict[str, np.ndarray], fid: str
) -> dict:
    """Inputs of the measured-vs-predicted maps of one test section (headline convention)."""
    genes = [gname for gname in cfg["map_genes"] if gname in set(unseen)]
    idx = [unseen.index(gname) for gname in genes]
    wanted = cfg["map_methods"]
    if wanted is None:
        groups = {n: s["group"] for n, s in cfg["methods"].items()}
        wanted = [cfg["reference"], "sgn"] + [
            n for n, grp in groups.items() if grp == "supervised"
        ][:1]
    values = {"measured": y[:, idx]}
    for n in wanted:
        if n in preds:
            values[cfg["methods"][n]["label"] if n in cfg["methods"] else n] = preds[n][:, idx]
    a = section.adata
    from geneshot.io import section_meta

    meta = section_meta(a)
    spot = (
        a.uns[Key.UNS_SPATIAL][section.name].get(Key.SCALEFACTORS, {}).get(Key.SPOT_DIAMETER, 100.0)
    )
    return {
        "fold": fid,
        "section": section.name,
        "image_path": meta.get(Key.IMAGE_PATH),
        "xy": np.asarray(a.obsm[Key.SPATIAL], np.float64),
        "spot_diameter": float(spot),
        "genes": genes,
        "values": values,
        "convention": cfg["headline"],
    }


# ----------------------------------------------------------------------------- aggregation


def _wmean(values: Sequence[float], weights: Sequence[float]) -> float:
    v = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    ok = ~np.isnan(v)
    return (
        float((v[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() and w[ok].sum() > 0 else float("nan")
    )


def _common_genes(recs: list[dict]) -> list[str]:
    """Genes evaluated in every fold (SGN-style splits per fold can differ slightly)."""
    sets = [set(r["genes"]) for r in recs]
    inter = set.intersection(*sets)
    return [gname for gname in recs[0]["genes"] if gname in inter]


def _row_stats(recs: list[dict], cfg: dict) -> tuple[dict, pd.DataFrame]:
    """Aggregate one method x training convention x evaluation convention over its folds."""
    from geneshot.eval._metrics import bootstrap_ci, bootstrap_ci_hierarchical, hpg_select

    bs = cfg["bootstrap"]
    common = _common_genes(recs)
    n_spots = [r["summary"]["n_spots"] for r in recs]
    cross = recs[0]["cross"]
    st: dict[str, Any] = {
        "n_folds": len(recs),
        "n_genes": len(common),
        "n_spots": int(sum(n_spots)),
    }
    st["mse"] = float("nan") if cross else _wmean([r["summary"]["mse"] for r in recs], n_spots)
    st["mae"] = float("nan") if cross else _wmean([r["summary"]["mae"] for r in recs], n_spots)
    for k in ("pcc_f", "pcc_s", "pcc_m"):
        st[f"{k}_pooled"] = float(np.nanmean([r["summary"]["pooled"][k] for r in recs]))
    secs = [(s, v) for r in recs for s, v in r["summary"]["sections"].items()]
    st["n_sections"] = len(secs)
    for k in ("pcc_f", "pcc_s", "pcc_m"):
        st[f"{k}_section"] = _wmean([v[k] for _, v in secs], [v["n_spots"] for _, v in secs])
    for sub in ("top_expressed", "top_variable"):
        key = f"pcc_at_{sub}"
        st[f"pcc_{sub}_pooled"] = float(
            np.nanmean([r["summary"]["pooled"].get(key, np.nan) for r in recs])
        )
        st[f"pcc_{sub}_section"] = _wmean(
            [r["summary"]["per_section"].get(key, np.nan) for r in recs], n_spots
        )
    # matrices over the common genes: per-fold pooled r (genes x folds) and per-section r
    pooled = pd.DataFrame(
        {r["fold"]: r["per_gene"]["r_pooled"].reindex(common).to_numpy() for r in recs},
        index=common,
    )
    rows, weights = [], []
    for r in recs:
        pos = {gname: i for i, gname in enumerate(r["genes"])}
        idx = [pos[gname] for gname in common]
        rows.append(r["r_sec"][:, idx])
        weights.append(r["n_sec"])
    mat = np.vstack(rows)
    w = np.concatenate(weights).astype(np.float64)
    k = min(int(cfg["subset_k"]), len(common))
    hpg = hpg_select(pooled, k)
    hidx = [common.index(gname) for gname in hpg.genes]
    st["pcc_h_pooled"] = float(np.nanmean(pooled.loc[hpg.genes].to_numpy(), axis=0).mean())
    with np.errstate(invalid="ignore"):
        st["pcc_h_section"] = _wmean(np.nanmean(mat[:, hidx], axis=1), w)
    st["pcc_h_chosen_on_test"] = True
    hier = bootstrap_ci_hierarchical(
        mat, w, n_boot=int(bs["n_boot"]), seed=int(bs["seed"]), level=float(bs["level"])
    )
    st["pcc_m_section_ci_lo"], st["pcc_m_section_ci_hi"] = hier["ci"]
    st["ci_resampled"] = "+".join(hier["resampled"])
    gene_mean = pooled.mean(axis=1, skipna=True)
    gci = bootstrap_ci(
        gene_mean.to_numpy(),
        n_boot=int(bs["n_boot"]),
        seed=int(bs["seed"]),
        level=float(bs["level"]),
    )
    st["pcc_m_pooled_ci_lo"], st["pcc_m_pooled_ci_hi"] = gci["ci"]
    st["fit_s_mean"] = float(np.mean([r["fit_s"] for r in recs]))
    with np.errstate(invalid="ignore"):
        r_sec_gene = np.nansum(np.where(np.isnan(mat), 0, mat) * w[:, None], 0) / (
            w[:, None] * ~np.isnan(mat)
        ).sum(0)
    per_gene = pd.DataFrame(
        {
            "r_per_section": r_sec_gene,
            "r_pooled": gene_mean.to_numpy(),
            "spearman_pooled": np.nanmean(
                np.column_stack(
                    [r["per_gene"]["spearman_pooled"].reindex(common).to_numpy() for r in recs]
                ),
                axis=1,
            ),
            "mse": np.nan
            if cross
            else np.mean(
                np.column_stack([r["per_gene"]["mse"].reindex(common).to_numpy() for r in recs]),
                axis=1,
            ),
            "in_hpg": [gname in set(hpg.genes) for gname in common],
            "n_folds": len(recs),
        },
        index=pd.Index(common, name="gene"),
    )
    st["hpg_genes"] = hpg.genes
    return st, per_gene


def aggregate(records: list[dict], cfg: dict) -> dict:
    """Results table, per-gene tables, paired tests, ablation table and verdict from fold records."""
    from geneshot.eval._metrics import HPG_NOTE, paired_test

    keys = list(dict.fromkeys((r["method"], r["train_kind"], r["conv"]) for r in records))
    rows, per_gene = [], {}
    for m, tk, conv in keys:
        recs = [r for r in records if (r["method"], r["train_kind"], r["conv"]) == (m, tk, conv)]
        st, pg = _row_stats(recs, cfg)
        r0 = recs[0]
        rows.append(
            {
                "method": m,
                "label": r0["label"],
                "group": r0["group"],
                "model": r0["model"],
                "setting": r0["setting"],
                "trained_on": tk,
                "convention": conv,
                "units": f"cross: trained on {tk}, correlation only" if r0["cross"] else "same",
                "nan_policy": cfg["nan_policy"],
                **st,
            }
        )
        per_gene[(m, tk, conv)] = pg
    results = pd.DataFrame(rows)
    main = (
        results[results["group"] != "ablation"].reset_index(drop=True) if len(results) else results
    )
    # paired tests: the reference against every other non-ablation method, per convention
    paired_rows = []
    bs = cfg["bootstrap"]
    ref = cfg["reference"]
    for m, tk, conv in keys:
        if m == ref or m.startswith("ablation:") or (ref, tk, conv) not in per_gene:
            continue
        a, b = per_gene[(ref, tk, conv)], per_gene[(m, tk, conv)]
        common = [gname for gname in a.index if gname in set(b.index)]
        res = paired_test(
            a.loc[common, "r_per_section"],
            b.loc[common, "r_per_section"],
            n_boot=int(bs["n_boot"]),
            seed=int(bs["seed"]),
            level=float(bs["level"]),
        )
        paired_rows.append(
            {
                "convention": conv,
                "trained_on": tk,
                "method_a": ref,
                "method_b": m,
                "mean_diff_r": res["mean_diff"],
                "ci_lo": res["ci"][0],
                "ci_hi": res["ci"][1],
                "p_wilcoxon": res["p_value"],
                "p_bootstrap": res["p_value_bootstrap"],
                "n_genes": res["n"],
            }
        )
    paired = pd.DataFrame(paired_rows)
    ablations = _ablation_table(records, results, cfg)
    return {
        "results": results,
        "main": main,
        "per_gene": per_gene,
        "paired": paired,
        "ablations": ablations,
        "verdict": verdict(results, cfg),
        "hpg_note": HPG_NOTE,
        "records": records,
    }


def _ablation_table(records: list[dict], results: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    if not cfg["ablations"] or results.empty:
        return pd.DataFrame()
    conv, tk = cfg["headline"], cfg["train_targets"][0]
    base = cfg["ablation_base"]
    abl = results[(results["group"] == "ablation") & (results["convention"] == conv)]
    if abl.empty:
        return pd.DataFrame()
    out = []
    for _, row in abl.iterrows():
        folds = sorted({r["fold"] for r in records if r["method"] == row["method"]})
        base_recs = [
            r
            for r in records
            if r["method"] == base
            and r["conv"] == conv
            and r["train_kind"] == tk
            and r["fold"] in folds
        ]
        bst = _row_stats(base_recs, cfg)[0] if base_recs else {}
        out.append(
            {
                "ablation": row["label"],
                "overrides": json.dumps(
                    next(r["overrides"] for r in records if r["method"] == row["method"])
                ),
                "folds": ",".join(folds),
                "mse": row["mse"],
                "pcc_m_section": row["pcc_m_section"],
                "pcc_m_pooled": row["pcc_m_pooled"],
                "pcc_h_section": row["pcc_h_section"],
                f"{base}_pcc_m_section": bst.get("pcc_m_section", np.nan),
                "delta_pcc_m": row["pcc_m_section"] - bst.get("pcc_m_section", np.nan),
            }
        )
    return pd.DataFrame(out)


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


def _tk_for(conv: str, cfg: dict) -> str:
    """Training convention whose rows represent ``conv``: itself when trained on, else the first."""
    return conv if conv in cfg["train_targets"] else cfg["train_targets"][0]


def verdict(results: pd.DataFrame, cfg: dict) -> str:
    """Plain-language check of the quality goal on the headline convention (per-section PCC@M)."""
    if results.empty:
        return "No results."
    conv, goal = cfg["headline"], cfg["quality_goal"]
    tk = _tk_for(conv, cfg)
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


# ----------------------------------------------------------------------------- tables


def _fmt_ci(lo: float, hi: float) -> str:
    return "n/a" if np.isnan(lo) or np.isnan(hi) else f"[{lo:.3f}, {hi:.3f}]"


GROUP_TITLES = {"zero-shot": "zero-shot", "control": "controls", "supervised": "supervised ceiling"}


def table1(agg: dict, cfg: dict) -> pd.DataFrame:
    """Table-1 layout: rows methods grouped, columns MSE / PCC@M / PCC@H per convention."""
    res = agg["main"]
    if res.empty:
        return pd.DataFrame()
    rows = []
    for grp in ("zero-shot", "control", "supervised"):
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


def write_tables(agg: dict, cfg: dict, out: Path, provenance: dict) -> dict[str, Path]:
    """``results.csv``, ``results.md``, per-gene tables, ablations, paired tests, provenance."""
    from geneshot.eval._metrics import format_table

    files: dict[str, Path] = {}
    res = agg["results"].drop(columns=["hpg_genes"], errors="ignore")
    files["results_csv"] = out / "results.csv"
    with atomic_path(files["results_csv"]) as tmp:
        res.to_csv(tmp, index=False)
    pg_dir = out / "per_gene"
    for (m, tk, conv), df in agg["per_gene"].items():
        with atomic_path(pg_dir / f"{_safe(m)}__{tk}__{conv}.csv") as tmp:
            df.sort_values("r_per_section", ascending=False).to_csv(tmp)
    files["per_gene"] = pg_dir
    for name in ("paired", "ablations"):
        files[name] = out / f"{name}.csv"
        with atomic_path(files[name]) as tmp:
            agg[name].to_csv(tmp, index=False)
    sp = provenance["split"]
    lines = [
        "# Benchmark results",
        "",
        f"Protocol `{sp['name']}` (split id `{sp['id']}`, {sp['n_folds']} folds, `split.json`); gene split `{cfg['gene_split']['kind']}` "
        f"({cfg['gene_split']['n_unseen']} unseen genes chosen on training sections); models trained on `{cfg['train_targets'][0]}` targets; headline convention `{cfg['headline']}`.",
        "",
        f"**Verdict.** {agg['verdict']}",
        "",
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
            format_table(agg["paired"], floatfmt=".4g", index=False),
            "",
        ]
    if not agg["ablations"].empty:
        lines += [
            f"## Ablations ({cfg['ablation_base']}, {cfg['headline']} targets)",
            "",
            format_table(agg["ablations"], index=False),
            "",
        ]
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
    _write_json(files["provenance"], provenance)
    return files
