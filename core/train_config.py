"""Typed configuration of CTR training (pure pydantic: no torch import here).

``TrainConfig`` is the ``train:`` section of the pipeline config. Variants are picked by a
``kind`` discriminator: ``train.layout.kind`` (vocab | hashed | unified), ``train.model.kind``
(dlrm | dcn), ``train.split.kind`` (random | time). Defaults live here; YAML holds only changes.
A layer that sets a variant's keys without its ``kind`` keeps the kind below it (or the default).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Tag,
    model_validator,
)

# Sharding types TorchRec's planner knows; which ones a backend offers is checked at plan time
# (on CPU/gloo: data_parallel, table_wise, column_wise, table_column_wise; row-wise needs GPUs).
ShardingTypeName = Literal[
    "data_parallel", "table_wise", "column_wise", "row_wise", "table_row_wise", "table_column_wise"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _kind_or(default: str):
    """Discriminator of a variant union: the value's ``kind``, else ``default``.

    A layer that sets only other keys (``--set train.split.test_fraction=0.3``) keeps the kind of
    the layer below it (OmegaConf merges mappings) or, with none below, the field's default kind.
    """

    def kind(value: Any) -> str:
        return value.get("kind", default) if isinstance(value, dict) else getattr(value, "kind", default)

    return kind


class VocabLayoutConfig(_Strict):
    """One table per feature, ``num_embeddings`` = the feature's vocabulary size (collisionless)."""

    kind: Literal["vocab"] = "vocab"


class HashedLayoutConfig(_Strict):
    """One table per feature, indexed by a salted hash of the raw value; ``total_rows`` rows in all.

    The rows are split across features in proportion to their vocabulary sizes (at least
    ``min_rows`` each), the classic per-feature hashing-trick baseline.
    """

    kind: Literal["hashed"] = "hashed"
    total_rows: PositiveInt = 100_000
    min_rows: PositiveInt = 2


class UnifiedLayoutConfig(_Strict):
    """Unified Embedding (Coleman et al., NeurIPS 2023): one shared table of ``total_rows`` rows.

    Feature ``f`` makes ``chunks.get(f, num_chunks)`` lookups with distinct salts; its vector is
    their concatenation, so its width is ``chunks * embedding_dim``.
    """

    kind: Literal["unified"] = "unified"
    total_rows: PositiveInt = 100_000
    num_chunks: PositiveInt = 1
    chunks: dict[str, PositiveInt] = Field(default_factory=dict)


LayoutConfig = Annotated[
    Annotated[VocabLayoutConfig, Tag("vocab")]
    | Annotated[HashedLayoutConfig, Tag("hashed")]
    | Annotated[UnifiedLayoutConfig, Tag("unified")],
    Discriminator(
        _kind_or("vocab"),
        custom_error_type="invalid_kind",
        custom_error_message="layout kind must be one of 'vocab', 'hashed', 'unified'",
    ),
]


class LRScheduleConfig(_Strict):
    """Both optimisers' learning rates times a factor of the step: linear warm-up, then an optional decay."""

    warmup_steps: NonNegativeInt = 0
    decay: Literal["none", "linear", "cosine"] = "none"
    min_factor: float = Field(default=0.0, ge=0.0, le=1.0, description="the factor the decay ends at")


class EarlyStoppingConfig(_Strict):
    """Stop when the valid AUC has not gained ``min_delta`` for ``patience`` evaluations; keep the best weights."""

    patience: PositiveInt = 3
    min_delta: float = Field(default=0.0, ge=0.0)


WIDE_DESCRIPTION = "add a first-order term: a narrow twin of every table (one learned weight per value)"


class DlrmConfig(_Strict):
    """DLRM (Naumov et al. 2019): dense MLP, pairwise dot products of all vectors, top MLP."""

    kind: Literal["dlrm"] = "dlrm"
    dense_arch: list[PositiveInt] = Field(default_factory=lambda: [64])
    over_arch: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
    wide: bool = Field(default=False, description=WIDE_DESCRIPTION)


class DcnConfig(_Strict):
    """DCN-v2 (Wang et al. 2021): low-rank cross network over [dense MLP out, all embeddings], then MLP."""

    kind: Literal["dcn"] = "dcn"
    dense_arch: list[PositiveInt] = Field(default_factory=lambda: [64])
    cross_layers: PositiveInt = 2
    cross_rank: PositiveInt = 16
    over_arch: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
    wide: bool = Field(default=False, description=WIDE_DESCRIPTION)


class DeepFMConfig(_Strict):
    """DeepFM (Guo et al. 2017): first-order term + FM over all vectors + an MLP over their concatenation."""

    kind: Literal["deepfm"] = "deepfm"
    dense_arch: list[PositiveInt] = Field(default_factory=lambda: [64])
    over_arch: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
    wide: bool = Field(default=True, description=WIDE_DESCRIPTION + " (DeepFM's own first-order part)")


ModelConfig = Annotated[
    Annotated[DlrmConfig, Tag("dlrm")] | Annotated[DcnConfig, Tag("dcn")] | Annotated[DeepFMConfig, Tag("deepfm")],
    Discriminator(
        _kind_or("dlrm"),
        custom_error_type="invalid_kind",
        custom_error_message="model kind must be 'dlrm', 'dcn' or 'deepfm'",
    ),
]


class _SplitFractions(_Strict):
    """The valid and test shares of a split (they must leave training rows)."""

    valid_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> "_SplitFractions":
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("split.valid_fraction + split.test_fraction must be < 1")
        return self


class RandomSplitConfig(_SplitFractions):
    """Seeded random split: a row's split is a hash of (seed, event_id), so file layout cannot change it."""

    kind: Literal["random"] = "random"


class TimeSplitConfig(_SplitFractions):
    """Time-ordered split on ``schema.time``: the last ``test_fraction`` of rows are test, the ones before valid."""

    kind: Literal["time"] = "time"


SplitConfig = Annotated[
    Annotated[RandomSplitConfig, Tag("random")] | Annotated[TimeSplitConfig, Tag("time")],
    Discriminator(
        _kind_or("random"),
        custom_error_type="invalid_kind",
        custom_error_message="split kind must be 'random' or 'time'",
    ),
]


class OptEmbedConfig(_Strict):
    """OptEmbed (Lyu et al., CIKM 2022): supernet with learnable row pruning + dimension sampling, search, retrain.

    ``stages`` picks what runs; a stage that is left out loads its predecessor's result from ``work_dir``.
    ``row_pruning``/``dim_search`` switch OptEmbed-E/-D off for ablations (both on = full OptEmbed).
    """

    enabled: bool = False
    stages: list[Literal["supernet", "search", "retrain"]] = Field(
        default_factory=lambda: ["supernet", "search", "retrain"]
    )
    work_dir: str | None = Field(default=None, description="where stage results are kept between stages")
    baseline: bool = Field(default=True, description="also train the plain full model first (the 'before' metrics)")
    row_pruning: bool = True
    dim_search: bool = True
    # 1e-3/1e-3 (Adam) measured best on the 200k-row synthetic log: the noise fields go, useful rows stay.
    # Adam moves a threshold ~threshold_lr per step whatever alpha's scale, so the lr bounds how far it runs.
    alpha: float = Field(default=1e-3, ge=0.0, description="weight of the threshold penalty alpha*sum exp(-t)")
    threshold_optimizer: Literal["adam", "sgd"] = "adam"
    threshold_lr: PositiveFloat = 1e-3
    supernet_epochs: PositiveInt | None = Field(default=None, description="default: train.epochs")
    retrain_epochs: PositiveInt | None = Field(default=None, description="default: train.epochs")
    population: PositiveInt = 20
    num_mutations: NonNegativeInt = 10
    num_crossovers: NonNegativeInt = 10
    mutation_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    generations: NonNegativeInt = 30
    search_valid_rows: PositiveInt | None = Field(default=None, description="cap on validation rows per fitness call")
    max_params: PositiveInt | None = Field(default=None, description="parameter budget of the searched table")
    max_params_fraction: float | None = Field(
        default=None, gt=0.0, le=1.0, description="budget as a fraction of the full table's parameters"
    )
    width_multiple: PositiveInt = 4

    @model_validator(mode="after")
    def _stages_in_order(self) -> "OptEmbedConfig":
        order = ["supernet", "search", "retrain"]
        if [s for s in order if s in self.stages] != list(self.stages) or not self.stages:
            raise ValueError(f"optembed.stages must be a non-empty subsequence of {order}; got {self.stages}")
        if self.stages != order and not self.work_dir:
            raise ValueError("optembed.stages runs only some stages: set optembed.work_dir to keep/load stage results")
        return self


class GraphFeatureConfig(_Strict):
    """A FastRP table as graph features of one sparse feature (``train.graph_features.<feature>``).

    ``frozen``: the feature's FastRP vectors (rows by vocabulary id; 0 for values with no node) form
    an extra table that training never changes, entering the interaction through a learned
    projection to ``embedding_dim``. ``init``: the feature's own trainable table starts from the
    projected FastRP vectors. ``prefix``: the node-id prefix of the feature's values (default
    ``user:``/``item:`` when the feature is ``graph.user``/``graph.item``).
    """

    mode: Literal["frozen", "init"] = "frozen"
    prefix: str | None = None


def _graph_feature(value: Any) -> Any:
    return {"mode": value} if isinstance(value, str) else value  # ``C1: frozen`` is short for ``C1: {mode: frozen}``


def _drop_nulls(value: Any) -> Any:
    """``{C2: null}`` removes C2: config layers merge mappings, so a layer can only drop a key by nulling it."""
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


class TrainInputs(_Strict):
    """What the trainer reads: table paths and click-log columns (``PipelineConfig.train_inputs()`` fills it)."""

    encoded: str = Field(min_length=1, description="the encoded click log (Delta)")
    vocab: str = Field(min_length=1, description="the vocabulary table (Delta)")
    oracle: str | None = Field(default=None, description="optional (event_id, p_true) table: best AUC on the test rows")
    label_col: str = "label"
    id_col: str = "event_id"
    time_col: str | None = "ts"
    dense: list[str] | None = Field(default=None, description="None: every I<n> column")
    sparse: list[str] | None = Field(default=None, description="None: every C<n> and array<int> column")
    embeddings: str | None = Field(default=None, description="the FastRP table (Delta) graph features read")
    graph_prefixes: dict[str, str] = Field(
        default_factory=dict, description="feature -> node-id prefix of its values in the FastRP table"
    )


class TrainConfig(_Strict):
    """CTR training settings: data, layout, model, optimisers, sharding, launch and outputs."""

    # data (tables and columns: TrainInputs, from the catalog and the schema)
    read_batch_rows: PositiveInt = 65_536
    split: SplitConfig = RandomSplitConfig()
    # embeddings + model
    layout: LayoutConfig = VocabLayoutConfig()
    embedding_dim: PositiveInt = 16
    pooling: Literal["sum", "mean"] = Field(
        default="sum", description="how a bag of values (array features) pools its rows; one-value bags give the row"
    )
    model: ModelConfig = DlrmConfig()
    max_embedding_bytes: PositiveInt | None = Field(
        default=None, description="refuse tables (weights + optimizer state) larger than this many bytes"
    )
    # optimisation
    batch_size: PositiveInt = 512
    epochs: PositiveInt = 1
    max_steps: PositiveInt | None = None
    embedding_optimizer: Literal["rowwise_adagrad", "adagrad", "sgd", "adam"] = "rowwise_adagrad"
    embedding_lr: PositiveFloat = 0.05
    embedding_l2: float = Field(
        default=0.0,
        ge=0.0,
        description="L2 on the vectors a batch looks up (each row as often as it is used), added to the loss",
    )
    dense_optimizer: Literal["adam", "adagrad", "sgd"] = "adam"
    dense_lr: PositiveFloat = 1e-3
    dense_weight_decay: float = Field(default=0.0, ge=0.0, description="the dense optimizer's weight_decay (L2)")
    lr_schedule: LRScheduleConfig = LRScheduleConfig()
    eval_batch_size: PositiveInt = 4096
    eval_every: PositiveInt | None = Field(
        default=None, description="evaluate the valid split every this many steps (and keep the best weights)"
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        default=None, description="stop when valid AUC has not improved for patience evaluations (needs eval_every)"
    )
    seed: int = 0
    # distribution
    world_size: PositiveInt = 1
    num_threads: PositiveInt | None = Field(
        default=None,
        description="torch CPU threads per rank (default: $OMP_NUM_THREADS, else 1; "
        "more threads than free cores makes OpenMP spin and training crawl)",
    )
    device: Literal["cpu", "cuda"] = "cpu"
    force: bool = Field(
        default=False,
        description="train even when world_size exceeds this host's CPU cores (or GPUs) or the embedding "
        "tables exceed its available memory (warns instead of refusing)",
    )
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    launcher: Literal["auto", "spark"] = Field(
        default="auto",
        description="auto: torchrun env if present, else spawn world_size ranks; spark: TorchDistributor",
    )
    spark_local_mode: bool = True
    sharding_types: dict[str, list[ShardingTypeName]] = Field(
        default_factory=dict, description="allowed sharding types per table name ('*' = every table)"
    )
    optembed: OptEmbedConfig = OptEmbedConfig()
    graph_features: Annotated[
        dict[str, Annotated[GraphFeatureConfig, BeforeValidator(_graph_feature)]], BeforeValidator(_drop_nulls)
    ] = Field(
        default_factory=dict,
        description="sparse feature -> FastRP graph features (frozen | init); null drops one a layer below set",
    )
    graph_min_coverage: float = Field(
        default=0.5, ge=0.0, le=1.0, description="warn when fewer of a feature's vocabulary values have a node"
    )
    # outputs
    checkpoint_dir: str | None = None
    checkpoint_every: NonNegativeInt = 0
    resume: bool = False
    export_path: str | None = None
    metrics_out: str | None = None
    progress: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.embedding_optimizer == "adam" and self.device == "cpu":
            raise ValueError(
                "embedding_optimizer 'adam' (fused Adam) is not offered by FBGEMM on CPU; "
                "use rowwise_adagrad, adagrad or sgd, or device cuda"
            )
        if self.backend == "nccl" and self.device == "cpu":
            raise ValueError("backend 'nccl' needs device 'cuda'")
        if (self.resume or self.checkpoint_every) and not self.checkpoint_dir:
            raise ValueError("resume/checkpoint_every need checkpoint_dir")
        if self.early_stopping is not None and self.split.valid_fraction == 0:
            raise ValueError("train.early_stopping needs a validation split (train.split.valid_fraction > 0)")
        if self.early_stopping is not None and self.eval_every is None:
            raise ValueError("train.early_stopping needs train.eval_every (steps between validations)")
        if self.eval_every is not None and self.split.valid_fraction == 0:
            raise ValueError("train.eval_every needs a validation split (train.split.valid_fraction > 0)")
        if self.model.wide and self.optembed.enabled:
            raise ValueError(
                "train.model.wide with train.optembed.enabled is not supported: OptEmbed prunes D-wide rows"
            )
        if self.optembed.enabled and self.layout.kind == "unified":
            raise ValueError(
                "optembed needs per-feature tables (train.layout.kind vocab or hashed): the unified "
                "table shares each row between features, so per-field thresholds and widths do not "
                "define a smaller table"
            )
        if self.graph_features:
            named = ", ".join(sorted(self.graph_features))
            if self.optembed.enabled:
                raise ValueError(
                    f"train.graph_features ({named}) with train.optembed.enabled is not supported yet: "
                    "OptEmbed prunes and searches the trainable tables only"
                )
            if self.layout.kind == "unified":
                raise ValueError(
                    f"train.graph_features ({named}) need per-feature tables (train.layout.kind vocab or hashed): "
                    "a graph table is indexed by one feature's vocabulary ids, the unified table by shared hashes"
                )
            init = sorted(f for f, g in self.graph_features.items() if g.mode == "init")
            if init and self.layout.kind != "vocab":
                raise ValueError(
                    f"train.graph_features.{init[0]}: mode 'init' needs train.layout.kind 'vocab': the "
                    f"'{self.layout.kind}' table's rows are hashes of values, not vocabulary ids, so no row "
                    "is one value's (use mode 'frozen', whose extra table is indexed by vocabulary id)"
                )
        return self
