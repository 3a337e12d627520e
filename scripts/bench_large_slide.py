"""Predict on a large synthetic slide without loading it whole, and measure peak memory.

Writes a tiled pyramidal TIFF (tifffile, tile by tile: the full image never exists in
memory), trains a tiny stand-in model on random features (accuracy is not the point; the
image path is), then runs :func:`geneshot.predict.predict_image` in a fresh child process
and reports its peak resident memory next to the size of the decoded image.

Usage::

    python scripts/bench_large_slide.py                 # 20,000 x 20,000 px at 0.5 µm/px
    python scripts/bench_large_slide.py --size 8000 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TILE = 512
GENES = ["ERBB2", "KRT19", "COL1A1", "MYC", "FOXA1", "ACTB", "EPCAM", "VIM", "PTPRC", "CD68"]


def _tile(x0: int, y0: int, f: int, size: int, tissue: float) -> np.ndarray:
    """The (TILE, TILE, 3) tile at level-``f`` pixel (x0, y0): an H&E-like ellipse on glass."""
    yy, xx = np.mgrid[y0 : y0 + TILE, x0 : x0 + TILE].astype(np.float32) * f
    a = np.sqrt(tissue / np.pi) * size  # ellipse semi-axes giving about `tissue` of the area
    inside = ((xx - size / 2) / (1.2 * a)) ** 2 + ((yy - size / 2) / (a / 1.2)) ** 2 < 1
    inside &= (xx < size) & (yy < size)
    purple = 0.5 + 0.5 * np.sin(xx / 150.0) * np.cos(yy / 210.0)
    grain = ((xx * 7 + yy * 13) % 23) / 23.0  # deterministic texture, cheap
    out = np.full((TILE, TILE, 3), 242, np.uint8)
    rgb = np.stack(
        [200 - 60 * purple - 10 * grain, 110 - 50 * purple, 170 + 30 * purple - 10 * grain], -1
    )
    out[inside] = rgb[inside].astype(np.uint8)
    return out


def write_slide(path: Path, size: int, mpp: float, tissue: float) -> None:
    """A tiled pyramidal RGB TIFF with a resolution tag, written tile by tile."""
    import tifffile

    levels = [f for f in (1, 2, 4, 8, 16, 32) if size // f >= 1024]

    def tiles(f: int):
        n = size // f
        for y in range(0, n, TILE):
            for x in range(0, n, TILE):
                yield _tile(x, y, f, size, tissue)

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for i, f in enumerate(levels):
            n = size // f
            kw = (
                {
                    "subifds": len(levels) - 1,
                    "resolution": (1e4 / mpp, 1e4 / mpp),
                    "resolutionunit": "CENTIMETER",
                }
                if i == 0
                else {"subfiletype": 1}
            )
            tif.write(
                tiles(f),
                shape=(n, n, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="zlib",
                **kw,
            )


def train_stub(run: Path, cache_dir: Path) -> None:
    """A tiny align-st run on random 1280-d features (the effnet-lite0 contract, no nuclei)."""
    import pandas as pd

    from geneshot.cache import Cache
    from geneshot.data import TargetTransform
    from geneshot.io import make_section
    from geneshot.prepare import FeatureConfig, PreparedSection, prepare_genes
    from geneshot.train import GeneshotModel

    rng = np.random.default_rng(0)
    features = FeatureConfig(nuclei=False)
    side = 8
    r, c = np.divmod(np.arange(side * side), side)
    ids = [f"s{i}" for i in range(side * side)]
    counts = pd.DataFrame(rng.poisson(3, (len(ids), len(GENES))), index=ids, columns=GENES)
    spots = pd.DataFrame(
        {"pixel_x": c * 10.0, "pixel_y": r * 10.0, "array_row": r, "array_col": c}, index=ids
    )
    a = make_section(
        counts,
        spots,
        section="S",
        patient="S",
        dataset="stub",
        image_path=None,
        mpp=None,
        spot_diameter_um=100.0,
    )
    sec = PreparedSection(adata=a, image=rng.normal(size=(len(ids), 1280)).astype(np.float32))
    genes = prepare_genes(GENES, features, cache=Cache(cache_dir), progress=False)
    m = GeneshotModel(
        "align-st",
        "zero-shot",
        {"max_epochs": 1, "genes_per_step": 4, "n_val_genes": 2},
        d_model=32,
        n_text_layers=1,
    )
    m.train(
        [sec],
        genes,
        seen_genes=GENES[2:],
        unseen_genes=GENES[:2],
        target=TargetTransform.fit([a], "libsize"),
        features=features.to_dict(),
        progress=False,
    )
    m.save(run)
    # export the ONNX encoder here, so the child's peak memory is the prediction's, not the export's
    from geneshot.encoders.image import create_image_encoder

    create_image_encoder(features.image_encoder, cache=Cache(cache_dir)).embed(
        np.zeros((1, 224, 224, 3), np.uint8), progress=False
    )


def child(args: argparse.Namespace) -> None:
    """Runs in a fresh process so that its peak RSS is the prediction's alone."""
    import psutil

    from geneshot.cache import Cache
    from geneshot.predict import predict_image, write_h5ad
    from geneshot.train._ensemble import Ensemble

    proc = psutil.Process()
    model = Ensemble.load(args.run)
    base = proc.memory_info().rss
    t0 = time.perf_counter()
    adata = predict_image(
        model, args.slide, GENES[:5], cache=Cache(args.cache), progress=False, chunk=args.chunk
    )
    write_h5ad(adata, Path(args.cache) / "pred.h5ad")
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(
        json.dumps(
            {
                "n_tiles": int(adata.n_obs),
                "predict_s": round(dt, 1),
                "rss_after_model_load_mb": round(base / 2**20),
                "peak_rss_mb": round(peak / 2**20),
                "mpp_from_tiff_tag": adata.uns["geneshot"]["microns_per_pixel"],
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=int, default=20000, help="slide side in pixels")
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument(
        "--tissue", type=float, default=0.2, help="fraction of the slide covered by tissue"
    )
    p.add_argument("--chunk", type=int, default=1024, help="tiles prepared together")
    p.add_argument("--out", type=Path, default=None, help="JSON report")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run", help=argparse.SUPPRESS)
    p.add_argument("--slide", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory(prefix="geneshot-bench-") as tmp:
        tmp = Path(tmp)
        slide = tmp / "slide.tif"
        t0 = time.perf_counter()
        write_slide(slide, args.size, args.mpp, args.tissue)
        t_write = time.perf_counter() - t0
        train_stub(tmp / "run", tmp / "cache")
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--run",
            str(tmp / "run"),
            "--slide",
            str(slide),
            "--cache",
            str(tmp / "cache"),
            "--chunk",
            str(args.chunk),
        ]
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, "GENESHOT_CACHE": str(tmp / "cache")},
        )
        if res.returncode != 0:
            sys.exit(res.stderr[-3000:])
        report = json.loads(res.stdout.strip().splitlines()[-1])
        report.update(
            {
                "slide_px": [args.size, args.size],
                "decoded_image_mb": round(args.size * args.size * 3 / 2**20),
                "tiff_mb": round(slide.stat().st_size / 2**20, 1),
                "write_tiff_s": round(t_write, 1),
                "chunk": args.chunk,
                "cpu_count": os.cpu_count(),
            }
        )
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
