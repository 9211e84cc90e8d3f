"""The stage runner commits only on the output version it read: a run that lost a race writes nothing, exit 3."""

import threading

import pytest
from pydantic import BaseModel

from core.config import PipelineConfig
from core.errors import EXIT_CONFLICT, ConcurrentChange
from embeddings.io import delta_version, read_table, write_delta
from embeddings.runner import Output, Stage, StageOutput, run_stage


class Rows(BaseModel):
    rows: int


def config(root) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"tables": {"root": str(root), "vocab": {"path": "out"}}, "mlflow": {"enabled": False}}
    )


def stage(compute) -> Stage:
    return Stage("demo", inputs=(), outputs=("vocab",), compute=compute)


def make_rows(n: int):
    def compute(ctx) -> StageOutput:
        return StageOutput({"vocab": Output(ctx.spark.range(n))}, Rows(rows=n))

    return compute


def test_a_stage_commits_one_version_on_the_version_it_read(spark, tmp_path):
    cfg = config(tmp_path)
    first = run_stage(spark, cfg, stage(make_rows(3)))
    second = run_stage(spark, cfg, stage(make_rows(5)))
    assert (first.written["vocab"].version, second.written["vocab"].version) == (0, 1)
    assert read_table(spark, cfg.tables.path("vocab")).count() == 5


def test_a_commit_by_another_run_while_computing_makes_this_run_exit_3_and_write_nothing(spark, tmp_path):
    cfg = config(tmp_path)
    path = cfg.tables.path("vocab")
    run_stage(spark, cfg, stage(make_rows(3)))  # v0

    def compute_while_another_run_commits(ctx) -> StageOutput:
        assert ctx.previous("vocab").count() == 3  # what this run read: v0
        write_delta(ctx.spark.range(7), path)  # the other run commits v1
        return StageOutput({"vocab": Output(ctx.spark.range(100))}, Rows(rows=100))

    with pytest.raises(ConcurrentChange, match=r"tables.vocab .*changed by another run \(v0 -> v1\)") as lost:
        run_stage(spark, cfg, stage(compute_while_another_run_commits))
    assert lost.value.exit_code == EXIT_CONFLICT == 3
    assert delta_version(spark, path) == 1
    assert read_table(spark, path).count() == 7  # the winner's rows, untouched


def test_the_first_write_of_a_table_loses_to_a_run_that_created_it_meanwhile(spark, tmp_path):
    cfg = config(tmp_path)
    path = cfg.tables.path("vocab")

    def compute_while_another_run_creates(ctx) -> StageOutput:
        assert ctx.previous("vocab") is None
        write_delta(ctx.spark.range(7), path)
        return StageOutput({"vocab": Output(ctx.spark.range(100))}, Rows(rows=100))

    with pytest.raises(ConcurrentChange, match=r"\(none -> v0\)"):
        run_stage(spark, cfg, stage(compute_while_another_run_creates))
    assert delta_version(spark, path) == 0


def test_a_guarded_write_on_a_version_already_committed_on_is_refused(spark, tmp_path):
    path = str(tmp_path / "t")
    write_delta(spark.range(1), path, expected_version=None)  # v0
    write_delta(spark.range(2), path, expected_version=0)  # v1
    with pytest.raises(ConcurrentChange, match=r"\(v0 -> v1\)"):
        write_delta(spark.range(3), path, expected_version=0)
    assert delta_version(spark, path) == 1


def test_of_two_writers_racing_on_the_same_version_exactly_one_commits(spark, tmp_path):
    """Both pass the version check before either commits: Delta's transaction guard picks one."""
    path = str(tmp_path / "t")
    write_delta(spark.range(1), path, expected_version=None)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def writer(n: int) -> None:
        start.wait()
        try:
            write_delta(spark.range(n), path, expected_version=0)
            outcomes.append("committed")
        except ConcurrentChange:
            outcomes.append("lost")

    threads = [threading.Thread(target=writer, args=(n,)) for n in (200_000, 300_000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["committed", "lost"]
    assert delta_version(spark, path) == 1


def test_a_stage_says_how_long_each_runner_step_took_and_logs_it_to_its_mlflow_run(spark, tmp_path):
    # given: a stage whose compute takes a known while, tracked in a sqlite store under tmp
    import time

    import mlflow

    cfg = PipelineConfig.model_validate(
        {
            "tables": {"root": str(tmp_path), "vocab": {"path": "out"}},
            "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            "quality": {"output": str(tmp_path / "quality")},
        }
    )

    def slow(ctx) -> StageOutput:
        time.sleep(0.5)
        return StageOutput({"vocab": Output(ctx.spark.range(3))}, Rows(rows=3))

    # when
    result = run_stage(spark, cfg, stage(slow))
    # then: every step in order, compute holding the sleep, and the same figures as run metrics
    assert list(result.seconds_by_step) == ["start", "read_inputs", "compute", "gate_outputs", "write", "release"]
    assert result.seconds_by_step["compute"] >= 0.5 and result.seconds_by_step["write"] > 0
    client = mlflow.MlflowClient(cfg.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id])
    logged = {k.removeprefix("stage.seconds."): v for k, v in run.data.metrics.items() if k.startswith("stage.")}
    assert logged == result.seconds_by_step
