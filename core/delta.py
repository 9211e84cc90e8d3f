"""Reading Delta tables without a JVM (``deltalake``; Parquet/CSV with pyarrow): for the trainer, the registry and
the pyfunc's side.

The Spark side reads and writes through ``embeddings.io``; this module only reads, and names the
table in every error.
"""

from __future__ import annotations

import json

import pyarrow as pa

from core.errors import InputError


def _open(path: str, version: int | None, what: str):
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(path, version=version)
    except (TableNotFoundError, FileNotFoundError, OSError) as exc:
        at = "" if version is None else f" (version {version})"
        raise InputError(f"{what}: no Delta table at {path!r}{at}: {exc}") from None


def table_version(path: str, what: str = "table") -> int:
    """The latest committed version of the Delta table at ``path``."""
    return _open(path, None, what).version()


def read_delta(
    path: str, version: int | None = None, columns: list[str] | None = None, what: str = "table"
) -> pa.Table:
    """A Delta table (at ``version``) as Arrow; InputError naming ``what`` if it or a column is not there."""
    table = _open(path, version, what)
    names = table.schema().to_arrow().names
    missing = [c for c in columns or [] if c not in names]
    if missing:
        raise InputError(f"{what} {path!r}: missing column(s) {missing} (columns: {names})")
    return table.to_pyarrow_table(columns=columns)


def read_any(
    path: str, fmt: str = "delta", version: int | None = None, columns: list[str] | None = None, what: str = "table"
) -> pa.Table:
    """A table in the catalog's formats (delta at ``version``; parquet or csv folders/files, which have no
    versions) as Arrow, for the JVM-free side; InputError naming ``what`` for a missing path or column."""
    if fmt == "delta":
        return read_delta(path, version, columns, what)
    if fmt not in ("parquet", "csv"):
        raise InputError(f"{what}: unknown format {fmt!r} (expected delta, parquet or csv)")
    import pyarrow.dataset as ds

    try:
        data = ds.dataset(path, format=fmt)  # skips _SUCCESS, .crc: Spark's side files
        names = data.schema.names
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{what}: cannot read {fmt} table at {path!r}: {exc}") from None
    missing = [c for c in columns or [] if c not in names]
    if missing:
        raise InputError(f"{what} {path!r}: missing column(s) {missing} (columns: {names})")
    try:
        return data.to_table(columns=columns)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{what}: cannot read {fmt} table at {path!r}: {exc}") from None


def commit_metadata(path: str, version: int | None, what: str = "table") -> dict:
    """The userMetadata JSON a job wrote into Delta commit ``version`` of ``path`` ({} if it wrote none).

    Raises:
        InputError: the table has no commit ``version`` (rewritten or vacuumed since).
    """
    for entry in _open(path, None, what).history():
        if version is None or entry.get("version") == version:
            try:
                return json.loads(entry.get("userMetadata") or "{}")
            except json.JSONDecodeError:
                return {}
    raise InputError(f"{what}: {path!r} has no commit {version} in its history (rewritten or vacuumed since?)")


def commit_inputs(path: str, version: int | None, what: str = "table") -> dict[str, dict]:
    """The tables the stage runner recorded as read by commit ``version``: ``{name: {"path", "version"}}``."""
    return commit_metadata(path, version, what).get("inputs") or {}
