"""Train/valid/test assignment of rows: seeded hash of the row id, or time cutoffs. Pure numpy."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from recsys.data.hashing import uniform_from_ids

SPLITS = ("train", "valid", "test")


def random_split(event_id: np.ndarray, seed: int, valid_fraction: float, test_fraction: float) -> np.ndarray:
    """Split code per row (0 train, 1 valid, 2 test) from a uniform hash of (seed, event_id).

    Args:
        event_id: (N,) int64. Returns: (N,) int8.
    """
    u = uniform_from_ids(event_id, seed, "split")
    return np.where(u < test_fraction, 2, np.where(u < test_fraction + valid_fraction, 1, 0)).astype(np.int8)


def time_cutoffs(ts: np.ndarray, valid_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(valid_start, test_start) timestamps: quantiles of all rows' ``ts`` (N,) int64 microseconds."""
    if len(ts) == 0:
        return 0, 0
    s = np.sort(ts)
    n = len(s)
    test_start = int(s[min(n - int(round(n * test_fraction)), n - 1)])
    valid_start = int(s[min(n - int(round(n * (test_fraction + valid_fraction))), n - 1)])
    return valid_start, test_start


def time_split(ts: np.ndarray, valid_start: int, test_start: int) -> np.ndarray:
    """Split code per row: ts >= test_start is test, valid_start <= ts < test_start valid, else train."""
    return np.where(ts >= test_start, 2, np.where(ts >= valid_start, 1, 0)).astype(np.int8)


def in_test_split(table: pa.Table, split, id_col: str) -> np.ndarray:
    """(N,) bool: the rows of a raw table in the trainer's test split, from its :class:`~recsys.results.SplitRecord`.

    The same rows the trainer tested on: the same hash of (seed, id), or the same time cutoff.
    """
    if split.kind == "random":
        ids = table.column(id_col).to_numpy(zero_copy_only=False).astype(np.int64)
        return random_split(ids, split.seed, split.valid_fraction, split.test_fraction) == 2
    start = dt.datetime.fromisoformat(split.test_start)
    us = int((start - dt.datetime(1970, 1, 1)).total_seconds() * 1_000_000)
    ts = table.column(split.time_col).cast(pa.timestamp("us")).cast(pa.int64()).fill_null(-1)
    return ts.to_numpy(zero_copy_only=False) >= us
