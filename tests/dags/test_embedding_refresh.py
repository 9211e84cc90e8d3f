"""The Airflow DAG: parses with no import errors, and a real `airflow dags test` runs it end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def airflow_env(tmp_path):
    """An isolated Airflow home (sqlite metadata DB) whose dags folder is the project's dags/."""
    data = tmp_path / "data"
    overrides = [
        "--set", "synth.num_rows=2000", "--set", "synth.num_partitions=2",
        "--set", "spark.shuffle_partitions=2", "--set", "train.epochs=1", "--set", "train.embedding_dim=4", "--set", f"spark.checkpoint_dir={data / 'ckpt'}",
        "--set", f"mlflow.tracking_uri=sqlite:///{data / 'mlflow.db'}",
    ]
    for key in ("synth.output", "vocab.input", "encode.input"):
        overrides += ["--set", f"{key}={data / 'raw/clicks'}"]
    for key in ("synth.edges_output", "fastrp.edges"):
        overrides += ["--set", f"{key}={data / 'raw/edges'}"]
    for key, path in {"synth.oracle_output": "raw/oracle", "train.oracle": "raw/oracle", "vocab.output": "vocab",
                      "encode.vocab": "vocab", "encode.output": "encoded", "train.vocab": "vocab",
                      "train.input": "encoded", "fastrp.output": "fastrp", "train.metrics_out": "ctr/metrics.json",
                      "train.export_path": "ctr/model.pt", "train.checkpoint_dir": "ctr/ckpt",
                      "score.output": "scores", "quality.output": "quality"}.items():
        overrides += ["--set", f"{key}={data / path}"]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW_CONN_SPARK_LOCAL": '{"conn_type": "spark", "host": "local[2]"}',
        "PIPELINE_PYTHON": sys.executable,
        "PIPELINE_SYNTHETIC": "1",
        "PIPELINE_EXTRA_ARGS": " ".join(overrides),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    env.pop("EMBEDDINGS_KEEP_SPARK", None)
    return env, data


def test_dagbag_has_no_import_errors(airflow_env, monkeypatch):
    env, _ = airflow_env
    code = ("from airflow.models.dagbag import DagBag; b = DagBag(include_examples=False); "
            "assert not b.import_errors, b.import_errors; d = b.dags['embedding_refresh']; "
            "print(sorted(t.task_id for t in d.tasks), d.catchup)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'build_vocab', 'encode', 'fastrp', 'make_synthetic', 'promote', 'score', 'train'] False" in done.stdout


@pytest.mark.slow
def test_dag_runs_end_to_end_on_tiny_synthetic_data(airflow_env):
    env, data = airflow_env
    airflow = str(BIN / "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    done = subprocess.run([airflow, "dags", "test", "embedding_refresh", "2026-01-02"], env=env,
                          capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    for table in ("raw/clicks", "vocab", "encoded", "fastrp", "scores"):
        assert (data / table / "_delta_log").is_dir(), table
