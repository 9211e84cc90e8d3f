"""A Parquet click log end to end through the jobs: vocab -> encode -> train -> promote -> score.

Promotion and scoring read the raw log in the format it was given (recorded in the encode commit's
lineage), not as Delta.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import RAW_SCHEMA, SCHEMA, raw_rows
from test_jobs import job_main, jobs_conf

from core.cli import run

pytestmark = pytest.mark.slow  # Spark stages, training, registry, Spark scoring


@pytest.fixture(scope="module")
def parquet_pipeline(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("parquet_log")
    spark.createDataFrame(raw_rows(), RAW_SCHEMA).repartition(2).write.parquet(str(root / "clicks"))
    tables = {"root": str(root), "clicks": {"path": "clicks", "format": "parquet"}}
    conf = {**jobs_conf(root, "ctr_parquet", tables, SCHEMA, epochs=1), "vocab": {"min_count": 2}}
    (root / "conf.yaml").write_text(yaml.safe_dump(conf))
    args = ["--config", str(root / "conf.yaml")]
    codes = {job: run(job_main(job), args) for job in ("build_vocab", "encode", "train_ctr", "promote", "score")}
    return root, conf, codes


def test_a_parquet_click_log_is_promoted_and_scored_reading_it_as_parquet(parquet_pipeline, spark):
    from mlflow import MlflowClient

    from core.delta import commit_inputs

    root, conf, codes = parquet_pipeline
    assert codes == {"build_vocab": 0, "encode": 0, "train_ctr": 0, "promote": 0, "score": 0}
    # the encode commit records the raw log's format, and the registered version says what it was judged on
    clicks = commit_inputs(str(root / "encoded"), 0)["clicks"]
    assert clicks == {"path": str(root / "clicks"), "format": "parquet", "version": None}
    client = MlflowClient(tracking_uri=conf["mlflow"]["tracking_uri"])
    champion = client.get_model_version_by_alias("ctr_parquet", "champion")
    assert champion.tags["raw_format"] == "parquet" and champion.tags["promotion.decision"] == "promoted"
    # scoring read the Parquet rows: one probability per raw row
    scores = spark.read.format("delta").load(str(root / "scores"))
    assert scores.count() == len(raw_rows())
