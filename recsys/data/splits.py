"""Train/valid/test assignment of rows: seeded hash of the row id, or time cutoffs. Pure numpy."""

from __future__ import annotations

import numpy as np

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
