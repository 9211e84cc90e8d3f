"""Helpers: tiny encoded + vocabulary Delta tables written with ``deltalake`` (no Spark), shaped like the encode job's."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

VOCAB = {"C1": 40, "C2": 12, "tags": 9}  # table sizes (max id + 1)
SCHEMA_FLAGS = [
    "--set",
    "schema.dense=[I1, I2]",
    "--set",
    "schema.categorical=[C1, C2, tags]",
]  # the tiny tables' columns


def make_encoded(
    num_rows: int = 640, seed: int = 0, *, label=None, c1_offset: int = 0, num_files: int = 2
) -> list[pa.Table]:
    """Encoded rows (C1, C2 scalar ids, tags array ids, I1/I2 with nulls, hashes) in ``num_files`` parts.

    Labels depend on C1 and I1, so a model has something to learn.
    """
    rng = np.random.default_rng(seed)
    n = num_rows
    c1 = rng.integers(0, VOCAB["C1"], n) + c1_offset
    c2 = rng.integers(0, VOCAB["C2"], n)
    lens = rng.integers(0, 4, n)
    tags = [list(rng.integers(0, VOCAB["tags"], k)) for k in lens]
    i1 = rng.poisson(3.0, n).astype(float)
    i1[rng.random(n) < 0.2] = np.nan
    i2 = rng.poisson(10.0, n).astype(float)
    logit = np.where(c1 % 2 == 0, 1.5, -1.5) + 0.3 * np.nan_to_num(i1, nan=0) - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int32) if label is None else np.asarray(label, np.int32)
    table = pa.table(
        {
            "event_id": pa.array(np.arange(n, dtype=np.int64)),
            "ts": pa.array(
                [dt.datetime(2026, 1, 1) + dt.timedelta(minutes=int(i)) for i in range(n)], pa.timestamp("us")
            ),
            "label": pa.array(y, pa.int32()),
            "I1": pa.array(i1, pa.float64(), mask=np.isnan(i1)),
            "I2": pa.array(i2, pa.float64()),
            "C1": pa.array(c1.astype(np.int32)),
            "C2": pa.array(c2.astype(np.int32)),
            "tags": pa.array(tags, pa.list_(pa.int32())),
            # raw hashes: a value's id stands in for its string here; id 1 (OOV) rows get distinct raw values
            "C1_hash": pa.array(np.where(c1 == 1, 10_000 + np.arange(n), c1 * 7919 + 1).astype(np.int64), mask=c1 == 0),
            "C2_hash": pa.array((c2 * 104729 + 3).astype(np.int64), mask=c2 == 0),
            "tags_hash": pa.array([[int(t) * 31 + 5 for t in ts] for ts in tags], pa.list_(pa.int64())),
        }
    )
    bounds = np.linspace(0, n, num_files + 1).astype(int)
    return [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]


def write_delta(path, parts: list[pa.Table]) -> str:
    from deltalake import write_deltalake

    for i, part in enumerate(parts):
        write_deltalake(str(path), part, mode="overwrite" if i == 0 else "append")
    return str(path)


def make_vocab(sizes: dict[str, int] = VOCAB) -> pa.Table:
    rows = [(f, f"{f}_v{i}", i) for f, size in sizes.items() for i in range(2, size)]
    ts = dt.datetime(2026, 1, 1)
    return pa.table(
        {
            "feature": [r[0] for r in rows],
            "value": [r[1] for r in rows],
            "id": pa.array([r[2] for r in rows], pa.int32()),
            "count": pa.array([5] * len(rows), pa.int64()),
            "first_seen": pa.array([ts] * len(rows), pa.timestamp("us")),
            "last_seen": pa.array([ts] * len(rows), pa.timestamp("us")),
            "added_in": pa.array([0] * len(rows), pa.int32()),
        }
    )


def train_config(**overrides):
    """A small, fast TrainConfig for the tiny tables."""
    from core.train_config import TrainConfig

    base = dict(
        batch_size=32,
        eval_batch_size=64,
        embedding_dim=8,
        progress=False,
        model={"kind": "dlrm", "dense_arch": [16], "over_arch": [16]},
    )
    base.update(overrides)
    return TrainConfig.model_validate(base)


def train_inputs(encoded: str, vocab: str, oracle: str | None = None):
    """The trainer's inputs: the tiny tables, columns found by name (I<n> dense; C<n> and arrays sparse)."""
    from core.train_config import TrainInputs

    return TrainInputs(encoded=encoded, vocab=vocab, oracle=oracle)


def train_setup(encoded: str, vocab: str, oracle: str | None = None, **overrides):
    """(TrainConfig, TrainInputs) of a small, fast run over the tiny tables."""
    return train_config(**overrides), train_inputs(encoded, vocab, oracle)


def train_job_main():
    """``main`` of jobs/train_ctr.py, loaded by path (jobs/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "jobs" / "train_ctr.py"
    spec = importlib.util.spec_from_file_location("train_ctr_job", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


GRAPH_DIM = 4  # width of the tiny FastRP vectors
GRAPH_PREFIXES = {"C1": "user:", "C2": "item:"}


def make_fastrp(dim: int = GRAPH_DIM, seed: int = 0, c1_every: int = 2) -> pa.Table:
    """A FastRP table (``node string, embedding array<float>``) over the tiny vocabulary's values.

    Nodes: ``user:C1_v<i>`` for every ``c1_every``-th C1 id from 2 (half of C1's values by default),
    ``item:C2_v<j>`` for every C2 value, and two nodes no vocabulary value names.
    """
    nodes = [f"user:C1_v{i}" for i in range(2, VOCAB["C1"], c1_every)]
    nodes += [f"item:C2_v{j}" for j in range(2, VOCAB["C2"])] + ["user:stranger", "item:C1_v3"]
    vectors = np.random.default_rng(seed).standard_normal((len(nodes), dim)).astype(np.float32)
    return pa.table({"node": nodes, "embedding": pa.array(list(vectors), pa.list_(pa.float32()))})


def fastrp_vector(table: pa.Table, node: str) -> np.ndarray:
    """The (d,) vector of ``node`` in a FastRP table."""
    i = table.column("node").to_pylist().index(node)
    return np.asarray(table.column("embedding")[i].as_py(), np.float32)


def graph_inputs(encoded: str, vocab: str, embeddings: str, prefixes: dict[str, str] = GRAPH_PREFIXES):
    """TrainInputs of the tiny tables with a FastRP table and its node-id prefixes (as the pipeline config fills them)."""
    from core.train_config import TrainInputs

    return TrainInputs(encoded=encoded, vocab=vocab, embeddings=embeddings, graph_prefixes=dict(prefixes))
