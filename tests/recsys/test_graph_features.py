"""FastRP vectors as CTR features (``train.graph_features``): rows by vocabulary id, frozen and init modes,
sharding, checkpoints, export, the MLflow pyfunc, lineage, and one error per bad input.

The tiny tables (``ctr_tables``): C1 has ids 2..39 (values ``C1_v<i>``), C2 ids 2..11; the FastRP table
has 4-wide vectors for ``user:C1_v<i>`` of even ``i`` (half of C1's values), every ``item:C2_v<j>``, and
two nodes no value names (one of them ``item:C1_v3``: the item role of a C1 value, so not C1's node).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from ctr_tables import (
    GRAPH_DIM,
    VOCAB,
    fastrp_vector,
    graph_inputs,
    make_encoded,
    make_fastrp,
    make_vocab,
    train_config,
    write_delta,
)

from core.errors import ConfigError, InputError
from recsys.data.graph import FastRPVectors, graph_rows, init_rows, init_seed, projection_matrix
from recsys.modules.layouts import GraphSpec, make_layout, with_graph_features

SIZES = {"C1": VOCAB["C1"], "C2": VOCAB["C2"], "tags": VOCAB["tags"]}
C1_WITH_NODE = list(range(2, VOCAB["C1"], 2))  # ids of the C1 values the FastRP table has a node for


@pytest.fixture(scope="module")
def tables(tiny_tables, tmp_path_factory):
    """(encoded, vocab, FastRP table path, the FastRP table as Arrow)."""
    fastrp = make_fastrp()
    path = write_delta(tmp_path_factory.mktemp("graph") / "fastrp", [fastrp])
    return (*tiny_tables, path, fastrp)


@contextlib.contextmanager
def one_rank():
    """A 1-rank gloo process group in this process (as ``run_training`` sets up for world_size 1)."""
    from recsys.distributed.launch import process_group, single_rank_env

    with single_rank_env(), process_group("gloo", "cpu") as group:
        yield group


def vectors(nodes: list[str], rows: list[list[float]]) -> FastRPVectors:
    return FastRPVectors("fastrp", 0, pd.Index(nodes), np.asarray(rows, np.float32))


# --------------------------------------------------------------------------- maths and layout


def test_graph_rows_are_the_fastrp_vectors_of_known_values_and_zero_for_missing_oov_and_unknown():
    # given values a, b, c with ids 2, 3, 4; nodes for user:a and user:c (item:b is another role's node)
    fastrp = vectors(["user:c", "item:b", "user:a"], [[1.0, 2.0], [9.0, 9.0], [3.0, 4.0]])
    # when
    matrix, found = graph_rows(np.array(["a", "b", "c"]), np.array([2, 3, 4]), 6, "user:", fastrp)
    # then: row = vocabulary id; ids 0 (missing), 1 (OOV), 3 (no node) and 5 (no value) are zero
    assert matrix.tolist() == [[0, 0], [0, 0], [3, 4], [0, 0], [1, 2], [0, 0]]
    assert found.tolist() == [True, False, True]


def test_integer_values_match_their_nodes_as_strings():
    fastrp = vectors(["item:17", "item:170"], [[1.0], [2.0]])
    matrix, _ = graph_rows(np.array([17, 7]).astype(str), np.array([2, 3]), 4, "item:", fastrp)
    assert matrix[:, 0].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_the_init_projection_is_seeded_and_keeps_squared_norms_in_expectation():
    x = np.random.default_rng(1).standard_normal((50, 8))
    p = projection_matrix(8, 4096, seed=3)
    assert np.array_equal(p, projection_matrix(8, 4096, seed=3))
    assert not np.array_equal(p, projection_matrix(8, 4096, seed=4))
    ratio = np.linalg.norm(x @ p, axis=1) ** 2 / np.linalg.norm(x, axis=1) ** 2
    assert np.all(np.abs(ratio - 1) < 0.15)  # JL: relative distortion ~ sqrt(8/4096) per row


def test_init_rows_are_one_scale_of_the_projected_rows_with_the_target_rms():
    # given a (V=5, d=3) graph matrix whose ids 2 and 4 have nodes
    graph = np.zeros((5, 3), np.float32)
    graph[2], graph[4] = [1.0, 0.0, 2.0], [0.0, -1.0, 1.0]
    # when
    rows = init_rows(graph, np.array([2, 4]), out_dim=6, seed=7, target_rms=0.1)
    # then
    projected = graph[[2, 4]] @ projection_matrix(3, 6, seed=7)
    scale = rows / projected
    np.testing.assert_allclose(scale, np.full_like(scale, scale[0, 0]), rtol=1e-5)  # one factor for every entry
    assert np.sqrt(np.mean(rows.astype(np.float64) ** 2)) == pytest.approx(0.1, rel=1e-6)


def make_config_layout(kind: str):
    """A ``train.layout`` config of ``kind`` for the tiny sizes."""
    from core.train_config import HashedLayoutConfig, UnifiedLayoutConfig, VocabLayoutConfig

    return {
        "vocab": VocabLayoutConfig(),
        "hashed": HashedLayoutConfig(total_rows=20),
        "unified": UnifiedLayoutConfig(),
    }[kind]


@pytest.mark.parametrize("kind", ["vocab", "hashed"])
def test_a_frozen_feature_adds_a_graph_table_looked_up_by_vocabulary_id(kind):
    # given
    base = make_layout(make_config_layout(kind), list(SIZES), SIZES, 8, seed=0)
    # when
    layout = with_graph_features(base, {"C1": ("frozen", "user:")}, 4, SIZES)
    # then: one more table (V_C1 x d) and key, whose rows are C1's vocabulary ids even when C1 itself is hashed
    assert [t.name for t in layout.tables][-1] == "graph__C1" and layout.tables[-1].num_embeddings == 40
    assert layout.tables[-1].embedding_dim == 4 and layout.keys[-1] == "graph__C1"
    ids = np.array([0, 1, 39])
    assert np.array_equal(layout.rows(len(layout.keys) - 1, ids, np.array([5, 6, 7])), ids)
    assert layout.graph_keys == {"graph__C1": 4} and layout.interaction_dims == [8, 8, 8, 8]
    assert layout.feature_widths == base.feature_widths  # the graph key belongs to no feature's group
    assert type(layout).from_dict(json.loads(json.dumps(layout.to_dict()))) == layout


@pytest.mark.parametrize("kind", ["dlrm", "dcn"])
def test_a_graph_key_enters_the_interaction_as_one_more_projected_vector_and_gets_a_zero_gradient(kind):
    # given a vocab layout (D=8) with C1's frozen graph table (d=4), and a batch where every key has one value
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from recsys.modules.ctr import GraphCTRModel, build_model

    extra = {"cross_rank": 2} if kind == "dcn" else {}
    cfg = train_config(model={"kind": kind, "dense_arch": [8], "over_arch": [8], **extra})
    layout = with_graph_features(
        make_layout(cfg.layout, list(SIZES), SIZES, 8, seed=0), {"C1": ("frozen", "u:")}, 4, SIZES
    )
    model = build_model(cfg, layout, num_dense_inputs=4, seed=0)
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=list(layout.keys), values=torch.tensor([2, 3] * 4), lengths=torch.ones(8, dtype=torch.int32)
    )
    # when
    pooled = model.pooled(kjt)
    model(torch.ones(2, 4), kjt).sum().backward()
    # then: 4 vectors of width D, the last Linear(4, 8) of the graph row; the graph table's gradient is zero
    assert isinstance(model, GraphCTRModel) and [tuple(p.shape) for p in pooled] == [(2, 8)] * 4
    graph_row = model.ebc.embedding_bags["graph__C1"].weight[2]
    torch.testing.assert_close(pooled[3][0], model.graph_projections["graph__C1"](graph_row))
    interaction_in = 8 + 5 * 4 // 2 if kind == "dlrm" else 8 + 4 * 8  # dense + dots of 5 vectors | dense ++ 4 vectors
    assert model.over_arch.model[0]._mlp[0]._linear.in_features == interaction_in
    assert not model.ebc.embedding_bags["graph__C1"].weight.grad.any()  # the bags' one output: zeros for graph__C1
    assert (
        model.ebc.embedding_bags["C1"].weight.grad is not None
        and model.graph_projections["graph__C1"].weight.grad.any()
    )


def test_an_init_feature_adds_no_table_only_its_record():
    base = make_layout(make_config_layout("vocab"), list(SIZES), SIZES, 8, seed=0)
    layout = with_graph_features(base, {"C2": ("init", "item:")}, 4, SIZES)
    assert layout.tables == base.tables and layout.keys == base.keys
    assert layout.graph == (GraphSpec("C2", "init", "item:", 4),)


@pytest.mark.parametrize(
    ("kind", "graph", "message"),
    [
        ("unified", {"C1": ("frozen", "user:")}, r"per-feature tables: not the 'unified' layout"),
        ("hashed", {"C1": ("init", "user:")}, r"train\.graph_features\.C1: mode 'init' needs a table indexed by"),
    ],
)
def test_layouts_a_graph_feature_cannot_use_are_refused(kind, graph, message):
    base = make_layout(make_config_layout(kind), list(SIZES), SIZES, 8, seed=0)
    with pytest.raises(ConfigError, match=message):
        with_graph_features(base, graph, 4, SIZES)


# --------------------------------------------------------------------------- config-time refusals


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["train.optembed.enabled=true"], r"with train\.optembed\.enabled is not supported yet"),
        (["train.layout.kind=unified"], r"need per-feature tables \(train\.layout\.kind vocab or hashed\)"),
        (
            ["train.layout.kind=hashed", "train.graph_features.C1=init"],
            r"train\.graph_features\.C1: mode 'init' needs train\.layout\.kind 'vocab'",
        ),
    ],
)
def test_graph_features_are_refused_at_config_time_with_what_they_cannot_work_with(tmp_path, settings, message):
    from core.cli import load_config

    layer = tmp_path / "empty.yaml"
    layer.write_text("{}\n")
    sets = [a for s in ["train.graph_features.C1=frozen", *settings] for a in ("--set", s)]
    with pytest.raises(ConfigError, match=message):
        load_config(["--config", str(layer), *sets], section="train")


def test_the_pipeline_config_hands_the_trainer_the_fastrp_table_and_each_features_prefix(tmp_path):
    from core.cli import load_config

    layer = tmp_path / "empty.yaml"
    layer.write_text("{}\n")
    sets = ["--set", "train.graph_features.C1=frozen", "--set", "train.graph_features.C2={mode: init}"]
    inputs = load_config(["--config", str(layer), *sets], section="train").train_inputs()
    assert inputs.embeddings and inputs.embeddings.endswith("fastrp")
    assert inputs.graph_prefixes == {"C1": "user:", "C2": "item:"}  # graph.user / graph.item


# --------------------------------------------------------------------------- bad inputs (before any rank starts)


def check(tables, embeddings=None, prefixes=None, **overrides):
    """``prepare`` (every check before training) of a graph-feature run over the tiny tables."""
    from recsys.train import prepare

    encoded, vocab, path, _ = tables
    cfg = train_config(graph_features={"C1": "frozen", "C2": "init"}, **overrides)
    inputs = graph_inputs(encoded, vocab, embeddings or path, **({"prefixes": prefixes} if prefixes else {}))
    return prepare(cfg, inputs)


def test_a_missing_fastrp_table_is_an_input_error_naming_its_path(tables, tmp_path):
    with pytest.raises(InputError, match=r"FastRP table \(tables\.embeddings\): no Delta table at '.*nowhere'"):
        check(tables, embeddings=str(tmp_path / "nowhere"))


def test_a_fastrp_table_without_an_embedding_column_is_an_input_error_naming_it(tables, tmp_path):
    path = write_delta(tmp_path / "fastrp", [make_fastrp().rename_columns(["node", "vector"])])
    with pytest.raises(InputError, match=r"FastRP table .*missing column\(s\) \['embedding'\]"):
        check(tables, embeddings=path)


def test_vectors_of_different_widths_are_an_input_error_naming_a_node(tables, tmp_path):
    table = make_fastrp()
    rows = table.column("embedding").to_pylist()
    rows[3] = rows[3][:2]
    bad = table.set_column(1, "embedding", pa.array(rows, pa.list_(pa.float32())))
    path = write_delta(tmp_path / "fastrp", [bad])
    with pytest.raises(InputError, match=r"rows of different dims \[2, 4\] \(node 'user:C1_v8' has 2\)"):
        check(tables, embeddings=path)


def test_a_non_finite_vector_is_an_input_error_naming_its_node(tables, tmp_path):
    table = make_fastrp()
    rows = table.column("embedding").to_pylist()
    rows[3][1] = float("nan")
    bad = table.set_column(1, "embedding", pa.array(rows, pa.list_(pa.float32())))
    path = write_delta(tmp_path / "fastrp", [bad])
    with pytest.raises(InputError, match=r"1 vector\(s\) hold NaN, inf or null values \(node 'user:C1_v8'\)"):
        check(tables, embeddings=path)


def test_no_value_with_a_node_is_an_input_error_naming_the_prefix_looked_for_and_a_node_found(tables):
    # given C1's nodes are 'user:...' but the prefix says 'usr:'
    with pytest.raises(
        InputError,
        match=r"train\.graph_features\.C1: none of the 38 vocabulary values of 'C1' has a node .*looked for prefix "
        r"'usr:' \(e\.g\. 'usr:C1_v2'\), found node ids like 'user:C1_v2'",
    ):
        check(tables, prefixes={"C1": "usr:", "C2": "item:"})


def test_low_coverage_warns_with_the_share_and_is_recorded(tables, caplog):
    # given half of C1's values have a node, and a 0.9 threshold
    with caplog.at_level(logging.WARNING, logger="recsys.data.graph"):
        summary = check(tables, graph_min_coverage=0.9)
    # then
    assert "train.graph_features.C1: only 50.0% of 38 vocabulary values have a node 'user:<value>'" in caplog.text
    assert "C2" not in caplog.text  # every C2 value has one
    assert summary.graph.features["C1"].coverage == 0.5 and summary.graph.features["C2"].coverage == 1.0
    assert summary.graph.embedding_dim == GRAPH_DIM and summary.graph.version == 0


def test_graph_features_without_a_fastrp_table_are_a_config_error(tables):
    from core.train_config import TrainInputs
    from recsys.train import prepare

    encoded, vocab, _, _ = tables
    with pytest.raises(
        ConfigError, match=r"train\.graph_features \(C1\) need the FastRP table: set tables\.embeddings"
    ):
        prepare(train_config(graph_features={"C1": "frozen"}), TrainInputs(encoded=encoded, vocab=vocab))


# --------------------------------------------------------------------------- training (one rank)


@pytest.fixture(scope="module")
def trained(tables, tmp_path_factory):
    """(result, export path, cfg, inputs) of a 1-rank run with C1 frozen and C2 init (vocab layout)."""
    from recsys.train import run_training

    out = tmp_path_factory.mktemp("graph_run")
    encoded, vocab, path, _ = tables
    cfg = train_config(
        graph_features={"C1": "frozen", "C2": "init"},
        epochs=2,
        export_path=str(out / "model.pt"),
        metrics_out=str(out / "metrics.json"),
    )
    inputs = graph_inputs(encoded, vocab, path)
    return run_training(cfg, inputs), str(out / "model.pt"), cfg, inputs


def initial_state(cfg, inputs):
    """The state the trainer starts from: the seeded plain model with the graph rows (what each rank loads)."""
    from recsys.modules.ctr import build_model
    from recsys.train import prepare
    from recsys.trainer import graph_initial_state, make_run_layout

    summary = prepare(cfg, inputs)
    layout = make_run_layout(cfg, summary)
    plain = build_model(cfg, layout, summary.spec.num_dense_inputs, seed=cfg.seed)
    return graph_initial_state(cfg, summary, layout, plain.state_dict())


@pytest.mark.slow
def test_the_trained_graph_table_holds_the_fastrp_rows_by_vocabulary_id_and_zeros_elsewhere(trained, tables):
    from recsys.export import load_exported

    _, export, _, _ = trained
    fastrp = tables[3]
    weight = load_exported(export).model.state_dict()["ebc.embedding_bags.graph__C1.weight"].numpy()
    assert weight.shape == (VOCAB["C1"], GRAPH_DIM)
    for i in range(VOCAB["C1"]):
        want = fastrp_vector(fastrp, f"user:C1_v{i}") if i in C1_WITH_NODE else np.zeros(GRAPH_DIM, np.float32)
        assert np.array_equal(weight[i], want), i  # ids 0/1 and odd ids (no node, item:C1_v3 included) are zero


@pytest.mark.slow
def test_the_frozen_table_is_bit_identical_after_training_while_the_other_tables_move(trained):
    from recsys.export import load_exported

    result, export, cfg, inputs = trained
    before = initial_state(cfg, inputs)
    after = load_exported(export).model.state_dict()
    tables = [k for k in before if k.startswith("ebc.embedding_bags.")]
    changed = {k.split(".")[2]: not torch.equal(before[k], after[k]) for k in tables}
    assert result.steps > 0
    assert changed == {"C1": True, "C2": True, "tags": True, "graph__C1": False}
    assert not torch.equal(before["graph_projections.graph__C1.weight"], after["graph_projections.graph__C1.weight"])


@pytest.mark.slow
def test_init_mode_starts_the_features_table_from_its_projected_fastrp_rows(tables):
    # given a trainer with C2 in init mode, and a model without graph features from the same seed
    from core.train_config import TrainInputs
    from recsys.modules.ctr import build_model
    from recsys.train import prepare
    from recsys.trainer import CTRTrainer, make_run_layout

    encoded, vocab, path, fastrp = tables
    cfg = train_config(graph_features={"C2": "init"})
    summary = prepare(cfg, graph_inputs(encoded, vocab, path))
    plain_cfg = train_config()
    plain_summary = prepare(plain_cfg, TrainInputs(encoded=encoded, vocab=vocab))
    default = build_model(plain_cfg, make_run_layout(plain_cfg, plain_summary), 4, seed=cfg.seed).state_dict()
    # when
    with one_rank() as (rank, world, device):
        start = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device).setup().full_state_dict()
    # then: rows 2..11 = one scale of the FastRP rows through the fixed seeded projection, at the default init's RMS
    c2 = start["ebc.embedding_bags.C2.weight"].numpy()
    x = np.stack([fastrp_vector(fastrp, f"item:C2_v{j}") for j in range(2, 12)])
    projected = x @ projection_matrix(GRAPH_DIM, 8, init_seed(cfg.seed, "C2"))
    scale = c2[2:] / projected
    np.testing.assert_allclose(scale, np.full_like(scale, scale[0, 0]), rtol=1e-4)
    assert np.sqrt(np.mean(c2[2:].astype(np.float64) ** 2)) == pytest.approx(np.sqrt(1 / 12) / np.sqrt(3), rel=1e-5)
    # ids 0/1 (missing/OOV: no node) keep the default init, and no other table changes
    assert torch.equal(start["ebc.embedding_bags.C2.weight"][:2], default["ebc.embedding_bags.C2.weight"][:2])
    assert all(torch.equal(start[k], v) for k, v in default.items() if "C2" not in k)
    assert [t.name for t in make_run_layout(cfg, summary).tables] == ["C1", "C2", "tags"]  # no extra table


@pytest.mark.slow
def test_a_frozen_graph_table_with_the_hashed_layout_exports_and_scores_like_the_trainer(tables, tmp_path):
    # given C1 hashed into 10 rows, and its graph table indexed by C1's vocabulary ids
    from deltalake import DeltaTable

    from recsys.export import load_exported
    from recsys.train import prepare
    from recsys.trainer import CTRTrainer

    encoded, vocab, path, fastrp = tables
    cfg = train_config(graph_features={"C1": "frozen"}, layout={"kind": "hashed", "total_rows": 40}, max_steps=4)
    summary = prepare(cfg, graph_inputs(encoded, vocab, path))
    # when
    with one_rank() as (rank, world, device):
        trainer = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device).setup()
        trainer.train()
        probs, _, ids = trainer.predict_split("test")
        trainer.export(str(tmp_path / "model.pt"))
    model = load_exported(str(tmp_path / "model.pt"))
    scored = model.predict(DeltaTable(encoded).to_pyarrow_table().sort_by("event_id"))  # event_id = row number
    # then
    assert model.layout.kind == "hashed" and model.layout.graph_keys == {"graph__C1": GRAPH_DIM}
    np.testing.assert_allclose(scored[ids], probs, rtol=1e-6, atol=1e-7)
    graph = model.model.state_dict()["ebc.embedding_bags.graph__C1.weight"].numpy()
    assert np.array_equal(graph[2], fastrp_vector(fastrp, "user:C1_v2")) and not graph[3].any()


@pytest.mark.slow
def test_resuming_with_another_version_of_the_fastrp_table_is_refused_naming_it(tmp_path):
    # given a checkpoint of a run over version 0 of the FastRP table; when the table gets a version 1
    from recsys.train import run_training

    encoded = write_delta(tmp_path / "encoded", make_encoded())
    vocab = write_delta(tmp_path / "vocab", [make_vocab()])
    fastrp = write_delta(tmp_path / "fastrp", [make_fastrp()])
    inputs = graph_inputs(encoded, vocab, fastrp)
    ckpt = str(tmp_path / "ckpt")
    run_training(train_config(graph_features={"C1": "frozen"}, checkpoint_dir=ckpt, max_steps=2), inputs)
    fp = json.loads((tmp_path / "ckpt" / "step_2" / "run.json").read_text())["fingerprint"]
    assert fp["tables.embeddings.version"] == 0 and fp["graph.prefixes"] == {"C1": "user:"}
    write_delta(tmp_path / "fastrp", [make_fastrp(seed=1)])
    # then
    with pytest.raises(ConfigError, match=r"tables\.embeddings\.version is 1 but the checkpoint was written with 0"):
        run_training(
            train_config(graph_features={"C1": "frozen"}, checkpoint_dir=ckpt, resume=True, max_steps=4), inputs
        )


# --------------------------------------------------------------------------- lineage and serving


@pytest.mark.slow
def test_the_result_and_mlflow_record_coverage_and_the_fastrp_table_version(trained, tmp_path):
    import mlflow

    from core.config import MlflowConfig
    from core.tracking import mlflow_run
    from recsys.reporting import log_training_run

    result, _, _, inputs = trained
    assert result.embeddings == inputs.embeddings and result.embeddings_version == 0
    assert {f: (g.mode, g.coverage) for f, g in result.graph_features.items()} == {
        "C1": ("frozen", 0.5),
        "C2": ("init", 1.0),
    }
    assert result.tables["graph__C1"] == [VOCAB["C1"], GRAPH_DIM]
    # when
    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="graph-tests")
    with mlflow_run(cfg, "train") as run:
        log_training_run(result, inputs)
    # then
    data = mlflow.MlflowClient(cfg.tracking_uri).get_run(run.info.run_id).data
    assert data.metrics["graph.coverage.C1"] == 0.5 and data.metrics["graph.coverage.C2"] == 1.0
    assert data.params["input.embeddings.delta_version"] == "0"
    assert data.params["input.embeddings.path"] == os.path.abspath(inputs.embeddings)
    assert data.tags["ctr.graph_features"] == "C1:frozen,C2:init"


def raw_rows(encoded: str) -> pa.Table:
    """The raw click log the tiny encoded table could have come from: id i -> 'C<n>_v<i>', 1 -> unseen, 0 -> null."""
    from deltalake import DeltaTable

    table = DeltaTable(encoded).to_pyarrow_table().sort_by("event_id")

    def raw(f: str, i: int, row: int):
        return None if i == 0 else (f"unseen-{row}" if i == 1 else f"{f}_v{i}")

    cols = {c: table.column(c) for c in ("event_id", "ts", "label", "I1", "I2")}
    for f in ("C1", "C2"):
        cols[f] = pa.array([raw(f, i, r) for r, i in enumerate(table.column(f).to_pylist())], pa.string())
    tags = [
        None if ts is None else [raw("tags", i, r) for i in ts] for r, ts in enumerate(table.column("tags").to_pylist())
    ]
    cols["tags"] = pa.array(tags, pa.list_(pa.string()))
    return pa.table(cols)


@pytest.mark.slow
def test_the_champion_pyfunc_scores_raw_rows_like_the_exported_graph_model(trained, tables, tmp_path):
    # given the exported model registered as champion, and raw rows that encode to the training rows
    import mlflow
    from deltalake import DeltaTable

    from core.config import MlflowConfig
    from core.tracking import mlflow_run
    from recsys.export import load_exported
    from recsys.registry import register_and_promote
    from recsys.serving import raw_frame

    result, export, _, _ = trained
    encoded, vocab, _, _ = tables
    raw_path = write_delta(tmp_path / "raw", [raw_rows(encoded)])
    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="graph-serving")
    with mlflow_run(cfg, "promote"):
        decision = register_and_promote(
            export,
            result,
            raw_path=raw_path,
            raw_version=None,
            vocab_path=vocab,
            vocab_version=None,
            registered_model="ctr_graph",
            tolerance=0.002,
        )
    # when: the pyfunc needs nothing but raw rows (the graph tables travel in the exported weights)
    model = mlflow.pyfunc.load_model("models:/ctr_graph@champion")
    names = model.metadata.get_input_schema().input_names()
    got = model.predict(raw_frame(DeltaTable(raw_path).to_pyarrow_table().sort_by("event_id"), names))
    expected = load_exported(export).predict(DeltaTable(encoded).to_pyarrow_table().sort_by("event_id"))
    # then
    assert names == ["I1", "I2", "C1", "C2", "tags"]
    np.testing.assert_allclose(got["probability"].to_numpy(), expected, rtol=1e-6, atol=1e-7)
    # the registry's AUC (raw test rows through the pyfunc) is the trainer's own test AUC
    assert decision.promoted and decision.challenger_auc == pytest.approx(result.test_auc, abs=1e-6)
    assert decision.test_rows == result.test_rows


# --------------------------------------------------------------------------- two gloo ranks


@pytest.fixture(scope="module")
def ranks(tables, tmp_path_factory):
    from ctr_workers import two_rank_graph_checks

    from recsys.distributed.launch import spawn

    out = tmp_path_factory.mktemp("graph_ranks")
    encoded, vocab, path, _ = tables
    spawn(two_rank_graph_checks, (encoded, vocab, path, str(out)), world_size=2)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_graph_tables_are_sharded_like_any_table(ranks):
    assert ranks[0]["plan"] == {
        "C1": "column_wise",
        "C2": "table_wise",
        "tags": "data_parallel",
        "graph__C1": "data_parallel",
        "graph__C2": "column_wise",
    }


@pytest.mark.slow
def test_sharded_forward_with_graph_tables_equals_the_unsharded_model(ranks):
    # same fp32 rows; the fused kernel and the plain module round a bag's mean differently (~1 ulp)
    assert max(r["forward_max_diff"] for r in ranks) < 1e-6


@pytest.mark.slow
def test_sharded_training_leaves_the_graph_tables_bit_identical_and_moves_the_others(ranks):
    changed = ranks[0]["tables_changed"]
    assert changed == {"C1": True, "C2": True, "tags": True, "graph__C1": False, "graph__C2": False}
    assert ranks[0]["graph_rows_equal_plain"]  # the FastRP rows the unsharded model was given


@pytest.mark.slow
def test_a_sharded_checkpoint_and_the_export_carry_the_graph_tables(ranks):
    assert all(r["restored"] for r in ranks) and ranks[0]["restore_max_diff"] == 0.0
    assert ranks[0]["test_rows"] > 0
    assert ranks[0]["export_max_diff"] < 1e-6  # same weights; plain nn modules vs fused kernels
