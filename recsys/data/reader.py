"""Read a Delta table without Spark: each rank streams its own contiguous share of the row groups.

The table's Parquet files (from the Delta log, via ``deltalake``) are listed in a fixed order and
their row groups numbered globally; rank ``r`` of ``W`` reads rows ``[r*T/W, (r+1)*T/W)`` of the
``T`` rows, touching only the row groups that overlap its range. Shares cover every row exactly
once whatever the file layout (even one file with one row group).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InputError


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group of the table: file, index in the file, row count."""

    path: str
    index: int
    num_rows: int


def _local(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


class DeltaSource:
    """The current snapshot of a Delta table: its version, files, row groups and Arrow schema.

    Raises:
        InputError: no Delta table at ``path``, a partitioned table, or a table with no files.
    """

    def __init__(self, path: str, what: str = "input", order_by: str | None = "event_id"):
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        self.path = path
        self.what = what
        try:
            table = DeltaTable(path)
        except (TableNotFoundError, FileNotFoundError, OSError) as exc:
            raise InputError(f"{what}: no Delta table at {path!r} ({exc})") from None
        self.version = table.version()
        if table.metadata().partition_columns:
            raise InputError(
                f"{what}: partitioned Delta tables are not supported ({path!r} is partitioned by "
                f"{table.metadata().partition_columns})"
            )
        self.files = _ordered_files(table, order_by)
        self.row_groups: list[RowGroup] = []
        self.schema: pa.Schema | None = None
        for f in self.files:
            meta = pq.ParquetFile(f).metadata
            if self.schema is None:
                self.schema = pq.read_schema(f)
            self.row_groups += [RowGroup(f, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
        if self.schema is None:
            self.schema = _empty_schema(table)

    @property
    def num_rows(self) -> int:
        return sum(g.num_rows for g in self.row_groups)

    def iter_tables(
        self,
        columns: list[str],
        rank: int = 0,
        world_size: int = 1,
        batch_rows: int = 65_536,
        row_index: str | None = None,
    ) -> Iterator[pa.Table]:
        """Stream this rank's share of rows as Arrow tables of at most ``batch_rows`` rows (in table order).

        ``row_index``: also add an int64 column of that name holding each row's global position.
        """
        sizes = [g.num_rows for g in self.row_groups]
        firsts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        for g, start, stop in rank_slices(sizes, rank, world_size):
            group = self.row_groups[g]
            pf = pq.ParquetFile(group.path)
            seen = 0
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group.index], columns=columns):
                lo, hi = max(start - seen, 0), min(stop - seen, batch.num_rows)
                seen += batch.num_rows
                if hi > lo:
                    table = pa.Table.from_batches([batch.slice(lo, hi - lo)])
                    if row_index:
                        first = firsts[g] + seen - batch.num_rows + lo
                        table = table.append_column(row_index, pa.array(np.arange(first, first + hi - lo)))
                    yield table
                if seen >= stop:
                    break

    def read_column(self, name: str) -> pa.ChunkedArray:
        """One column of the whole table (every rank gets all of it; used for small columns like ts)."""
        tables = list(self.iter_tables([name]))
        if not tables:
            return pa.chunked_array([], type=self.schema.field(name).type)
        return pa.concat_tables(tables).column(name)


def _ordered_files(table, order_by: str | None) -> list[str]:
    """Data files ordered by their minimum ``order_by`` value (Delta file stats), then by path.

    File names are random, so ordering by content keeps rank shares (and hence training) identical
    for a table rewritten with the same rows.
    """
    uris = [_local(u) for u in table.file_uris()]
    keys = {u: (0, u) for u in uris}
    try:
        actions = pa.table(table.get_add_actions(flatten=True))
        col = f"min.{order_by}"
        if order_by and col in actions.column_names:
            root = _local(table.table_uri).rstrip("/")
            for rel, lo in zip(actions.column("path").to_pylist(), actions.column(col).to_pylist()):
                full = rel if rel.startswith("/") else f"{root}/{rel}"
                for u in uris:
                    if u.endswith(rel.split("/")[-1]) or u == full:
                        keys[u] = (0 if lo is None else 1, lo if lo is not None else 0, u)
    except Exception:  # no stats: path order
        pass
    return sorted(uris, key=lambda u: keys[u] if len(keys[u]) == 3 else (0, 0, u))


def _empty_schema(table) -> pa.Schema:
    try:
        return pa.schema(table.schema().to_arrow())
    except Exception:  # an empty table still has a schema in its log; fall back to none
        return pa.schema([])


def rank_slices(row_group_sizes: list[int], rank: int, world_size: int) -> list[tuple[int, int, int]]:
    """Split rows numbered across row groups into ``world_size`` contiguous, near-equal shares.

    Args:
        row_group_sizes: (G,) rows per row group, in table order.
    Returns:
        ``(group, start, stop)`` triples of rank ``rank``: rows ``start:stop`` within row group ``group``.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in [0, {world_size})")
    total = int(sum(row_group_sizes))
    lo, hi = rank * total // world_size, (rank + 1) * total // world_size
    out = []
    base = 0
    for g, size in enumerate(row_group_sizes):
        s, e = max(lo, base), min(hi, base + size)
        if e > s:
            out.append((g, s - base, e - base))
        base += size
    return out


def scan_min_max(source: DeltaSource, columns: list[str], batch_rows: int = 262_144) -> dict[str, tuple]:
    """Streamed (min, max, null count) of integer columns (list columns: of their values), for input checks."""
    import pyarrow.compute as pc

    acc: dict[str, list] = {c: [None, None, 0] for c in columns}
    for t in source.iter_tables(columns, batch_rows=batch_rows):
        for c in columns:
            col = t.column(c)
            if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                col = pc.list_flatten(col)
            mm = pc.min_max(col)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            a = acc[c]
            a[2] += col.null_count
            if lo is not None:
                a[0] = lo if a[0] is None else min(a[0], lo)
                a[1] = hi if a[1] is None else max(a[1], hi)
    return {c: tuple(v) for c, v in acc.items()}


def distinct_values(source: DeltaSource, column: str, limit: int = 10) -> np.ndarray:
    """Up to ``limit`` distinct values of a column (nulls as NaN)."""
    import pyarrow.compute as pc

    seen: set = set()
    for t in source.iter_tables([column]):
        seen.update(pc.unique(t.column(column)).to_pylist())
        if len(seen) > limit:
            break
    return np.array(sorted(seen, key=lambda v: (v is None, v)), dtype=object)[:limit]
