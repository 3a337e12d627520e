"""Fine-tuning the image encoder's last block on the seen genes (``train._finetune``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geneshot.cache import Cache
from geneshot.data import TargetTransform
from geneshot.errors import InputError
from geneshot.prepare import FeatureConfig, PreparedGenes, PreparedSection
from geneshot.train import GeneshotModel, _finetune
from geneshot.train._finetune import ImageTop
from tests._toy import grid_section

ENCODER = "effnet-lite0"  # its last block reads (192, 7, 7) activations
FEATURES = {"image_encoder": ENCODER, "text_encoder": "minilm", "nuclei": False, "finetune": True}


def _textures(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """H&E-like patches whose dark-nucleus density varies from spot to spot, and that density."""
    yy, xx = np.mgrid[:224, :224]
    density = rng.uniform(0, 1, n)
    out = np.empty((n, 224, 224, 3), np.uint8)
    for i, d in enumerate(density):
        img = np.full((224, 224, 3), (230, 190, 215), np.float32)  # eosin-pink stroma
        for cy, cx in rng.integers(8, 216, size=(int(5 + 60 * d), 2)):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 30] = (80, 50, 140)  # haematoxylin nuclei
        out[i] = np.clip(img + rng.normal(0, 6, img.shape), 0, 255)
    return out, density


@pytest.fixture(scope="module")
def world():
    """Three sections whose genes follow nucleus density, with real lite0 trunk activations."""
    from geneshot.encoders.image import create_image_encoder

    rng = np.random.default_rng(0)
    encoder = create_image_encoder(ENCODER, backend="torch")
    genes = [f"G{i}" for i in range(12)]
    load = rng.normal(size=len(genes))
    sections = []
    for s in range(3):
        n = 32
        patches, density = _textures(rng, n)
        frozen, trunk = encoder.embed_with_trunk(patches, progress=False)
        rate = np.exp(1.5 + 1.2 * np.outer(density - 0.5, load))
        a = grid_section(rng.poisson(rate), genes, f"S{s}", width=8)
        # the frozen own-window features, then another block the fine-tuning leaves alone
        image = np.hstack([frozen, rng.normal(size=(n, 8))]).astype(np.float32)
        sections.append(PreparedSection(adata=a, image=image, trunk=trunk))
    tokens = rng.normal(size=(len(genes), 3, 6)).astype(np.float32)
    pg = PreparedGenes(
        symbols=genes,
        texts={g: g for g in genes},
        pooled=tokens.mean(1),
        tokens=tokens,
        mask=np.ones((len(genes), 3), bool),
        encoder="toy",
    )
    return sections, pg, genes


def test_pretrained_top_on_the_trunk_gives_the_frozen_features(world):
    from geneshot.encoders.image import create_image_encoder

    secs, _, _ = world
    rng = np.random.default_rng(1)
    patches, _ = _textures(rng, 4)
    # the one-pass features equal the plain encoder's, ONNX and torch alike
    for backend in ("onnx", "torch"):
        encoder = create_image_encoder(ENCODER, backend=backend)
        feats, trunk = encoder.embed_with_trunk(patches, progress=False)
        np.testing.assert_allclose(feats, encoder.embed(patches, progress=False), atol=1e-4)
        assert trunk.shape == (4, 192, 7, 7) and trunk.dtype == np.float16
    top = ImageTop(
        ENCODER, {k: v.numpy() for k, v in _finetune._module(ENCODER).state_dict().items()}
    )
    np.testing.assert_allclose(top.features(secs[0].trunk), secs[0].image[:, :1280], atol=2e-3)


def test_fine_tuning_descends_and_changes_the_features(world, tmp_path):
    secs, _, genes = world
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    ys = [target.transform(s.adata, genes) for s in secs]
    top = ImageTop.fit(ENCODER, [s.trunk for s in secs[:2]], ys[:2], cache=Cache(tmp_path))
    assert len(top.loss) == _finetune.FINETUNE["epochs"]
    assert top.loss[-1] < top.loss[0]  # the block, head and read-out learn the planted genes
    pretrained = _finetune._module(ENCODER).state_dict()
    moved = [
        k
        for k, v in top.state.items()
        if v.dtype.kind == "f" and not np.allclose(v, pretrained[k].numpy())
    ]
    assert any(k.startswith("block.") for k in moved) and any(
        k.startswith("conv_head.") for k in moved
    )
    # batch norm keeps its pretrained statistics
    assert not any(k.endswith(("running_mean", "running_var")) for k in moved)
    assert not np.allclose(top.features(secs[2].trunk), secs[2].image[:, :1280], atol=2e-3)


def test_fit_is_cached_by_its_inputs_and_apply_replaces_the_own_window(world, tmp_path):
    secs, _, genes = world
    secs = secs[:2]
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    ys = [target.transform(s.adata, genes) for s in secs]
    cache = Cache(tmp_path)
    a = ImageTop.fit(ENCODER, [s.trunk for s in secs], ys, cache=cache)
    b = ImageTop.fit(ENCODER, [s.trunk for s in secs], ys, cache=cache)
    assert cache.misses == {"image-top": 1} and cache.hits == {"image-top": 1}
    assert a.state.keys() == b.state.keys()
    np.testing.assert_array_equal(a.loss, b.loss)
    assert all(np.array_equal(a.state[k], b.state[k]) for k in a.state)
    c = ImageTop.fit(ENCODER, [s.trunk for s in secs], [y[:, :6] for y in ys], cache=cache)
    assert cache.misses == {"image-top": 2}  # other genes: another fit
    assert not all(np.array_equal(a.state[k], c.state[k]) for k in a.state)
    out = a.apply(secs[0])
    np.testing.assert_array_equal(out.image[:, 1280:], secs[0].image[:, 1280:])
    np.testing.assert_allclose(out.image[:, :1280], a.features(secs[0].trunk))
    assert not np.allclose(out.image[:, :1280], secs[0].image[:, :1280])


def test_sections_without_trunk_are_refused(world, tmp_path):
    secs, _, genes = world
    bare = PreparedSection(adata=secs[0].adata, image=secs[0].image)
    y = np.zeros((32, len(genes)))
    with pytest.raises(InputError, match="finetune: true"):
        ImageTop.fit(ENCODER, [None], [y], cache=Cache(tmp_path))
    top = ImageTop(
        ENCODER, {k: v.numpy() for k, v in _finetune._module(ENCODER).state_dict().items()}
    )
    with pytest.raises(InputError, match="without trunk activations"):
        top.apply(bare)


def test_finetune_needs_an_effnet_encoder():
    with pytest.raises(InputError, match="finetune needs an effnet-lite"):
        FeatureConfig(finetune=True, image_encoder="resnet18")


def test_a_fine_tuned_run_saves_loads_and_predicts_the_same(world, tmp_path):
    torch.set_num_threads(1)
    secs, pg, genes = world
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    m = GeneshotModel("depth", "zero-shot", n_components=4)
    m.train(
        secs[:2],
        pg,
        seen_genes=genes[3:],
        unseen_genes=genes[:3],
        target=target,
        features=FEATURES,
        progress=False,
        cache=Cache(tmp_path / "c"),
    )
    assert m.image_top is not None
    run = m.save(tmp_path / "run")
    loaded = GeneshotModel.load(run)
    np.testing.assert_allclose(
        loaded.predict(secs[2], pg, genes[:3]),
        m.predict(secs[2], pg, genes[:3]),
        rtol=1e-5,
        atol=1e-6,
    )
    # the prediction reads the fine-tuned own window: other trunk activations, other maps
    other = PreparedSection(adata=secs[2].adata, image=secs[2].image, trunk=secs[1].trunk)
    assert not np.allclose(m.predict(other, pg, genes[:3]), m.predict(secs[2], pg, genes[:3]))
    np.testing.assert_array_equal(loaded.image_top.loss, m.image_top.loss)
    (run / "image_top.npz").unlink()
    with pytest.raises(InputError, match="image_top.npz"):
        GeneshotModel.load(run)
