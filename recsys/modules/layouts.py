"""Embedding layouts: which tables exist, and how a feature's ids/hashes become rows of them.

Three layouts (``F`` features, ``D`` = ``embedding_dim``):

* ``vocab``: one table per feature with ``num_embeddings`` = its vocabulary size; the row is the
  vocabulary id (0 missing, 1 OOV: every unseen value shares row 1).
* ``hashed``: one table per feature; the row is ``splitmix64(raw_hash, salt_f) mod rows_f``, with
  ``sum rows_f ~ total_rows`` split in proportion to the vocabulary sizes.
* ``unified`` (Coleman et al., NeurIPS 2023, "feature multiplexing"): one shared table of
  ``total_rows`` rows; feature ``f`` makes ``k_f`` lookups (chunks) with distinct salts and its
  vector is their concatenation (width ``k_f * D``). Unseen values get their own (collided) rows.

Graph features (``train.graph_features``, FastRP vectors, :func:`with_graph_features`) add to a
per-feature layout: ``frozen`` adds a table ``graph__<f>`` (``V_f`` x ``d``, FastRP rows, never
trained) looked up by ``f``'s vocabulary ids under its own KJT key ``graph__<f>``, whatever the
layout (the encoded table always has the ids); ``init`` adds nothing but a record that ``f``'s own
table starts from its FastRP rows, which needs a table indexed by vocabulary id (``vocab``).

A wide (first-order) term (``train.model.wide``, :func:`with_wide`) adds, for each table the
features' keys use, a narrow twin ``wide__<table>`` looked up by the same rows under the keys
``wide__<key>``: one learned weight per value (the sum of its ``WIDE_DIM`` columns) added to the
logit, sharded like the rest.

In the hashed layouts a missing value (null raw hash) hashes as raw value 0, so it has its own
(collided) row like any other value. The layout is a frozen value that travels with an exported
model, so scoring maps ids exactly as training did. One function, :meth:`EmbeddingLayout.table_configs`,
makes TorchRec's ``EmbeddingBagConfig``s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from core.errors import ConfigError
from recsys.data.hashing import feature_salt, hash_to_rows

CHUNK_SEP = "@"

# Optimizer state bytes per table: rowwise adagrad keeps one float per row, adagrad one per weight.
_STATE_PER_ROW = {"rowwise_adagrad": 1, "adagrad": 0, "sgd": 0, "adam": 0}
_STATE_PER_WEIGHT = {"rowwise_adagrad": 0, "adagrad": 1, "sgd": 0, "adam": 2}


@dataclass(frozen=True)
class TableSpec:
    """One embedding table: ``num_embeddings`` x ``embedding_dim`` fp32, looked up by ``feature_names`` (KJT keys)."""

    name: str
    num_embeddings: int
    embedding_dim: int
    feature_names: tuple[str, ...]


@dataclass(frozen=True)
class KeySource:
    """How one KJT key gets its rows: from a feature's vocabulary ids, or from its hashes with a salt."""

    feature: str
    table: str
    num_rows: int
    salt: int | None  # None: use the vocabulary id as the row


GRAPH_TABLE_PREFIX = "graph__"
WIDE_PREFIX = "wide__"
# FBGEMM's kernels need table widths divisible by 4 ("local_cols=1 not divisible by 4" on a 1-wide
# table): a wide table is 4 wide and its term is the sum of the 4 columns, i.e. one weight per value.
WIDE_DIM = 4


@dataclass(frozen=True)
class GraphSpec:
    """One graph feature of mode ``frozen`` (its FastRP table, named ``key`` like its KJT key) or ``init`` (no table)."""

    feature: str
    mode: str
    prefix: str
    embedding_dim: int  # d: the FastRP vectors' width
    key: str | None = None  # frozen: the KJT key (= table name) of the graph table


@dataclass(frozen=True)
class EmbeddingLayout:
    """Tables, KJT keys (in order) and the id -> row map of every key; ``groups`` lists each feature's keys.

    ``graph`` lists the graph features; a frozen one's key is among ``keys`` (after the features'
    keys) but in no group: its vector reaches the interaction through a projection to ``embedding_dim``.
    ``wide`` lists the first-order keys (last among ``keys``, in no group, outside the interaction).
    """

    kind: str
    embedding_dim: int
    tables: tuple[TableSpec, ...]
    keys: tuple[str, ...]
    sources: tuple[KeySource, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    graph: tuple[GraphSpec, ...] = ()
    wide: tuple[str, ...] = ()

    @property
    def interaction_keys(self) -> tuple[str, ...]:
        """The keys whose vectors enter the interaction: every key but the wide ones."""
        wide = set(self.wide)
        return tuple(k for k in self.keys if k not in wide)

    @property
    def graph_keys(self) -> dict[str, int]:
        """KJT key -> FastRP width ``d`` of each frozen graph table (key = table name)."""
        return {g.key: g.embedding_dim for g in self.graph if g.key is not None}

    @property
    def interaction_dims(self) -> list[int]:
        """Width of each key's vector where it enters the interaction: graph keys are projected to ``embedding_dim``."""
        graph = self.graph_keys
        return [self.embedding_dim if k in graph else d for k, d in zip(self.interaction_keys, self.key_dims)]

    @property
    def uses_hash(self) -> bool:
        return any(s.salt is not None for s in self.sources)

    @property
    def key_dims(self) -> list[int]:
        """Width of each interaction key's vector (its table's ``embedding_dim``), in key order."""
        dims = {t.name: t.embedding_dim for t in self.tables}
        wide = set(self.wide)
        return [dims[s.table] for k, s in zip(self.keys, self.sources) if k not in wide]

    @property
    def feature_widths(self) -> dict[str, int]:
        """Width of each feature's (concatenated) vector."""
        dims = dict(zip(self.interaction_keys, self.key_dims))
        return {f: sum(dims[k] for k in keys) for f, keys in self.groups}

    def rows(self, key_index: int, ids: np.ndarray, hashes: np.ndarray | None) -> np.ndarray:
        """Table rows of one key's values.

        Args:
            ids: (nnz,) int64 vocabulary ids. hashes: (nnz,) int64 raw hashes (hashed layouts).
        Returns:
            (nnz,) int64 rows in [0, num_rows).
        """
        src = self.sources[key_index]
        if src.salt is None:
            return ids
        if hashes is None:
            raise ValueError(f"layout '{self.kind}' needs the '{src.feature}_hash' column")
        return hash_to_rows(hashes, src.salt, src.num_rows)

    def embedding_params(self) -> int:
        return sum(t.num_embeddings * t.embedding_dim for t in self.tables)

    def embedding_bytes(self, optimizer: str = "rowwise_adagrad") -> dict[str, int]:
        """fp32 bytes of the weights and of the embedding optimizer's state."""
        weights = 4 * self.embedding_params()
        frozen = self.graph_keys  # no optimizer: no state
        state = 4 * sum(
            t.num_embeddings * _STATE_PER_ROW.get(optimizer, 0)
            + t.num_embeddings * t.embedding_dim * _STATE_PER_WEIGHT.get(optimizer, 0)
            for t in self.tables
            if t.name not in frozen
        )
        return {"weights": weights, "optimizer_state": state, "total": weights + state}

    def table_configs(self, pooling: str = "SUM"):
        """TorchRec ``EmbeddingBagConfig``s of the tables (the one place that makes them)."""
        from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType

        return [
            EmbeddingBagConfig(
                name=t.name,
                num_embeddings=t.num_embeddings,
                embedding_dim=t.embedding_dim,
                feature_names=list(t.feature_names),
                pooling=PoolingType[pooling],
            )
            for t in self.tables
        ]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EmbeddingLayout":
        return cls(
            kind=d["kind"],
            embedding_dim=d["embedding_dim"],
            tables=tuple(
                TableSpec(t["name"], t["num_embeddings"], t["embedding_dim"], tuple(t["feature_names"]))
                for t in d["tables"]
            ),
            keys=tuple(d["keys"]),
            sources=tuple(KeySource(**s) for s in d["sources"]),
            groups=tuple((f, tuple(k)) for f, k in d["groups"]),
            graph=tuple(GraphSpec(**g) for g in d.get("graph", ())),
            wide=tuple(d.get("wide", ())),
        )


def split_rows(total_rows: int, sizes: dict[str, int], min_rows: int) -> dict[str, int]:
    """Share ``total_rows`` between features in proportion to ``sizes`` (at least ``min_rows`` each)."""
    denom = sum(sizes.values())
    return {f: max(min_rows, int(total_rows * s // denom)) for f, s in sizes.items()}


def make_layout(
    cfg, features: list[str], vocab_sizes: dict[str, int], embedding_dim: int, seed: int
) -> EmbeddingLayout:
    """Build the layout of ``cfg`` (a ``train.layout`` config) for ``features`` in order.

    Args:
        vocab_sizes: feature -> vocabulary table size (max id + 1; 2 when the vocabulary is empty).
    """
    d = embedding_dim
    if cfg.kind == "vocab":
        tables = tuple(TableSpec(f, vocab_sizes[f], d, (f,)) for f in features)
        sources = tuple(KeySource(f, f, vocab_sizes[f], None) for f in features)
        return EmbeddingLayout("vocab", d, tables, tuple(features), sources, tuple((f, (f,)) for f in features))
    if cfg.kind == "hashed":
        rows = split_rows(cfg.total_rows, {f: vocab_sizes[f] for f in features}, cfg.min_rows)
        tables = tuple(TableSpec(f, rows[f], d, (f,)) for f in features)
        sources = tuple(KeySource(f, f, rows[f], feature_salt(f, 0, seed)) for f in features)
        return EmbeddingLayout("hashed", d, tables, tuple(features), sources, tuple((f, (f,)) for f in features))
    if cfg.kind == "unified":
        unknown = set(cfg.chunks) - set(features)
        if unknown:
            raise ConfigError(f"train.layout.chunks names features that are not sparse features: {sorted(unknown)}")
        keys, sources, groups = [], [], []
        for f in features:
            k = cfg.chunks.get(f, cfg.num_chunks)
            fkeys = tuple(f"{f}{CHUNK_SEP}{j}" for j in range(k))
            keys += fkeys
            sources += [KeySource(f, "unified", cfg.total_rows, feature_salt(f, j, seed)) for j in range(k)]
            groups.append((f, fkeys))
        tables = (TableSpec("unified", cfg.total_rows, d, tuple(keys)),)
        return EmbeddingLayout("unified", d, tables, tuple(keys), tuple(sources), tuple(groups))
    raise ValueError(f"unknown layout kind {cfg.kind!r}")


def with_graph_features(
    layout: EmbeddingLayout, graph: dict[str, tuple[str, str]], graph_dim: int, vocab_sizes: dict[str, int]
) -> EmbeddingLayout:
    """``layout`` plus the graph features ``graph`` (feature -> (mode, prefix)) of FastRP width ``graph_dim``.

    A ``frozen`` feature ``f`` gets the table ``graph__f`` (``vocab_sizes[f]`` x ``graph_dim``) and
    the KJT key of the same name, whose rows are ``f``'s vocabulary ids; ``init`` is only recorded.

    Raises:
        ConfigError: a graph feature that is not one of the layout's features, a unified layout (its
            table is shared by all features), or ``init`` on a table not indexed by vocabulary id.
    """
    if not graph:
        return layout
    if layout.kind == "unified":
        raise ConfigError("train.graph_features need per-feature tables: not the 'unified' layout")
    features = [f for f, _ in layout.groups]
    tables, keys, sources, specs = list(layout.tables), list(layout.keys), list(layout.sources), []
    taken = {t.name for t in layout.tables} | set(layout.keys)
    for f, (mode, prefix) in graph.items():
        if f not in features:
            raise ConfigError(f"train.graph_features.{f}: {f!r} is not a sparse feature ({features})")
        if mode == "init":
            own = [s for s in layout.sources if s.feature == f]
            if any(s.salt is not None for s in own):
                raise ConfigError(
                    f"train.graph_features.{f}: mode 'init' needs a table indexed by vocabulary id, "
                    f"not the '{layout.kind}' layout's hashed rows"
                )
            specs.append(GraphSpec(f, mode, prefix, graph_dim))
            continue
        name = GRAPH_TABLE_PREFIX + f
        if name in taken:
            raise ConfigError(f"train.graph_features.{f}: the graph table name {name!r} is already a table or key")
        tables.append(TableSpec(name, vocab_sizes[f], graph_dim, (name,)))
        keys.append(name)
        sources.append(KeySource(f, name, vocab_sizes[f], None))
        specs.append(GraphSpec(f, mode, prefix, graph_dim, key=name))
    return replace(layout, tables=tuple(tables), keys=tuple(keys), sources=tuple(sources), graph=tuple(specs))


def with_wide(layout: EmbeddingLayout) -> EmbeddingLayout:
    """``layout`` plus a first-order term: a narrow twin of every table the features' keys use.

    Key ``k`` of feature ``f`` (table ``t``) gets the key ``wide__k``, looked up by the same rows in the
    table ``wide__t`` (``t``'s rows x ``WIDE_DIM``): per-feature tables give one weight per value, the
    unified table one shared wide table. Graph tables get none (their rows are not trained).
    """
    index = {k: i for i, k in enumerate(layout.keys)}
    rows = {t.name: t.num_embeddings for t in layout.tables}
    taken = {t.name for t in layout.tables} | set(layout.keys)
    keys, sources, lookups = list(layout.keys), list(layout.sources), {}
    for _, fkeys in layout.groups:
        for k in fkeys:
            src = layout.sources[index[k]]
            key, table = WIDE_PREFIX + k, WIDE_PREFIX + src.table
            if key in taken or table in taken:
                raise ConfigError(f"train.model.wide: the wide key/table name {key!r}/{table!r} is already taken")
            keys.append(key)
            sources.append(replace(src, table=table))
            lookups.setdefault(table, []).append(key)
    tables = tuple(TableSpec(t, rows[t[len(WIDE_PREFIX) :]], WIDE_DIM, tuple(ks)) for t, ks in lookups.items())
    return replace(
        layout,
        tables=layout.tables + tables,
        keys=tuple(keys),
        sources=tuple(sources),
        wide=tuple(keys[len(layout.keys) :]),
    )
