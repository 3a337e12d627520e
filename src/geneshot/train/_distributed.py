"""Data-parallel training with torch.distributed, launched by torchrun.

``torchrun --nproc_per_node N -m geneshot.cli train ...`` starts N processes; each one
calls :func:`init_distributed`, prepares its shard of the sections into the shared cache,
then trains on its share of the slides of every optimiser step (gradients are summed over
processes, see ``GeneshotModel._fit_torch``). gloo on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def init_distributed(accelerator: str = "cpu") -> tuple[int, int]:
    """Join the process group described by torchrun's environment; return (rank, world size).

    Without ``WORLD_SIZE`` > 1 nothing happens and (0, 1) is returned.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        use_cuda = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank_world() -> tuple[int, int]:
    """(rank, world size), (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every process (no-op outside a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def sharded(items: Sequence[T], work: Callable[[list[T]], object]) -> None:
    """Run ``work`` on this rank's shard of ``items`` (round robin), then wait for all ranks.

    Used to fill the shared feature cache in parallel before every rank reads all of it.
    """
    rank, world = rank_world()
    if world > 1:
        work(list(items[rank::world]))
        barrier()


def broadcast_params(mod: torch.nn.Module) -> None:
    """Start every process from rank 0's weights."""
    import torch.distributed as dist

    for t in list(mod.parameters()) + list(mod.buffers()):
        dist.broadcast(t.data, src=0)


def average_buffers(mod: torch.nn.Module) -> None:
    import torch.distributed as dist

    world = dist.get_world_size()
    for b in mod.buffers():
        if b.dtype.is_floating_point:
            dist.all_reduce(b.data, op=dist.ReduceOp.SUM)
            b.data /= world
        else:
            dist.broadcast(b.data, src=0)


def all_reduce_grads(mod: torch.nn.Module) -> None:
    """Sum gradients over processes (each rank's loss is already divided by the group size)."""
    import torch.distributed as dist

    for p in mod.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
