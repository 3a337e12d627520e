"""Segment many patches in parallel and collect maps, summaries and tables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from geneshot._progress import progress_bar
from geneshot.errors import InputError
from geneshot.nuclei._backends import NucleiBackend, get_nuclei_backend
from geneshot.nuclei._features import (
    MAP_CHANNELS,
    SUMMARY_NAMES,
    distribution_map,
    nuclei_table,
    nucleus_moments,
    summary_vector,
)


@dataclass
class NucleiResult:
    """Nuclei of N patches.

    Attributes
    ----------
    maps
        (N, C, S, S) float16 nuclei-distribution maps (channel names in ``channels``,
        ranges in :func:`~geneshot.nuclei.distribution_map`).
    summary
        (N, K) float32 per-patch summaries, column names in ``summary_names``.
    counts
        (N,) int32 nuclei per patch.
    channels, summary_names
        Names of the map channels and summary columns.
    tables
        One per-nucleus DataFrame per patch (``return_tables=True``), else None.
    labels
        (N, H, W) int32 instance maps (``return_labels=True``), else None.
    config
        Backend, µm/px and map settings that produced the result (for cache keys).
    """

    maps: np.ndarray
    summary: np.ndarray
    counts: np.ndarray
    channels: tuple[str, ...] = MAP_CHANNELS
    summary_names: tuple[str, ...] = SUMMARY_NAMES
    tables: list[pd.DataFrame] | None = None
    labels: np.ndarray | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def summary_frame(self, index: Any = None) -> pd.DataFrame:
        """The summary as a DataFrame (one row per patch)."""
        return pd.DataFrame(self.summary, columns=list(self.summary_names), index=index)


def segment_patch(
    rgb: np.ndarray,
    valid: np.ndarray | None = None,
    mpp: float = 0.5,
    backend: str | NucleiBackend = "skimage",
) -> tuple[np.ndarray, pd.DataFrame]:
    """Segment one patch: instance map (H, W) int32 and its per-nucleus table."""
    be = get_nuclei_backend(backend)
    labels, hema = be.segment(np.asarray(rgb), valid, mpp)
    return labels, nuclei_table(labels, hema, mpp)


def _check(
    patches: np.ndarray, valid: np.ndarray | None, mpp: float
) -> tuple[np.ndarray, np.ndarray | None]:
    patches = np.asarray(patches)
    if patches.ndim != 4 or patches.shape[-1] != 3:
        raise InputError(
            None,
            f"patches has shape {patches.shape}, expected (N, H, W, 3)",
            "pass RGB patches stacked along the first axis",
        )
    if patches.dtype != np.uint8:
        raise InputError(
            None,
            f"patches has dtype {patches.dtype}, expected uint8",
            "pass 0-255 RGB as uint8 (e.g. (x * 255).astype(np.uint8) for floats in [0, 1])",
        )
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != patches.shape[:3]:
            raise InputError(
                None,
                f"valid has shape {valid.shape}, expected {patches.shape[:3]}",
                "pass one (H, W) bool mask per patch, or None",
            )
        valid = valid.astype(bool, copy=False)
    if not np.isfinite(mpp) or mpp <= 0:
        raise InputError(
            None,
            f"mpp is {mpp}, expected a positive µm per pixel",
            "give the patch resolution, e.g. 0.5",
        )
    return patches, valid


def _run_chunk(
    patches: np.ndarray,
    valid: np.ndarray | None,
    start: int,
    stop: int,
    backend: NucleiBackend,
    mpp: float,
    map_size: int,
    channels: tuple[str, ...],
    want_tables: bool,
    want_labels: bool,
    solidity: bool,
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, list | None, np.ndarray | None]:
    n = stop - start
    maps = np.zeros((n, len(channels), map_size, map_size), np.float16)
    summ = np.zeros((n, len(SUMMARY_NAMES)), np.float32)
    counts = np.zeros(n, np.int32)
    tables = [] if want_tables else None
    labs = np.zeros((n, *patches.shape[1:3]), np.int32) if want_labels else None
    for j, i in enumerate(range(start, stop)):
        v = None if valid is None else np.asarray(valid[i])
        labels, hema = backend.segment(np.asarray(patches[i]), v, mpp)
        mo = nucleus_moments(labels, hema)
        maps[j] = distribution_map(
            labels, hema, v, mpp, map_size, channels, size_ref_um2=backend.max_area_um2, moments=mo
        )
        summ[j] = summary_vector(labels, hema, v, mpp, moments=mo)
        counts[j] = mo["area"].size
        if tables is not None:
            tables.append(nuclei_table(labels, hema, mpp, solidity=solidity))
        if labs is not None:
            labs[j] = labels
    return start, maps, summ, counts, tables, labs


def _n_workers(n_jobs: int) -> int:
    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return n_jobs


def segment_patches(
    patches: np.ndarray,
    valid: np.ndarray | None = None,
    mpp: float = 0.5,
    backend: str | NucleiBackend = "skimage",
    n_jobs: int = 2,
    progress: bool = True,
    map_size: int = 56,
    channels: tuple[str, ...] = MAP_CHANNELS,
    return_tables: bool = False,
    return_labels: bool = False,
    solidity: bool = False,
    chunk_size: int | None = None,
) -> NucleiResult:
    """Segment nuclei in N patches and build their nuclei-distribution maps.

    Parameters
    ----------
    patches
        (N, H, W, 3) uint8 RGB patches (224 px at 0.5 µm/px by default).
    valid
        (N, H, W) bool, False where a patch left the image (ignored pixels), or None.
    mpp
        µm per pixel of the patches.
    backend
        Name in :data:`NUCLEI_BACKENDS` or a backend instance.
    n_jobs
        Worker processes (joblib/loky); 1 runs in this process, -1 uses all cores.
    progress
        Show a progress bar over chunks.
    map_size
        Side of the distribution maps (cells).
    channels
        Map channels, from :data:`MAP_CHANNELS` plus ``"valid"``.
    return_tables, return_labels
        Also return per-nucleus tables / instance maps (memory: N x H x W int32).
    solidity
        Add the (slow) solidity column to the tables.
    chunk_size
        Patches per task; default splits the work into about 4 tasks per worker
        (between 16 and 256 patches each) so that process overhead stays small.

    Returns
    -------
    NucleiResult
    """
    patches, valid = _check(patches, valid, mpp)
    be = get_nuclei_backend(backend)
    channels = tuple(channels)
    n = patches.shape[0]
    workers = min(_n_workers(n_jobs), max(n, 1))
    if chunk_size is None:
        chunk_size = int(np.clip(np.ceil(n / (4 * workers)), 16, 256))
    bounds = [(a, min(a + chunk_size, n)) for a in range(0, n, chunk_size)]
    args = (be, mpp, map_size, channels, return_tables, return_labels, solidity)
    if workers == 1 or len(bounds) == 1:
        results = (_run_chunk(patches, valid, a, b, *args) for a, b in bounds)
    else:
        from joblib import Parallel, delayed

        # the whole arrays go once to a shared memmap; each task gets index bounds
        par = Parallel(n_jobs=workers, return_as="generator_unordered", max_nbytes="1M")
        results = par(delayed(_run_chunk)(patches, valid, a, b, *args) for a, b in bounds)
    maps = np.zeros((n, len(channels), map_size, map_size), np.float16)
    summary = np.zeros((n, len(SUMMARY_NAMES)), np.float32)
    counts = np.zeros(n, np.int32)
    tables: list | None = [None] * n if return_tables else None
    labels = np.zeros((n, *patches.shape[1:3]), np.int32) if return_labels else None
    with progress_bar(progress=progress, total=n, desc=f"nuclei ({be.name})", unit="patch") as bar:
        for start, m, s, c, t, lab in results:
            stop = start + len(c)
            maps[start:stop], summary[start:stop], counts[start:stop] = m, s, c
            if tables is not None:
                tables[start:stop] = t
            if labels is not None:
                labels[start:stop] = lab
            bar.update(len(c))
    config = {**be.config(), "mpp": mpp, "map_size": map_size, "channels": list(channels)}
    return NucleiResult(maps, summary, counts, channels, SUMMARY_NAMES, tables, labels, config)
