"""``geneshot train --config FILE``: read the YAML and check it against its schema.

The schema is derived, not written down twice: ``train:`` takes the fields of
:class:`geneshot.train.TrainConfig`, ``model:`` the keys of the chosen model's default
config (:func:`geneshot.models.default_config`). A misspelt key is an InputError that names
the key and lists the valid ones, before any data is read.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from geneshot.errors import InputError

__all__ = ["TOP_LEVEL_KEYS", "read_train_config", "validate_train_config"]

TOP_LEVEL_KEYS = ("model", "train")


def _check_keys(path: Path | None, where: str, keys, valid: list[str]) -> None:
    unknown = [k for k in keys if k not in valid]
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InputError(
        path,
        f"unknown key {key!r} in {where}",
        f"{hint}valid keys there: {', '.join(valid)}",
    )


def validate_train_config(cfg: object, model_name: str, path: Path | None = None) -> dict:
    """Check a parsed training config; return it as ``{"model": {...}, "train": {...}}``.

    Parameters
    ----------
    cfg
        The parsed YAML (``None`` for an empty file).
    model_name
        The registered model the ``model:`` keys configure.
    path
        The file, named in errors.

    Raises
    ------
    InputError
        Not a mapping, a key that the schema does not know, or a model value the model
        rejects.
    """
    from geneshot.models import create_model, default_config
    from geneshot.train import TrainConfig

    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise InputError(
            path, "config must be a mapping", "write `model: {...}` and `train: {...}` sections"
        )
    _check_keys(path, "the top level", cfg, list(TOP_LEVEL_KEYS))
    out: dict[str, dict] = {}
    schema = {
        "train": [f.name for f in dataclasses.fields(TrainConfig)],
        "model": sorted(default_config(model_name)),
    }
    for section in TOP_LEVEL_KEYS:
        body = cfg.get(section) or {}
        if not isinstance(body, dict):
            raise InputError(
                path,
                f"`{section}:` must be a mapping of keys to values",
                f"e.g. `{section}:` followed by indented `key: value` lines",
            )
        where = f"`{section}:`" + (f" (model {model_name})" if section == "model" else "")
        _check_keys(path, where, body, schema[section])
        out[section] = dict(body)
    try:  # the values too, before any data is read: the model checks its own config
        create_model(model_name, **out["model"])
    except InputError as err:
        raise InputError(path, f"`model:` (model {model_name}): {err.problem}", err.fix) from None
    try:  # and the trainer's
        TrainConfig(**out["train"])
    except InputError as err:
        raise InputError(path, f"`train:`: {err.problem}", err.fix) from None
    return out


def read_train_config(path: Path | None, model_name: str) -> dict:
    """Read and validate a ``train --config`` YAML; ``{"model": {}, "train": {}}`` for no file."""
    if path is None:
        return {"model": {}, "train": {}}
    import yaml

    if not path.is_file():
        raise InputError(path, "config file does not exist", "check the --config path")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        msg = " ".join(str(err).split())
        raise InputError(path, f"config is not valid YAML ({msg})", "fix the YAML syntax") from None
    return validate_train_config(cfg, model_name, path)
