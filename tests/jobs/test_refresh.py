"""jobs/refresh.py: --skip picks the stages, one MLflow parent run holds them, and exit codes carry failures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from core.cli import run
from core.errors import StageFailed

REPO = Path(__file__).resolve().parents[2]
ALL_STAGES = ["synth", "vocab", "encode", "graph", "fastrp", "retrieve", "train", "promote", "score"]


def refresh_module():
    """jobs/refresh.py, loaded by path (jobs/ is not a package; refresh imports its siblings)."""
    import sys

    sys.path.insert(0, str(REPO / "jobs"))
    spec = importlib.util.spec_from_file_location("refresh_job", REPO / "jobs" / "refresh.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refresh_main():
    return refresh_module().main


def refresh_args(tmp_path, *skipped: str) -> list[str]:
    return [
        *(a for s in skipped for a in ("--skip", s)),
        "--master",
        "local[2]",
        "--set",
        f"tables.root={tmp_path / 'data'}",
        "--set",
        "spark.shuffle_partitions=2",
    ]


def stage_runs(tmp_path) -> dict[str, str]:
    """{stage tag: run status} of the runs in the refresh's sqlite store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'data' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("graph-rec-embeddings")
    return {r.data.tags["pipeline.stage"]: r.info.status for r in client.search_runs([experiment.experiment_id])}


def test_skipping_every_stage_runs_only_the_parent(spark, tmp_path, capsys):
    # when every stage is skipped
    code = run(refresh_main(), refresh_args(tmp_path, *ALL_STAGES))
    # then the refresh succeeds, writes no table and records only its parent run
    assert code == 0
    assert "refresh finished" in capsys.readouterr().out
    assert stage_runs(tmp_path) == {"refresh": "FINISHED"}
    assert not any((tmp_path / "data" / t).exists() for t in ("raw", "vocab", "graph"))


def test_a_stage_with_bad_input_fails_the_refresh_with_exit_2_naming_the_table(spark, tmp_path, capsys):
    # given no click log at tables.clicks (synth skipped), then vocab runs first
    argv = refresh_args(tmp_path, "synth", "graph", "fastrp", "retrieve", "train", "promote", "score")
    # when
    code = run(refresh_main(), argv)
    # then one error line names the catalog entry and the path; the stage and its parent are FAILED
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: tables.clicks: no Delta table at") and "raw/clicks" in err[-1]
    assert stage_runs(tmp_path) == {"refresh": "FAILED", "build_vocab": "FAILED"}
    assert not (tmp_path / "data" / "vocab").exists()


def test_the_spark_stages_run_after_the_tables_they_read():
    # the graph is built from the click log, FastRP embeds the graph, retrieval ranks its vectors
    stages = refresh_module().SPARK_STAGES
    assert [(k, s.name) for k, s in stages.items()] == [
        ("synth", "synth"),
        ("vocab", "build_vocab"),
        ("encode", "encode"),
        ("graph", "build_graph"),
        ("fastrp", "fastrp"),
        ("retrieve", "retrieve"),
    ]
    assert stages["graph"].inputs == ("clicks",) and stages["fastrp"].inputs == stages["graph"].outputs == ("edges",)
    assert set(stages["retrieve"].inputs) == {*stages["fastrp"].outputs, "edges"}


def test_an_unknown_stage_name_is_refused():
    with pytest.raises(SystemExit) as exc:
        refresh_main()(["--skip", "nope"])
    assert exc.value.code == 2


def test_a_stage_that_exits_non_zero_gives_the_refresh_its_code(capsys):
    def main(argv):
        raise StageFailed("train", 3)

    assert run(main, []) == 3
    assert capsys.readouterr().err == "error: stage train exited with code 3\n"


@pytest.mark.slow  # a refresh over a Delta table
def test_synth_refuses_to_overwrite_a_click_log_it_did_not_write(spark, tmp_path, capsys):
    # given a user's own click log where the catalog's clicks entry points
    clicks = tmp_path / "data" / "raw" / "clicks"
    spark.createDataFrame([(1, 0)], "event_id long, label int").write.format("delta").save(str(clicks))
    # when the refresh would generate synthetic data into it
    code = run(refresh_main(), refresh_args(tmp_path, *[s for s in ALL_STAGES if s != "synth"]))
    # then it stops before generating anything, and the user's table is as it was
    assert code == 2
    assert "synth refuses to overwrite it" in capsys.readouterr().err
    assert spark.read.format("delta").load(str(clicks)).count() == 1
    assert not (tmp_path / "data" / "raw" / "oracle").exists()
