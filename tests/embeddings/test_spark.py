"""The SparkSession: a catalog warehouse where the config says, not in whatever folder the job runs from."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[2]


def test_the_catalog_warehouse_is_the_configured_folder_not_the_working_directory(spark, tmp_path):
    # given: the shared session, built from a SparkConfig whose warehouse_dir is a tmp folder
    warehouse = spark.conf.get("spark.sql.warehouse.dir")
    # when: something touches the catalog (DESCRIBE HISTORY, SHOW DATABASES)
    spark.range(3).write.format("delta").save(str(tmp_path / "t"))
    spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 't'}`").collect()
    spark.sql("SHOW DATABASES").collect()
    # then
    assert not Path(urlparse(warehouse).path).resolve().is_relative_to(REPO), warehouse
    assert not (REPO / "spark-warehouse").exists()
