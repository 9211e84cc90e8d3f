"""Random in-memory rows shaped for a layout (speed benchmarks and GPU checks; no Delta needed)."""

from __future__ import annotations

import numpy as np

from recsys.data.batches import EncodedRows
from recsys.modules.layouts import EmbeddingLayout


def random_rows(
    layout: EmbeddingLayout, num_rows: int, num_dense: int, *, seed: int, max_bag: int = 1, zipf: float = 1.1
) -> EncodedRows:
    """``num_rows`` rows with Zipf-distributed table rows per key (bags of 1..max_bag) and random labels.

    Returns:
        EncodedRows with dense (N, 2*num_dense) float32, labels (N,) float32 in {0, 1}.
    """
    rng = np.random.default_rng(seed)
    offsets, rows = [], []
    for src in layout.sources:
        lengths = rng.integers(1, max_bag + 1, num_rows) if max_bag > 1 else np.ones(num_rows, np.int64)
        off = np.zeros(num_rows + 1, np.int64)
        np.cumsum(lengths, out=off[1:])
        r = (rng.zipf(zipf, int(off[-1])) - 1) % src.num_rows
        offsets.append(off)
        rows.append(r.astype(np.int64))
    dense = rng.random((num_rows, 2 * num_dense)).astype(np.float32)
    label = (rng.random(num_rows) < 0.25).astype(np.float32)
    return EncodedRows(np.arange(num_rows, dtype=np.int64), label, dense, layout.keys, offsets, rows)
