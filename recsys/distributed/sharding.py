"""Placing a plain CTR model's tables on ranks: planner constraints, DistributedModelParallel, state copies.

On CPU (gloo, FBGEMM's CPU kernels) the planner offers ``data_parallel``, ``table_wise``,
``column_wise`` and ``table_column_wise``; ``row_wise``/``table_row_wise`` need GPUs, and fused
Adam is not offered by FBGEMM on CPU ("Optimizer adam is not supported in CPU mode").
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._shard.sharded_tensor import ShardedTensor
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.optim import RowWiseAdagrad
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

from core.errors import ConfigError

log = logging.getLogger(__name__)

CPU_SHARDING_TYPES = ("data_parallel", "table_wise", "column_wise", "table_column_wise")


def embedding_optimizer_class(name: str):
    """The in-backward (fused) optimizer class for the tables."""
    return {
        "rowwise_adagrad": RowWiseAdagrad,
        "adagrad": torch.optim.Adagrad,
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
    }[name]


def attach_embedding_optimizer(model: nn.Module, name: str, lr: float, frozen: tuple[str, ...] = ()) -> None:
    """Fuse the tables' optimizer into the backward pass (applied by FBGEMM inside the sharded kernels).

    ``frozen`` tables (FastRP graph tables) get plain SGD with ``lr=0``: on CPU the sharder offers
    model-parallel tables only the ``fused`` kernel, which needs an optimizer, and SGD at lr 0 adds
    ``-0 * grad`` (grad is zero anyway: the model detaches their output), so their weights stay bit
    for bit. Their own optimizer also puts them in their own TBE group, away from trained tables.
    A ``data_parallel`` table runs the ``dense`` kernel without in-backward optimizer whatever is
    attached here; the trainer keeps frozen ones out of the dense optimizer (:func:`frozen_parameter`).
    """
    kwargs = {"lr": lr}
    if name == "adagrad":
        kwargs["eps"] = 1e-8
    skip = {f"embedding_bags.{t}.weight" for t in frozen}
    named = list(model.ebc.named_parameters())
    apply_optimizer_in_backward(embedding_optimizer_class(name), [p for n, p in named if n not in skip], kwargs)
    if skip:
        apply_optimizer_in_backward(torch.optim.SGD, [p for n, p in named if n in skip], {"lr": 0.0})


def frozen_parameter(name: str, frozen: tuple[str, ...]) -> bool:
    """Whether a DMP parameter name is the weight of a frozen table (``...embedding_bags.<table>.weight``)."""
    parts = name.split(".")
    return len(parts) >= 3 and parts[-1] == "weight" and parts[-3] == "embedding_bags" and parts[-2] in frozen


def sharding_constraints(table_names: list[str], allowed: dict[str, list[str]], device: str):
    """Planner constraints: ``allowed[table]`` or ``allowed['*']``; on CPU, types the backend lacks are errors."""
    unknown = set(allowed) - set(table_names) - {"*"}
    if unknown:
        raise ConfigError(f"train.sharding_types names unknown tables {sorted(unknown)} (tables: {table_names})")
    out = {}
    for name in table_names:
        types = allowed.get(name, allowed.get("*"))
        if types is None:
            continue
        if device == "cpu":
            bad = [t for t in types if t not in CPU_SHARDING_TYPES]
            if bad:
                raise ConfigError(
                    f"train.sharding_types['{name}']: {bad} not offered on CPU/gloo "
                    f"(offered: {list(CPU_SHARDING_TYPES)})"
                )
        out[name] = ParameterConstraints(sharding_types=list(types))
    return out


def shard_model(
    model: nn.Module, *, world_size: int, device: torch.device, constraints: dict, batch_size: int
) -> tuple[nn.Module, object]:
    """Plan the tables over ``world_size`` ranks and wrap ``model`` (built on ``meta``) in DistributedModelParallel.

    Returns:
        (the DMP model, its ``ShardingPlan``). Every rank computes the same plan (``collective_plan``).
    """
    compute = "cuda" if device.type == "cuda" else "cpu"
    topology = Topology(world_size=world_size, compute_device=compute)
    sharders = [EmbeddingBagCollectionSharder()]
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints, batch_size=batch_size)
    plan = planner.collective_plan(model, sharders, dist.GroupMember.WORLD)
    dmp = DistributedModelParallel(model, device=device, plan=plan, sharders=sharders)
    return dmp, plan


def plan_summary(plan) -> dict[str, dict]:
    """table -> {sharding_type, compute_kernel, ranks} of a ShardingPlan (for the metrics JSON and logs)."""
    out = {}
    for module_plan in plan.plan.values():
        for table, ps in module_plan.items():
            out[table] = {
                "sharding_type": ps.sharding_type,
                "compute_kernel": ps.compute_kernel,
                "ranks": list(ps.ranks or []),
            }
    return out


def _shards_of(t) -> list[tuple[torch.Tensor, list[int]]]:
    """(local tensor, global offsets) of each local shard of a ShardedTensor or DTensor."""
    if isinstance(t, ShardedTensor):
        return [(s.tensor, list(s.metadata.shard_offsets)) for s in t.local_shards()]
    from torch.distributed.tensor import DTensor

    if isinstance(t, DTensor):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        _, offsets = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
        return [(t.to_local(), list(offsets))]
    return [(t, [0] * t.dim())]


@torch.no_grad()
def local_snapshot(dmp: nn.Module) -> dict[str, list[torch.Tensor]]:
    """A copy of this rank's part of every weight (its shards; replicated tensors whole); no collective."""
    return {k: [t.detach().clone() for t, _ in _shards_of(v)] for k, v in dmp.state_dict().items()}


@torch.no_grad()
def restore_snapshot(dmp: nn.Module, snapshot: dict[str, list[torch.Tensor]]) -> None:
    """Write a :func:`local_snapshot` back into the model's local shards (each rank its own)."""
    for key, value in dmp.state_dict().items():
        for (local, _), saved in zip(_shards_of(value), snapshot[key]):
            local.copy_(saved)


@torch.no_grad()
def load_full_state_dict(dmp: nn.Module, full: dict[str, torch.Tensor]) -> None:
    """Copy an unsharded model's state dict into a sharded model's local shards (same keys)."""
    state = dmp.state_dict()
    missing = set(state) - set(full)
    if missing:
        raise KeyError(f"unsharded state lacks {sorted(missing)}")
    for key, dst in state.items():
        src = full[key]
        for local, offsets in _shards_of(dst):
            index = tuple(slice(o, o + n) for o, n in zip(offsets, local.shape))
            local.copy_(src[index].to(local.device))


@torch.no_grad()
def full_state_dict(dmp: nn.Module) -> dict[str, torch.Tensor] | None:
    """Gather a sharded model's weights into plain CPU tensors on rank 0 (None on other ranks; collective)."""
    rank = dist.get_rank()
    out: dict[str, torch.Tensor] = {}
    for key, t in dmp.state_dict().items():
        if isinstance(t, ShardedTensor):
            full = torch.empty(t.size(), dtype=t.dtype) if rank == 0 else None
            t.gather(dst=0, out=full)
            value = full
        else:
            from torch.distributed.tensor import DTensor

            value = t.full_tensor() if isinstance(t, DTensor) else t
        if rank == 0:
            out[key] = value.detach().cpu().clone()
    return out if rank == 0 else None
