"""FastRP's input check: the edge table's columns, types, ids and weights, before anything is computed."""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.errors import InputError
from embeddings.io import require_columns

log = logging.getLogger(__name__)

ID_TYPES = (T.StringType, T.LongType, T.IntegerType, T.ShortType, T.ByteType)
NUMERIC_TYPES = (T.DoubleType, T.FloatType, T.LongType, T.IntegerType, T.ShortType, T.ByteType, T.DecimalType)


def validate_edges(raw_edges: DataFrame, cfg, what: str = "fastrp.edges") -> tuple[DataFrame, dict]:
    """Check the edge table and return ``(src, dst, weight double)`` plus counts.

    Raises:
        InputError: a named column is missing or has the wrong type, ids are null, weights are
            null/NaN/infinite/negative, or the table is empty. Nothing has been written yet.
    """
    needed = [cfg.src_col, cfg.dst_col] + ([cfg.weight_col] if cfg.weight_col else [])
    require_columns(raw_edges, needed, what)
    fields = {f.name: f.dataType for f in raw_edges.schema.fields}
    for col, flag in ((cfg.src_col, "--src-col"), (cfg.dst_col, "--dst-col")):
        if not isinstance(fields[col], ID_TYPES):
            raise InputError(
                f"{what}: id column {col!r} ({flag}) has type {fields[col].simpleString()}; "
                "expected string or an integer type"
            )
    src_t, dst_t = fields[cfg.src_col], fields[cfg.dst_col]
    if isinstance(src_t, T.StringType) != isinstance(dst_t, T.StringType):
        raise InputError(
            f"{what}: {cfg.src_col!r} is {src_t.simpleString()} but {cfg.dst_col!r} is "
            f"{dst_t.simpleString()}; both must be strings or both integers"
        )
    id_type = T.StringType() if isinstance(src_t, T.StringType) else (src_t if src_t == dst_t else T.LongType())
    if cfg.weight_col and not isinstance(fields[cfg.weight_col], NUMERIC_TYPES):
        raise InputError(
            f"{what}: weight column {cfg.weight_col!r} (--weight-col) has type "
            f"{fields[cfg.weight_col].simpleString()}; expected a number"
        )
    weight = F.col(cfg.weight_col).cast("double") if cfg.weight_col else F.lit(1.0)
    edges = raw_edges.select(
        F.col(cfg.src_col).cast(id_type).alias("src"),
        F.col(cfg.dst_col).cast(id_type).alias("dst"),
        weight.alias("weight"),
    )
    w = F.col("weight")
    bad_weight = w.isNull() | F.isnan(w) | (w < 0) | (F.abs(w) == float("inf"))
    row = edges.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col("src").isNull().cast("long")).alias("null_src"),
        F.sum(F.col("dst").isNull().cast("long")).alias("null_dst"),
        F.sum(bad_weight.cast("long")).alias("bad_weight"),
        F.sum((F.col("src") == F.col("dst")).cast("long")).alias("self_loops"),
    ).head()
    counts = {k: int(row[k] or 0) for k in ("rows", "null_src", "null_dst", "bad_weight", "self_loops")}
    if counts["rows"] == 0:
        raise InputError(f"{what}: the edge table has no rows")
    for key, col, flag in (("null_src", cfg.src_col, "--src-col"), ("null_dst", cfg.dst_col, "--dst-col")):
        if counts[key]:
            raise InputError(f"{what}: {counts[key]} row(s) have a null id in column {col!r} ({flag})")
    if counts["bad_weight"]:
        raise InputError(
            f"{what}: {counts['bad_weight']} row(s) have a null, NaN, infinite or negative weight "
            f"in column {cfg.weight_col!r} (--weight-col)"
        )
    return edges, counts


def validate_node_properties(
    raw: DataFrame, cfg, id_type: T.DataType, what: str = "tables.node_properties"
) -> tuple[DataFrame, frozenset[str]]:
    """Check the node property table and return ``(node, columns...)`` (numeric as double) and its string columns.

    Raises:
        InputError: the id column or a property column is missing, a column is neither a number nor a
            string, the ids' kind differs from the edges' (string vs integer), an id is null or
            repeated, or a numeric value is infinite. Null (and NaN) values are allowed: they count 0.
    """
    props = cfg.node_properties
    require_columns(raw, [props.id_col, *props.columns], what)
    if "node" in props.columns:
        raise InputError(f"{what}: property column 'node' clashes with the output's node column; rename it")
    fields = {f.name: f.dataType for f in raw.schema.fields}
    id_t = fields[props.id_col]
    if not isinstance(id_t, ID_TYPES) or isinstance(id_t, T.StringType) != isinstance(id_type, T.StringType):
        raise InputError(
            f"{what}: id column {props.id_col!r} (fastrp.node_properties.id_col) has type {id_t.simpleString()}; "
            f"expected {'string' if isinstance(id_type, T.StringType) else 'an integer type'} like the edges' ids"
        )
    categorical, selected = set(), [F.col(props.id_col).cast(id_type).alias("node")]
    for col in props.columns:
        if isinstance(fields[col], T.StringType):
            categorical.add(col)
            selected.append(F.col(col))
        elif isinstance(fields[col], NUMERIC_TYPES):
            selected.append(F.col(col).cast("double").alias(col))
        else:
            raise InputError(
                f"{what}: property column {col!r} (fastrp.node_properties.columns) has type "
                f"{fields[col].simpleString()}; expected a number or a string"
            )
    table = raw.select(*selected)
    infinite = [
        F.sum((F.abs(F.col(c)) == float("inf")).cast("long")).alias(c) for c in props.columns if c not in categorical
    ]
    row = table.agg(
        F.sum(F.col("node").isNull().cast("long")).alias("__null_ids"),
        (F.count(F.lit(1)) - F.countDistinct("node")).alias("__repeated_ids"),
        *infinite,
    ).head()
    if row["__null_ids"]:
        raise InputError(f"{what}: {row['__null_ids']} row(s) have a null id in column {props.id_col!r}")
    if row["__repeated_ids"]:
        raise InputError(
            f"{what}: {row['__repeated_ids']} row(s) repeat an id of column {props.id_col!r}; one row per node"
        )
    for col in props.columns:
        if col not in categorical and row[col]:
            raise InputError(f"{what}: {row[col]} row(s) have an infinite value in property column {col!r}")
    return table, frozenset(categorical)
