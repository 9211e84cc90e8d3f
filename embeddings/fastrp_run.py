"""A FastRP run on Spark: validate -> embed (Spark or local engine) -> frame, and its run record.

:func:`embed` gives the output frame for the stage runner to gate and write; :func:`run_fastrp`
does the whole run without the runner (benchmarks, tests); :func:`estimate_run` only counts.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from core.errors import ConfigError
from embeddings import fastrp as fr
from embeddings.admission import admit, overruns, process_shape, spark_limits
from embeddings.fastrp_engine import Workdir, fastrp_spark, files_state_store, local_engine_frame
from embeddings.fastrp_layout import count_nodes
from embeddings.fastrp_validate import validate_edges, validate_node_properties
from embeddings.io import WriteResult, write_delta

log = logging.getLogger(__name__)

ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
EDGE_BATCH_ROWS = 262_144  # edges per Arrow batch while the run lasts (about 6 MiB of long ids and weights)


def _estimate(num_nodes: int, counts: dict, cfg, state_files: bool = False, shape: tuple[int, int] = (1, 0)) -> dict:
    return fr.estimate_resources(
        num_nodes,
        counts["rows"],
        cfg.dim,
        len(cfg.iteration_weights),
        cfg.directed,
        fr.resolve_block_size(cfg.block_size, num_nodes, cfg.dim),
        counts["self_loops"],
        state_files=state_files,
        concurrent_tasks=shape[0],
        jvm_heap_bytes=shape[1],
    )


def estimate_run(raw_edges: DataFrame, cfg, state_files: bool = False) -> dict:
    """``--estimate``: counts the edge table and its nodes, then the arithmetic of fastrp.estimate_resources."""
    edges, counts = validate_edges(raw_edges, cfg)
    return _estimate(count_nodes(edges), counts, cfg, state_files, process_shape(raw_edges.sparkSession))


def check_fits(spark: SparkSession, counts: dict, cfg, checkpoint_dir: str) -> Callable[[int], None] | None:
    """Refuse (exit 2) a run whose estimate exceeds this session's limits, before any block is built.

    The estimate first takes N <= 2 x edges (no Spark job): None when the run fits under that
    bound. Else the check of the exact N, to call once the node count is known (the Spark engine
    counts its distinct nodes anyway, so the count is not paid twice).
    """
    limits = spark_limits(spark, checkpoint_dir)
    files = files_state_store(spark, checkpoint_dir, cfg.state_store)
    if not overruns(_estimate(2 * counts["rows"], counts, cfg, files), limits, cfg.engine):
        return None
    return lambda num_nodes: admit(_estimate(num_nodes, counts, cfg, files), limits, cfg.engine, cfg.force)


@dataclass
class Embedding:
    """A computed (not yet written) FastRP output: the frame, its commit metadata, and how to let go of it.

    The frame reads cached RDDs and the run's Spark settings: write it before :meth:`release`.
    """

    frame: DataFrame
    metadata: dict
    num_nodes: int
    num_edges: int
    seconds: float
    release: Callable[[], None]


def embed(
    spark: SparkSession,
    raw_edges: DataFrame,
    cfg,
    checkpoint_dir: str,
    chunk_rows: int | None = None,
    raw_properties: DataFrame | None = None,
) -> Embedding:
    """Validate ``raw_edges`` (and ``raw_properties``, the node property table) and embed them with ``cfg.engine``.

    The frame is lazy until written.

    Raises:
        InputError: the edge table is invalid (see :func:`~embeddings.fastrp_validate.validate_edges`), or
            the property table is (:func:`~embeddings.fastrp_validate.validate_node_properties`).
        ConfigError: ``fastrp.node_properties`` is set but no property table was given.
    """
    started = time.time()
    edges, counts = validate_edges(raw_edges, cfg)
    admit_nodes = check_fits(spark, counts, cfg, checkpoint_dir)
    if admit_nodes is not None and cfg.engine == "local":
        admit_nodes(count_nodes(edges))
    id_type = edges.schema["src"].dataType
    properties = None
    if cfg.node_properties is not None:
        if raw_properties is None:
            raise ConfigError("fastrp.node_properties is set but no node property table was given")
        properties = validate_node_properties(raw_properties, cfg, id_type)
    previous = {
        "spark.sql.shuffle.partitions": spark.conf.get("spark.sql.shuffle.partitions"),
        ARROW_BATCH: spark.conf.get(ARROW_BATCH, "10000"),
    }
    if cfg.num_partitions:
        spark.conf.set("spark.sql.shuffle.partitions", str(cfg.num_partitions))
    spark.conf.set(ARROW_BATCH, str(EDGE_BATCH_ROWS))  # edges leave their partitions in few, large payloads
    work, steps, timings = None, [], {"validate": round(time.time() - started, 3)}

    def release() -> None:
        for key, value in previous.items():
            spark.conf.set(key, value)
        for step in steps:
            step()
        if work is not None:
            work.delete()

    try:
        if cfg.engine == "local":
            out, stats = local_engine_frame(spark, edges, cfg, id_type, properties)
        else:
            work = Workdir(spark, checkpoint_dir)  # deleted on release whatever happens
            out, stats, steps = fastrp_spark(
                spark,
                edges,
                cfg,
                checkpoint_dir,
                id_type,
                chunk_rows,
                work=work,
                timings=timings,
                properties=properties,
                admit_nodes=admit_nodes,
            )
    except BaseException:
        release()
        raise
    files = stats.get("state_store") == "files"
    estimate = _estimate(int(stats["num_nodes"]), counts, cfg, files, process_shape(spark))
    metadata = {
        "params": cfg.model_dump(mode="json"),
        "num_edges": counts["rows"],
        **stats,
        "seconds_by_phase": timings,
        "estimate": {k: v for k, v in estimate.items() if k != "summary"},  # beside what the run measured
    }
    return Embedding(
        out,
        metadata,
        int(stats["num_nodes"]) + int(stats.get("num_edgeless_nodes", 0)),
        counts["rows"],
        time.time() - started,
        release,
    )


RUNS_SCHEMA = (
    "run_id string, finished_at string, output string, output_version long, input string, "
    "input_version long, engine string, params string, num_nodes long, num_edges long, seconds double"
)


def write_run_record(
    spark: SparkSession,
    emb: Embedding,
    output: WriteResult,
    input_path: str | None,
    input_version: int | None,
    engine: str,
    seconds: float,
) -> None:
    """Append one row to the Delta table ``<output>_runs``: parameters, input/output versions, counts, seconds."""
    record = {
        "run_id": uuid.uuid4().hex,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "output": output.path,
        "output_version": output.version,
        "input": input_path,
        "input_version": input_version,
        "engine": engine,
        "params": json.dumps(emb.metadata["params"], sort_keys=True),
        "num_nodes": emb.num_nodes,
        "num_edges": emb.num_edges,
        "seconds": seconds,
    }
    write_delta(spark.createDataFrame([record], RUNS_SCHEMA), runs_path(output.path), mode="append")
    log.info(
        "fastrp: %d nodes embedded to %s (Delta version %d) in %.1f s %s",
        emb.num_nodes,
        output.path,
        output.version,
        seconds,
        emb.metadata["seconds_by_phase"],
    )


def run_fastrp(
    spark: SparkSession,
    raw_edges: DataFrame,
    cfg,
    checkpoint_dir: str,
    *,
    output: str,
    input_path: str | None = None,
    input_version: int | None = None,
    chunk_rows: int | None = None,
    raw_properties: DataFrame | None = None,
) -> WriteResult:
    """The whole run without the stage runner (benchmarks, tests): embed, write ``output`` atomically, record it.

    The output commit's userMetadata holds the parameters, the block layout, the seconds of each
    phase and the input's path and version; the run record goes to ``<output>_runs``.
    """
    started = time.time()
    emb = embed(spark, raw_edges, cfg, checkpoint_dir, chunk_rows, raw_properties)
    try:
        inputs = {"edges": {"path": input_path, "version": input_version}}
        result = write_delta(emb.frame, output, metadata={"job": "fastrp", "inputs": inputs, **emb.metadata})
    finally:
        emb.release()
    write_run_record(spark, emb, result, input_path, input_version, cfg.engine, time.time() - started)
    return result


def runs_path(output: str) -> str:
    """Where the run records of ``output`` live: a Delta table beside it."""
    return output.rstrip("/") + "_runs"
