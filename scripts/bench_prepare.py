"""Time ``geneshot prepare`` cold (fresh cache) and warm, step by step.

Usage::

    GENESHOT_DATA=/path/to/data python scripts/bench_prepare.py
    python scripts/bench_prepare.py --data DIR/her2st --sections C2,C3 --json bench.json

Runs the real command twice in a subprocess with a fresh temporary cache: the first run
computes everything, the second must only load it. Per-step times come from the
``timings_s`` of ``prepare_summary.json``. The image encoder's ONNX export is kept in the
user-level models folder (``$GENESHOT_MODELS``), outside the feature cache, so a cold
feature cache normally finds it; ``--fresh-models`` points that folder at an empty one as
well (a first run on a new machine). The export is timed on its own either way. Prints a markdown table. Each run's CPU
seconds are shown beside its wall time: when other jobs share the cores, wall time grows
but CPU time does not.
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

TARGETS = {"cold": 30.0, "warm": 5.0, "image features": 100.0, "nuclei": 40.0}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_prepare(
    data: Path, sections: str, out: Path, cache: Path, extra: list[str], env: dict | None = None
) -> dict:
    """Run ``geneshot prepare`` once; return wall and CPU seconds and its summary."""
    # -q is an option of the command group (it must come before the subcommand)
    cmd = [sys.executable, "-m", "geneshot.cli", "-q", "prepare", "--data", str(data)]
    cmd += ["--sections", sections, "--out", str(out), "--cache", str(cache), *extra]
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"prepare failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "prepare_summary.json").read_text())
    return {"wall_s": wall, "cpu_s": cpu, "summary": summary}


def encoder_startup(name: str, cache: Path) -> float:
    """Seconds to build the image encoder with an empty cache and models folder (export included)."""
    code = (
        "import time; from geneshot.cache import Cache; "
        "from geneshot.encoders.image import create_image_encoder; t=time.perf_counter(); "
        f"create_image_encoder({name!r}, cache=Cache({str(cache)!r})); print(time.perf_counter()-t)"
    )
    env = {**os.environ, "GENESHOT_MODELS": str(cache / "models")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


def table(cold: dict, warm: dict, startup: float, n_genes: int) -> str:
    """The markdown report."""
    spots = cold["summary"]["spots"]
    tc, tw = cold["summary"]["timings_s"], warm["summary"]["timings_s"]
    rows = [
        "| step | cold (s) | throughput (cold) | warm (s) | target |",
        "|---|---:|---:|---:|---|",
    ]

    def row(step: str, rate: str, target: str = "") -> None:
        rows.append(
            f"| {step} | {tc.get(step, 0):.1f} | {rate} | {tw.get(step, 0):.2f} | {target} |"
        )

    row("read", f"{len(cold['summary']['sections'])} sections")
    row("patches", f"{spots / max(tc.get('patches', 0), 1e-9):.0f} patches/s")
    img = tc.get("image features", 0.0)
    net = max(img - startup, 1e-9)
    row(
        "image features",
        f"{spots / net:.0f} patches/s (+{startup:.1f} s encoder export, if not in the models folder)",
        f">= {TARGETS['image features']:.0f} patches/s",
    )
    if "nuclei" in tc:
        row(
            "nuclei",
            f"{spots / max(tc['nuclei'], 1e-9):.0f} patches/s",
            f">= {TARGETS['nuclei']:.0f} patches/s",
        )
    if "fov patches" in tc:  # larger windows around each spot (FeatureConfig.fov_um)
        row("fov patches", "")
        row("fov features", "")
    if "context" in tc:  # neighbour rings (FeatureConfig.context_um)
        row("context", "")
    gt = tc.get("gene texts + embeddings", 0.0)
    row("gene texts + embeddings", f"{n_genes / max(gt, 1e-9):.0f} genes/s ({n_genes} genes)")
    row("write", "")
    rows.append(
        f"| **total (process wall)** | **{cold['wall_s']:.1f}** | {spots} spots, CPU {cold['cpu_s']:.0f} s "
        f"| **{warm['wall_s']:.2f}** (CPU {warm['cpu_s']:.1f} s) | cold <= {TARGETS['cold']:.0f} s, warm <= {TARGETS['warm']:.0f} s |"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=None, help="her2st folder (default: $GENESHOT_DATA/her2st)"
    )
    ap.add_argument("--sections", default="C2,C3,C4,C5,C6")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    ap.add_argument(
        "--fresh-models",
        action="store_true",
        help="also start from an empty models folder (exported encoders), as on a new machine",
    )
    ap.add_argument(
        "extra", nargs="*", help="further prepare options, after --, e.g. -- --no-nuclei"
    )
    args = ap.parse_args(argv)
    data = args.data or Path(os.environ.get("GENESHOT_DATA", "")) / "her2st"
    if not data.is_dir():
        sys.exit(f"{data}: no her2st folder; pass --data or set GENESHOT_DATA")

    with tempfile.TemporaryDirectory(prefix="geneshot-bench-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "GENESHOT_MODELS": str(tmp / "models")} if args.fresh_models else None
        cold = run_prepare(data, args.sections, tmp / "out", tmp / "cache", args.extra, env)
        warm = run_prepare(data, args.sections, tmp / "out", tmp / "cache", args.extra, env)
        startup = encoder_startup(cold["summary"]["features"]["image_encoder"], tmp / "fresh-cache")
    if warm["summary"]["cache"]["computed"]:
        print(
            f"warning: the warm run computed {warm['summary']['cache']['computed']}",
            file=sys.stderr,
        )
    n_genes = cold["summary"]["genes_described"]
    print(
        f"geneshot prepare --sections {args.sections} ({cold['summary']['spots']} spots), {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print(table(cold, warm, startup, n_genes))
    if args.json:
        args.json.write_text(
            json.dumps({"cold": cold, "warm": warm, "encoder_startup_s": startup}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
