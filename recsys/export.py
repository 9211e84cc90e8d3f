"""A consolidated, non-distributed CTR model: one file that scores encoded rows in one process.

The file (``torch.save``) holds the training config, the embedding layout (tables, salts), the
feature spec and plain CPU weights, so :func:`load_exported` rebuilds exactly the trained model
without TorchRec's distributed package and maps ids/hashes to rows as training did. It holds only
tensors and JSON-able values (OptEmbed's id remaps are tensors), so it loads with
``torch.load(weights_only=True)``: a file carrying any other pickled object is refused, not run.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from core.errors import InputError
from core.train_config import TrainConfig
from recsys.data.batches import encode_rows, make_batch
from recsys.data.features import FeatureSpec, block_from_arrow
from recsys.files import atomic_file
from recsys.modules.ctr import build_model
from recsys.modules.layouts import EmbeddingLayout

FORMAT = "recsys.ctr/1"


def _numpy_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _plain(value):
    """``value`` as JSON data (lists, dicts, str/int/float/bool/None): tuples become lists, numpy scalars numbers."""
    return json.loads(json.dumps(value, default=_numpy_scalar))


def _layout_dict(layout: EmbeddingLayout) -> dict:
    """The layout as JSON data, OptEmbed's (N_k,) id remaps as int64 tensors (weights-only loadable)."""
    d = layout.to_dict()
    remaps = d.pop("remaps", None)
    d = _plain(d)
    if remaps is not None:
        d["remaps"] = [torch.from_numpy(np.asarray(r, np.int64)) for r in remaps]
    return d


def save_exported(
    path: str, cfg: TrainConfig, layout: EmbeddingLayout, spec: FeatureSpec, state_dict: dict[str, torch.Tensor]
) -> None:
    """Write the model file atomically (temp file + rename, mode ``0666 & ~umask``): tensors + JSON data only."""
    payload = {
        "format": FORMAT,
        "config": cfg.model_dump(mode="json"),
        "layout": _layout_dict(layout),
        "spec": _plain(spec.to_dict()),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    with atomic_file(path) as f:
        torch.save(payload, f)


def load_tensor_file(path: str | Path, what: str) -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain data only, so a tampered file cannot run code.

    Raises:
        InputError: naming the file when it holds any other pickled object, or is not a torch file.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        raise InputError(
            f"{what} {path}: refused to load: it pickles {found.group(1) if found else 'an object'}, not only "
            "tensors and plain data (a tampered or foreign file?)"
        ) from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise InputError(f"{what} {path}: not readable as a torch file ({exc})".splitlines()[0]) from None
    if not isinstance(payload, dict):
        raise InputError(f"{what} {path}: expected a mapping, got a {type(payload).__name__}")
    return payload


class ExportedCTRModel(nn.Module):
    """The trained model for single-process scoring: ``predict(arrow_table) -> (N,) click probabilities``."""

    def __init__(self, cfg: TrainConfig, layout: EmbeddingLayout, spec: FeatureSpec, model: nn.Module):
        super().__init__()
        self.cfg, self.layout, self.spec, self.model = cfg, layout, spec, model

    def forward(self, dense: torch.Tensor, sparse) -> torch.Tensor:
        return torch.sigmoid(self.model(dense, sparse))

    @torch.no_grad()
    def predict(self, table: pa.Table, batch_size: int = 8192) -> np.ndarray:
        """Click probability of each row of an encoded table (the columns the model was trained on).

        Returns:
            (N,) float32 in [0, 1], in row order.
        """
        self.eval()
        if self.spec.label_col not in table.column_names:
            table = table.append_column(self.spec.label_col, pa.array(np.zeros(table.num_rows, np.int32)))
        if self.spec.id_col not in table.column_names:
            table = table.append_column(self.spec.id_col, pa.array(np.arange(table.num_rows, dtype=np.int64)))
        rows = encode_rows(block_from_arrow(table, self.spec, with_hash=self.layout.uses_hash), self.layout)
        out = [
            self(*_inputs(make_batch(rows, np.arange(i, min(i + batch_size, len(rows))))))
            for i in range(0, len(rows), batch_size)
        ]
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def _inputs(batch):
    return batch.dense, batch.sparse


def load_exported(path: str) -> ExportedCTRModel:
    """Load a file written by :func:`save_exported` into a plain CPU model (weights-only unpickling).

    Raises:
        InputError: the file holds anything but tensors and plain data, or is not a model file.
    """
    payload = load_tensor_file(path, "model file")
    if payload.get("format") != FORMAT:
        raise InputError(f"model file {path}: not a {FORMAT} model file (format {payload.get('format')!r})")
    cfg = TrainConfig.model_validate(payload["config"])
    spec = FeatureSpec.from_dict(payload["spec"])
    if "remaps" in payload["layout"]:  # OptEmbed: smaller tables + the vocabulary remap that travels with them
        from recsys.modules.optembed import PrunedLayout, build_optembed_model

        layout = PrunedLayout.from_dict(payload["layout"])
        model = build_optembed_model(cfg, layout, spec.num_dense_inputs, "cpu", supernet=False)
    else:
        layout = EmbeddingLayout.from_dict(payload["layout"])
        model = build_model(cfg, layout, spec.num_dense_inputs, "cpu")
    model.load_state_dict(payload["state_dict"])
    return ExportedCTRModel(cfg, layout, spec, model)
