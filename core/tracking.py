"""MLflow helpers for jobs: one run per stage, nested under one parent run per refresh.

A job wraps its work in :func:`mlflow_run`; inside it, :func:`log_delta_table` records each Delta
table read or written (path + version, so a model traces back to the exact data it saw) and
:func:`log_quality_results` attaches Great Expectations evidence. With ``mlflow.enabled: false``
:func:`mlflow_run` yields None and every helper does nothing, so jobs need no ``if``.

Parent and child runs::

    refresh (parent, started by `make run` / the DAG; id exported as $PIPELINE_PARENT_RUN_ID)
      |- build_vocab   (child: params, input/output Delta versions, quality results)
      |- encode        (child)
      '- ...

The parent comes from, in order: the ``parent`` argument, ``$PIPELINE_PARENT_RUN_ID``, or the run
active in this process (a stage called in-process). A child lives in its parent's experiment.

Credentials in URIs (``user:pass@`` and ``password=``/``token=`` query values) are masked by
:func:`redact` in everything this module logs, prints or tags. A run is tagged with its host, pid
and the pid's start time: a run left RUNNING by a killed process (``kill -9`` cannot be caught) is
marked KILLED by the next run started in its experiment on that host, and SIGTERM ends a run as
KILLED (exit 143).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.config import MlflowConfig

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "PIPELINE_PARENT_RUN_ID"
STAGE_TAG = "pipeline.stage"
ERROR_TAG = "pipeline.error"
_PARAM_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")  # characters MLflow refuses in param names
MAX_PARAM_CHARS = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
HOST_TAG = "pipeline.host"
PID_TAG = "pipeline.pid"
PID_START_TAG = "pipeline.pid_start"  # /proc/<pid>/stat field 22: tells a reused pid from ours
SIGTERM_EXIT = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
REDACTED = "***"
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):[^/?#\s]*@")
_SECRET_QUERY = re.compile(r"(?P<head>[?&;][^=&#\s]*(?:password|passwd|pwd|token|secret)=)[^&;#\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every URI (``user:***@host``) and secret query values masked.

    Applied to whatever this module logs, prints or records, since a tracking URI such as
    ``postgresql://user:pass@host/db`` or ``https://host?token=...`` carries credentials.
    """
    text = _URI_PASSWORD.sub(rf"\g<head>:{REDACTED}@", text)
    return _SECRET_QUERY.sub(rf"\g<head>{REDACTED}", text)


def flatten_params(params: BaseModel | Mapping[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"fastrp.dim": "64", "vocab.features": '["C1", "C2"]', ...}``.

    Sections become dotted keys; lists, dicts with non-str keys and None become JSON text; each
    value has its URI credentials masked (:func:`redact`) and is cut to MLflow's 6000-character limit.
    """
    if params is None:
        return {}
    if isinstance(params, BaseModel):
        params = params.model_dump(mode="json")
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{_PARAM_KEY_UNSAFE.sub('_', str(key))}"  # e.g. sharding_types.'*' -> sharding_types._
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
            out.update(flatten_params(value, prefix=f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[name] = redact(text)[:MAX_PARAM_CHARS]
    return out


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URI, else None."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return Path(tracking_uri[len(prefix) :].split("?", 1)[0])


def configure(cfg: MlflowConfig) -> str | None:
    """Point MLflow at ``cfg.tracking_uri`` and make sure ``cfg.experiment`` exists; return its id.

    A sqlite store gets its folder created and, for a new experiment, an artifact root beside
    the database (``<db folder>/mlartifacts``) rather than one relative to the working directory.
    A URI with credentials turns off MLflow's "View run at <URI>" line, which would print them.
    """
    import mlflow
    from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT
    from mlflow.exceptions import MlflowException

    if not cfg.enabled:
        return None
    db = sqlite_path(cfg.tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    if redact(cfg.tracking_uri) != cfg.tracking_uri:
        os.environ[MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.name] = "true"
    mlflow.set_tracking_uri(cfg.tracking_uri)
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        location = (db.parent.resolve() / "mlartifacts").as_uri() if db is not None else None
        try:
            return mlflow.create_experiment(cfg.experiment, artifact_location=location)
        except MlflowException:  # created meanwhile by a parallel stage
            experiment = mlflow.get_experiment_by_name(cfg.experiment)
            if experiment is None:
                raise
    return experiment.experiment_id


def _proc_state(pid: int) -> tuple[str, str] | None:
    """(state, start time) of ``pid`` from /proc/<pid>/stat fields 3 and 22, or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name in parentheses may hold spaces
    return fields[0], fields[19]


def process_tags() -> dict[str, str]:
    """Tags naming the process that owns a run (host, pid, pid start time), so a dead owner can be told."""
    state = _proc_state(os.getpid())
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        **({PID_START_TAG: state[1]} if state is not None else {}),
    }


def _owner_alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` still runs and is the process that tagged the run, not a later one given its pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    state = _proc_state(pid)
    if state is None:
        return True  # no /proc: the pid is all there is to go by
    return state[0] != "Z" and (start is None or state[1] == start)


def mark_dead_runs_killed(client: Any, experiment_id: str) -> list[str]:
    """Set KILLED each RUNNING run of the experiment whose owning process on this host is gone; return their ids.

    A process killed with SIGKILL (or by the OOM killer) cannot end its run; left alone the run
    stays RUNNING forever. Runs of other hosts are left to a run started there.
    """
    host = socket.gethostname()
    stale = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    )
    killed = []
    for run in stale:
        pid = run.data.tags.get(PID_TAG, "")
        if not pid.isdigit() or _owner_alive(int(pid), run.data.tags.get(PID_START_TAG)):
            continue
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning(
            "MLflow run %s (%s) was left RUNNING by process %s on %s, which is gone: marked KILLED",
            run.info.run_id,
            run.info.run_name,
            pid,
            host,
        )
        killed.append(run.info.run_id)
    return killed


class Terminated(SystemExit):
    """SIGTERM arrived during a run: the run ends KILLED and the process exits 143, as SIGTERM's default would."""

    def __init__(self) -> None:
        super().__init__(SIGTERM_EXIT)

    def __str__(self) -> str:
        return f"terminated by SIGTERM (exit {SIGTERM_EXIT})"


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """In the main thread, make SIGTERM raise :class:`Terminated` inside the block; restore the old handler after.

    Only where SIGTERM would kill the process outright (the default handler): a process that
    ignores SIGTERM or handles it itself keeps doing so.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, _raise_terminated):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def mlflow_run(
    cfg: MlflowConfig,
    run_name: str,
    *,
    params: BaseModel | Mapping[str, Any] | None = None,
    parent: str | None = None,
    tags: Mapping[str, str] | None = None,
    export_parent: bool = False,
) -> Iterator[Any]:
    """Start (and end) one MLflow run for a stage; yields the active run, or None if disabled.

    Args:
        cfg: the ``mlflow`` config section (tracking URI, experiment, enabled).
        run_name: the stage name, also tagged as ``pipeline.stage``.
        params: config (pydantic model or mapping) logged as flattened params.
        parent: run id of the refresh's parent run (default ``$PIPELINE_PARENT_RUN_ID``, then the
            run active in this process).
        tags: extra run tags.
        export_parent: set ``$PIPELINE_PARENT_RUN_ID`` to this run's id while it is open, so
            stages started as subprocesses nest under it (use for the refresh's parent run).

    An exception inside the block marks the run FAILED, tags its message as ``pipeline.error``,
    logs the evidence of a failed data quality gate (an exception with ``report.folder``), and
    propagates. SIGTERM (in the main thread) marks it KILLED and exits 143. Before starting, runs
    of the experiment left RUNNING by dead processes of this host are marked KILLED.
    """
    if not cfg.enabled:
        yield None
        return
    import mlflow

    experiment_id = configure(cfg)
    active = mlflow.active_run()
    parent = parent or os.environ.get(PARENT_RUN_ENV) or (active.info.run_id if active else None)
    if active is not None and parent != active.info.run_id:
        raise ValueError(
            f"mlflow_run({run_name!r}): run {active.info.run_id} is active in this process "
            f"but the parent given is {parent}; end the active run first"
        )
    if parent:
        experiment_id = mlflow.get_run(parent).info.experiment_id
    try:  # bookkeeping of earlier runs never stops this one
        mark_dead_runs_killed(mlflow.MlflowClient(), experiment_id)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not look for runs left RUNNING by dead processes: %s", redact(str(exc)))
    run_tags = {STAGE_TAG: run_name, **process_tags(), **{k: redact(str(v)) for k, v in (tags or {}).items()}}
    with (
        mlflow.start_run(
            run_name=run_name,
            experiment_id=experiment_id,
            parent_run_id=parent,
            nested=parent is not None,
            tags=run_tags,
        ) as run,
        _sigterm_raises(),
    ):
        previous_env = os.environ.get(PARENT_RUN_ENV)
        if export_parent:
            os.environ[PARENT_RUN_ENV] = run.info.run_id
        try:
            if params is not None:
                mlflow.log_params(flatten_params(params))
            log.info(
                "MLflow run %s (%s) in experiment %s at %s%s",
                run.info.run_id,
                run_name,
                experiment_id,
                redact(cfg.tracking_uri),
                f", parent {parent}" if parent else "",
            )
            yield run
        except BaseException as exc:
            try:  # never let bookkeeping hide the job's own error
                mlflow.set_tag(ERROR_TAG, redact(f"{type(exc).__name__}: {exc}")[:8000])
                folder = getattr(getattr(exc, "report", None), "folder", None)
                if folder is not None and Path(folder).exists():
                    log_quality_results(folder)
                if isinstance(exc, Terminated):
                    mlflow.end_run("KILLED")
                    log.warning("SIGTERM: MLflow run %s (%s) ended as KILLED", run.info.run_id, run_name)
            except Exception as logging_error:  # noqa: BLE001
                log.warning("could not record the failure of run %s in MLflow: %s", run.info.run_id, logging_error)
            raise
        finally:
            if export_parent:
                if previous_env is None:
                    os.environ.pop(PARENT_RUN_ENV, None)
                else:
                    os.environ[PARENT_RUN_ENV] = previous_env


def _active():
    import mlflow

    return mlflow.active_run()


def log_delta_table(
    name: str, path: str, version: int | None, role: str = "input", num_rows: int | None = None
) -> None:
    """Record a Delta table this run read (``role="input"``) or wrote (``"output"``).

    Logs params ``<role>.<name>.path`` / ``<role>.<name>.delta_version`` and an MLflow dataset
    (a metadata-only ``MetaDataset`` over a ``DeltaDatasetSource(path, version)``) with context
    ``<role>``, so the Datasets panel of the run lists it; an output is listed there with context
    "output" (MLflow has no dataset outputs). Does nothing without an active run.
    """
    if role not in ("input", "output"):
        raise ValueError(f"log_delta_table: role must be 'input' or 'output', got {role!r}")
    if _active() is None:
        return
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    location = path if "://" in path else str(Path(path).resolve())
    params = {f"{role}.{name}.path": location, f"{role}.{name}.delta_version": str(version)}
    if num_rows is not None:
        params[f"{role}.{name}.num_rows"] = str(num_rows)
    mlflow.log_params(params)
    source = DeltaDatasetSource(path=location, delta_table_version=version)
    tags = {"delta_version": str(version), **({"num_rows": str(num_rows)} if num_rows is not None else {})}
    mlflow.log_input(MetaDataset(source=source, name=name), context=role, tags=tags)


def log_quality_results(folder: str | Path) -> list[str]:
    """Log Great Expectations evidence (``result.json`` + Data Docs) as artifacts ``quality/<suite>/``.

    ``folder`` is one suite's folder (``QualityReport.folder``) or the whole ``quality.output``
    folder (every suite in it). Each suite also gets metrics ``quality.<suite>.success`` (1/0)
    and ``quality.<suite>.failed`` (failed expectations). Returns the suites logged; does
    nothing without an active run.
    """
    folder = Path(folder)
    if _active() is None or not folder.is_dir():
        return []
    import mlflow

    suites = (
        [folder]
        if (folder / "result.json").exists()
        else sorted(d for d in folder.iterdir() if (d / "result.json").exists())
    )
    for suite in suites:
        mlflow.log_artifacts(str(suite), artifact_path=f"quality/{suite.name}")
        result = json.loads((suite / "result.json").read_text())
        stats = result.get("statistics") or {}
        mlflow.log_metrics(
            {
                f"quality.{suite.name}.success": float(bool(result.get("success"))),
                f"quality.{suite.name}.failed": float(stats.get("unsuccessful_expectations", 0)),
            }
        )
    return [s.name for s in suites]
