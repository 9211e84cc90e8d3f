"""GPU check: a few hundred TorchRec training steps with nccl on one CUDA device; prints examples/s as JSON.

    python bench/ctr_gpu_check.py --steps 300 --batch-size 4096 --out bench/results/ctr_gpu.json

Same code path as CPU training (meta-device model, planner, DistributedModelParallel, fused
row-wise Adagrad, dense Adam), with world_size 1, backend nccl and synthetic in-memory batches
(26 tables, Criteo-like). The JSON names the stack it ran on (torch and its CUDA, the FBGEMM build,
torchrec). Without CUDA it exits with code 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def stack() -> dict[str, str | None]:
    """The versions this figure comes from: torch (and its CUDA), the FBGEMM build, torchrec."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "fbgemm_gpu": installed("fbgemm-gpu"),
        "fbgemm_gpu_cpu": installed("fbgemm-gpu-cpu"),
        "torchrec": installed("torchrec"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--tables", type=int, default=26)
    p.add_argument("--rows", type=int, default=200_000, help="rows per table")
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--optimizer", default="rowwise_adagrad", choices=["rowwise_adagrad", "adagrad", "sgd", "adam"])
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    if not torch.cuda.is_available():
        print(
            json.dumps({"error": "no CUDA device visible to torch; this check needs a GPU", **stack()}),
            file=sys.stderr,
        )
        return 2
    import torch.distributed as dist
    from torch import nn
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    from core.net import free_port
    from core.train_config import TrainConfig, VocabLayoutConfig
    from recsys.data.batches import make_batch
    from recsys.data.synthetic import random_rows
    from recsys.distributed.launch import process_group
    from recsys.distributed.sharding import attach_embedding_optimizer, plan_summary, shard_model
    from recsys.modules.ctr import build_model
    from recsys.modules.layouts import make_layout

    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    features = [f"C{i + 1}" for i in range(args.tables)]
    cfg = TrainConfig(
        device="cuda",
        backend="nccl",
        embedding_dim=args.embedding_dim,
        batch_size=args.batch_size,
        embedding_optimizer=args.optimizer,
        model={"kind": "dlrm", "dense_arch": [512, 256], "over_arch": [1024, 1024, 512, 256]},
    )
    layout = make_layout(VocabLayoutConfig(), features, {f: args.rows for f in features}, args.embedding_dim, seed=0)
    num_dense = 13
    data = random_rows(layout, args.batch_size * 8, num_dense, seed=0)
    with process_group("nccl", "cuda") as (rank, world, device):
        model = build_model(cfg, layout, 2 * num_dense, "meta")
        attach_embedding_optimizer(model, args.optimizer, 0.05)
        dmp, plan = shard_model(model, world_size=1, device=device, constraints={}, batch_size=args.batch_size)
        dense = KeyedOptimizerWrapper(
            dict(in_backward_optimizer_filter(dmp.named_parameters())), lambda ps: torch.optim.Adam(ps, lr=1e-3)
        )
        opt = CombinedOptimizer([dmp.fused_optimizer, dense])
        batches = [
            make_batch(data, np.arange(i * args.batch_size, (i + 1) * args.batch_size)).to(device) for i in range(8)
        ]
        loss_fn = nn.BCEWithLogitsLoss()

        def step(b):
            loss = loss_fn(dmp(b.dense, b.sparse), b.labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        for i in range(args.warmup):
            step(batches[i % 8])
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(args.steps):
            loss = step(batches[i % 8])
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        result = {
            "examples_per_second": args.steps * args.batch_size / seconds,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "seconds": seconds,
            "final_loss": float(loss),
            "tables": args.tables,
            "rows_per_table": args.rows,
            "embedding_dim": args.embedding_dim,
            "embedding_params": layout.embedding_params(),
            "optimizer": args.optimizer,
            "backend": dist.get_backend(),
            "device": torch.cuda.get_device_name(device),
            **stack(),
            "sharding_plan": plan_summary(plan),
        }
    print(json.dumps(result, indent=2))
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
