"""The registry's jobs end to end on the tiny tables: train (tracked) -> promote -> spark score, via their main()."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from core.cli import run

pytestmark = pytest.mark.slow  # train -> promote -> Spark scoring end to end

REPO = Path(__file__).resolve().parents[2]


def job_main(name: str):
    """``main`` of jobs/<name>.py, loaded by path (jobs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_job", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def jobs_conf(root, model: str, tables: dict, schema: dict, epochs: int = 2) -> dict:
    """A job config with everything under ``root``: local Spark, sqlite MLflow, GX evidence, a tiny DLRM."""
    return {
        "spark": {
            "master": "local[2]",
            "shuffle_partitions": 2,
            "checkpoint_dir": str(root / "checkpoints"),
            "warehouse_dir": str(root / "spark-warehouse"),
        },
        "mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "registered_model": model},
        "quality": {"output": str(root / "quality"), "data_docs": False},
        "tables": tables,
        "schema": schema,
        "train": {
            "batch_size": 32,
            "embedding_dim": 8,
            "epochs": epochs,
            "progress": False,
            "model": {"kind": "dlrm", "dense_arch": [16], "over_arch": [16]},
            "export_path": str(root / "model.pt"),
            "metrics_out": str(root / "metrics.json"),
        },
    }


@pytest.fixture(scope="module")
def jobs_run(pipeline_tables, tmp_path_factory):
    """Config file + outputs of `train_ctr` then `promote`, run once for this module on a sqlite store."""
    root = tmp_path_factory.mktemp("jobs")
    tables = {
        name: {"path": pipeline_tables[key]}
        for name, key in (("clicks", "raw"), ("vocab", "vocab"), ("encoded", "encoded"))
    }
    conf = jobs_conf(root, "ctr_jobs", tables, pipeline_tables["schema"])
    (root / "conf.yaml").write_text(yaml.safe_dump(conf))
    args = ["--config", str(root / "conf.yaml")]
    codes = {"train": run(job_main("train_ctr"), args), "promote": run(job_main("promote"), args)}
    return {"root": root, "args": args, "codes": codes, "conf": conf}


def test_train_job_logs_metrics_curves_plan_and_lineage(jobs_run):
    # given / when: the module's train job
    from mlflow import MlflowClient

    assert jobs_run["codes"]["train"] == 0
    metrics = json.loads((jobs_run["root"] / "metrics.json").read_text())
    client = MlflowClient(tracking_uri=jobs_run["conf"]["mlflow"]["tracking_uri"])
    run_ = client.get_run(metrics["mlflow_run_id"])
    # then
    assert run_.data.tags["pipeline.stage"] == "train"
    assert run_.data.metrics["test_auc"] == pytest.approx(metrics["test_auc"])
    for key in ("test_logloss", "examples_per_second", "embedding_params", "embedding_bytes.total"):
        assert key in run_.data.metrics, key
    history = client.get_metric_history(run_.info.run_id, "train_loss")
    assert len(history) == metrics["steps"] and len(metrics["loss_history"]) == metrics["steps"]
    artifacts = {a.path for folder in ("plots", "ctr") for a in client.list_artifacts(run_.info.run_id, folder)}
    assert {"plots/training_curves.png", "ctr/metrics.json", "ctr/sharding_plan.json"} <= artifacts
    assert (
        run_.data.params["input.encoded.delta_version"] == "0" and run_.data.params["input.vocab.delta_version"] == "0"
    )
    assert run_.data.params["input.clicks.path"].endswith("raw")
    assert run_.data.params["train.epochs"] == "2"


def test_promote_job_registers_first_version_as_champion(jobs_run):
    from mlflow import MlflowClient

    assert jobs_run["codes"]["promote"] == 0
    client = MlflowClient(tracking_uri=jobs_run["conf"]["mlflow"]["tracking_uri"])
    champion = client.get_model_version_by_alias("ctr_jobs", "champion")
    metrics = json.loads((jobs_run["root"] / "metrics.json").read_text())
    assert champion.tags["promotion.decision"] == "promoted"
    assert champion.tags["train_run_id"] == metrics["mlflow_run_id"]
    assert float(champion.tags["promotion.challenger_test_auc"]) == pytest.approx(metrics["test_auc"], abs=1e-6)


def test_score_job_writes_probabilities_of_the_champion(jobs_run, pipeline_tables, spark):
    # given
    import mlflow
    from deltalake import DeltaTable

    from recsys.serving import raw_frame

    out = str(jobs_run["root"] / "scores")
    # when
    code = run(
        job_main("score"),
        [*jobs_run["args"], "--model", "models:/ctr_jobs@champion", "--input", pipeline_tables["raw"], "--output", out],
    )
    # then: (event_id, probability) for every raw row, equal to the pyfunc in plain Python
    assert code == 0
    scores = DeltaTable(out).to_pyarrow_table().sort_by("event_id")
    raw = DeltaTable(pipeline_tables["raw"]).to_pyarrow_table().sort_by("event_id")
    assert scores.column_names == ["event_id", "probability"] and scores.num_rows == raw.num_rows
    model = mlflow.pyfunc.load_model("models:/ctr_jobs@champion")
    expected = model.predict(raw_frame(raw, model.metadata.get_input_schema().input_names()))["probability"]
    np.testing.assert_allclose(scores.column("probability").to_numpy(), expected.to_numpy(), rtol=1e-6)
    assert json.loads(DeltaTable(out).history(1)[0]["userMetadata"])["model"] == "models:/ctr_jobs/1"

    # when: the alias does not exist
    code = run(
        job_main("score"),
        [*jobs_run["args"], "--model", "models:/ctr_jobs@nope", "--input", pipeline_tables["raw"], "--output", out],
    )
    # then: exit code 2, and the previous output is intact
    assert code == 2 and DeltaTable(out).version() == 0


def test_pyspark_imports_and_runs_in_the_installed_environment(spark):
    # The pyspark/pyspark-client trap (../shared/ENVIRONMENT.md): pyspark-client writes into the same
    # pyspark/ folder, so a fresh interpreter must import the full package at its own version ...
    code = (
        "import importlib.metadata as md, pyspark\n"
        "assert pyspark.__version__ == md.version('pyspark'), (pyspark.__version__, md.version('pyspark'))\n"
        "from pyspark.ml.torch.distributor import TorchDistributor\n"
        "from pyspark.sql import SparkSession, functions\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # ... and a local SparkSession (with Delta) from this environment runs a job.
    assert spark.range(10).selectExpr("sum(id)").head()[0] == 45
