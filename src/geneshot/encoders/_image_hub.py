"""Loaders for hub-hosted image encoders (ImageNet ResNet-18 and pathology foundation models).

Everything heavy is imported lazily. Before any download is attempted the loader checks,
in milliseconds, that the packages exist and that the weights are either in the local
Hugging Face cache or the hub is reachable; otherwise hub clients retry for half a minute
before failing. Failures become one :class:`MissingDependencyError` naming the fix.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from geneshot.errors import MissingDependencyError

_PROBE_TIMEOUT_S = 3.0
_INSTALL_HINT = {"conch": "pip install git+https://github.com/mahmoodlab/CONCH.git"}


def _message(spec: Any, reason: str) -> str:
    extra = f" and {_INSTALL_HINT['conch']}" if "conch" in spec.requires else ""
    return (
        f"image encoder {spec.name!r} ({spec.source}) is not available: {reason}. "
        f"Fix: pip install 'geneshot[foundation]'{extra}, accept the model's terms at "
        f"https://huggingface.co/{spec.hub_repo} and set {spec.token_env}=<your Hugging Face token> "
        "(needs network access); or use the offline default image encoder 'effnet-lite0'"
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable() -> bool:
    """Whether the Hugging Face endpoint answers an HTTP request within a few seconds."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return False
    url = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/") + "/api/models"
    result: list[bool] = []

    def probe() -> None:
        req = urllib.request.Request(url, method="HEAD")
        try:
            with urllib.request.urlopen(req, timeout=_PROBE_TIMEOUT_S):  # honours *_proxy
                result.append(True)
        except (OSError, ValueError):  # incl. HTTPError: a filtering proxy's 403 is no hub
            result.append(False)

    # a thread bounds the DNS lookup too, which socket timeouts do not cover
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(_PROBE_TIMEOUT_S + 0.5)
    return bool(result and result[0])


def _repo_cache_dir(repo: str) -> Path | None:
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"


def local_revision(repo: str) -> str | None:
    """Commit of ``repo`` in the local Hugging Face cache, ``None`` when it is not there."""
    d = _repo_cache_dir(repo)
    if d is None or not (d / "snapshots").is_dir() or not any((d / "snapshots").iterdir()):
        return None
    ref = d / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else "cached"


@contextlib.contextmanager
def _offline_mode(enabled: bool) -> Iterator[None]:
    """Make hub clients use the local cache only (no retries against a dead network)."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    old_env, old_const = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True  # read at import time by huggingface_hub
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


# Builders: token -> (model, forward(model, x) -> (B, dim) tensor). Constants follow each
# model's published recipe.


def _timm_plain(model_name: str, **kwargs: Any) -> Callable[[str | None], tuple[Any, Callable]]:
    def build(token: str | None):
        import timm

        model = timm.create_model(model_name, pretrained=True, **kwargs)
        return model, lambda m, x: m(x)

    return build


def _build_virchow2(token: str | None):
    import timm
    import torch
    from timm.layers import SwiGLUPacked

    model = timm.create_model(
        "hf-hub:paige-ai/Virchow2", pretrained=True, mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU
    )

    def forward(m, x):
        tokens = m(x)  # (B, 1 + registers + patches, 1280)
        return torch.cat([tokens[:, 0], tokens[:, m.num_prefix_tokens :].mean(1)], dim=-1)

    return model, forward


def _build_phikon(token: str | None):
    from transformers import ViTModel

    model = ViTModel.from_pretrained("owkin/phikon", add_pooling_layer=False, token=token)
    return model, lambda m, x: m(pixel_values=x).last_hidden_state[:, 0]


def _build_conch(token: str | None):
    from conch.open_clip_custom import create_model_from_pretrained

    model, _ = create_model_from_pretrained(
        "conch_ViT-B-16", "hf_hub:MahmoodLab/conch", hf_auth_token=token
    )
    return model, lambda m, x: m.encode_image(x, proj_contrast=False, normalize=False)


_BUILDERS: dict[str, Callable[[str | None], tuple[Any, Callable]]] = {
    "resnet18": _timm_plain("resnet18.a1_in1k", num_classes=0),
    "uni": _timm_plain("hf-hub:MahmoodLab/UNI", init_values=1e-5, dynamic_img_size=True),
    "h-optimus-0": _timm_plain(
        "hf-hub:bioptimus/H-optimus-0", init_values=1e-5, dynamic_img_size=False
    ),
    "virchow2": _build_virchow2,
    "phikon": _build_phikon,
    "conch": _build_conch,
}


def load_hub_encoder(spec: Any, device: str = "cpu") -> tuple[Callable, str]:
    """Runner ``x (B, 3, S, S) -> np.ndarray (B, dim)`` and a weights fingerprint.

    Raises
    ------
    MissingDependencyError
        Missing packages, weights neither cached nor downloadable, or a failed load.
    """
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            _message(spec, f"Python package(s) {', '.join(missing)} not installed")
        )
    revision = local_revision(spec.hub_repo)
    offline = not hub_reachable()
    if offline and revision is None:
        raise MissingDependencyError(
            _message(
                spec,
                "its weights are not in the local Hugging Face cache and the hub cannot be reached",
            )
        )
    token = os.environ.get(spec.token_env) if spec.token_env else None
    try:
        with _offline_mode(offline):
            model, forward = _BUILDERS[spec.name](token)
    except Exception as err:
        raise MissingDependencyError(
            _message(spec, f"loading failed ({type(err).__name__}: {err})")
        ) from err

    import torch

    model = model.eval().to(device)

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            out = forward(model, x.to(device)).float().cpu().numpy()
        # a changed upstream head would otherwise break downstream shapes silently
        if out.shape[1] != spec.dim:
            raise RuntimeError(
                f"image encoder {spec.name!r} returned {out.shape[1]} features, expected {spec.dim}"
            )
        return out

    return run, f"{spec.hub_repo}@{local_revision(spec.hub_repo) or revision or 'hub'}"
