"""FastRP on Spark: block-sparse propagation over block-partitioned RDDs, identical output for any partitioning.

The maths lives in :mod:`embeddings.fastrp`; this module only moves blocks around. Layout:

* nodes ``(node, block, idx)``: block = key(node) mod B, B = ceil(N / block_size) (block_size by
  default from N and D only: blocks of <= 256 MiB of float32 X); idx = rank of the id inside its
  block. Both depend on the ids alone, never on partitions, cluster size or arrival order.
* edge blocks ``(col_block b, row_block a, CSR of P_ab)``: built without joins; edges leave their
  partitions as binary payloads per column block, get their ranks in two cogroups with the node
  table, and each row block's CSR slices and degrees are built from edges sorted by (b, i, j, w),
  so degrees and duplicate sums are computed in one fixed order.
* iterations run on RDDs keyed by block and partitioned by :func:`block_partition`: P (one record
  per column block) and the state (X_k, E_k, ids; one record per block, float32) never move. One
  iteration is one shuffle: the non-empty row chunks of the partial products P_ab X_b go to their
  row block a, where they meet the block's state (a co-partitioned union, no shuffle); each chunk is
  summed in b order as its partials arrive (so the bits do not depend on arrival order), then
  X_k and E_k = E_{k-1} + alpha_k l2rows(X_k) are computed in the same task. Each state is persisted
  and checkpointed (reliable RDD checkpoints in the run's folder by default, ``checkpoint: local``
  for executor-local ones), so the lineage stays one iteration long.

The driver only sees counts, per-block sizes, the numbers of the row chunks each slice P_ab
touches, and one moment triple (count, mean, M2) per block for standardisation. Node ids: string
or integral (byte/short/int/long), the output keeps the input type. Duplicate edges add their
weights; an undirected self loop counts once; nodes with no out-edges (including nodes whose only
edges are self loops of weight 0, or sinks of a directed graph) propagate nothing and get
sigma * l2rows(R) (zero when ``self_influence`` is 0). Nodes absent from the edge table are not
embedded.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.errors import InputError
from embeddings import fastrp as fr
from embeddings.io import WriteResult, delta_version, require_columns, write_delta

log = logging.getLogger(__name__)

ID_TYPES = (T.StringType, T.LongType, T.IntegerType, T.ShortType, T.ByteType)
NUMERIC_TYPES = (T.DoubleType, T.FloatType, T.LongType, T.IntegerType, T.ShortType, T.ByteType, T.DecimalType)
STORE = np.float32  # dtype of X, E and partial products between stages
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
EDGE_BATCH_ROWS = 262_144  # edges per Arrow batch while the run lasts (about 6 MiB of long ids and weights)

EDGE_BLOCK_SCHEMA = T.StructType([
    T.StructField("b", T.IntegerType()), T.StructField("a", T.IntegerType()),
    T.StructField("indptr", T.BinaryType()), T.StructField("indices", T.BinaryType()),
    T.StructField("data", T.BinaryType()),
])
EDGE_PAYLOAD_SCHEMA = T.StructType([
    T.StructField("b", T.IntegerType()), T.StructField("src", T.BinaryType()), T.StructField("dst", T.BinaryType()),
    T.StructField("w", T.BinaryType()),
])
PAYLOAD_SCHEMA = T.StructType([
    T.StructField("a", T.IntegerType()), T.StructField("b", T.IntegerType()), T.StructField("src", T.BinaryType()),
    T.StructField("j", T.BinaryType()), T.StructField("w", T.BinaryType()),
])
INIT_SCHEMA = T.StructType([
    T.StructField("block", T.IntegerType()), T.StructField("ids", T.BinaryType()), T.StructField("degree", T.BinaryType()),
])
OUT_CHUNK_SCHEMA = T.StructType([
    T.StructField("block", T.IntegerType()), T.StructField("chunk", T.IntegerType()),
    T.StructField("ids", T.BinaryType()), T.StructField("e", T.BinaryType()),
])


# --------------------------------------------------------------------------- input


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
            raise InputError(f"{what}: id column {col!r} ({flag}) has type {fields[col].simpleString()}; "
                             "expected string or an integer type")
    src_t, dst_t = fields[cfg.src_col], fields[cfg.dst_col]
    if isinstance(src_t, T.StringType) != isinstance(dst_t, T.StringType):
        raise InputError(f"{what}: {cfg.src_col!r} is {src_t.simpleString()} but {cfg.dst_col!r} is "
                         f"{dst_t.simpleString()}; both must be strings or both integers")
    id_type = T.StringType() if isinstance(src_t, T.StringType) else (src_t if src_t == dst_t else T.LongType())
    if cfg.weight_col and not isinstance(fields[cfg.weight_col], NUMERIC_TYPES):
        raise InputError(f"{what}: weight column {cfg.weight_col!r} (--weight-col) has type "
                         f"{fields[cfg.weight_col].simpleString()}; expected a number")
    weight = F.col(cfg.weight_col).cast("double") if cfg.weight_col else F.lit(1.0)
    edges = raw_edges.select(F.col(cfg.src_col).cast(id_type).alias("src"),
                             F.col(cfg.dst_col).cast(id_type).alias("dst"), weight.alias("weight"))
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
        raise InputError(f"{what}: {counts['bad_weight']} row(s) have a null, NaN, infinite or negative weight "
                         f"in column {cfg.weight_col!r} (--weight-col)")
    return edges, counts


# --------------------------------------------------------------------------- layout helpers


def _chunks(n_rows: int, chunk_rows: int) -> range:
    return range(max(1, math.ceil(n_rows / chunk_rows)))


class _Workdir:
    """A per-run folder under the checkpoint dir; parquet writes here cut the lineage."""

    def __init__(self, spark: SparkSession, checkpoint_dir: str):
        self.spark = spark
        self.path = f"{checkpoint_dir.rstrip('/')}/fastrp-{uuid.uuid4().hex[:12]}"

    def save(self, df: DataFrame, name: str) -> DataFrame:
        path = f"{self.path}/{name}"
        df.write.mode("overwrite").parquet(path)
        return self.spark.read.parquet(path)

    def delete(self, name: str | None = None) -> None:
        """Delete the run folder, a name inside it, or a full path (a checkpoint file)."""
        jvm = self.spark.sparkContext._jvm
        full = self.path if name is None else (name if ":" in name or name.startswith("/") else f"{self.path}/{name}")
        path = jvm.org.apache.hadoop.fs.Path(full)
        fs = path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        fs.delete(path, True)


def csr_slice(i: np.ndarray, j: np.ndarray, w: np.ndarray, n_rows: int, n_cols: int) -> tuple:
    """CSR (indptr int64, indices int32, data float64) of S_ab from its entries, duplicates summed.

    Entries are put in (i, j, w) order first, so the sums never depend on the order they arrived in.

    Args:
        i, j: (m,) row and column ranks; w: (m,) weights.
    """
    key = i.astype(np.int64) * n_cols + j
    order = np.lexsort((w, key))
    key, w = key[order], w[order]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else np.zeros(0, np.int64)
    data = np.add.reduceat(w, starts) if len(key) else np.zeros(0)
    rows, cols = key[starts] // n_cols, key[starts] % n_cols
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))]).astype(np.int64)
    return indptr, cols.astype(np.int32), data.astype(np.float64)


# --------------------------------------------------------------------------- stages


def count_nodes(edges: DataFrame) -> int:
    """N: distinct ids over both endpoint columns (a count, nothing is collected)."""
    return distinct_nodes(edges).count()


def distinct_nodes(edges: DataFrame) -> DataFrame:
    """``(node)``: every id that appears as src or dst, once."""
    return edges.select(F.col("src").alias("node")).union(edges.select(F.col("dst").alias("node"))).distinct()


def index_nodes(nodes: DataFrame, num_blocks: int, id_type: T.DataType) -> DataFrame:
    """Nodes ``(node, block, idx)``: block = key mod B, idx = rank of the id inside its block."""
    with_block = T.StructType([T.StructField("node", id_type), T.StructField("block", T.IntegerType())])

    def assign_block(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            keys = fr.node_keys(pdf["node"])
            yield pd.DataFrame({"node": pdf["node"], "block": (keys % np.uint64(num_blocks)).astype(np.int32)})

    schema = T.StructType(with_block.fields + [T.StructField("idx", T.IntegerType())])

    def rank_in_block(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values("node", kind="stable").reset_index(drop=True)
        pdf["idx"] = np.arange(len(pdf), dtype=np.int32)
        return pdf

    return nodes.mapInPandas(assign_block, with_block).groupBy("block").applyInPandas(rank_in_block, schema)


def edge_blocks(edges: DataFrame, nodes: DataFrame, directed: bool, block_sizes: dict[int, int],
                num_blocks: int) -> DataFrame:
    """CSR blocks of P = D^-1 S keyed by (col block b, row block a); b = -1 rows carry the degrees of a.

    No joins and no per-edge rows in any shuffle: each batch of edges leaves its partition as one
    binary payload per column block b; a cogroup with the node table by b gives each dst its rank j
    (payloads per (a, b) leave), a second one by the row block a
    (src gets its rank i; the CSR slices and degrees are built from edges sorted by (b, i, j, w),
    so sums never depend on arrival order).
    """
    def to_col_blocks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Map side: this batch's edges (plus reversed ones if undirected) as one payload per column block."""
        for pdf in batches:
            src, dst, w = pdf["src"].to_numpy(), pdf["dst"].to_numpy(), pdf["weight"].to_numpy(dtype=np.float64)
            if not directed:  # each non-loop edge also reversed; a self loop is stored once
                off = src != dst
                src, dst, w = np.concatenate([src, dst[off]]), np.concatenate([dst, src[off]]), np.concatenate([w, w[off]])
            b = (fr.node_keys(dst) % np.uint64(num_blocks)).astype(np.int64)
            rows = []
            for col_block in np.unique(b).tolist():
                sel = b == col_block
                rows.append((col_block, pickle.dumps(src[sel]), pickle.dumps(dst[sel]), w[sel].tobytes()))
            yield pd.DataFrame(rows, columns=["b", "src", "dst", "w"])

    def col_side(edges_pdf: pd.DataFrame, nodes_pdf: pd.DataFrame) -> pd.DataFrame:
        """Column block b: each edge's dst gets its rank j in b; one payload per row block a."""
        if len(edges_pdf) == 0:
            return pd.DataFrame(columns=["a", "b", "src", "j", "w"])
        b = int(edges_pdf["b"].iloc[0])
        ids = nodes_pdf.sort_values("idx")["node"].to_numpy()
        src = np.concatenate([pickle.loads(x) for x in edges_pdf["src"]])
        dst = np.concatenate([pickle.loads(x) for x in edges_pdf["dst"]])
        w = np.concatenate([np.frombuffer(x, dtype=np.float64) for x in edges_pdf["w"]])
        j = np.searchsorted(ids, dst).astype(np.int32)  # rank of dst in block b
        a = (fr.node_keys(src) % np.uint64(num_blocks)).astype(np.int64)
        rows = []
        for row_block in np.unique(a).tolist():
            sel = a == row_block
            rows.append((row_block, b, pickle.dumps(src[sel]), j[sel].tobytes(), w[sel].tobytes()))
        return pd.DataFrame(rows, columns=["a", "b", "src", "j", "w"])

    def row_side(pay_pdf: pd.DataFrame, nodes_pdf: pd.DataFrame) -> pd.DataFrame:
        if len(pay_pdf) == 0:
            return pd.DataFrame(columns=["b", "a", "indptr", "indices", "data"])
        a = int(pay_pdf["a"].iloc[0])
        n_a = block_sizes[a]
        ids = nodes_pdf.sort_values("idx")["node"].to_numpy()
        by_b: dict[int, list] = {}
        for b, src, j, w in zip(pay_pdf["b"], pay_pdf["src"], pay_pdf["j"], pay_pdf["w"]):
            by_b.setdefault(int(b), []).append((np.searchsorted(ids, pickle.loads(src)).astype(np.int64),  # rank in a
                                                np.frombuffer(j, dtype=np.int32), np.frombuffer(w, dtype=np.float64)))
        degree, slices = np.zeros(n_a), []
        for col_block in sorted(by_b):  # degrees add the slices in b order: fixed, like everything below
            i, j, w = (np.concatenate(p) for p in zip(*by_b.pop(col_block)))
            indptr, indices, data = csr_slice(i, j, w, n_a, block_sizes[col_block])
            degree += np.bincount(np.repeat(np.arange(n_a), np.diff(indptr)), weights=data, minlength=n_a)
            slices.append((col_block, indptr, indices, data))
        inv = fr.inverse_degree(degree)
        rows = [(-1, a, b"", b"", degree.tobytes())]
        for col_block, indptr, indices, data in slices:
            data = data * np.repeat(inv, np.diff(indptr))
            rows.append((col_block, a, indptr.tobytes(), indices.tobytes(), data.tobytes()))
        return pd.DataFrame(rows, columns=["b", "a", "indptr", "indices", "data"])

    by_b = edges.mapInPandas(to_col_blocks, EDGE_PAYLOAD_SCHEMA)
    payloads = by_b.groupBy("b").cogroup(nodes.groupBy("block")).applyInPandas(col_side, PAYLOAD_SCHEMA)
    return payloads.groupBy("a").cogroup(nodes.groupBy("block")).applyInPandas(row_side, EDGE_BLOCK_SCHEMA)


def block_inputs(nodes: DataFrame, degrees: DataFrame, block_sizes: dict[int, int]) -> DataFrame:
    """One row per block ``(block, ids, degree)``: the block's node ids in idx order and their degrees.

    ``ids`` is a pickled numpy array and ``degree`` float64 bytes; a few bytes per node, so the
    state built from them (:func:`initial_rdds`) is computed where it is cached, never shuffled.
    """
    def inputs(nodes_pdf: pd.DataFrame, deg_pdf: pd.DataFrame) -> pd.DataFrame:
        block = int(nodes_pdf["block"].iloc[0])
        ids = nodes_pdf.sort_values("idx")["node"].to_numpy()
        degree = deg_pdf["data"].iloc[0] if len(deg_pdf) else np.zeros(block_sizes[block]).tobytes()
        return pd.DataFrame({"block": [block], "ids": [pickle.dumps(ids)], "degree": [bytes(degree)]})

    deg = degrees.select(F.col("a").alias("block"), "data")
    return nodes.groupBy("block").cogroup(deg.groupBy("block")).applyInPandas(inputs, INIT_SCHEMA)


# --------------------------------------------------------------------------- block RDDs
#
# From here on every dataset is an RDD keyed by block id (or by a tuple whose first element is the
# block id) and partitioned by :func:`block_partition`, so P and the state stay where they are and
# only the partial products P_ab X_b cross the network: one shuffle per iteration.


def block_partition(key) -> int:
    """The partition function of every keyed RDD here: the block id, ``key`` or ``key[0]``."""
    return int(key[0]) if isinstance(key, tuple) else int(key)


def zip_blocks(left, right, num_partitions: int, is_left: Callable[[object], bool]):
    """``(block, (left value | None, right value | None))`` of two RDDs keyed and partitioned by block.

    Both sides share the partitioner, so Spark unions them partition by partition (no shuffle) and
    ``is_left(value)`` tells the sides apart (no tagging pass). If Spark ever could not, they are
    shuffled by block first, which gives the same pairs.
    """
    union = _copartitioned_union(left, right, num_partitions)

    def pair(records: Iterator) -> Iterator:
        merged: dict = {}
        for key, value in records:
            merged.setdefault(key, [None, None])[0 if is_left(value) else 1] = value
        for key in sorted(merged):
            yield key, tuple(merged.pop(key))

    return union.mapPartitions(pair, preservesPartitioning=True)


def _copartitioned_union(left, right, num_partitions: int):
    """Partition i of ``left`` then partition i of ``right`` (no shuffle when both are partitioned by block).

    A shuffle's output (``partitionBy``) and a cached RDD carry different but wire-compatible
    pickle deserializers (batched lists of pickled records), and ``RDD.union`` would then re-pickle
    both sides through identity maps: Python workers nested inside the consumer's worker, which is
    slower and can deadlock Spark 4's single-threaded Python I/O. So the JVM union is used directly
    whenever both sides are batched pickles.
    """
    from pyspark import RDD
    from pyspark.serializers import BatchedSerializer, CPickleSerializer

    def batched_pickle(rdd) -> bool:
        d = rdd._jrdd_deserializer
        return isinstance(d, BatchedSerializer) and isinstance(d.serializer, CPickleSerializer)

    if batched_pickle(left) and batched_pickle(right):
        union = RDD(left._jrdd.union(right._jrdd), left.ctx, left._jrdd_deserializer)
        if left.partitioner == right.partitioner and union.getNumPartitions() == num_partitions:
            union.partitioner = left.partitioner
    else:
        union = left.union(right)
    if union.getNumPartitions() != num_partitions:  # not co-partitioned: shuffle (same result, slower)
        log.warning("fastrp: block RDDs are not co-partitioned; shuffling them by block")
        union = union.partitionBy(num_partitions, block_partition)
    return union


def _is_list(value) -> bool:
    return isinstance(value, list)


def initial_rdds(block_rows: DataFrame, params: fr.FastRPParams, num_partitions: int):
    """The state ``(block, (X_0, E_0, ids))``, partitioned by block: X_0 = diag(deg^beta) R, E_0 = sigma l2rows(R).

    R comes from (seed, node id), so each block's X_0 and E_0 (float32 (n_b, D)) are computed in
    the task that caches them from the rows of :func:`block_inputs` (ids and degrees only).
    """
    def state(value) -> tuple:
        ids, degree = pickle.loads(value[0]), np.frombuffer(value[1], dtype=np.float64)
        r = fr.random_projection(fr.node_keys(ids), params.dim, params.sparsity, params.seed)  # (n_b, D)
        x0, e0 = fr.initial_state(r, degree, params.normalization_strength, params.self_influence)
        return x0.astype(STORE), e0.astype(STORE), ids

    return (block_rows.rdd.map(lambda r: (r["block"], (bytes(r["ids"]), bytes(r["degree"]))))
            .partitionBy(num_partitions, block_partition).mapValues(state))


def p_rdd(p_blocks: DataFrame, num_partitions: int, block_sizes: dict[int, int]):
    """``(b, [(a, P_ab as CSR parts), ...] sorted by a)``: the column block b's slices of P, one record per b."""
    def parts(r) -> tuple:
        return (r["b"], (r["a"], np.frombuffer(r["indptr"], dtype=np.int64), np.frombuffer(r["indices"], dtype=np.int32),
                         np.frombuffer(r["data"], dtype=np.float64)))

    return (p_blocks.rdd.map(parts).groupByKey(num_partitions, block_partition)
            .mapValues(lambda slices: sorted(slices, key=lambda s: s[0])))


def nonempty_chunks(indptr: np.ndarray, n_rows: int, chunk_rows: int) -> list[int]:
    """Row chunks of a CSR slice that hold at least one entry (the only partials sent for it)."""
    return [c for c in _chunks(n_rows, chunk_rows)
            if indptr[min((c + 1) * chunk_rows, n_rows)] > indptr[c * chunk_rows]]


def expected_partials(p: "RDD", block_sizes: dict[int, int], chunk_rows: int) -> dict[tuple[int, int], list[int]]:
    """``(a, chunk) -> sorted column blocks b`` that send a partial for that chunk (static: P never changes).

    The driver gets one small list per slice P_ab (chunk numbers, not the graph); the reducers use
    it to add each chunk's partials in b order as soon as they can, without sorting or spilling.
    """
    def chunk_lists(item) -> Iterator:
        b, slices = item
        for a, indptr, _indices, _data in slices:
            yield a, b, nonempty_chunks(indptr, block_sizes[a], chunk_rows)

    expected: dict[tuple[int, int], list[int]] = {}
    for a, b, chunks in sorted(p.flatMap(chunk_lists).collect()):
        for c in chunks:
            expected.setdefault((a, c), []).append(b)
    return expected


def iterate(p: "RDD", state: "RDD", expected: dict, weight: float, params: fr.FastRPParams,
            block_sizes: dict[int, int], chunk_rows: int, num_partitions: int, last: bool = False) -> "RDD":
    """One FastRP iteration: ``(block, (X_{k-1}, E_{k-1}, ids))`` -> ``(block, (X_k, E_k, ids))``, one shuffle.

    Map side: each column block b multiplies its slices P_ab by X_b (float64) and sends the
    non-empty row chunks of each product (float32) to row block a. Reduce side: the partials meet
    the state of block a (co-partitioned, no shuffle); each chunk is summed in the order of
    ``expected[(a, chunk)]`` (b ascending) as soon as its next partial is there, so the bits never
    depend on arrival order and nothing is sorted or spilled. Then X_k = P X_{k-1} (gds: its
    L2-normalised rows) and E_k = E_{k-1} + alpha_k l2rows(X_k) (gds: + alpha_k X_k), next to the
    data they need. Memory per task: its blocks' state, one float64 accumulator per block and the
    partials that arrived ahead of their turn. The ``last`` iteration keeps no X (nothing reads it).
    """
    dim, variant = params.dim, params.variant

    def multiply(item) -> Iterator:
        import scipy.sparse as sp

        b, (slices, state_b) = item
        if slices is None or state_b is None:
            return
        x_b = state_b[0].astype(np.float64)  # (n_b, D)
        for a, indptr, indices, data in slices:
            n_a = block_sizes[a]
            y = sp.csr_matrix((data, indices, indptr), shape=(n_a, x_b.shape[0])) @ x_b  # (n_a, D)
            for c in nonempty_chunks(indptr, n_a, chunk_rows):
                yield (a, c, b), y[c * chunk_rows:(c + 1) * chunk_rows].astype(STORE)

    def combine(records: Iterator) -> Iterator:
        states, acc, pending, done = {}, {}, {}, {}
        for key, value in records:
            if not isinstance(key, tuple):  # the state of a block of this partition
                _x_prev, e, ids = value
                states[key] = (e, ids)
                acc.setdefault(key, np.zeros((block_sizes[key], dim), dtype=np.float64))
                continue
            a, c, b = key
            if a not in acc:
                acc[a] = np.zeros((block_sizes[a], dim), dtype=np.float64)
            waiting = pending.setdefault((a, c), {})
            waiting[b] = value
            order, n = expected[(a, c)], done.get((a, c), 0)
            while n < len(order) and order[n] in waiting:  # add in b order whatever is next in line
                acc[a][c * chunk_rows:c * chunk_rows + len(waiting[order[n]])] += waiting.pop(order[n])
                n += 1
            done[(a, c)] = n
        left = [k for k, v in pending.items() if v]
        if left:
            raise RuntimeError(f"fastrp: partials for chunks {left[:5]} never got their turn (expected order broken)")
        for block in sorted(states):
            e, ids = states.pop(block)
            propagated = acc.pop(block)
            x = (fr.row_normalize(propagated) if variant == "gds" else propagated).astype(STORE)
            del propagated
            # paper: E += alpha_k l2rows(X_k); gds: X_k is already normalised, E += alpha_k X_k
            row_weights = np.full(len(x), weight) if variant == "gds" else weight * fr.inverse_row_norms(x)
            yield block, (None if last else x, fr.add_scaled_rows(e, x, row_weights), ids)

    partials = zip_blocks(p, state, num_partitions, _is_list).flatMap(multiply)
    shuffled = partials.partitionBy(num_partitions, block_partition)
    union = _copartitioned_union(state, shuffled, num_partitions)  # state first: E before its partials
    return union.mapPartitions(combine, preservesPartitioning=True)


def standardization(state: "RDD", dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and population std of E: per-block moments, merged on the driver in block order."""
    moments = state.map(lambda kv: (kv[0], fr.column_moments(kv[1][1]))).collect()  # B tiny records
    count, mean, m2 = fr.merge_moments([m for _, m in sorted(moments, key=lambda kv: kv[0])], dim)
    return mean, fr.standardize_scale(m2, count)


def to_output(spark: SparkSession, state: "RDD", dim: int, id_type: T.DataType, chunk_rows: int,
              mean: np.ndarray | None, std: np.ndarray | None) -> DataFrame:
    """Rows ``(node, embedding array<float>)`` from the final state (standardised if asked), built as Arrow."""
    schema = T.StructType([T.StructField("node", id_type), T.StructField("embedding", T.ArrayType(T.FloatType()))])
    arrow_type = _arrow_type(id_type)

    def chunk_rows_of(kv) -> Iterator[tuple]:
        block, (_x, e, ids) = kv
        for c in _chunks(len(ids), chunk_rows):
            lo, hi = c * chunk_rows, (c + 1) * chunk_rows
            yield block, c, pickle.dumps(ids[lo:hi]), e[lo:hi].tobytes()

    def emit(batches: Iterator) -> Iterator:
        import pyarrow as pa

        for batch in batches:
            for ids_bytes, e_bytes in zip(batch.column("ids").to_pylist(), batch.column("e").to_pylist()):
                ids = pickle.loads(ids_bytes)
                e = np.frombuffer(e_bytes, dtype=STORE).reshape(-1, dim)
                if mean is not None:
                    e = ((e.astype(np.float64) - mean) / std).astype(STORE)
                offsets = pa.array(np.arange(0, e.size + 1, dim, dtype=np.int32))
                embedding = pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(e).ravel()))
                yield pa.RecordBatch.from_arrays([pa.array(ids, type=arrow_type), embedding], names=["node", "embedding"])

    chunks = spark.createDataFrame(state.flatMap(chunk_rows_of), OUT_CHUNK_SCHEMA)
    return chunks.mapInArrow(emit, schema)


def _arrow_type(id_type: T.DataType):
    import pyarrow as pa

    return {T.StringType: pa.string(), T.LongType: pa.int64(), T.IntegerType: pa.int32(), T.ShortType: pa.int16(),
            T.ByteType: pa.int8()}[type(id_type)]


# --------------------------------------------------------------------------- engine


class _Checkpoints:
    """Cuts each iteration's lineage: reliable RDD checkpoints in the run's folder (or local ones)."""

    def __init__(self, spark: SparkSession, work: "_Workdir", mode: str):
        self.sc, self.work, self.mode = spark.sparkContext, work, mode
        self.previous_dir = None
        if mode == "reliable":
            current = self.sc._jsc.sc().getCheckpointDir()
            self.previous_dir = current.get() if current.isDefined() else None
            self.sc.setCheckpointDir(f"{work.path}/rdd")

    def materialize(self, rdd):
        rdd.persist(StorageLevel.MEMORY_AND_DISK)  # also stops PySpark from fusing later maps into this lineage
        if self.mode == "reliable":
            rdd.checkpoint()
        else:
            rdd.localCheckpoint()
        rdd.count()  # one job: computes the iteration and writes its checkpoint
        return rdd

    def drop(self, rdd) -> None:
        path = rdd.getCheckpointFile() if self.mode == "reliable" else None
        rdd.unpersist()
        if path:
            self.work.delete(path)

    def close(self) -> None:
        if self.previous_dir is not None:
            self.sc.setCheckpointDir(self.previous_dir)


def fastrp_spark(spark: SparkSession, edges: DataFrame, cfg, checkpoint_dir: str, id_type: T.DataType,
                 chunk_rows: int | None = None, work: "_Workdir | None" = None,
                 timings: dict | None = None) -> tuple[DataFrame, dict, list]:
    """FastRP of validated ``edges`` (src, dst, weight). Returns (output frame, stats, RDDs to release).

    The output frame reads the cached final state, so write it before releasing the RDDs and
    deleting the workdir (:func:`run_fastrp` does).
    """
    timings = {} if timings is None else timings
    work = work or _Workdir(spark, checkpoint_dir)
    clock = _Clock(timings)
    distinct = work.save(distinct_nodes(edges), "distinct_nodes")
    num_nodes = distinct.count()
    params = fr.FastRPParams.from_config(cfg, num_nodes)
    block_size = fr.resolve_block_size(cfg.block_size, num_nodes, params.dim)
    num_blocks = max(1, math.ceil(num_nodes / block_size))
    chunk_rows = chunk_rows or fr.chunk_rows_for(params.dim)
    num_partitions = min(num_blocks, cfg.num_partitions) if cfg.num_partitions else num_blocks
    nodes = work.save(index_nodes(distinct, num_blocks, id_type), "nodes")
    block_sizes = {int(r["block"]): int(r["count"]) for r in nodes.groupBy("block").count().collect()}
    clock.lap("index_nodes")
    blocks = work.save(edge_blocks(edges, nodes, params.directed, block_sizes, num_blocks), "edge_blocks")
    clock.lap("edge_blocks")
    checkpoints = _Checkpoints(spark, work, cfg.checkpoint)
    p = p_rdd(blocks.where(F.col("b") >= 0), num_partitions, block_sizes)
    p.persist(StorageLevel.MEMORY_AND_DISK)
    inputs = work.save(block_inputs(nodes, blocks.where(F.col("b") < 0), block_sizes), "block_inputs")
    state = initial_rdds(inputs, params, num_partitions)
    state.persist(StorageLevel.MEMORY_AND_DISK)  # lineage: one DataFrame stage, no checkpoint needed
    expected = expected_partials(p, block_sizes, chunk_rows)  # also caches P
    clock.lap("initial_state")
    for k, weight in enumerate(params.iteration_weights, start=1):
        new_state = checkpoints.materialize(
            iterate(p, state, expected, weight, params, block_sizes, chunk_rows, num_partitions,
                    last=k == len(params.iteration_weights)))
        checkpoints.drop(state)
        state = new_state
        clock.lap(f"iteration_{k}")
    p.unpersist()
    mean = std = None
    if params.standardize:
        mean, std = standardization(state, params.dim)
        clock.lap("standardization")
    out = to_output(spark, state, params.dim, id_type, chunk_rows, mean, std)
    stats = {"num_nodes": num_nodes, "num_blocks": num_blocks, "block_size": block_size, "chunk_rows": chunk_rows,
             "num_partitions": num_partitions, "sparsity": params.sparsity}
    return out, stats, [lambda: checkpoints.drop(state), checkpoints.close]


class _Clock:
    """Seconds per phase into ``timings`` (kept in the run record)."""

    def __init__(self, timings: dict):
        self.timings, self.last = timings, time.time()

    def lap(self, name: str) -> None:
        now = time.time()
        self.timings[name] = round(now - self.last, 3)
        self.last = now


def local_engine_frame(spark: SparkSession, edges: DataFrame, cfg, id_type: T.DataType) -> tuple[DataFrame, dict]:
    """``--engine local``: collect the edge list and run the scipy reference on the driver."""
    pdf = edges.toPandas()  # the local engine is for graphs that fit in one machine's memory
    nodes, emb = fr.embed_edge_list(pdf["src"].to_numpy(), pdf["dst"].to_numpy(), pdf["weight"].to_numpy(), cfg)
    schema = T.StructType([T.StructField("node", id_type), T.StructField("embedding", T.ArrayType(T.FloatType()))])
    out = spark.createDataFrame(pd.DataFrame({"node": nodes, "embedding": list(emb.astype(np.float32))}), schema)
    stats = {"num_nodes": len(nodes), "sparsity": fr.FastRPParams.from_config(cfg, len(nodes)).sparsity}
    return out, stats


def estimate_run(raw_edges: DataFrame, cfg) -> dict:
    """``--estimate``: counts the edge table and its nodes, then the arithmetic of fastrp.estimate_resources."""
    edges, counts = validate_edges(raw_edges, cfg)
    num_nodes = count_nodes(edges)
    return fr.estimate_resources(num_nodes, counts["rows"], cfg.dim, len(cfg.iteration_weights), cfg.directed,
                                 fr.resolve_block_size(cfg.block_size, num_nodes, cfg.dim), counts["self_loops"])


def run_fastrp(spark: SparkSession, raw_edges: DataFrame, cfg, checkpoint_dir: str,
               chunk_rows: int | None = None, before_write: Callable[[DataFrame], None] | None = None) -> WriteResult:
    """Validate, embed with the chosen engine, write ``cfg.output`` atomically, append a run record.

    ``before_write(out)`` (optional) may check the output frame and raise to stop before the write.
    The run record goes to the Delta table ``<output>_runs``: parameters, input and output Delta
    versions, counts and seconds. The output commit's userMetadata holds the same parameters, the
    block layout and the seconds of each phase.
    """
    started = time.time()
    edges, counts = validate_edges(raw_edges, cfg)
    id_type = edges.schema["src"].dataType
    input_version = delta_version(spark, cfg.edges) if cfg.edges_format == "delta" else None
    previous_partitions = spark.conf.get("spark.sql.shuffle.partitions")
    previous_batch = spark.conf.get(ARROW_BATCH, "10000")
    if cfg.num_partitions:
        spark.conf.set("spark.sql.shuffle.partitions", str(cfg.num_partitions))
    spark.conf.set(ARROW_BATCH, str(EDGE_BATCH_ROWS))  # edges leave their partitions in few, large payloads
    work, release, timings = None, [], {"validate": round(time.time() - started, 3)}
    try:
        if cfg.engine == "local":
            out, stats = local_engine_frame(spark, edges, cfg, id_type)
        else:
            work = _Workdir(spark, checkpoint_dir)  # deleted below whatever happens
            out, stats, release = fastrp_spark(spark, edges, cfg, checkpoint_dir, id_type, chunk_rows, work=work,
                                               timings=timings)
        if before_write is not None:
            before_write(out)
        params = cfg.model_dump(mode="json")
        metadata = {"job": "fastrp", "params": params, "input": cfg.edges, "input_version": input_version,
                    "num_edges": counts["rows"], **stats, "seconds_by_phase": timings}
        result = write_delta(out, cfg.output, metadata=metadata)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous_partitions)
        spark.conf.set(ARROW_BATCH, previous_batch)
        for step in release:
            step()
        if work is not None:
            work.delete()
    record = {"run_id": uuid.uuid4().hex, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "output": cfg.output, "output_version": result.version, "input": cfg.edges,
              "input_version": input_version, "engine": cfg.engine, "params": json.dumps(params, sort_keys=True),
              "num_nodes": int(stats["num_nodes"]), "num_edges": counts["rows"], "seconds": time.time() - started}
    runs_schema = ("run_id string, finished_at string, output string, output_version long, input string, "
                   "input_version long, engine string, params string, num_nodes long, num_edges long, seconds double")
    write_delta(spark.createDataFrame([record], runs_schema), runs_path(cfg.output), mode="append")
    log.info("fastrp: %d nodes embedded to %s (Delta version %d) in %.1f s %s", stats["num_nodes"], cfg.output,
             result.version, time.time() - started, timings)
    return result


def runs_path(output: str) -> str:
    """Where the run records of ``output`` live: a Delta table beside it."""
    return output.rstrip("/") + "_runs"
