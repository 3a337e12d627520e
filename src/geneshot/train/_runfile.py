"""Reading run folders (``run.json`` + ``weights.pt``): one clear error per bad file.

Run folders are trusted input. An estimator's ``weights.pt`` is a pickle, and unpickling
runs code, so load only run folders you (or someone you trust) wrote. Torch weights are
read with ``weights_only=True``, which runs no code.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from geneshot.errors import InputError

RUN_KEYS = ("model", "setting", "model_config", "train_config", "contract")
RETRAIN = "pass the --out folder of `geneshot train` as --run, or retrain the model"


def read_run_file(path: Path) -> dict:
    """``run.json`` as a dict holding every key a model needs, else one :class:`InputError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        problem = "run file is empty" if not raw.strip() else f"run file is not valid JSON ({err})"
        raise InputError(path, problem, RETRAIN) from None
    if not isinstance(meta, dict):
        raise InputError(path, "run file is not a JSON object", RETRAIN)
    missing = [k for k in RUN_KEYS if k not in meta]
    if missing:
        raise InputError(path, f"run file lacks {', '.join(missing)}", RETRAIN)
    return meta


def load_state(module: torch.nn.Module, path: Path, name: str) -> None:
    """Load torch weights from ``path`` into ``module`` (a fresh ``name`` model), or raise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (torch raises many types for a bad file)
        raise InputError(
            path,
            f"weights file is unreadable, truncated or not torch weights ({type(err).__name__})",
            RETRAIN,
        ) from None
    if not isinstance(state, dict):
        raise InputError(path, "weights file holds no state dict", RETRAIN)
    want = module.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shape = [
        k
        for k in want
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(want[k].shape)
    ]
    if missing or extra or shape:
        parts = [
            f"{len(v)} {what} (e.g. {v[0]})"
            for what, v in (
                ("missing", missing),
                ("unexpected", extra),
                ("of another shape", shape),
            )
            if v
        ]
        raise InputError(
            path,
            f"weights are not those of this run's {name!r} model: tensors {', '.join(parts)}",
            RETRAIN,
        )
    module.load_state_dict(state)


def load_estimator(path: Path, cls: object, name: str) -> object:
    """Unpickle a fitted estimator (trusted run folders only, see module docstring)."""
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh)  # noqa: S301 (run folders are trusted input)
    except Exception as err:  # noqa: BLE001 (unpickling raises many types for a bad file)
        raise InputError(
            path,
            f"estimator file is unreadable, truncated or not a pickle ({type(err).__name__})",
            RETRAIN,
        ) from None
    if isinstance(cls, type) and not isinstance(obj, cls):
        raise InputError(
            path, f"weights file holds a {type(obj).__name__}, not a {name!r} estimator", RETRAIN
        )
    return obj
