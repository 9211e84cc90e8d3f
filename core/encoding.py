"""The encoding contract shared by the vocabulary, the encode job, the trainer and the MLflow pyfunc.

A raw categorical value becomes an id through the vocabulary table (ids >= ``FIRST_ID``; a null is
``MISSING_ID``, a value the vocabulary lacks ``OOV_ID``) and a raw-value hash ``<feature>_hash`` =
Spark's ``xxhash64(value as string)`` (XXH64, seed 42), which the hashed and unified layouts index.
Whoever encodes (Spark, pandas, the pyfunc) imports these names from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MISSING_ID = 0
OOV_ID = 1
FIRST_ID = 2
NUM_RESERVED = 2
HASH_SUFFIX = "_hash"
SPARK_XXHASH64_SEED = 42  # Spark's XxHash64 default seed (org.apache.spark.sql.catalyst.expressions.XxHash64)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def hash_column(feature: str) -> str:
    """Name of the raw-value hash column of ``feature`` (``C1`` -> ``C1_hash``)."""
    return feature + HASH_SUFFIX


def spark_xxhash64(values: Sequence[str]) -> np.ndarray:
    """Spark's ``xxhash64(s)`` of each string: XXH64 of its UTF-8 bytes, seed 42, as a signed int64.

    Args:
        values: U non-null strings.
    Returns:
        (U,) int64, equal to ``F.xxhash64(F.col(c).cast("string"))`` on the same strings.
    """
    import xxhash

    h = np.fromiter(
        (xxhash.xxh64_intdigest(v.encode("utf-8"), seed=SPARK_XXHASH64_SEED) for v in values),
        dtype=np.uint64,
        count=len(values),
    )
    return h.view(np.int64)


def splitmix64(x: np.ndarray, salt: int = 1) -> np.ndarray:
    """SplitMix64 finaliser of ``x + salt * golden`` (Steele et al. 2014): a counter-based 64-bit hash.

    A bijection of uint64 with full avalanche; arithmetic wraps modulo 2^64. ``salt=1`` is the plain
    SplitMix64 step (FastRP's node keys); the hashed layouts pass one salt per (feature, chunk).

    Args:
        x: int64 or uint64 array of any shape.
        salt: a 64-bit salt.
    Returns:
        uint64 array of the same shape.
    """
    z = np.asarray(x).astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(salt) * _GOLDEN
        z ^= z >> np.uint64(30)
        z *= _MIX1
        z ^= z >> np.uint64(27)
        z *= _MIX2
        z ^= z >> np.uint64(31)
    return z
