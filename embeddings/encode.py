"""Rewrite a table's categorical columns as vocabulary ids (and stable 64-bit value hashes).

For every feature ``f`` the output has ``f`` as int ids (array<int> for array columns: null value
-> 0, value not in the vocabulary -> the OOV id 1 under ``handle_invalid="keep"``) and
``f_hash``, the xxhash64 of the raw value as a string (null stays null). The hashes let hashed
embedding layouts and Unified Embedding give even out-of-vocabulary values a vector of their own.
Other columns pass through unchanged.

Each feature is a left join with its slice of the vocabulary; a slice is broadcast only when its
row count (counted on the executors) is at most ``broadcast_max_rows``. Nothing is collected to
the driver but per-feature counts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.config import EncodeConfig
from core.encoding import HASH_SUFFIX, MISSING_ID, OOV_ID
from core.errors import InputError
from embeddings.io import require_columns
from embeddings.vocabulary import VOCAB_COLUMNS, check_feature_columns

log = logging.getLogger(__name__)

_ROW = "__row"


def value_hash(col) -> F.Column:
    """xxhash64 of the value as a string; null stays null (Spark's xxhash64(null) is the seed)."""
    return F.when(col.isNull(), F.lit(None).cast("long")).otherwise(F.xxhash64(col.cast("string")))


def _lookup(vocab: DataFrame, feature: str, size: int, broadcast_max_rows: int) -> DataFrame:
    table = vocab.where(F.col("feature") == feature).select(F.col("value").alias("__value"), F.col("id").alias("__id"))
    return F.broadcast(table) if size <= broadcast_max_rows else table


def _id_column(raw, found, handle_invalid: str) -> F.Column:
    unknown = F.lit(OOV_ID) if handle_invalid == "keep" else F.lit(None)
    return (F.when(raw.isNull(), F.lit(MISSING_ID)).when(found.isNull(), unknown).otherwise(found)).cast("int")


def encode_scalar(df: DataFrame, feature: str, lookup: DataFrame, handle_invalid: str) -> DataFrame:
    """Replace scalar column ``feature`` by its id (null: unknown under 'skip'/'error')."""
    joined = df.join(lookup, df[feature].cast("string") == lookup["__value"], "left")
    return (
        joined.withColumn(feature + HASH_SUFFIX, value_hash(F.col(feature)))
        .withColumn(feature, _id_column(F.col(feature), F.col("__id"), handle_invalid))
        .drop("__value", "__id")
    )


def encode_array(df: DataFrame, feature: str, lookup: DataFrame, handle_invalid: str) -> DataFrame:
    """Replace array column ``feature`` by an array of ids, element order kept.

    ``df`` must carry the row key ``__row`` and be materialised (checkpointed), since the ids are
    computed on the exploded elements and joined back by that key.
    """
    elems = (
        df.select(_ROW, F.posexplode(feature).alias("pos", "value"))
        .join(lookup, F.col("value").cast("string") == F.col("__value"), "left")
        .select(_ROW, "pos", _id_column(F.col("value"), F.col("__id"), handle_invalid).alias("id"))
    )
    if handle_invalid == "skip":
        elems = elems.where(F.col("id").isNotNull())
    ids = (
        elems.groupBy(_ROW)
        .agg(F.array_sort(F.collect_list(F.struct("pos", "id"))).alias("__pairs"))
        .select(_ROW, F.transform("__pairs", lambda p: p["id"]).alias("__ids"))
    )
    out = (
        df.join(ids, _ROW, "left")
        .withColumn(feature + HASH_SUFFIX, F.transform(feature, lambda x: value_hash(x)))
        .withColumn(
            feature,
            F.when(F.col(feature).isNull(), F.lit(None)).otherwise(
                F.coalesce(F.col("__ids"), F.array().cast("array<int>"))
            ),
        )
        .drop("__ids")
    )
    return out


def encode(raw: DataFrame, vocab: DataFrame, features: Sequence[str], cfg: EncodeConfig | None = None) -> DataFrame:
    """Encode the ``features`` columns of ``raw`` with ``vocab`` (VOCAB_SCHEMA), per ``cfg.handle_invalid``.

    Raises:
        InputError: a feature column is missing or mistyped, the vocabulary lacks columns or has
            no rows for a feature, or (``handle_invalid="error"``) a value is not in the vocabulary.
    """
    cfg = cfg or EncodeConfig()
    features = list(features)
    check_feature_columns(raw, features)
    require_columns(vocab, VOCAB_COLUMNS, "vocabulary")
    sizes = {
        r["feature"]: r["n"]
        for r in vocab.where(F.col("feature").isin(features))
        .groupBy("feature")
        .count()
        .withColumnRenamed("count", "n")
        .collect()
    }
    absent = [f for f in features if f not in sizes]
    if absent:
        raise InputError(f"vocabulary has no rows for feature(s) {absent}: build it with these features first")
    arrays = [f for f in features if isinstance(raw.schema[f].dataType, T.ArrayType)]
    df = raw
    if arrays:
        # A stable row key, materialised once so the exploded side and the rows agree on it.
        df = raw.withColumn(_ROW, F.monotonically_increasing_id()).checkpoint(eager=True)
    for feature in features:
        lookup = _lookup(vocab, feature, sizes[feature], cfg.broadcast_max_rows)
        if feature in arrays:
            df = encode_array(df, feature, lookup, cfg.handle_invalid)
        else:
            df = encode_scalar(df, feature, lookup, cfg.handle_invalid)
    if arrays:
        df = df.drop(_ROW)
    scalar = [f for f in features if f not in arrays]
    if cfg.handle_invalid == "skip" and scalar:
        df = df.where(functools.reduce(lambda a, b: a & b, [F.col(f).isNotNull() for f in scalar]))
    if cfg.handle_invalid == "error":
        _raise_on_unknown(df, raw, features, arrays)
    return df.select(*raw.columns, *[f + HASH_SUFFIX for f in features])


def _raise_on_unknown(df: DataFrame, raw: DataFrame, features: list[str], arrays: list[str]) -> None:
    checks = [
        F.sum(F.when(F.col(f).isNull() & raw_notnull, 1).otherwise(0)).alias(f)
        for f, raw_notnull in ((f, F.col(f + HASH_SUFFIX).isNotNull()) for f in features if f not in arrays)
    ]
    checks += [F.sum(F.size(F.filter(f, lambda x: x.isNull()))).alias(f) for f in arrays]
    counts = df.agg(*checks).head().asDict()
    bad = {f: int(n) for f, n in counts.items() if n}
    if bad:
        raise InputError(f"values not in the vocabulary (handle_invalid='error'): {bad} unknown value(s) per feature")
