"""``geneshot predict`` / ``plot`` and the library behind them, on a tiny synthetic HER2+-layout dataset.

One module-scoped run (align-st, 2 epochs, no nuclei) is trained on sections C1+C2 and used
to predict C3: with its spots (and compared with ``geneshot evaluate``), on tissue tiles of
its JPEG, at a spot table, and on a pyramidal TIFF read window by window.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from geneshot._constants import Key
from geneshot.cache import Cache
from geneshot.cli import main
from geneshot.image import SlideImage, image_mpp
from geneshot.predict import MEASURED, predict_image, predict_sections
from geneshot.prepare import FeatureConfig

pytestmark = pytest.mark.slow  # ~25 s for the module: one ONNX export, one text-encoder load

MPP = 0.69  # HER2+ patients B–H
PITCH = 200.0 / MPP  # legacy ST: 200 µm centre to centre
SIZE = 1700
UNSEEN = ["ERBB2", "MYC"]
SEEN = [
    "KRT19",
    "COL1A1",
    "FOXA1",
    "ACTB",
    "EPCAM",
    "VIM",
    "PTPRC",
    "CD68",
    "ESR1",
    "KRT8",
    "MKI67",
    "SPARC",
    "FN1",
    "LUM",
    "DCN",
    "GAPDH",
]
PREDICT = ["ERBB2", "KRT19", "COL1A1", "MYC", "FOXA1"]


def _tissue_image(seed: int) -> np.ndarray:
    """White glass with a textured pink/purple ellipse of tissue."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    inside = ((xx - SIZE / 2) / (SIZE * 0.42)) ** 2 + ((yy - SIZE / 2) / (SIZE * 0.36)) ** 2 < 1
    purple = 0.5 + 0.5 * np.sin(xx / 90.0 + seed) * np.cos(yy / 120.0)
    img = np.full((SIZE, SIZE, 3), 245, np.uint8)
    tissue = np.stack([200 - 60 * purple, 110 - 50 * purple, 170 + 30 * purple], -1) + rng.normal(
        0, 12, (SIZE, SIZE, 3)
    )
    img[inside] = np.clip(tissue[inside], 0, 255).astype(np.uint8)
    return img


def _write_section(root: Path, section: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = _tissue_image(seed)
    folder = root / "ST-imgs" / section[0] / section
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(folder / f"{section}_HE.jpg", quality=90)
    xs, ys = np.meshgrid(np.arange(1, 8), np.arange(1, 8))
    xs, ys = xs.ravel(), ys.ravel()
    px, py = 120 + PITCH * (xs - 1), 120 + PITCH * (ys - 1)
    keep = (px < SIZE - 60) & (py < SIZE - 60)
    xs, ys, px, py = xs[keep], ys[keep], px[keep], py[keep]
    ids = [f"{x}x{y}" for x, y in zip(xs, ys)]
    spots = pd.DataFrame(
        {"x": xs, "y": ys, "new_x": xs, "new_y": ys, "pixel_x": px, "pixel_y": py, "selected": 1}
    )
    (root / "ST-spotfiles").mkdir(parents=True, exist_ok=True)
    spots.to_csv(root / "ST-spotfiles" / f"{section}_selection.tsv", sep="\t", index=False)
    # expression follows the purple stain under each spot, so the image carries signal
    stain = np.array([255 - img[int(y), int(x), 1] for x, y in zip(px, py)], float) / 255
    genes = UNSEEN + SEEN
    rates = np.exp(
        1.0
        + 2.0 * np.outer(stain, rng.uniform(-1, 1, len(genes)))
        + rng.normal(0, 0.2, (len(ids), len(genes)))
    )
    counts = pd.DataFrame(rng.poisson(rates), index=ids, columns=genes)
    (root / "ST-cnts").mkdir(parents=True, exist_ok=True)
    counts.to_csv(root / "ST-cnts" / f"{section}.tsv.gz", sep="\t")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("her2st")
    for i, sec in enumerate(["C1", "C2", "C3"]):
        _write_section(root, sec, i)
    return root


# windows and rings off: fast, and the window-read checks below bound 112 µm reads (the
# windows and rings are tested on their own in test_tile_mode_uses_the_training_windows_and_rings)
FEATURES = FeatureConfig(nuclei=False, patch_px=64, fov_um=(), context_um=())


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory) -> dict[str, Path]:
    """A single run and a 2-member ensemble run trained on C1+C2."""
    from geneshot.data import TargetTransform
    from geneshot.train import GeneshotModel
    from geneshot.train._ensemble import Ensemble
    from geneshot.workflow import GeneSplit, genes_for, load_sections

    cache = Cache()
    secs = load_sections("her2st", data_dir, ["C1", "C2"], FEATURES, cache=cache, progress=False)
    split = GeneSplit(seen=SEEN, unseen=UNSEEN)
    genes = genes_for(split, FEATURES, cache=cache, progress=False)
    target = TargetTransform.fit([s.adata for s in secs], "libsize")

    def fit(seed: int) -> GeneshotModel:
        m = GeneshotModel(
            "align-st",
            "zero-shot",
            {"max_epochs": 1, "genes_per_step": 8, "n_val_genes": 3, "seed": seed},
            d_model=32,
            n_text_layers=1,
            head="dot",  # the kernel head reports no uncertainty (tests/train/test_ensemble.py)
        )
        return m.train(
            secs,
            genes,
            seen_genes=SEEN,
            unseen_genes=UNSEEN,
            target=target,
            features=FEATURES.to_dict(),
            progress=False,
        )

    base = tmp_path_factory.mktemp("runs")
    ens = Ensemble.train(2, fit, base_seed=0)
    ens.members[0].save(base / "single")
    ens.save(base / "ensemble")
    return {"single": base / "single", "ensemble": base / "ensemble"}


def _fast(run: Path):
    """A single run with few MC-dropout passes (16 by default)."""
    from geneshot.train._ensemble import Ensemble

    return Ensemble.load(run, mc_samples=2)


def _image(data_dir: Path, section: str = "C3") -> Path:
    return next((data_dir / "ST-imgs" / section[0] / section).glob("*.jpg"))


def test_predict_with_spots_equals_evaluate(data_dir, runs, tmp_path):
    """Predict C3 at its spots, score with geneshot.metrics: the same numbers as `geneshot evaluate`."""
    from geneshot.metrics import evaluate_predictions
    from geneshot.prepare import prepare_genes
    from geneshot.train._ensemble import Ensemble
    from geneshot.workflow import evaluate, load_sections

    genes = ["ERBB2", "MYC", "KRT19"]
    out = tmp_path / "metrics.json"
    res = CliRunner().invoke(
        main,
        [
            "-q",
            "evaluate",
            "--run",
            str(runs["single"]),
            "--data",
            str(data_dir),
            "--sections",
            "C3",
            "--genes",
            ",".join(genes),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    ref = json.loads(out.read_text())

    pred = predict_sections(runs["single"], "her2st", data_dir, ["C3"], genes, progress=False)
    summary, _ = evaluate_predictions(
        pred.layers[MEASURED], pred.X, genes, pred.obs[Key.SECTION].astype(str).to_numpy()
    )
    for key in ("mse", "mae"):
        assert summary[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9)
    for conv in ("pooled", "per_section"):
        for k in ("pcc_f", "pcc_s", "pcc_m"):
            assert summary[conv][k] == pytest.approx(ref[conv][k], rel=1e-6, abs=1e-9)

    # the ensemble's mean goes through the same evaluate path as any model
    ens = Ensemble.load(runs["ensemble"])
    c = ens.contract
    feats = FeatureConfig(**c.features)
    secs = load_sections(
        "her2st",
        data_dir,
        ["C3"],
        feats,
        cache=Cache(),
        progress=False,
        universe=sorted(set(c.seen_genes) | set(c.unseen_genes) | set(genes)),
    )
    gin = prepare_genes(
        sorted(set(genes) | set(c.seen_genes)), feats, cache=Cache(), progress=False
    )
    ref_ens, _, ys, preds = evaluate(ens, secs, gin, genes)
    pe = predict_sections(ens, "her2st", data_dir, ["C3"], genes, progress=False)
    np.testing.assert_allclose(pe.X, preds[0], rtol=0, atol=0)
    np.testing.assert_allclose(pe.layers[MEASURED], ys[0], rtol=0, atol=0)
    assert (pe.layers[Key.UNCERTAINTY] > 0).all()


def test_var_says_how_far_each_map_departs_from_the_common_pattern(data_dir, runs):
    """``var["departure"]`` is 1 - PCC of the output map with the run's common pattern."""
    from geneshot.train import GeneshotModel

    genes = ["ERBB2", "MYC", "KRT19"]
    both = predict_sections(runs["single"], "her2st", data_dir, ["C3", "C1"], genes, progress=False)
    pred = both[both.obs[Key.SECTION] == "C3"]
    model = GeneshotModel.load(runs["single"])
    from geneshot.workflow import load_sections

    (sec,) = load_sections(
        "her2st",
        data_dir,
        ["C3"],
        FeatureConfig(**model.contract.features),
        cache=Cache(),
        progress=False,
        universe=sorted(set(model.contract.seen_genes) | set(model.contract.unseen_genes) | set(genes)),
    )
    common = model.common_pattern(sec)
    assert common.shape == (pred.n_obs,)
    want = [1 - np.corrcoef(pred.X[:, j], common)[0, 1] for j in range(len(genes))]
    # each section's departure in varm, their mean in var
    per_section = both.varm["departure_per_section"]
    assert list(per_section.columns) == ["C3", "C1"]
    np.testing.assert_allclose(per_section["C3"].to_numpy(), want, atol=1e-5)
    np.testing.assert_allclose(both.var[Key.DEPARTURE], per_section.mean(axis=1), atol=1e-12)
    assert both.var[Key.DEPARTURE].between(0, 2).all()


def test_cli_predict_tiles_then_plot(data_dir, runs, tmp_path):
    out = tmp_path / "pred.h5ad"
    args = [
        "-q",
        "predict",
        "--run",
        str(runs["ensemble"]),
        "--image",
        str(_image(data_dir)),
        "--mpp",
        str(MPP),
        "--genes",
        ",".join(PREDICT),
        "--describe",
        "NOVELGENE1=secreted protein expressed by cancer-associated fibroblasts in breast stroma",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    a = ad.read_h5ad(out)
    assert list(a.var_names) == [*PREDICT, "NOVELGENE1"]
    assert a.var[Key.SEEN].to_dict() == {
        "ERBB2": False,
        "KRT19": True,
        "COL1A1": True,
        "MYC": False,
        "FOXA1": True,
        "NOVELGENE1": False,
    }
    assert a.var.loc["NOVELGENE1", Key.DESCRIPTION].startswith("secreted protein")
    assert a.var[Key.DEPARTURE].between(0, 2).all()  # tiles too; the line below says so
    assert "departure from the common pattern" in res.output
    assert np.isfinite(a.X).all() and a.X.dtype == np.float32
    unc = a.layers[Key.UNCERTAINTY]
    assert unc.shape == a.shape and (unc >= 0).all() and (unc > 0).any()
    # tiles: integer grid, centres on the tissue ellipse, at the model's patch size
    tile_px = 112.0 / MPP
    assert a.obs[Key.ARRAY_ROW].dtype.kind == "i"
    xy = a.obsm[Key.SPATIAL]
    np.testing.assert_allclose(xy[:, 0], (a.obs[Key.ARRAY_COL] + 0.5) * tile_px)
    inside = ((xy[:, 0] - SIZE / 2) / (SIZE * 0.42)) ** 2 + (
        (xy[:, 1] - SIZE / 2) / (SIZE * 0.36)
    ) ** 2
    assert (inside < 1.3).all() and a.n_obs > 0.6 * np.pi * 0.42 * 0.36 * SIZE**2 / tile_px**2
    # squidpy / scanpy layout
    lib = a.uns[Key.UNS_SPATIAL]["C3_HE"]
    hires = lib[Key.IMAGES]["hires"]
    sf = lib[Key.SCALEFACTORS]
    assert hires.dtype == np.uint8 and hires.shape[2] == 3
    assert hires.shape[1] == pytest.approx(SIZE * sf[Key.HIRES_SCALEF], abs=1)
    assert sf[Key.SPOT_DIAMETER] == pytest.approx(tile_px)
    prov = a.uns[Key.GENESHOT]
    for key in (
        "geneshot_version",
        "model",
        "image_encoder",
        "text_encoder",
        "text_source",
        "config_hash",
        "date",
        "units",
        "uncertainty",
    ):
        assert key in prov, key
    assert prov["uncertainty"]["method"] == "deep-ensemble" and prov["mode"] == "tiles"

    maps = tmp_path / "maps"
    res = CliRunner().invoke(
        main, ["plot", str(out), "--genes", "ERBB2,NOVELGENE1", "--out", str(maps)]
    )
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in maps.glob("*.png"))
    assert pngs == ["C3_HE_ERBB2.png", "C3_HE_NOVELGENE1.png"]
    with Image.open(maps / pngs[0]) as im:
        assert im.size[0] > 300 and np.asarray(im.convert("RGB")).std() > 10


def test_sections_h5ad_plots_measured(data_dir, runs, tmp_path):
    out = tmp_path / "c3.h5ad"
    res = CliRunner().invoke(
        main,
        [
            "-q",
            "predict",
            "--run",
            str(runs["single"]),
            "--data",
            str(data_dir),
            "--sections",
            "C3",
            "--genes",
            "KRT19,MYC",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    a = ad.read_h5ad(out)
    assert MEASURED in a.layers and np.isfinite(a.layers[MEASURED]).all()
    # one member with dropout: MC dropout spread, and the file says so
    assert a.uns[Key.GENESHOT]["uncertainty"]["method"] == "mc-dropout"
    assert (a.layers[Key.UNCERTAINTY] > 0).any()
    fig_dir = tmp_path / "maps"
    assert CliRunner().invoke(main, ["plot", str(out), "--out", str(fig_dir)]).exit_code == 0
    assert len(list(fig_dir.glob("C3_*.png"))) == 2


def test_predict_image_at_spot_table(data_dir, runs, tmp_path):
    spots = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "pixel_x": [600, 890, 600, 890],
            "pixel_y": [700, 700, 990, 990],
        }
    )
    path = tmp_path / "spots.csv"
    spots.to_csv(path, index=False)
    a = predict_image(
        runs["single"], _image(data_dir), ["KRT19"], spots=path, mpp=MPP, progress=False
    )
    assert list(a.obs_names) == ["C3_HE_a", "C3_HE_b", "C3_HE_c", "C3_HE_d"]
    # grid derived from the spots' own pitch
    assert a.obs[[Key.ARRAY_ROW, Key.ARRAY_COL]].to_numpy().tolist() == [
        [0, 0],
        [0, 1],
        [1, 0],
        [1, 1],
    ]


def test_large_pyramidal_tiff_is_read_in_windows(runs, tmp_path, monkeypatch):
    """A tiled pyramidal TIFF with a resolution tag: no --mpp, no whole-image read."""
    tifffile = pytest.importorskip("tifffile")
    img = np.ascontiguousarray(_tissue_image(3)[500:1100, 400:1200])
    path = tmp_path / "slide.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            img,
            tile=(256, 256),
            subifds=2,
            resolution=(1e4 / MPP, 1e4 / MPP),
            resolutionunit="CENTIMETER",
            photometric="rgb",
        )
        for f in (2, 4):
            tif.write(img[::f, ::f], tile=(256, 256), subfiletype=1, photometric="rgb")
    assert image_mpp(path) == pytest.approx(MPP, rel=1e-4)
    areas = []
    orig = SlideImage._raw_window

    def spy(self, x0, y0, x1, y1):
        areas.append((x1 - x0) * (y1 - y0))
        return orig(self, x0, y0, x1, y1)

    monkeypatch.setattr(SlideImage, "_raw_window", spy)
    a = predict_image(
        _fast(runs["single"]), path, ["ERBB2"], progress=False, chunk=12, thumb_side=300
    )
    assert a.n_obs > 8  # several chunks
    assert max(areas) <= int(np.ceil(112 / MPP)) ** 2 < img.shape[0] * img.shape[1] / 10
    assert a.uns[Key.GENESHOT]["microns_per_pixel"] == pytest.approx(MPP, rel=1e-4)


@pytest.mark.parametrize("case", ["not_image", "outside", "unknown_gene", "not_run", "no_mpp"])
def test_bad_input_exit_2_and_no_output(case, data_dir, runs, tmp_path):
    out = tmp_path / "pred.h5ad"
    image, run, extra, genes = (
        str(_image(data_dir)),
        str(runs["single"]),
        ["--mpp", str(MPP)],
        "KRT19",
    )
    if case == "not_image":
        bad = tmp_path / "slide.jpg"
        bad.write_text("this is not an image")
        image = str(bad)
    elif case == "outside":
        spots = tmp_path / "spots.csv"
        pd.DataFrame({"id": ["a", "b"], "pixel_x": [100, 5000], "pixel_y": [100, 100]}).to_csv(
            spots, index=False
        )
        extra += ["--spots", str(spots)]
    elif case == "unknown_gene":
        genes = "KRT19,NOTAREALGENE42"
    elif case == "not_run":
        run = str(tmp_path)
    else:
        extra = []
    res = CliRunner().invoke(
        main,
        [
            "-q",
            "predict",
            "--run",
            run,
            "--image",
            image,
            "--genes",
            genes,
            "--out",
            str(out),
            *extra,
        ],
    )
    assert res.exit_code == 2, res.output
    assert res.output.count("error:") == 1 and "Traceback" not in res.output
    expected = {
        "not_image": "not a readable image",
        "outside": "outside",
        "unknown_gene": "NOTAREALGENE42",
        "not_run": "not a geneshot run",
        "no_mpp": "--mpp",
    }[case]
    assert expected in res.output
    assert not out.exists() and not list(tmp_path.glob(".pred.h5ad*"))


def test_uncertainty_check_script_rank_correlation():
    """scripts/uncertainty_check.py: spread that tracks the error gives a high rank correlation."""
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / "uncertainty_check.py"
    spec = importlib.util.spec_from_file_location("uncertainty_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    spread = rng.uniform(0.1, 2.0, (300, 4))
    measured = rng.normal(size=(300, 4))
    predicted = measured + rng.normal(size=(300, 4)) * spread
    rep = mod.uncertainty_report(measured, predicted, spread, list("ABCD"))
    assert rep["spearman"]["pairs"] > 0.4 and rep["within_gene_positive_frac"] == 1.0
    dec = rep["abs_error_by_spread_decile"]
    assert dec[-1] > 3 * dec[0]
    shuffled = mod.uncertainty_report(
        measured, predicted, rng.permutation(spread.ravel()).reshape(spread.shape), list("ABCD")
    )
    assert abs(shuffled["spearman"]["pairs"]) < 0.15


def _spots_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _truncated(src: Path, dst: Path) -> Path:
    raw = src.read_bytes()
    dst.write_bytes(raw[: len(raw) // 2])
    return dst


# name: (breaks the inputs -> (image, extra args), text the error line must hold)
BROKEN_INPUTS = {
    "spots_zero_bytes": (
        lambda d, t, img: (img, ["--spots", str(_spots_csv(t / "s.csv", ""))]),
        "spot table is empty (0 bytes)",
    ),
    "spots_header_only": (
        lambda d, t, img: (img, ["--spots", str(_spots_csv(t / "s.csv", "id,pixel_x,pixel_y\n"))]),
        "spot table has a header but no spots",
    ),
    "spots_no_pixel_y": (
        lambda d, t, img: (
            img,
            ["--spots", str(_spots_csv(t / "s.csv", "id,pixel_x,y\na,600,700\n"))],
        ),
        "missing column 'pixel_y'",
    ),
    "spots_text_coordinate": (
        lambda d, t, img: (
            img,
            ["--spots", str(_spots_csv(t / "s.csv", "id,pixel_x,pixel_y\na,600,700\nb,8g0,700\n"))],
        ),
        "column 'pixel_x' has 1 non-numeric or missing values (first: spot 'b', value '8g0')",
    ),
    "spots_a_folder": (
        lambda d, t, img: (img, ["--spots", str(t)]),
        "spot table is a folder, not a file",
    ),
    "image_a_folder": (lambda d, t, img: (str(t), []), "is a folder, not an image file"),
    "image_zero_bytes": (
        lambda d, t, img: (str(_spots_csv(t / "slide.jpg", "")), []),
        "image file is empty (0 bytes)",
    ),
    "image_truncated_jpeg": (
        lambda d, t, img: (str(_truncated(Path(img), t / "slide.jpg")), []),
        "image cannot be decoded (truncated or corrupt",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_INPUTS))
def test_broken_files_fail_in_one_line(case, data_dir, runs, tmp_path):
    """Bad --image / --spots files: exit 2, one line naming the file and the fix, no output."""
    breaks, needle = BROKEN_INPUTS[case]
    work = tmp_path / "in"
    work.mkdir()
    image, extra = breaks(data_dir, work, str(_image(data_dir)))
    out = tmp_path / "pred.h5ad"
    args = ["-q", "predict", "--run", str(runs["single"]), "--image", image, "--mpp", str(MPP)]
    res = CliRunner().invoke(main, [*args, "--genes", "KRT19", "--out", str(out), *extra])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert lines[0].startswith("error: ") and "Fix: " in lines[0], lines[0]
    assert needle in lines[0], lines[0]
    bad_file = extra[1] if extra else image
    assert bad_file in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".pred.h5ad*"))


def test_tile_mode_uses_the_training_windows_and_rings(data_dir, tmp_path, monkeypatch):
    """A run trained with larger windows and context rings: tiles get the same features.

    Tiles are prepared in chunks (bounded memory) but the rings must span chunks: the tile
    features equal those of one whole-image chunk, and each ring links neighbouring tiles.
    """
    from geneshot.data import TargetTransform
    from geneshot.image import ring_operators, spot_xy_um
    from geneshot.train._ensemble import Ensemble
    from geneshot.workflow import GeneSplit, genes_for, load_sections, train_model

    feats = FeatureConfig(nuclei=False, patch_px=64, fov_um=(224,), context_um=(130, 250))
    cache = Cache()
    secs = load_sections("her2st", data_dir, ["C1", "C2"], feats, cache=cache, progress=False)
    split = GeneSplit(seen=SEEN, unseen=UNSEEN)
    genes = genes_for(split, feats, cache=cache, progress=False)
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    model = train_model("depth", "zero-shot", secs, genes, split, target, feats, progress=False)
    model.save(tmp_path / "run")
    assert model.contract.image_dim == 1280 * 2 * 3  # (patch + 224 µm window) x (self + 2 rings)

    seen = []
    original = Ensemble.predict_with_uncertainty

    def spy(self, section, *args, **kwargs):
        seen.append(section)
        return original(self, section, *args, **kwargs)

    monkeypatch.setattr(Ensemble, "predict_with_uncertainty", spy)
    image = _image(data_dir)
    kw = dict(mpp=MPP, cache=cache, progress=False)
    a = predict_image(tmp_path / "run", image, PREDICT, chunk=7, **kw)
    predict_image(tmp_path / "run", image, PREDICT, chunk=10**6, **kw)
    chunked, whole = seen
    assert chunked.image.shape == (a.n_obs, model.contract.image_dim) and a.n_obs > 14
    np.testing.assert_allclose(chunked.image, whole.image, rtol=1e-5, atol=1e-6)
    assert np.isfinite(a.X).all()
    # rings in µm over the tiles (112 µm pitch): ring 1 = the 4 edge neighbours, ring 2 = the
    # 4 diagonal ones and the 4 two steps away; the ring means are those of the tiles' features
    xy = spot_xy_um(chunked.adata)
    ops = ring_operators(xy, feats.context_um)
    grid = chunked.adata.obs[[Key.ARRAY_ROW, Key.ARRAY_COL]].to_numpy()
    pos = {tuple(g): i for i, g in enumerate(grid)}
    inner = next(
        i
        for i, (r, c) in enumerate(grid)
        if all((r + dr, c + dc) in pos for dr in range(-2, 3) for dc in range(-2, 3))
    )
    steps = {tuple(grid[j] - grid[inner]) for j in ops[0][inner].indices}
    assert steps == {(0, 1), (0, -1), (1, 0), (-1, 0)}
    steps2 = {tuple(grid[j] - grid[inner]) for j in ops[1][inner].indices}
    assert steps2 == {(1, 1), (1, -1), (-1, 1), (-1, -1), (0, 2), (0, -2), (2, 0), (-2, 0)}
    own = chunked.image[:, : 2 * 1280]
    np.testing.assert_allclose(chunked.image[:, 2 * 1280 : 4 * 1280], ops[0] @ own, rtol=1e-4, atol=1e-5)


def test_tile_mode_reads_the_fine_tuned_encoder(data_dir, tmp_path, monkeypatch):
    """A run that fine-tuned its encoder's last block: tiles carry the trunk activations
    (chunked like the features) and the prediction reads them through the fine-tuned top."""
    from geneshot.data import TargetTransform
    from geneshot.train import GeneshotModel
    from geneshot.train._ensemble import Ensemble
    from geneshot.workflow import GeneSplit, genes_for, load_sections, train_model

    feats = FeatureConfig(nuclei=False, patch_px=64, fov_um=(), context_um=(), finetune=True)
    cache = Cache()
    secs = load_sections("her2st", data_dir, ["C1", "C2"], feats, cache=cache, progress=False)
    assert secs[0].trunk is not None and secs[0].trunk.shape[0] == secs[0].adata.n_obs
    split = GeneSplit(seen=SEEN, unseen=UNSEEN)
    genes = genes_for(split, feats, cache=cache, progress=False)
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    model = train_model("depth", "zero-shot", secs, genes, split, target, feats, progress=False, cache=cache)
    model.save(tmp_path / "run")
    assert GeneshotModel.load(tmp_path / "run").image_top is not None

    seen = []
    original = Ensemble.predict_with_uncertainty

    def spy(self, section, *args, **kwargs):
        seen.append((section, self.members[0]._adapt(section)))
        return original(self, section, *args, **kwargs)

    monkeypatch.setattr(Ensemble, "predict_with_uncertainty", spy)
    image = _image(data_dir)
    kw = dict(mpp=MPP, cache=cache, progress=False)
    a = predict_image(tmp_path / "run", image, PREDICT, chunk=7, **kw)
    b = predict_image(tmp_path / "run", image, PREDICT, chunk=10**6, **kw)
    (chunked, adapted), (whole, _) = seen
    assert chunked.trunk.shape[0] == a.n_obs > 14
    np.testing.assert_array_equal(chunked.trunk, whole.trunk)
    np.testing.assert_allclose(a.X, b.X, rtol=1e-5, atol=1e-6)
    # the own window the model reads is the fine-tuned top's, not the frozen encoder's
    assert not np.allclose(adapted.image, chunked.image)
