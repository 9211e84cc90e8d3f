"""FastRP on Spark: block-sparse propagation in pandas UDFs, identical output for any partitioning.

The maths lives in :mod:`embeddings.fastrp`; this module only moves blocks around. Layout:

* nodes ``(node, block, idx)``: block = key(node) mod B, B = ceil(N / block_size); idx = rank of the
  node id inside its block. Both depend on the ids alone, never on partitions or arrival order.
* edge blocks ``(col_block b, row_block a, CSR of P_ab)``: built per row block a from edges sorted
  by (i, b, j, w), so degrees and duplicate sums are computed in one fixed order.
* state ``(block, chunk, x, e)``: X_k and the running E of ``chunk_rows`` consecutive rows of a
  block, float32. One iteration = cogroup(P blocks, state) by column block b -> partial products
  P_ab X_b per (row block a, chunk) -> group by (a, chunk), sum the partials sorted by b, apply the
  per-row update. E rides along the same shuffle. Each iteration is written to parquet under the
  run's checkpoint folder and read back, so the lineage stays one iteration long.

The driver only sees counts, per-block sizes and per-chunk column sums (for standardisation).
Node ids: string or integral (byte/short/int/long), the output keeps the input type. Duplicate
edges add their weights; an undirected self loop counts once; nodes with no out-edges (including
nodes whose only edges are self loops of weight 0, or sinks of a directed graph) propagate
nothing and get sigma * l2rows(R) (zero when ``self_influence`` is 0). Nodes absent from the edge
table are not embedded.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from embeddings import fastrp as fr
from embeddings.io import InputError, WriteResult, delta_version, require_columns, write_delta

log = logging.getLogger(__name__)

ID_TYPES = (T.StringType, T.LongType, T.IntegerType, T.ShortType, T.ByteType)
NUMERIC_TYPES = (T.DoubleType, T.FloatType, T.LongType, T.IntegerType, T.ShortType, T.ByteType, T.DecimalType)
STORE = np.float32  # dtype of X, E and partial products between stages

EDGE_BLOCK_SCHEMA = T.StructType([
    T.StructField("b", T.IntegerType()), T.StructField("a", T.IntegerType()),
    T.StructField("indptr", T.BinaryType()), T.StructField("indices", T.BinaryType()),
    T.StructField("data", T.BinaryType()),
])
STATE_SCHEMA = T.StructType([
    T.StructField("block", T.IntegerType()), T.StructField("chunk", T.IntegerType()),
    T.StructField("x", T.BinaryType()), T.StructField("e", T.BinaryType()),
])
PARTIAL_SCHEMA = T.StructType([
    T.StructField("block", T.IntegerType()), T.StructField("chunk", T.IntegerType()),
    T.StructField("src", T.IntegerType()), T.StructField("payload", T.BinaryType()),
])
SUMS_SCHEMA = T.StructType([
    T.StructField("block", T.IntegerType()), T.StructField("chunk", T.IntegerType()),
    T.StructField("sums", T.BinaryType()),
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


def _assemble(pdf: pd.DataFrame, column: str, n_rows: int, dim: int) -> np.ndarray:
    """Concatenate a block's chunk payloads in chunk order. Returns (n_rows, D) float64."""
    pdf = pdf.sort_values("chunk")
    parts = [np.frombuffer(b, dtype=STORE) for b in pdf[column]]
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=STORE)
    return flat.astype(np.float64).reshape(n_rows, dim)


def _tobytes(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x, dtype=STORE).tobytes()


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
        jvm = self.spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(self.path if name is None else f"{self.path}/{name}")
        fs = path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        fs.delete(path, True)


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


def edge_blocks(edges: DataFrame, nodes: DataFrame, directed: bool, block_sizes: dict[int, int]) -> DataFrame:
    """CSR blocks of P = D^-1 S keyed by (col block b, row block a); b = -1 rows carry degrees."""
    src = nodes.select(F.col("node").alias("src"), F.col("block").alias("a"), F.col("idx").alias("i"))
    dst = nodes.select(F.col("node").alias("dst"), F.col("block").alias("b"), F.col("idx").alias("j"))
    e = edges.join(src, "src").join(dst, "dst").select("a", "i", "b", "j", "weight")
    if not directed:  # each non-loop edge also reversed; a self loop is stored once
        e = e.union(e.where(~((F.col("a") == F.col("b")) & (F.col("i") == F.col("j"))))
                    .select(F.col("b").alias("a"), F.col("j").alias("i"), F.col("a").alias("b"),
                            F.col("i").alias("j"), "weight"))

    def build(pdf: pd.DataFrame) -> pd.DataFrame:
        import scipy.sparse as sp

        a = int(pdf["a"].iloc[0])
        n_a = block_sizes[a]
        i, b, j, w = (pdf[c].to_numpy() for c in ("i", "b", "j", "weight"))
        order = np.lexsort((w, j, b, i))  # fixed order: the sums below never depend on arrival order
        i, b, j, w = i[order].astype(np.int64), b[order], j[order].astype(np.int64), w[order].astype(np.float64)
        degree = np.bincount(i, weights=w, minlength=n_a)  # (n_a,)
        inv = fr.inverse_degree(degree)
        rows = [(-1, a, b"", b"", degree.tobytes())]
        for col_block in np.unique(b):
            sel = b == col_block
            p = sp.csr_matrix((w[sel], (i[sel], j[sel])), shape=(n_a, block_sizes[int(col_block)]))
            p.sum_duplicates()
            p.data = p.data * np.repeat(inv, np.diff(p.indptr))
            rows.append((int(col_block), a, p.indptr.astype(np.int64).tobytes(),
                         p.indices.astype(np.int32).tobytes(), p.data.astype(np.float64).tobytes()))
        return pd.DataFrame(rows, columns=["b", "a", "indptr", "indices", "data"])

    return e.groupBy("a").applyInPandas(build, EDGE_BLOCK_SCHEMA)


def initial_state(nodes: DataFrame, degrees: DataFrame, params: fr.FastRPParams, block_sizes: dict[int, int],
                  chunk_rows: int) -> DataFrame:
    """State rows for X_0 = diag(deg^beta) R and E_0 = sigma l2rows(R), R from (seed, node id)."""
    def init(nodes_pdf: pd.DataFrame, deg_pdf: pd.DataFrame) -> pd.DataFrame:
        block = int(nodes_pdf["block"].iloc[0])
        n_b = block_sizes[block]
        ids = nodes_pdf.sort_values("idx")["node"]
        degree = np.frombuffer(deg_pdf["data"].iloc[0], dtype=np.float64) if len(deg_pdf) else np.zeros(n_b)
        r = fr.random_projection(fr.node_keys(ids), params.dim, params.sparsity, params.seed)  # (n_b, D)
        x0, e0 = fr.initial_state(r, degree, params.normalization_strength, params.self_influence)
        rows = [(block, c, _tobytes(x0[c * chunk_rows:(c + 1) * chunk_rows]), _tobytes(e0[c * chunk_rows:(c + 1) * chunk_rows]))
                for c in _chunks(n_b, chunk_rows)]
        return pd.DataFrame(rows, columns=["block", "chunk", "x", "e"])

    deg = degrees.select(F.col("a").alias("block"), "data")
    return nodes.groupBy("block").cogroup(deg.groupBy("block")).applyInPandas(init, STATE_SCHEMA)


def propagate(p_blocks: DataFrame, state: DataFrame, params: fr.FastRPParams, weight: float, last: bool,
              block_sizes: dict[int, int], chunk_rows: int) -> DataFrame:
    """One iteration: partials P_ab X_b per (a, chunk), summed in b order, then the row update."""
    dim = params.dim

    def multiply(p_pdf: pd.DataFrame, st_pdf: pd.DataFrame) -> pd.DataFrame:
        import scipy.sparse as sp

        if len(st_pdf) == 0:
            return pd.DataFrame(columns=["block", "chunk", "src", "payload"])
        b = int(st_pdf["block"].iloc[0])
        n_b = block_sizes[b]
        rows = [(b, int(c), -1, e) for c, e in zip(st_pdf["chunk"], st_pdf["e"])]  # E rides along
        if len(p_pdf):
            x_b = _assemble(st_pdf, "x", n_b, dim)  # (n_b, D)
            for a, indptr, indices, data in zip(p_pdf["a"], p_pdf["indptr"], p_pdf["indices"], p_pdf["data"]):
                a = int(a)
                ptr = np.frombuffer(indptr, dtype=np.int64)
                p = sp.csr_matrix((np.frombuffer(data, dtype=np.float64), np.frombuffer(indices, dtype=np.int32), ptr),
                                  shape=(block_sizes[a], n_b))
                y = p @ x_b  # (n_a, D)
                for c in _chunks(block_sizes[a], chunk_rows):
                    lo, hi = c * chunk_rows, min((c + 1) * chunk_rows, block_sizes[a])
                    if ptr[hi] > ptr[lo]:  # skip chunks with no edges into block b
                        rows.append((a, c, b, _tobytes(y[lo:hi])))
        return pd.DataFrame(rows, columns=["block", "chunk", "src", "payload"])

    def reduce(pdf: pd.DataFrame) -> pd.DataFrame:
        block, chunk = int(pdf["block"].iloc[0]), int(pdf["chunk"].iloc[0])
        n_rows = min(chunk_rows, block_sizes[block] - chunk * chunk_rows)
        pdf = pdf.sort_values("src", kind="stable")  # fixed summation order: by column block
        acc = np.zeros((n_rows, dim), dtype=np.float64)
        e = np.zeros((n_rows, dim), dtype=np.float64)
        for src, payload in zip(pdf["src"], pdf["payload"]):
            part = np.frombuffer(payload, dtype=STORE).astype(np.float64).reshape(n_rows, dim)
            if src < 0:
                e = part
            else:
                acc += part
        x_next, e_next = fr.propagation_update(acc, e, weight, params.variant)
        return pd.DataFrame([(block, chunk, b"" if last else _tobytes(x_next), _tobytes(e_next))],
                            columns=["block", "chunk", "x", "e"])

    partials = p_blocks.groupBy("b").cogroup(state.groupBy("block")).applyInPandas(multiply, PARTIAL_SCHEMA)
    return partials.groupBy("block", "chunk").applyInPandas(reduce, STATE_SCHEMA)


def column_stats(state: DataFrame, dim: int, block_sizes: dict[int, int], chunk_rows: int,
                 mean: np.ndarray | None) -> np.ndarray:
    """Per-column sum of E (or of (E - mean)^2): per-chunk sums, added on the driver in chunk order."""
    def sums(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            out = []
            for block, chunk, payload in zip(pdf["block"], pdf["chunk"], pdf["e"]):
                e = np.frombuffer(payload, dtype=STORE).astype(np.float64).reshape(-1, dim)
                out.append((int(block), int(chunk), fr.column_moments_sum(e, mean).tobytes()))
            yield pd.DataFrame(out, columns=["block", "chunk", "sums"])

    rows = state.select("block", "chunk", "e").mapInPandas(sums, SUMS_SCHEMA).collect()  # one D-vector per chunk
    total = np.zeros(dim, dtype=np.float64)
    for row in sorted(rows, key=lambda r: (r["block"], r["chunk"])):
        total += np.frombuffer(row["sums"], dtype=np.float64)
    return total


def to_output(nodes: DataFrame, state: DataFrame, dim: int, id_type: T.DataType, block_sizes: dict[int, int],
              mean: np.ndarray | None, std: np.ndarray | None) -> DataFrame:
    """Rows ``(node, embedding array<float>)`` from the final state, standardised if asked."""
    schema = T.StructType([T.StructField("node", id_type), T.StructField("embedding", T.ArrayType(T.FloatType()))])

    def emit(nodes_pdf: pd.DataFrame, st_pdf: pd.DataFrame) -> pd.DataFrame:
        block = int(nodes_pdf["block"].iloc[0])
        e = _assemble(st_pdf, "e", block_sizes[block], dim)  # (n_b, D)
        if mean is not None:
            e = (e - mean) / std
        ids = nodes_pdf.sort_values("idx")["node"].reset_index(drop=True)
        return pd.DataFrame({"node": ids, "embedding": list(e.astype(np.float32))})

    return nodes.groupBy("block").cogroup(state.groupBy("block")).applyInPandas(emit, schema)


# --------------------------------------------------------------------------- engine


def fastrp_spark(spark: SparkSession, edges: DataFrame, cfg, checkpoint_dir: str, id_type: T.DataType,
                 chunk_rows: int | None = None, keep_workdir: bool = False,
                 work: _Workdir | None = None) -> tuple[DataFrame, dict, _Workdir]:
    """FastRP of validated ``edges`` (src, dst, weight). Returns (output frame, stats, workdir).

    The output frame reads the run's last checkpoint, so write it before deleting the workdir
    (:func:`run_fastrp` does).
    """
    work = work or _Workdir(spark, checkpoint_dir)
    distinct = work.save(distinct_nodes(edges), "distinct_nodes")
    num_nodes = distinct.count()
    num_blocks = max(1, math.ceil(num_nodes / cfg.block_size))
    params = fr.FastRPParams.from_config(cfg, num_nodes)
    chunk_rows = chunk_rows or fr.chunk_rows_for(params.dim)
    nodes = work.save(index_nodes(distinct, num_blocks, id_type), "nodes")
    block_sizes = {int(r["block"]): int(r["count"]) for r in nodes.groupBy("block").count().collect()}
    blocks = work.save(edge_blocks(edges, nodes, params.directed, block_sizes), "edge_blocks")
    p_blocks = blocks.where(F.col("b") >= 0)
    degrees = blocks.where(F.col("b") < 0)
    state = work.save(initial_state(nodes, degrees, params, block_sizes, chunk_rows), "iter_0")
    for k, weight in enumerate(params.iteration_weights, start=1):
        last = k == len(params.iteration_weights)
        state = work.save(propagate(p_blocks, state, params, weight, last, block_sizes, chunk_rows), f"iter_{k}")
        if k >= 2 and not keep_workdir:
            work.delete(f"iter_{k - 2}")
    mean = std = None
    if params.standardize:
        mean = column_stats(state, params.dim, block_sizes, chunk_rows, None) / num_nodes
        std = fr.standardize_scale(column_stats(state, params.dim, block_sizes, chunk_rows, mean), num_nodes)
    out = to_output(nodes, state, params.dim, id_type, block_sizes, mean, std)
    stats = {"num_nodes": num_nodes, "num_blocks": num_blocks, "chunk_rows": chunk_rows, "sparsity": params.sparsity}
    return out, stats, work


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
                                 cfg.block_size, counts["self_loops"])


def run_fastrp(spark: SparkSession, raw_edges: DataFrame, cfg, checkpoint_dir: str,
               chunk_rows: int | None = None) -> WriteResult:
    """Validate, embed with the chosen engine, write ``cfg.output`` atomically, append a run record.

    The run record goes to the Delta table ``<output>_runs``: parameters, input and output Delta
    versions, counts and seconds. The output commit's userMetadata holds the same parameters.
    """
    started = time.time()
    edges, counts = validate_edges(raw_edges, cfg)
    id_type = edges.schema["src"].dataType
    input_version = delta_version(spark, cfg.edges) if cfg.edges_format == "delta" else None
    previous_partitions = spark.conf.get("spark.sql.shuffle.partitions")
    if cfg.num_partitions:
        spark.conf.set("spark.sql.shuffle.partitions", str(cfg.num_partitions))
    work = None
    try:
        if cfg.engine == "local":
            out, stats = local_engine_frame(spark, edges, cfg, id_type)
        else:
            work = _Workdir(spark, checkpoint_dir)  # deleted below whatever happens
            out, stats, work = fastrp_spark(spark, edges, cfg, checkpoint_dir, id_type, chunk_rows, work=work)
        params = cfg.model_dump(mode="json")
        metadata = {"job": "fastrp", "params": params, "input": cfg.edges, "input_version": input_version,
                    "num_edges": counts["rows"], **stats}
        result = write_delta(out, cfg.output, metadata=metadata)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous_partitions)
        if work is not None:
            work.delete()
    record = {"run_id": uuid.uuid4().hex, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "output": cfg.output, "output_version": result.version, "input": cfg.edges,
              "input_version": input_version, "engine": cfg.engine, "params": json.dumps(params, sort_keys=True),
              "num_nodes": int(stats["num_nodes"]), "num_edges": counts["rows"], "seconds": time.time() - started}
    runs_schema = ("run_id string, finished_at string, output string, output_version long, input string, "
                   "input_version long, engine string, params string, num_nodes long, num_edges long, seconds double")
    write_delta(spark.createDataFrame([record], runs_schema), runs_path(cfg.output), mode="append")
    log.info("fastrp: %d nodes embedded to %s (Delta version %d)", stats["num_nodes"], cfg.output, result.version)
    return result


def runs_path(output: str) -> str:
    """Where the run records of ``output`` live: a Delta table beside it."""
    return output.rstrip("/") + "_runs"
