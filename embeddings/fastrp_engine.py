"""FastRP engine on Spark: block-sparse propagation over block-partitioned RDDs, identical output for any partitioning.

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
  X_k and E_k = E_{k-1} + alpha_k l2rows(X_k) are computed in the same task. The diagonal product
  P_aa X_a is made there too (it never crosses the shuffle); each product runs on row bands in
  threads when a task has more cores than blocks (:func:`spmm`, :func:`task_threads`).
* where the state lives (``state_store``): in **files** (the default on a local master with a
  local folder), each block's X, E and ids are .npy/pickle files in the run's folder and the RDD
  records are their paths; each off-diagonal product is one file too and the shuffle carries its
  path per non-empty chunk. Each iteration's B records are collected and parallelised again, which
  cuts the lineage like a checkpoint, so no array crosses the JVM (at 1e7 edges an iteration went
  from 13-16 s to 6-7 s and the JVM's peak from 12 to 7 GiB). In Spark's **cache** (any cluster),
  the records are the arrays, persisted and checkpointed (reliable RDD checkpoints in the run's
  folder by default, ``checkpoint: local`` for executor-local ones, ``none`` to skip the write), so
  the lineage stays one iteration long (``none``: it grows by one iteration each time).

The driver only sees counts, per-block sizes, the numbers of the row chunks each slice P_ab
touches, and one moment triple (count, mean, M2) per block for standardisation. Node ids: string
or integral (byte/short/int/long), the output keeps the input type. Duplicate edges add their
weights; an undirected self loop counts once; nodes with no out-edges (including nodes whose only
edges are self loops of weight 0, or sinks of a directed graph) propagate nothing and get
sigma * l2rows(R) (zero when ``self_influence`` is 0). Nodes absent from the edge table are not
embedded, except those of the node property table (``fastrp.node_properties``), which get
:func:`~embeddings.fastrp.edgeless_embedding`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.clock import Clock
from embeddings import fastrp as fr
from embeddings.fastrp_layout import (
    OUT_CHUNK_SCHEMA,
    block_inputs,
    distinct_nodes,
    edge_blocks,
    index_nodes,
    row_chunks,
)

log = logging.getLogger(__name__)

STORE = np.float32  # dtype of X, E and partial products between stages


class Workdir:
    """A per-run folder under the checkpoint dir; parquet writes here cut the lineage."""

    def __init__(self, spark: SparkSession, checkpoint_dir: str):
        self.spark = spark
        self.path = f"{checkpoint_dir.rstrip('/')}/fastrp-{uuid.uuid4().hex[:12]}"

    def save(self, df: DataFrame, name: str, row_per_group: bool = False) -> DataFrame:
        """Write ``df`` as ``name`` and read it back; ``row_per_group``: for tables of one CSR slice or
        block per row (hundreds of MB each at 1e8 edges), each row its own Parquet row group, flushed as
        it is written and without a dictionary attempt (Parquet checks its buffers' size only every 100
        rows: a task's whole output sat in the heap and the 8 GiB JVM ran out of memory writing it)."""
        path = f"{self.path}/{name}"
        writer = df.write.mode("overwrite")
        if row_per_group:
            writer = writer.option("parquet.block.row.count.limit", "1").option("parquet.enable.dictionary", "false")
        writer.parquet(path)
        return self.spark.read.parquet(path)

    def delete(self, name: str | None = None) -> None:
        """Delete the run folder, a name inside it, or a full path (a checkpoint file)."""
        jvm = self.spark.sparkContext._jvm
        full = self.path if name is None else (name if ":" in name or name.startswith("/") else f"{self.path}/{name}")
        path = jvm.org.apache.hadoop.fs.Path(full)
        fs = path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        fs.delete(path, True)


# --------------------------------------------------------------------------- block RDDs
#
# From here on every dataset is an RDD keyed by block id (or by a tuple whose first element is the
# block id) and partitioned by :func:`block_partition`, so P and the state stay where they are and
# only the partial products P_ab X_b cross the network: one shuffle per iteration.


# The cached block RDDs keep Python's pickled records as the JVM's byte arrays, not Java-serialised
# again (MEMORY_AND_DISK in PySpark): 1 GB of state caches in ~1 s instead of ~4 s on 2 cores (a
# 2-block 1e6-node state, measured); blocks still spill to disk when memory runs short.
BLOCK_STORAGE = StorageLevel.MEMORY_AND_DISK_DESER


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


# --------------------------------------------------------------------------- block state
#
# A state record is ``(X, E, ids)``: the arrays themselves (``state_store: cache``, Spark's block
# cache holds them) or the paths of the files that hold them (``files``: the records are a few
# strings and the arrays never pass through the JVM; tasks read X memory-mapped).


def state_x(value) -> np.ndarray | None:
    """X of a state record (memory-mapped when it is a file)."""
    x = value[0]
    return np.load(x, mmap_mode="r") if isinstance(x, str) else x


def state_e(value) -> np.ndarray:
    e = value[1]
    return np.load(e) if isinstance(e, str) else e


def state_ids(value) -> np.ndarray:
    ids = value[2]
    if isinstance(ids, str):
        with open(ids, "rb") as f:
            return pickle.load(f)
    return ids


class StateWriter:
    """Makes a block's state record: the arrays (``folder`` None), or files in ``folder`` and their paths.

    Each file is written under a temporary name and renamed, so a retried or speculative task
    never leaves a half-written block for a reader (both attempts write the same bits).
    """

    def __init__(self, folder: str | None):
        self.folder = folder

    def __call__(self, block: int, x: np.ndarray | None, e: np.ndarray, ids) -> tuple:
        if self.folder is None:
            return x, e, ids

        def save(name: str, write) -> str:
            return save_atomically(f"{self.folder}/{block}.{name}", write)

        x_path = None if x is None else save("x.npy", lambda f: np.save(f, x))
        e_path = save("e.npy", lambda f: np.save(f, e))
        ids_path = ids if isinstance(ids, str) else save("ids.pkl", lambda f: pickle.dump(ids, f, protocol=5))
        return x_path, e_path, ids_path


def save_atomically(path: str, write: Callable) -> str:
    """``write(file)`` under a temporary name in ``path``'s folder (made if missing), then renamed to ``path``."""
    import os

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
    return path


def partial_rows(value, c: int, chunk_rows: int) -> np.ndarray:
    """Rows of chunk ``c`` of a partial product: the array sent, or a slice of the file it was written to."""
    if isinstance(value, str):
        return np.load(value, mmap_mode="r")[c * chunk_rows : (c + 1) * chunk_rows]
    return value


def initial_rdds(
    block_rows: DataFrame,
    params: fr.FastRPParams,
    num_partitions: int,
    categorical: frozenset[str] | None = None,
    writer: StateWriter | None = None,
):
    """The state ``(block, (X_0, E_0, ids))``, partitioned by block: X_0 = diag(deg^beta) R, E_0 = sigma l2rows(R).

    R comes from (seed, node id) and the node's property values (``categorical`` not None: the rows
    carry them), so each block's X_0 and E_0 (float32 (n_b, D)) are computed in the task that caches
    them from the rows of :func:`block_inputs` (ids, degrees and property values only).
    """

    write = writer or StateWriter(None)

    def state(item) -> tuple:
        block, value = item
        ids, degree = pickle.loads(value[0]), np.frombuffer(value[1], dtype=np.float64)
        if categorical is None:
            r = fr.random_projection(fr.node_keys(ids), params.dim, params.sparsity, params.seed)  # (n_b, D)
        else:
            r = fr.initial_projection(fr.node_keys(ids), params, pickle.loads(value[2]), categorical)
        x0, e0 = fr.initial_state(r, degree, params.normalization_strength, params.self_influence)
        return block, write(block, x0.astype(STORE), e0.astype(STORE), ids)

    def row(r) -> tuple:
        value = (bytes(r["ids"]), bytes(r["degree"]))
        return r["block"], value if categorical is None else (*value, bytes(r["values"]))

    return block_rows.rdd.map(row).partitionBy(num_partitions, block_partition).map(state, preservesPartitioning=True)


def edgeless_output(
    properties: DataFrame,
    graph_nodes: DataFrame,
    params: fr.FastRPParams,
    categorical: frozenset[str],
    id_type: T.DataType,
    mean: np.ndarray | None,
    std: np.ndarray | None,
) -> DataFrame:
    """Rows ``(node, embedding)`` of the property nodes absent from the edges: :func:`~embeddings.fastrp.edgeless_embedding`.

    Standardised (if asked) with the graph's column moments, as the local engine does.
    """
    schema = T.StructType([T.StructField("node", id_type), T.StructField("embedding", T.ArrayType(T.FloatType()))])
    columns = [c for c in properties.columns if c != "node"]

    def emit(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            e = fr.edgeless_embedding(pdf[columns].reset_index(drop=True), categorical, params)
            if mean is not None:
                e = (e - mean) / std
            yield pd.DataFrame({"node": pdf["node"], "embedding": list(e.astype(STORE))})

    return properties.join(graph_nodes, "node", "left_anti").mapInPandas(emit, schema)


def p_rdd(p_blocks: DataFrame, num_partitions: int, block_sizes: dict[int, int]):
    """``(b, [(a, P_ab as CSR parts), ...] sorted by a)``: the column block b's slices of P, one record per b."""

    def parts(r) -> tuple:
        return (
            r["b"],
            (
                r["a"],
                np.frombuffer(r["indptr"], dtype=np.int64),
                np.frombuffer(r["indices"], dtype=np.int32),
                np.frombuffer(r["data"], dtype=np.float64).astype(STORE),
            ),
        )

    return (
        p_blocks.rdd.map(parts)
        .groupByKey(num_partitions, block_partition)
        .mapValues(lambda slices: sorted(slices, key=lambda s: s[0]))
    )


def nonempty_chunks(indptr: np.ndarray, n_rows: int, chunk_rows: int) -> list[int]:
    """Row chunks of a CSR slice that hold at least one entry (the only partials sent for it)."""
    return [
        c for c in row_chunks(n_rows, chunk_rows) if indptr[min((c + 1) * chunk_rows, n_rows)] > indptr[c * chunk_rows]
    ]


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


def spmm(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    x: np.ndarray,
    threads: int = 1,
    min_band_nnz: int = 200_000,
) -> np.ndarray:
    """P_ab X_b in float32 (n_a, D) with scipy's CSR kernel, on row bands of about equal nnz in ``threads`` threads.

    Each row is one dot product whatever the bands, so the bits do not depend on ``threads``; scipy
    releases the GIL in its kernel (bench/spmm_kernels.py: 2 bands 1.4x one thread at 1e7 edges).
    """
    import scipy.sparse as sp

    n_rows = len(indptr) - 1
    out = np.empty((n_rows, x.shape[1]), dtype=STORE)
    nnz = int(indptr[-1])
    bands = max(1, min(threads, nnz // min_band_nnz))  # small products: one band (thread start-up costs more)
    cuts = np.searchsorted(indptr, np.linspace(0, nnz, bands + 1), side="left").clip(0, n_rows)
    cuts[0], cuts[-1] = 0, n_rows

    def band(k: int) -> None:
        lo, hi = int(cuts[k]), int(cuts[k + 1])
        if hi > lo:
            sub = indptr[lo : hi + 1]
            m = sp.csr_matrix(
                (data[sub[0] : sub[-1]], indices[sub[0] : sub[-1]], sub - sub[0]), shape=(hi - lo, x.shape[0])
            )
            out[lo:hi] = m @ x

    if bands == 1:
        band(0)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(bands) as pool:
            list(pool.map(band, range(bands)))
    return out


def iterate(
    p: "RDD",
    state: "RDD",
    expected: dict,
    weight: float,
    params: fr.FastRPParams,
    block_sizes: dict[int, int],
    chunk_rows: int,
    num_partitions: int,
    last: bool = False,
    threads: int = 1,
    writer: StateWriter | None = None,
    partials: str | None = None,
) -> "RDD":
    """One FastRP iteration: ``(block, (X_{k-1}, E_{k-1}, ids))`` -> ``(block, (X_k, E_k, ids))``, one shuffle.

    Map side: each column block b multiplies its off-diagonal slices P_ab (a != b) by X_b (float32,
    :func:`spmm` on ``threads`` threads) and sends the non-empty row chunks of each product to row
    block a. Reduce side: the partials meet the state of block a and its diagonal slice P_aa
    (co-partitioned, no shuffle: P_aa X_a never leaves its task); each chunk is summed in float64 in
    the order of ``expected[(a, chunk)]`` (b ascending, the diagonal at its place) as soon as its
    next partial is there, so the bits never depend on arrival order and nothing is sorted or
    spilled. Then X_k = P X_{k-1} (gds: its L2-normalised rows) and E_k = E_{k-1} + alpha_k l2rows(X_k)
    (gds: + alpha_k X_k), next to the data they need. Memory per task: its blocks' state, one
    float64 accumulator per block and the partials that arrived ahead of their turn. The ``last``
    iteration keeps no X (nothing reads it). ``writer`` makes the new state records (arrays, or files);
    with a ``partials`` folder each off-diagonal product P_ab X_b is written there as one file and
    the shuffle carries its path per non-empty chunk (the reduce side reads its chunk's rows).
    """
    dim, variant = params.dim, params.variant
    write = writer or StateWriter(None)

    def products(b: int, slices, x_b: np.ndarray, diagonal: bool) -> Iterator:
        """``((a, chunk, b), rows of P_ab X_b)`` of the off-diagonal slices, or of the diagonal one."""
        for a, indptr, indices, data in slices:
            if (a == b) != diagonal:
                continue
            y = spmm(indptr, indices, data, x_b, threads)  # (n_a, D) float32
            chunks = nonempty_chunks(indptr, block_sizes[a], chunk_rows)
            if partials is not None and not diagonal and chunks:
                path = save_atomically(f"{partials}/{a}.{b}.npy", lambda f, y=y: np.save(f, y))
                for c in chunks:
                    yield (a, c, b), path
                continue
            for c in chunks:
                yield (a, c, b), y[c * chunk_rows : (c + 1) * chunk_rows]

    def multiply(item) -> Iterator:
        b, (slices, state_b) = item
        if slices is not None and state_b is not None:
            yield from products(b, slices, state_x(state_b), diagonal=False)

    def combine(records: Iterator) -> Iterator:
        states, acc, pending, done = {}, {}, {}, {}

        def arrive(a: int, c: int, b: int, value: np.ndarray) -> None:
            waiting = pending.setdefault((a, c), {})
            waiting[b] = value
            order, n = expected[(a, c)], done.get((a, c), 0)
            while n < len(order) and order[n] in waiting:  # add in b order whatever is next in line
                part = partial_rows(waiting.pop(order[n]), c, chunk_rows)
                acc[a][c * chunk_rows : c * chunk_rows + len(part)] += part
                n += 1
            done[(a, c)] = n

        for key, value in records:
            if not isinstance(key, tuple):  # block a of this partition: its slices of P and its state
                slices, state_a = value
                if state_a is None:
                    continue
                states[key] = (None, *state_a[1:])  # E and ids; X_{k-1} is not needed past the diagonal product
                acc.setdefault(key, np.zeros((block_sizes[key], dim), dtype=np.float64))
                for (a, c, b), y in products(key, slices or [], state_x(state_a), diagonal=True):
                    arrive(a, c, b, y)
                continue
            a, c, b = key
            if a not in acc:
                acc[a] = np.zeros((block_sizes[a], dim), dtype=np.float64)
            arrive(a, c, b, value)
        left = [k for k, v in pending.items() if v]
        if left:
            raise RuntimeError(f"fastrp: partials for chunks {left[:5]} never got their turn (expected order broken)")
        for block in sorted(states):
            state_a = states.pop(block)
            propagated = acc.pop(block)
            x = (fr.row_normalize(propagated) if variant == "gds" else propagated).astype(STORE)
            del propagated
            # paper: E += alpha_k l2rows(X_k); gds: X_k is already normalised, E += alpha_k X_k
            row_weights = np.full(len(x), weight) if variant == "gds" else weight * fr.inverse_row_norms(x)
            e = fr.add_scaled_rows(state_e(state_a), x, row_weights)
            yield block, write(block, None if last else x, e, state_a[2])

    blocks = zip_blocks(p, state, num_partitions, _is_list)  # (b, (slices of P_*b, state of b))
    shuffled = blocks.flatMap(multiply).partitionBy(num_partitions, block_partition)
    union = _copartitioned_union(blocks, shuffled, num_partitions)  # blocks first: E and P_aa before the partials
    return union.mapPartitions(combine, preservesPartitioning=True)


def standardization(state: "RDD", dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and population std of E: per-block moments, merged on the driver in block order."""
    moments = state.map(lambda kv: (kv[0], fr.column_moments(state_e(kv[1])))).collect()  # B tiny records
    count, mean, m2 = fr.merge_moments([m for _, m in sorted(moments, key=lambda kv: kv[0])], dim)
    return mean, fr.standardize_scale(m2, count)


def to_output(
    spark: SparkSession,
    state: "RDD",
    dim: int,
    id_type: T.DataType,
    chunk_rows: int,
    mean: np.ndarray | None,
    std: np.ndarray | None,
    records: list | None = None,
) -> DataFrame:
    """Rows ``(node, embedding array<float>)`` from the final state (standardised if asked), built as Arrow.

    With the state in files (``records``: its B ``(block, paths)``), task i of a B-row range reads
    block i's files and emits its chunks: no array passes through the JVM as a pickle. Else the
    cached blocks are cut into chunk rows first.
    """
    schema = T.StructType([T.StructField("node", id_type), T.StructField("embedding", T.ArrayType(T.FloatType()))])
    arrow_type = _arrow_type(id_type)

    def batch(ids: np.ndarray, e: np.ndarray):
        import pyarrow as pa

        if mean is not None:
            e = ((e.astype(np.float64) - mean) / std).astype(STORE)
        offsets = pa.array(np.arange(0, e.size + 1, dim, dtype=np.int32))
        embedding = pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(e).ravel()))
        return pa.RecordBatch.from_arrays([pa.array(ids, type=arrow_type), embedding], names=["node", "embedding"])

    if records is not None:
        paths = [value for _block, value in records]  # row i of the range: the i-th block that has nodes

        def emit_blocks(batches: Iterator) -> Iterator:
            for block_batch in batches:
                for i in block_batch.column("id").to_pylist():
                    value = paths[i]
                    e, ids = np.load(value[1], mmap_mode="r"), state_ids(value)
                    for c in row_chunks(len(ids), chunk_rows):
                        yield batch(
                            ids[c * chunk_rows : (c + 1) * chunk_rows], e[c * chunk_rows : (c + 1) * chunk_rows]
                        )

        return spark.range(0, len(records), numPartitions=max(1, len(records))).mapInArrow(emit_blocks, schema)

    def chunk_rows_of(kv) -> Iterator[tuple]:
        block, value = kv
        e, ids = state_e(value), state_ids(value)
        for c in row_chunks(len(ids), chunk_rows):
            lo, hi = c * chunk_rows, (c + 1) * chunk_rows
            yield block, c, pickle.dumps(ids[lo:hi]), e[lo:hi].tobytes()

    def emit(batches: Iterator) -> Iterator:
        for chunk_batch in batches:
            for ids_bytes, e_bytes in zip(chunk_batch.column("ids").to_pylist(), chunk_batch.column("e").to_pylist()):
                yield batch(pickle.loads(ids_bytes), np.frombuffer(e_bytes, dtype=STORE).reshape(-1, dim))

    chunks = spark.createDataFrame(state.flatMap(chunk_rows_of), OUT_CHUNK_SCHEMA)
    return chunks.mapInArrow(emit, schema)


def _arrow_type(id_type: T.DataType):
    import pyarrow as pa

    return {
        T.StringType: pa.string(),
        T.LongType: pa.int64(),
        T.IntegerType: pa.int32(),
        T.ShortType: pa.int16(),
        T.ByteType: pa.int8(),
    }[type(id_type)]


# --------------------------------------------------------------------------- engine


class _Checkpoints:
    """Each iteration's state, cached; its lineage cut by reliable RDD checkpoints in the run's folder, local ones, or none.

    ``none`` skips the checkpoint write (one pass over the state per iteration): the lineage then
    grows by one iteration each time, and a lost cached block is recomputed from the first
    iteration on. Fine on one machine or for a few iterations; ``reliable`` survives lost executors.
    """

    def __init__(self, spark: SparkSession, work: "Workdir", mode: str):
        self.sc, self.work, self.mode = spark.sparkContext, work, mode
        self.previous_dir = None
        if mode == "reliable":
            current = self.sc._jsc.sc().getCheckpointDir()
            self.previous_dir = current.get() if current.isDefined() else None
            self.sc.setCheckpointDir(f"{work.path}/rdd")

    def materialize(self, rdd, k: int = 0):
        rdd.persist(BLOCK_STORAGE)  # also stops PySpark from fusing later maps into this lineage
        if self.mode == "reliable":
            rdd.checkpoint()
        elif self.mode == "local":
            rdd.localCheckpoint()
        rdd.count()  # one job: computes the iteration and writes its checkpoint
        return rdd

    def drop(self, rdd, k: int | None = None) -> None:
        path = rdd.getCheckpointFile() if self.mode == "reliable" else None
        rdd.unpersist()
        if path:
            self.work.delete(path)

    def close(self) -> None:
        if self.previous_dir is not None:
            self.sc.setCheckpointDir(self.previous_dir)


class _FileStates:
    """Each iteration's state as files in the run's folder (``state_store: files``); the RDDs carry their paths.

    Materialising an iteration runs it (each task writes its blocks' files) and collects the B
    records to the driver, and the next iteration starts from them (``parallelize``): the lineage
    is cut as a checkpoint would, without a second write, and the state never enters the JVM.
    Every executor must see the folder: a local master, or a shared mount on a cluster.
    """

    def __init__(self, spark: SparkSession, work: "Workdir", num_partitions: int):
        self.sc, self.work, self.num_partitions = spark.sparkContext, work, num_partitions
        import os

        self.root = os.path.abspath(local_path(work.path))  # the Python workers need not share the driver's cwd
        self.records: list = []  # the last materialised iteration's (block, paths)

    def writer(self, k: int) -> StateWriter:
        return StateWriter(f"{self.root}/state/{k}")

    def partials(self, k: int) -> str:
        return f"{self.root}/partials/{k}"

    def materialize(self, rdd, k: int = 0):
        records = sorted(rdd.collect(), key=lambda kv: kv[0])  # B records of a few paths each
        self.records = records
        self.work.delete(self.partials(k))  # iteration k's partial products are summed into its state
        return self.sc.parallelize(records, max(1, len(records))).partitionBy(self.num_partitions, block_partition)

    def drop(self, rdd, k: int | None = None) -> None:
        if k is not None and k > 0:  # iteration 0's folder also holds the ids, read at the end
            self.work.delete(f"{self.root}/state/{k}")

    def close(self) -> None:
        pass


def local_path(path: str) -> str:
    """``path`` as a local filesystem path (``file:`` URIs stripped)."""
    return path[len("file:") :] if path.startswith("file:") else path


def files_state_store(spark: SparkSession, checkpoint_dir: str, mode: str) -> bool:
    """``state_store`` resolved: ``auto`` means files on a local master with a local checkpoint dir."""
    if mode != "auto":
        return mode == "files"
    scheme = checkpoint_dir.split(":", 1)[0] if "://" in checkpoint_dir or checkpoint_dir.startswith("file:") else ""
    return spark.sparkContext.master.startswith("local") and scheme in ("", "file")


def fastrp_spark(
    spark: SparkSession,
    edges: DataFrame,
    cfg,
    checkpoint_dir: str,
    id_type: T.DataType,
    chunk_rows: int | None = None,
    work: "Workdir | None" = None,
    timings: dict | None = None,
    properties: tuple[DataFrame, frozenset[str]] | None = None,
    admit_nodes: Callable[[int], None] | None = None,
) -> tuple[DataFrame, dict, list]:
    """FastRP of validated ``edges`` (src, dst, weight). Returns (output frame, stats, RDDs to release).

    ``admit_nodes(N)`` (the admission check) runs as soon as the distinct nodes are counted.

    ``properties``: the validated node property table ``(node, columns...)`` and its string columns;
    joined onto the node index, each block's values travel with its ids into :func:`initial_rdds`, and
    the property nodes absent from the edges are embedded by :func:`edgeless_output`.

    The output frame reads the cached final state, so write it before releasing the RDDs and
    deleting the workdir (:func:`run_fastrp` does).
    """
    timings = {} if timings is None else timings
    work = work or Workdir(spark, checkpoint_dir)
    clock = Clock(timings)  # seconds per phase, kept in the run record
    distinct = work.save(distinct_nodes(edges), "distinct_nodes")
    num_nodes = distinct.count()
    if admit_nodes is not None:
        admit_nodes(num_nodes)
    params = fr.FastRPParams.from_config(cfg, num_nodes)
    block_size = fr.resolve_block_size(cfg.block_size, num_nodes, params.dim)
    num_blocks = max(1, math.ceil(num_nodes / block_size))
    chunk_rows = chunk_rows or fr.chunk_rows_for(params.dim)
    num_partitions = min(num_blocks, cfg.num_partitions) if cfg.num_partitions else num_blocks
    nodes = work.save(index_nodes(distinct, num_blocks, id_type), "nodes")
    block_sizes = {int(r["block"]): int(r["count"]) for r in nodes.groupBy("block").count().collect()}
    clock.lap("index_nodes")
    blocks = work.save(
        edge_blocks(edges, nodes, params.directed, block_sizes, num_blocks), "edge_blocks", row_per_group=True
    )
    clock.lap("edge_blocks")
    files = files_state_store(spark, checkpoint_dir, cfg.state_store)
    checkpoints = _FileStates(spark, work, num_partitions) if files else _Checkpoints(spark, work, cfg.checkpoint)
    with one_row_batches(spark):
        p = p_rdd(blocks.where(F.col("b") >= 0), num_partitions, block_sizes)
        p.persist(BLOCK_STORAGE)
        expected = expected_partials(p, block_sizes, chunk_rows)  # also caches P
    clock.lap("p_blocks")
    with_values = categorical = None
    if properties is not None and params.property_dim:
        table, categorical = properties
        with_values = nodes.join(table, "node", "left").select("node", "block", "idx", *cfg.node_properties.columns)
    inputs = work.save(
        block_inputs(nodes, blocks.where(F.col("b") < 0), block_sizes, with_values, cfg.node_properties),
        "block_inputs",
        row_per_group=True,
    )
    clock.lap("block_inputs")
    with one_row_batches(spark):
        state = initial_rdds(inputs, params, num_partitions, categorical, checkpoints.writer(0) if files else None)
        if files:
            state = checkpoints.materialize(state)
        else:
            state.persist(BLOCK_STORAGE)  # lineage: one DataFrame stage, no checkpoint needed
            state.count()  # X_0 and E_0 computed and cached here, so each iteration's time is its own
    clock.lap("initial_state")
    threads = task_threads(spark, num_partitions)
    for k, weight in enumerate(params.iteration_weights, start=1):
        new_state = checkpoints.materialize(
            iterate(
                p,
                state,
                expected,
                weight,
                params,
                block_sizes,
                chunk_rows,
                num_partitions,
                last=k == len(params.iteration_weights),
                threads=threads,
                writer=checkpoints.writer(k) if files else None,
                partials=checkpoints.partials(k) if files else None,
            ),
            k,
        )
        checkpoints.drop(state, k - 1)
        state = new_state
        clock.lap(f"iteration_{k}")
    p.unpersist()
    mean = std = None
    if params.standardize:
        mean, std = standardization(state, params.dim)
        clock.lap("standardization")
    out = to_output(spark, state, params.dim, id_type, chunk_rows, mean, std, checkpoints.records if files else None)
    stats = {
        "num_nodes": num_nodes,
        "num_blocks": num_blocks,
        "block_size": block_size,
        "chunk_rows": chunk_rows,
        "num_partitions": num_partitions,
        "threads_per_task": threads,
        "state_store": "files" if files else "cache",
        "sparsity": params.sparsity,
    }
    if categorical is not None:
        edgeless = work.save(edgeless_output(table, distinct, params, categorical, id_type, mean, std), "edgeless")
        stats["num_edgeless_nodes"] = edgeless.count()
        out = out.unionByName(edgeless)
        clock.lap("edgeless_nodes")
    return out, stats, [lambda: checkpoints.drop(state), checkpoints.close]


@contextlib.contextmanager
def one_row_batches(spark: SparkSession):
    """Parquet read one row per columnar batch while the block tables (one CSR slice or block per row) are read.

    Spark's vectorized reader puts a batch's values of a column in one contiguous buffer (4096 rows
    by default: all of a file's rows here); at 1e8 edges that asked the 8 GiB heap for 470 MB at
    once per task and failed (Java heap space).
    """
    key = "spark.sql.parquet.columnarReaderBatchSize"
    before = spark.conf.get(key, None)
    spark.conf.set(key, "1")
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def task_threads(spark: SparkSession, num_partitions: int) -> int:
    """Threads of each block product: ``spark.task.cpus``, or more when there are fewer blocks than cores.

    With B blocks on C cores (``defaultParallelism``) only min(B, C) tasks run at once, so each
    product uses C // B threads (a one-block graph still keeps every core busy), never more than
    one executor's cores (``spark.executor.cores`` on a cluster).
    """
    sc = spark.sparkContext
    task_cpus = int(spark.conf.get("spark.task.cpus", "1"))
    cores = sc.defaultParallelism
    if not sc.master.startswith("local"):
        cores = min(cores, int(sc.getConf().get("spark.executor.cores", "1")))
    return max(task_cpus, min(cores, sc.defaultParallelism // max(1, num_partitions)))


def local_engine_frame(
    spark: SparkSession,
    edges: DataFrame,
    cfg,
    id_type: T.DataType,
    properties: tuple[DataFrame, frozenset[str]] | None = None,
) -> tuple[DataFrame, dict]:
    """``--engine local``: collect the edge list (and node properties) and run the scipy reference on the driver."""
    pdf = edges.toPandas()  # the local engine is for graphs that fit in one machine's memory
    node_properties = None
    if properties is not None:
        table, categorical = properties
        ppdf = table.toPandas()
        columns = list(cfg.node_properties.columns)
        node_properties = fr.NodeProperties(ppdf["node"].to_numpy(), ppdf[columns], categorical)
    src, dst = pdf["src"].to_numpy(), pdf["dst"].to_numpy()
    graph_nodes = len(np.unique(np.concatenate([src, dst])))
    nodes, emb = fr.embed_edge_list(src, dst, pdf["weight"].to_numpy(), cfg, properties=node_properties)
    schema = T.StructType([T.StructField("node", id_type), T.StructField("embedding", T.ArrayType(T.FloatType()))])
    out = spark.createDataFrame(pd.DataFrame({"node": nodes, "embedding": list(emb.astype(np.float32))}), schema)
    stats = {"num_nodes": graph_nodes, "sparsity": fr.FastRPParams.from_config(cfg, graph_nodes).sparsity}
    if properties is not None:
        stats["num_edgeless_nodes"] = len(nodes) - graph_nodes
    return out, stats
