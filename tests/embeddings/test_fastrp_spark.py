"""FastRP Spark engine and job: equal to the scipy reference, identical across partitionings, safe on bad input.

Every graph here has about 45 nodes; block_size 16 and chunk_rows 3 make 3 blocks of several
chunks, so the block, chunk and cross-block paths all run. Spark runs are the cost, so they are
module-scoped and checked by several tests: a directed graph embedded three times (1 file, 1
partition, state in Spark's cache with reliable checkpoints; 1 file, 2 partitions, state in files;
3 shuffled files, 3 partitions, cache with local checkpoints) and the job run end to end on an
undirected one (state in files: ``auto`` on a local master).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cli import run
from core.config import FastRPConfig, NodePropertiesConfig
from core.errors import InputError
from embeddings import fastrp as fr
from embeddings.fastrp_run import run_fastrp, runs_path
from embeddings.io import delta_version

pytestmark = pytest.mark.slow  # three Spark engine runs and the job end to end

JOB = Path(__file__).resolve().parents[2] / "jobs" / "fastrp.py"
TOLERANCE = 1e-5  # Spark stores X/E as float32 between stages; the reference is float64 throughout


def random_edges(
    seed: int, string_ids: bool, weighted: bool, num_nodes: int = 40, num_edges: int = 110
) -> pd.DataFrame:
    """Random multigraph with duplicate edges, self loops, a node whose only edge is a self loop and a sink."""
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, num_nodes, num_edges), rng.integers(0, num_nodes, num_edges)
    src = np.concatenate([src, src[:5], [num_nodes + 1, 3, 5]])  # duplicates, a lone self loop, sink num_nodes+2
    dst = np.concatenate([dst, dst[:5], [num_nodes + 1, 3, num_nodes + 2]])
    pdf = pd.DataFrame({"s": src.astype(np.int64), "d": dst.astype(np.int64)})
    if string_ids:
        pdf = pdf.map(lambda v: f"node-{v}")
    pdf["w"] = rng.random(len(pdf)) * 3 if weighted else 1.0
    return pdf


def write_edges(spark, pdf: pd.DataFrame, path, partitions: int = 1) -> str:
    spark.createDataFrame(pdf).repartition(partitions).write.format("delta").mode("overwrite").save(str(path))
    return str(path)


def read_embeddings(spark, path) -> dict:
    return {
        r.node: np.asarray(r.embedding, dtype=np.float64)
        for r in spark.read.format("delta").load(str(path)).toPandas().itertuples()
    }


def spark_embed(spark, tmp_path, pdf, name: str, partitions: int = 1, raw_properties: str | None = None, **cfg) -> dict:
    edges = write_edges(spark, pdf, tmp_path / f"{name}_edges", partitions)
    config = FastRPConfig(src_col="s", dst_col="d", weight_col="w", block_size=16, **cfg)
    run_fastrp(
        spark,
        spark.read.format("delta").load(edges),
        config,
        str(tmp_path / "ckpt"),
        output=str(tmp_path / name),
        chunk_rows=3,
        raw_properties=spark.read.format("delta").load(raw_properties) if raw_properties else None,
    )
    return read_embeddings(spark, tmp_path / name)


DIRECTED = dict(
    directed=True,
    dim=8,
    iteration_weights=[1.0, 7.81],
    normalization_strength=-0.628,
    self_influence=0.3,
    variant="gds",
    seed=-3,
)


@pytest.fixture(scope="module")
def directed_runs(spark, tmp_path_factory):
    """A weighted directed multigraph with string ids, embedded twice with different layouts, and its reference."""
    tmp_path = tmp_path_factory.mktemp("fastrp_directed")
    pdf = random_edges(11, string_ids=True, weighted=True)
    one = spark_embed(
        spark,
        tmp_path,
        pdf,
        "one",
        partitions=1,
        num_partitions=1,
        state_store="cache",
        checkpoint="reliable",
        **DIRECTED,
    )
    three = spark_embed(
        spark,
        tmp_path,
        pdf.sample(frac=1.0, random_state=0),
        "three",
        partitions=3,
        num_partitions=3,
        state_store="cache",
        checkpoint="local",
        **DIRECTED,
    )
    two = spark_embed(spark, tmp_path, pdf, "two", partitions=1, num_partitions=2, state_store="files", **DIRECTED)
    assert not list((tmp_path / "ckpt").iterdir())  # each run deleted its folder (files of the state included)
    nodes, expected = fr.embed_edge_list(
        pdf["s"].to_numpy(), pdf["d"].to_numpy(), pdf["w"].to_numpy(), FastRPConfig(**DIRECTED)
    )
    return {"one": one, "two": two, "three": three, "nodes": nodes, "expected": expected}


def _worst_difference(got: dict, nodes: np.ndarray, expected: np.ndarray) -> float:
    assert sorted(got) == sorted(nodes.tolist())  # every node is there, nothing else
    return max(np.abs(got[n] - expected[k]).max() for k, n in enumerate(nodes.tolist()))


def test_spark_engine_matches_the_local_reference_on_a_directed_weighted_graph(directed_runs):
    # given a multigraph with duplicates, self loops, a lone-self-loop node and a sink (gds variant, self influence)
    # then the Spark engine gives the reference's vectors
    assert _worst_difference(directed_runs["one"], directed_runs["nodes"], directed_runs["expected"]) < TOLERANCE


def test_output_is_bit_identical_for_any_number_of_partitions_state_store_and_checkpoint_mode(directed_runs):
    # given the same graph stored in 1 and in 3 files, embedded with 1, 2 and 3 partitions, the state in Spark's
    # cache (reliable and local checkpoints) and in files
    one, two, three = directed_runs["one"], directed_runs["two"], directed_runs["three"]
    # then the vectors are equal bit for bit
    assert one.keys() == two.keys() == three.keys()
    for node, vector in one.items():
        np.testing.assert_array_equal(vector, two[node])
        np.testing.assert_array_equal(vector, three[node])


UNDIRECTED_FLAGS = [
    "--dim",
    "12",
    "--iteration-weights",
    "0,1,2",
    "--normalization-strength",
    "-0.5",
    "--standardize",
    "--sparsity",
    "2",
    "--block-size",
    "16",
]


@pytest.fixture(scope="module")
def good_run(spark, tmp_path_factory, tmp_job_flags):
    """An undirected, unweighted graph with long ids; the job has run once successfully (once per module)."""
    tmp_path = tmp_path_factory.mktemp("fastrp_job")
    pdf = random_edges(5, string_ids=False, weighted=True)
    edges = write_edges(spark, pdf, tmp_path / "edges")
    flags = [
        *tmp_job_flags(tmp_path),
        "--edges",
        edges,
        "--src-col",
        "s",
        "--dst-col",
        "d",
        "--set",
        "fastrp.weight_col=null",
        "--output",
        str(tmp_path / "emb"),
    ] + UNDIRECTED_FLAGS
    spec = importlib.util.spec_from_file_location("fastrp_job", JOB)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    main = job.main
    assert run(main, flags) == 0
    return {
        "flags": flags,
        "edges": edges,
        "pdf": pdf,
        "main": main,
        "output": tmp_path / "emb",
        "version": delta_version(spark, str(tmp_path / "emb")),
    }


def test_job_output_matches_the_local_reference_on_an_undirected_unweighted_graph(spark, good_run):
    # given the job's run (no --weight-col: every edge weighs 1, duplicates add up; standardised)
    pdf = good_run["pdf"]
    cfg = FastRPConfig(
        dim=12, iteration_weights=[0.0, 1.0, 2.0], normalization_strength=-0.5, standardize=True, sparsity=2.0
    )
    nodes, expected = fr.embed_edge_list(pdf["s"].to_numpy(), pdf["d"].to_numpy(), None, cfg)
    # then its vectors are the reference's
    assert _worst_difference(read_embeddings(spark, good_run["output"]), nodes, expected) < TOLERANCE


def test_job_writes_node_and_embedding_columns_and_a_run_record(spark, good_run):
    # then the output has one float array of length dim per node, keeping the ids' type
    emb = good_run["output"]
    out = spark.read.format("delta").load(str(emb))
    assert [(f.name, f.dataType.simpleString()) for f in out.schema.fields] == [
        ("node", "bigint"),
        ("embedding", "array<float>"),
    ]
    nodes = set(good_run["pdf"]["s"]) | set(good_run["pdf"]["d"])
    assert out.count() == len(nodes) and {len(r.embedding) for r in out.collect()} == {12}
    # and the commit and the run table record parameters, layout, input and output versions
    meta = json.loads(spark.sql(f"DESCRIBE HISTORY delta.`{emb}`").head()["userMetadata"])
    assert meta["params"]["dim"] == 12 and meta["inputs"]["edges"]["version"] == 0 and meta["num_blocks"] == 3
    assert set(meta["seconds_by_phase"]) >= {"edge_blocks", "iteration_1", "iteration_3"}
    # beside what it measured, the run's own estimate of its layout and of each process (2 cores here)
    assert meta["estimate"]["num_blocks"] == 3 and meta["estimate"]["jvm_memory_bytes"] >= fr.JVM_BASE_BYTES
    record = spark.read.format("delta").load(runs_path(str(emb))).head()
    assert record["output_version"] == good_run["version"] and record["input_version"] == 0
    assert json.loads(record["params"])["iteration_weights"] == [0.0, 1.0, 2.0]


def test_local_engine_through_the_job_gives_the_spark_engines_vectors(spark, tmp_path, good_run):
    spark_vectors = read_embeddings(spark, good_run["output"])
    assert run(good_run["main"], good_run["flags"] + ["--engine", "local", "--output", str(tmp_path / "local")]) == 0
    local_vectors = read_embeddings(spark, tmp_path / "local")
    assert max(np.abs(local_vectors[n] - v).max() for n, v in spark_vectors.items()) < TOLERANCE


def test_estimate_prints_volumes_and_writes_nothing(tmp_path, good_run, capsys):
    capsys.readouterr()
    assert run(good_run["main"], good_run["flags"] + ["--estimate", "--output", str(tmp_path / "never")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_edges"] == len(good_run["pdf"]) and report["shuffle_bytes_total"] > 0
    assert report["num_blocks"] == 3
    # per process: this session's 2 cores run 2 of the 3 blocks at once; its JVM's heap is the driver's memory
    assert report["python_workers_memory_bytes"] == 2 * (report["task_memory_bytes"] + fr.PYTHON_WORKER_BYTES)
    assert report["jvm_memory_bytes"] >= fr.JVM_BASE_BYTES
    assert not (tmp_path / "never").exists()


def test_block_tables_are_written_one_row_per_row_group(spark, tmp_path):
    # a table of CSR slices (hundreds of MB a row at 1e8 edges) must not sit in the heap until Parquet's
    # 100-row size check: each row is its own row group, flushed as it is written
    import pyarrow.parquet as pq

    from embeddings.fastrp_engine import Workdir

    work = Workdir(spark, str(tmp_path / "checkpoints"))
    rows = spark.range(0, 30, numPartitions=1).selectExpr("id", "repeat('x', 100) as data")
    work.save(rows, "slices", row_per_group=True)
    work.save(rows, "plain")
    groups = {
        name: sum(pq.ParquetFile(f).metadata.num_row_groups for f in Path(work.path, name).glob("*.parquet"))
        for name in ("slices", "plain")
    }
    assert groups == {"slices": 30, "plain": 1}


def _bad_table(spark, tmp_path, pdf):
    return write_edges(spark, pdf, tmp_path / "bad_edges")


BAD_INPUTS = {
    # the edges gate (GX) names the column and the expectation
    "missing column": (lambda pdf: pdf.drop(columns=["d"]), [], "missing column(s) d"),
    "null id": (
        lambda pdf: pdf.assign(s=pdf["s"].astype("Int64").mask(pdf.index == 2)),
        [],
        "s: expect_column_values_to_not_be_null",
    ),
    "negative weight": (
        lambda pdf: pdf.assign(w=pdf["w"].mask(pdf.index == 1, -1.0)),
        ["--weight-col", "w"],
        "w: expect_column_values_to_be_between",
    ),
    "NaN weight": (
        lambda pdf: pdf.assign(w=pdf["w"].mask(pdf.index == 1, np.nan)),
        ["--weight-col", "w"],
        "w: expect_column_values_to_not_be_null",
    ),  # pandas NaN arrives in Spark as null
    "empty table": (lambda pdf: pdf.iloc[:0], [], "expect_table_row_count_to_be_between"),
    "dim < 1": (lambda pdf: pdf, ["--dim", "0"], "fastrp.dim"),
    "weights/iterations mismatch": (lambda pdf: pdf, ["--iterations", "2"], "fastrp.iterations"),
    # the admission check, once the engine has counted the nodes
    "more than this machine holds": (
        lambda pdf: pdf,
        ["--dim", "1000000000", "--allow-dim-change"],
        "error: fastrp run does not fit this machine: shuffle + state on disk",
    ),
    "dim unlike the previous refresh's": (
        lambda pdf: pdf,
        ["--dim", "16"],
        "error: fastrp.dim=16 differs from the previous refresh's 12 (tables.embeddings",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_exits_2_naming_the_problem_and_keeps_the_previous_output(spark, tmp_path, good_run, capsys, case):
    # given a good run (fixture), then a run with bad input
    mutate, extra, needle = BAD_INPUTS[case]
    pdf = mutate(good_run["pdf"].copy())
    if case == "empty table":
        spark.createDataFrame([], "s long, d long, w double").write.format("delta").save(str(tmp_path / "bad_edges"))
        edges = str(tmp_path / "bad_edges")
    else:
        edges = _bad_table(spark, tmp_path, pdf)
    capsys.readouterr()
    # when
    code = run(good_run["main"], good_run["flags"] + ["--edges", edges] + extra)
    # then exit 2, a message naming the column or flag, and the output still at the good version
    assert code == 2
    assert needle in capsys.readouterr().err
    assert delta_version(spark, str(good_run["output"])) == good_run["version"]


def test_a_new_dim_replaces_the_published_vectors_when_allowed(spark, tmp_path, good_run):
    # given a copy of the published 12-wide table
    output = tmp_path / "emb"
    shutil.copytree(good_run["output"], output)
    # when a refresh asks for 16 and says the width may change
    flags = good_run["flags"] + ["--dim", "16", "--allow-dim-change", "--output", str(output)]
    assert run(good_run["main"], flags) == 0
    # then the new version holds 16-wide vectors
    assert delta_version(spark, str(output)) == good_run["version"] + 1
    assert {len(v) for v in read_embeddings(spark, output).values()} == {16}


def test_validation_error_is_an_input_error_naming_the_weight_flag(spark, tmp_path):
    pdf = pd.DataFrame({"s": [1, 2], "d": [2, 3], "w": [1.0, float("inf")]})
    edges = write_edges(spark, pdf, tmp_path / "e")
    cfg = FastRPConfig(src_col="s", dst_col="d", weight_col="w")
    with pytest.raises(InputError, match="--weight-col"):
        run_fastrp(
            spark, spark.read.format("delta").load(edges), cfg, str(tmp_path / "ckpt"), output=str(tmp_path / "o")
        )


def test_only_row_chunks_with_entries_send_partials():
    from embeddings.fastrp_engine import nonempty_chunks

    # 7 rows in chunks of 3 (rows 0-2, 3-5, 6): entries in rows 1 and 6 only
    indptr = np.array([0, 0, 2, 2, 2, 2, 2, 3])
    assert nonempty_chunks(indptr, 7, 3) == [0, 2]
    assert nonempty_chunks(np.zeros(8, dtype=np.int64), 7, 3) == []


def test_the_block_product_gives_the_same_bits_on_any_number_of_threads():
    import scipy.sparse as sp

    from embeddings.fastrp_engine import spmm

    # given a 300 x 200 sparse slice with empty rows and a float32 X
    rng = np.random.default_rng(3)
    mask = np.ones(300)
    mask[10:40] = 0
    p = (sp.diags(mask) @ sp.random(300, 200, density=0.05, format="csr", random_state=4)).tocsr()
    p.eliminate_zeros()
    x = rng.standard_normal((200, 8)).astype(np.float32)
    args = (p.indptr.astype(np.int64), p.indices.astype(np.int32), p.data.astype(np.float32), x)
    # when it is multiplied on 1 thread and on row bands of 2, 3 and 7 threads (bands of >= 100 entries)
    one = spmm(*args, threads=1)
    # then every thread count gives the same bits, close to the float64 product
    assert one.dtype == np.float32 and one.shape == (300, 8)
    for threads in (2, 3, 7):
        assert spmm(*args, threads=threads, min_band_nnz=100).tobytes() == one.tobytes()
    np.testing.assert_allclose(one, p @ x.astype(np.float64), rtol=1e-5, atol=1e-5)


def test_each_block_product_gets_the_cores_the_blocks_leave_free(spark):
    from embeddings.fastrp_engine import task_threads

    # given local[2]: one block gets both cores, two or more blocks one core each
    assert spark.sparkContext.defaultParallelism == 2
    assert [task_threads(spark, b) for b in (1, 2, 3)] == [2, 1, 1]


def test_the_state_lives_in_files_on_a_local_master_with_a_local_folder_else_in_sparks_cache(spark):
    from embeddings.fastrp_engine import files_state_store

    # given local[2]: auto picks files for a plain or file: folder, the cache for a distributed filesystem
    assert files_state_store(spark, "/tmp/ckpt", "auto") and files_state_store(spark, "file:/tmp/ckpt", "auto")
    assert not files_state_store(spark, "hdfs://nn:8020/ckpt", "auto")
    assert not files_state_store(spark, "s3a://bucket/ckpt", "auto")
    # and an explicit choice is kept
    assert files_state_store(spark, "hdfs://nn:8020/ckpt", "files") and not files_state_store(spark, "/tmp", "cache")


def test_a_block_state_in_files_reads_back_the_same_bits_and_leaves_no_partial_file(tmp_path):
    from embeddings.fastrp_engine import StateWriter, state_e, state_ids, state_x

    rng = np.random.default_rng(0)
    x, e, ids = (
        rng.random((5, 3), dtype=np.float32),
        rng.random((5, 3), dtype=np.float32),
        np.array(["a", "b"] * 2 + ["c"]),
    )
    # given a block's state written to a folder
    record = StateWriter(str(tmp_path / "k1"))(7, x, e, ids)
    # then the record is its paths, and they read back the same arrays (X memory-mapped)
    assert all(isinstance(path, str) for path in record)
    np.testing.assert_array_equal(state_x(record), x)
    np.testing.assert_array_equal(state_e(record), e)
    np.testing.assert_array_equal(state_ids(record), ids)
    assert sorted(f.name for f in (tmp_path / "k1").iterdir()) == ["7.e.npy", "7.ids.pkl", "7.x.npy"]
    # and the next iteration's record keeps the ids' file, writes no X on the last one
    last = StateWriter(str(tmp_path / "k2"))(7, None, e, record[2])
    assert last[0] is None and last[2] == record[2] and state_x(last) is None
    # and without a folder the record is the arrays themselves (Spark's cache holds them)
    assert all(got is want for got, want in zip(StateWriter(None)(7, x, e, ids), (x, e, ids)))


def test_a_cached_block_rdd_and_a_shuffle_output_union_without_a_python_re_pickling_pass(spark):
    from embeddings.fastrp_engine import _copartitioned_union, block_partition

    sc = spark.sparkContext
    cached = (
        sc.parallelize([(b, f"state-{b}") for b in range(3)], 1)
        .partitionBy(2, block_partition)
        .mapValues(lambda v: v.upper())
        .cache()
    )
    shuffled = sc.parallelize([((b, 0, 1), f"part-{b}") for b in range(3)], 1).partitionBy(2, block_partition)
    union = _copartitioned_union(cached, shuffled, 2)
    # the JVM union of the two RDDs themselves: no identity map (a nested Python worker) over either side
    deps = union._jrdd.rdd().dependencies()
    assert [deps.apply(i).rdd().id() for i in range(deps.size())] == [cached.id(), shuffled.id()]
    assert union.getNumPartitions() == 2
    by_partition = union.glom().collect()
    assert by_partition[0] == [(0, "STATE-0"), (2, "STATE-2"), ((0, 0, 1), "part-0"), ((2, 0, 1), "part-2")]
    assert by_partition[1] == [(1, "STATE-1"), ((1, 0, 1), "part-1")]


def test_a_csr_slice_sums_duplicate_edges_and_does_not_depend_on_their_order():
    from embeddings.fastrp_layout import csr_slice

    # 3 x 4 slice: (0, 1) twice (weights 1 and 2), (2, 3), (2, 0); row 1 empty
    i, j, w = np.array([2, 0, 0, 2]), np.array([3, 1, 1, 0], dtype=np.int32), np.array([5.0, 1.0, 2.0, 4.0])
    indptr, indices, data = csr_slice(i, j, w, 3, 4)
    assert indptr.tolist() == [0, 1, 1, 3] and indices.tolist() == [1, 0, 3] and data.tolist() == [3.0, 4.0, 5.0]
    for perm in ([3, 2, 1, 0], [1, 3, 0, 2]):
        again = csr_slice(i[perm], j[perm], w[perm], 3, 4)
        assert all(x.tobytes() == y.tobytes() for x, y in zip(again, (indptr, indices, data)))
    empty = csr_slice(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0), 2, 2)
    assert empty[0].tolist() == [0, 0, 0] and len(empty[1]) == len(empty[2]) == 0


def test_the_job_gates_its_input_and_output_and_tracks_the_run(good_run):
    # given the job's run (fixture): a stage of the runner like every other
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{good_run['output'].parent / 'mlflow.db'}")
    runs = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.data.tags.get("pipeline.stage") == "fastrp"
        and r.info.status == "FINISHED"
        and r.data.params.get("output.embeddings.path") == str(good_run["output"])
    ]
    run_ = min(runs, key=lambda r: r.info.start_time)  # the fixture's run (later tests add others)
    # then both gates ran and passed, and the tables read and written are its lineage
    assert run_.data.metrics["quality.edges.success"] == 1.0
    assert run_.data.metrics["quality.embeddings.success"] == 1.0
    assert run_.data.params["input.edges.delta_version"] == "0"
    assert run_.data.params["output.embeddings.delta_version"] == str(good_run["version"])
    assert run_.data.params["fastrp.dim"] == "12"


def test_the_run_logs_the_written_vectors_norms_and_a_pca_plot_of_them(spark, good_run):
    # given the job's run (fixture) and the table it wrote
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{good_run['output'].parent / 'mlflow.db'}")
    runs = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.data.params.get("output.embeddings.path") == str(good_run["output"])
    ]
    run_ = min(runs, key=lambda r: r.info.start_time)
    vectors = np.array([r["embedding"] for r in spark.read.format("delta").load(str(good_run["output"])).collect()])
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    # then the metrics are those of the table, and the plot is an artifact of the run
    metrics = run_.data.metrics
    assert metrics["embeddings.num_nodes"] == len(vectors)
    assert metrics["embeddings.norm_mean"] == pytest.approx(norms.mean(), rel=1e-6)
    assert metrics["embeddings.norm_min"] == pytest.approx(norms.min(), rel=1e-6)
    assert metrics["embeddings.norm_max"] == pytest.approx(norms.max(), rel=1e-6)
    assert metrics["embeddings.zero_vectors"] == int((norms == 0).sum())
    (plot,) = client.list_artifacts(run_.info.run_id, "plots")
    assert plot.path == "plots/fastrp_pca.png" and plot.file_size > 1000


def test_the_pca_plot_colours_nodes_by_role_prefix_and_keeps_its_legend_short():
    from embeddings.stages import node_kinds

    # given role-prefixed ids, then numeric and unprefixed ids, then many prefixes
    assert node_kinds(["user:1", "item:2", "user:3"]).tolist() == ["user", "item", "user"]
    assert set(node_kinds([17, 42, "alice", 3.5]).tolist()) == {"node"}
    many = [f"k{i}:{j}" for i in range(12) for j in range(12 - i)]  # k0 most frequent, k11 rarest
    kinds = node_kinds(many, max_kinds=4)
    # then the legend has at most max_kinds entries: the most frequent prefixes and "other"
    assert set(kinds.tolist()) == {"k0", "k1", "k2", "other"}


# --------------------------------------------------------------------------- node properties

PROPERTIES = dict(
    dim=8,
    iteration_weights=[1.0, 2.0],
    normalization_strength=-0.5,
    self_influence=0.2,
    standardize=True,
    property_ratio=0.5,
    node_properties=NodePropertiesConfig(id_col="id", columns=["age", "kind", "visits"]),
    seed=3,
)


def property_table(graph_nodes: list[str]) -> pd.DataFrame:
    """Every other graph node plus three with no edges; a double, a string and an integer column, with nulls."""
    ids = graph_nodes[::2] + ["node-500", "node-501", "node-502"]
    rng = np.random.default_rng(1)
    n = len(ids)
    age = pd.Series(rng.random(n) * 50).mask(np.arange(n) % 5 == 1)
    kind = pd.Series(rng.choice(["a", "b", "c"], n), dtype=object).mask(np.arange(n) % 4 == 2, None)
    visits = pd.array(rng.integers(0, 9, n), dtype="Int64")
    visits[np.arange(n) % 6 == 3] = pd.NA
    return pd.DataFrame({"id": ids, "age": age, "kind": kind, "visits": visits})


@pytest.fixture(scope="module")
def property_runs(spark, tmp_path_factory):
    """A weighted undirected graph with string ids and a property table, by the Spark engine and the reference."""
    tmp_path = tmp_path_factory.mktemp("fastrp_properties")
    pdf = random_edges(13, string_ids=True, weighted=True)
    nodes = sorted(set(pdf["s"]) | set(pdf["d"]))
    props = property_table(nodes)
    props_path = str(tmp_path / "props")
    spark.createDataFrame(props).repartition(2).write.format("delta").save(props_path)
    got = spark_embed(
        spark, tmp_path, pdf, "emb", partitions=2, num_partitions=2, raw_properties=props_path, **PROPERTIES
    )
    values = props[["age", "kind", "visits"]].astype({"visits": "float64"})
    expected_nodes, expected = fr.embed_edge_list(
        pdf["s"].to_numpy(),
        pdf["d"].to_numpy(),
        pdf["w"].to_numpy(),
        FastRPConfig(**PROPERTIES),
        properties=fr.NodeProperties(props["id"].to_numpy(), values, frozenset({"kind"})),
    )
    return {"got": got, "nodes": expected_nodes, "expected": expected, "pdf": pdf, "props": props_path}


def test_spark_engine_with_node_properties_matches_the_local_reference(property_runs):
    # given properties on half the nodes (nulls among them) and three nodes with properties but no edges
    nodes, expected = property_runs["nodes"], property_runs["expected"]
    assert {"node-500", "node-501", "node-502"} <= set(nodes.tolist())
    # then the Spark engine gives the reference's vectors, the edgeless nodes included
    assert _worst_difference(property_runs["got"], nodes, expected) < TOLERANCE


def test_the_job_reads_the_node_property_table_from_the_catalog(spark, tmp_path, tmp_job_flags, property_runs):
    # given the job, its local engine, and the property table as tables.node_properties
    edges = write_edges(spark, property_runs["pdf"], tmp_path / "edges")
    flags = [
        *tmp_job_flags(tmp_path),
        *("--edges", edges, "--src-col", "s", "--dst-col", "d", "--weight-col", "w", "--engine", "local"),
        *("--output", str(tmp_path / "emb"), "--block-size", "16"),
        *("--dim", "8", "--iteration-weights", "1,2", "--normalization-strength", "-0.5", "--standardize"),
        *("--set", "fastrp.self_influence=0.2", "--set", "fastrp.seed=3", "--set", "fastrp.property_ratio=0.5"),
        *("--set", "fastrp.node_properties={id_col: id, columns: [age, kind, visits]}"),
        *("--set", f"tables.node_properties={{path: {property_runs['props']}}}"),
    ]
    spec = importlib.util.spec_from_file_location("fastrp_job", JOB)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert run(job.main, flags) == 0
    # then it gives the Spark engine's vectors and names the property table among its inputs
    got = read_embeddings(spark, tmp_path / "emb")
    assert max(np.abs(got[n] - v).max() for n, v in property_runs["got"].items()) < TOLERANCE
    meta = json.loads(spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 'emb'}`").head()["userMetadata"])
    assert meta["inputs"]["node_properties"]["path"] == property_runs["props"]
    assert meta["num_edgeless_nodes"] == 3


BAD_PROPERTIES = {
    "a missing property column": ("id string, age double", ["age", "kind"], "missing column(s) ['kind']"),
    "a missing id column": ("node_id string, age double", ["age"], "missing column(s) ['id']"),
    "a column neither number nor string": (
        "id string, age double, flag boolean",
        ["age", "flag"],
        "property column 'flag' (fastrp.node_properties.columns) has type boolean",
    ),
    "integer ids for string edge ids": ("id long, age double", ["age"], "id column 'id'"),
}


@pytest.mark.parametrize("case", BAD_PROPERTIES, ids=list(BAD_PROPERTIES))
def test_a_bad_node_property_table_is_an_input_error_naming_the_table_and_column(spark, case):
    from pyspark.sql import types as T

    from embeddings.fastrp_validate import validate_node_properties

    schema, columns, message = BAD_PROPERTIES[case]
    cfg = FastRPConfig(property_ratio=0.5, node_properties=NodePropertiesConfig(id_col="id", columns=columns))
    with pytest.raises(InputError) as err:
        validate_node_properties(spark.createDataFrame([], schema), cfg, T.StringType())
    assert str(err.value).startswith("tables.node_properties: ") and message in str(err.value)


def test_repeated_ids_and_infinite_values_in_the_property_table_are_refused(spark):
    from pyspark.sql import types as T

    from embeddings.fastrp_validate import validate_node_properties

    cfg = FastRPConfig(property_ratio=0.5, node_properties=NodePropertiesConfig(id_col="id", columns=["age"]))
    repeated = spark.createDataFrame([("a", 1.0), ("a", 2.0)], "id string, age double")
    with pytest.raises(InputError, match="1 row\\(s\\) repeat an id of column 'id'"):
        validate_node_properties(repeated, cfg, T.StringType())
    infinite = spark.createDataFrame([("a", float("inf")), ("b", None)], "id string, age double")
    with pytest.raises(InputError, match="infinite value in property column 'age'"):
        validate_node_properties(infinite, cfg, T.StringType())
