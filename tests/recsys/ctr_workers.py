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


def two_rank_checks(encoded: str, vocab: str, out_dir: str) -> None:
    """Sharded == unsharded forward, checkpoint/resume continuation, export round trip; results as JSON per rank."""
    cfg, inputs = train_setup(
        encoded,
        vocab,
        sharding_types=SHARDING,
        checkpoint_dir=f"{out_dir}/ckpt",
        max_steps=6,
        layout={"kind": "vocab"},
        pooling="mean",
    )  # conf/local.yaml's pooling
    summary = prepare(cfg, inputs)
    res: dict = {}
    with process_group("gloo", "cpu") as (rank, world, device):
        # sharded forward equals the plain model's with the same weights
        a = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device).setup()
        res["plan"] = {
            k: v["sharding_type"]
            for k, v in __import__("recsys.distributed.sharding", fromlist=["x"]).plan_summary(a.plan_).items()
        }
        plain = build_model(cfg, a.layout_, summary.spec.num_dense_inputs, seed=cfg.seed)
        batch = make_batch(a.data_["train"], np.arange(32))
        with torch.no_grad():
            res["forward_max_diff"] = float(
                (a.model_(batch.dense, batch.sparse) - plain(batch.dense, batch.sparse)).abs().max()
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
