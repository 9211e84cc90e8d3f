"""jobs/train_ctr.py end to end on a tiny table: metrics JSON, export, layouts, 2 spawned ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ctr_tables import SCHEMA_FLAGS, train_job_main

from core.cli import run

pytestmark = pytest.mark.slow  # trains through the job, spawned ranks, TorchDistributor

KEYS = {"test_auc", "test_logloss", "embedding_params", "examples_per_second", "layout"}


def _run(tiny_tables, tmp_path, *flags):
    encoded, vocab = tiny_tables
    out = tmp_path / "metrics.json"
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "empty.yaml").write_text("{}\n")  # defaults in code only: no data/ paths from conf/local.yaml
    code = run(
        train_job_main(),
        [
            "--config",
            str(tmp_path / "empty.yaml"),
            "--input",
            encoded,
            "--vocab",
            vocab,
            "--metrics-out",
            str(out),
            "--batch-size",
            "32",
            "--embedding-dim",
            "8",
            "--no-progress",
            "--set",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            *SCHEMA_FLAGS,
            *flags,
        ],
    )
    return code, (json.loads(out.read_text()) if out.exists() else None)


def test_one_rank_trains_writes_metrics_and_exports(tiny_tables, tmp_path):
    # when
    code, m = _run(
        tiny_tables,
        tmp_path,
        "--epochs",
        "3",
        "--export-path",
        str(tmp_path / "model.pt"),
        "--set",
        "train.split.kind=time",
    )
    # then
    assert code == 0 and KEYS <= set(m)
    assert m["layout"] == "vocab" and m["embedding_params"] == (40 + 12 + 9) * 8
    assert m["test_auc"] > 0.6  # the tiny table's label depends on C1 parity
    assert m["split"]["kind"] == "time" and m["split"]["test_start"].startswith("2026-01-01")
    assert (tmp_path / "model.pt").exists()


def test_same_seed_gives_the_same_metrics(tiny_tables, tmp_path):
    flags = ["--max-steps", "5", "--set", "train.layout.kind=hashed", "--set", "train.layout.total_rows=30"]
    _, a = _run(tiny_tables, tmp_path / "a", *flags)
    _, b = _run(tiny_tables, tmp_path / "b", *flags)
    assert a["test_logloss"] == b["test_logloss"] and a["tables"] == b["tables"]
    assert sum(n for n, _ in a["tables"].values()) <= 30 + 3 * 2


@pytest.mark.slow
def test_two_spawned_ranks_train_unified_embedding_with_dcn(tiny_tables, tmp_path):
    code, m = _run(
        tiny_tables,
        tmp_path,
        "--world-size",
        "2",
        "--epochs",
        "2",
        "--set",
        "train.layout={kind: unified, total_rows: 48, chunks: {C1: 2}}",
        "--set",
        "train.model={kind: dcn, dense_arch: [16], over_arch: [16], cross_rank: 4}",
        "--sharding-types",
        "{'*': [column_wise]}",
    )
    assert code == 0 and KEYS <= set(m)
    assert m["world_size"] == 2 and m["layout"] == "unified" and m["model"] == "dcn"
    assert m["tables"] == {"unified": [48, 8]} and m["feature_widths"] == {"C1": 16, "C2": 8, "tags": 8}
    assert m["sharding_plan"]["unified"]["sharding_type"] == "column_wise"
    assert np.isfinite(m["test_logloss"]) and m["examples_per_second"] > 0


@pytest.mark.slow
def test_deepfm_with_its_wide_tables_trains_on_the_fused_kernels(tiny_tables, tmp_path):
    # every table table-wise: the wide twins go through FBGEMM's fused kernels like the rest
    code, m = _run(
        tiny_tables,
        tmp_path,
        "--max-steps",
        "6",
        "--set",
        "train.model={kind: deepfm, dense_arch: [8], over_arch: [8]}",
        "--sharding-types",
        "{'*': [table_wise]}",
    )
    assert code == 0 and m["model"] == "deepfm" and np.isfinite(m["test_logloss"])
    assert m["tables"]["wide__C1"] == [40, 4] and m["sharding_plan"]["wide__C1"]["sharding_type"] == "table_wise"
    assert m["sharding_plan"]["wide__C1"]["compute_kernel"] == "fused"


@pytest.mark.slow
def test_spark_torch_distributor_runs_two_ranks_in_local_mode(spark, tiny_tables, tmp_path):
    from ctr_tables import train_setup

    from recsys.launch_spark import train_on_spark

    cfg, inputs = train_setup(
        *tiny_tables, world_size=2, launcher="spark", max_steps=4, metrics_out=str(tmp_path / "m.json")
    )
    m = train_on_spark(cfg, inputs)
    assert m.world_size == 2 and m.steps == 4 and KEYS <= set(m.model_dump())
