"""Rank functions the distributed tests spawn (importable by the child processes)."""

from __future__ import annotations

import json

import numpy as np
import torch
from ctr_tables import train_setup

from recsys.data.batches import make_batch
from recsys.distributed.launch import process_group
from recsys.export import load_exported
from recsys.modules.ctr import build_model
from recsys.train import prepare
from recsys.trainer import CTRTrainer

SHARDING = {"C1": ["column_wise"], "C2": ["table_wise"], "tags": ["data_parallel"]}  # three CPU types


def two_rank_checks(
    encoded: str,
    vocab: str,
    out_dir: str,
    device: str = "cpu",
    sharding: dict[str, list[str]] = SHARDING,
    overrides: dict | None = None,
) -> None:
    """Sharded == unsharded forward, checkpoint/resume continuation, export round trip; results as JSON per rank.

    ``device="cuda"`` runs the same checks with nccl, one GPU per rank, and the GPU's sharding types
    (``overrides``: more TrainConfig keys); the unsharded model and the export are scored on the CPU.
    """
    cfg, inputs = train_setup(
        encoded,
        vocab,
        sharding_types=sharding,
        checkpoint_dir=f"{out_dir}/ckpt",
        max_steps=6,
        layout={"kind": "vocab"},
        pooling="mean",  # conf/local.yaml's pooling
        device=device,
        **(overrides or {}),
    )
    summary = prepare(cfg, inputs)
    res: dict = {}
    with process_group("nccl" if device == "cuda" else "gloo", device) as (rank, world, device):
        # sharded forward equals the plain model's with the same weights
        a = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device).setup()
        res["plan"] = {
            k: v["sharding_type"]
            for k, v in __import__("recsys.distributed.sharding", fromlist=["x"]).plan_summary(a.plan_).items()
        }
        plain = build_model(cfg, a.layout_, summary.spec.num_dense_inputs, seed=cfg.seed)
        batch = make_batch(a.data_["train"], np.arange(32))
        on_device = batch.to(device)
        with torch.no_grad():
            res["forward_max_diff"] = float(
                (a.model_(on_device.dense, on_device.sparse).cpu() - plain(batch.dense, batch.sparse)).abs().max()
            )
        before = a.full_state_dict()
        # straight run of 6 steps
        res["losses_straight"] = a.train()["losses"]
        after = a.full_state_dict()
        test_probs = a.predict_split("test")
        a.export(f"{out_dir}/model.pt")
        # 3 steps, save; a fresh trainer restores and runs to 6
        b = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device).setup(a.data_, a.split_record_)
        res["losses_first"] = b.train(max_steps=3)["losses"]
        b.save()
        c = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device).setup(a.data_, a.split_record_)
        res["restored"] = c.restore()
        res["progress_after_restore"] = dict(c.progress_)
        res["losses_resumed"] = c.train()["losses"]
        res["history_resumed"] = c.loss_history_
        resumed = c.full_state_dict()
        if rank == 0:
            res["tables_changed"] = {k: not torch.equal(before[k], after[k]) for k in before if "embedding_bags" in k}
            res["resume_max_diff"] = max(float((after[k] - resumed[k]).abs().max()) for k in after)
            probs, labels, ids = test_probs
            exported = load_exported(f"{out_dir}/model.pt")
            import pyarrow.compute as pc
            from deltalake import DeltaTable

            table = DeltaTable(encoded).to_pyarrow_table()
            table = table.filter(pc.is_in(table.column("event_id"), value_set=__import__("pyarrow").array(ids)))
            order = np.argsort(table.column("event_id").to_numpy())
            scored = exported.predict(table)[order]
            res["export_max_diff"] = float(np.abs(scored - probs[np.argsort(ids)]).max())
            res["test_rows"] = int(len(ids))
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(res, f)


GRAPH_SHARDING = {  # graph__C1 shares the data-parallel (dense kernel) group with tags; graph__C2 is column-wise
    **SHARDING,
    "graph__C1": ["data_parallel"],
    "graph__C2": ["column_wise"],
}


def two_rank_graph_checks(encoded: str, vocab: str, embeddings: str, out_dir: str) -> None:
    """Frozen graph tables on 2 ranks: sharded == unsharded forward, tables unchanged by training, checkpoint, export."""
    from ctr_tables import graph_inputs, train_config

    from recsys.distributed.sharding import plan_summary
    from recsys.trainer import graph_initial_state

    cfg = train_config(
        graph_features={"C1": "frozen", "C2": "frozen"},
        sharding_types=GRAPH_SHARDING,
        checkpoint_dir=f"{out_dir}/ckpt",
        max_steps=6,
        pooling="mean",
    )
    summary = prepare(cfg, graph_inputs(encoded, vocab, embeddings))
    res: dict = {}
    with process_group("gloo", "cpu") as (rank, world, device):
        a = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device).setup()
        res["plan"] = {k: v["sharding_type"] for k, v in plan_summary(a.plan_).items()}
        plain = build_model(cfg, a.layout_, summary.spec.num_dense_inputs, seed=cfg.seed)
        plain.load_state_dict(graph_initial_state(cfg, summary, a.layout_, plain.state_dict()))
        batch = make_batch(a.data_["train"], np.arange(32))
        on_device = batch.to(device)
        with torch.no_grad():
            res["forward_max_diff"] = float(
                (a.model_(on_device.dense, on_device.sparse).cpu() - plain(batch.dense, batch.sparse)).abs().max()
            )
        before = a.full_state_dict()
        a.train()
        after = a.full_state_dict()
        test_probs = a.predict_split("test")
        a.save()
        a.export(f"{out_dir}/model.pt")
        b = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device).setup(a.data_, a.split_record_)
        res["restored"] = b.restore()
        restored = b.full_state_dict()
        if rank == 0:
            tables = [k for k in before if "embedding_bags" in k]
            res["tables_changed"] = {k.split(".")[2]: not torch.equal(before[k], after[k]) for k in tables}
            res["restore_max_diff"] = max(float((after[k] - restored[k]).abs().max()) for k in after)
            res["graph_rows_equal_plain"] = all(
                torch.equal(after[k], plain.state_dict()[k]) for k in tables if ".graph__" in k
            )
            probs, labels, ids = test_probs
            from deltalake import DeltaTable

            table = DeltaTable(encoded).to_pyarrow_table().sort_by("event_id")  # event_id = row number
            order = np.argsort(ids)
            scored = load_exported(f"{out_dir}/model.pt").predict(table)  # every row, in event_id order
            res["export_max_diff"] = float(np.abs(scored[ids[order]] - probs[order]).max())
            res["test_rows"] = int(len(ids))
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(res, f)


def prune_at_second_validation(number: int, point) -> bool:
    """An ``on_valid`` hook (picklable for spawned ranks): stop at the second validation."""
    return number >= 2
