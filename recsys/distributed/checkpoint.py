"""Sharded checkpoints with ``torch.distributed.checkpoint``: every rank writes and reads only its own shards.

A checkpoint is a folder ``<dir>/step_<global_step>`` (model state, fused + dense optimizer state,
training progress) plus rank 0's ``run.json`` (:class:`CheckpointRun`: the run's fingerprint and
its loss history so far); ``<dir>/latest`` names the last complete one and is replaced atomically by
rank 0 after every rank has finished writing, so a crash mid-save leaves the previous one in use.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from pydantic import BaseModel, ConfigDict, Field

from core.errors import ConfigError
from recsys.files import atomic_file

PROGRESS_KEYS = ("epoch", "step_in_epoch", "global_step")
RUN_FILE = "run.json"


class CheckpointRun(BaseModel):
    """What a checkpoint records about its run: the fingerprint resuming must match, and rank 0's losses so far."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: dict[str, Any] = Field(description="field -> value (JSON data) of everything that shapes the model")
    fingerprint_sha256: str = Field(description="hash of the canonical JSON of ``fingerprint``")
    loss_history: list[float] = Field(default_factory=list, description="rank 0's training loss per step so far")

    @classmethod
    def of(cls, fingerprint: dict[str, Any], loss_history: list[float]) -> "CheckpointRun":
        return cls(fingerprint=fingerprint, fingerprint_sha256=fingerprint_hash(fingerprint), loss_history=loss_history)


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """sha256 of the fingerprint's canonical JSON (sorted keys): equal hashes, equal fields."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def fingerprint_mismatch(path: str, written: dict[str, Any], now: dict[str, Any]) -> str | None:
    """One line naming the first field that differs (and how many more), or None when the run matches."""
    absent = "<absent>"
    keys = sorted(written.keys() | now.keys(), key=lambda k: (not k.endswith(".kind"), k))  # a variant's kind first
    differ = [k for k in keys if written.get(k, absent) != now.get(k, absent)]
    if not differ:
        return None
    first = differ[0]

    def show(v) -> str:
        return v if v is absent else json.dumps(v)

    more = f" (and {len(differ) - 1} more: {', '.join(differ[1:4])}{', ...' if len(differ) > 4 else ''})"
    return (
        f"cannot resume from {path}: {first} is {show(now.get(first, absent))} but the checkpoint was written "
        f"with {show(written.get(first, absent))}" + (more if len(differ) > 1 else "")
    )


def read_run(path: str) -> CheckpointRun | None:
    """The :class:`CheckpointRun` of a checkpoint folder, or None for one written before ``run.json`` existed."""
    file = Path(path) / RUN_FILE
    if not file.is_file():
        return None
    try:
        return CheckpointRun.model_validate_json(file.read_text())
    except ValueError as exc:
        raise ConfigError(f"cannot resume from {path}: {file} is unreadable ({exc})".splitlines()[0]) from None


def check_resumable(path: str, fingerprint: dict[str, Any]) -> CheckpointRun:
    """The checkpoint's run record; ConfigError naming the first field where ``fingerprint`` differs from it.

    Every rank computes the same fingerprint and reads the same file, so every rank raises alike.
    """
    run = read_run(path)
    if run is None:
        raise ConfigError(
            f"cannot resume from {path}: it has no {RUN_FILE} (written before checkpoints were fingerprinted), "
            "so its config, seed and inputs cannot be checked; start a new train.checkpoint_dir"
        )
    problem = fingerprint_mismatch(path, run.fingerprint, fingerprint)
    if problem:
        raise ConfigError(problem)
    return run


def _stateful(optim_state: dict) -> tuple[dict, list[str]]:
    """The optimizer state dict less its empty per-parameter states, and their keys.

    A stateless optimizer (fused SGD; the frozen graph tables' lr-0 SGD) has ``{}`` per table: on
    several ranks ``dcp.save`` writes no entry for it but ``dcp.load`` asks for one ("Missing key
    in checkpoint state_dict"), so both sides leave them out and the load puts them back.
    """
    empty = [k for k, v in optim_state.get("state", {}).items() if isinstance(v, dict) and not v]
    kept = {k: v for k, v in optim_state["state"].items() if k not in empty} if "state" in optim_state else None
    return ({**optim_state, "state": kept} if kept is not None else optim_state), empty


def save_checkpoint(
    directory: str,
    model: torch.nn.Module,
    optimizer,
    progress: dict[str, int],
    run: CheckpointRun | None = None,
    keep: int = 2,
) -> str:
    """Save a sharded checkpoint of ``model`` + ``optimizer`` + ``progress``; returns its folder (collective).

    Rank 0 writes ``run`` (its own record) into the folder before ``latest`` points at it, then
    deletes all but the ``keep`` newest ``step_*`` folders.
    """
    path = Path(directory) / f"step_{progress['global_step']}"
    state = {
        "model": model.state_dict(),
        "optim": _stateful(optimizer.state_dict())[0],
        "progress": torch.tensor([progress[k] for k in PROGRESS_KEYS], dtype=torch.int64),
    }
    dcp.save(state, checkpoint_id=str(path))
    dist.barrier()
    if dist.get_rank() == 0:
        if run is not None:
            with atomic_file(path / RUN_FILE, "w") as f:
                f.write(run.model_dump_json(indent=1))
        tmp = Path(directory) / "latest.tmp"
        tmp.write_text(path.name)
        tmp.replace(Path(directory) / "latest")
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
    optim, empty = _stateful(optimizer.state_dict())
    state = {
        "model": model.state_dict(),
        "optim": optim,
        "progress": torch.zeros(len(PROGRESS_KEYS), dtype=torch.int64),
    }
    dcp.load(state, checkpoint_id=path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict({**state["optim"], "state": {**state["optim"]["state"], **{k: {} for k in empty}}})
    return dict(zip(PROGRESS_KEYS, (int(v) for v in state["progress"])))
