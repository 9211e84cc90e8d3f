"""One runner for every Spark stage: read -> gate -> compute -> gate -> atomic write -> MLflow log.

A :class:`Stage` names the catalog tables it reads and writes and holds a pure-ish ``compute``
from the gated input frames to :class:`Output` frames plus a typed summary; it never reads,
writes or logs by itself. :func:`run_stage` does the rest, the same way for ``make run``, each
``jobs/*.py`` and each DAG task:

1. read each input table of the catalog (``tables.<name>``), record its Delta version;
2. gate each input with its Great Expectations suite (``Stage.input_gates``);
3. record each output's current Delta version, then ``compute`` (``ctx.previous`` is that version);
4. gate every output (all gates before the first write, so a failure leaves every table as it was);
5. write each output as one atomic Delta commit whose userMetadata names the stage, its inputs
   and their versions, made only on the output version recorded in 3: if another run committed
   in between, nothing is written and the stage exits 3 (``ConcurrentChange``);
6. log params, the tables read and written (MLflow datasets), gate evidence, metrics, the summary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pyspark.sql import DataFrame, SparkSession

from core.clock import Clock
from core.config import PipelineConfig
from core.errors import InputError
from core.tracking import log_delta_table, log_quality_results, mlflow_run
from embeddings.io import (
    WriteResult,
    changed_by_another_run,
    commit_metadata,
    delta_version,
    is_delta_table,
    read_table,
    reading,
    write_delta,
)
from embeddings.quality import gate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gate:
    """A Great Expectations suite to run on a frame, with its parameters (``previous``: the table's last version)."""

    suite: str
    params: Mapping[str, Any] = field(default_factory=dict)
    previous: DataFrame | None = None


@dataclass
class Output:
    """One table a stage produced: the frame, the gates it must pass, and its own commit metadata."""

    frame: DataFrame
    gates: list[Gate] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageOutput:
    """What ``compute`` returns: outputs by catalog name, a typed summary, metrics, and hooks.

    ``after_write`` sees the commits (e.g. to append a run record or log a plot); ``release`` runs
    after the writes whatever happens (unpersist caches, restore Spark settings, delete work dirs).
    """

    outputs: dict[str, Output]
    summary: BaseModel
    metrics: dict[str, float] = field(default_factory=dict)
    after_write: Callable[[dict[str, WriteResult]], None] | None = None
    release: list[Callable[[], None]] = field(default_factory=list)


@dataclass
class StageContext:
    """What ``compute`` gets: the session, the config, the gated inputs, their Delta versions and the outputs' ones."""

    spark: SparkSession
    cfg: PipelineConfig
    frames: dict[str, DataFrame]
    versions: dict[str, int | None]
    output_versions: dict[str, int | None] = field(default_factory=dict)
    deferred: list[Callable[[], None]] = field(default_factory=list)

    def defer(self, step: Callable[[], None]) -> None:
        """Run ``step`` when the stage ends, whether ``compute`` or a write failed or not (e.g. unpersist)."""
        self.deferred.append(step)

    def last_job(self, table: str) -> str | None:
        """The stage that made the current version of ``table`` (None: no Delta table, or not ours)."""
        path = self.cfg.tables.path(table)
        return (commit_metadata(self.spark, path) or {}).get("job") if is_delta_table(self.spark, path) else None

    def read_metadata(self, table: str) -> dict:
        """The commit metadata of output ``table`` at the version this run will commit on ({} before its first write)."""
        version = self.output_versions.get(table)
        return {} if version is None else commit_metadata(self.spark, self.cfg.tables.path(table), version) or {}

    def previous(self, table: str) -> DataFrame | None:
        """Output ``table`` at the version this run will commit on (None before its first write)."""
        version = self.output_versions.get(table)
        if version is None:
            return None
        path = self.cfg.tables.path(table)
        return read_table(self.spark, path, "delta", what=f"tables.{table}", version=version)


@dataclass(frozen=True)
class Stage:
    """A named step of the pipeline: catalog tables in and out, the gates of its inputs, its computation."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    compute: Callable[[StageContext], StageOutput]
    input_gates: Mapping[str, Callable[[PipelineConfig], Gate]] = field(default_factory=dict)
    params: Callable[[PipelineConfig], Any] = lambda cfg: None
    optional_inputs: Mapping[str, Callable[[PipelineConfig], bool]] = field(default_factory=dict)

    def input_names(self, cfg: PipelineConfig) -> tuple[str, ...]:
        """The tables this run reads: ``inputs``, then each optional input whose predicate holds for ``cfg``."""
        return self.inputs + tuple(name for name, needed in self.optional_inputs.items() if needed(cfg))


@dataclass(frozen=True)
class StageResult:
    """What a stage run committed (by catalog name), its summary, and the seconds each runner step took."""

    stage: str
    written: dict[str, WriteResult]
    summary: BaseModel
    seconds_by_step: dict[str, float] = field(default_factory=dict)


def check(df: DataFrame, rule: Gate, cfg: PipelineConfig) -> None:
    """Run one gate (raises DataQualityError on failure) and attach its evidence to the active run."""
    report = gate(df, rule.suite, cfg.quality, schema=cfg.click_schema, previous=rule.previous, **rule.params)
    if report is not None:
        log_quality_results(report.folder)


def read_inputs(spark: SparkSession, cfg: PipelineConfig, stage: Stage) -> tuple[dict[str, DataFrame], dict]:
    """Read and gate the stage's input tables; returns the frames and their Delta versions."""
    frames, versions = {}, {}
    for name in stage.input_names(cfg):
        entry = cfg.tables.entry(name)
        versions[name] = delta_version(spark, entry.path) if entry.format == "delta" else None
        # read at the version recorded (lineage names exactly what was read); unchecked until gated
        raw = read_table(spark, entry.path, entry.format, what=f"tables.{name}", version=versions[name])
        log_delta_table(name, entry.path, versions[name], role="input")
        what = f"tables.{name} ({entry.path})"
        if entry.format != "delta":
            with reading(what):  # one cheap job (Parquet: footers only) finds a missing or truncated file first
                raw.count()
        if name in stage.input_gates:
            try:
                with reading(what):  # a missing or corrupt file is an input error, not a data-quality one
                    check(raw, stage.input_gates[name](cfg), cfg)
            except InputError as exc:
                raise exc if str(exc).startswith(what) else InputError(f"{what}: {exc}") from None
        frames[name] = raw
    return frames, versions


def run_stage(spark: SparkSession, cfg: PipelineConfig, stage: Stage) -> StageResult:
    """Run ``stage`` in its own MLflow run (a child of the refresh's parent run, if any).

    The result's ``seconds_by_step`` (also logged, and as ``stage.seconds.<step>`` metrics) splits
    the wait: ``start`` (the MLflow run), ``read_inputs`` (with their gates), ``compute``,
    ``gate_outputs``, ``write``, ``after_write`` and ``release`` (the stage's clean-up).
    """
    steps = Clock()  # the runner's steps, in order: where a user's wait goes besides compute
    with mlflow_run(cfg.mlflow, stage.name, params=stage.params(cfg)) as run:
        steps.lap("start")
        frames, versions = read_inputs(spark, cfg, stage)
        bases = {name: delta_version(spark, cfg.tables.path(name)) for name in stage.outputs}
        steps.lap("read_inputs")
        ctx = StageContext(spark, cfg, frames, versions, bases)
        written: dict[str, WriteResult] = {}
        try:
            with reading(f"an input of stage {stage.name} ({', '.join(stage.input_names(cfg))})"):
                out = stage.compute(ctx)
                steps.lap("compute")
                ctx.deferred.extend(out.release)
                unknown = set(out.outputs) - set(stage.outputs)
                if unknown:
                    raise ValueError(f"stage {stage.name!r} produced undeclared output(s) {sorted(unknown)}")
                lineage = {
                    name: {
                        "path": cfg.tables.path(name),
                        "format": cfg.tables.entry(name).format,
                        "version": versions[name],
                    }
                    for name in stage.input_names(cfg)
                }
                for output in out.outputs.values():
                    for rule in output.gates:
                        check(output.frame, rule, cfg)
                steps.lap("gate_outputs")
                if (
                    len(out.outputs) > 1
                ):  # all before the first write, so a lost race writes none (write_delta checks each)
                    for name in out.outputs:
                        path = cfg.tables.path(name)
                        if (now := delta_version(spark, path)) != bases[name]:
                            raise changed_by_another_run(path, bases[name], now, f"tables.{name}")
                for name, output in out.outputs.items():
                    metadata = {"job": stage.name, "inputs": lineage, **output.metadata}
                    written[name] = write_delta(
                        output.frame,
                        cfg.tables.path(name),
                        metadata=metadata,
                        expected_version=bases[name],
                        what=f"tables.{name}",
                    )
                    log_delta_table(
                        name, written[name].path, written[name].version, role="output", num_rows=written[name].num_rows
                    )
                steps.lap("write")
                if out.after_write is not None:
                    out.after_write(written)
                    steps.lap("after_write")
        finally:
            for step in ctx.deferred:
                try:  # each step runs; none hides the stage's own error
                    step()
                except Exception as exc:  # noqa: BLE001
                    log.warning("stage %s: clean-up step %r failed: %s", stage.name, step, exc)
            steps.lap("release")
        if run is not None:
            import mlflow

            metrics = {**out.metrics, **{f"stage.seconds.{k}": v for k, v in steps.seconds.items()}}
            mlflow.log_metrics(metrics)
            mlflow.log_dict(out.summary.model_dump(mode="json"), f"{stage.name}/summary.json")
    log.info(
        "stage %s: %s; seconds by step %s",
        stage.name,
        ", ".join(f"{k} v{w.version} ({w.num_rows} rows)" for k, w in written.items()),
        steps.seconds,
    )
    return StageResult(stage=stage.name, written=written, summary=out.summary, seconds_by_step=steps.seconds)
