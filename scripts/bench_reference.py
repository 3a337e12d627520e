"""Time building the expression reference of the HER2+ non-C patients, cold and warm.

    python scripts/bench_reference.py --data $GENESHOT_DATA/her2st [--write-h5ad out/ref_nonC.h5ad]

Cold: an empty cache (a fresh temporary folder). Warm: the same call again (cache hit by
content hash). Both paths are timed: count tables -> ``reference_from_sections`` (what the
benchmark's ``expression_reference: auto`` does per fold) and, with ``--write-h5ad``, the
written ``.h5ad`` -> ``read_reference`` (what ``--reference`` does).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, required=True, help="The her2st folder.")
    ap.add_argument("--exclude-patients", default="C", help="Comma-separated patients left out.")
    ap.add_argument(
        "--write-h5ad",
        type=Path,
        default=None,
        help="Also write the reference .h5ad and time reading it.",
    )
    args = ap.parse_args()

    from geneshot.cache import Cache
    from geneshot.genes import read_reference, reference_from_sections, write_reference_h5ad
    from geneshot.io import read_dataset

    excluded = set(args.exclude_patients.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(Path(tmp) / "cache")
        t0 = time.perf_counter()
        secs = [
            a
            for a in read_dataset("her2st", args.data, None)
            if str(a.obs["patient"].iloc[0]) not in excluded
        ]
        t_read = time.perf_counter() - t0
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            ref = reference_from_sections(secs, cache=cache)
            print(
                f"sections -> reference ({label}): {time.perf_counter() - t0:.2f} s (+ reading {len(secs)} count tables {t_read:.2f} s)"
            )
        print(
            f"  {ref.n_obs} rows x {len(ref.genes)} genes, {ref.X.nnz} non-zeros, samples {sorted(set(ref.samples))[:3]}..."
        )
        if args.write_h5ad:
            t0 = time.perf_counter()
            write_reference_h5ad(secs, args.write_h5ad)
            print(f"wrote {args.write_h5ad} in {time.perf_counter() - t0:.2f} s")
            for label in ("cold", "warm"):
                t0 = time.perf_counter()
                r = read_reference(args.write_h5ad, cache=cache)
                print(
                    f"h5ad -> reference ({label}): {time.perf_counter() - t0:.2f} s ({r.n_obs} x {len(r.genes)})"
                )


if __name__ == "__main__":
    main()
