"""The Airflow DAG: parses with no import errors, and a real `airflow dags test` runs it end to end."""

import json
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
    # Every path of conf/local.yaml is under tables.root: moving it moves the tables, MLflow, checkpoints and evidence.
    overrides = [
        "--set",
        f"tables.root={data}",
        "--set",
        "synth.num_rows=2000",
        "--set",
        "synth.num_partitions=2",
        "--set",
        "spark.shuffle_partitions=2",
        "--set",
        "train.epochs=1",
        "--set",
        "train.embedding_dim=4",
    ]
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
    code = (
        "import json; from airflow.models.dagbag import DagBag; b = DagBag(include_examples=False); "
        "assert not b.import_errors, b.import_errors; d = b.dags['embedding_refresh']; "
        "print(json.dumps({'catchup': d.catchup, 'upstream': {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks}}))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    dag = json.loads(done.stdout.strip().splitlines()[-1])
    assert dag["catchup"] is False
    # the click log feeds the vocabularies and the graph; the graph feeds FastRP; FastRP feeds training and retrieval
    assert dag["upstream"] == {
        "make_synthetic": [],
        "build_vocab": ["make_synthetic"],
        "encode": ["build_vocab"],
        "train": ["encode", "fastrp"],
        "promote": ["train"],
        "score": ["promote"],
        "build_graph": ["make_synthetic"],
        "fastrp": ["build_graph"],
        "retrieve": ["fastrp"],
    }


@pytest.mark.slow
def test_dag_runs_end_to_end_on_tiny_synthetic_data(airflow_env):
    env, data = airflow_env
    airflow = str(BIN / "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    done = subprocess.run(
        [airflow, "dags", "test", "embedding_refresh", "2026-01-02"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=REPO,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    # then every table holds what its stage promised
    from deltalake import DeltaTable
    from mlflow import MlflowClient

    rows = {
        t: DeltaTable(str(data / t)).to_pyarrow_table()
        for t in ("raw/clicks", "vocab", "encoded", "fastrp", "scores", "graph/edges", "candidates")
    }
    assert rows["raw/clicks"].num_rows == rows["encoded"].num_rows == rows["scores"].num_rows == 2000
    assert set(rows["vocab"].column("feature").to_pylist()) == {*(f"C{i}" for i in range(1, 9)), "tags"}
    edges = rows["graph/edges"]  # built by the build_graph task from the click log
    assert set(edges.column("kind").to_pylist()) == {"user-item"}
    nodes = set(edges.column("src").to_pylist()) | set(edges.column("dst").to_pylist())
    assert rows["fastrp"].num_rows == len(nodes)
    queries = set(rows["candidates"].column("query").to_pylist())  # the retrieve task: every user and item queried
    assert queries == nodes and set(rows["candidates"].column("candidate").to_pylist()) <= nodes
    probability = rows["scores"].column("probability").to_numpy()
    assert ((probability > 0) & (probability < 1)).all()
    # and the registry's champion is the version the score task used
    client = MlflowClient(tracking_uri=f"sqlite:///{data / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("ctr_model", "champion")
    scored_with = json.loads(DeltaTable(str(data / "scores")).history(1)[0]["userMetadata"])["model"]
    assert scored_with == f"models:/ctr_model/{champion.version}"
    experiment = client.get_experiment_by_name("graph-rec-embeddings").experiment_id
    stages = {r.data.tags.get("pipeline.stage"): r for r in client.search_runs([experiment])}
    assert stages["build_graph"].data.metrics["quality.edges.success"] == 1.0  # the edges are gated when written
    assert stages["fastrp"].data.metrics["quality.edges.success"] == 1.0  # the DAG's FastRP task is gated too
    assert stages["fastrp"].data.metrics["quality.embeddings.success"] == 1.0
