"""Named datasets: how to list a dataset's sections and read one of them."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad

from geneshot.errors import InputError


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one named dataset from its own folder."""

    name: str
    list_sections: Callable[[Path], list[str]]
    read_section: Callable[[Path, str], ad.AnnData]
    patient_of: Callable[[str], str]
    description: str = ""
    # cheap check (no table parsing) of whether a section has an image; None = read to know
    section_has_image: Callable[[Path, str], bool] | None = None


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset to the registry (used by each reader module)."""
    DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """The dataset called ``name``, or a clear error listing the known ones."""
    if name not in DATASETS:
        raise InputError(
            None, f"unknown dataset {name!r}", f"use one of: {', '.join(sorted(DATASETS))}"
        )
    return DATASETS[name]


def parse_sections(
    spec: DatasetSpec, data_dir: Path, sections: str | Sequence[str] | None
) -> list[str]:
    """Resolve a comma list (or None = all) into known section ids of ``data_dir``."""
    known = spec.list_sections(data_dir)
    if not known:
        raise InputError(
            data_dir, f"no {spec.name} sections found", f"point --data at the {spec.name} folder"
        )
    if sections is None or sections == "all":
        return known
    wanted = (
        [s.strip() for s in sections.split(",")] if isinstance(sections, str) else list(sections)
    )
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise InputError(
            data_dir,
            f"unknown section(s) {', '.join(unknown)} for dataset {spec.name!r}",
            f"use sections among: {', '.join(known)}",
        )
    return wanted


def read_dataset(
    name: str,
    data_dir: str | os.PathLike,
    sections: str | Sequence[str] | None = None,
    *,
    require_image: bool = False,
    imaged_only: bool = False,
) -> list[ad.AnnData]:
    """Read sections of a named dataset.

    Parameters
    ----------
    name
        Registered dataset name (``her2st``, ``cscc``, ...).
    data_dir
        The dataset's own folder (e.g. ``$GENESHOT_DATA/her2st``).
    sections
        Comma-separated ids, a list, or None for all.
    require_image
        Raise if a requested section has no image (for image-based work).
    imaged_only
        Keep only sections with an image, deciding from the file listing where the dataset
        can (so that the count tables of image-less sections are never parsed).
    """
    spec = get_dataset(name)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(
            data_dir, "dataset folder does not exist", f"pass --data pointing at the {name} folder"
        )
    ids = parse_sections(spec, data_dir, sections)
    if imaged_only and spec.section_has_image is not None:
        ids = [s for s in ids if spec.section_has_image(data_dir, s)]
    out = [spec.read_section(data_dir, s) for s in ids]
    if imaged_only:
        from geneshot.io._section import has_image

        out = [a for a in out if has_image(a)]
    if require_image:
        from geneshot.io._section import has_image

        missing = [s for s, a in zip(ids, out) if not has_image(a)]
        if missing:
            raise InputError(
                data_dir,
                f"section(s) {', '.join(missing)} have no H&E image",
                "choose sections with images (HER2+: C2–C6 here) or add the images",
            )
    return out
