"""CTR models: DLRM and DCN-v2 from TorchRec's arches over an ``EmbeddingBagCollection`` (plain modules).

Symbols: ``B`` batch, ``n`` dense features (dense input width 2n), ``K`` layout keys (one pooled
vector each, width ``D`` = ``embedding_dim``), ``H`` dense-arch output width (= D for DLRM).
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.models.dlrm import DenseArch, OverArch
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.modules.layouts import EmbeddingLayout


def pairwise_dots(vectors: torch.Tensor) -> torch.Tensor:
    """DLRM's interaction (Naumov et al. 2019): dot products of every pair of vectors, i < j.

    TorchRec's ``InteractionArch`` computes the same, but keeps its pair indices in a non-persistent
    buffer, which a model built on ``device="meta"`` for ``DistributedModelParallel`` never gets back.

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
    """TorchRec's DLRM arches over our embedding bags: ``DenseArch`` -> interaction -> ``OverArch``.

    ``dlrm``: dot products of every pair of the dense vector and the K pooled vectors
    (:func:`pairwise_dots`). ``dcn``: TorchRec's ``LowRankCrossNet`` (DCN-v2, Wang et al. 2021) over
    the concatenation; not ``InteractionDCNArch``, which needs every key at one width, while unified
    chunks and OptEmbed's searched widths give keys their own widths.

    Args:
        ebc: the embedding tables (sharded from outside by ``recsys.distributed``).
        keys: the KJT keys, in the order the pooled vectors are used.
        key_dims: width of each key's vector (default all ``embedding_dim``); ``dcn`` allows them to differ,
            ``dlrm`` does not.
        num_dense_inputs: 2n. interaction: ``dlrm`` or ``dcn``.
    Forward:
        dense (B, 2n) float32, sparse KJT with ``keys`` -> logits (B,).
    """

    def __init__(
        self,
        *,
        ebc: EmbeddingBagCollection,
        keys: list[str],
        embedding_dim: int,
        num_dense_inputs: int,
        interaction: str,
        dense_arch: list[int],
        over_arch: list[int],
        cross_layers: int = 2,
        cross_rank: int = 16,
        key_dims: list[int] | None = None,
    ):
        super().__init__()
        key_dims = list(key_dims) if key_dims is not None else [embedding_dim] * len(keys)
        if interaction == "dlrm" and set(key_dims) != {embedding_dim}:
            raise ValueError(
                f"dlrm needs every table at embedding_dim={embedding_dim}; got widths {sorted(set(key_dims))}"
                " (use dcn for per-table widths)"
            )
        if interaction not in ("dlrm", "dcn"):
            raise ValueError(f"unknown interaction {interaction!r}")
        self.ebc = ebc
        self.keys = list(keys)
        self.interaction = interaction
        # DLRM: the dense vector joins the dot products, so its last layer is D wide
        arch = list(dense_arch[:-1]) + [embedding_dim] if interaction == "dlrm" else list(dense_arch)
        self.dense_arch = DenseArch(num_dense_inputs, arch)
        if interaction == "dlrm":
            s = len(keys) + 1
            top_in = embedding_dim + s * (s - 1) // 2
            self.interaction_arch = None
        else:
            top_in = arch[-1] + sum(key_dims)
            self.interaction_arch = LowRankCrossNet(top_in, num_layers=cross_layers, low_rank=cross_rank)
        self.over_arch = OverArch(top_in, [*over_arch, 1])

    def pooled(self, sparse: KeyedJaggedTensor) -> list[torch.Tensor]:
        """K x (B, D_k): the pooled vector of each key (the hook OptEmbed masks)."""
        pooled = self.ebc(sparse).to_dict()
        return [pooled[k] for k in self.keys]

    def interact(self, dense: torch.Tensor, emb: list[torch.Tensor]) -> torch.Tensor:
        """(B, H) dense-arch output and K x (B, D_k) pooled vectors -> the over-arch input."""
        if self.interaction == "dlrm":
            vectors = torch.stack([dense] + emb, dim=1)  # (B, K+1, D)
            return torch.cat([dense, pairwise_dots(vectors)], dim=1)  # (B, D + (K+1)K/2)
        return self.interaction_arch(torch.cat([dense] + emb, dim=1))  # (B, H + sum D_k)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        d = self.dense_arch(dense)  # (B, H)
        return self.over_arch(self.interact(d, self.pooled(sparse))).squeeze(-1)  # (B,)


class GraphCTRModel(CTRModel):
    """A :class:`CTRModel` whose frozen graph tables (FastRP rows) enter the interaction through learned projections.

    The pooled vector of graph key ``g`` (B, d_g) is detached, so no gradient ever reaches its
    table (the FastRP rows stay as they are, whatever the sharding), then ``Linear(d_g, D)`` maps
    it to one more (B, D) interaction vector: a DLRM dot partner or a DCN input like any other.

    Args:
        graph_keys: graph KJT key -> d_g (its table's width). CTRModel's arguments otherwise, with
            ``key_dims`` the interaction widths (graph keys at D).
    """

    def __init__(self, *, graph_keys: dict[str, int], **ctr_args):
        super().__init__(**ctr_args)
        dim = ctr_args["embedding_dim"]
        self.graph_projections = nn.ModuleDict({k: nn.Linear(d, dim) for k, d in graph_keys.items()})

    def pooled(self, sparse: KeyedJaggedTensor) -> list[torch.Tensor]:
        """K x (B, D_k): the features' pooled vectors, graph keys' projected to D."""
        emb = super().pooled(sparse)
        proj = self.graph_projections
        return [proj[k](e.detach()) if k in proj else e for k, e in zip(self.keys, emb)]


def build_model(
    cfg, layout: EmbeddingLayout, num_dense_inputs: int, device: torch.device | str = "cpu", seed: int | None = None
) -> CTRModel:
    """The CTR model of ``cfg`` (a ``TrainConfig``) for ``layout``; weights drawn from ``seed`` if given.

    The seed is used inside ``torch.random.fork_rng``, so the caller's global RNG is untouched. A
    layout with frozen graph tables gives a :class:`GraphCTRModel`.
    """
    if layout.graph_keys:
        return seeded_build(
            GraphCTRModel,
            cfg,
            layout,
            num_dense_inputs,
            device,
            seed,
            key_dims=layout.interaction_dims,
            graph_keys=layout.graph_keys,
        )
    return seeded_build(CTRModel, cfg, layout, num_dense_inputs, device, seed, key_dims=layout.key_dims)


def seeded_build(
    model_cls,
    cfg,
    layout: EmbeddingLayout,
    num_dense_inputs: int,
    device: torch.device | str,
    seed: int | None,
    **extra,
):
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
            return model_cls(
                ebc=ebc,
                keys=list(layout.keys),
                embedding_dim=layout.embedding_dim,
                num_dense_inputs=num_dense_inputs,
                interaction=m.kind,
                dense_arch=m.dense_arch,
                over_arch=m.over_arch,
                cross_layers=getattr(m, "cross_layers", 2),
                cross_rank=getattr(m, "cross_rank", 16),
                **extra,
            )


class PlainEmbeddingBags(nn.Module):
    """The same tables as an ``EmbeddingBagCollection`` but as plain ``nn.EmbeddingBag``s (speed baseline).

    Forward: KJT -> an object with ``to_dict()`` giving key -> (B, D), like ``KeyedTensor``.
    """

    def __init__(self, layout: EmbeddingLayout, mode: str = "sum", sparse: bool = False):
        super().__init__()
        self.bags = nn.ModuleDict(
            {
                t.name: nn.EmbeddingBag(
                    t.num_embeddings, t.embedding_dim, mode=mode, include_last_offset=True, sparse=sparse
                )
                for t in layout.tables
            }
        )
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
