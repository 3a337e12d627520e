"""One fold of the benchmark: split genes and fit targets on training sections, train or load
every method, score it, and keep its predictions in the result store.

The result store is ``OUT/folds/<fold>/<method>__<train target>__<key>.npz``. The key hashes
everything a stored prediction depends on: the method's config, the fold's data and genes,
the features, the package version and the source code of the models, the trainer and the
workflow, so that changed code or config trains again instead of reusing a stale result.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

import geneshot.workflow as wf
from geneshot import __version__
from geneshot._constants import Key
from geneshot.benchmark._departure import fold_departures
from geneshot.benchmark._plan import load_list, safe_name
from geneshot.cache import Cache, hash_parts, save_npz_atomic, write_json_atomic
from geneshot.data import (
    TargetTransform,
    gene_means,
    gene_split_given,
    gene_split_random_kfold,
    write_split,
)
from geneshot.errors import InputError
from geneshot.io import section_meta
from geneshot.metrics import evaluate_predictions, per_section_pearson, top_expressed, top_variable
from geneshot.models import MODELS
from geneshot.prepare import FeatureConfig

BENCHMARK_VERSION = "benchmark-v1"  # bump when a fold's stored content changes meaning

# packages whose code decides what a trained method predicts
_CODE_PACKAGES = ("geneshot.models", "geneshot.train", "geneshot.workflow")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of the source files of the models, the trainer and the workflow (once per process)."""
    h = hashlib.blake2b(digest_size=8)
    for name in _CODE_PACKAGES:
        root = Path(importlib.import_module(name).__file__)
        files = sorted(root.parent.rglob("*.py")) if root.name == "__init__.py" else [root]
        for f in files:
            h.update(f"{name}/{f.relative_to(root.parent).as_posix()}".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def run_key(
    spec: dict, train_kind: str, fold: dict, features: dict, reference: str | None = None
) -> str:
    """The result-store key of one trained method on one fold (``reference``: its hash, if used)."""
    extra = {} if reference is None else {"reference": reference}
    return hash_parts(
        {
            **extra,
            "v": BENCHMARK_VERSION,
            "geneshot": __version__,
            "code": code_hash(),
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


@dataclass
class RunState:
    """What the folds of one run accumulate."""

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
    departures: list[dict] = field(default_factory=list)  # _departure.fold_departures rows
    curves: list[dict] = field(default_factory=list)  # gene-vector cosine, first / last epoch
    patients: dict[str, str] | None = None  # every section of the dataset -> its patient
    sections: dict = field(default_factory=dict)  # count tables read for references, by id
    last_reference: tuple | None = None  # (key, Reference) of the last fold (_last_reference)


def reference_sections(patients: dict[str, str], train: list[str], test: list[str]) -> list[str]:
    """Sections whose patient is in neither ``train`` nor ``test`` (the fold's ``auto`` reference).

    Whole patients are excluded, so no spot of a training or test patient (another section
    of the same tumour included) reaches the reference.
    """
    used = {patients[s] for s in list(train) + list(test)}
    return sorted(s for s, p in patients.items() if p not in used)


def _last_reference(state: RunState, key, build):
    """``build()``, or the reference the previous fold built for the same ``key``.

    Consecutive folds with one reference (a file, or the same excluded patients: all five
    her2st folds) read it once; only the last is kept, since an atlas can be large.
    """
    if state.last_reference is None or state.last_reference[0] != key:
        state.last_reference = (key, build())
    return state.last_reference[1]


def fold_reference(state: RunState, train: list[str], test: list[str]):
    """The fold's expression reference and its record (``(None, None)`` when off)."""
    from geneshot.genes import read_reference, reference_from_sections
    from geneshot.io import read_dataset, section_id

    value = state.cfg["expression_reference"]
    if not value:
        return None, None
    if value != "auto":
        ref = _last_reference(state, value, lambda: read_reference(Path(value), cache=state.cache))
        overlap = sorted({str(x) for x in ref.samples} & set(train + test))
        if overlap:
            raise InputError(
                value,
                f"reference rows are labelled with fold sections {overlap}",
                "build the reference from other patients only",
            )
        return ref, {"kind": "file", **ref.describe()}
    if state.patients is None:
        secs = read_dataset(state.cfg["dataset"], state.data_dir, None, require_image=False)
        state.sections = {section_id(a): a for a in secs}
        state.patients = {sid: str(a.obs[Key.PATIENT].iloc[0]) for sid, a in state.sections.items()}
    names = reference_sections(state.patients, train, test)
    if not names:
        raise InputError(
            state.data_dir,
            "no section of another patient is left for the reference",
            "set expression_reference to a .h5ad of other samples, or null",
        )
    ref = _last_reference(
        state,
        names,
        lambda: reference_from_sections([state.sections[n] for n in names], cache=state.cache),
    )
    return ref, {
        "kind": "auto",
        "sections": names,
        "patients": sorted({state.patients[n] for n in names}),
        **ref.describe(),
    }


def _choose_unseen(cfg: dict, train: list, gplan: dict) -> list[str] | None:
    """The fold's unseen genes when the config fixes them (None: the most expressed ones).

    Chosen on the fold's TRAINING sections only.
    """
    g = cfg["gene_split"]
    unseen = None
    if g["kind"] == "given":
        if not g.get("unseen"):
            raise InputError(
                None,
                "gene_split.kind is 'given' but gene_split.unseen is empty",
                "give a list or a gene-list file",
            )
        unseen = load_list(g["unseen"])
    elif g["kind"] == "random":
        # the candidate pool is chosen on TRAINING data, then split in k random gene folds
        pool = wf.split_genes(train, n_unseen=int(g["n_unseen"]) * int(g["k"]), seen_pool=0)
        gsplit = gene_split_random_kfold(pool.unseen, int(g["k"]), int(g.get("seed", 0)))
        unseen = sorted(gsplit["folds"][gplan["gene_fold"]]["unseen"])
    return unseen


def _runs(cfg: dict, with_ablations: bool) -> list[tuple[str, dict, str]]:
    """(name, spec, training target) of every method run on a fold, ablations last."""
    runs: list[tuple[str, dict, str]] = []
    for name, spec in cfg["methods"].items():
        tks = spec["train_targets"] or cfg["train_targets"]
        for tk in [tks] if isinstance(tks, str) else tks:
            runs.append((name, spec, tk))
    if with_ablations and cfg["ablations"]:
        base = cfg["methods"][cfg["ablation_base"]]
        for aname, over in cfg["ablations"].items():
            spec = copy.deepcopy(base)
            spec["group"] = "ablation"
            spec["label"] = aname
            spec["model_config"] = {**spec["model_config"], **over}
            spec["ablation_overrides"] = dict(over)
            runs.append((f"ablation:{aname}", spec, cfg["train_targets"][0]))
    return runs


def run_fold(
    state: RunState, fid: str, fold: dict, gplan: dict, *, with_ablations: bool, with_maps: bool
) -> None:
    """Train / load every method of one fold and append its per-convention records."""
    cfg, cache, progress = state.cfg, state.cache, state.progress
    features = FeatureConfig(**cfg["features"])
    fdir = state.out / "folds" / fid
    train_names, test_names = list(fold["train"]), list(fold["test"])
    # one gene universe from the NAMES of train + test genes (no values): test genes the
    # training sections never measured are zero there, as in SGN's zero-padding
    prepared = wf.load_sections(
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
    split, genes = wf.split_and_describe(
        train,
        features,
        cache=cache,
        n_unseen=int(g["n_unseen"]),
        seen_pool=int(g["seen_pool"]),
        unseen=_choose_unseen(cfg, train, gplan),
        progress=progress,
    )
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
    g = cfg["gene_split"]
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
    # reference-assisted methods: the fold's expression reference (other patients only)
    needs_ref = any(MODELS[sp["model"]].needs_reference for _, sp, _ in _runs(cfg, with_ablations))
    reference, record["expression_reference"] = (
        fold_reference(state, train_names, test_names) if needs_ref else (None, None)
    )
    write_json_atomic(fdir / "fold.json", record)
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

    preds_by: dict[str, list[np.ndarray]] = {}
    for name, spec, tk in _runs(cfg, with_ablations):
        ref = reference if MODELS[spec["model"]].needs_reference else None
        key = run_key(spec, tk, fold_key, features.to_dict(), None if ref is None else ref.digest)
        path = fdir / f"{safe_name(name)}__{tk}__{key}.npz"
        rid = f"{fid}/{name}/{tk}"
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                preds = [z[f"pred_{s.name}"] for s in test]
                fit_s = float(z["fit_s"])
                chosen = json.loads(str(z["chosen"])) if "chosen" in z.files else None
                # runs stored before the curve was kept have none: the point is not judged
                curve = json.loads(str(z["curve"])) if "curve" in z.files else None
            state.loaded.append(rid)
        else:
            preds, fit_s, chosen, curve = _train_predict(
                spec, train, test, genes, split, targets[tk], features, progress, ref, state.cache
            )
            save_npz_atomic(
                path,
                {
                    **{f"pred_{s.name}": p for s, p in zip(test, preds)},
                    "genes": np.asarray(split.unseen),
                    "fit_s": np.float64(fit_s),
                    **({} if chosen is None else {"chosen": np.asarray(json.dumps(chosen))}),
                    **({} if curve is None else {"curve": np.asarray(json.dumps(curve))}),
                },
            )
            state.trained.append(rid)
        if curve is not None and tk == cfg["train_targets"][0]:
            state.curves.append({"fold": fid, "method": name, **curve})
        preds_by[name] = preds
        metrics = {}
        for conv in cfg["conventions"]:
            yt, yp = np.concatenate(ys[conv]), np.concatenate(preds)
            summary, per_gene = evaluate_predictions(
                yt, yp, split.unseen, sec_ids, cfg["nan_policy"], subsets=subsets[conv]
            )
            snames, r_sec, n_sec = per_section_pearson(yt, yp, sec_ids, cfg["nan_policy"])
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
                    "cross": conv != tk,
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
            write_json_atomic(
                mpath,
                {
                    "run": rid,
                    "spec": spec,
                    "train_targets": tk,
                    "fit_s": fit_s,
                    **({} if chosen is None else {"chosen": chosen}),
                    **({} if curve is None else {"gene_cosine_curve": curve}),
                    "metrics": metrics,
                },
            )
    state.departures += fold_departures(fid, split.unseen, preds_by, cfg)
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
    spec: dict,
    train,
    test,
    genes,
    split,
    target,
    features,
    progress: bool,
    reference=None,
    cache: Cache | None = None,
) -> tuple[list[np.ndarray], float, dict | None, dict | None]:
    """Train through :func:`geneshot.workflow.train_model` (the one training path), predict.

    Returns the predictions, the seconds taken, for a model that chose its settings by its
    own CV inside training (``module.chosen()``, e.g. gene-kernel), what it chose, and for a
    trained model its gene-vector cosine curve (:func:`gene_cosine_curve`).
    """
    t0 = time.perf_counter()
    model = wf.train_model(
        spec["model"],
        spec["setting"],
        train,
        genes,
        split,
        target,
        features,
        train_config=spec["train_config"],
        model_config=spec["model_config"],
        progress=progress,
        reference=reference,
        cache=cache,
    )
    preds = [np.asarray(model.predict(s, genes, split.unseen), np.float32) for s in test]
    chosen = getattr(model.module, "chosen", None)
    chosen = chosen() if callable(chosen) else None
    return preds, round(time.perf_counter() - t0, 2), chosen, gene_cosine_curve(model.history)


def gene_cosine_curve(history: list[dict]) -> dict | None:
    """The mean pairwise cosine of the validation genes' vectors at the first and the last
    logged epoch (``first``, ``last``, ``epochs``), or None for models that log none."""
    cos = [h["gene_cosine"] for h in history if np.isfinite(h.get("gene_cosine", np.nan))]
    if not cos:
        return None
    return {"first": float(cos[0]), "last": float(cos[-1]), "epochs": len(cos)}


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
