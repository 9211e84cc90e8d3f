"""Starting ranks: under torchrun/TorchDistributor (env already set), or by spawning ``world_size`` processes.

Spawned ranks rendezvous on MASTER_ADDR=127.0.0.1 and a free port. The backend is gloo on CPU and
nccl on CUDA (``backend: auto``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.distributed as dist

from core.net import free_port


def under_launcher() -> bool:
    """True when a launcher (torchrun, TorchDistributor) already set RANK/WORLD_SIZE/MASTER_* for this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def resolve_backend(backend: str, device: str) -> str:
    if backend != "auto":
        return backend
    return "nccl" if device == "cuda" else "gloo"


@contextmanager
def process_group(backend: str, device: str):
    """Join the process group described by the environment; yields (rank, world_size, torch.device)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but torch sees no CUDA device")
        local = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    try:
        yield rank, world, dev
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, world: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    fn(*args)


def spawn(fn: Callable, args: tuple, world_size: int) -> None:
    """Run ``fn(*args)`` in ``world_size`` fresh processes with the torchrun environment set; waits for all."""
    import torch.multiprocessing as mp

    port = free_port()
    mp.start_processes(_spawned, args=(world_size, port, fn, args), nprocs=world_size, join=True, start_method="spawn")
