"""Does shrinking toward the common pattern help when the image features shift?

Every imaged HER2+ section here comes from one patient, so a new patient's stain, scanner or
blur is simulated: the test section's whole-slide image is rewritten with a colour change, a
blur or both, then prepared and predicted exactly as a user's slide would be. For each version
the script prints the shift ratio the run measures from image features alone, the shrinkage it
chooses, and PCC@M of the run's predictions with and without that shrinkage and of the common
pattern alone, against the section's measured expression.

    python scripts/shift_check.py --run RUN --data ../shared/data/her2st --section C6 --out out/shift

Uses only the run's training sections for every choice; the test section's expression is read
only to score.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def _rewrite(src: Path, dst: Path, kind: str) -> Path:
    """A perturbed copy of a slide image (JPEG of the same size)."""
    from geneshot.image._slide import no_pixel_limit

    with no_pixel_limit():
        im = Image.open(src).convert("RGB")
        if kind in ("colour", "colour+blur"):
            # another lab's stain: more saturated, eosin-leaning, darker
            im = ImageEnhance.Color(im).enhance(1.8)
            r, g, b = im.split()
            r = r.point(lambda v: min(255, int(v * 1.08 + 6)))
            b = b.point(lambda v: int(v * 0.85))
            im = ImageEnhance.Brightness(Image.merge("RGB", (r, g, b))).enhance(0.85)
        if kind in ("blur", "colour+blur"):
            im = im.filter(ImageFilter.GaussianBlur(radius=3))
        im.save(dst, quality=92)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="run folder from `geneshot train`")
    ap.add_argument("--data", required=True, type=Path, help="the her2st dataset folder")
    ap.add_argument("--section", default="C6", help="test section (not a training section of the run)")
    ap.add_argument("--out", required=True, type=Path, help="folder for the perturbed images and results.json")
    args = ap.parse_args()

    from geneshot.cache import Cache
    from geneshot.io import read_dataset, section_meta
    from geneshot.metrics import per_gene_pearson
    from geneshot.prepare import FeatureConfig, prepare_genes, prepare_sections
    from geneshot.train import GeneshotModel

    args.out.mkdir(parents=True, exist_ok=True)
    cache = Cache()
    model = GeneshotModel.load(args.run)
    c = model.contract
    if args.section in c.train_sections:
        raise SystemExit(f"{args.section} is a training section of {args.run}")
    features = FeatureConfig(**c.features)
    names = list(c.unseen_genes)
    (a,) = read_dataset("her2st", args.data, [args.section], require_image=True)
    from geneshot.data import align_genes, clean_var_names

    a = align_genes(clean_var_names(a), sorted(set(c.seen_genes) | set(names)))
    genes = prepare_genes(sorted(set(names) | set(c.seen_genes)), features, cache=cache, progress=False)
    y = model.target.transform(a, names)
    src = Path(section_meta(a)["image_path"])
    rows = []
    for kind in ("original", "colour", "blur", "colour+blur"):
        t0 = time.perf_counter()
        b = a.copy()
        if kind != "original":
            dst = _rewrite(src, args.out / f"{args.section}_{kind}.jpg", kind)
            section_meta(b)["image_path"] = str(dst)
        (sec,) = prepare_sections([b], features, cache=cache, progress=False)
        raw = model.predict(sec, genes, names, shrink=0.0)
        shrunk = model.predict(sec, genes, names)
        info = dict(model.last_shift)
        common = model.predict(sec, genes, names, shrink=1.0)
        score = {
            k: float(np.nanmean(per_gene_pearson(y, p)))
            for k, p in (("no shrink", raw), ("shrunk", shrunk), ("common only", common))
        }
        rows.append({"image": kind, **info, **score, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"{'image':<12} {'ratio':>6} {'shrink':>6} {'no shrink':>9} {'shrunk':>7} {'common':>7}")
    for r in rows:
        print(f"{r['image']:<12} {r['ratio']:6.2f} {r['shrink']:6.2f} {r['no shrink']:9.3f} {r['shrunk']:7.3f} {r['common only']:7.3f}")


if __name__ == "__main__":
    main()
