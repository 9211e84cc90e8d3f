"""A second click-log generator, independent of ``embeddings/synth.py``: four data shapes with known truth.

Each shape is a logistic model over categorical fields (and a few counts), so ``p_true`` per row
is known and its AUC is the Bayes-optimal AUC of those rows:

* ``main``: per-value effects only (a field's value shifts the logit), 20 fields of 10..10^4 values.
* ``pairwise``: ``main`` plus field-aware pairwise interactions: for 12 field pairs (f, g) a
  rank-4 term ``<u_f[v], u_fg[w]>`` (the vector of f's value depends on the partner field, as in FFM).
* ``heavy_tail``: cardinalities up to 10^6, Zipf-distributed values (many seen once), per-value
  effects; unseen test values carry effects no model can have learnt.
* ``multi_valued``: ``main`` plus two bag fields of 1..6 values whose effect is the mean of theirs.

Values are strings ``v<k>``; about 3% of each field is missing (null), and missing has its own
effect. Dense columns ``I1..I4`` are Poisson counts with a log effect and 10% missing. Rows are
one minute apart from 2026-01-01 (``ts``), so a time split is a split by row order. Pure numpy:
``make(shape, num_rows, seed)`` returns the click table and the oracle (``event_id``, ``p_true``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

SHAPES = ("main", "pairwise", "heavy_tail", "multi_valued")
NUM_DENSE = 4
MISSING = 0.03


@dataclass(frozen=True)
class Field:
    name: str
    cardinality: int
    zipf: float  # exponent of the value distribution (0: uniform)
    scale: float  # std of the per-value effects


def fields_of(shape: str, rng: np.random.Generator) -> list[Field]:
    """The categorical fields of ``shape``: cardinalities log-uniform over the shape's range."""
    if shape == "heavy_tail":
        cards = np.unique(np.round(np.logspace(1, 6, 16)).astype(int))
        return [Field(f"C{i + 1}", int(c), 1.1, 0.4) for i, c in enumerate(cards)]
    cards = np.round(10 ** rng.uniform(1, 4, 20)).astype(int)
    return [Field(f"C{i + 1}", int(c), 0.8, 0.3) for i, c in enumerate(cards)]


def draw_values(f: Field, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) value indices in [0, cardinality) (Zipf-like by rank; -1 missing)."""
    ranks = np.arange(1, f.cardinality + 1, dtype=np.float64)
    p = ranks**-f.zipf if f.zipf else np.ones_like(ranks)
    perm = rng.permutation(f.cardinality)  # which value is frequent is random
    v = perm[rng.choice(f.cardinality, size=n, p=p / p.sum())]
    v[rng.random(n) < MISSING] = -1
    return v


def _strings(v: np.ndarray) -> pa.Array:
    return pa.array([None if x < 0 else f"v{x}" for x in v.tolist()], pa.string())


def make(shape: str, num_rows: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """(clicks, oracle) of ``shape``: ``event_id, ts, label, I1..I4, C1..Cm [, B1, B2]`` and ``event_id, p_true``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r} (shapes: {SHAPES})")
    rng = np.random.default_rng([seed, SHAPES.index(shape)])
    n = num_rows
    fields = fields_of(shape, rng)
    logit = np.full(n, -1.6)
    columns: dict[str, pa.Array] = {}
    values = {}
    for f in fields:
        v = draw_values(f, n, rng)
        effects = rng.normal(0.0, f.scale, f.cardinality + 1)  # the last one: missing
        logit += effects[v]  # v = -1 picks the missing effect
        values[f.name] = v
        columns[f.name] = _strings(v)
    if shape == "pairwise":
        names = [f.name for f in fields]
        pairs = rng.choice(len(names), size=(12, 2), replace=True)
        for a, b in pairs:
            if a == b:
                continue
            fa, fb = fields[a], fields[b]
            ua = rng.normal(0.0, 0.4, (fa.cardinality + 1, 4))
            ub = rng.normal(0.0, 0.4, (fb.cardinality + 1, 4))
            logit += np.einsum("nd,nd->n", ua[values[fa.name]], ub[values[fb.name]])
    if shape == "multi_valued":
        for name, card in (("B1", 300), ("B2", 3000)):
            effects = rng.normal(0.0, 0.6, card)
            lens = rng.integers(1, 7, n)
            offsets = np.concatenate([[0], np.cumsum(lens)])
            flat = rng.integers(0, card, offsets[-1])
            sums = np.add.reduceat(effects[flat], offsets[:-1])
            logit += sums / lens
            columns[name] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _strings(flat))
    dense = {}
    for i in range(NUM_DENSE):
        x = rng.poisson(rng.uniform(1, 20), n).astype(np.float64)
        logit += rng.normal(0.0, 0.3) * (np.log1p(x) - np.log1p(x).mean())
        x[rng.random(n) < 0.1] = np.nan
        dense[f"I{i + 1}"] = pa.array(x, pa.float64(), mask=np.isnan(x))
    p = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < p).astype(np.int32)
    start = dt.datetime(2026, 1, 1)
    ts = pa.array(np.datetime64(start, "us") + np.arange(n).astype("timedelta64[m]"), pa.timestamp("us"))
    ids = pa.array(np.arange(n, dtype=np.int64))
    clicks = pa.table({"event_id": ids, "ts": ts, "label": pa.array(label), **dense, **columns})
    oracle = pa.table({"event_id": ids, "p_true": pa.array(p)})
    return clicks, oracle


def categorical_columns(table: pa.Table) -> list[str]:
    return [c for c in table.column_names if c[0] in "CB" and c[1:].isdigit()]


def dense_columns(table: pa.Table) -> list[str]:
    return [c for c in table.column_names if c.startswith("I") and c[1:].isdigit()]
