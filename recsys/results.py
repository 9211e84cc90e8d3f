"""Typed results of training, OptEmbed stages, tuning studies and promotion: the JSON files are dumps of these, readers parse them.

``train.metrics_out`` holds a :class:`TrainResult` (``kind: ctr``) or an :class:`OptEmbedResult`
(``kind: optembed``); :func:`read_result` parses either. Nothing downstream indexes a dict by string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from core.errors import InputError
from recsys.files import atomic_file


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SplitRecord(_Result):
    """How rows were split into train/valid/test, enough to find the same test rows again in the raw log."""

    kind: Literal["random", "time"]
    valid_fraction: float
    test_fraction: float
    input_version: int | None = None
    seed: int | None = Field(default=None, description="random split: the hash seed")
    time_col: str | None = Field(default=None, description="time split: the event time column")
    valid_start: str | None = Field(default=None, description="time split: first valid time (ISO)")
    test_start: str | None = Field(default=None, description="time split: first test time (ISO)")


class EvalResult(_Result):
    """AUC and logloss of one split (None where a split holds one class)."""

    auc: float | None
    logloss: float | None
    rows: int


class GraphFeatureRecord(_Result):
    """One graph feature of a run: its mode, node-id prefix, and how many of its vocabulary values have a node."""

    mode: Literal["frozen", "init"]
    prefix: str
    values: int = Field(description="the feature's vocabulary values (ids >= 2)")
    matched: int = Field(description="values with a node in the FastRP table")
    coverage: float = Field(description="matched / values")


class ValidPoint(_Result):
    """One validation while training (``train.eval_every``): the global step and the valid split's quality."""

    step: int
    auc: float
    logloss: float


class TrainResult(_Result):
    """One training run, on rank 0: quality, size, speed, layout, sharding, split and lineage."""

    kind: Literal["ctr"] = "ctr"
    test_auc: float | None
    test_logloss: float | None
    test_rows: int | None = None
    valid_auc: float | None = None
    valid_logloss: float | None = None
    oracle_test_auc: float | None = Field(default=None, description="AUC of the true probabilities (synthetic data)")
    embedding_params: int
    embedding_bytes: dict[str, int] = Field(default_factory=dict)
    examples_per_second: float | None = None
    train_seconds: float | None = None
    wall_seconds: float | None = None
    steps: int | None = None
    final_loss: float | None = None
    loss_history: list[float] = Field(default_factory=list, description="rank 0's training loss per step")
    valid_curve: list[ValidPoint] = Field(default_factory=list, description="train.eval_every's validations")
    best_step: int | None = Field(default=None, description="the step whose weights were kept (eval_every)")
    stopped_early: bool = False
    pruned: bool = Field(default=False, description="stopped by the on_valid hook (a tuning study's pruner)")
    layout: str
    layout_config: dict = Field(default_factory=dict)
    tables: dict[str, list[int]] = Field(default_factory=dict, description="table -> [num_embeddings, embedding_dim]")
    feature_widths: dict[str, int] = Field(default_factory=dict)
    model: str
    world_size: int
    backend: str
    device: str = "cpu"
    sharding_plan: dict = Field(default_factory=dict)
    split: SplitRecord
    input: str
    input_version: int | None
    vocab: str
    vocab_version: int | None
    embeddings: str | None = Field(default=None, description="the FastRP table graph features read")
    embeddings_version: int | None = None
    graph_features: dict[str, GraphFeatureRecord] = Field(default_factory=dict)
    resumed: bool = False
    seed: int
    mlflow_run_id: str | None = None


class _StageMetrics(_Result):
    """Validation and test quality of one OptEmbed stage's model."""

    valid_auc: float | None = None
    valid_logloss: float | None = None
    test_auc: float | None = None
    test_logloss: float | None = None


class BaselineResult(_StageMetrics):
    """OptEmbed's 'before': the plain full model."""

    tables: dict[str, list[int]]
    embedding_params: int
    embedding_bytes: dict[str, int]
    examples_per_second: float | None = None


class SupernetResult(_StageMetrics):
    """OptEmbed stage 1: the supernet with learnable row thresholds (OptEmbed-E) and sampled widths."""

    thresholds_before: list[float]
    thresholds: list[float]
    examples_per_second: float | None = None
    final_loss: float | None = None
    rows_kept: dict[str, int] = Field(default_factory=dict)
    loaded_from: str | None = Field(default=None, description="set when the stage was loaded from work_dir")


class SearchResult(_Result):
    """OptEmbed stage 2: the evolutionary search of per-field widths (OptEmbed-D) under the budget."""

    widths: list[int]
    params: int
    valid_auc: float | None
    supernet_test_auc_with_widths: float | None = None
    max_params: int | None = None
    history: list = Field(default_factory=list)
    candidates: list[dict] = Field(default_factory=list)
    widths_by_table: dict[str, int] = Field(default_factory=dict)


class RetrainResult(_StageMetrics):
    """OptEmbed stage 3: the pruned, searched table retrained from the supernet's initial weights."""

    examples_per_second: float | None = None
    final_loss: float | None = None
    sharding_plan: dict = Field(default_factory=dict)


class OptEmbedStages(_Result):
    baseline: BaselineResult | None = None
    supernet: SupernetResult | None = None
    search: SearchResult | None = None
    retrain: RetrainResult | None = None


class OptEmbedResult(TrainResult):
    """A whole OptEmbed run: each stage's result, and the table before/after pruning and search."""

    kind: Literal["optembed"] = "optembed"
    optembed: dict
    stages: OptEmbedStages
    rows_kept: dict[str, int] = Field(default_factory=dict)
    rows_total: dict[str, int] = Field(default_factory=dict)
    widths: dict[str, int] = Field(default_factory=dict)
    params_before: int | None = None
    params_after: int | None = None
    bytes_before: dict[str, int] = Field(default_factory=dict)
    bytes_after: dict[str, int] = Field(default_factory=dict)
    tables_before: dict[str, list[int]] = Field(default_factory=dict)
    tables_after: dict[str, list[int]] = Field(default_factory=dict)
    auc_before: float | None = None
    logloss_before: float | None = None
    auc_after: float | None = None
    logloss_after: float | None = None


AnyTrainResult = Annotated[TrainResult | OptEmbedResult, Field(discriminator="kind")]
_ADAPTER: TypeAdapter = TypeAdapter(AnyTrainResult)


def write_result(path: str | Path, result: BaseModel) -> None:
    """Write a result as JSON atomically (temp file + rename), mode ``0666 & ~umask`` like any ``open()``."""
    with atomic_file(path, "w") as f:
        f.write(result.model_dump_json(indent=2))


def read_result(path: str | Path) -> TrainResult | OptEmbedResult:
    """Parse ``train.metrics_out``; InputError naming the file if it is not a training result."""
    try:
        return _ADAPTER.validate_python(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: not a training result written by jobs/train_ctr.py ({exc})".splitlines()[0]
        ) from None


class PromotionDecision(_Result):
    """Outcome of one promotion: which version, both AUCs on the same rows, and whether champion moved."""

    model_name: str
    version: str
    promoted: bool
    reason: str
    challenger_auc: float
    champion_version: str | None
    champion_auc: float | None
    tolerance: float
    test_rows: int

    def summary(self) -> str:
        champ = "none" if self.champion_version is None else f"v{self.champion_version} AUC {_fmt(self.champion_auc)}"
        verdict = "PROMOTED to champion" if self.promoted else "NOT promoted (stays challenger)"
        return (
            f"{self.model_name} v{self.version}: {verdict}; challenger AUC {self.challenger_auc:.6f}, "
            f"previous champion {champ}, tolerance {self.tolerance}, {self.test_rows} test rows: {self.reason}"
        )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6f}"


class TrialRecord(_Result):
    """One trial of the study: what it set, how it ended, and its run's quality."""

    number: int
    state: Literal["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"]
    params: dict[str, Any]
    valid_auc: float | None = None
    test_auc: float | None = None
    evaluations: int = 0
    error: str | None = None
    mlflow_run_id: str | None = None


class TuneResult(_Result):
    """The study after this run: every trial (earlier runs' too), the best one and the layer written for it."""

    study_name: str
    trials: list[TrialRecord]
    best_trial: int
    best_valid_auc: float
    best_layer: dict[str, Any]
    output: str
    trials_this_run: int
