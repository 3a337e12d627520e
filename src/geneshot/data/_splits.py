"""Split protocols: section splits, validation splits and split files (JSON).

Gene splits are built in :mod:`geneshot.data._gene_splits` and share the format and files.

A split is a plain dict, so it can be written, read back, diffed and hashed::

    {"id": <hash of everything else>, "kind": "sections" | "genes", "name": ..., "level": ...,
     "sections": [...], "patient_of": {section: patient}, "folds": [{"fold": 0, "train": [...],
     "test": [...]}, ...]}

Gene splits have ``"kind": "genes"``, ``"genes": [...]`` and folds ``{"fold", "seen", "unseen"}``
(a single split is one fold). Lists inside a fold are sorted, so the id depends only on the
content, never on input order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geneshot.cache import atomic_path, hash_parts
from geneshot.errors import InputError

PatientOf = Mapping[str, str] | Callable[[str], str]

# Hist2ST / HisToGene HER2+ leave-one-section-out list. Source: biomed-AI/Hist2ST dataset.py
# (ViT_HER2ST) and the same line in HisToGene's dataset code: ``names`` = the sorted ids of
# the 36 files in ST-cnts (A1..H3), ``samples = names[1:33]``, fold i tests ``samples[i]``.
# That drops A1 (index 0) and H1, H2, H3 (indices 33-35), leaving these 32, in fold order.
LEGACY_HER2ST_32: tuple[str, ...] = (
    *(f"A{i}" for i in range(2, 7)),
    *(f"B{i}" for i in range(1, 7)),
    *(f"C{i}" for i in range(1, 7)),
    *(f"D{i}" for i in range(1, 7)),
    *(f"E{i}" for i in range(1, 4)),
    *(f"F{i}" for i in range(1, 4)),
    *(f"G{i}" for i in range(1, 4)),
)


# ----------------------------------------------------------------------------- helpers


def _patient_map(sections: Sequence[str], patient_of: PatientOf | None) -> dict[str, str] | None:
    if patient_of is None:
        return None
    out: dict[str, str] = {}
    for s in sections:
        if callable(patient_of):
            out[s] = str(patient_of(s))
        elif s in patient_of:
            out[s] = str(patient_of[s])
        else:
            raise InputError(
                None,
                f"section {s!r} has no patient in patient_of",
                "give a patient for every section",
            )
    return out


def _unique_sections(sections: Iterable[str]) -> list[str]:
    secs = [str(s) for s in sections]
    dup = sorted({s for s in secs if secs.count(s) > 1})
    if dup:
        raise InputError(
            None, f"sections listed more than once: {', '.join(dup)}", "list each section once"
        )
    if not secs:
        raise InputError(None, "no sections given", "give the sections of the dataset")
    return secs


def _finish(split: dict[str, Any]) -> dict[str, Any]:
    """Sort fold lists and stamp the content hash as ``id``."""
    for f in split["folds"]:
        for key in ("train", "test", "seen", "unseen"):
            if key in f:
                f[key] = sorted(f[key])
    split.pop("id", None)
    return {"id": split_id(split), **split}


def split_id(split: Mapping[str, Any]) -> str:
    """Stable hash of a split's content (every field except ``id``)."""
    return hash_parts({k: v for k, v in split.items() if k != "id"})[:16]


# ----------------------------------------------------------------------------- section splits


def patient_kfold(
    sections: Sequence[str], patient_of: PatientOf, k: int | None = None
) -> dict[str, Any]:
    """Patient-level cross-validation: no patient has sections on both sides of a fold.

    Parameters
    ----------
    sections
        Sections available (e.g. those with images).
    patient_of
        ``{section: patient}`` or a function ``section -> patient``.
    k
        Number of folds. ``None`` (default) = leave-one-patient-out over the patients present
        (TRIPLEX: 8 folds for HER2+, 4 for cSCC). With ``k`` smaller than the number of
        patients, patients are grouped into k folds, balancing section counts
        (largest patient first into the lightest fold, ties by name: deterministic).

    Notes
    -----
    This is the default protocol whenever at least two patients have images
    (:func:`default_split`).
    """
    secs = _unique_sections(sections)
    pmap = _patient_map(secs, patient_of)
    assert pmap is not None
    patients = sorted(set(pmap.values()))
    if len(patients) < 2:
        raise InputError(
            None,
            f"only {len(patients)} patient among the sections",
            "patient-level CV needs >= 2 patients; use leave_one_section_out",
        )
    if k is None:
        groups = [[p] for p in patients]
        name = "leave_one_patient_out"
    else:
        if not 2 <= k <= len(patients):
            raise InputError(
                None,
                f"k={k} folds for {len(patients)} patients",
                f"give 2 <= k <= {len(patients)}, or k=None for leave-one-patient-out",
            )
        size = {p: sum(1 for s in secs if pmap[s] == p) for p in patients}
        groups = [[] for _ in range(k)]
        load = [0] * k
        for p in sorted(patients, key=lambda q: (-size[q], q)):
            j = min(range(k), key=lambda i: (load[i], i))
            groups[j].append(p)
            load[j] += size[p]
        name = f"patient_{k}fold"
    folds = []
    for i, grp in enumerate(groups):
        test = [s for s in secs if pmap[s] in grp]
        folds.append(
            {
                "fold": i,
                "test_patients": sorted(grp),
                "train": [s for s in secs if s not in test],
                "test": test,
            }
        )
    return _finish(
        {
            "kind": "sections",
            "name": name,
            "level": "patient",
            "sections": sorted(secs),
            "patient_of": dict(sorted(pmap.items())),
            "folds": folds,
        }
    )


def leave_one_section_out(
    sections: Sequence[str], patient_of: PatientOf | None = None
) -> dict[str, Any]:
    """One fold per section, trained on all others.

    Other sections of the test section's patient stay in training, so this measures
    within-patient generalisation; prefer :func:`patient_kfold` when >= 2 patients exist.
    """
    secs = sorted(_unique_sections(sections))  # fold order must not depend on input order
    if len(secs) < 2:
        raise InputError(None, "only one section", "leave-one-section-out needs >= 2 sections")
    pmap = _patient_map(secs, patient_of)
    folds = [
        {"fold": i, "train": [t for t in secs if t != s], "test": [s]} for i, s in enumerate(secs)
    ]
    split: dict[str, Any] = {
        "kind": "sections",
        "name": "leave_one_section_out",
        "level": "section",
        "sections": sorted(secs),
        "folds": folds,
    }
    if pmap is not None:
        split["patient_of"] = dict(sorted(pmap.items()))
    return _finish(split)


def legacy_loocv_32(available: Iterable[str] | None = None) -> dict[str, Any]:
    """The HER2+ leave-one-section-out protocol of Hist2ST / HisToGene (32 sections, 32 folds).

    Parameters
    ----------
    available
        Sections actually present. When given, missing sections (e.g. B4 in a partial
        download) are removed from every fold, their folds dropped, and listed under
        ``"missing"``; the split is then no longer the exact legacy protocol and its name
        says so.

    Notes
    -----
    Section-level: a patient's other sections are in training. Reported for comparison with
    published numbers only.
    """
    secs = list(LEGACY_HER2ST_32)
    name = "legacy_loocv_32"
    missing: list[str] = []
    if available is not None:
        have = {str(s) for s in available}
        missing = [s for s in secs if s not in have]
        secs = [s for s in secs if s in have]
        if missing:
            name = f"legacy_loocv_32_minus_{len(missing)}"
        if len(secs) < 2:
            raise InputError(
                None,
                "fewer than 2 of the 32 legacy HER2+ sections are available",
                "read the full HER2+ dataset",
            )
    folds = [
        {"fold": i, "train": [t for t in secs if t != s], "test": [s]} for i, s in enumerate(secs)
    ]
    split: dict[str, Any] = {
        "kind": "sections",
        "name": name,
        "level": "section",
        "sections": sorted(secs),
        "patient_of": {s: s[0] for s in sorted(secs)},
        "folds": folds,
    }
    if missing:
        split["missing"] = missing
    return _finish(split)


def default_split(sections: Sequence[str], patient_of: PatientOf | None) -> dict[str, Any]:
    """Leave-one-patient-out when >= 2 patients are present, else leave-one-section-out."""
    secs = _unique_sections(sections)
    pmap = _patient_map(secs, patient_of)
    if pmap is not None and len(set(pmap.values())) >= 2:
        return patient_kfold(secs, pmap)
    return leave_one_section_out(secs, pmap)


# ----------------------------------------------------------------------------- validation


def validation_split(
    train_sections: Sequence[str],
    patient_of: PatientOf | None = None,
    strategy: Literal["section", "spots"] = "section",
    frac: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Hold out part of the TRAINING data for early stopping / model selection.

    Parameters
    ----------
    train_sections
        A fold's training sections; test sections must never be passed here.
    patient_of
        Section to patient; with >= 2 training patients, whole patients are held out, as
        the test protocol does.
    strategy
        ``"section"``: hold out whole sections (whole patients when possible), about
        ``frac`` of them and at least one, keeping at least one for fitting. With few
        sections (e.g. 4 training sections of 1 patient) this means holding out one whole
        section, which is the honest choice: spots of one section are spatially
        autocorrelated, so a random spot hold-out scores near-duplicates of training spots
        and overestimates. ``"spots"``: every section contributes a random ``frac`` of its
        spots (see :func:`validation_spot_mask`); optimistic, for when only one training
        section exists.
    frac, seed
        Held-out fraction and seed (same inputs, same split).

    Returns
    -------
    dict
        ``{"strategy", "train", "val", "frac", "seed", "level"}``; for ``"spots"`` both
        ``train`` and ``val`` list every section.
    """
    secs = sorted(_unique_sections(train_sections))
    if not 0.0 < frac < 1.0:
        raise InputError(None, f"frac={frac}", "give a held-out fraction between 0 and 1, e.g. 0.2")
    if strategy == "spots":
        return {
            "strategy": "spots",
            "level": "spot",
            "train": secs,
            "val": secs,
            "frac": frac,
            "seed": seed,
        }
    if strategy != "section":
        raise InputError(None, f"strategy={strategy!r}", "use 'section' or 'spots'")
    if len(secs) < 2:
        raise InputError(
            None,
            "only one training section: a whole-section hold-out leaves nothing to fit",
            "use strategy='spots'",
        )
    rng = np.random.default_rng(seed)
    pmap = _patient_map(secs, patient_of)
    patients = sorted(set(pmap.values())) if pmap else []
    if len(patients) >= 2:
        order = [patients[i] for i in rng.permutation(len(patients))]
        target = max(1, round(frac * len(secs)))
        val: list[str] = []
        for p in order[:-1]:  # never hold out every patient
            val += [s for s in secs if pmap[s] == p]  # type: ignore[index]
            if len(val) >= target:
                break
        level = "patient"
    else:
        n_val = min(len(secs) - 1, max(1, round(frac * len(secs))))
        val = [secs[i] for i in rng.permutation(len(secs))[:n_val]]
        level = "section"
    val = sorted(val)
    return {
        "strategy": "section",
        "level": level,
        "train": [s for s in secs if s not in val],
        "val": val,
        "frac": frac,
        "seed": seed,
    }


def validation_spot_mask(
    section: str, n_spots: int, frac: float = 0.2, seed: int = 0
) -> np.ndarray:
    """Boolean mask of the validation spots of one section (strategy ``"spots"``).

    Deterministic in (section, n_spots, frac, seed); at least one spot is held out and at
    least one kept when ``n_spots >= 2``.
    """
    if n_spots < 2:
        raise InputError(
            None, f"section {section!r} has {n_spots} spots", "a spot hold-out needs >= 2 spots"
        )
    rng = np.random.default_rng([seed, int(hash_parts(["val", section])[:8], 16)])
    n_val = min(n_spots - 1, max(1, round(frac * n_spots)))
    mask = np.zeros(n_spots, dtype=bool)
    mask[rng.permutation(n_spots)[:n_val]] = True
    return mask


# ----------------------------------------------------------------------------- files


def validate_split(
    split: Mapping[str, Any],
    path: str | os.PathLike | None = None,
    sections: Iterable[str] | None = None,
) -> None:
    """Raise :class:`InputError` when a split is malformed or leaks.

    Checks: required fields; every fold's lists are non-empty, within the split's universe
    (and within ``sections`` when given) and disjoint; for ``level == "patient"`` no patient
    is on both sides of a fold; ``id`` matches the content.
    """

    def bad(problem: str, fix: str) -> InputError:
        return InputError(path, problem, fix)

    if not isinstance(split, Mapping):
        raise bad("split is not a JSON object", "write splits with geneshot's write_split")
    kind = split.get("kind")
    a, b = {"sections": ("train", "test"), "genes": ("seen", "unseen")}.get(kind, (None, None))  # type: ignore[arg-type]
    if a is None:
        raise bad(f"field 'kind' is {kind!r}", "use 'sections' or 'genes'")
    universe_key = "sections" if kind == "sections" else "genes"
    for key in ("name", universe_key, "folds"):
        if key not in split:
            raise bad(f"field {key!r} is missing", "regenerate the split file")
    universe = set(split[universe_key])
    folds = split["folds"]
    if not isinstance(folds, list) or not folds:
        raise bad("field 'folds' is empty or not a list", "regenerate the split file")
    known = None if sections is None or kind != "sections" else {str(s) for s in sections}
    pmap = split.get("patient_of") or {}
    if split.get("level") == "patient":
        missing = sorted(universe - set(pmap))
        if missing:
            raise bad(
                f"field 'patient_of' lacks {', '.join(missing[:5])}",
                "give a patient for every section of a patient-level split",
            )
    for f in folds:
        i = f.get("fold", "?")
        for key in (a, b):
            if not isinstance(f.get(key), list) or not f[key]:
                raise bad(
                    f"fold {i}: field {key!r} is missing or empty",
                    "every fold needs non-empty lists",
                )
        left, right = set(f[a]), set(f[b])
        outside = sorted((left | right) - universe)
        if outside:
            raise bad(
                f"fold {i}: unknown {universe_key} {', '.join(outside[:5])}",
                f"list them in the split's {universe_key!r} field or remove them",
            )
        if known is not None:
            unknown = sorted((left | right) - known)
            if unknown:
                raise bad(
                    f"fold {i}: sections not in the data: {', '.join(unknown[:5])}",
                    "regenerate the split for the sections you have",
                )
        both = sorted(left & right)
        if both:
            raise bad(
                f"fold {i}: {a}/{b} overlap on {', '.join(both[:5])}",
                f"a {universe_key[:-1]} must not be in both {a} and {b}",
            )
        if split.get("level") == "patient":
            leak = sorted({pmap[s] for s in left} & {pmap[s] for s in right})
            if leak:
                raise bad(
                    f"fold {i}: patient leak, patient(s) {', '.join(leak)} in both train and test",
                    "put all sections of a patient on one side (use patient_kfold)",
                )
    if "id" in split and split["id"] != split_id(split):
        raise bad(
            "field 'id' does not match the split's content (edited by hand?)",
            "regenerate the split, or delete the 'id' field to accept the edit",
        )


def write_split(split: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Validate and write a split as JSON, atomically; returns the path."""
    path = Path(path)
    validate_split(split, path)
    data = dict(split)
    data["id"] = split_id(split)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
    return path


def read_split(path: str | os.PathLike, sections: Iterable[str] | None = None) -> dict[str, Any]:
    """Read and validate a split file.

    Parameters
    ----------
    path
        JSON written by :func:`write_split`.
    sections
        Sections present in the data; a split naming others is an error.

    Raises
    ------
    InputError
        Unreadable JSON, unknown sections, train/test overlap, a patient leak in a
        patient-level split, or an ``id`` that does not match the content.
    """
    path = Path(path)
    try:
        split = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "split file not found", "give the path of a split JSON") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e})", "regenerate the split file") from None
    validate_split(split, path, sections)
    if "id" not in split:
        split = {"id": split_id(split), **split}
    return split
