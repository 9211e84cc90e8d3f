"""Everything checked before training starts: table shape, labels, id ranges, vocabulary, memory budget.

Each check raises :class:`InputError` (or ``ConfigError`` for the memory budget) naming the
column, feature or table, with the offending values quoted.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from core.encoding import HASH_SUFFIX
from core.errors import ConfigError, InputError
from core.train_config import TrainInputs
from recsys.data.features import FeatureSpec, resolve_feature_spec
from recsys.data.graph import GraphSummary, check_graph_features
from recsys.data.reader import DeltaSource, distinct_values, scan_min_max


def vocab_sizes(path: str, features: list[str]) -> dict[str, int]:
    """Table size of each feature from the vocabulary table: max(id) + 1, or 2 (ids 0/1 only) without rows.

    Raises:
        InputError: no vocabulary table, columns missing, or ids 0/1 (reserved) used by a value.
    """
    src = DeltaSource(path, what="vocab")
    for col in ("feature", "id"):
        if col not in src.schema.names:
            raise InputError(f"vocab table {path!r}: column '{col}' is missing (columns: {src.schema.names})")
    tables = list(src.iter_tables(["feature", "id"]))
    sizes = {f: 2 for f in features}
    if not tables:
        return sizes
    t = pa.concat_tables(tables)
    agg = t.group_by("feature").aggregate([("id", "max"), ("id", "min")])
    for f, hi, lo in zip(
        agg.column("feature").to_pylist(), agg.column("id_max").to_pylist(), agg.column("id_min").to_pylist()
    ):
        if f in sizes:
            if lo is not None and lo < 2:
                raise InputError(
                    f"vocab table {path!r}: feature '{f}' uses reserved id {lo} (ids 0 and 1 are "
                    "missing/OOV and have no rows)"
                )
            sizes[f] = max(2, int(hi) + 1)
    return sizes


@dataclass(frozen=True)
class InputSummary:
    """What the checks found: the feature spec, table sizes, row count, Delta versions read, and the inputs checked."""

    spec: FeatureSpec
    vocab_sizes: dict[str, int]
    num_rows: int
    input_version: int
    vocab_version: int
    inputs: TrainInputs
    graph: GraphSummary | None = None  # train.graph_features: the FastRP table read and each feature's coverage


def check_inputs(cfg, inputs: TrainInputs) -> InputSummary:
    """Run every data check of ``cfg`` (a ``TrainConfig``) on ``inputs`` before any rank trains.

    Raises:
        InputError: empty table, missing column, label not in {0, 1}, id out of range for its table,
            a FastRP table graph features cannot use (:func:`~recsys.data.graph.check_graph_features`).
    """
    src = DeltaSource(inputs.encoded, what="input")
    if src.num_rows == 0:
        raise InputError(f"input table {inputs.encoded!r} has no rows")
    spec = resolve_feature_spec(
        src.schema,
        dense=inputs.dense,
        sparse=inputs.sparse,
        label_col=inputs.label_col,
        id_col=inputs.id_col,
        what=f"input table {inputs.encoded!r}",
    )
    if cfg.split.kind == "time" and (inputs.time_col is None or inputs.time_col not in src.schema.names):
        raise InputError(
            f"input table {inputs.encoded!r}: split time column {inputs.time_col!r} (schema.time) is missing"
        )
    hashed = cfg.layout.kind != "vocab"
    if hashed:
        for f in spec.sparse:
            if f + HASH_SUFFIX not in src.schema.names:
                raise InputError(
                    f"input table {inputs.encoded!r}: layout '{cfg.layout.kind}' needs column "
                    f"'{f}{HASH_SUFFIX}' (raw-value hashes of '{f}')"
                )
    if inputs.oracle:
        osrc = DeltaSource(inputs.oracle, what="oracle")
        missing = {"event_id", "p_true"} - set(osrc.schema.names)
        if missing:
            raise InputError(f"oracle table {inputs.oracle!r}: columns {sorted(missing)} are missing")
    vsrc_version = DeltaSource(inputs.vocab, what="vocab").version
    sizes = vocab_sizes(inputs.vocab, list(spec.sparse))
    stats = scan_min_max(src, [spec.label_col] + list(spec.sparse))
    lo, hi, nulls = stats[spec.label_col]
    if nulls or lo < 0 or hi > 1:
        bad = [v for v in distinct_values(src, spec.label_col) if v not in (0, 1)]
        raise InputError(
            f"input table {inputs.encoded!r}: column '{spec.label_col}' must be 0 or 1; found "
            f"{bad[:5]}" + (f" and {nulls} nulls" if nulls else "")
        )
    for f in spec.sparse:
        lo, hi, _ = stats[f]
        if lo is None:
            continue
        if lo < 0:
            raise InputError(f"input table {inputs.encoded!r}: column '{f}' has negative id {lo}")
        if hi >= sizes[f]:
            raise InputError(
                f"input table {inputs.encoded!r}: column '{f}' has id {hi} but the vocabulary table {inputs.vocab!r} sizes "
                f"table '{f}' at {sizes[f]} rows (ids 0..{sizes[f] - 1}): vocabulary and encoded table do not match"
            )
    graph = check_graph_features(cfg, inputs, list(spec.sparse), vsrc_version, sizes) if cfg.graph_features else None
    return InputSummary(spec, sizes, src.num_rows, src.version, vsrc_version, inputs, graph)


def check_memory_budget(layout, optimizer: str, max_bytes: int | None) -> dict[str, int]:
    """Bytes of the layout's tables (+ optimizer state); ConfigError when over ``max_bytes``, naming the largest tables."""
    need = layout.embedding_bytes(optimizer)
    if max_bytes is not None and need["total"] > max_bytes:
        biggest = sorted(layout.tables, key=lambda t: -t.num_embeddings * t.embedding_dim)[:3]
        names = ", ".join(f"'{t.name}' ({t.num_embeddings} x {t.embedding_dim})" for t in biggest)
        raise ConfigError(
            f"train.max_embedding_bytes={max_bytes}: the '{layout.kind}' tables need {need['total']} "
            f"bytes (weights {need['weights']} + optimizer state {need['optimizer_state']}); "
            f"largest: {names}"
        )
    return need
