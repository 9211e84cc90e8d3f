"""Daily embedding refresh: graph -> FastRP -> {train, retrieve}; vocab -> encode -> train -> promote -> score.

Spark stages go through ``SparkSubmitOperator`` (connection ``$PIPELINE_SPARK_CONN_ID``, default
``spark_local``; define it, e.g. ``AIRFLOW_CONN_SPARK_LOCAL='{"conn_type": "spark", "host":
"local[2]"}'``, or point it at yarn/k8s/spark://); training runs the trainer's own launcher.
Each task overwrites its Delta output in one atomic commit, so re-running a logical date is
idempotent (a rerun of train/promote registers one more model version; promotion is decided
against the champion on the same test rows, so a rerun cannot demote a better champion).
Every task logs a child run under one MLflow parent run per DAG run: set
``PIPELINE_PARENT_RUN_ID`` in the workers' environment to group them, else each is top-level. This file only schedules ``jobs/*.py``: it imports nothing from the project.

Settings come from the environment of the scheduler/workers:
``PIPELINE_HOME`` (the checkout; default: this file's repository), ``PIPELINE_CONFIG`` (config
files, comma-separated; default ``conf/local.yaml``), ``PIPELINE_PYTHON`` (interpreter with the
pinned requirements; default ``$PIPELINE_HOME/.venv/bin/python``), ``PIPELINE_SYNTHETIC=1`` to
generate the synthetic input first (embedded default and tests).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

HOME = Path(os.environ.get("PIPELINE_HOME", Path(__file__).resolve().parents[1]))
PYTHON = os.environ.get("PIPELINE_PYTHON", str(HOME / ".venv" / "bin" / "python"))
CONFIGS = [c for c in os.environ.get("PIPELINE_CONFIG", "conf/local.yaml").split(",") if c]
CONN_ID = os.environ.get("PIPELINE_SPARK_CONN_ID", "spark_local")
SYNTHETIC = os.environ.get("PIPELINE_SYNTHETIC", "0") == "1"
DELTA_PACKAGE = "io.delta:delta-spark_4.1_2.13:4.1.0"
EXTRA_ARGS = os.environ.get("PIPELINE_EXTRA_ARGS", "").split()

CONFIG_ARGS = [arg for path in CONFIGS for arg in ("--config", str(HOME / path))] + EXTRA_ARGS
SPARK_ENV = {"PYSPARK_PYTHON": PYTHON, "PYSPARK_DRIVER_PYTHON": PYTHON, "PIPELINE_RUN_DATE": "{{ ds }}"}


def spark_job(task_id: str, job: str) -> SparkSubmitOperator:
    """One spark-submit of ``jobs/<job>.py`` with the pipeline's config layers."""
    return SparkSubmitOperator(
        task_id=task_id,
        application=str(HOME / "jobs" / f"{job}.py"),
        conn_id=CONN_ID,
        packages=DELTA_PACKAGE,
        conf={"spark.ui.enabled": "false"},
        application_args=CONFIG_ARGS,
        env_vars=SPARK_ENV,
        name=f"embedding_refresh.{task_id}",
    )


def python_job(task_id: str, job: str) -> BashOperator:
    """A non-Spark job (training launches its own ranks; promotion talks to MLflow)."""
    return BashOperator(
        task_id=task_id,
        bash_command=" ".join([PYTHON, str(HOME / "jobs" / f"{job}.py"), *CONFIG_ARGS]),
        cwd=str(HOME),
        env={**os.environ, **SPARK_ENV},
    )


with DAG(
    dag_id="embedding_refresh",
    description=__doc__.splitlines()[0],
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,  # a new deployment runs the latest interval only: no catch-up storm
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    tags=["embeddings", "spark", "torchrec"],
) as dag:
    build_vocab = spark_job("build_vocab", "build_vocab")
    encode = spark_job("encode", "encode")
    build_graph = spark_job("build_graph", "build_graph")
    fastrp = spark_job("fastrp", "fastrp")
    train = python_job("train", "train_ctr")
    promote = python_job("promote", "promote")  # evaluate vs the champion, move the registry aliases
    score = spark_job("score", "score")  # batch scoring with models:/<name>@champion
    retrieve = spark_job("retrieve", "retrieve")  # top-K candidates of users and items
    build_vocab >> encode >> train >> promote >> score
    build_graph >> fastrp >> [train, retrieve]  # train: graph features read the FastRP table
    if SYNTHETIC:
        synth = spark_job("make_synthetic", "make_synthetic")
        synth >> [build_vocab, build_graph]
