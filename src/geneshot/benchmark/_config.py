"""Benchmark configuration: defaults, schema checks and :func:`resolve_config`.

Every key of a config is checked against the defaults, nested sections included, so a
misspelt key is an error that names it (a silently ignored key would run another benchmark
than the one written).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

from geneshot.benchmark._acceptance import FIELDS as ACCEPTANCE_FIELDS
from geneshot.benchmark._acceptance import check_acceptance_config
from geneshot.data import TARGET_KINDS
from geneshot.errors import InputError
from geneshot.models import MODELS
from geneshot.prepare import FeatureConfig

GROUPS = ("zero-shot", "reference", "control", "supervised", "ablation")
CONTROL_MODELS = ("depth", "permuted-text", "permuted-reference")
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
    "reference": "align-st",  # the method the verdict and paired tests judge
    # expression reference of methods that need one (ref-impute): "auto" = per fold, every
    # section of the dataset whose patient is in neither the fold's training nor test
    # sections; a path = a fixed raw-count .h5ad; null = none
    "expression_reference": "auto",
    "ablation_base": "align-st",
    "ablations": {},
    "ablation_folds": ["first"],
    "subset_k": 50,
    "bootstrap": {"n_boot": 1000, "seed": 0, "level": 0.95},
    "map_genes": ["ERBB2", "KRT19", "COL1A1", "IGKC", "CD74"],
    "map_methods": None,  # None = reference, "sgn" and the supervised ceiling when present
    "map_folds": ["first"],
    "quality_goal": {"pcc_m": 0.26, "vs_sgn": 1.3, "vs_permuted": 1.5},
    # an issue's acceptance, judged on every run (benchmark/_acceptance.py; None = none)
    "acceptance": None,
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
        else "reference"
        if MODELS[model].needs_reference
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
    train_config = raw.get("train_config") or {}
    _check_train_config(f"methods.{name}.train_config", train_config, source)
    return {
        "model": model,
        "setting": setting,
        "group": group,
        "label": raw.get("label", name),
        "model_config": dict(raw.get("model_config") or {}),
        "train_config": dict(train_config),
        "train_targets": raw.get("train_targets"),
    }


def _check_train_config(field: str, train_config: Any, source: Any) -> None:
    """Trainer settings: a mapping of :class:`~geneshot.train.TrainConfig`'s keys to valid values.

    Checked with the config, so that a typo fails before any section is read or model trained.
    """
    from geneshot.train import TrainConfig

    if not isinstance(train_config, dict):
        raise InputError(source, f"{field} is not a mapping", f"write `{field.split('.')[-1]}: {{key: value}}`")
    known = sorted(f.name for f in dataclasses.fields(TrainConfig))
    unknown = sorted(set(train_config) - set(known))
    if unknown:
        raise InputError(source, f"{field} has unknown key(s) {unknown}", f"use TrainConfig's keys: {', '.join(known)}")
    try:
        TrainConfig(**train_config)
    except InputError as err:
        raise InputError(source, f"{field}: {err.problem}", err.fix) from None


# mapping-valued fields whose keys are fixed (``methods`` / ``ablations`` are named by the user)
_NESTED = ("gene_split", "bootstrap", "quality_goal", "features", "acceptance")


def _check_nested_keys(config: dict, source: Any) -> None:
    """A key unknown inside a mapping-valued field is an error naming ``field.key``."""
    for name in _NESTED:
        value = config.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InputError(source, f"field {name!r} is not a mapping", f"write `{name}: {{...}}`")
        allowed = (
            [f.name for f in dataclasses.fields(FeatureConfig)]
            if name == "features"
            else list(ACCEPTANCE_FIELDS)
            if name == "acceptance"
            else list(DEFAULT_CONFIG[name])
        )
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise InputError(
                source,
                f"unknown field(s) {', '.join(f'{name}.{k}' for k in unknown)}",
                f"use only {', '.join(f'{name}.{k}' for k in sorted(allowed))}",
            )


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
    _check_nested_keys(config, source)
    cfg = _merge(DEFAULT_CONFIG, config)
    if cfg["protocol"] not in PROTOCOLS:
        raise InputError(
            source,
            f"field 'protocol' is {cfg['protocol']!r}",
            f"use one of: {', '.join(PROTOCOLS)}",
        )
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
    check_acceptance_config(cfg["acceptance"], list(cfg["methods"]), source)
    needs = [n for n, m in cfg["methods"].items() if MODELS[m["model"]].needs_reference]
    if needs and not cfg["expression_reference"]:
        raise InputError(
            source,
            f"method(s) {', '.join(needs)} need an expression reference but 'expression_reference' is null",
            "set expression_reference: auto (other patients' sections) or a raw-count .h5ad path",
        )
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
    _resolve_paths(cfg, source)
    return cfg


def _resolve_paths(cfg: dict, source: Any) -> None:
    """Files a config names: relative to the config file's folder, and there before any run.

    ``gene_split.unseen`` (a gene-list file) and ``expression_reference`` (a .h5ad path);
    a missing one fails here, naming its field, instead of after the run folder is begun.
    """
    base = Path(source).parent if source is not None else Path.cwd()
    fields = [("gene_split.unseen", cfg["gene_split"], "unseen")]
    if cfg["expression_reference"] not in (None, "auto"):
        fields.append(("expression_reference", cfg, "expression_reference"))
    for name, holder, key in fields:
        value = holder.get(key)
        if not isinstance(value, (str, os.PathLike)):
            continue  # an inline list, or not set
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = base / path
        if not path.exists():
            raise InputError(
                source,
                f"{name} names {value!r}, which does not exist (read from {path})",
                "give the file's path, absolute or relative to the config file",
            )
        holder[key] = str(path)
