"""Shared fixtures: one real local SparkSession with Delta for the whole run, paths in tmp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_mlflow"]  # a real `mlflow server` on 127.0.0.1 (tests/fixtures_mlflow.py)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local[2] SparkSession with Delta, UI off, few shuffle partitions; kept for the run."""
    from core.config import SparkConfig
    from embeddings.spark import build_spark

    os.environ["EMBEDDINGS_KEEP_SPARK"] = "1"  # jobs called in-process must not stop the shared session
    cfg = SparkConfig(master="local[2]", shuffle_partitions=2, ui_enabled=False, driver_memory="2g",
                      checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")))
    session = build_spark(cfg)
    yield session
    session.stop()


@pytest.fixture
def job_args(tmp_path):
    """Common flags that point a job's Spark, MLflow and checkpoints at this test's tmp dir."""
    return [
        "--master", "local[2]",
        "--set", "spark.shuffle_partitions=2",
        "--set", f"spark.checkpoint_dir={tmp_path / 'checkpoints'}",
        "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "--set", f"quality.output={tmp_path / 'quality'}",
    ]
