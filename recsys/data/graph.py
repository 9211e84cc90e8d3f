"""FastRP vectors as CTR features: the FastRP table -> one matrix per feature, its rows indexed by vocabulary id.

The FastRP table (Delta, ``node string, embedding array<float|double>``) holds one vector per node
of the interaction graph; a node id is ``<prefix><raw value>`` (``"user:u42"`` for the value
``"u42"`` of the user column with prefix ``"user:"``). Feature ``f``'s graph matrix has one row per
vocabulary id: row ``i`` is the vector of node ``prefix + value(i)``, and a zero row for ids 0/1
(missing/OOV) and for values with no node. Values match as strings, like the vocabulary stores them.

Symbols: ``N`` nodes of the FastRP table, ``d`` its vector width, ``V`` a feature's table size
(max vocabulary id + 1), ``D`` = ``embedding_dim``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.delta import read_delta, table_version
from core.errors import ConfigError, InputError
from recsys.data.hashing import feature_salt
from recsys.results import GraphFeatureRecord

log = logging.getLogger(__name__)

WHAT = "FastRP table (tables.embeddings)"


@dataclass(frozen=True)
class FastRPVectors:
    """The FastRP table at one Delta version: node ids (N,) as an index, vectors (N, d) float32."""

    path: str
    version: int
    nodes: pd.Index
    vectors: np.ndarray

    @property
    def embedding_dim(self) -> int:
        return int(self.vectors.shape[1])


@dataclass(frozen=True)
class GraphSummary:
    """What the graph-feature checks found: the FastRP table (path, Delta version, width) and each feature's record."""

    path: str
    version: int
    embedding_dim: int
    features: dict[str, GraphFeatureRecord] = field(default_factory=dict)


def read_fastrp(path: str, version: int | None = None) -> FastRPVectors:
    """The FastRP table at ``version`` (default: the latest), node ids as strings.

    Raises:
        InputError: naming the path, when the table is missing, lacks ``node``/``embedding``, has no
            rows, null, empty or non-finite vectors, vectors of different widths, or a node twice.
    """
    version = table_version(path, WHAT) if version is None else version
    table = read_delta(path, version, ["node", "embedding"], what=WHAT)
    emb_type = table.schema.field("embedding").type
    if not (pa.types.is_list(emb_type) or pa.types.is_large_list(emb_type)) or not (
        pa.types.is_floating(emb_type.value_type)
    ):
        raise InputError(f"{WHAT} {path!r}: column 'embedding' must be array<float> or array<double>, got {emb_type}")
    if table.num_rows == 0:
        raise InputError(f"{WHAT} {path!r} (version {version}) has no rows")
    nodes = pc.cast(table.column("node"), pa.string()).to_numpy(zero_copy_only=False)
    emb = table.column("embedding").combine_chunks()
    lengths = pc.list_value_length(emb).fill_null(0).to_numpy(zero_copy_only=False)
    if lengths.min() == 0 or lengths.min() != lengths.max():
        widths = sorted(set(lengths.tolist()))
        odd = int(np.flatnonzero(lengths != np.bincount(lengths).argmax())[0])
        raise InputError(
            f"{WHAT} {path!r}: rows of different dims {widths[:5]} (node {nodes[odd]!r} has {lengths[odd]}); "
            "every node needs one vector of the same width"
        )
    vectors = pc.list_flatten(emb).to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(nodes), -1)
    bad = ~np.isfinite(vectors).all(axis=1)  # NaN/inf (null elements arrive as NaN) would poison the tables
    if bad.any():
        raise InputError(
            f"{WHAT} {path!r}: {int(bad.sum())} vector(s) hold NaN, inf or null values (node {nodes[bad][0]!r})"
        )
    index = pd.Index(nodes)
    if not index.is_unique:
        raise InputError(f"{WHAT} {path!r}: node {index[index.duplicated()][0]!r} has more than one row")
    return FastRPVectors(path, version, index, vectors)


def feature_vocabulary(vocab: pa.Table, feature: str) -> tuple[np.ndarray, np.ndarray]:
    """((M,) values as strings, (M,) int64 ids) of one feature's rows of the vocabulary table (``feature, value, id``)."""
    part = vocab.filter(pc.equal(vocab.column("feature"), feature))
    values = pc.cast(part.column("value"), pa.string()).to_numpy(zero_copy_only=False).astype(str)
    return values, part.column("id").to_numpy(zero_copy_only=False).astype(np.int64)


def graph_rows(
    values: np.ndarray, ids: np.ndarray, num_rows: int, prefix: str, fastrp: FastRPVectors
) -> tuple[np.ndarray, np.ndarray]:
    """A feature's graph matrix: row ``ids[m]`` is the vector of node ``prefix + values[m]``, zero elsewhere.

    Args:
        values: (M,) the feature's vocabulary values (strings). ids: (M,) their ids (>= 2, < ``num_rows``).
    Returns:
        ((V, d) float32 matrix, V = ``num_rows``; (M,) bool: which values have a node).
    """
    pos = fastrp.nodes.get_indexer(np.char.add(prefix, values.astype(str)))  # (M,) -1: no node
    found = pos >= 0
    matrix = np.zeros((num_rows, fastrp.embedding_dim), np.float32)
    matrix[ids[found]] = fastrp.vectors[pos[found]]
    return matrix, found


def projection_matrix(in_dim: int, out_dim: int, seed: int) -> np.ndarray:
    """A fixed Gaussian random projection (d, D) with entries N(0, 1/D) (Johnson-Lindenstrauss).

    ``x @ P`` keeps squared norms and inner products in expectation (``E[P P^T] = I``), so the
    projected rows keep the FastRP geometry up to distortion ``O(1/sqrt(D))`` (Dasgupta & Gupta 2003).
    """
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((in_dim, out_dim)) / np.sqrt(out_dim)).astype(np.float32)


def init_rows(graph: np.ndarray, found_ids: np.ndarray, out_dim: int, seed: int, target_rms: float) -> np.ndarray:
    """Initial rows of a trainable table from its graph matrix: projected to ``D``, one scale for all rows.

    ``rows = s * graph[found_ids] @ P`` with ``P`` = :func:`projection_matrix` and ``s`` the one
    factor that makes the rows' root-mean-square entry ``target_rms`` (the default init's). One
    global factor keeps the rows' relative norms and angles; matching the default init's scale keeps
    the initial dot products and the embedding optimizer's step sizes where training expects them
    (FastRP rows have norm ~1, far above the default uniform(+-sqrt(1/V)) rows of a large table).

    Args:
        graph: (V, d) the feature's graph matrix. found_ids: (M',) ids whose value has a node.
    Returns:
        (M', D) float32 rows for ``found_ids`` (zero rows stay zero).
    """
    rows = graph[found_ids] @ projection_matrix(graph.shape[1], out_dim, seed)  # (M', D)
    rms = float(np.sqrt(np.mean(np.square(rows, dtype=np.float64)))) if rows.size else 0.0
    return (rows * (target_rms / rms if rms > 0 else 0.0)).astype(np.float32)


def init_seed(seed: int, feature: str) -> int:
    """The projection seed of feature ``feature``'s init rows: derived from ``train.seed`` and the feature name."""
    return feature_salt(f"graph_init:{feature}", 0, seed)


def resolve_prefixes(cfg, inputs) -> dict[str, str]:
    """Feature -> node-id prefix: ``TrainInputs.graph_prefixes`` (from the pipeline config), else the feature's own.

    Raises:
        ConfigError: a graph feature without a prefix, or graph features without a FastRP table.
    """
    if not inputs.embeddings:
        raise ConfigError(
            f"train.graph_features ({', '.join(sorted(cfg.graph_features))}) need the FastRP table: "
            "set tables.embeddings"
        )
    out = {}
    for f, g in cfg.graph_features.items():
        prefix = inputs.graph_prefixes.get(f, g.prefix)
        if prefix is None:
            raise ConfigError(f"train.graph_features.{f}: no node-id prefix; set train.graph_features.{f}.prefix")
        out[f] = prefix
    return out


def check_graph_features(cfg, inputs, sparse: list[str], vocab_version: int, sizes: dict[str, int]) -> GraphSummary:
    """Read the FastRP table and match every graph feature's vocabulary against its nodes (before any rank starts).

    Logs a warning for a feature with less than ``cfg.graph_min_coverage`` of its vocabulary values matched.

    Raises:
        ConfigError: a graph feature that is not a sparse feature, or with no prefix.
        InputError: the FastRP table is unreadable or malformed (:func:`read_fastrp`), or no value of a
            feature has a node (the message names the prefix looked for and a node id found).
    """
    prefixes = resolve_prefixes(cfg, inputs)
    unknown = sorted(set(cfg.graph_features) - set(sparse))
    if unknown:
        raise ConfigError(f"train.graph_features.{unknown[0]}: {unknown[0]!r} is not a sparse feature ({sparse})")
    fastrp = read_fastrp(inputs.embeddings)
    vocab = read_delta(inputs.vocab, vocab_version, ["feature", "value", "id"], what="vocab")
    records = {}
    for f, g in cfg.graph_features.items():
        values, ids = feature_vocabulary(vocab, f)
        found = fastrp.nodes.get_indexer(np.char.add(prefixes[f], values.astype(str))) >= 0  # (M,): no matrix here
        if len(values) == 0:
            raise InputError(f"train.graph_features.{f}: {f!r} has no vocabulary values in {inputs.vocab!r}")
        matched = int(found.sum())
        if matched == 0:
            raise InputError(
                f"train.graph_features.{f}: none of the {len(values)} vocabulary values of {f!r} has a node in the "
                f"{WHAT} {inputs.embeddings!r}: looked for prefix {prefixes[f]!r} (e.g. {prefixes[f] + values[0]!r}),"
                f" found node ids like {fastrp.nodes[0]!r} (a prefix or value-type mismatch?)"
            )
        coverage = matched / len(values)
        if coverage < cfg.graph_min_coverage:
            log.warning(
                "train.graph_features.%s: only %.1f%% of %d vocabulary values have a node '%s<value>' in %s "
                "(train.graph_min_coverage %.2f); the others get a zero graph row",
                f,
                100 * coverage,
                len(values),
                prefixes[f],
                inputs.embeddings,
                cfg.graph_min_coverage,
            )
        records[f] = GraphFeatureRecord(
            mode=g.mode, prefix=prefixes[f], values=len(values), matched=matched, coverage=coverage
        )
    return GraphSummary(inputs.embeddings, fastrp.version, fastrp.embedding_dim, records)


def load_graph_matrices(graph: GraphSummary, vocab_path: str, vocab_version: int, sizes: dict[str, int]):
    """Feature -> ((V, d) graph matrix, (M',) ids with a node), from the versions the checks read."""
    fastrp = read_fastrp(graph.path, graph.version)
    vocab = read_delta(vocab_path, vocab_version, ["feature", "value", "id"], what="vocab")
    out = {}
    for f, rec in graph.features.items():
        values, ids = feature_vocabulary(vocab, f)
        matrix, found = graph_rows(values, ids, sizes[f], rec.prefix, fastrp)
        out[f] = (matrix, np.sort(ids[found]))
    return out
