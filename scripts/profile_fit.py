"""Where one model's training spends its time, on one leave-one-section-out fold.

Usage::

    python scripts/profile_fit.py --data ../shared/data/her2st --models gene-kernel align-st

Trains each model zero-shot on the default benchmark's sections (``configs/her2st_zero_shot.yaml``,
resolved as the benchmark resolves it) other than ``--test`` (default C2), with its features
read from the geneshot cache, exactly as the benchmark trains it (:func:`geneshot.workflow.train_model`),
and prints its wall time and the ``--top`` entries of a cProfile by cumulative time. Run it
with a warm cache: a cold one profiles the feature extraction instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path

from geneshot.benchmark import resolve_config
from geneshot.cache import Cache
from geneshot.data import TargetTransform
from geneshot.prepare import FeatureConfig
from geneshot.workflow import load_sections, split_and_describe, train_model

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "her2st_zero_shot.yaml"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=None, help="her2st folder (default: $GENESHOT_DATA/her2st)"
    )
    ap.add_argument("--models", nargs="+", default=["gene-kernel", "align-st"])
    ap.add_argument("--test", default="C2", help="the fold's held-out section")
    ap.add_argument("--top", type=int, default=15, help="profile lines per model")
    ap.add_argument(
        "--model-config",
        type=json.loads,
        default=None,
        help='model config for every model, as JSON, e.g. \'{"support_fit": "gcv"}\'',
    )
    ap.add_argument(
        "--train-config",
        type=json.loads,
        default=None,
        help='trainer settings for every torch model, as JSON, e.g. \'{"support_from": "sections"}\'',
    )
    args = ap.parse_args(argv)
    data = args.data or Path(os.environ.get("GENESHOT_DATA", "")) / "her2st"
    if not data.is_dir():
        sys.exit(f"{data}: no her2st folder; pass --data or set GENESHOT_DATA")
    cfg = resolve_config(CONFIG)
    if args.test not in cfg["sections"]:
        sys.exit(f"--test {args.test!r}: use one of {cfg['sections']}")
    features = FeatureConfig(**cfg["features"])
    cache = Cache()
    sections = load_sections(
        cfg["dataset"], data, cfg["sections"], features, cache=cache, progress=False
    )
    train = [s for s in sections if s.name != args.test]
    split, genes = split_and_describe(train, features, cache=cache, progress=False)
    target = TargetTransform.fit([s.adata for s in train], "libsize")
    for name in args.models:
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.enable()
        train_model(
            name,
            "zero-shot",
            train,
            genes,
            split,
            target,
            features,
            progress=False,
            cache=cache,
            model_config=args.model_config,
            train_config=args.train_config,
        )
        profile.disable()
        print(f"## {name}: {time.perf_counter() - t0:.1f} s (fold without {args.test})")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
