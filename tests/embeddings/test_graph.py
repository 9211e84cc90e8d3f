"""The interaction graph of a click log: typed node ids, weight policies, window, decay, co-occurrence, the stage."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import pytest

from core.cli import run
from core.config import CooccurrenceConfig, GraphConfig, PipelineConfig
from core.errors import ConfigError, InputError
from embeddings.graph import EDGE_COLUMNS, build_edges
from embeddings.io import commit_metadata, delta_version
from embeddings.runner import run_stage
from embeddings.stages import BUILD_GRAPH

REPO = Path(__file__).resolve().parents[2]
LOG = "user string, item string, label int, ts timestamp"
T0 = dt.datetime(2026, 3, 1)


def hours(h: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=h)


def days(d: float) -> dt.datetime:
    return T0 + dt.timedelta(days=d)


def edges_of(spark, rows, schema=LOG, time_col="ts", **graph) -> dict[tuple[str, str], tuple]:
    """{(src, dst): (weight, events, last_seen, kind)} of the hand-made log ``rows``."""
    cfg = GraphConfig(user="user", item="item", **graph)
    out = build_edges(spark.createDataFrame(rows, schema), cfg, time_col=time_col, label_col="label")
    assert out.columns == EDGE_COLUMNS
    return {(r.src, r.dst): (r.weight, r.events, r.last_seen, r.kind) for r in out.collect()}


def weights(edges: dict) -> dict[tuple[str, str], float]:
    return {k: v[0] for k, v in edges.items()}


# --------------------------------------------------------------------------- nodes and edges


def test_one_user_item_edge_per_pair_sums_its_events_and_keeps_the_last_time(spark):
    rows = [("u1", "a", 1, hours(1)), ("u1", "a", 0, hours(3)), ("u1", "b", 0, hours(2)), ("u2", "a", 1, hours(0))]
    assert edges_of(spark, rows) == {
        ("user:u1", "item:a"): (2.0, 2, hours(3), "user-item"),
        ("user:u1", "item:b"): (1.0, 1, hours(2), "user-item"),
        ("user:u2", "item:a"): (1.0, 1, hours(0), "user-item"),
    }


def test_integer_ids_of_the_two_roles_stay_separate_nodes(spark):
    # given user 42 clicking item 42 and item 7
    rows = [(42, 42, 1, hours(0)), (42, 7, 1, hours(1))]
    edges = edges_of(spark, rows, schema="user long, item int, label int, ts timestamp")
    # then user:42 and item:42 are two nodes, linked by an edge
    assert set(edges) == {("user:42", "item:42"), ("user:42", "item:7")}


def test_rows_with_a_null_user_or_item_are_dropped(spark):
    rows = [("u1", "a", 1, hours(0)), (None, "a", 1, hours(0)), ("u1", None, 1, hours(0))]
    assert weights(edges_of(spark, rows)) == {("user:u1", "item:a"): 1.0}


def test_without_a_time_column_last_seen_is_null(spark):
    rows = [("u1", "a", 1), ("u1", "a", 0)]
    edges = edges_of(spark, rows, schema="user string, item string, label int", time_col=None)
    assert edges == {("user:u1", "item:a"): (2.0, 2, None, "user-item")}


# --------------------------------------------------------------------------- weight policies

POLICY_LOG = [
    ("u1", "a", 1, hours(0)),
    ("u1", "a", 1, hours(1)),
    ("u1", "a", 0, hours(2)),
    ("u1", "b", 0, hours(3)),  # only a non-click
    ("u2", "b", 1, hours(4)),
    ("u2", "c", 0, hours(5)),
    ("u2", "c", 0, hours(6)),
]


@pytest.mark.parametrize(
    "graph, expected",
    [
        (  # every event counts 1
            dict(weight="count"),
            {("u1", "a"): (3.0, 3), ("u1", "b"): (1.0, 1), ("u2", "b"): (1.0, 1), ("u2", "c"): (2.0, 2)},
        ),
        (  # clicks only: pairs with no click have no edge
            dict(weight="positives"),
            {("u1", "a"): (2.0, 2), ("u2", "b"): (1.0, 1)},
        ),
        (  # 2 per click, -0.5 per non-click; edges at or below 0 are dropped
            dict(weight="label", positive_weight=2.0, negative_weight=-0.5),
            {("u1", "a"): (3.5, 3), ("u2", "b"): (2.0, 1)},
        ),
        (  # 1 per click, 0.25 per non-click
            dict(weight="label", positive_weight=1.0, negative_weight=0.25),
            {("u1", "a"): (2.25, 3), ("u1", "b"): (0.25, 1), ("u2", "b"): (1.0, 1), ("u2", "c"): (0.5, 2)},
        ),
    ],
)
def test_each_weight_policy_gives_its_exact_weights(spark, graph, expected):
    edges = edges_of(spark, POLICY_LOG, **graph)
    assert {(s[5:], d[5:]): (w, n) for (s, d), (w, n, _, _) in edges.items()} == expected


def test_edges_lighter_than_min_weight_are_dropped(spark):
    edges = edges_of(spark, POLICY_LOG, weight="count", min_weight=2.0)
    assert weights(edges) == {("user:u1", "item:a"): 3.0, ("user:u2", "item:c"): 2.0}  # 2.0 itself is kept


# --------------------------------------------------------------------------- window and decay


def test_the_window_includes_its_start_and_excludes_its_end(spark):
    rows = [("u1", "a", 1, hours(0)), ("u1", "b", 1, hours(1)), ("u1", "c", 1, hours(2)), ("u1", "d", 1, hours(3))]
    edges = edges_of(spark, rows, start=hours(1), end=hours(3))
    assert set(edges) == {("user:u1", "item:b"), ("user:u1", "item:c")}


def test_an_event_one_half_life_older_than_the_latest_counts_half(spark):
    # given a half-life of 2 days; the latest event of the window is at day 4
    rows = [
        ("u1", "a", 1, days(4)),  # age 0: 1
        ("u1", "a", 1, days(2)),  # age 2 days (one half-life): 0.5
        ("u1", "b", 1, days(0)),  # age 4 days (two half-lives): 0.25
        ("u2", "b", 1, days(3)),  # age 1 day (half a half-life): 2 ** -0.5
    ]
    edges = edges_of(spark, rows, half_life_days=2.0)
    assert weights(edges) == {
        ("user:u1", "item:a"): 1.5,
        ("user:u1", "item:b"): 0.25,
        ("user:u2", "item:b"): pytest.approx(2**-0.5, rel=1e-15),
    }


def test_decay_is_measured_from_the_latest_event_of_the_window_not_the_wall_clock(spark):
    # given the same log cut at day 3: the latest event left is at day 2
    rows = [("u1", "a", 1, days(2)), ("u1", "b", 1, days(0)), ("u1", "c", 1, days(10))]
    edges = edges_of(spark, rows, half_life_days=2.0, end=days(3))
    assert weights(edges) == {("user:u1", "item:a"): 1.0, ("user:u1", "item:b"): 0.5}


def test_decay_ages_run_from_the_latest_event_even_when_the_policy_does_not_count_it(spark):
    # given positives only: the latest event (day 2) is a non-click, the click is at day 0
    rows = [("u1", "a", 1, days(0)), ("u2", "b", 0, days(2))]
    edges = edges_of(spark, rows, weight="positives", half_life_days=2.0)
    # then the click is one half-life old, not age 0
    assert weights(edges) == {("user:u1", "item:a"): 0.5}


def test_decayed_weights_do_not_depend_on_the_partitioning(spark):
    # given many events of a few edges at irregular times (sums of inexact doubles)
    rows = [(f"u{i % 3}", f"i{i % 4}", i % 2, T0 + dt.timedelta(minutes=37 * i * i % 9001)) for i in range(200)]
    cfg = GraphConfig(user="user", item="item", weight="label", negative_weight=0.1, half_life_days=1.3)
    log = spark.createDataFrame(rows, LOG)

    def edges(df):
        return sorted(build_edges(df, cfg, time_col="ts", label_col="label").collect())

    # then one partition and seven give the same bits
    assert edges(log.repartition(1)) == edges(log.repartition(7))


# --------------------------------------------------------------------------- co-occurrence

CO_LOG = [
    ("u1", "a", 1, hours(1)),  # u1's oldest item: beyond the cap of 3
    ("u1", "b", 1, hours(2)),
    ("u1", "c", 1, hours(3)),
    ("u1", "d", 1, hours(3)),  # ties with c: both kept (the cap cuts by time, then item id)
    ("u2", "b", 1, hours(0)),
    ("u2", "c", 1, hours(10)),  # 10 h after u2's event on b
]


def item_item(edges: dict) -> dict[tuple[str, str], tuple[float, int]]:
    return {k: (v[0], v[1]) for k, v in edges.items() if v[3] == "item-item"}


def test_items_of_a_user_pair_once_per_user_with_src_before_dst(spark):
    co = CooccurrenceConfig(enabled=True, max_items_per_user=3, weight=0.5)
    edges = edges_of(spark, CO_LOG, cooccurrence=co)
    # then u1 pairs its 3 most recent items b, c, d; u2 pairs b and c; a pairs with nothing
    assert item_item(edges) == {
        ("item:b", "item:c"): (1.0, 2),  # two users, 0.5 each
        ("item:b", "item:d"): (0.5, 1),
        ("item:c", "item:d"): (0.5, 1),
    }
    assert edges[("item:b", "item:c")][2] == hours(10)  # the latest event of the users on the pair
    assert sum(kind == "user-item" for *_, kind in edges.values()) == 6


def test_the_per_user_cap_breaks_time_ties_by_item_id(spark):
    # given a cap of 2: u1's most recent item is b, then c and d tie (both at 2 h) for the last place
    log = [("u1", "b", 1, hours(3)), ("u1", "d", 1, hours(2)), ("u1", "c", 1, hours(2))]
    co = CooccurrenceConfig(enabled=True, max_items_per_user=2)
    # then the tie goes to the lower item id: c, not d
    assert item_item(edges_of(spark, log, cooccurrence=co)) == {("item:b", "item:c"): (1.0, 1)}


def test_within_hours_pairs_only_items_the_user_met_close_in_time(spark):
    co = CooccurrenceConfig(enabled=True, max_items_per_user=3, within_hours=5)
    assert item_item(edges_of(spark, CO_LOG, cooccurrence=co)) == {
        ("item:b", "item:c"): (1.0, 1),  # u1 only: u2's two events are 10 h apart
        ("item:b", "item:d"): (1.0, 1),
        ("item:c", "item:d"): (1.0, 1),
    }


def test_cooccurrence_pairs_only_the_items_of_edges_the_policy_keeps(spark):
    # given positives only: u1's non-click on d makes no edge, so d pairs with nothing
    rows = [("u1", "a", 1, hours(0)), ("u1", "b", 1, hours(1)), ("u1", "d", 0, hours(2))]
    co = CooccurrenceConfig(enabled=True)
    assert item_item(edges_of(spark, rows, weight="positives", cooccurrence=co)) == {("item:a", "item:b"): (1.0, 1)}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "dropped, graph",
    [("user", {}), ("item", {}), ("label", dict(weight="positives")), ("label", dict(weight="label")), ("ts", {})],
)
def test_a_missing_column_is_an_input_error_naming_it(spark, dropped, graph):
    clicks = spark.createDataFrame([("u1", "a", 1, T0)], LOG).drop(dropped)
    cfg = GraphConfig(user="user", item="item", **graph)
    with pytest.raises(InputError, match=rf"tables.clicks: missing column\(s\) \['{dropped}'\]"):
        build_edges(clicks, cfg, time_col="ts", label_col="label")


def test_the_count_policy_needs_no_label_column(spark):
    clicks = spark.createDataFrame([("u1", "a")], "user string, item string")
    cfg = GraphConfig(user="user", item="item")
    assert build_edges(clicks, cfg, time_col=None, label_col="label").count() == 1


def test_a_node_column_of_another_type_is_an_input_error_naming_it(spark):
    clicks = spark.createDataFrame([(1.5, "a", 1)], "user double, item string, label int")
    with pytest.raises(InputError, match="graph.user column 'user' has type double"):
        build_edges(clicks, GraphConfig(user="user", item="item"), time_col=None, label_col="label")


def test_decay_without_a_time_column_is_a_config_error(spark):
    clicks = spark.createDataFrame([("u1", "a", 1)], "user string, item string, label int")
    with pytest.raises(ConfigError, match="graph.half_life_days needs a time column"):
        build_edges(clicks, GraphConfig(user="user", item="item", half_life_days=1.0), time_col=None, label_col="label")


# --------------------------------------------------------------------------- the stage and the job


def stage_config(root: Path, **graph) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "tables": {"root": str(root), "clicks": {"path": "clicks"}},
            "schema": {"id": "event_id", "label": "label", "time": "ts", "dense": [], "categorical": []},
            "graph": {"user": "user", "item": "item", **graph},
            "mlflow": {"enabled": False},
            "quality": {"output": str(root / "quality"), "data_docs": False},
        }
    )


def write_log(spark, path: Path, rows=CO_LOG) -> str:
    """The hand-made log as a Delta click log: the rows plus a unique ``event_id`` (the clicks gate wants one)."""
    numbered = [(i, *row) for i, row in enumerate(rows)]
    spark.createDataFrame(numbered, f"event_id long, {LOG}").write.format("delta").save(str(path))
    return str(path)


def test_the_stage_commits_the_edges_with_the_graph_parameters_and_a_rerun_gives_the_same_rows(spark, tmp_path):
    # given a click log in the catalog and a graph with co-occurrence
    write_log(spark, tmp_path / "clicks")
    cfg = stage_config(tmp_path, weight="positives", min_weight=0.5, cooccurrence={"enabled": True})
    # when the stage runs
    result = run_stage(spark, cfg, BUILD_GRAPH)
    # then one Delta commit at tables.edges, whose metadata names the parameters and the input version
    written = result.written["edges"]
    assert written.path == str(tmp_path / "graph" / "edges") and written.version == 0
    meta = commit_metadata(spark, written.path)
    assert meta["job"] == "build_graph" and meta["inputs"]["clicks"]["version"] == 0
    assert (meta["user"], meta["item"], meta["weight"], meta["min_weight"]) == ("user", "item", "positives", 0.5)
    assert meta["cooccurrence"]["enabled"] is True and meta["half_life_days"] is None and meta["time_col"] == "ts"
    assert result.summary.model_dump() == dict(num_edges=12, num_users=2, num_items=4, num_item_item_edges=6)
    first = sorted(spark.read.format("delta").load(written.path).collect())
    # and a rerun commits the same rows
    assert run_stage(spark, cfg, BUILD_GRAPH).written["edges"].version == 1
    assert sorted(spark.read.format("delta").load(written.path).collect()) == first


def test_the_stage_refuses_to_write_an_edge_table_of_another_format(spark, tmp_path):
    write_log(spark, tmp_path / "clicks")
    cfg = stage_config(tmp_path)
    cfg = cfg.model_copy(
        update={
            "tables": cfg.tables.model_copy(update={"edges": cfg.tables.edges.model_copy(update={"format": "parquet"})})
        }
    )
    with pytest.raises(ConfigError, match="tables.edges.format is 'parquet'"):
        run_stage(spark, cfg, BUILD_GRAPH)
    assert not (tmp_path / "graph").exists()


def test_the_stage_refuses_to_overwrite_an_edge_table_it_did_not_write(spark, tmp_path):
    write_log(spark, tmp_path / "clicks")
    spark.createDataFrame([("x", "y", 1.0)], "src string, dst string, weight double").write.format("delta").save(
        str(tmp_path / "graph" / "edges")
    )
    with pytest.raises(InputError, match="build_graph refuses to overwrite it"):
        run_stage(spark, stage_config(tmp_path), BUILD_GRAPH)
    assert delta_version(spark, str(tmp_path / "graph" / "edges")) == 0


def test_the_click_log_is_gated_before_any_edge_is_written(spark, tmp_path):
    # given a click log whose label column holds a 2
    write_log(spark, tmp_path / "clicks", rows=[*CO_LOG, ("u3", "a", 2, hours(4))])
    # then the clicks suite fails the stage and no edge table appears
    with pytest.raises(InputError, match=r"(?s)tables.clicks .*suite 'clicks' failed.*label"):
        run_stage(spark, stage_config(tmp_path), BUILD_GRAPH)
    assert not (tmp_path / "graph").exists()


def test_a_window_without_events_is_an_input_error_and_writes_nothing(spark, tmp_path):
    write_log(spark, tmp_path / "clicks")
    with pytest.raises(InputError, match="no edges in the window"):
        run_stage(spark, stage_config(tmp_path, start="2030-01-01T00:00:00"), BUILD_GRAPH)
    assert not (tmp_path / "graph").exists()


def graph_job():
    spec = importlib.util.spec_from_file_location("build_graph_job", REPO / "jobs" / "build_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_job_writes_the_edges_and_exits_2_naming_a_missing_column(spark, job_args, tmp_path, capsys):
    # given a good run of the job
    clicks, out = write_log(spark, tmp_path / "clicks"), tmp_path / "edges"
    main = graph_job()
    argv = [*job_args, "--input", clicks, "--output", str(out), "--user", "user", "--item", "item"]
    argv += ["--set", "train.graph_features={}"]  # the default's graph features name C1/C2, not this log's columns
    assert run(main, argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["version"] == 0 and printed["num_edges"] == printed["rows"] == 6
    # when a later run names a column the log lacks
    code = run(main, [*argv, "--item", "product"])
    # then exit 2 with one error line naming it, and the edges are still the good version
    assert code == 2
    assert "missing column(s) product" in capsys.readouterr().err.strip().splitlines()[-1]
    assert delta_version(spark, str(out)) == 0
