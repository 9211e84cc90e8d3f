"""Salted 64-bit hashing of raw-value hashes into table rows (numpy, wrapping uint64 arithmetic).

Used by the hashed per-feature layout and by Unified Embedding's probes (Coleman et al., "Unified
Embedding: Battle-Tested Feature Representations for Web-Scale ML Systems", NeurIPS 2023): every
(feature, chunk) gets its own salt, so two features (or two chunks of one feature) that share a
table land on independent rows.
"""

from __future__ import annotations

import hashlib

import numpy as np

from core.encoding import splitmix64


def feature_salt(feature: str, chunk: int, seed: int) -> int:
    """A 64-bit salt for one (feature, chunk, seed): blake2b of the triple, stable across runs and machines."""
    digest = hashlib.blake2b(f"{feature}\x1f{chunk}\x1f{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def hash_to_rows(raw_hash: np.ndarray, salt: int, num_rows: int) -> np.ndarray:
    """Row of each raw hash in a table of ``num_rows`` rows: ``splitmix64(raw_hash, salt) mod num_rows``.

    Args:
        raw_hash: (N,) int64 raw-value hashes; missing values must already be replaced (by 0).
    Returns:
        (N,) int64 rows in [0, num_rows).
    """
    return (splitmix64(raw_hash, salt) % np.uint64(num_rows)).astype(np.int64)


def uniform_from_ids(ids: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    """A uniform [0, 1) number per id from (seed, purpose, id): the same for an id however rows are partitioned."""
    mixed = splitmix64(ids, feature_salt(purpose, 0, seed))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
