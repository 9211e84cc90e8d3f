"""The CPU suite's distributed checks on CUDA: nccl, the GPU sharding types, fused Adam, a CPU export.

Skipped where torch sees no CUDA device, so the CPU suite never depends on a GPU. One spawned run
(``ctr_workers.two_rank_checks`` with ``device="cuda"``, one rank per GPU, at most 2) does the work;
C1 is row-wise, C2 table-row-wise (the GPU-only types) and tags data-parallel. GPU kernels sum in
another order than the CPU's, so equalities hold to 1e-5 here where the CPU suite asks 1e-6 or 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device (CPU machine or build)"),
]

GPU_SHARDING = {"C1": ["row_wise"], "C2": ["table_row_wise"], "tags": ["data_parallel"]}


@pytest.fixture(scope="module")
def ranks(gpu_tables, tmp_path_factory):
    from ctr_workers import two_rank_checks

    from recsys.distributed.launch import spawn

    world = min(2, torch.cuda.device_count())
    out = tmp_path_factory.mktemp("gpu_ranks")
    spawn(
        two_rank_checks,
        (*gpu_tables, str(out), "cuda", GPU_SHARDING, {"embedding_optimizer": "adam"}),
        world_size=world,
    )
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


def test_the_plan_places_tables_with_the_gpu_sharding_types(ranks):
    assert ranks[0]["plan"] == {"C1": "row_wise", "C2": "table_row_wise", "tags": "data_parallel"}


def test_sharded_forward_on_the_gpu_equals_the_unsharded_model_on_the_cpu(ranks):
    assert max(r["forward_max_diff"] for r in ranks) < 1e-5


def test_fused_adam_updates_every_table_on_the_gpu(ranks):
    assert all(ranks[0]["tables_changed"].values())


def test_resuming_a_gpu_checkpoint_continues_where_the_straight_run_goes(ranks):
    for r in ranks:
        assert r["restored"] and r["progress_after_restore"]["global_step"] == 3
        np.testing.assert_allclose(r["losses_first"] + r["losses_resumed"], r["losses_straight"], atol=1e-5)
    assert ranks[0]["resume_max_diff"] < 1e-5


def test_the_export_scores_on_the_cpu_like_the_gpu_trainer(ranks):
    assert ranks[0]["test_rows"] > 0
    assert ranks[0]["export_max_diff"] < 1e-5


def test_the_train_job_runs_on_the_gpu_and_its_model_loads_on_the_cpu(gpu_tables, tmp_path):
    from ctr_tables import SCHEMA_FLAGS, train_job_main

    from core.cli import run
    from recsys.export import load_exported

    (tmp_path / "empty.yaml").write_text("{}\n")
    code = run(
        train_job_main(),
        [
            "--config",
            str(tmp_path / "empty.yaml"),
            "--input",
            gpu_tables[0],
            "--vocab",
            gpu_tables[1],
            "--device",
            "cuda",
            "--batch-size",
            "32",
            "--embedding-dim",
            "8",
            "--no-progress",
            "--metrics-out",
            str(tmp_path / "m.json"),
            "--export-path",
            str(tmp_path / "model.pt"),
            "--set",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            *SCHEMA_FLAGS,
        ],
    )
    assert code == 0
    assert 0.0 < json.loads((tmp_path / "m.json").read_text())["test_auc"] <= 1.0
    model = load_exported(str(tmp_path / "model.pt"))
    assert {p.device.type for p in model.parameters()} == {"cpu"}
