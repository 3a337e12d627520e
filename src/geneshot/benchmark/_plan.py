"""Fold planning: the section protocol of a config, gene folds and which folds run what."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geneshot.data import (
    default_split,
    leave_one_section_out,
    legacy_loocv_32,
    load_gene_list,
    patient_kfold,
)
from geneshot.errors import InputError


def safe_name(name: str) -> str:
    """A method name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def section_split(cfg: dict, sections: Sequence[str], patient_of: dict[str, str]) -> dict:
    """The section protocol of a config (``auto``: patient k-fold with >= 2 patients, else LOSO)."""
    proto = cfg["protocol"]
    if proto == "auto":
        return default_split(sections, patient_of)
    if proto == "patient_kfold":
        if len(set(patient_of[s] for s in sections)) < 2:
            raise InputError(
                None,
                "protocol patient_kfold needs sections of >= 2 patients",
                "use protocol: loso (or auto)",
            )
        return patient_kfold(sections, patient_of, cfg["protocol_k"])
    if proto == "loso":
        return leave_one_section_out(sections, patient_of)
    return legacy_loocv_32(sections)


def gene_folds(cfg: dict) -> list[dict]:
    """Gene-fold plans; the genes themselves are chosen per section fold on training data."""
    g = cfg["gene_split"]
    if g["kind"] == "random":
        return [
            {"gene_fold": i, "k": int(g["k"]), "seed": int(g.get("seed", 0))}
            for i in range(int(g["k"]))
        ]
    return [{"gene_fold": None}]


def load_list(value: Any) -> list[str]:
    """A gene list given inline or as a file."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return list(load_gene_list(Path(value)))


@dataclass
class FoldPlan:
    """The folds to run (``(fold id, section fold, gene fold)``) and their extras."""

    folds: list[tuple[str, dict, dict]]
    ablation_ids: set[str]
    map_ids: set[str]


def _select(sel: Any, ids: list[str]) -> set[str]:
    if sel in (["first"], "first"):
        return {ids[0]}
    if sel in (["all"], "all"):
        return set(ids)
    return {str(x) for x in sel}


def plan_folds(cfg: dict, split: dict, folds: str | int | None = None) -> FoldPlan:
    """Cross section folds with gene folds and pick those with ablations and maps.

    Parameters
    ----------
    cfg
        Resolved config.
    split
        Section split (``folds``: ``[{"fold", "train", "test"}, ...]``).
    folds
        ``None``/``"all"``, ``"first"`` or a number of leading section folds to run.
    """
    sec_folds = split["folds"]
    if folds == "first":
        sec_folds = sec_folds[:1]
    elif folds not in (None, "all"):
        sec_folds = sec_folds[: int(folds)]
    plan = []
    for f in sec_folds:
        for g in gene_folds(cfg):
            fid = f"f{f['fold']}" + ("" if g["gene_fold"] is None else f"-g{g['gene_fold']}")
            plan.append((fid, f, g))
    ids = [p[0] for p in plan]
    return FoldPlan(plan, _select(cfg["ablation_folds"], ids), _select(cfg["map_folds"], ids))
