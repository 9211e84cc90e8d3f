"""Reading and writing tables: Delta by default, Parquet/CSV accepted; errors name the path.

Delta writes are atomic: a job that fails before :func:`write_delta` commits leaves the previous
version of its output as it was, so every check runs before the first write.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from core.errors import ConcurrentChange, InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    """What a write committed: where, which Delta version, how many rows."""

    path: str
    version: int
    num_rows: int


# Delta's own conflict detection guards our commits: every guarded write carries this application id
# with txnVersion = (version read) + 1, so of two runs that read the same version one commits and
# the other's transaction is skipped or fails with ConcurrentTransactionException.
GUARD_APP_ID = "embedding-pipeline-stage-runner"
ANY_VERSION = object()  # write_delta(expected_version=ANY_VERSION): an unguarded write (appends of run records)
_DELTA_CONFLICT = re.compile(
    r"io\.delta\.exceptions\.(Concurrent\w+|MetadataChangedException|ProtocolChangedException)"
)


def _shown(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def changed_by_another_run(path: str, read: int | None, now: int | None, what: str = "output") -> ConcurrentChange:
    return ConcurrentChange(
        f"{what} ({path}) changed by another run ({_shown(read)} -> {_shown(now)}) since this run read it; "
        "nothing written; rerun"
    )


def is_delta_table(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def delta_version(spark: SparkSession, path: str) -> int | None:
    """The latest committed version of the Delta table at ``path`` (None if there is none)."""
    from delta.tables import DeltaTable

    if not is_delta_table(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).select("version").head()[0]


def commit_metadata(spark: SparkSession, path: str, version: int | None = None) -> dict | None:
    """The userMetadata JSON of commit ``version`` (default: the latest) of the Delta table at ``path``."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    history = DeltaTable.forPath(spark, path).history(1 if version is None else None)
    found = (history if version is None else history.where(F.col("version") == version)).select("userMetadata").head()
    raw = found[0] if found else None
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None


def read_table(
    spark: SparkSession, path: str, fmt: str = "delta", what: str = "input", version: int | None = None
) -> DataFrame:
    """Read a table (a Delta one at ``version``); a missing or unreadable path raises InputError naming it."""
    from pyspark.errors import AnalysisException

    try:
        if fmt == "delta":
            if not is_delta_table(spark, path):
                raise InputError(f"{what}: no Delta table at {path!r}")
            reader = spark.read.format("delta")
            return (reader if version is None else reader.option("versionAsOf", version)).load(path)
        if fmt == "parquet":
            return spark.read.parquet(path)
        if fmt == "csv":
            return spark.read.option("header", True).option("inferSchema", True).csv(path)
    except AnalysisException as exc:
        raise InputError(f"{what}: cannot read {fmt} table at {path!r}: {exc.getMessage()}") from None
    raise InputError(f"{what}: unknown format {fmt!r} (expected delta, parquet or csv)")


_FAILED_READ = re.compile(r"\[FAILED_READ_FILE\.(\w+)\] Encountered error while reading file (\S+?)\.(?:\s|$)(.*)")
_CAUSE = re.compile(r"Caused by: ([\w.$]+): (.+)")


def unreadable_file(text: str) -> tuple[str, str] | None:
    """``(file, reason)`` if ``text`` (an error, a GX exception record) is Spark failing to read a file of a
    table (missing, truncated, corrupt)."""
    found = _FAILED_READ.search(text)
    if found is None:
        return None
    kind, path, hint = found.groups()
    causes = [f"{name.rsplit('.', 1)[-1]}: {msg.strip()}" for name, msg in _CAUSE.findall(text)]
    reason = causes[-1] if causes else (hint.split("SQLSTATE")[0].strip() or kind.lower().replace("_", " "))
    return path, reason[:300]


@contextmanager
def reading(what: str):
    """Turn Spark's failure to read a file of table ``what`` into one InputError naming the file and the reason."""
    try:
        yield
    except Exception as exc:
        if (bad := unreadable_file(str(exc))) is None:
            raise
        raise InputError(f"{what}: cannot read file {bad[0]}: {bad[1]}") from None


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
    expected_version: int | None | object = ANY_VERSION,
    what: str = "output",
) -> WriteResult:
    """Write ``df`` as one atomic Delta commit (schema replaced on overwrite) and report it.

    ``metadata`` goes into the commit's userMetadata, so the Delta log itself says which job,
    parameters and input versions produced each version. With ``expected_version`` (the version
    this run read; None: no table yet) the commit is made only on that version: if another run
    committed since, nothing is written and :class:`~core.errors.ConcurrentChange` (exit 3) says so.
    """
    spark = df.sparkSession
    guarded = expected_version is not ANY_VERSION
    if guarded and (now := delta_version(spark, path)) != expected_version:
        raise changed_by_another_run(path, expected_version, now, what)
    write_id = uuid.uuid4().hex
    writer = df.write.format("delta").mode(mode)
    if mode == "overwrite":
        writer = writer.option("overwriteSchema", "true")
    if metadata or guarded:
        stamped = {**(metadata or {}), **({"write_id": write_id} if guarded else {})}
        writer = writer.option("userMetadata", json.dumps(stamped, sort_keys=True, default=str))
    if guarded:
        next_version = 0 if expected_version is None else int(expected_version) + 1
        writer = writer.option("txnAppId", GUARD_APP_ID).option("txnVersion", next_version)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    try:
        writer.save(path)
    except Exception as exc:  # py4j wraps Delta's conflict exceptions; anything else is not ours to translate
        if guarded and _DELTA_CONFLICT.search(str(exc)):
            raise changed_by_another_run(path, expected_version, delta_version(spark, path), what) from None
        raise
    from delta.tables import DeltaTable

    last = DeltaTable.forPath(spark, path).history(1).select("version", "operationMetrics", "userMetadata").head()
    if guarded and write_id not in (last["userMetadata"] or ""):  # Delta skipped it: another run's guard won
        raise changed_by_another_run(path, expected_version, int(last["version"]), what)
    rows = int((last["operationMetrics"] or {}).get("numOutputRows", -1))
    result = WriteResult(path=path, version=int(last["version"]), num_rows=rows)
    log.info("wrote %s rows to %s (Delta version %d)", result.num_rows, path, result.version)
    return result
