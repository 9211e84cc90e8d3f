"""Rows mapped through an embedding layout, and mini-batches of them as (dense, KJT, label) tensors.

A batch of ``B`` rows has ``dense`` (B, 2n) float32, ``labels`` (B,) float32 and ``sparse``, a
``KeyedJaggedTensor`` with one key per layout key ("(K, B, L[k][i])"): key-major lengths (K*B,)
and values (sum of lengths,) holding table rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.data.features import RawBlock, take_jagged
from recsys.modules.layouts import EmbeddingLayout


@dataclass
class EncodedRows:
    """Rows ready for batching: per layout key a CSR (offsets (N+1,), rows (nnz,)) of table rows."""

    event_id: np.ndarray
    label: np.ndarray
    dense: np.ndarray
    keys: tuple[str, ...]
    offsets: list[np.ndarray]
    rows: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.event_id)


def encode_rows(block: RawBlock, layout: EmbeddingLayout) -> EncodedRows:
    """Map every sparse value of ``block`` to its table row under ``layout``."""
    offsets, rows = [], []
    for i, src in enumerate(layout.sources):
        j = block.sparse[src.feature]
        offsets.append(j.offsets)
        rows.append(layout.rows(i, j.ids, j.hashes))
    return EncodedRows(block.event_id, block.label, block.dense, layout.keys, offsets, rows)


@dataclass
class Batch:
    """One mini-batch: dense (B, 2n), sparse KJT (K keys, B rows), labels (B,), event_ids (B,) numpy."""

    dense: torch.Tensor
    sparse: KeyedJaggedTensor
    labels: torch.Tensor
    event_ids: np.ndarray

    def to(self, device: torch.device) -> "Batch":
        """This batch on ``device``; to a GPU through pinned host memory, copied without blocking the host."""
        if device.type != "cuda":
            return Batch(self.dense.to(device), self.sparse.to(device), self.labels.to(device), self.event_ids)
        return Batch(
            self.dense.pin_memory().to(device, non_blocking=True),
            self.sparse.pin_memory().to(device, non_blocking=True),
            self.labels.pin_memory().to(device, non_blocking=True),
            self.event_ids,
        )


def make_batch(data: EncodedRows, idx: np.ndarray) -> Batch:
    """The batch of rows ``idx`` (B,) of ``data``."""
    lengths, values = [], []
    for off, rows in zip(data.offsets, data.rows):
        ln, v = take_jagged(off, rows, idx)
        lengths.append(ln)
        values.append(v)
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=list(data.keys),
        values=torch.from_numpy(np.concatenate(values)),
        lengths=torch.from_numpy(np.concatenate(lengths).astype(np.int32)),
    )
    return Batch(torch.from_numpy(data.dense[idx]), kjt, torch.from_numpy(data.label[idx]), data.event_id[idx])


def batch_indices(
    n: int, batch_size: int, *, seed: int | None, epoch: int = 0, rank: int = 0, drop_last: bool = True
) -> list[np.ndarray]:
    """Row indices of each batch: a permutation from (seed, epoch, rank) (``seed=None``: in order)."""
    order = np.arange(n) if seed is None else np.random.default_rng([seed, epoch, rank]).permutation(n)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]
