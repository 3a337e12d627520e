"""Deep ensembles (several seeds) and MC dropout: a mean prediction and a per-spot spread.

A run folder trained with ``geneshot train --ensemble N`` looks like::

    RUN_DIR/
        run.json          member 0's run file plus an "ensemble" block (members, seeds)
        weights.pt        member 0's weights, so GeneshotModel.load(RUN_DIR) still works
        members/<k>/      one GeneshotModel run folder per member

:meth:`Ensemble.load` reads such a folder or a plain single run (one member). With one
member the spread comes from MC dropout (dropout left on at prediction) where the model
has dropout, and is undefined (NaN) otherwise; :attr:`Ensemble.uncertainty` says which.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from geneshot import __version__
from geneshot.cache import atomic_path
from geneshot.data import TargetTransform
from geneshot.errors import InputError
from geneshot.prepare import PreparedGenes, PreparedSection
from geneshot.train._contract import DataContract
from geneshot.train._model import BASE_FILE, SHIFT_FILE, GeneshotModel
from geneshot.train._runfile import RETRAIN, read_run_file

MEMBERS_DIR = "members"
# contract fields every member must share (weights and feature statistics may differ)
_SHARED = ("features", "image_dim", "nuclei_shape", "text_dim", "seen_genes", "unseen_genes")


def _dropout_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [
        m
        for m in module.modules()
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0
    ]


class Ensemble:
    """Several :class:`GeneshotModel` members predicting together.

    Parameters
    ----------
    members
        Trained models sharing one data contract (same features and gene split).
    mc_samples
        Stochastic forward passes for MC dropout when there is a single member (0 turns
        MC dropout off).
    seeds
        Training seed of each member (provenance only).
    """

    def __init__(
        self,
        members: Sequence[GeneshotModel],
        *,
        mc_samples: int = 16,
        seeds: Sequence[int] | None = None,
    ) -> None:
        if not members:
            raise InputError(
                None, "an ensemble needs at least one member", "pass trained GeneshotModel objects"
            )
        for m in members:
            if m.contract is None:
                raise InputError(
                    None, "an ensemble member is not trained", "train or load every member first"
                )
        c0 = members[0].contract.to_dict()
        for k, m in enumerate(members[1:], 1):
            ck = m.contract.to_dict()
            bad = [f for f in _SHARED if ck[f] != c0[f]]
            if bad or m.name != members[0].name or m.setting != members[0].setting:
                raise InputError(
                    None,
                    f"ensemble member {k} differs from member 0 in {', '.join(bad) or 'model or setting'}",
                    "train all members on the same data, genes and features (only the seed may differ)",
                )
        self.members = list(members)
        self.mc_samples = int(mc_samples)
        self.seeds = list(seeds) if seeds is not None else [m.train_config.seed for m in members]

    # ------------------------------------------------------------------ what it is
    @property
    def n_members(self) -> int:
        """Number of members."""
        return len(self.members)

    @property
    def contract(self) -> DataContract:
        """The shared data contract (member 0's)."""
        return self.members[0].contract

    @property
    def name(self) -> str:
        """Registered model name."""
        return self.members[0].name

    @property
    def setting(self) -> str:
        """``"zero-shot"`` or ``"supervised"``."""
        return self.members[0].setting

    @property
    def target(self) -> TargetTransform:
        """The target transform fitted on the training sections."""
        return self.members[0].target

    def target_for(self, kind: str | None) -> TargetTransform:
        """See :meth:`GeneshotModel.target_for`."""
        return self.members[0].target_for(kind)

    @property
    def uncertainty(self) -> str:
        """How the spread is computed: ``"deep-ensemble"``, ``"mc-dropout"`` or ``"none"``.

        ``"none"`` also for a model whose spread over seeds and dropout is no uncertainty
        (``module.spread_is_uncertainty``, e.g. ALIGN-ST's kernel head): its layer is NaN
        rather than a near-zero spread that would read as near certainty.
        """
        m = self.members[0]
        if self._closed_form:
            return "none"
        if self.n_members > 1:
            return "deep-ensemble"
        if self.mc_samples > 1 and m.spec.kind == "torch" and _dropout_layers(m.module):
            return "mc-dropout"
        return "none"

    def describe(self) -> dict:
        """Provenance for ``uns``: method, members, seeds, MC passes."""
        return {
            "method": self.uncertainty,
            "n_members": self.n_members,
            "seeds": self.seeds,
            "mc_samples": self.mc_samples if self.uncertainty == "mc-dropout" else 0,
            "statistic": "standard deviation across members / passes, in target units"
            if self.uncertainty != "none"
            else self._why_none(),
        }

    @property
    def _closed_form(self) -> bool:
        """The members' module says its spread over seeds and dropout is no uncertainty."""
        return not getattr(self.members[0].module, "spread_is_uncertainty", True)

    def _why_none(self) -> str:
        if self._closed_form:
            return (
                "not available: this model predicts in closed form from the seen genes' fits, "
                "and seeds and dropout barely move it, so their spread is no uncertainty; "
                "layer is NaN"
            )
        return "not available (single member without dropout); layer is NaN"

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        section: PreparedSection,
        genes: PreparedGenes,
        names: Sequence[str],
        *,
        context: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Mean prediction (n_spots, len(names)); same signature as :meth:`GeneshotModel.predict`.

        A single member returns its own deterministic prediction (dropout off), so a
        one-member ensemble predicts exactly like the model it wraps.
        """
        return self.predict_with_uncertainty(section, genes, names, context=context, spread=False)[
            0
        ]

    def common_pattern(self, section: PreparedSection) -> np.ndarray | None:
        """The members' mean common per-spot pattern on ``section``, or None (supervised runs)."""
        maps = [m.common_pattern(section) for m in self.members]
        return None if any(c is None for c in maps) else np.mean(maps, axis=0)

    @property
    def last_common(self) -> np.ndarray | None:
        """The members' mean common pattern on the last predicted section, or None."""
        maps = [m.last_common for m in self.members]
        return None if any(c is None for c in maps) else np.mean(maps, axis=0)

    @property
    def last_shift(self) -> dict:
        """Shift ratio and shrinkage of the last predicted section (member 0's; all agree)."""
        return self.members[0].last_shift

    def predict_with_uncertainty(
        self,
        section: PreparedSection,
        genes: PreparedGenes,
        names: Sequence[str],
        *,
        context: Sequence[str] | None = None,
        spread: bool = True,
        seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (both (n_spots, len(names)), target units).

        Deep ensemble: mean and spread across members. One member: its deterministic
        prediction, and the spread of ``mc_samples`` passes with dropout on (seeded by
        ``seed``), or NaN when the model has no dropout. The spread is that of the members'
        own maps, before any shrinkage toward the common pattern: shrunk all the way, every
        member predicts the same common pattern, and a spread of zero would claim certainty
        where the gene-specific part is least known.
        """
        # each member's own maps once; the spread is theirs, the mean is shrunk as predict shrinks
        own = [m.predict(section, genes, names, context=context, shrink=0.0) for m in self.members]
        spread_ = np.full_like(own[0], np.nan)
        if spread and self.uncertainty == "deep-ensemble":
            spread_ = np.std(own, axis=0).astype(np.float32)
        elif spread and self.uncertainty == "mc-dropout":
            spread_ = np.std(self._mc_samples(section, genes, names, context, seed), axis=0).astype(np.float32)
        # last, so that every member's last_shift describes the returned prediction
        preds = [m.shrink_prediction(section, o) for m, o in zip(self.members, own, strict=True)]
        mean = np.mean(preds, axis=0).astype(np.float32) if len(preds) > 1 else preds[0]
        return mean, spread_

    def _mc_samples(self, section, genes, names, context, seed: int) -> np.ndarray:
        m = self.members[0]
        layers = _dropout_layers(m.module)

        def dropout_on(_module, _args):
            # GeneshotModel.predict puts the module in eval mode; switch only dropout back on
            # (batch norm keeps its running statistics)
            for layer in layers:
                layer.train()

        hook = m.module.register_forward_pre_hook(dropout_on)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return np.stack(
                    [
                        m.predict(section, genes, names, context=context, shrink=0.0)
                        for _ in range(self.mc_samples)
                    ]
                )
        finally:
            hook.remove()
            m.module.eval()

    # ------------------------------------------------------------------ training and persistence
    @classmethod
    def train(
        cls,
        n_members: int,
        fit: Callable[[int], GeneshotModel],
        *,
        base_seed: int = 0,
        mc_samples: int = 16,
    ) -> Ensemble:
        """Train ``n_members`` models with seeds ``base_seed + k``; ``fit(seed)`` returns a trained model."""
        if n_members < 1:
            raise InputError(
                None, f"ensemble size {n_members} is not positive", "use --ensemble 1 or more"
            )
        seeds = [base_seed + k for k in range(n_members)]
        return cls([fit(s) for s in seeds], mc_samples=mc_samples, seeds=seeds)

    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write the members under ``run_dir/members/<k>/`` and a top-level run file.

        The top-level ``run.json`` + ``weights.pt`` are member 0's, so commands that load a
        single :class:`GeneshotModel` keep working; ``run.json`` is written last.
        """
        run_dir = Path(run_dir)
        if self.n_members == 1:
            return self.members[0].save(run_dir)
        for k, m in enumerate(self.members):
            m.save(run_dir / MEMBERS_DIR / str(k))
        first = run_dir / MEMBERS_DIR / "0"
        with atomic_path(run_dir / "weights.pt") as tmp:
            shutil.copyfile(first / "weights.pt", tmp)
        for extra in (SHIFT_FILE, BASE_FILE):
            if (first / extra).is_file():
                with atomic_path(run_dir / extra) as tmp:
                    shutil.copyfile(first / extra, tmp)
        meta = json.loads((first / "run.json").read_text())
        meta["ensemble"] = {
            "geneshot_version": __version__,
            "n_members": self.n_members,
            "members": [f"{MEMBERS_DIR}/{k}" for k in range(self.n_members)],
            "seeds": self.seeds,
        }
        with atomic_path(run_dir / "run.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        return run_dir

    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, mc_samples: int = 16) -> Ensemble:
        """Load an ensemble run folder, or a single run as a one-member ensemble."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise InputError(
                run_dir, "run folder does not exist", "pass the --out folder of `geneshot train`"
            )
        meta_path = run_dir / "run.json"
        block = None
        if meta_path.is_file():
            block = read_run_file(meta_path).get("ensemble")
            if block is not None and not (
                isinstance(block, dict) and isinstance(block.get("members"), list)
            ):
                raise InputError(meta_path, "run file's ensemble block has no member list", RETRAIN)
        if not block:
            return cls([GeneshotModel.load(run_dir)], mc_samples=mc_samples)
        members = []
        for rel in block.get("members", []):
            if not (run_dir / rel).is_dir():
                raise InputError(
                    run_dir / rel,
                    "ensemble member folder is missing",
                    "retrain with --ensemble, or copy the whole run folder",
                )
            members.append(GeneshotModel.load(run_dir / rel))
        return cls(members, mc_samples=mc_samples, seeds=block.get("seeds"))
