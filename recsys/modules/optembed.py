"""OptEmbed's plain modules: the supernet CTR model (row masks + dimension masks) and the pruned layout.

Symbols: ``B`` batch, ``K`` layout keys (one per feature here: OptEmbed needs per-feature tables),
``D`` = ``embedding_dim`` (the supernet's full width), ``w_k`` a key's searched width (<= D).

* :class:`OptEmbedCTRModel` is a :class:`~recsys.modules.ctr.CTRModel` whose pooled vectors pass
  through OptEmbed's masks before the interaction. The masks act on the *looked-up* vectors, not
  on the tables, so the same code runs whatever the sharding (the pooled output of a sharded
  ``EmbeddingBagCollection`` is always the full D-wide row, gathered back by TorchRec):

  - row mask (OptEmbed-E, single-valued keys only): ``m = step(mean|e| - t_k)`` of the row this
    example looked up (for a one-value bag the pooled vector *is* the row), so the norm is that of
    the row and the surrogate gradient reaches the threshold ``t_k`` and, through the fused
    optimizer, the row itself. Ids 0 (missing) and 1 (OOV) are never masked.
  - dimension mask (OptEmbed-D): training keeps a random prefix per (example, key); evaluation
    keeps ``eval_widths`` (set by the search) or everything.
  - ``table_widths`` (retrained model): tables narrower than D are zero-padded back to D, which
    is exactly what the supernet's prefix mask showed the dense layers, so the dense layers keep
    their shapes and the retrain can restart from the supernet's initial weights.
* :class:`PrunedLayout` is an :class:`~recsys.modules.layouts.EmbeddingLayout` whose keys map
  their old rows through a remap (pruned rows -> the shared OOV row) into smaller tables, so the
  exported model scores raw vocabulary ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recsys.modules.ctr import CTRModel, seeded_build
from recsys.modules.layouts import EmbeddingLayout, KeySource, TableSpec
from recsys.optembed import prefix_masks, prune_remap, row_mask, sample_dim_masks, threshold_penalty


@dataclass(frozen=True)
class PrunedLayout(EmbeddingLayout):
    """A per-feature layout after OptEmbed: key ``k``'s old row ``r`` is row ``remaps[k][r]`` of a smaller table.

    ``embedding_dim`` stays the supernet's D (the width the dense layers see); ``tables`` carry the
    kept rows and searched widths. Old rows beyond a remap (ids a newer vocabulary appended) go to
    the OOV row, like pruned ones.
    """

    remaps: tuple[np.ndarray, ...] = ()
    oov_rows: tuple[int, ...] = ()

    def rows(self, key_index: int, ids: np.ndarray, hashes: np.ndarray | None) -> np.ndarray:
        old = super().rows(key_index, ids, hashes)
        remap = self.remaps[key_index]
        inside = old < len(remap)
        return np.where(inside, remap[np.where(inside, old, 0)], self.oov_rows[key_index]).astype(np.int64)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["remaps"] = [np.asarray(r) for r in self.remaps]
        d["oov_rows"] = list(self.oov_rows)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PrunedLayout":
        base = EmbeddingLayout.from_dict(d)
        return cls(
            **{f: getattr(base, f) for f in ("kind", "embedding_dim", "tables", "keys", "sources", "groups")},
            remaps=tuple(np.asarray(r, np.int64) for r in d["remaps"]),
            oov_rows=tuple(d["oov_rows"]),
        )

    @classmethod
    def from_masks(
        cls, layout: EmbeddingLayout, keeps: list[np.ndarray], widths: list[int], oov_id: int = 1
    ) -> "PrunedLayout":
        """Compact ``layout`` (per-feature tables) to the rows in ``keeps`` (K x (N_k,) bool) and ``widths``."""
        tables, sources, remaps, oovs = [], [], [], []
        for t, src, keep, w in zip(layout.tables, layout.sources, keeps, widths):
            remap = prune_remap(keep, oov_id=oov_id)
            n = int(remap.max()) + 1
            tables.append(TableSpec(t.name, n, int(w), t.feature_names))
            sources.append(KeySource(src.feature, src.table, src.num_rows, src.salt))
            remaps.append(remap)
            oovs.append(int(remap[oov_id]))
        return cls(
            layout.kind,
            layout.embedding_dim,
            tuple(tables),
            layout.keys,
            tuple(sources),
            layout.groups,
            remaps=tuple(remaps),
            oov_rows=tuple(oovs),
        )


class OptEmbedCTRModel(CTRModel):
    """CTR model with OptEmbed masks between the lookups and the interaction (see the module docstring).

    Args:
        supernet: True: learnable ``thresholds`` (K,) and random prefix masks in training.
        prune_keys: (K,) bool, keys whose rows may be pruned (single-valued features).
        row_pruning, dim_search: switch OptEmbed-E / -D (supernet only).
        table_widths: (K,) actual table widths (retrained model; narrower tables are zero-padded to D).
        CTRModel's arguments otherwise (its ``key_dims`` are all D here).
    Forward:
        dense (B, 2n), sparse KJT -> logits (B,).
    """

    def __init__(
        self,
        *,
        supernet: bool,
        prune_keys: list[bool],
        row_pruning: bool = True,
        dim_search: bool = True,
        table_widths: list[int] | None = None,
        **ctr_args,
    ):
        super().__init__(**ctr_args)
        self.embedding_dim = ctr_args["embedding_dim"]
        self.supernet = supernet
        self.row_pruning = supernet and row_pruning
        self.dim_search = supernet and dim_search
        self.prune_keys = list(prune_keys)
        self.table_widths = list(table_widths) if table_widths is not None else None
        if supernet:
            # frozen without row pruning, so DDP never waits for a gradient that cannot come
            self.thresholds = nn.Parameter(torch.zeros(len(self.keys)), requires_grad=self.row_pruning)
        self.eval_widths: torch.Tensor | None = None  # (K,) set by the search
        self.generator: torch.Generator | None = None  # seeded per rank by the trainer

    def pooled(self, sparse, looked_up: dict | None = None) -> list[torch.Tensor]:
        """K x (B, D) pooled vectors after padding, row masks and dimension masks."""
        emb = super().pooled(sparse, looked_up)
        dim = self.embedding_dim
        if self.table_widths is not None:
            emb = [nn.functional.pad(e, (0, dim - e.shape[1])) if e.shape[1] < dim else e for e in emb]
        if self.row_pruning:
            ids = sparse.to_dict()
            for i, k in enumerate(self.keys):
                if self.prune_keys[i]:
                    m = row_mask(emb[i], self.thresholds[i])  # (B,)
                    m = torch.where(ids[k].values() <= 1, torch.ones_like(m), m)  # missing/OOV rows stay
                    emb[i] = emb[i] * m.unsqueeze(1)
        if self.dim_search:
            if self.training:
                masks = sample_dim_masks(emb[0].shape[0], len(emb), dim, self.generator).to(emb[0].device)  # (B, K, D)
                emb = [e * masks[:, i] for i, e in enumerate(emb)]
            elif self.eval_widths is not None:
                masks = prefix_masks(self.eval_widths, dim).to(emb[0].device)  # (K, D)
                emb = [e * masks[i] for i, e in enumerate(emb)]
        return emb

    def penalty(self, alpha: float) -> torch.Tensor:
        """``alpha * sum exp(-t_k)`` over the prunable keys (0 without row pruning)."""
        if not self.row_pruning or not any(self.prune_keys):
            return torch.zeros(())
        idx = torch.tensor([i for i, p in enumerate(self.prune_keys) if p])
        return threshold_penalty(self.thresholds[idx], alpha)


def build_optembed_model(
    cfg,
    layout: EmbeddingLayout,
    num_dense_inputs: int,
    device="cpu",
    seed: int | None = None,
    *,
    supernet: bool,
    prune_keys: list[bool] | None = None,
) -> OptEmbedCTRModel:
    """The OptEmbed CTR model of ``cfg`` (a ``TrainConfig``) for ``layout``; seeded like ``build_model``.

    The dense layers are drawn after the tables from the same seed, so a supernet and its
    retrained model built from the same seed start from identical dense weights.
    """
    oe = cfg.optembed
    widths = [t.embedding_dim for t in layout.tables] if isinstance(layout, PrunedLayout) else None
    return seeded_build(
        OptEmbedCTRModel,
        cfg,
        layout,
        num_dense_inputs,
        device,
        seed,
        supernet=supernet,
        prune_keys=prune_keys or [False] * len(layout.keys),
        row_pruning=oe.row_pruning,
        dim_search=oe.dim_search,
        table_widths=widths,
    )
