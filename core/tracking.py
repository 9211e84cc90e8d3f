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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
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


def flatten_params(params: BaseModel | Mapping[str, Any] | None, prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"fastrp.dim": "64", "vocab.features": '["C1", "C2"]', ...}``.

    Sections become dotted keys; lists, dicts with non-str keys and None become JSON text; each
    value is cut to MLflow's 6000-character limit.
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
        out[name] = text[:MAX_PARAM_CHARS]
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
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if not cfg.enabled:
        return None
    db = sqlite_path(cfg.tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
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
    propagates.
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
    run_tags = {STAGE_TAG: run_name, **(tags or {})}
    with mlflow.start_run(
        run_name=run_name, experiment_id=experiment_id, parent_run_id=parent, nested=parent is not None, tags=run_tags
    ) as run:
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
                cfg.tracking_uri,
                f", parent {parent}" if parent else "",
            )
            yield run
        except BaseException as exc:
            try:  # never let bookkeeping hide the job's own error
                mlflow.set_tag(ERROR_TAG, f"{type(exc).__name__}: {exc}"[:8000])
                folder = getattr(getattr(exc, "report", None), "folder", None)
                if folder is not None and Path(folder).exists():
                    log_quality_results(folder)
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
