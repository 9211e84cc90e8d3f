"""Candidate retrieval over node vectors: the top-K candidates of each query node by dot or cosine score.

Symbols: ``Q`` queries of a block, ``C`` candidates of a block, ``D`` = ``embedding_dim``, ``K`` = ``retrieve.k``.

:func:`block_top_k` is the maths (numpy): one (Q, D) x (D, C) float32 BLAS product, exclusions masked,
a per-query selection (introselect, then a sort), ties broken by candidate index. :func:`top_k` is
the Spark side: a block-nested-loop join that never brings vectors to the driver. Queries and
candidates are hashed into blocks; each (query block, candidate block) pair meets in one task
(a cogroup), which keeps each query's local top-K; a window over the union keeps the global top-K::

    queries  (node, embedding, exclude) --qb = xxhash64(node) mod n_qb, replicated to every cb--+
                                                                                               +-> cogroup (qb, cb)
    candidates (candidate, vector) ------cb = xxhash64(node) mod n_cb, replicated to every qb--+    block_top_k
                                                                                                     |
    row_number() over (query ORDER BY score DESC, candidate ASC) <= K  <-----------------------------+

The float32 product only narrows the field: every pair within float32's error bound of the K-th
best float32 score is rescored per pair in float64 (a fixed-order sum over ``D``), and the top K is
picked on those exact scores, ties by candidate id. So the output does not depend on how BLAS
blocked the product, on the block size or on the partitioning.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.config import RetrieveConfig
from core.errors import InputError
from embeddings.io import require_columns

ROLE_SEP = ":"  # node ids are "<role>:<value>" (see core.config.GraphConfig)
USER, ITEM, OTHER = "user", "item", "other"
_LOCAL_SCHEMA = "query string, candidate string, score double"
_RESCORE_PAIRS = 8192  # pairs rescored per chunk: bounds the (pairs, D) float64 temporaries


# --------------------------------------------------------------------------- maths


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero (their cosine with anything is 0).

    Args:
        x: (N, D) array.

    Returns:
        (N, D) float64 array, row ``i`` equal to ``x[i] / ||x[i]||_2`` (or 0 where the norm is 0).
    """
    x = np.asarray(x, dtype=np.float64)
    norms = np.sqrt((x * x).sum(axis=1))  # (N,)
    safe = np.where(norms > 0, norms, 1.0)
    return x / safe[:, None]


def exclusion_mask(exclude, num_queries: int, num_candidates: int) -> np.ndarray:
    """A (Q, C) bool mask from None, a (Q, C) bool array, or Q collections of candidate indices."""
    if exclude is None:
        return np.zeros((num_queries, num_candidates), dtype=bool)
    if isinstance(exclude, np.ndarray) and exclude.dtype == bool:
        if exclude.shape != (num_queries, num_candidates):
            raise ValueError(f"exclude mask has shape {exclude.shape}, expected {(num_queries, num_candidates)}")
        return exclude
    if len(exclude) != num_queries:
        raise ValueError(f"exclude has {len(exclude)} entries for {num_queries} queries")
    lists = [np.fromiter(e, dtype=np.int64) if e is not None else np.empty(0, np.int64) for e in exclude]
    rows = np.repeat(np.arange(num_queries), [len(e) for e in lists])
    cols = np.concatenate(lists) if lists else np.empty(0, np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= num_candidates):
        raise ValueError(f"exclude names candidate indices outside [0, {num_candidates})")
    mask = np.zeros((num_queries, num_candidates), dtype=bool)
    mask[rows, cols] = True
    return mask


def _pair_scores(q: np.ndarray, c: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``q[rows[n]] . c[cols[n]]`` for each pair n, in float64, summed in the same order whatever the shapes."""
    out = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), _RESCORE_PAIRS):
        r, j = rows[start : start + _RESCORE_PAIRS], cols[start : start + _RESCORE_PAIRS]
        out[start : start + len(r)] = (q[r] * c[j]).sum(axis=1)  # (n, D) -> (n,)
    return out


def block_top_k(
    queries: np.ndarray,
    candidates: np.ndarray,
    k: int,
    exclude=None,
    *,
    metric: str = "dot",
) -> tuple[np.ndarray, np.ndarray]:
    """The K best candidates of each query by score, excluded pairs left out, ties by candidate index.

    ``score(q, c) = q . c`` (``dot``) or ``q . c / (||q|| ||c||)`` (``cosine``; a zero vector scores 0).
    One float32 BLAS product (Q, D) x (D, C) finds each query's K-th best score (``np.partition``);
    the pairs within float32's error bound ((D + 2) eps ||q|| max ||c||, twice) of it or above are
    rescored per pair in float64, and the K best of those by exact score (ties: lowest index) are
    kept, so the result does not depend on the block's shape. Pass candidates sorted by id to break
    ties by id.

    Args:
        queries: (Q, D) vectors.
        candidates: (C, D) vectors.
        k: K > 0, candidates kept per query.
        exclude: pairs never returned: None, a (Q, C) bool mask, or Q collections of candidate indices.
        metric: ``dot`` or ``cosine``.

    Returns:
        ``indices`` (Q, min(K, C)) int64 candidate indices and ``scores`` (Q, min(K, C)) float64, best first;
        a query with fewer allowed candidates is padded with index -1 and score NaN.
    """
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    if metric not in ("dot", "cosine"):
        raise ValueError(f"metric must be 'dot' or 'cosine', got {metric!r}")
    q64, c64 = np.asarray(queries, dtype=np.float64), np.asarray(candidates, dtype=np.float64)
    if q64.ndim != 2 or c64.ndim != 2 or q64.shape[1] != c64.shape[1]:
        raise ValueError(f"queries (Q, D) and candidates (C, D) must share D; got {q64.shape} and {c64.shape}")
    if metric == "cosine":
        q64, c64 = normalize_rows(q64), normalize_rows(c64)
    nq, nc = len(q64), len(c64)
    kk = min(k, nc)
    indices = np.full((nq, kk), -1, dtype=np.int64)
    scores = np.full((nq, kk), np.nan, dtype=np.float64)
    if nq == 0 or kk == 0:
        return indices, scores
    excluded = exclusion_mask(exclude, nq, nc)
    s = q64.astype(np.float32) @ c64.astype(np.float32).T  # (Q, C) float32 BLAS
    s[excluded] = -np.inf
    kth = -np.partition(-s, kk - 1, axis=1)[:, kk - 1]  # (Q,) the K-th best float32 score (-inf: fewer allowed)
    # float32 error of one score: at most (D + 2) eps ||q|| ||c|| (inputs rounded, D products summed)
    bound = (q64.shape[1] + 2) * np.finfo(np.float32).eps * np.sqrt((q64 * q64).sum(axis=1))
    bound *= float(np.sqrt((c64 * c64).sum(axis=1)).max())
    floor = np.where(np.isfinite(kth), kth - 2 * bound, -np.inf)  # (Q,) below this no pair can be in the top K
    rows, cols = np.nonzero((s >= floor[:, None]) & ~excluded)  # the possible top K (and near ties), per query
    exact = _pair_scores(q64, c64, rows, cols)
    order = np.lexsort((cols, -exact, rows))  # by query, exact score descending, index ascending
    rows, cols, exact = rows[order], cols[order], exact[order]
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=nq))[:-1]])
    place = np.arange(len(rows)) - starts[rows]
    kept = place < kk
    indices[rows[kept], place[kept]], scores[rows[kept], place[kept]] = cols[kept], exact[kept]
    return indices, scores


# --------------------------------------------------------------------------- Spark


def role_of(node: F.Column) -> F.Column:
    """The role of a node id ``"<role>:<value>"``: ``user``, ``item``, else ``other`` (a bounded set to group on)."""
    role = F.substring_index(node, ROLE_SEP, 1)
    return F.when(node.contains(ROLE_SEP) & role.isin(USER, ITEM), role).otherwise(F.lit(OTHER))


def num_blocks(count: int, block_size: int) -> int:
    """Blocks of about ``block_size`` rows for ``count`` rows (at least 1)."""
    return max(1, math.ceil(count / block_size))


def block_of(node: F.Column, n: int) -> F.Column:
    """A node's block in [0, n): its id's xxhash64 mod n (the same on any cluster and partitioning)."""
    return F.pmod(F.xxhash64(node), F.lit(n)).cast("int")


def _score_blocks(k: int, metric: str):
    """The cogroup function: one (query block, candidate block) pair -> each query's local top-K."""

    def score(queries: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
        if queries.empty or candidates.empty:
            return pd.DataFrame(
                {
                    "query": pd.Series([], dtype=object),
                    "candidate": pd.Series([], dtype=object),
                    "score": pd.Series([], dtype=np.float64),
                }
            )
        candidates = candidates.sort_values("candidate", kind="stable", ignore_index=True)  # ties: by id
        ids = candidates["candidate"].to_numpy(dtype=object)
        column = {node: j for j, node in enumerate(ids)}
        exclude = [
            [column[n] for n in (*(seen if seen is not None else ()), node) if n in column]
            for node, seen in zip(queries["node"], queries["exclude"])
        ]
        q = np.stack(queries["embedding"].to_numpy()).astype(np.float32)  # (Q, D)
        c = np.stack(candidates["vector"].to_numpy()).astype(np.float32)  # (C, D)
        idx, sc = block_top_k(q, c, k, exclude, metric=metric)
        keep = idx >= 0  # (Q, K)
        return pd.DataFrame(
            {
                "query": np.repeat(queries["node"].to_numpy(dtype=object), keep.sum(axis=1)),
                "candidate": ids[idx[keep]],
                "score": sc[keep],
            }
        )

    return score


def _seen_items(edges: DataFrame, src_col: str, dst_col: str) -> DataFrame:
    """(node, exclude): each user's items, from edges in either direction."""
    require_columns(edges, [src_col, dst_col], "tables.edges")
    ends = edges.select(F.col(src_col).cast("string").alias("a"), F.col(dst_col).cast("string").alias("b"))
    pairs = ends.unionByName(ends.select(F.col("b").alias("a"), F.col("a").alias("b")))
    pairs = pairs.filter((role_of(F.col("a")) == USER) & (role_of(F.col("b")) == ITEM)).distinct()
    return pairs.groupBy(F.col("a").alias("node")).agg(F.collect_list("b").alias("exclude"))


def top_k(
    embeddings: DataFrame,
    cfg: RetrieveConfig,
    *,
    edges: DataFrame | None = None,
    node_col: str = "node",
    embedding_col: str = "embedding",
    src_col: str = "src",
    dst_col: str = "dst",
) -> DataFrame:
    """The ``cfg.k`` best candidates of each query node, ranked 1..K, computed blockwise on the executors.

    Queries: nodes of the roles ``cfg.queries`` (a user gets items, an item similar items).
    Candidates: item nodes (``cfg.same_type``) or every node. A query never gets itself; with
    ``cfg.exclude_seen`` and ``edges``, a user never gets the items it has edges to. Only counts
    reach the driver; the output is the same for any block size and partitioning.

    Args:
        embeddings: (``node_col``, ``embedding_col``): one (D,) float vector per node id ``"<role>:<value>"``.
        cfg: the ``retrieve`` section.
        edges: the edge table (``src_col``, ``dst_col``), read only when ``cfg.exclude_seen``.

    Returns:
        Frame ``(query string, rank int, candidate string, score double)``, K rows per query (fewer
        when fewer candidates are allowed), ranks by score descending, then candidate id ascending.

    Raises:
        InputError: a column is missing, a vector is null or of another length, there is no item
            node, or no node of the query roles.
    """
    require_columns(embeddings, [node_col, embedding_col], "tables.embeddings")
    vec = F.col(embedding_col)
    if not isinstance(embeddings.schema[embedding_col].dataType, T.ArrayType):
        from pyspark.ml.functions import vector_to_array

        vec = vector_to_array(vec)
    nodes = embeddings.select(
        F.col(node_col).cast("string").alias("node"), vec.cast("array<float>").alias("embedding")
    ).withColumn("role", role_of(F.col("node")))
    stats = nodes.groupBy("role").agg(
        F.count("*").alias("n"),
        F.sum(F.col("embedding").isNull().cast("int")).alias("nulls"),
        F.min(F.size("embedding")).alias("min_dim"),
        F.max(F.size("embedding")).alias("max_dim"),
    )
    by_role = {r["role"]: r for r in stats.collect()}  # one row per role
    counts = {role: r["n"] for role, r in by_role.items()}
    if any(r["nulls"] for r in by_role.values()):
        raise InputError(f"tables.embeddings: column {embedding_col!r} has null vectors")
    dims = {d for r in by_role.values() for d in (r["min_dim"], r["max_dim"]) if d is not None}
    if len(dims) > 1:
        raise InputError(f"tables.embeddings: column {embedding_col!r} holds vectors of lengths {sorted(dims)}")
    if not counts.get(ITEM):
        raise InputError(
            f"tables.embeddings: no item nodes (ids '{ITEM}{ROLE_SEP}...') to retrieve; "
            f"nodes by role: {dict(sorted(counts.items())) or 'none'}"
        )
    num_queries = sum(counts.get(role, 0) for role in cfg.queries)
    if num_queries == 0:
        raise InputError(f"tables.embeddings: no nodes of the query roles {cfg.queries} (retrieve.queries)")
    num_candidates = counts[ITEM] if cfg.same_type else sum(counts.values())
    n_qb, n_cb = num_blocks(num_queries, cfg.block_size), num_blocks(num_candidates, cfg.block_size)

    queries = nodes.filter(F.col("role").isin(list(cfg.queries))).select("node", "embedding")
    if cfg.exclude_seen and edges is not None:
        queries = queries.join(_seen_items(edges, src_col, dst_col), "node", "left")
    else:
        queries = queries.withColumn("exclude", F.lit(None).cast("array<string>"))
    queries = queries.withColumn("qb", block_of(F.col("node"), n_qb)).withColumn(
        "cb", F.explode(F.sequence(F.lit(0), F.lit(n_cb - 1)))
    )  # each query once per candidate block
    candidates = nodes.filter(F.col("role") == ITEM) if cfg.same_type else nodes
    candidates = (
        candidates.select(F.col("node").alias("candidate"), F.col("embedding").alias("vector"))
        .withColumn("cb", block_of(F.col("candidate"), n_cb))
        .withColumn("qb", F.explode(F.sequence(F.lit(0), F.lit(n_qb - 1))))
    )  # each candidate once per query block (own column names: the two sides of the cogroup share a lineage)
    local = (
        queries.groupBy("qb", "cb")
        .cogroup(candidates.groupBy("qb", "cb"))
        .applyInPandas(_score_blocks(cfg.k, cfg.metric), _LOCAL_SCHEMA)
    )
    best_first = Window.partitionBy("query").orderBy(F.col("score").desc(), F.col("candidate").asc())
    ranked = local.withColumn("rank", F.row_number().over(best_first)).filter(F.col("rank") <= cfg.k)
    return ranked.select("query", F.col("rank").cast("int"), "candidate", "score")


__all__ = ["block_top_k", "exclusion_mask", "normalize_rows", "top_k"]
