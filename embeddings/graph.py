"""The interaction graph of a click log: user-item edges (and optional item-item co-occurrence edges).

Any click log works: the user and item columns (string or integer) are named by the ``graph``
section, the time and label columns by ``schema``. Node ids carry their role, so the value 42 of
the user column and of the item column are two nodes::

    user:42 --(weight, events, last_seen)--> item:42

The edge table (one row per edge; FastRP reads it as undirected by default)::

    src string | dst string | weight double | events long | last_seen timestamp | kind string

``kind`` is ``user-item`` (src a user, dst an item) or ``item-item`` (two items, src < dst, each
pair once). An edge's ``weight`` sums its events' weights ``w_e`` (:func:`event_weights`), with the
recency decay ``w_e * 0.5 ** (age_e / half_life_days)`` when set, where ``age_e`` is measured from
the latest event in the window (not the wall clock, so a rerun gives the same table). Sums are taken
in DECIMAL(38, 18), exact and independent of the order Spark adds partial sums in, so a rerun or a
repartitioned input gives the same bits. Edges whose weight is <= 0 or below ``min_weight`` are
dropped. Nothing is collected to the driver.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.config import GraphConfig
from core.errors import ConfigError, InputError
from embeddings.io import require_columns
from embeddings.vocabulary import select_window

USER_ITEM = "user-item"
ITEM_ITEM = "item-item"
EDGE_COLUMNS = ["src", "dst", "weight", "events", "last_seen", "kind"]
EXACT = T.DecimalType(38, 18)  # order-free sums of event weights (20 integer digits)
_NODE_TYPES = (T.StringType, T.IntegerType, T.LongType, T.ShortType, T.ByteType)
_MICROS_PER_DAY = 86_400_000_000.0
_MICROS_PER_HOUR = 3_600_000_000.0


def node_id(column: str, prefix: str) -> Column:
    """``<prefix><value>`` with the value cast to string (``"user:" + 42`` -> ``"user:42"``)."""
    return F.concat(F.lit(prefix), F.col(column).cast("string"))


def event_weights(label: Column, cfg: GraphConfig) -> tuple[Column | None, Column]:
    """(the events that count, or None for all; each counted event's weight) under ``cfg.weight``.

    count: every event, 1. positives: clicks (label 1) only, 1. label: clicks weigh
    ``positive_weight`` and non-clicks (label 0) ``negative_weight``; other labels do not count.
    """
    if cfg.weight == "count":
        return None, F.lit(1.0)
    if cfg.weight == "positives":
        return label == 1, F.lit(1.0)
    return label.isin(0, 1), F.when(label == 1, F.lit(cfg.positive_weight)).otherwise(F.lit(cfg.negative_weight))


def decay(micros: Column, latest_micros: Column, half_life_days: float) -> Column:
    """``0.5 ** (age_days / half_life_days)``, ``age_days = (latest - t) / 1 day`` (an event one half-life older: 0.5)."""
    return F.pow(F.lit(0.5), (latest_micros - micros) / F.lit(_MICROS_PER_DAY) / F.lit(float(half_life_days)))


def check_columns(clicks: DataFrame, cfg: GraphConfig, time_col: str | None, label_col: str, what: str) -> None:
    """InputError naming a missing node/label/time column or a node column that is not string or integer."""
    needed = [cfg.user, cfg.item] + ([label_col] if cfg.weight != "count" else []) + ([time_col] if time_col else [])
    require_columns(clicks, needed, what)
    for role, column in (("graph.user", cfg.user), ("graph.item", cfg.item)):
        dtype = clicks.schema[column].dataType
        if not isinstance(dtype, _NODE_TYPES):
            raise InputError(
                f"{what}: {role} column {column!r} has type {dtype.simpleString()}; node ids must be string or integer"
            )
    if not time_col:
        needs = [k for k in ("start", "end", "half_life_days") if getattr(cfg, k) is not None]
        needs += ["cooccurrence.within_hours"] if cfg.cooccurrence.enabled and cfg.cooccurrence.within_hours else []
        if needs:
            raise ConfigError(f"graph.{needs[0]} needs a time column (schema.time)")


def build_edges(
    clicks: DataFrame, cfg: GraphConfig, *, time_col: str | None, label_col: str, what: str = "tables.clicks"
) -> DataFrame:
    """The edge table of ``clicks`` (columns :data:`EDGE_COLUMNS`; see the module docstring).

    Args:
        clicks: the click log, one row per event; rows with a null user or item are dropped.
        cfg: the ``graph`` section (columns, weight policy, window, decay, min_weight, co-occurrence).
        time_col: the event time column (``schema.time``; timestamp or date); None: ``last_seen`` is null.
        label_col: the 0/1 click label (``schema.label``), read by the positives and label policies.
        what: the table named in errors.

    Raises:
        InputError: a missing or mistyped column (the message names it).
        ConfigError: a window, decay or ``within_hours`` without a time column.
    """
    check_columns(clicks, cfg, time_col, label_col, what)
    events = select_window(clicks, time_col, cfg.start, cfg.end, what)
    if cfg.half_life_days is not None:  # ages run from the window's latest event, whichever events count
        latest = events.agg(F.max(F.unix_micros(F.col(time_col).cast("timestamp"))).alias("latest"))  # one row
    counted, weight = event_weights(F.col(label_col), cfg)
    keep = F.col(cfg.user).isNotNull() & F.col(cfg.item).isNotNull()
    events = events.where(keep if counted is None else keep & counted)
    ts = F.col(time_col).cast("timestamp") if time_col else F.lit(None).cast("timestamp")
    events = events.select(
        node_id(cfg.user, cfg.prefix(cfg.user)).alias("src"),
        node_id(cfg.item, cfg.prefix(cfg.item)).alias("dst"),
        ts.alias("ts"),
        weight.cast("double").alias("w"),
    )
    if cfg.half_life_days is not None:
        events = events.where(F.col("ts").isNotNull())  # an event without a time has no age
        events = events.crossJoin(F.broadcast(latest)).withColumn(
            "w", F.col("w") * decay(F.unix_micros("ts"), F.col("latest"), cfg.half_life_days)
        )
    user_item = (
        events.groupBy("src", "dst")
        .agg(
            F.sum(F.col("w").cast(EXACT)).cast("double").alias("weight"),
            F.count("*").alias("events"),
            F.max("ts").alias("last_seen"),
        )
        .where(_kept(cfg.min_weight))
        .withColumn("kind", F.lit(USER_ITEM))
        .select(*EDGE_COLUMNS)
    )
    if not cfg.cooccurrence.enabled:
        return user_item
    return user_item.unionByName(item_pairs(user_item, cfg).where(_kept(cfg.min_weight)))


def item_pairs(user_item: DataFrame, cfg: GraphConfig) -> DataFrame:
    """Item-item edges: each pair of a user's items (from its user-item edges) gains ``cooccurrence.weight``.

    A user's items are its ``max_items_per_user`` most recent (by ``last_seen``; ties and undated
    edges by item id), so heavy users do not dominate; with ``within_hours`` a pair counts only if
    the user's last events on the two items are that close. ``events`` is the number of users of
    the pair and ``last_seen`` the latest of those users' events on it.
    """
    co = cfg.cooccurrence
    recent = Window.partitionBy("src").orderBy(F.col("last_seen").desc_nulls_last(), F.col("dst").asc())
    items = (
        user_item.select("src", "dst", "last_seen")
        .withColumn("rank", F.row_number().over(recent))
        .where(F.col("rank") <= co.max_items_per_user)
        .drop("rank")
    )
    a, b = items.alias("a"), items.alias("b")
    on = (F.col("a.src") == F.col("b.src")) & (F.col("a.dst") < F.col("b.dst"))
    if co.within_hours is not None:
        gap = F.abs(F.unix_micros(F.col("a.last_seen")) - F.unix_micros(F.col("b.last_seen")))
        on = on & (gap <= F.lit(co.within_hours * _MICROS_PER_HOUR))
    users = F.count("*")
    return (
        a.join(b, on)
        .groupBy(F.col("a.dst").alias("src"), F.col("b.dst").alias("dst"))
        .agg(
            (users.cast("double") * F.lit(float(co.weight))).alias("weight"),
            users.alias("events"),
            F.max(F.greatest(F.col("a.last_seen"), F.col("b.last_seen"))).alias("last_seen"),
        )
        .withColumn("kind", F.lit(ITEM_ITEM))
        .select(*EDGE_COLUMNS)
    )


def _kept(min_weight: float) -> Column:
    return (F.col("weight") > 0) & (F.col("weight") >= F.lit(float(min_weight)))
