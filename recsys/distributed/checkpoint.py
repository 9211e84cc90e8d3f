"""Sharded checkpoints with ``torch.distributed.checkpoint``: every rank writes and reads only its own shards.

A checkpoint is a folder ``<dir>/step_<global_step>`` (model state, fused + dense optimizer state,
training progress); ``<dir>/latest`` names the last complete one and is replaced atomically by
rank 0 after every rank has finished writing, so a crash mid-save leaves the previous one in use.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

PROGRESS_KEYS = ("epoch", "step_in_epoch", "global_step")


def save_checkpoint(directory: str, model: torch.nn.Module, optimizer, progress: dict[str, int], keep: int = 2) -> str:
    """Save a sharded checkpoint of ``model`` + ``optimizer`` + ``progress``; returns its folder (collective).

    Rank 0 then deletes all but the ``keep`` newest ``step_*`` folders.
    """
    path = Path(directory) / f"step_{progress['global_step']}"
    state = {
        "model": model.state_dict(),
        "optim": optimizer.state_dict(),
        "progress": torch.tensor([progress[k] for k in PROGRESS_KEYS], dtype=torch.int64),
    }
    dcp.save(state, checkpoint_id=str(path))
    dist.barrier()
    if dist.get_rank() == 0:
        tmp = Path(directory) / "latest.tmp"
        tmp.write_text(path.name)
        os.replace(tmp, Path(directory) / "latest")
        steps = sorted(Path(directory).glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
        for old in steps[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return str(path)


def latest_checkpoint(directory: str) -> str | None:
    pointer = Path(directory) / "latest"
    return str(Path(directory) / pointer.read_text().strip()) if pointer.is_file() else None


def load_checkpoint(path: str, model: torch.nn.Module, optimizer) -> dict[str, int]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model``/``optimizer`` in place (collective)."""
    state = {
        "model": model.state_dict(),
        "optim": optimizer.state_dict(),
        "progress": torch.zeros(len(PROGRESS_KEYS), dtype=torch.int64),
    }
    dcp.load(state, checkpoint_id=path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optim"])
    return dict(zip(PROGRESS_KEYS, (int(v) for v in state["progress"])))
