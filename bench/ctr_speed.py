"""Training speed: TorchRec (DMP, fused row-wise Adagrad) vs a plain nn.EmbeddingBag model of identical shape.

    python bench/ctr_speed.py --tables 8 --rows 100000 --embedding-dim 16 --batch-size 1024 --steps 100

Same process, same synthetic batches, 1 rank (gloo, CPU): TorchRec's sharded EmbeddingBagCollection
with FBGEMM's fused optimizer vs ``nn.EmbeddingBag(sparse=True)`` tables with ``torch.optim.Adagrad``
(dense layers: Adam in both). Then the TorchRec model on 2 spawned ranks (table-wise) vs 1.
Writes JSON (default bench/results/ctr_speed.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn


def _setup(args):
    from core.train_config import TrainConfig, VocabLayoutConfig
    from recsys.data.synthetic import random_rows
    from recsys.modules.layouts import make_layout

    features = [f"C{i + 1}" for i in range(args.tables)]
    cfg = TrainConfig(
        embedding_dim=args.embedding_dim,
        batch_size=args.batch_size,
        model={"kind": "dlrm", "dense_arch": [64], "over_arch": [64, 32]},
    )
    layout = make_layout(VocabLayoutConfig(), features, {f: args.rows for f in features}, args.embedding_dim, seed=0)
    data = random_rows(layout, args.batch_size * 16, 6, seed=int(os.environ.get("RANK", 0)), max_bag=args.max_bag)
    return cfg, layout, data


def _batches(data, args):
    from recsys.data.batches import make_batch

    return [make_batch(data, np.arange(i * args.batch_size, (i + 1) * args.batch_size)) for i in range(16)]


def _time(step, batches, steps, warmup) -> float:
    for i in range(warmup):
        step(batches[i % len(batches)])
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return time.perf_counter() - start


def torchrec_rank(args, out_path: str | None = None) -> float:
    """Examples/s of the TorchRec model on this rank's process group (collective when world_size > 1)."""
    import torch.distributed as dist
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    from recsys.distributed.sharding import attach_embedding_optimizer, shard_model, sharding_constraints
    from recsys.modules.ctr import build_model

    cfg, layout, data = _setup(args)
    world = dist.get_world_size()
    model = build_model(cfg, layout, 12, "meta")
    attach_embedding_optimizer(model, "rowwise_adagrad", 0.05)
    constraints = sharding_constraints([t.name for t in layout.tables], {"*": ["table_wise"]}, "cpu")
    dmp, _ = shard_model(
        model, world_size=world, device=torch.device("cpu"), constraints=constraints, batch_size=args.batch_size
    )
    dense = KeyedOptimizerWrapper(
        dict(in_backward_optimizer_filter(dmp.named_parameters())), lambda ps: torch.optim.Adam(ps, lr=1e-3)
    )
    opt = CombinedOptimizer([dmp.fused_optimizer, dense])
    loss_fn = nn.BCEWithLogitsLoss()

    def step(b):
        loss = loss_fn(dmp(b.dense, b.sparse), b.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    dist.barrier()
    seconds = _time(step, _batches(data, args), args.steps, args.warmup)
    t = torch.tensor([seconds])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    eps = world * args.steps * args.batch_size / float(t)
    if out_path and dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump({"examples_per_second": eps}, f)
    return eps


def plain_model(args) -> float:
    """Examples/s of the same model with nn.EmbeddingBag(sparse=True) tables + torch Adagrad."""
    from recsys.modules.ctr import PlainEmbeddingBags, build_model

    cfg, layout, data = _setup(args)
    model = build_model(cfg, layout, 12, "cpu", seed=0)
    model.ebc = PlainEmbeddingBags(layout, mode=cfg.pooling, sparse=True)
    emb = list(model.ebc.parameters())
    ids = {id(p) for p in emb}
    dense = [p for p in model.parameters() if id(p) not in ids]
    opt_e = torch.optim.Adagrad(emb, lr=0.05)
    opt_d = torch.optim.Adam(dense, lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()

    def step(b):
        loss = loss_fn(model(b.dense, b.sparse), b.labels)
        opt_e.zero_grad()
        opt_d.zero_grad()
        loss.backward()
        opt_e.step()
        opt_d.step()

    seconds = _time(step, _batches(data, args), args.steps, args.warmup)
    return args.steps * args.batch_size / seconds


def _two_rank_entry(args, out_path):
    from recsys.distributed.launch import process_group

    torch.set_num_threads(args.threads)
    with process_group("gloo", "cpu"):
        torchrec_rank(args, out_path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tables", type=int, default=8)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--embedding-dim", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--max-bag", type=int, default=1)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2, help="alternate the two 1-rank models this many times")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (both models)")
    p.add_argument("--out", default="bench/results/ctr_speed.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from core.net import free_port
    from recsys.distributed.launch import process_group, spawn

    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    runs = {"torchrec_1_rank": [], "plain_embedding_bag": []}
    with process_group("gloo", "cpu"):
        for _ in range(args.repeats):
            runs["torchrec_1_rank"].append(torchrec_rank(args))
            runs["plain_embedding_bag"].append(plain_model(args))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(k, None)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "two.json")
        spawn(_two_rank_entry, (args, out), world_size=2)
        two = json.load(open(out))["examples_per_second"]
    best = {k: max(v) for k, v in runs.items()}
    result = {
        "config": vars(args),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "examples_per_second": {**best, "torchrec_2_ranks": two},
        "all_runs": runs,
        "torchrec_vs_plain": best["torchrec_1_rank"] / best["plain_embedding_bag"],
        "two_ranks_vs_one": two / best["torchrec_1_rank"],
    }
    print(json.dumps(result, indent=2))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
