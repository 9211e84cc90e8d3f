"""Candidate retrieval: the blockwise Spark top-K equals a brute-force top-K over the full score matrix, for any
block size and partitioning; the retrieve stage and job commit it like every stage."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from core.cli import run
from core.config import PipelineConfig, RetrieveConfig
from core.errors import InputError
from embeddings.io import delta_version
from embeddings.quality import validate
from embeddings.retrieval import block_top_k, top_k
from embeddings.runner import run_stage
from embeddings.stages import RETRIEVE

REPO = Path(__file__).resolve().parents[2]
NUM_USERS, NUM_ITEMS, DIM = 60, 40, 8
CANDIDATES_SCHEMA = "query string, rank int, candidate string, score double"


def load_job():
    spec = importlib.util.spec_from_file_location("retrieve_job", REPO / "jobs" / "retrieve.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


# --------------------------------------------------------------------------- a small random graph


@pytest.fixture(scope="module")
def graph():
    """60 users and 40 items with (8,) float32 vectors (item:7 is a zero vector); each user has edges to 6 items."""
    rng = np.random.default_rng(7)
    nodes = [f"user:u{i}" for i in range(NUM_USERS)] + [f"item:{j}" for j in range(NUM_ITEMS)]
    vectors = rng.normal(size=(len(nodes), DIM)).astype(np.float32)  # (N, D)
    vectors[nodes.index("item:7")] = 0.0
    edges = []
    for i in range(NUM_USERS):
        for j in rng.choice(NUM_ITEMS, size=6, replace=False):
            # some edges point item -> user: a user's items are its neighbours in either direction
            edges.append((f"user:u{i}", f"item:{j}") if j % 5 else (f"item:{j}", f"user:u{i}"))
    edges += [("item:1", "item:2"), ("item:3", "item:1")]  # item-item edges never exclude anything
    return nodes, vectors, edges


@pytest.fixture(scope="module")
def frames(spark, graph):
    nodes, vectors, edges = graph
    emb = spark.createDataFrame(
        [(n, [float(x) for x in v]) for n, v in zip(nodes, vectors)], "node string, embedding array<float>"
    )
    edge_frame = spark.createDataFrame([(s, d, 1.0) for s, d in edges], "src string, dst string, weight double")
    return emb, edge_frame


def brute_force(graph, cfg: RetrieveConfig) -> dict[str, list[tuple[str, float]]]:
    """Each query's top-K from np.argsort over the full (N, C) score matrix, exclusions set to -inf."""
    nodes, vectors, edges = graph
    x = vectors.astype(np.float64)
    if cfg.metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    cands = sorted(n for n in nodes if not cfg.same_type or n.startswith("item:"))  # by id: ties by id
    col = {n: j for j, n in enumerate(cands)}
    scores = x @ x[[nodes.index(c) for c in cands]].T  # (N, C)
    seen = {}
    for s, d in edges:
        for user, item in ((s, d), (d, s)):
            if user.startswith("user:") and item.startswith("item:"):
                seen.setdefault(user, set()).add(item)
    out = {}
    for i, node in enumerate(nodes):
        if node.split(":")[0] not in cfg.queries:
            continue
        excluded = {node} | (seen.get(node, set()) if cfg.exclude_seen else set())
        row = scores[i].copy()
        row[[col[e] for e in excluded if e in col]] = -np.inf
        order = np.argsort(-row, kind="stable")  # score descending, then id ascending
        out[node] = [(cands[j], float(row[j])) for j in order if np.isfinite(row[j])][: cfg.k]
    return out


def as_lists(df) -> dict[str, list[tuple[str, float]]]:
    rows = sorted(df.collect(), key=lambda r: (r["query"], r["rank"]))
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r["query"], []).append((r["candidate"], r["score"]))
        assert r["rank"] == len(out[r["query"]])  # ranks 1, 2, ... without gaps
    return out


def assert_same_top_k(got, expected):
    assert set(got) == set(expected)
    for query, ranked in expected.items():
        assert [c for c, _ in got[query]] == [c for c, _ in ranked], query
        np.testing.assert_allclose([s for _, s in got[query]], [s for _, s in ranked], rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- the numpy kernel


def test_kernel_keeps_the_k_best_and_breaks_ties_by_lowest_candidate_index():
    # given one query and five candidates, three of them identical (a three-way tie for 2nd place)
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    c = np.array([[0.5, 0], [2, 0], [0.5, 0], [0.5, 0], [-1, 0]], dtype=np.float32)
    # when the top 3 are kept
    idx, sc = block_top_k(q, c, 3)
    # then the best comes first, then the tied ones by index
    assert idx.tolist() == [[1, 0, 2]] and sc.tolist() == [[2.0, 0.5, 0.5]]


def test_kernel_exclusions_leave_exactly_k_when_enough_candidates_remain_and_pad_otherwise():
    q = np.eye(2, dtype=np.float32)
    c = np.array([[3, 0], [2, 0], [1, 0], [0, 1]], dtype=np.float32)
    idx, sc = block_top_k(q, c, 2, [{0}, {3, 2, 1}])
    assert idx.tolist() == [[1, 2], [0, -1]]  # query 1 has only candidate 0 left
    assert sc[0].tolist() == [2.0, 1.0] and sc[1, 0] == 0.0 and np.isnan(sc[1, 1])
    mask = np.array([[True, False, False, False], [False, False, False, False]])
    assert block_top_k(q, c, 2, mask)[0].tolist() == [[1, 2], [3, 0]]  # a bool mask works the same


def test_kernel_cosine_normalises_rows_and_a_zero_vector_scores_zero():
    q = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    c = np.array([[6.0, 8.0], [0.0, -2.0], [0.0, 0.0]], dtype=np.float32)
    idx, sc = block_top_k(q, c, 3, metric="cosine")
    assert idx[0].tolist() == [0, 2, 1]
    np.testing.assert_allclose(sc[0], [1.0, 0.0, -0.8], atol=1e-12)
    assert idx[1].tolist() == [0, 1, 2] and sc[1].tolist() == [0.0, 0.0, 0.0]  # all tie at 0: by index


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_kernel_equals_a_full_argsort_and_its_scores_do_not_depend_on_the_block(metric):
    rng = np.random.default_rng(3)
    q, c = rng.normal(size=(37, 16)).astype(np.float32), rng.normal(size=(53, 16)).astype(np.float32)
    exclude = [set(rng.choice(53, size=5, replace=False)) for _ in range(37)]
    idx, sc = block_top_k(q, c, 10, exclude, metric=metric)
    # the reference: float64 scores of every pair, excluded ones at -inf, sorted
    x, y = q.astype(np.float64), c.astype(np.float64)
    if metric == "cosine":
        x, y = x / np.linalg.norm(x, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
    full = x @ y.T
    for i, e in enumerate(exclude):
        full[i, list(e)] = -np.inf
    expected = np.argsort(-full, axis=1, kind="stable")[:, :10]
    assert (idx == expected).all()
    np.testing.assert_allclose(sc, np.take_along_axis(full, expected, axis=1), rtol=1e-12)
    # the same query alone, or among other candidates, gets bit-identical scores for the same pairs
    alone_idx, alone_sc = block_top_k(q[5:6], c, 10, exclude[5:6], metric=metric)
    assert (alone_idx == idx[5:6]).all() and alone_sc.tobytes() == sc[5:6].tobytes()
    half_idx, half_sc = block_top_k(q, c[:26], 26, metric=metric)  # every pair with the first 26 candidates
    for i in range(37):
        shared = {j: s for j, s in zip(idx[i], sc[i]) if j < 26}
        assert shared and all(half_sc[i][list(half_idx[i]).index(j)] == s for j, s in shared.items())


def test_a_float32_tie_at_the_kth_place_is_decided_by_the_exact_scores():
    # given two candidates whose float32 dot products with q both round to 1.0, while exactly a > b
    q = np.array([[1.0, 1.0]], np.float32)
    b, a = [1.0, 0.0], [1.0, 2.0**-25]  # q.a = 1 + 2^-25: below float32's half ulp at 1
    assert (q @ np.array([b, a], np.float32).T)[0, 0] == (q @ np.array([b, a], np.float32).T)[0, 1]
    idx, sc = block_top_k(q, np.array([b, a], np.float32), 1, metric="dot")
    # then the one exact top-1 wins, not the lower index: the output cannot depend on the block it shares
    assert idx.tolist() == [[1]] and sc[0, 0] == 1.0 + 2.0**-25


# --------------------------------------------------------------------------- Spark


CONFIGS = [  # each metric with and without exclusions, items only and any node
    dict(metric="cosine", exclude_seen=True, same_type=True),
    dict(metric="dot", exclude_seen=True, same_type=False, queries=["user"]),
    dict(metric="cosine", exclude_seen=False, same_type=False),
    dict(metric="dot", exclude_seen=False, same_type=True),
]


@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_spark_top_k_equals_the_brute_force_top_k(spark, graph, frames, params):
    # given the graph's vectors and edges, and blocks much smaller than the graph
    cfg = RetrieveConfig(k=5, block_size=16, **params)
    emb, edges = frames
    # when the top 5 are retrieved
    got = as_lists(top_k(emb, cfg, edges=edges))
    # then each query has exactly 5, the brute force's
    expected = brute_force(graph, cfg)
    assert {len(v) for v in got.values()} == {5}
    assert_same_top_k(got, expected)
    if cfg.exclude_seen:  # (a check of the check: without exclusions users would get seen items)
        no_excl = brute_force(graph, cfg.model_copy(update={"exclude_seen": False}))
        assert any(no_excl[q] != expected[q] for q in expected if q.startswith("user:"))


def test_a_query_with_fewer_allowed_candidates_than_k_gets_all_of_them(spark, graph, frames):
    cfg = RetrieveConfig(k=45, block_size=16)  # 40 items
    emb, edges = frames
    got = as_lists(top_k(emb, cfg, edges=edges))
    assert_same_top_k(got, brute_force(graph, cfg))
    assert len(got["item:0"]) == 39 and len(got["user:u0"]) == 34  # all but itself; all but its 6 items


def test_output_is_identical_for_any_block_size_and_partitioning(spark, frames):
    emb, edges = frames
    outputs = []
    for block_size, partitions in [(4096, 1), (16, 3), (5, 7)]:
        cfg = RetrieveConfig(k=4, block_size=block_size)
        df = top_k(emb.repartition(partitions), cfg, edges=edges.repartition(partitions))
        outputs.append(sorted(tuple(r) for r in df.collect()))
    assert all(o == outputs[0] for o in outputs[1:])  # exact: same candidates, ranks and score bits
    assert len(outputs[0]) == (NUM_USERS + NUM_ITEMS) * 4


def test_output_schema_is_query_rank_candidate_score(spark, frames):
    emb, _ = frames
    df = top_k(emb, RetrieveConfig(k=2, exclude_seen=False), edges=None)
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == [
        ("query", "string"),
        ("rank", "int"),
        ("candidate", "string"),
        ("score", "double"),
    ]


def test_an_embeddings_table_without_item_nodes_is_refused(spark):
    emb = spark.createDataFrame([("user:a", [1.0, 0.0]), ("user:b", [0.0, 1.0])], "node string, embedding array<float>")
    with pytest.raises(InputError, match=r"tables.embeddings: no item nodes .*'user': 2"):
        top_k(emb, RetrieveConfig(k=1), edges=None)


def test_vectors_of_different_lengths_are_refused(spark):
    emb = spark.createDataFrame([("item:a", [1.0, 0.0]), ("item:b", [1.0])], "node string, embedding array<float>")
    with pytest.raises(InputError, match=r"'embedding' holds vectors of lengths \[1, 2\]"):
        top_k(emb, RetrieveConfig(k=1), edges=None)


@pytest.mark.slow  # Great Expectations validations
def test_the_candidates_suite_refuses_ranks_out_of_range_and_non_finite_scores(spark, tmp_path):
    good = spark.createDataFrame([("user:a", 1, "item:x", 0.5), ("user:a", 2, "item:y", -0.5)], CANDIDATES_SCHEMA)
    assert validate(good, "candidates", output=tmp_path, k=2).success
    bad = spark.createDataFrame([("user:a", 3, "item:x", float("nan")), ("user:a", 0, None, 1.0)], CANDIDATES_SCHEMA)
    report = validate(bad, "candidates", output=tmp_path, k=2)
    assert not report.success
    assert {f.column for f in report.failures} == {"rank", "candidate", "score"}


# --------------------------------------------------------------------------- stage and job


def write_inputs(spark, frames, root: Path) -> None:
    emb, edges = frames
    emb.write.format("delta").save(str(root / "fastrp"))
    edges.write.format("delta").save(str(root / "graph" / "edges"))


@pytest.mark.slow  # the stage end to end: gate, Delta commit
def test_the_stage_writes_one_delta_commit_with_its_settings(spark, graph, frames, tmp_path):
    # given embeddings and edges in the catalog
    write_inputs(spark, frames, tmp_path)
    cfg = PipelineConfig.model_validate(
        {
            "tables": {"root": str(tmp_path)},
            "mlflow": {"enabled": False},
            "quality": {"output": str(tmp_path / "quality"), "data_docs": False},
            "retrieve": {"k": 3, "metric": "dot", "block_size": 32},
        }
    )
    # when the stage runs
    result = run_stage(spark, cfg, RETRIEVE)
    # then the candidates table has one commit holding the brute force's top 3 and the settings
    path = cfg.tables.path("candidates")
    assert delta_version(spark, path) == 0 and result.written["candidates"].num_rows == 100 * 3
    table = spark.read.format("delta").load(path)
    assert_same_top_k(as_lists(table), brute_force(graph, cfg.retrieve))
    meta = json.loads(spark.sql(f"DESCRIBE HISTORY delta.`{path}`").head()["userMetadata"])
    assert meta["job"] == "retrieve" and set(meta["inputs"]) == {"embeddings", "edges"}
    assert {k: meta[k] for k in ("k", "metric", "queries", "exclude_seen", "same_type")} == {
        "k": 3,
        "metric": "dot",
        "queries": ["user", "item"],
        "exclude_seen": True,
        "same_type": True,
    }
    s = result.summary
    assert (s.num_queries, s.k, s.metric) == (100, 3, "dot")
    top1 = [v[0][1] for v in brute_force(graph, cfg.retrieve).values()]
    assert s.mean_top1_score == pytest.approx(np.mean(top1))


@pytest.mark.slow  # the job end to end: gate, Delta commit, MLflow
def test_the_job_writes_candidates_prints_them_and_logs_metrics(spark, frames, tmp_path, job_args, capsys):
    from mlflow import MlflowClient

    write_inputs(spark, frames, tmp_path)
    argv = [*job_args, "--set", f"tables.root={tmp_path}", "--k", "2", "--metric", "cosine", "--no-exclude-seen"]
    argv += ["--set", "quality.data_docs=false"]
    assert run(load_job().main, argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["rows"] == 200 and printed["version"] == 0 and printed["num_queries"] == 100
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run_,) = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
        if r.data.tags.get("pipeline.stage") == "retrieve"
    ]
    assert run_.data.metrics["retrieve.num_queries"] == 100
    assert run_.data.metrics["retrieve.mean_top1_score"] == pytest.approx(printed["mean_top1_score"])
    assert run_.data.metrics["quality.candidates.success"] == 1.0


def test_the_job_refuses_k_0_with_exit_2_naming_the_key(spark, frames, tmp_path, job_args, capsys):
    argv = [*job_args, "--set", f"tables.root={tmp_path}", "--k", "0"]
    assert run(load_job().main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("error:") == 1 and "retrieve.k" in err
    assert not (tmp_path / "candidates").exists()
