"""MLflow helpers against a real `mlflow server` on 127.0.0.1 and against a sqlite store."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.cli import run
from core.config import MlflowConfig, PipelineConfig, QualityConfig
from core.tracking import (
    HOST_TAG,
    PARENT_RUN_ENV,
    PID_START_TAG,
    PID_TAG,
    configure,
    flatten_params,
    log_delta_table,
    log_quality_results,
    mlflow_run,
    process_tags,
    redact,
)
from embeddings.quality import DataQualityError, gate

REPO = Path(__file__).resolve().parents[2]
# A job that opens a stage run, says its id, then dies by SIGKILL ("kill") or waits for a signal.
VICTIM = """
import os, signal, sys, time
from core.config import MlflowConfig
from core.tracking import mlflow_run
with mlflow_run(MlflowConfig(tracking_uri=sys.argv[1], experiment=sys.argv[2]), "victim") as run:
    print(run.info.run_id, flush=True)
    if sys.argv[3] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(300)
"""


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory) -> str:
    """One sqlite store for the module (creating its tables takes seconds); tests use own experiments."""
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite_store') / 'mlflow.db'}"


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.slow)])
def mlflow_cfg(request, monkeypatch) -> MlflowConfig:
    """MLflow config for a sqlite file in tmp, or for the session's real tracking server."""
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    uri = request.getfixturevalue("sqlite_uri" if request.param == "sqlite" else "mlflow_server")
    return MlflowConfig(tracking_uri=uri, experiment=f"test-{request.node.name}")


def client(cfg: MlflowConfig):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg.tracking_uri)


def test_flatten_params_gives_dotted_keys_and_json_lists():
    # given a nested config
    cfg = PipelineConfig()
    # when flattened
    params = flatten_params(cfg)
    # then sections become dotted keys and lists JSON text
    assert params["fastrp.dim"] == "128"
    assert params["schema.dense"] == '["I1", "I2", "I3", "I4", "I5", "I6"]'
    assert params["mlflow.enabled"] == "true"
    assert all(isinstance(v, str) for v in params.values())


def test_stage_run_logs_flattened_config_and_stage_tag(mlflow_cfg):
    # given the whole pipeline config
    cfg = PipelineConfig()
    # when a stage runs under mlflow_run
    with mlflow_run(mlflow_cfg, "build_vocab", params=cfg) as active:
        run_id = active.info.run_id
    # then the run is finished, tagged with its stage and carries every config key
    logged = client(mlflow_cfg).get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "build_vocab"
    assert logged.data.tags["pipeline.stage"] == "build_vocab"
    assert logged.data.params["fastrp.dim"] == "128"
    assert logged.data.params["tables.vocab.path"] == "vocab"
    assert len(logged.data.params) == len(flatten_params(cfg))


def test_stages_nest_under_the_refresh_parent_run(mlflow_cfg):
    # given a refresh's parent run that exports its id to the environment
    with mlflow_run(mlflow_cfg, "refresh", export_parent=True) as parent:
        parent_id = parent.info.run_id
        assert os.environ[PARENT_RUN_ENV] == parent_id
        # when a stage runs in-process
        with mlflow_run(mlflow_cfg, "encode") as child:
            child_id = child.info.run_id
    # then the stage is a child of the refresh, and the env var is gone again
    assert PARENT_RUN_ENV not in os.environ
    c = client(mlflow_cfg)
    assert c.get_run(child_id).data.tags["mlflow.parentRunId"] == parent_id
    assert c.get_run(parent_id).info.status == "FINISHED"


def test_subprocess_stage_finds_its_parent_through_the_environment(mlflow_cfg, monkeypatch):
    # given a parent run started elsewhere (e.g. by the DAG's first task) and its id in the env
    with mlflow_run(mlflow_cfg, "refresh") as parent:
        parent_id = parent.info.run_id
    monkeypatch.setenv(PARENT_RUN_ENV, parent_id)
    # when a stage starts with no run active in its process
    with mlflow_run(mlflow_cfg, "fastrp") as child:
        child_id = child.info.run_id
    # then it nests under that parent, in the parent's experiment
    logged = client(mlflow_cfg).get_run(child_id)
    assert logged.data.tags["mlflow.parentRunId"] == parent_id
    assert logged.info.experiment_id == client(mlflow_cfg).get_run(parent_id).info.experiment_id


def test_delta_tables_are_logged_as_lineage(mlflow_cfg, tmp_path):
    # given a stage that read version 3 of one table and wrote version 0 of another
    clicks, vocab = str(tmp_path / "clicks"), str(tmp_path / "vocab")
    with mlflow_run(mlflow_cfg, "build_vocab") as active:
        log_delta_table("clicks", clicks, 3, role="input", num_rows=1000)
        log_delta_table("vocab", vocab, 0, role="output")
    # then params name both paths and versions ...
    logged = client(mlflow_cfg).get_run(active.info.run_id)
    assert logged.data.params["input.clicks.path"] == clicks
    assert logged.data.params["input.clicks.delta_version"] == "3"
    assert logged.data.params["input.clicks.num_rows"] == "1000"
    assert logged.data.params["output.vocab.delta_version"] == "0"
    # ... and the run's datasets carry the Delta source with its version and the role as context
    datasets = {d.dataset.name: d for d in logged.inputs.dataset_inputs}
    assert set(datasets) == {"clicks", "vocab"}
    source = json.loads(datasets["clicks"].dataset.source)
    assert source["path"] == clicks and source["delta_table_version"] == 3
    assert datasets["clicks"].dataset.source_type == "delta_table"
    tags = {t.key: t.value for t in datasets["vocab"].tags}
    assert tags["mlflow.data.context"] == "output" and tags["delta_version"] == "0"


@pytest.mark.slow  # a Great Expectations validation
def test_quality_results_are_logged_as_artifacts_and_metrics(spark, mlflow_cfg, tmp_path):
    # given a passed gate whose evidence sits in the quality folder
    quality = QualityConfig(output=str(tmp_path / "quality"))
    report = gate(spark.createDataFrame([(0.1,), (0.9,)], "probability double"), "scores", quality)
    # when the folder is logged inside a run
    with mlflow_run(mlflow_cfg, "score") as active:
        logged_suites = log_quality_results(quality.output)
    # then result.json and the Data Docs are artifacts, and the outcome is a metric
    c = client(mlflow_cfg)
    run_id = active.info.run_id
    assert logged_suites == ["scores"]
    names = {a.path for a in c.list_artifacts(run_id, "quality/scores")}
    assert {"quality/scores/result.json", "quality/scores/docs"} <= names
    assert report.docs_index is not None
    assert "index.html" in {a.path.rsplit("/", 1)[-1] for a in c.list_artifacts(run_id, "quality/scores/docs")}
    metrics = c.get_run(run_id).data.metrics
    assert metrics["quality.scores.success"] == 1.0
    assert metrics["quality.scores.failed"] == 0.0


@pytest.mark.slow  # a Great Expectations validation
def test_failed_gate_fails_the_run_and_keeps_its_evidence(spark, mlflow_cfg, tmp_path):
    # given scores outside [0, 1]
    quality = QualityConfig(output=str(tmp_path / "quality"))
    bad = spark.createDataFrame([(0.5,), (1.5,)], "probability double")
    # when a stage gates them inside its run
    with pytest.raises(DataQualityError, match="scores"):
        with mlflow_run(mlflow_cfg, "score") as active:
            gate(bad, "scores", quality)
    # then the run is FAILED, says why, and holds the GX results
    c = client(mlflow_cfg)
    logged = c.get_run(active.info.run_id)
    assert logged.info.status == "FAILED"
    assert "probability" in logged.data.tags["pipeline.error"]
    assert logged.data.metrics["quality.scores.success"] == 0.0
    assert "quality/scores/result.json" in {a.path for a in c.list_artifacts(active.info.run_id, "quality/scores")}


@pytest.mark.slow  # a Great Expectations validation
def test_a_failed_gate_exits_a_job_with_code_2(spark, tmp_path, capsys):
    # given a job whose gate fails
    def main(argv):
        gate(
            spark.createDataFrame([(float("nan"),)], "probability double"),
            "scores",
            QualityConfig(output=str(tmp_path)),
        )
        return 0

    # when run through the job runner, then it exits 2 and names the suite and column
    assert run(main, []) == 2
    err = capsys.readouterr().err
    assert "'scores' failed" in err and "probability" in err


def test_disabled_tracking_is_a_no_op(tmp_path):
    # given tracking switched off
    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'off' / 'mlflow.db'}", enabled=False)
    # when a stage uses every helper
    with mlflow_run(cfg, "encode", params=PipelineConfig()) as active:
        log_delta_table("clicks", str(tmp_path / "clicks"), 1)
        logged = log_quality_results(tmp_path)
    # then nothing is started or written
    assert active is None and logged == []
    assert not (tmp_path / "off").exists()


def test_sqlite_store_gets_its_folder_and_an_artifact_root_beside_it(tmp_path):
    # given a sqlite URI in a folder that does not exist yet
    db = tmp_path / "data" / "mlflow.db"
    cfg = MlflowConfig(tracking_uri=f"sqlite:///{db}", experiment="beside")
    # when a run logs an artifact
    import mlflow

    with mlflow_run(cfg, "synth"):
        mlflow.log_text("hello", "note.txt")
    # then the database and the artifacts live under that folder
    assert db.exists()
    assert list((tmp_path / "data" / "mlartifacts").rglob("note.txt"))


@pytest.fixture
def start_victim(tmp_path):
    """Start :data:`VICTIM` in its own process: ``start(cfg, "kill" | "wait")`` -> (process, id of its run)."""
    started: list[subprocess.Popen] = []

    def start(cfg: MlflowConfig, how: str) -> tuple[subprocess.Popen, str]:
        log_path = tmp_path / f"victim-{len(started)}.log"
        with open(log_path, "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-c", VICTIM, cfg.tracking_uri, cfg.experiment, how],
                cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        started.append(proc)
        run_id = proc.stdout.readline().strip()
        assert run_id, log_path.read_text()[-3000:]
        return proc, run_id

    yield start
    for proc in started:  # a failed test leaves no job behind
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("postgresql://user:s3cret@db:5432/mlflow", "postgresql://user:***@db:5432/mlflow"),
        ("https://user:s3cret@mlflow.example.com", "https://user:***@mlflow.example.com"),
        ("https://mlflow.example.com/?token=s3cret&x=1", "https://mlflow.example.com/?token=***&x=1"),
        (
            "mysql://u:s3cret@h/db?password=s3cret;access_token=s3cret",
            "mysql://u:***@h/db?password=***;access_token=***",
        ),
        ("sqlite:///data/mlflow.db", "sqlite:///data/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_credentials_in_uris_are_masked(uri, masked):
    assert redact(uri) == masked


def test_credentials_never_reach_the_run_params_or_tags(mlflow_cfg):
    # given a config whose tracking URI (and a table path) carry credentials
    secret_uri = "postgresql://ml:s3cret@db.internal/mlflow?sslmode=require&password=s3cret"
    params = {
        "mlflow": MlflowConfig(tracking_uri=secret_uri),
        "tables": {"clicks": {"path": "https://lake.internal/clicks?token=s3cret"}},
    }
    # when a stage logs it, and fails with an error that quotes the URI
    with pytest.raises(RuntimeError):
        with mlflow_run(mlflow_cfg, "promote", params=params, tags={"source": secret_uri}) as active:
            raise RuntimeError(f"cannot reach {secret_uri}")
    # then no param or tag holds the secret, and the masked values still say where
    logged = client(mlflow_cfg).get_run(active.info.run_id)
    recorded = {**logged.data.params, **logged.data.tags}
    assert not [key for key, value in recorded.items() if "s3cret" in value]
    assert logged.data.params["mlflow.tracking_uri"] == (
        "postgresql://ml:***@db.internal/mlflow?sslmode=require&password=***"
    )
    assert "ml:***@db.internal" in logged.data.tags["pipeline.error"]


@pytest.mark.slow  # a real tracking server
def test_a_credentialed_tracking_uri_is_masked_in_the_log(mlflow_server, caplog, capsys, monkeypatch):
    # given a tracking server reached with user:password in its URI
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)  # set by the run: undone after
    uri = mlflow_server.replace("http://", "http://ml:s3cret@")
    cfg = MlflowConfig(tracking_uri=uri, experiment="test-credentialed-uri")
    # when a stage logs its config, the mlflow section included
    with caplog.at_level(logging.INFO, logger="core.tracking"):
        with mlflow_run(cfg, "refresh", params={"mlflow": cfg}) as active:
            pass
    # then neither the log line, MLflow's own "View run" line nor the params hold the password
    assert "ml:***@" in caplog.text and "s3cret" not in caplog.text
    assert "s3cret" not in capsys.readouterr().out
    params = client(cfg).get_run(active.info.run_id).data.params
    assert params["mlflow.tracking_uri"] == uri.replace("s3cret", "***")


def test_a_run_names_the_process_that_owns_it(mlflow_cfg):
    with mlflow_run(mlflow_cfg, "encode") as active:
        pass
    tags = client(mlflow_cfg).get_run(active.info.run_id).data.tags
    assert tags[HOST_TAG] == socket.gethostname()
    assert tags[PID_TAG] == str(os.getpid())
    assert tags[PID_START_TAG] == process_tags()[PID_START_TAG]  # Linux: /proc/<pid>/stat field 22


def test_a_run_left_running_by_a_killed_process_is_marked_killed(mlflow_cfg, start_victim, caplog):
    # given a job that died by SIGKILL inside its run, which is left RUNNING
    proc, run_id = start_victim(mlflow_cfg, "kill")
    assert proc.wait(timeout=120) == -signal.SIGKILL
    c = client(mlflow_cfg)
    assert c.get_run(run_id).info.status == "RUNNING"
    # when the next run starts in that experiment on the same host
    with caplog.at_level(logging.WARNING, logger="core.tracking"):
        with mlflow_run(mlflow_cfg, "victim"):
            pass
    # then the dead job's run is KILLED, and one line says so
    assert c.get_run(run_id).info.status == "KILLED"
    assert [r.getMessage() for r in caplog.records if run_id in r.getMessage()] == [
        f"MLflow run {run_id} (victim) was left RUNNING by process {proc.pid} on {socket.gethostname()}, "
        "which is gone: marked KILLED"
    ]


def test_only_runs_of_dead_processes_of_this_host_are_marked_killed(mlflow_cfg):
    # given RUNNING runs: of this live process, of another host, and of a pid now reused by this process
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead_pid = str(gone.pid)
    mine = process_tags()
    c = client(mlflow_cfg)
    experiment_id = configure(mlflow_cfg)
    owners = {
        "alive": mine,
        "other_host": {**mine, HOST_TAG: "another-host", PID_TAG: dead_pid},
        "reused_pid": {**mine, PID_START_TAG: "1"},  # our pid, but a process started at another time
    }
    runs = {name: c.create_run(experiment_id, tags=tags, run_name=name).info.run_id for name, tags in owners.items()}
    # when a run starts in the experiment
    with mlflow_run(mlflow_cfg, "encode"):
        pass
    # then only the run whose owner is gone is KILLED
    status = {name: c.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"alive": "RUNNING", "other_host": "RUNNING", "reused_pid": "KILLED"}


def test_sigterm_ends_the_run_as_killed_and_exits_143(mlflow_cfg, start_victim):
    # given a job inside its run
    proc, run_id = start_victim(mlflow_cfg, "wait")
    # when the scheduler sends SIGTERM
    proc.send_signal(signal.SIGTERM)
    # then the job exits as SIGTERM's default would report it, and its run is KILLED, saying why
    assert proc.wait(timeout=120) == 143
    logged = client(mlflow_cfg).get_run(run_id)
    assert logged.info.status == "KILLED"
    assert "SIGTERM" in logged.data.tags["pipeline.error"]


def test_the_sigterm_handler_lives_only_as_long_as_the_run(mlflow_cfg):
    # given the process's own SIGTERM handling
    before = signal.getsignal(signal.SIGTERM)
    # when a run is open, SIGTERM is handled; after it, the old handling is back
    with mlflow_run(mlflow_cfg, "encode"):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_run_in_another_thread_leaves_signals_alone(mlflow_cfg):
    # given a run opened outside the main thread (signal handlers belong to the main thread)
    outcome = {}

    def stage():
        try:
            with mlflow_run(mlflow_cfg, "encode") as active:
                outcome["run_id"] = active.info.run_id
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            outcome["error"] = exc

    worker = threading.Thread(target=stage)
    worker.start()
    worker.join(timeout=120)
    # then it runs and finishes as in the main thread
    assert "error" not in outcome, outcome.get("error")
    assert client(mlflow_cfg).get_run(outcome["run_id"]).info.status == "FINISHED"
