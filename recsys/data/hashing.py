"""Salted 64-bit hashing of raw-value hashes into table rows (numpy, wrapping uint64 arithmetic).

Used by the hashed per-feature layout and by Unified Embedding's probes (Coleman et al., "Unified
Embedding: Battle-Tested Feature Representations for Web-Scale ML Systems", NeurIPS 2023): every
(feature, chunk) gets its own salt, so two features (or two chunks of one feature) that share a
table land on independent rows.
"""

from __future__ import annotations

import hashlib

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def feature_salt(feature: str, chunk: int, seed: int) -> int:
    """A 64-bit salt for one (feature, chunk, seed): blake2b of the triple, stable across runs and machines."""
    digest = hashlib.blake2b(f"{feature}\x1f{chunk}\x1f{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def mix64(x: np.ndarray, salt: int) -> np.ndarray:
    """SplitMix64 finaliser of ``x + salt * golden``: a bijection of uint64 with full avalanche.

    Args:
        x: (N,) int64 or uint64 raw-value hashes (the encode job's xxhash64).
        salt: from :func:`feature_salt`.
    Returns:
        (N,) uint64 mixed hashes.
    """
    z = np.asarray(x).astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(salt) * _GOLDEN
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def hash_to_rows(raw_hash: np.ndarray, salt: int, num_rows: int) -> np.ndarray:
    """Row of each raw hash in a table of ``num_rows`` rows: ``mix64(raw_hash, salt) mod num_rows``.

    Args:
        raw_hash: (N,) int64 raw-value hashes; missing values must already be replaced (by 0).
    Returns:
        (N,) int64 rows in [0, num_rows).
    """
    return (mix64(raw_hash, salt) % np.uint64(num_rows)).astype(np.int64)


def uniform_from_ids(ids: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    """A uniform [0, 1) number per id from (seed, purpose, id): the same for an id however rows are partitioned."""
    mixed = mix64(ids, feature_salt(purpose, 0, seed))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
