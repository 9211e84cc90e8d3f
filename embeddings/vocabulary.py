"""Feature vocabularies with ids that stay stable across refreshes.

Unlike Spark's ``StringIndexer`` (whose ids are frequency ranks, so they move whenever the data
does), a refresh here keeps every existing value's id, appends new values after the largest id
of their feature, and never reuses an id. A trained embedding table therefore stays valid after a
refresh: only new rows are appended.

Ids are per feature (one embedding table per feature)::

    0  reserved: missing value (null in the input)       -- no row in the table
    1  reserved: out-of-vocabulary value (unseen/rare)    -- no row in the table
    2.. values, in order of admission: by descending count, then ascending value

A feature's table size (``num_embeddings``) is ``max(id) + 1``. ``min_count`` admits only values
seen at least that often in this refresh's window; ``max_size`` caps the number of value ids of a
feature over all refreshes (values already in the table are never evicted, so once a feature is
full its new values map to the OOV id).

The vocabulary table (Delta) has one row per (feature, value)::

    feature string | value string | id int | count long | first_seen timestamp | last_seen timestamp | added_in int

``count`` is the value's count in the latest refresh's window (0 if it did not occur), so each
Delta version of the table records the counts of one refresh; ``added_in`` is the refresh that
admitted the value (1 for the first build).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.config import VocabConfig
from core.encoding import FIRST_ID, MISSING_ID, NUM_RESERVED, OOV_ID  # noqa: F401  (MISSING_ID, OOV_ID: part of the table's contract)
from core.errors import InputError
from embeddings.io import require_columns

log = logging.getLogger(__name__)

VOCAB_SCHEMA = T.StructType(
    [
        T.StructField("feature", T.StringType(), False),
        T.StructField("value", T.StringType(), False),
        T.StructField("id", T.IntegerType(), False),
        T.StructField("count", T.LongType(), False),
        T.StructField("first_seen", T.TimestampType(), True),
        T.StructField("last_seen", T.TimestampType(), True),
        T.StructField("added_in", T.IntegerType(), False),
    ]
)
VOCAB_COLUMNS = [f.name for f in VOCAB_SCHEMA.fields]

_VALUE_TYPES = (T.StringType, T.IntegerType, T.LongType, T.ShortType, T.ByteType)
_TIME_TYPES = (T.TimestampType, T.TimestampNTZType, T.DateType)


def check_feature_columns(df: DataFrame, features: list[str], what: str = "input") -> None:
    """Raise InputError unless every feature is a string/integer column or an array of those."""
    if not features:
        raise InputError("no categorical features given: set --features (vocab.features)")
    require_columns(df, features, what)
    types = dict((f.name, f.dataType) for f in df.schema.fields)
    for name in features:
        dtype = types[name]
        inner = dtype.elementType if isinstance(dtype, T.ArrayType) else dtype
        if not isinstance(inner, _VALUE_TYPES):
            raise InputError(
                f"{what}: column {name!r} has type {dtype.simpleString()}; a categorical feature "
                "must be string or integer, or an array of those"
            )


def select_window(df: DataFrame, time_col: str | None, start=None, end=None, what: str = "input") -> DataFrame:
    """Rows with ``start <= time_col < end`` (either bound optional); checks the column's type."""
    if time_col is None:
        return df
    require_columns(df, [time_col], what)
    dtype = df.schema[time_col].dataType
    if not isinstance(dtype, _TIME_TYPES):
        raise InputError(
            f"{what}: time column {time_col!r} has type {dtype.simpleString()}, expected timestamp or date"
        )
    if start is not None:
        df = df.where(F.col(time_col) >= F.lit(start))
    if end is not None:
        df = df.where(F.col(time_col) < F.lit(end))
    return df


def _pair_with(name: str):
    # F.transform passes (element, index) to two-argument lambdas, so bind the name in a closure.
    return lambda x: F.struct(F.lit(name).alias("feature"), x.cast("string").alias("value"))


def long_values(df: DataFrame, features: list[str], time_col: str | None) -> DataFrame:
    """One row per (feature, non-null value) occurrence: ``feature, value, ts``; arrays are exploded.

    A single pass over ``df``: each row becomes an array of (feature, value) structs, exploded once.
    """
    ts = F.col(time_col).cast("timestamp") if time_col else F.lit(None).cast("timestamp")
    parts = []
    for name in features:
        col = F.col(name)
        if isinstance(df.schema[name].dataType, T.ArrayType):
            parts.append(F.transform(F.coalesce(col, F.array()), _pair_with(name)))
        else:
            parts.append(F.array(F.struct(F.lit(name).alias("feature"), col.cast("string").alias("value"))))
    pairs = df.select(F.explode(F.concat(*parts)).alias("p"), ts.alias("ts"))
    return pairs.select("p.feature", "p.value", "ts").where(F.col("value").isNotNull())


def value_counts(df: DataFrame, features: list[str], time_col: str | None) -> DataFrame:
    """``feature, value, count, first_seen, last_seen`` over the rows of ``df``."""
    return (
        long_values(df, features, time_col)
        .groupBy("feature", "value")
        .agg(F.count("*").alias("count"), F.min("ts").alias("first_seen"), F.max("ts").alias("last_seen"))
    )


def empty_vocabulary(spark) -> DataFrame:
    return spark.createDataFrame([], VOCAB_SCHEMA)


def _capacities(spark, cfg: VocabConfig, features: Sequence[str]) -> DataFrame:
    """Small per-feature frame of id caps (null = unlimited), built from the config."""
    rows = [(f, cfg.max_size_per_feature.get(f, cfg.max_size)) for f in features]
    return spark.createDataFrame(rows, "feature string, max_size int")


def extend_vocabulary(
    previous: DataFrame, counts: DataFrame, capacities: DataFrame, min_count: int, refresh: int
) -> DataFrame:
    """Merge this refresh's counts into the previous vocabulary, keeping every existing id.

    Args:
        previous: the vocabulary so far (VOCAB_SCHEMA; empty on the first build).
        counts: ``feature, value, count, first_seen, last_seen`` of this refresh's window.
        capacities: ``feature, max_size`` (null = unlimited), one row per configured feature.
        min_count: a new value is admitted only if it occurs at least this often in ``counts``.
        refresh: number recorded in ``added_in`` for admitted values.

    Returns:
        The new vocabulary (VOCAB_SCHEMA): old rows with updated count/first_seen/last_seen, plus
        new values with ids ``max(previous id of the feature) + rank``, ranked by (count desc,
        value asc) and cut to the feature's remaining capacity.
    """
    prev = previous.alias("p")
    new = counts.alias("n")
    merged = prev.join(new, ["feature", "value"], "full_outer")
    kept = merged.where(F.col("p.id").isNotNull()).select(
        "feature",
        "value",
        F.col("p.id").alias("id"),
        F.coalesce(F.col("n.count"), F.lit(0)).cast("long").alias("count"),
        F.least("p.first_seen", "n.first_seen").alias("first_seen"),
        F.greatest("p.last_seen", "n.last_seen").alias("last_seen"),
        F.col("p.added_in").alias("added_in"),
    )
    stats = previous.groupBy("feature").agg(F.count("*").alias("existing"), F.max("id").alias("max_id"))
    candidates = merged.where(F.col("p.id").isNull() & (F.col("n.count") >= min_count)).select(
        "feature",
        "value",
        F.col("n.count").alias("count"),
        F.col("n.first_seen").alias("first_seen"),
        F.col("n.last_seen").alias("last_seen"),
    )
    rank = F.row_number().over(Window.partitionBy("feature").orderBy(F.desc("count"), F.asc("value")))
    admitted = (
        candidates.join(F.broadcast(capacities), "feature", "inner")
        .join(F.broadcast(stats), "feature", "left")
        .withColumn("rank", rank)
        .where(
            F.col("max_size").isNull() | (F.col("rank") <= F.col("max_size") - F.coalesce(F.col("existing"), F.lit(0)))
        )
        .select(
            "feature",
            "value",
            (F.coalesce(F.col("max_id"), F.lit(FIRST_ID - 1)) + F.col("rank")).cast("int").alias("id"),
            F.col("count").cast("long").alias("count"),
            "first_seen",
            "last_seen",
            F.lit(refresh).cast("int").alias("added_in"),
        )
    )
    return kept.unionByName(admitted)


@dataclass(frozen=True)
class VocabularyModel:
    """A fitted vocabulary: the table plus what the fit saw; ``table`` has VOCAB_SCHEMA."""

    table: DataFrame
    features: tuple[str, ...]
    refresh: int
    occurrences: DataFrame | None = None

    @classmethod
    def from_labels(cls, spark, labels: dict[str, list[str]], refresh: int = 1) -> "VocabularyModel":
        """Build a vocabulary by hand: ``labels[f][i]`` gets id ``FIRST_ID + i`` (for tests)."""
        rows = [(f, v, FIRST_ID + i, 0, None, None, refresh) for f, vs in labels.items() for i, v in enumerate(vs)]
        return cls(spark.createDataFrame(rows, VOCAB_SCHEMA), tuple(labels), refresh)

    def coverage(self) -> dict[str, float]:
        """Share of this refresh's (non-null) occurrences whose value has an id, per feature."""
        if self.occurrences is None:
            return {}
        totals = {
            r["feature"]: r["n"] for r in self.occurrences.groupBy("feature").agg(F.sum("count").alias("n")).collect()
        }
        kept = {r["feature"]: r["n"] for r in self.table.groupBy("feature").agg(F.sum("count").alias("n")).collect()}
        return {f: (kept.get(f, 0) / totals[f]) if totals.get(f) else 0.0 for f in self.features}

    def sizes(self) -> dict[str, int]:
        """num_embeddings per feature (``max(id) + 1``; reserved ids included); F rows to the driver."""
        got = {
            r["feature"]: int(r["n"]) for r in self.table.groupBy("feature").agg((F.max("id") + 1).alias("n")).collect()
        }
        return {f: got.get(f, NUM_RESERVED) for f in self.features}


class VocabularyBuilder:
    """Estimator: ``fit(raw_events, previous)`` -> :class:`VocabularyModel` (stable ids).

    Args:
        features: the categorical columns that get vocabularies (``schema.categorical``).
        cfg: admission thresholds and the window (``vocab`` section).
        time_col: the event time column the window selects on (``schema.time``).
    """

    def __init__(self, features: Sequence[str], cfg: VocabConfig | None = None, *, time_col: str | None = None):
        self.features = list(features)
        self.cfg = cfg or VocabConfig()
        self.time_col = time_col

    def fit(
        self, raw_events: DataFrame, previous: DataFrame | None = None, refresh: int | None = None
    ) -> VocabularyModel:
        """Count values in the configured window and extend ``previous`` (None: first build).

        ``refresh`` numbers this build (the stage runner counts it from the table's committed history);
        default: one more than the largest ``added_in`` of ``previous``.

        Raises:
            InputError: missing or mistyped columns, no rows in the window, or a feature whose
                values are all null (the message names it).
        """
        cfg, features, time_col = self.cfg, self.features, self.time_col
        if (cfg.start or cfg.end) and not time_col:
            raise InputError("vocab.start/vocab.end need a time column (schema.time)")
        spark = raw_events.sparkSession
        check_feature_columns(raw_events, features)
        events = select_window(raw_events, time_col, cfg.start, cfg.end)
        if events.isEmpty():
            window = f" in the window [{cfg.start}, {cfg.end}) of {time_col!r}" if time_col else ""
            raise InputError(f"input has no rows{window}")
        counts = value_counts(events, features, time_col).cache()
        seen = {r["feature"] for r in counts.select("feature").distinct().collect()}
        all_null = [f for f in features if f not in seen]
        if all_null:
            counts.unpersist()
            raise InputError(f"feature column(s) {all_null} have only null values in the input")
        if previous is None:
            previous, refresh = empty_vocabulary(spark), refresh or 1
        else:
            missing = [c for c in VOCAB_COLUMNS if c not in previous.columns]
            if missing:
                raise InputError(f"existing vocabulary table lacks column(s) {missing}")
            if refresh is None:
                refresh = int(previous.agg(F.coalesce(F.max("added_in"), F.lit(0))).head()[0]) + 1
            previous = previous.select(*VOCAB_COLUMNS)
        table = extend_vocabulary(previous, counts, _capacities(spark, cfg, features), cfg.min_count, refresh)
        return VocabularyModel(table=table, features=tuple(features), refresh=refresh, occurrences=counts)
