"""Arrow columns -> numpy feature arrays: dense transform, jagged sparse ids, raw-value hashes.

Symbols: ``N`` rows, ``n`` dense features, ``nnz`` total values of one sparse feature.
A sparse feature is stored as CSR: ``offsets`` (N+1,) and ``values`` (nnz,). Row ``i`` holds
``values[offsets[i]:offsets[i+1]]``. Single-valued columns have one value per row (id 0 when the
raw value was missing); an array column may hold 0..L values::

    row | tags        offsets = [0, 2, 2, 3]
    0   | [5, 9]      values  = [5, 9, 1]
    1   | []  (null)
    2   | [1]  (OOV)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.encoding import HASH_SUFFIX
from core.errors import InputError

ROW_INDEX = "__row_index"
_DENSE_RE = re.compile(r"^I\d+$")
_SPARSE_RE = re.compile(r"^C\d+$")


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model: dense counts, sparse id features (some multi-valued), label and id."""

    dense: tuple[str, ...]
    sparse: tuple[str, ...]
    multi_valued: frozenset[str] = frozenset()
    label_col: str = "label"
    id_col: str = "event_id"

    @property
    def num_dense_inputs(self) -> int:
        """Width of the dense tensor: one log1p value and one missing indicator per dense feature."""
        return 2 * len(self.dense)

    def to_dict(self) -> dict:
        return {
            "dense": list(self.dense),
            "sparse": list(self.sparse),
            "multi_valued": sorted(self.multi_valued),
            "label_col": self.label_col,
            "id_col": self.id_col,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        return cls(
            dense=tuple(d["dense"]),
            sparse=tuple(d["sparse"]),
            multi_valued=frozenset(d["multi_valued"]),
            label_col=d["label_col"],
            id_col=d["id_col"],
        )


def resolve_feature_spec(
    schema: pa.Schema,
    *,
    dense: list[str] | None,
    sparse: list[str] | None,
    label_col: str,
    id_col: str,
    what: str = "input",
) -> FeatureSpec:
    """Pick the dense/sparse columns (config, or defaults: ``I<n>`` dense; ``C<n>`` and array<int> sparse).

    Raises:
        InputError: a configured or required column is missing or has the wrong type.
    """
    names = schema.names
    if label_col not in names:
        raise InputError(f"{what}: label column '{label_col}' is missing (columns: {names})")
    if id_col not in names:  # e.g. raw Criteo files: the row's position in the table stands in for the id
        id_col = ROW_INDEX
    if dense is None:
        dense = sorted((c for c in names if _DENSE_RE.match(c)), key=_natural_key)
    if sparse is None:
        arrays = [
            c
            for c in names
            if not c.endswith(HASH_SUFFIX)
            and pa.types.is_list(schema.field(c).type)
            and pa.types.is_integer(schema.field(c).type.value_type)
        ]
        sparse = sorted((c for c in names if _SPARSE_RE.match(c)), key=_natural_key) + arrays
    for col in list(dense) + list(sparse):
        if col not in names:
            raise InputError(f"{what}: configured feature column '{col}' is missing (columns: {names})")
    for col in dense:
        t = schema.field(col).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
            raise InputError(f"{what}: dense column '{col}' must be numeric, got {t}")
    multi = set()
    for col in sparse:
        t = schema.field(col).type
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            if not pa.types.is_integer(t.value_type):
                raise InputError(f"{what}: sparse column '{col}' must hold integer ids, got {t}")
            multi.add(col)
        elif not pa.types.is_integer(t):
            raise InputError(f"{what}: sparse column '{col}' must hold integer vocabulary ids, got {t}")
    if not sparse:
        raise InputError(f"{what}: no sparse feature columns (C<n> or array<int>) found in {names}")
    return FeatureSpec(
        dense=tuple(dense), sparse=tuple(sparse), multi_valued=frozenset(multi), label_col=label_col, id_col=id_col
    )


def dense_transform(raw: np.ndarray) -> np.ndarray:
    """Criteo-style dense input: ``[log(1 + max(x, 0)), missing]`` per feature, missing values -> 0.

    Negative counts (Criteo's I2 has -1s) are clipped to 0 before the log. +-inf counts as missing,
    like NaN: no count is infinite, and log(1 + inf) would saturate every logit to probability 1.

    Args:
        raw: (N, n) float64 raw counts, NaN (or +-inf) where missing.
    Returns:
        (N, 2n) float32: the n transformed values, then the n missing indicators (1.0 = missing).
    """
    missing = ~np.isfinite(raw)
    logs = np.log1p(np.clip(np.where(missing, 0.0, raw), 0.0, None))
    return np.concatenate([logs, missing.astype(np.float64)], axis=1).astype(np.float32)


@dataclass
class Jagged:
    """One sparse feature of N rows in CSR form: ``offsets`` (N+1,) int64, ``ids``/``hashes`` (nnz,) int64."""

    offsets: np.ndarray
    ids: np.ndarray
    hashes: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class RawBlock:
    """Rows of the encoded table as numpy arrays (before the embedding layout maps ids to table rows)."""

    event_id: np.ndarray  # (N,) int64
    label: np.ndarray  # (N,) float32
    dense: np.ndarray  # (N, 2n) float32, see dense_transform
    sparse: dict[str, Jagged] = field(default_factory=dict)
    ts: np.ndarray | None = None  # (N,) int64 microseconds, if read

    def __len__(self) -> int:
        return len(self.event_id)


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _jagged(table: pa.Table, name: str, multi: bool, with_hash: bool) -> Jagged:
    n = table.num_rows
    hcol = name + HASH_SUFFIX
    if not multi:
        ids = _column(table, name).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        hashes = None
        if with_hash:
            hashes = _column(table, hcol).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return Jagged(np.arange(n + 1, dtype=np.int64), ids, hashes)
    arr = _column(table, name)
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = pc.list_flatten(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    hashes = None
    if with_hash:
        harr = _column(table, hcol)
        hlen = pc.list_value_length(harr).fill_null(0).to_numpy(zero_copy_only=False)
        if not np.array_equal(hlen, lengths):
            raise InputError(f"column '{hcol}' has different list lengths than '{name}'")
        hashes = pc.list_flatten(harr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return Jagged(offsets, ids, hashes)


def timestamps_us(col) -> np.ndarray:
    """(N,) int64 microseconds since the epoch of a timestamp column (nulls -> 0)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.cast(pa.timestamp("us")).cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)


def block_from_arrow(table: pa.Table, spec: FeatureSpec, *, with_hash: bool, time_col: str | None = None) -> RawBlock:
    """Convert an Arrow table of encoded rows into a :class:`RawBlock` (dense transformed, sparse as CSR)."""
    n = table.num_rows
    if spec.dense:
        raw = np.stack(
            [_column(table, c).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False) for c in spec.dense],
            axis=1,
        )
    else:
        raw = np.zeros((n, 0))
    label = _column(table, spec.label_col).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.float32)
    ts = None if time_col is None else timestamps_us(table.column(time_col))
    return RawBlock(
        event_id=_column(table, spec.id_col).to_numpy(zero_copy_only=False).astype(np.int64),
        label=label,
        dense=dense_transform(raw),
        sparse={f: _jagged(table, f, f in spec.multi_valued, with_hash) for f in spec.sparse},
        ts=ts,
    )


def take_jagged(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather rows of a CSR array: returns ``(lengths (len(rows),), values (sum lengths,))`` in row order."""
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return lengths, values[:0]
    ends = np.cumsum(lengths)
    pos = np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths) + np.repeat(starts, lengths)
    return lengths, values[pos]


def concat_jagged(parts: list[Jagged]) -> Jagged:
    """Concatenate CSR blocks row-wise."""
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for p in parts:
        offsets.append(p.offsets[1:] - p.offsets[0] + base)
        base += int(p.offsets[-1] - p.offsets[0])
    ids = np.concatenate([p.ids[: p.offsets[-1]] for p in parts]) if parts else np.zeros(0, np.int64)
    hashes = None
    if parts and parts[0].hashes is not None:
        hashes = np.concatenate([p.hashes for p in parts])
    return Jagged(np.concatenate(offsets), ids, hashes)


def concat_blocks(blocks: list[RawBlock], spec: FeatureSpec) -> RawBlock:
    """Concatenate raw blocks row-wise (an empty list gives an empty block)."""
    if not blocks:
        return RawBlock(
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            np.zeros((0, spec.num_dense_inputs), np.float32),
            {f: Jagged(np.zeros(1, np.int64), np.zeros(0, np.int64), None) for f in spec.sparse},
        )
    ts = None if blocks[0].ts is None else np.concatenate([b.ts for b in blocks])
    return RawBlock(
        event_id=np.concatenate([b.event_id for b in blocks]),
        label=np.concatenate([b.label for b in blocks]),
        dense=np.concatenate([b.dense for b in blocks]),
        sparse={f: concat_jagged([b.sparse[f] for b in blocks]) for f in spec.sparse},
        ts=ts,
    )


def select_rows(block: RawBlock, rows: np.ndarray) -> RawBlock:
    """The given rows of a block (in the given order)."""
    sparse = {}
    for f, j in block.sparse.items():
        lengths, ids = take_jagged(j.offsets, j.ids, rows)
        hashes = None if j.hashes is None else take_jagged(j.offsets, j.hashes, rows)[1]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        sparse[f] = Jagged(offsets, ids, hashes)
    return RawBlock(
        block.event_id[rows], block.label[rows], block.dense[rows], sparse, None if block.ts is None else block.ts[rows]
    )
