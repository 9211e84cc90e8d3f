"""The one place a SparkSession is built: Delta configured, local defaults, cluster-friendly.

Under ``spark-submit`` (the JVM is already up, ``PYSPARK_GATEWAY_PORT`` is set) the master and
the jars are spark-submit's to choose: pass ``--packages io.delta:delta-spark_4.1_2.13:4.1.0``
there. Run as plain Python, the Delta jars come from ``configure_spark_with_delta_pip``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from core.config import SparkConfig

log = logging.getLogger(__name__)

DELTA_PACKAGE = "io.delta:delta-spark_4.1_2.13:4.1.0"
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def under_spark_submit() -> bool:
    """True when this Python process was launched by spark-submit (its JVM owns the config)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark(cfg: SparkConfig):
    """Get or create the SparkSession described by ``cfg`` with Delta Lake enabled."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(cfg.app_name)
    settings = {
        **DELTA_CONF,
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.ui.enabled": str(cfg.ui_enabled).lower(),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.warehouse.dir": cfg.warehouse_dir,
        **cfg.conf,
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    if not under_spark_submit():
        # Python workers must run the same interpreter (and venv) as the driver.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        from delta import configure_spark_with_delta_pip

        builder = builder.master(cfg.master).config("spark.driver.memory", cfg.driver_memory)
        builder = configure_spark_with_delta_pip(builder)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    spark.sparkContext.setCheckpointDir(cfg.checkpoint_dir)
    log.info("Spark %s, master %s", spark.version, spark.sparkContext.master)
    return spark


@contextlib.contextmanager
def spark_session(cfg: SparkConfig, stop: bool = True) -> Iterator:
    """Context manager around :func:`build_spark`; stops the session on exit unless told not to."""
    spark = build_spark(cfg)
    try:
        yield spark
    finally:
        if stop and not os.environ.get("EMBEDDINGS_KEEP_SPARK"):
            spark.stop()
