"""Shared fixtures: one real local SparkSession with Delta for the whole run, paths in tmp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.cli import scratch_flags

pytest_plugins = ["fixtures_mlflow"]  # a real `mlflow server` on 127.0.0.1 (tests/fixtures_mlflow.py)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "build"}


def repo_files() -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file in the checkout and each folder's name (an empty folder counts too),
    except caches, the venv and git's own files."""
    out = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        out.update({os.path.relpath(os.path.join(root, d), REPO) + "/": (0, 0) for d in dirs})
        for name in files:
            st = os.stat(os.path.join(root, name))
            out[os.path.relpath(os.path.join(root, name), REPO)] = (st.st_mtime_ns, st.st_size)
    return out


@pytest.fixture(scope="session", autouse=True)
def repo_stays_untouched():
    """Tests write only inside their tmp dirs: no MLflow store, Delta table or checkpoint lands in the checkout."""
    before = repo_files()
    yield
    after = repo_files()
    changed = sorted(k for k in after.keys() | before.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests wrote into the checkout: {changed[:20]}"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local[2] SparkSession with Delta, UI off, few shuffle partitions; kept for the run."""
    from core.config import SparkConfig
    from embeddings.spark import build_spark

    os.environ["EMBEDDINGS_KEEP_SPARK"] = "1"  # jobs called in-process must not stop the shared session
    cfg = SparkConfig(
        master="local[2]",
        shuffle_partitions=2,
        ui_enabled=False,
        driver_memory="2g",
        checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")),
        warehouse_dir=str(tmp_path_factory.mktemp("warehouse")),
    )
    session = build_spark(cfg)
    yield session
    session.stop()


def job_flags(root) -> list[str]:
    """Common flags that point a job's Spark, MLflow, checkpoints and GX evidence at ``root``."""
    return scratch_flags(root)


@pytest.fixture(scope="session")
def tmp_job_flags():
    """:func:`job_flags` for module-scoped fixtures (which cannot take ``job_args``)."""
    return job_flags


@pytest.fixture
def job_args(tmp_path):
    """:func:`job_flags` of this test's tmp dir."""
    return job_flags(tmp_path)
