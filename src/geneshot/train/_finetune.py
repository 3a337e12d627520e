"""Fine-tuning the image encoder's last block on the seen genes (``FeatureConfig.finetune``).

Legitimate in zero-shot: the seen genes are training data. ``prepare`` keeps, per spot,
the own window's activations before the encoder's last block (``PreparedSection.trunk``).
:class:`ImageTop` trains a copy of that block and the head, with a linear read-out to
every seen gene (z-scored over the training spots), on those cached activations; its
pooled features then replace the own-window block of a section's features. The larger
windows and the context rings stay the frozen encoder's. Augmentation: the 8 flips and
90° rotations of the activation maps (tissue has no orientation). BatchNorm keeps its
pretrained statistics: a few hundred spots would estimate them worse. A fit is cached by
its inputs, so the models of one fold that share training genes train it once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from geneshot._memo import memoized
from geneshot.cache import Cache, hash_parts
from geneshot.errors import InputError
from geneshot.prepare import PreparedSection

# chosen by nested CV on HER2+ (scripts/choose_features.py --what augment; BENCHMARKS.md)
FINETUNE = {"epochs": 8, "lr": 1e-4, "batch": 32, "dropout": 0.2, "weight_decay": 1e-2}
FINETUNE_VERSION = "finetune-v1"  # bump when the training below changes
_PREFIX = "image_top/"  # array names in a run's saved arrays
_LOSS = "epoch_loss"  # the fit's mean training loss per epoch, kept beside the weights


def _variant(encoder: str) -> str:
    from geneshot.encoders._image_effnet import variant_for

    return variant_for(encoder)


def _module(encoder: str, state: dict[str, np.ndarray] | None = None) -> torch.nn.Module:
    from geneshot.encoders._image_effnet import top_module

    top = top_module(_variant(encoder))
    if state is not None:
        top.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return top.eval()


def _train(
    encoder: str, trunk: np.ndarray, y: np.ndarray, seed: int, progress: bool, device: torch.device
) -> dict[str, np.ndarray]:
    from geneshot._progress import progress_bar
    from geneshot.train._trainer import deterministic

    cfg = FINETUNE
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sd = y.std(0)
    z = torch.from_numpy(((y - y.mean(0)) / np.where(sd < 1e-6, 1.0, sd)).astype(np.float32))
    z, acts = z.to(device), torch.from_numpy(trunk).to(device)
    top = _module(encoder).to(device)
    readout = torch.nn.Linear(1280, z.shape[1]).to(device)
    params = [*top.parameters(), *readout.parameters()]
    opt = torch.optim.AdamW(params, cfg["lr"], weight_decay=cfg["weight_decay"])
    losses = []
    with deterministic():
        for _ in progress_bar(
            range(cfg["epochs"]), progress=progress, desc="fine-tune image top", leave=False
        ):
            top.train()
            for m in top.modules():  # pretrained statistics: see the module docstring
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
            total = 0.0
            for batch in torch.randperm(len(acts), generator=gen).split(cfg["batch"]):
                batch = batch.to(device)
                a = acts[batch].float()
                k, flip = torch.randint(0, 4, (2,), generator=gen).tolist()
                a = torch.rot90(a, k, (2, 3))
                a = a.flip(3) if flip % 2 else a
                h = torch.nn.functional.dropout(top(a), cfg["dropout"], training=True)
                loss = ((readout(h) - z[batch]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(batch)
            losses.append(total / len(acts))
    state = {k: v.detach().cpu().numpy().copy() for k, v in top.state_dict().items()}
    return {**state, _LOSS: np.asarray(losses)}


class ImageTop:
    """The image encoder's last block and head, fine-tuned to predict the seen genes.

    Parameters
    ----------
    encoder
        Registered effnet-lite image encoder name (the contract's ``image_encoder``).
    state
        The fine-tuned block's and head's state dict as numpy arrays.
    loss
        Mean training loss per epoch of the fit (MSE on z-scored targets), when known.
    """

    def __init__(
        self, encoder: str, state: dict[str, np.ndarray], loss: np.ndarray | None = None
    ) -> None:
        self.encoder = encoder
        self.state = state
        self.loss = loss
        self._top: torch.nn.Module | None = None
        self._key: str | None = None  # hash of the weights, once (features are memoised by it)

    @classmethod
    def fit(
        cls,
        encoder: str,
        trunks: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        *,
        seed: int = 0,
        cache: Cache | None = None,
        progress: bool = False,
        device: torch.device | str = "cpu",
    ) -> ImageTop:
        """Fine-tune on the training sections' activations and seen-gene targets (cached).

        ``device`` runs the fit (the run's accelerator); it is not part of the cache key.
        """
        if any(t is None for t in trunks):
            raise InputError(
                None,
                "the sections were prepared without the image encoder's trunk activations",
                "prepare them with finetune: true (the run's feature config)",
            )
        trunk = np.concatenate(trunks)
        y = np.vstack(targets).astype(np.float64)
        parts = {
            "v": FINETUNE_VERSION,
            "encoder": encoder,
            **FINETUNE,
            "seed": seed,
            "trunk": hash_parts(trunk),
            "targets": hash_parts(y),
        }
        state = dict(
            (cache or Cache()).arrays(
                "image-top",
                parts,
                lambda: _train(encoder, trunk, y, seed, progress, torch.device(device)),
            )
        )
        loss = state.pop(_LOSS, None)  # None: an entry cached before losses were kept
        return cls(encoder, state, loss)

    def features(self, trunk: np.ndarray, batch: int = 128) -> np.ndarray:
        """Pooled features ``(N, 1280)`` of the fine-tuned top on trunk activations.

        Memoised by content (:mod:`geneshot._memo`): the models of a fold that share a top
        read the same sections, and prediction adapts a section several times.
        """
        if self._key is None:
            self._key = hash_parts([self.encoder, {k: self.state[k] for k in sorted(self.state)}])
        # a fold's models read each of its sections through one or two tops; bounded in bytes
        # for a process that predicts many large slides
        return memoized(
            "image-top-features",
            (self._key, trunk),
            lambda: self._run(trunk, batch),
            maxsize=16,
            max_bytes=1 << 29,
        )

    def _run(self, trunk: np.ndarray, batch: int) -> np.ndarray:
        self._top = self._top or _module(self.encoder, self.state)
        with torch.inference_mode():
            out = [
                self._top(torch.from_numpy(trunk[i : i + batch]).float())
                for i in range(0, len(trunk), batch)
            ]
        return torch.cat(out).numpy().astype(np.float32)

    def apply(self, section: PreparedSection) -> PreparedSection:
        """``section`` with its own-window feature block from the fine-tuned top."""
        if section.trunk is None:
            raise InputError(
                None,
                f"section {section.name} was prepared without trunk activations, which this model's fine-tuned encoder reads",
                "prepare it with the run's feature config (finetune: true)",
            )
        own = self.features(section.trunk)
        image = np.array(section.image, np.float32, copy=True)
        image[:, : own.shape[1]] = own
        return dataclasses.replace(section, image=image)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for a run's npz file (names prefixed, so they sit beside others)."""
        extra = {} if self.loss is None else {_LOSS: self.loss}
        return {_PREFIX + k: v for k, v in {**self.state, **extra}.items()}

    @classmethod
    def from_arrays(cls, arrays, encoder: str) -> ImageTop | None:
        """The fine-tuned top saved by :meth:`to_arrays`, or None when there is none."""
        state = {k[len(_PREFIX) :]: np.asarray(arrays[k]) for k in arrays if k.startswith(_PREFIX)}
        loss = state.pop(_LOSS, None)
        return cls(encoder, state, loss) if state else None
