"""Throughput of an image encoder (patches/s) per backend, with and without TTA.

Usage::

    python scripts/bench_image_encoder.py                      # effnet-lite0, onnx + torch
    python scripts/bench_image_encoder.py --n 512 --batch-size 32 --backends onnx
    python scripts/bench_image_encoder.py --encoder effnet-lite2   # any name of `geneshot encoders`

Patches are synthetic textured 224 px RGB (speed does not depend on content). Eager torch
is slow on CPUs, so it runs on a quarter of the patches; TTA runs 8 passes per patch, so it
runs on an eighth. Startup (model load, one-time ONNX export) is timed separately.
Besides wall-clock throughput it prints n / (process CPU seconds / cores), which estimates
the throughput on an otherwise idle machine when other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _patches(n: int, size: int, seed: int = 0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.normal(size=(n, size, size, 3)), (0, 2, 2, 0))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (np.array([90, 40, 140]) + noise * np.array([150, 140, 80])).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="effnet-lite0")
    ap.add_argument("--backends", default="onnx,torch", help="comma-separated: onnx, torch")
    ap.add_argument("--n", type=int, default=256, help="patches for the fastest configuration")
    ap.add_argument(
        "--size", type=int, default=224, help="patch side in px (resized when it differs)"
    )
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    from geneshot.encoders._image_effnet import n_threads
    from geneshot.encoders.image import create_image_encoder

    rows = []
    for backend in args.backends.split(","):
        t0 = time.perf_counter()
        enc = create_image_encoder(args.encoder, backend=backend, device=args.device)
        startup = time.perf_counter() - t0
        enc.embed(_patches(2, args.size), progress=False)  # warm-up (allocations, kernel choice)
        for tta in (False, True):
            n = (
                args.n
                // (4 if backend == "torch" and args.device == "cpu" else 1)
                // (8 if tta else 1)
            )
            n = max(n, 8)
            patches = _patches(n, args.size, seed=1)
            t0, c0 = time.perf_counter(), time.process_time()
            enc.embed(patches, batch_size=args.batch_size, tta=tta, progress=False)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            # CPU seconds spread over the cores: what wall time would be without other load
            est = n / max(cpu / n_threads(), 1e-9)
            rows.append(
                {
                    "encoder": enc.name,
                    "backend": enc.backend,
                    "tta": tta,
                    "n": n,
                    "seconds": round(dt, 3),
                    "patches_per_s": round(n / dt, 1),
                    "cpu_s": round(cpu, 3),
                    "patches_per_s_uncontended_est": round(est, 1),
                    "startup_s": round(startup, 2),
                }
            )
            print(
                f"{enc.name:14s} {enc.backend:6s} tta={'on ' if tta else 'off'} "
                f"n={n:5d} {n / dt:8.1f} patches/s wall, {est:8.1f} per CPU-time/cores "
                f"(startup {startup:.1f} s)",
                flush=True,
            )
    print(
        f"cores={n_threads()} size={args.size}px batch={args.batch_size} load1={os.getloadavg()[0]:.2f}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cores": n_threads(), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
