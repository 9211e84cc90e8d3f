"""Typed pipeline configuration: one frozen pydantic model per section, defaults in code.

:class:`PipelineConfig` is the whole document; ``core.cli.load_config`` builds it from YAML layers
and flags. Pure pydantic: importing this module imports neither pyspark nor torch.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from core.errors import ConfigError  # noqa: F401  (re-exported: config errors live with the config)
from core.train_config import TrainConfig

DEFAULT_CONFIG = "conf/local.yaml"
TableFormat = Literal["delta", "parquet", "csv"]
HandleInvalid = Literal["error", "skip", "keep"]


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(StrictModel):
    """How the SparkSession is built; ignored where spark-submit already chose (master, jars)."""

    master: str = "local[*]"
    app_name: str = "graph-rec-embeddings"
    shuffle_partitions: PositiveInt = 8
    ui_enabled: bool = False
    driver_memory: str = "4g"
    checkpoint_dir: str = "data/checkpoints"
    conf: dict[str, str] = Field(default_factory=dict)


class MlflowConfig(StrictModel):
    """Where runs are tracked and models registered."""

    tracking_uri: str = "sqlite:///data/mlflow.db"
    experiment: str = "graph-rec-embeddings"
    enabled: bool = True
    # Model Registry (recsys/registry.py): promotion by aliases, never by deprecated stages.
    registered_model: str = Field(default="ctr_model", min_length=1, description="registered model name")
    champion_alias: str = Field(default="champion", min_length=1)
    challenger_alias: str = Field(default="challenger", min_length=1)
    promotion_tolerance: float = Field(
        default=0.002, ge=0.0, description="champion moves if challenger test AUC >= champion's - this (same rows)")


class SynthConfig(StrictModel):
    """Synthetic Criteo-shaped click log + user-item edge table (embedded default and tests)."""

    num_rows: PositiveInt = 100_000
    num_dense: PositiveInt = 6
    num_categorical: PositiveInt = 8
    num_noise_fields: NonNegativeInt = 2
    cardinality: PositiveInt = 2_000
    zipf_exponent: PositiveFloat = 1.2
    num_users: PositiveInt = 2_000
    num_items: PositiveInt = 1_000
    num_communities: PositiveInt = 8
    num_tags: PositiveInt = 200
    num_partitions: PositiveInt = 4
    start_date: dt.date = dt.date(2026, 1, 1)
    num_days: PositiveInt = 14
    seed: int = 7
    output: str = "data/raw/clicks"
    edges_output: str = "data/raw/edges"
    oracle_output: str = "data/raw/oracle"


class VocabConfig(StrictModel):
    """Which categorical columns get vocabularies, and the thresholds that admit values."""

    input: str = "data/raw/clicks"
    input_format: TableFormat = "delta"
    features: list[str] = Field(default_factory=list)
    min_count: PositiveInt = 1
    max_size: PositiveInt | None = None
    max_size_per_feature: dict[str, PositiveInt] = Field(default_factory=dict)
    time_col: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    output: str = "data/vocab"

    @model_validator(mode="after")
    def _window_is_ordered(self) -> "VocabConfig":
        if (self.start or self.end) and not self.time_col:
            raise ValueError("vocab.start/vocab.end need vocab.time_col")
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"vocab.start ({self.start}) must be before vocab.end ({self.end})")
        unknown = set(self.max_size_per_feature) - set(self.features)
        if unknown:
            raise ValueError(f"vocab.max_size_per_feature names features not in vocab.features: {sorted(unknown)}")
        return self


class EncodeConfig(StrictModel):
    """Rewrite a table with integer ids from the vocabulary table."""

    input: str = "data/raw/clicks"
    input_format: TableFormat = "delta"
    vocab: str = "data/vocab"
    features: list[str] = Field(default_factory=list)
    handle_invalid: HandleInvalid = "keep"
    broadcast_max_rows: PositiveInt = 1_000_000
    output: str = "data/encoded"


class FastRPConfig(StrictModel):
    """FastRP (Chen et al. 2019) over an edge table; see embeddings/fastrp.py for the maths."""

    edges: str = "data/raw/edges"
    edges_format: TableFormat = "delta"
    src_col: str = "src"
    dst_col: str = "dst"
    weight_col: str | None = None
    directed: bool = False
    output: str = "data/fastrp"
    dim: PositiveInt = 128
    iteration_weights: list[float] = Field(default_factory=lambda: [0.0, 1.0, 1.0, 1.0], min_length=1)
    iterations: PositiveInt | None = Field(default=None, description="if set, must equal len(iteration_weights)")
    normalization_strength: float = 0.0
    self_influence: float = Field(default=0.0, ge=0.0)
    sparsity: float | None = Field(default=None, ge=1.0, description="s >= 1 (density 1/s); default sqrt(N)")
    variant: Literal["paper", "gds"] = "paper"
    standardize: bool = False
    seed: int = 42
    engine: Literal["spark", "local"] = "spark"
    estimate: bool = False
    num_partitions: PositiveInt | None = Field(default=None, description="Spark partitions of the block stages")
    block_size: PositiveInt | None = Field(
        default=None, description="nodes per block of the Spark engine; default: blocks of <= 256 MiB of float32 X")
    checkpoint: Literal["reliable", "local"] = Field(
        default="reliable", description="per-iteration lineage cut: reliable (files, survives lost executors) or local")

    @model_validator(mode="after")
    def _weights_match_iterations(self) -> "FastRPConfig":
        if self.iterations is not None and self.iterations != len(self.iteration_weights):
            raise ValueError(f"fastrp.iterations ({self.iterations}) must equal the number of "
                             f"fastrp.iteration_weights ({len(self.iteration_weights)}: {self.iteration_weights})")
        if not any(self.iteration_weights) and self.self_influence == 0:
            raise ValueError("fastrp.iteration_weights are all 0 and fastrp.self_influence is 0: every embedding would be 0")
        if any(w != w for w in self.iteration_weights):
            raise ValueError("fastrp.iteration_weights must not contain NaN")
        return self


class QualityConfig(StrictModel):
    """Great Expectations gates (embeddings/quality.py): where evidence goes and each suite's bounds."""

    enabled: bool = Field(default=True, description="run the gates (false: skip them, with a warning)")
    output: str = Field(default="data/quality", description="results + Data Docs, one folder per suite")
    data_docs: bool = True
    persist: bool = Field(default=True, description="cache a Spark frame while its metrics are computed")
    examples: PositiveInt = Field(default=5, description="unexpected values quoted per failed expectation")
    # clicks: the raw click log
    id_col: str = "event_id"
    label_col: str = "label"
    time_col: str | None = "ts"
    dense_cols: list[str] = Field(default_factory=lambda: [f"I{i}" for i in range(1, 7)])
    categorical_cols: list[str] = Field(default_factory=lambda: [f"C{i}" for i in range(1, 9)] + ["tags"])
    min_rows: NonNegativeInt = 1
    max_rows: PositiveInt | None = None
    dense_min: float | None = 0.0
    dense_max: float | None = Field(default=None, description="None: any finite value")
    unique_ids: bool = True
    # vocabulary and vocabulary_ids
    vocab_min_id: NonNegativeInt = Field(default=2, description="ids 0 (missing) and 1 (OOV) are reserved")
    vocab_allow_dropped: bool = False
    # edges
    src_col: str = "src"
    dst_col: str = "dst"
    weight_col: str | None = "weight"
    # embeddings
    node_col: str = "node"
    embedding_col: str = "embedding"
    min_norm: float = Field(default=0.0, ge=0.0)
    max_norm: PositiveFloat | None = Field(default=None, description="None: any finite norm")
    # scores
    probability_col: str = "probability"


class ScoreConfig(StrictModel):
    """Batch scoring with a registered model (jobs/score.py)."""

    model: str | None = Field(default=None, description="model URI (default models:/<registered_model>@<champion_alias>)")
    input: str | None = Field(default=None, description="raw rows to score (default encode.input)")
    input_format: TableFormat = "delta"
    output: str = "data/scores"
    id_col: str | None = Field(default=None, description="id column copied to the output (default train.id_col)")


class PipelineConfig(StrictModel):
    """The whole pipeline's configuration; each job reads the sections it needs."""

    spark: SparkConfig = SparkConfig()
    mlflow: MlflowConfig = MlflowConfig()
    synth: SynthConfig = SynthConfig()
    vocab: VocabConfig = VocabConfig()
    encode: EncodeConfig = EncodeConfig()
    fastrp: FastRPConfig = FastRPConfig()
    train: TrainConfig = TrainConfig()
    score: ScoreConfig = ScoreConfig()
    quality: QualityConfig = QualityConfig()


