"""Image encoder registry: offline EfficientNet-Lite0 (ONNX and torch) and hub entries' errors."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from geneshot.cache import Cache
from geneshot.encoders.image import (
    IMAGE_ENCODERS,
    ImageEncoder,
    create_image_encoder,
    embed_patches_cached,
)
from geneshot.errors import InputError, MissingDependencyError


def _tissue_like(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """Pink background with purple blobs: smooth enough to resize, varied enough to embed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        field = np.zeros((size, size))
        for _ in range(12):
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.1)
            field += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        field = np.clip(field, 0, 1)
        pink, purple = np.array([235, 180, 210]), np.array([90, 40, 140])
        out[i] = (pink * (1 - field[..., None]) + purple * field[..., None]).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Cache:
    # module-scoped fixtures are set up before the autouse GENESHOT_CACHE patch: pass the root
    return Cache(tmp_path_factory.mktemp("image_cache"))


@pytest.fixture(scope="module")
def onnx_encoder(module_cache) -> ImageEncoder:
    return create_image_encoder("effnet-lite0", backend="onnx", cache=module_cache)


@pytest.fixture(scope="module")
def torch_encoder(module_cache) -> ImageEncoder:
    return create_image_encoder("effnet-lite0", backend="torch", cache=module_cache)


def _her2st_patches(her2st_dir, n: int = 2, size: int = 162) -> np.ndarray:
    from geneshot.image import SlideImage

    spots = pd.read_csv(her2st_dir / "ST-spotfiles" / "C2_selection.tsv", sep="\t")
    slide = SlideImage(her2st_dir / "ST-imgs" / "C" / "C2" / "5714_HE_BT_C2.jpg")
    rows = spots.iloc[[0, len(spots) // 2]][:n]
    return np.stack(
        [
            slide.read_window(int(round(x)) - size // 2, int(round(y)) - size // 2, size, size)[0]
            for x, y in zip(rows["pixel_x"], rows["pixel_y"], strict=True)
        ]
    )


# offline entries load, export and run a real network (about 5 s): marked slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[] if s.needs_hub else [pytest.mark.slow])
        for n, s in IMAGE_ENCODERS.items()
    ],
)
def test_every_registered_encoder(name, module_cache, request, monkeypatch):
    from geneshot.encoders import _image_hub

    # behave as offline everywhere, also on a developer machine with network or cached weights
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(_image_hub, "local_revision", lambda repo: None)
    spec = IMAGE_ENCODERS[name]
    assert spec.name == name and spec.dim > 0 and spec.input_size >= 32
    assert len(spec.mean) == 3 and len(spec.std) == 3 and all(s > 0 for s in spec.std)
    if spec.needs_hub:
        # no hub here: the error must come at once and say what to do
        assert spec.token_env == "HF_TOKEN" and spec.hub_repo
        t0 = time.perf_counter()
        with pytest.raises(MissingDependencyError) as err:
            create_image_encoder(name, cache=module_cache)
        assert time.perf_counter() - t0 < 10
        msg = str(err.value)
        for needle in (
            repr(name),
            "HF_TOKEN",
            "pip install 'geneshot[foundation]'",
            "effnet-lite0",
        ):
            assert needle in msg
        return

    enc = create_image_encoder(name, cache=module_cache)
    assert (enc.name, enc.dim, enc.input_size) == (name, spec.dim, spec.input_size)
    synth = enc.embed(_tissue_like(2), progress=False)
    assert synth.shape == (2, spec.dim) and synth.dtype == np.float32
    assert np.isfinite(synth).all() and synth.std() > 0
    assert not np.allclose(synth[0], synth[1])

    her2st_dir = request.getfixturevalue("her2st_dir")  # skips the real-data half without data
    real = enc.embed(_her2st_patches(her2st_dir), progress=False)  # 162 px: resized inside
    assert real.shape == (2, spec.dim) and np.isfinite(real).all()
    assert real.std(axis=1).min() > 0
    assert not np.allclose(real[0], real[1], atol=1e-3)
    # H&E is far from the synthetic pink-purple cartoon in feature space, and deterministic
    assert not np.allclose(real[0], synth[0], atol=1e-2)
    np.testing.assert_array_equal(enc.embed(_her2st_patches(her2st_dir), progress=False), real)


def test_onnx_matches_torch(onnx_encoder, torch_encoder):
    assert (onnx_encoder.backend, torch_encoder.backend) == ("onnx", "torch")
    assert onnx_encoder.fingerprint == torch_encoder.fingerprint
    patches = _tissue_like(3, seed=1)
    a = onnx_encoder.embed(patches, progress=False)
    b = torch_encoder.embed(patches, progress=False)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_auto_backend_picks_onnx_on_cpu(module_cache):
    assert create_image_encoder(cache=module_cache).backend == "onnx"


def test_onnx_export_is_cached_and_reused(onnx_encoder, module_cache):
    from geneshot.encoders._image_effnet import models_dir, onnx_path

    # the export lives in the models folder, not in the feature cache of the run
    path = onnx_path()
    assert path.is_file() and path.parent.parent.name == "onnx"
    assert models_dir() in path.parents and module_cache.root not in path.parents
    assert not onnx_path(module_cache).exists()
    mtime = path.stat().st_mtime_ns
    create_image_encoder(backend="onnx", cache=module_cache)
    assert path.stat().st_mtime_ns == mtime  # loaded, not exported again


@pytest.mark.slow
def test_corrupt_onnx_entry_is_rebuilt(tmp_path, monkeypatch):
    from geneshot.encoders._image_effnet import ENV_MODELS, onnx_path

    monkeypatch.setenv(ENV_MODELS, str(tmp_path / "models"))
    cache = Cache(tmp_path / "cache")
    path = onnx_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx graph")
    enc = create_image_encoder(backend="onnx", cache=cache)
    assert enc.embed(_tissue_like(1), progress=False).shape == (1, 1280)
    assert path.stat().st_size > 1_000_000  # exported again in place


def test_tta_is_dihedral_invariant(onnx_encoder):
    p = _tissue_like(2, seed=2)
    plain = onnx_encoder.embed(p, progress=False)
    tta = onnx_encoder.embed(p, tta=True, progress=False, batch_size=1)
    assert tta.shape == plain.shape and tta.dtype == np.float32
    assert not np.allclose(tta, plain, atol=1e-3)  # averaging views changes the features
    for moved in (np.rot90(p, 1, axes=(1, 2)), p[:, :, ::-1], np.rot90(p[:, ::-1], 3, axes=(1, 2))):
        np.testing.assert_allclose(
            onnx_encoder.embed(moved, tta=True, progress=False), tta, atol=1e-4
        )
    # without TTA the network is not rotation invariant
    assert not np.allclose(
        onnx_encoder.embed(np.rot90(p, 1, axes=(1, 2)), progress=False), plain, atol=1e-3
    )


def _textured(size: int, seed: int) -> np.ndarray:
    """Smoothed colour noise: texture at several scales, like stained tissue."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(size=(size, size, 3)), (3, 3, 0))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (np.array([90, 40, 140]) + noise * np.array([150, 140, 80])).astype(np.uint8)[None]


def test_resize_path(onnx_encoder):
    from PIL import Image

    def cos(a, b):
        return float(a[0] @ b[0] / np.linalg.norm(a[0]) / np.linalg.norm(b[0]))

    big = _textured(448, seed=3)
    # PIL's bilinear reduction is antialiased: an independent reference for the resize inside embed
    pil = np.asarray(Image.fromarray(big[0]).resize((224, 224), Image.BILINEAR))[None]
    f_big, f_pil, f_nearest = (
        onnx_encoder.embed(a, progress=False) for a in (big, pil, big[:, ::2, ::2])
    )
    assert f_big.shape == (1, 1280)
    assert cos(f_big, f_pil) > 0.998
    assert cos(f_big, f_pil) > cos(f_big, f_nearest)  # aliased decimation is further off
    # non-square and small windows are accepted too
    odd = _tissue_like(2, size=120)[:, :, :100]
    assert onnx_encoder.embed(odd, progress=False).shape == (2, 1280)


def test_batching_does_not_change_features(onnx_encoder):
    p = _tissue_like(5, seed=5)
    np.testing.assert_allclose(
        onnx_encoder.embed(p, batch_size=2, progress=False),
        onnx_encoder.embed(p, batch_size=64, progress=False),
        atol=1e-5,
    )
    assert onnx_encoder.embed(p[:0], progress=False).shape == (0, 1280)


def test_embed_patches_cached_hits(onnx_encoder, tmp_path):
    cache = Cache(tmp_path)
    p = _tissue_like(3, seed=6)
    key = {"patches": "abc"}
    first = embed_patches_cached(onnx_encoder, p, cache, key_parts=key, progress=False)
    again = embed_patches_cached(onnx_encoder, p, cache, key_parts=key, progress=False)
    np.testing.assert_array_equal(first, again)
    assert (cache.misses["embeddings"], cache.hits["embeddings"]) == (1, 1)
    tta = embed_patches_cached(onnx_encoder, p, cache, key_parts=key, tta=True, progress=False)
    assert cache.misses["embeddings"] == 2 and not np.allclose(tta, first, atol=1e-3)
    # without key_parts the pixels are the key: other pixels, other entry
    embed_patches_cached(onnx_encoder, p, cache, progress=False)
    embed_patches_cached(onnx_encoder, p[::-1].copy(), cache, progress=False)
    embed_patches_cached(onnx_encoder, p, cache, progress=False)
    assert (cache.misses["embeddings"], cache.hits["embeddings"]) == (4, 2)


@pytest.mark.parametrize(
    "bad, field",
    [
        (np.zeros((2, 224, 224), np.uint8), "shape"),
        (np.zeros((2, 224, 224, 4), np.uint8), "shape"),
        (np.zeros((2, 224, 224, 3), np.float32), "uint8"),
        (np.zeros((2, 4, 4, 3), np.uint8), "too small"),
    ],
)
def test_bad_patches_raise_input_error(onnx_encoder, bad, field):
    with pytest.raises(InputError, match=field):
        onnx_encoder.embed(bad, progress=False)


def test_bad_names_and_backends(module_cache):
    with pytest.raises(InputError, match="effnet-lite0"):
        create_image_encoder("resnet-9000")
    with pytest.raises(InputError, match="backend"):
        create_image_encoder(backend="tensorrt")
    with pytest.raises(InputError, match="CPU only"):
        create_image_encoder(backend="onnx", device="cuda", cache=module_cache)
    with pytest.raises(InputError, match="not available"):
        create_image_encoder("uni", backend="onnx")


def test_hub_wrapper_with_cached_weights(monkeypatch):
    """The hub path without a network: cached weights load in offline mode and are checked."""
    import os

    import torch

    from geneshot.encoders import _image_hub

    seen = {}

    def fake_build(token):
        seen["offline"] = os.environ.get("HF_HUB_OFFLINE")
        net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
        return net, lambda m, x: torch.cat([m(x)] * 16, dim=1)  # 3*16*16 = 768 = phikon's dim

    monkeypatch.setitem(_image_hub._BUILDERS, "phikon", fake_build)
    monkeypatch.setattr(_image_hub, "local_revision", lambda repo: "0123abc")
    monkeypatch.setattr(_image_hub, "hub_reachable", lambda: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    enc = create_image_encoder("phikon")
    assert seen["offline"] == "1" and "HF_HUB_OFFLINE" not in os.environ  # set only while loading
    assert enc.backend == "torch" and enc.fingerprint == "owkin/phikon@0123abc"
    assert enc.embed(_tissue_like(2, size=100), progress=False).shape == (2, 768)

    # an upstream head with another width must not slip through
    monkeypatch.setitem(
        _image_hub._BUILDERS, "phikon", lambda t: (torch.nn.Identity(), lambda m, x: x[:, 0, 0])
    )
    with pytest.raises(RuntimeError, match="expected 768"):
        create_image_encoder("phikon").embed(_tissue_like(1), progress=False)

    def broken(token):
        raise OSError("401 gated repo")

    monkeypatch.setitem(_image_hub._BUILDERS, "phikon", broken)
    with pytest.raises(MissingDependencyError, match="401 gated repo.*HF_TOKEN"):
        create_image_encoder("phikon")


def test_hub_probe_fails_fast(monkeypatch):
    from geneshot.encoders._image_hub import hub_reachable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://no-such-hub.invalid")  # .invalid never resolves
    t0 = time.perf_counter()
    assert hub_reachable() is False
    assert time.perf_counter() - t0 < 5
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False
