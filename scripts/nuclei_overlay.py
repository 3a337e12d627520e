"""Draw nuclei contours on a grid of real spot patches, to check the segmentation by eye.

Example::

    python scripts/nuclei_overlay.py --out nuclei.png \\
        --image $GENESHOT_DATA/her2st/ST-imgs/C/C2/5714_HE_BT_C2.jpg \\
        --spots $GENESHOT_DATA/her2st/ST-spotfiles/C2_selection.tsv --image-mpp 0.69

Spots are read from a spot file with ``pixel_x`` (column) and ``pixel_y`` (row) in
full-resolution pixels; each window of ``--patch-um`` µm is resized to ``--patch-px``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd


def read_patches(
    image: Path, xy: np.ndarray, image_mpp: float, patch_um: float, patch_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """RGB patches (N, patch_px, patch_px, 3) and validity masks centred on ``xy``."""
    from PIL import Image

    from geneshot.image._slide import SlideImage

    slide = SlideImage(image)
    w = round(patch_um / image_mpp)
    rgbs, valids = [], []
    for x, y in xy:
        rgb, valid = slide.read_window(round(x - w / 2), round(y - w / 2), w, w)
        rgbs.append(np.asarray(Image.fromarray(rgb).resize((patch_px, patch_px), Image.BILINEAR)))
        valids.append(
            np.asarray(Image.fromarray(valid).resize((patch_px, patch_px), Image.NEAREST))
        )
    return np.stack(rgbs), np.stack(valids)


def main(argv: list[str] | None = None) -> None:
    data = Path(os.environ.get("GENESHOT_DATA", "")) / "her2st"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="PNG to write")
    ap.add_argument("--image", type=Path, default=data / "ST-imgs/C/C2/5714_HE_BT_C2.jpg")
    ap.add_argument("--spots", type=Path, default=data / "ST-spotfiles/C2_selection.tsv")
    ap.add_argument("--image-mpp", type=float, default=0.69, help="µm per pixel of the image")
    ap.add_argument("--patch-um", type=float, default=112.0)
    ap.add_argument("--patch-px", type=int, default=224)
    ap.add_argument(
        "--n", type=int, default=12, help="number of spots (evenly spread over the file)"
    )
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--backend", default="skimage")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    from geneshot.cache import atomic_path
    from geneshot.nuclei import segment_patches

    spots = pd.read_csv(args.spots, sep="\t")
    idx = np.linspace(0, len(spots) - 1, min(args.n, len(spots))).round().astype(int)
    xy = spots[["pixel_x", "pixel_y"]].to_numpy(float)[idx]
    mpp = args.patch_um / args.patch_px
    patches, valid = read_patches(args.image, xy, args.image_mpp, args.patch_um, args.patch_px)
    t0 = time.perf_counter()
    res = segment_patches(
        patches, valid, mpp=mpp, backend=args.backend, n_jobs=1, progress=False, return_labels=True
    )
    dt = time.perf_counter() - t0

    rows = int(np.ceil(len(idx) / args.cols))
    fig, axes = plt.subplots(
        rows, 2 * args.cols, figsize=(4 * args.cols, 2.1 * rows), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(len(idx)):
        r, c = divmod(k, args.cols)
        over = patches[k].copy()
        over[find_boundaries(res.labels[k], mode="inner")] = (0, 255, 0)
        axes[r, 2 * c].imshow(patches[k])
        axes[r, 2 * c + 1].imshow(over)
        axes[r, 2 * c].set_title(f"spot {idx[k]}", fontsize=7)
        axes[r, 2 * c + 1].set_title(f"{res.counts[k]} nuclei", fontsize=7)
    fig.suptitle(
        f"{args.image.name}: {args.backend} nuclei, {args.patch_um:g} µm patches at {mpp:g} µm/px ({len(idx) / dt:.0f} patches/s)",
        fontsize=9,
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print(f"wrote {args.out}: counts {res.counts.tolist()}")


if __name__ == "__main__":
    main()
