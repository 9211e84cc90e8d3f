"""Reading and writing tables: Delta by default, Parquet/CSV accepted; errors name the path.

Delta writes are atomic: a job that fails before :func:`write_delta` commits leaves the previous
version of its output as it was, so every check runs before the first write.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from core.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    """What a write committed: where, which Delta version, how many rows."""

    path: str
    version: int
    num_rows: int


def is_delta_table(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def delta_version(spark: SparkSession, path: str) -> int | None:
    """The latest committed version of the Delta table at ``path`` (None if there is none)."""
    from delta.tables import DeltaTable

    if not is_delta_table(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).select("version").head()[0]


def commit_metadata(spark: SparkSession, path: str) -> dict | None:
    """The userMetadata JSON of the latest commit of the Delta table at ``path`` (None if there is none)."""
    from delta.tables import DeltaTable

    raw = DeltaTable.forPath(spark, path).history(1).select("userMetadata").head()[0]
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None


def read_table(spark: SparkSession, path: str, fmt: str = "delta", what: str = "input") -> DataFrame:
    """Read a table; a missing or unreadable path raises InputError naming ``what`` and the path."""
    from pyspark.errors import AnalysisException

    try:
        if fmt == "delta":
            if not is_delta_table(spark, path):
                raise InputError(f"{what}: no Delta table at {path!r}")
            return spark.read.format("delta").load(path)
        if fmt == "parquet":
            return spark.read.parquet(path)
        if fmt == "csv":
            return spark.read.option("header", True).option("inferSchema", True).csv(path)
    except AnalysisException as exc:
        raise InputError(f"{what}: cannot read {fmt} table at {path!r}: {exc.getMessage()}") from None
    raise InputError(f"{what}: unknown format {fmt!r} (expected delta, parquet or csv)")


def require_columns(df: DataFrame, columns: list[str], what: str = "input") -> None:
    """Raise InputError naming every column of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{what}: missing column(s) {missing}; available: {df.columns}")


def write_delta(
    df: DataFrame,
    path: str,
    metadata: dict | None = None,
    mode: str = "overwrite",
    partition_by: list[str] | None = None,
) -> WriteResult:
    """Write ``df`` as one atomic Delta commit (schema replaced on overwrite) and report it.

    ``metadata`` goes into the commit's userMetadata, so the Delta log itself says which job,
    parameters and input versions produced each version.
    """
    spark = df.sparkSession
    writer = df.write.format("delta").mode(mode)
    if mode == "overwrite":
        writer = writer.option("overwriteSchema", "true")
    if metadata:
        writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True, default=str))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)
    from delta.tables import DeltaTable

    last = DeltaTable.forPath(spark, path).history(1).select("version", "operationMetrics").head()
    rows = int((last["operationMetrics"] or {}).get("numOutputRows", -1))
    result = WriteResult(path=path, version=int(last["version"]), num_rows=rows)
    log.info("wrote %s rows to %s (Delta version %d)", result.num_rows, path, result.version)
    return result
