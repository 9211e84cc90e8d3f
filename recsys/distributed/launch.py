"""Starting ranks: under torchrun/TorchDistributor (env already set), or by spawning ``world_size`` processes.

Spawned ranks rendezvous on MASTER_ADDR=127.0.0.1 and a free port. The backend is gloo on CPU and
nccl on CUDA (``backend: auto``). :func:`admit` refuses, before spawning, a run this host cannot hold.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from core.errors import ConfigError
from core.host import available_memory, usable_cpus
from core.net import free_port

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostCapacity:
    """What one host offers spawned ranks: usable CPU cores, CUDA devices, available memory (None: unknown)."""

    cpus: int
    gpus: int
    mem_available: int | None

    @classmethod
    def probe(cls) -> "HostCapacity":
        """This process's host: its CPU affinity (else ``os.cpu_count()``), torch's CUDA count, MemAvailable."""
        return cls(cpus=usable_cpus(), gpus=torch.cuda.device_count(), mem_available=available_memory())


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def admit(world_size: int, device: str, embedding_bytes: int, force: bool, host: HostCapacity | None = None) -> None:
    """Refuse (ConfigError, exit 2) spawning ranks this host cannot hold; with ``force``, warn and go on.

    Refused: ``world_size`` above the usable CPU cores (device cpu) or CUDA devices (device cuda), and
    on cpu embedding tables (weights + optimizer state, ``embedding_bytes``) above MemAvailable. The
    memory estimate is a lower bound: activations, data and each rank's copy of data-parallel tables
    come on top. Not called under torchrun or TorchDistributor, whose launcher placed the ranks.
    """
    host = host or HostCapacity.probe()
    problems = []
    if device == "cuda" and world_size > host.gpus:
        problems.append(f"train.world_size={world_size} exceeds the {host.gpus} CUDA device(s) torch sees")
    if device == "cpu" and world_size > host.cpus:
        problems.append(f"train.world_size={world_size} exceeds the {host.cpus} CPU core(s) this process may use")
    if device == "cpu" and host.mem_available is not None and embedding_bytes > host.mem_available:
        problems.append(
            f"the embedding tables need about {_gib(embedding_bytes)} (weights + optimizer state; "
            f"train.layout, train.embedding_dim, train.embedding_optimizer) but this host has "
            f"{_gib(host.mem_available)} available (MemAvailable)"
        )
    if not problems:
        return
    if force:
        for p in problems:
            log.warning("%s; running anyway (train.force)", p)
        return
    raise ConfigError("; ".join(problems) + "; pass --force (train.force) to run anyway")


def under_launcher() -> bool:
    """True when a launcher (torchrun, TorchDistributor) already set RANK/WORLD_SIZE/MASTER_* for this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def resolve_backend(backend: str, device: str) -> str:
    if backend != "auto":
        return backend
    return "nccl" if device == "cuda" else "gloo"


RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@contextmanager
def single_rank_env():
    """This process as rank 0 of 1 (a free local port) inside the block; the caller's environment restored after."""
    saved = {k: os.environ.get(k) for k in RANK_ENV}
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
