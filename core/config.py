"""Typed pipeline configuration: one frozen pydantic model per section, defaults in code.

:class:`PipelineConfig` is the whole document; ``core.cli.load_config`` builds it from YAML layers
and flags. Pure pydantic: importing this module imports neither pyspark nor torch.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from core.errors import ConfigError  # noqa: F401  (re-exported: config errors live with the config)
from core.train_config import TrainConfig, TrainInputs
from core.tune_config import TuneConfig

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
    # Spark's own default is ./spark-warehouse: a session that touches the catalog creates it wherever it runs.
    warehouse_dir: str = "data/spark-warehouse"
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
        default=0.002, ge=0.0, description="champion moves if challenger test AUC >= champion's - this (same rows)"
    )


class TableConfig(StrictModel):
    """One catalog entry: where a table lives (relative paths are under ``tables.root``) and its format."""

    path: str = Field(min_length=1)
    format: TableFormat = "delta"


# Tables the pipeline writes: always Delta (atomic commits, versions, lineage).
# (edges too when build_graph makes them; a user may bring an edge table of their own in any format)
WRITTEN_TABLES = ("oracle", "vocab", "encoded", "embeddings", "scores", "candidates")


class TablesConfig(StrictModel):
    """The table catalog (as Kedro's ``catalog.yml``): every table a stage reads or writes, named once.

    Stages refer to tables by these names; pointing the pipeline at a user's click log is one
    ``clicks`` entry (plus the ``schema`` block).
    """

    root: str = Field(default="data", description="folder that relative table paths are under")
    clicks: TableConfig = TableConfig(path="raw/clicks")
    oracle: TableConfig | None = Field(default=None, description="(event_id, label, p_true): synthetic data only")
    vocab: TableConfig = TableConfig(path="vocab")
    encoded: TableConfig = TableConfig(path="encoded")
    edges: TableConfig = TableConfig(path="graph/edges")
    embeddings: TableConfig = TableConfig(path="fastrp")
    candidates: TableConfig = TableConfig(path="candidates")
    score_rows: TableConfig | None = Field(default=None, description="raw rows jobs/score.py scores (default: clicks)")
    node_properties: TableConfig | None = Field(
        default=None, description="(node id, property columns): FastRP's fastrp.node_properties, read only"
    )
    scores: TableConfig = TableConfig(path="scores")

    @model_validator(mode="after")
    def _written_tables_are_delta(self) -> "TablesConfig":
        for name in WRITTEN_TABLES:
            entry = getattr(self, name)
            if entry is not None and entry.format != "delta":
                raise ValueError(f"tables.{name}.format must be delta (the pipeline writes it), got {entry.format!r}")
        return self

    def entry(self, name: str) -> TableConfig:
        """The catalog entry ``name`` with its path resolved under ``root`` (URIs and absolute paths kept)."""
        entry = getattr(self, name, None) if name in type(self).model_fields and name != "root" else None
        if name == "score_rows" and entry is None:
            entry = self.clicks
        if entry is None:
            raise ConfigError(f"tables.{name} is not set: add a tables.{name} entry (path, format)")
        path = entry.path
        if not ("://" in path or path.startswith("/")):
            path = f"{self.root.rstrip('/')}/{path}" if self.root else path
        return TableConfig(path=path, format=entry.format)

    def path(self, name: str) -> str:
        """The resolved path of table ``name``."""
        return self.entry(name).path


class ClickSchema(StrictModel):
    """The click log's columns, named once: vocabularies, encoding, gates, training and scoring read them here."""

    id: str = Field(default="event_id", min_length=1, description="unique event id")
    label: str = Field(default="label", min_length=1, description="0/1 click label")
    time: str | None = Field(default="ts", description="event time (windows, time splits); None: no time column")
    dense: list[str] = Field(default_factory=lambda: [f"I{i}" for i in range(1, 7)], description="numeric columns")
    categorical: list[str] = Field(
        default_factory=lambda: [f"C{i}" for i in range(1, 9)] + ["tags"],
        description="string/integer (or array) columns: vocabularies and sparse features",
    )

    @model_validator(mode="after")
    def _columns_are_distinct(self) -> "ClickSchema":
        named = [self.id, self.label, *([self.time] if self.time else []), *self.dense, *self.categorical]
        twice = sorted({c for c in named if named.count(c) > 1})
        if twice:
            raise ValueError(f"schema names column(s) {twice} more than once")
        return self


class SynthConfig(StrictModel):
    """Synthetic Criteo-shaped click log and its oracle (tables clicks, oracle); build_graph makes its edges."""

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


class VocabConfig(StrictModel):
    """Thresholds that admit values into the vocabularies of ``schema.categorical`` (table vocab)."""

    min_count: PositiveInt = 1
    max_size: PositiveInt | None = None
    max_size_per_feature: dict[str, PositiveInt] = Field(default_factory=dict)
    start: dt.datetime | None = Field(default=None, description="window start on schema.time (inclusive)")
    end: dt.datetime | None = Field(default=None, description="window end on schema.time (exclusive)")

    @model_validator(mode="after")
    def _window_is_ordered(self) -> "VocabConfig":
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"vocab.start ({self.start}) must be before vocab.end ({self.end})")
        return self


class CooccurrenceConfig(StrictModel):
    """Optional item-item edges: two items linked once per user who interacted with both (capped per user)."""

    enabled: bool = False
    max_items_per_user: PositiveInt = Field(
        default=50, description="a user's most recent distinct items that pair (heavy users do not dominate)"
    )
    within_hours: PositiveFloat | None = Field(
        default=None, description="pair two items only if the user's last events on them are this close"
    )
    weight: PositiveFloat = Field(default=1.0, description="edge weight per user sharing the pair")


class GraphConfig(StrictModel):
    """The interaction graph of the click log (clicks -> edges, jobs/build_graph.py).

    Nodes are typed by role: the value ``42`` of ``user`` is node ``user:42``, of ``item`` node
    ``item:42``, so they never merge. An edge's weight sums its events' weights: 1 each (``count``),
    1 per click (``positives``), ``positive_weight``/``negative_weight`` by label (``label``), each
    times ``0.5 ** (age / half_life_days)`` when set (age from the latest event in the window).
    Edges with weight <= 0 or below ``min_weight`` are dropped.
    """

    user: str = Field(default="C1", min_length=1, description="the click-log column of the user (edge source)")
    item: str = Field(default="C2", min_length=1, description="the click-log column of the item (edge target)")
    weight: Literal["count", "positives", "label"] = "count"
    positive_weight: float = Field(default=1.0, description="label policy: weight of a click")
    negative_weight: float = Field(default=0.0, description="label policy: weight of a non-click (may be < 0)")
    half_life_days: PositiveFloat | None = Field(default=None, description="recency decay; None: no decay")
    start: dt.datetime | None = Field(default=None, description="window start on schema.time (inclusive)")
    end: dt.datetime | None = Field(default=None, description="window end on schema.time (exclusive)")
    min_weight: float = Field(default=0.0, ge=0.0, description="drop edges lighter than this")
    cooccurrence: CooccurrenceConfig = CooccurrenceConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "GraphConfig":
        if self.user == self.item:
            raise ValueError(f"graph.user and graph.item name the same column {self.user!r}")
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"graph.start ({self.start}) must be before graph.end ({self.end})")
        return self

    def prefix(self, column: str) -> str | None:
        """The node-id prefix of ``column``'s values (``"user:"``/``"item:"``), None if it is no node column."""
        return {self.user: "user:", self.item: "item:"}.get(column)


class RetrieveConfig(StrictModel):
    """Candidate retrieval over the FastRP vectors (embeddings -> candidates, jobs/retrieve.py)."""

    k: PositiveInt = Field(default=100, description="candidates per query")
    metric: Literal["cosine", "dot"] = "cosine"
    queries: list[Literal["user", "item"]] = Field(
        default_factory=lambda: ["user", "item"], min_length=1, description="user -> items, item -> similar items"
    )
    exclude_seen: bool = Field(default=True, description="a user's candidates leave out the items of their edges")
    same_type: bool = Field(default=True, description="candidates are items only (false: any node but the query)")
    block_size: PositiveInt = Field(default=4096, description="queries (and candidates) scored per block")


class EncodeConfig(StrictModel):
    """Rewrite the click log with integer ids from the vocabulary table (clicks + vocab -> encoded)."""

    handle_invalid: HandleInvalid = "keep"
    broadcast_max_rows: PositiveInt = 1_000_000


class NodePropertiesConfig(StrictModel):
    """Node properties in FastRP's initial vectors (GDS ``featureProperties``); the table is ``tables.node_properties``."""

    id_col: str = Field(default="node", min_length=1, description="the node id column (the edges' src/dst ids)")
    columns: list[str] = Field(
        min_length=1, description="numeric columns (one input dimension each) or string ones (one-hot by value)"
    )

    @model_validator(mode="after")
    def _distinct_columns(self) -> "NodePropertiesConfig":
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"fastrp.node_properties.columns has duplicates: {self.columns}")
        if self.id_col in self.columns:
            raise ValueError(f"fastrp.node_properties.columns names the id column {self.id_col!r}")
        return self


class FastRPConfig(StrictModel):
    """FastRP (Chen et al. 2019) of the edges table into the embeddings table; maths in embeddings/fastrp.py."""

    src_col: str = "src"
    dst_col: str = "dst"
    weight_col: str | None = Field(
        default="weight", description="None: every edge weighs 1 (build_graph writes weight)"
    )
    directed: bool = False
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
    force: bool = Field(default=False, description="run even when the estimate exceeds the machine's limits")
    num_partitions: PositiveInt | None = Field(default=None, description="Spark partitions of the block stages")
    block_size: PositiveInt | None = Field(
        default=None, description="nodes per block of the Spark engine; default: blocks of <= 256 MiB of float32 X"
    )
    checkpoint: Literal["reliable", "local", "none"] = Field(
        default="reliable",
        description="per-iteration lineage cut: reliable (files, survives lost executors), local, or none "
        "(no write; a lost cached block recomputes from the first iteration)",
    )
    state_store: Literal["auto", "cache", "files"] = Field(
        default="auto",
        description="where each iteration's block state lives: cache (Spark's block cache; any cluster), files "
        "(one .npy per block in the run's folder, read memory-mapped; every executor must see that folder), "
        "auto (files on a local master with a local checkpoint_dir, else cache)",
    )
    allow_dim_change: bool = Field(
        default=False,
        description="replace a published embeddings table of another dim (its readers' vector width changes)",
    )
    node_properties: NodePropertiesConfig | None = Field(
        default=None, description="node properties mixed into the initial vectors (needs property_ratio > 0)"
    )
    property_ratio: float = Field(
        default=0.0, ge=0.0, le=1.0, description="GDS propertyRatio: int(dim * ratio) leading dims from properties"
    )

    @model_validator(mode="after")
    def _weights_match_iterations(self) -> "FastRPConfig":
        if self.iterations is not None and self.iterations != len(self.iteration_weights):
            raise ValueError(
                f"fastrp.iterations ({self.iterations}) must equal the number of "
                f"fastrp.iteration_weights ({len(self.iteration_weights)}: {self.iteration_weights})"
            )
        if not any(self.iteration_weights) and self.self_influence == 0:
            raise ValueError(
                "fastrp.iteration_weights are all 0 and fastrp.self_influence is 0: every embedding would be 0"
            )
        if any(w != w for w in self.iteration_weights):
            raise ValueError("fastrp.iteration_weights must not contain NaN")
        if self.property_ratio > 0 and self.node_properties is None:
            raise ValueError(
                f"fastrp.property_ratio is {self.property_ratio} but fastrp.node_properties is not set: "
                "there are no properties to fill its dimensions"
            )
        if self.node_properties is not None:
            if self.property_ratio == 0:
                raise ValueError(
                    "fastrp.node_properties is set but fastrp.property_ratio is 0: no dimension would hold them"
                )
            if int(self.dim * self.property_ratio) == 0:
                raise ValueError(
                    f"fastrp.property_ratio {self.property_ratio} x fastrp.dim {self.dim} leaves 0 property "
                    "dimensions (int(dim * ratio)); raise the ratio or the dim"
                )
        return self


class QualityConfig(StrictModel):
    """Great Expectations gates (embeddings/quality.py): where evidence goes and each suite's bounds."""

    enabled: bool = Field(default=True, description="run the gates (false: skip them, with a warning)")
    output: str = Field(default="data/quality", description="results + Data Docs, one folder per suite")
    data_docs: bool = True
    persist: bool = Field(default=True, description="cache a Spark frame while its metrics are computed")
    examples: PositiveInt = Field(default=5, description="unexpected values quoted per failed expectation")
    # clicks: the raw click log (its columns: the schema section)
    min_rows: NonNegativeInt = 1
    max_rows: PositiveInt | None = None
    dense_min: float | None = 0.0
    dense_max: float | None = Field(default=None, description="None: any finite value")
    unique_ids: bool = True
    # vocabulary and vocabulary_ids
    vocab_min_id: NonNegativeInt = Field(default=2, description="ids 0 (missing) and 1 (OOV) are reserved")
    vocab_allow_dropped: bool = False
    # edges: columns of the fastrp section
    # embeddings
    node_col: str = "node"
    embedding_col: str = "embedding"
    min_norm: float = Field(default=0.0, ge=0.0)
    max_norm: PositiveFloat | None = Field(default=None, description="None: any finite norm")
    # scores
    probability_col: str = "probability"


class ScoreConfig(StrictModel):
    """Batch scoring with a registered model (jobs/score.py): tables score_rows (default clicks) -> scores."""

    model: str | None = Field(
        default=None, description="model URI (default models:/<registered_model>@<champion_alias>)"
    )


class PipelineConfig(StrictModel):
    """The whole pipeline's configuration; each job reads the sections it needs.

    ``tables`` and ``schema`` (attribute ``click_schema``) are the only places a path or a click-log
    column is written; the sections hold each stage's own settings.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    tables: TablesConfig = TablesConfig()
    click_schema: ClickSchema = Field(default=ClickSchema(), alias="schema")
    spark: SparkConfig = SparkConfig()
    mlflow: MlflowConfig = MlflowConfig()
    synth: SynthConfig = SynthConfig()
    vocab: VocabConfig = VocabConfig()
    encode: EncodeConfig = EncodeConfig()
    graph: GraphConfig = GraphConfig()
    fastrp: FastRPConfig = FastRPConfig()
    retrieve: RetrieveConfig = RetrieveConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()
    score: ScoreConfig = ScoreConfig()
    quality: QualityConfig = QualityConfig()

    @model_validator(mode="after")
    def _sections_agree_with_the_schema(self) -> "PipelineConfig":
        schema = self.click_schema
        unknown = set(self.vocab.max_size_per_feature) - set(schema.categorical)
        if unknown:
            raise ValueError(f"vocab.max_size_per_feature names features not in schema.categorical: {sorted(unknown)}")
        if (self.vocab.start or self.vocab.end) and not schema.time:
            raise ValueError("vocab.start/vocab.end need schema.time (the event time column)")
        if (self.graph.start or self.graph.end or self.graph.half_life_days) and not schema.time:
            raise ValueError("graph.start/graph.end/graph.half_life_days need schema.time (the event time column)")
        if self.train.split.kind == "time" and not schema.time:
            raise ValueError("train.split.kind 'time' needs schema.time (the event time column)")
        if self.fastrp.node_properties is not None and self.tables.node_properties is None:
            raise ValueError("fastrp.node_properties is set but tables.node_properties (its table) is not")
        return self

    def graph_prefixes(self) -> dict[str, str]:
        """Feature -> node-id prefix of each ``train.graph_features`` entry (checked when training, not at load:
        a job that does not train, e.g. ``encode --features a,b``, is not refused for a training setting).

        Raises:
            ConfigError: a graph feature that is not in ``schema.categorical`` (it has no vocabulary), or
                that is no node column of the graph and sets no ``prefix``.
        """
        out = {}
        for feature, graph_feature in self.train.graph_features.items():
            if feature not in self.click_schema.categorical:
                raise ConfigError(
                    f"train.graph_features.{feature}: {feature!r} has no vocabulary (not in schema.categorical)"
                )
            prefix = graph_feature.prefix if graph_feature.prefix is not None else self.graph.prefix(feature)
            if prefix is None:
                raise ConfigError(
                    f"train.graph_features.{feature}: {feature!r} is neither graph.user ({self.graph.user}) nor "
                    f"graph.item ({self.graph.item}); set train.graph_features.{feature}.prefix (its node-id prefix)"
                )
            out[feature] = prefix
        return out

    def train_inputs(self) -> TrainInputs:
        """What the trainer reads, from the catalog and the schema (ConfigError: see :meth:`graph_prefixes`)."""
        s = self.click_schema
        return TrainInputs(
            encoded=self.tables.path("encoded"),
            vocab=self.tables.path("vocab"),
            oracle=self.tables.path("oracle") if self.tables.oracle else None,
            label_col=s.label,
            id_col=s.id,
            time_col=s.time,
            dense=list(s.dense),
            sparse=list(s.categorical),
            embeddings=self.tables.path("embeddings") if self.train.graph_features else None,
            graph_prefixes=self.graph_prefixes(),
        )
