"""CTR models: DLRM and DCN-v2 over an ``EmbeddingBagCollection`` (plain modules; one CPU is enough).

Symbols: ``B`` batch, ``n`` dense features (dense input width 2n), ``K`` layout keys (one pooled
vector each, width ``D`` = ``embedding_dim``), ``H`` dense-arch output width (= D for DLRM).
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.modules.mlp import MLP
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.modules.layouts import EmbeddingLayout


def pairwise_dots(vectors: torch.Tensor) -> torch.Tensor:
    """DLRM's interaction (Naumov et al. 2019): dot products of every pair of vectors, i < j.

    Args:
        vectors: (B, S, D).
    Returns:
        (B, S*(S-1)/2), pairs in row-major upper-triangle order ((0,1), (0,2), ..., (S-2,S-1)).
    """
    s = vectors.shape[1]
    gram = torch.bmm(vectors, vectors.transpose(1, 2))  # (B, S, S)
    i, j = torch.triu_indices(s, s, offset=1, device=vectors.device)
    return gram[:, i, j]


class CTRModel(nn.Module):
    """Dense MLP + embedding bags + interaction (``dlrm`` dot products or ``dcn`` low-rank cross net) + top MLP.

    Args:
        ebc: the embedding tables (sharded from outside by ``recsys.distributed``).
        keys: the KJT keys, in the order the pooled vectors are used.
        key_dims: width of each key's table (default all ``embedding_dim``); ``dcn`` allows them to differ
            (e.g. per-field widths found by a dimension search), ``dlrm`` does not.
        num_dense_inputs: 2n. interaction: ``dlrm`` or ``dcn``.
    Forward:
        dense (B, 2n) float32, sparse KJT with ``keys`` -> logits (B,).
    """

    def __init__(self, *, ebc: EmbeddingBagCollection, keys: list[str], embedding_dim: int, num_dense_inputs: int,
                 interaction: str, dense_arch: list[int], over_arch: list[int], cross_layers: int = 2,
                 cross_rank: int = 16, key_dims: list[int] | None = None):
        super().__init__()
        key_dims = list(key_dims) if key_dims is not None else [embedding_dim] * len(keys)
        if interaction == "dlrm" and set(key_dims) != {embedding_dim}:
            raise ValueError(f"dlrm needs every table at embedding_dim={embedding_dim}; got widths {sorted(set(key_dims))}"
                             " (use dcn for per-table widths)")
        self.ebc = ebc
        self.keys = list(keys)
        self.interaction = interaction
        if interaction == "dlrm":
            arch = list(dense_arch[:-1]) + [embedding_dim]  # DLRM: dense vector joins the dot products
        else:
            arch = list(dense_arch)
        self.dense_arch = MLP(num_dense_inputs, arch)
        num_vectors = len(keys)
        if interaction == "dlrm":
            s = num_vectors + 1
            top_in = embedding_dim + s * (s - 1) // 2
            self.cross = None
        elif interaction == "dcn":
            top_in = arch[-1] + sum(key_dims)
            self.cross = LowRankCrossNet(top_in, num_layers=cross_layers, low_rank=cross_rank)
        else:
            raise ValueError(f"unknown interaction {interaction!r}")
        self.over_arch = MLP(top_in, list(over_arch))
        self.head = nn.Linear(over_arch[-1], 1)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        d = self.dense_arch(dense)                                   # (B, H)
        pooled = self.ebc(sparse).to_dict()
        emb = [pooled[k] for k in self.keys]                         # K x (B, D)
        if self.interaction == "dlrm":
            vecs = torch.stack([d] + emb, dim=1)                     # (B, K+1, D)
            x = torch.cat([d, pairwise_dots(vecs)], dim=1)           # (B, D + (K+1)K/2)
        else:
            x = self.cross(torch.cat([d] + emb, dim=1))              # (B, H + K*D)
        return self.head(self.over_arch(x)).squeeze(-1)              # (B,)


def build_model(cfg, layout: EmbeddingLayout, num_dense_inputs: int, device: torch.device | str = "cpu",
                seed: int | None = None) -> CTRModel:
    """The CTR model of ``cfg`` (a ``TrainConfig``) for ``layout``; weights drawn from ``seed`` if given.

    The seed is used inside ``torch.random.fork_rng``, so the caller's global RNG is untouched.
    """
    return seeded_build(CTRModel, cfg, layout, num_dense_inputs, device, seed, key_dims=layout.key_dims)


def seeded_build(model_cls, cfg, layout: EmbeddingLayout, num_dense_inputs: int, device: torch.device | str,
                 seed: int | None, **extra):
    """Build ``model_cls`` (a CTRModel) from ``cfg.model`` and ``layout``: tables first, then dense layers.

    Weights are drawn from ``seed`` inside ``torch.random.fork_rng`` (the caller's RNG is untouched),
    so two models built from the same seed start from identical weights.
    """
    device = torch.device(device)
    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        with device:
            ebc = EmbeddingBagCollection(tables=layout.table_configs(cfg.pooling.upper()), device=device)
            return model_cls(ebc=ebc, keys=list(layout.keys), embedding_dim=layout.embedding_dim,
                             num_dense_inputs=num_dense_inputs, interaction=m.kind, dense_arch=m.dense_arch,
                             over_arch=m.over_arch, cross_layers=getattr(m, "cross_layers", 2),
                             cross_rank=getattr(m, "cross_rank", 16), **extra)


class PlainEmbeddingBags(nn.Module):
    """The same tables as an ``EmbeddingBagCollection`` but as plain ``nn.EmbeddingBag``s (speed baseline).

    Forward: KJT -> an object with ``to_dict()`` giving key -> (B, D), like ``KeyedTensor``.
    """

    def __init__(self, layout: EmbeddingLayout, mode: str = "sum", sparse: bool = False):
        super().__init__()
        self.bags = nn.ModuleDict({t.name: nn.EmbeddingBag(t.num_embeddings, t.embedding_dim, mode=mode,
                                                           include_last_offset=True, sparse=sparse)
                                   for t in layout.tables})
        self.table_of = {k: s.table for k, s in zip(layout.keys, layout.sources)}

    def forward(self, sparse: KeyedJaggedTensor):
        out = {}
        for k, jt in sparse.to_dict().items():
            out[k] = self.bags[self.table_of[k]](jt.values(), jt.offsets())
        return _Pooled(out)


class _Pooled:
    def __init__(self, d):
        self._d = d

    def to_dict(self):
        return self._d
