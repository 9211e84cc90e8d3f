"""CTR models: DLRM, DCN-v2 and DeepFM from TorchRec's arches over an ``EmbeddingBagCollection`` (plain modules).

Symbols: ``B`` batch, ``n`` dense features (dense input width 2n), ``K`` layout keys (one pooled
vector each, width ``D`` = ``embedding_dim``), ``H`` dense-arch output width (= D for DLRM and DeepFM).
Any of them may add a first-order (wide) term: the sum of the rows of the layout's wide keys.
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


def fm_second_order(vectors: torch.Tensor) -> torch.Tensor:
    """FM's second-order term (Rendle 2010, as in DeepFM): the sum of <v_i, v_j> over pairs i < j.

    Computed as ``((sum_i v_i)^2 - sum_i v_i^2).sum(-1) / 2``. Not TorchRec's ``FactorizationMachine``,
    which flattens the S x D inputs into one vector first and so also multiplies across dimensions.

    Args:
        vectors: (B, S, D).
    Returns:
        (B,).
    """
    total = vectors.sum(1)  # (B, D)
    return 0.5 * (total * total - (vectors * vectors).sum(1)).sum(-1)


class CTRModel(nn.Module):
    """TorchRec's DLRM arches over our embedding bags: ``DenseArch`` -> interaction -> ``OverArch``.

    ``dlrm``: dot products of every pair of the dense vector and the K pooled vectors
    (:func:`pairwise_dots`). ``dcn``: TorchRec's ``LowRankCrossNet`` (DCN-v2, Wang et al. 2021) over
    the concatenation; not ``InteractionDCNArch``, which needs every key at one width, while unified
    chunks and OptEmbed's searched widths give keys their own widths. ``deepfm`` (Guo et al. 2017):
    the over arch (the "deep" MLP) reads the concatenation and :func:`fm_second_order` of the dense
    vector and the K pooled vectors is added to its logit. ``wide_keys`` add a first-order term.

    Args:
        ebc: the embedding tables (sharded from outside by ``recsys.distributed``).
        keys: the KJT keys of the interaction, in the order the pooled vectors are used.
        key_dims: width of each key's vector (default all ``embedding_dim``); ``dcn`` allows them to differ,
            ``dlrm`` and ``deepfm`` do not.
        num_dense_inputs: 2n. interaction: ``dlrm``, ``dcn`` or ``deepfm``.
        wide_keys: KJT keys of narrow tables whose pooled rows are summed into the logit (one weight per value).
        embedding_l2: in training, ``penalty_`` = this x the batch mean of the squared norms of every
            looked-up vector (wide ones included): L2 on the rows a batch uses, whatever the sharding.
            Not FBGEMM's fused ``weight_decay``: with ``weight_decay_mode`` L2 its CPU rowwise Adagrad
            left the rows bit-identical (fbgemm-gpu-cpu 1.9.0, measured).
    Forward:
        dense (B, 2n) float32, sparse KJT with ``keys`` and ``wide_keys`` -> logits (B,).
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
        wide_keys: list[str] | None = None,
        embedding_l2: float = 0.0,
    ):
        super().__init__()
        self.embedding_l2 = embedding_l2
        self.frozen_keys: frozenset[str] = frozenset()  # keys of tables never trained: no L2
        self.penalty_: torch.Tensor | None = None
        key_dims = list(key_dims) if key_dims is not None else [embedding_dim] * len(keys)
        if interaction not in ("dlrm", "dcn", "deepfm"):
            raise ValueError(f"unknown interaction {interaction!r}")
        if interaction != "dcn" and set(key_dims) != {embedding_dim}:
            raise ValueError(
                f"{interaction} needs every table at embedding_dim={embedding_dim}; got widths "
                f"{sorted(set(key_dims))} (use dcn for per-table widths)"
            )
        self.ebc = ebc
        self.keys = list(keys)
        self.wide_keys = list(wide_keys or [])
        self.interaction = interaction
        # DLRM and DeepFM: the dense vector joins the dot products, so its last layer is D wide
        arch = list(dense_arch[:-1]) + [embedding_dim] if interaction != "dcn" else list(dense_arch)
        self.dense_arch = DenseArch(num_dense_inputs, arch)
        if interaction == "dlrm":
            s = len(keys) + 1
            top_in = embedding_dim + s * (s - 1) // 2
            self.interaction_arch = None
        elif interaction == "dcn":
            top_in = arch[-1] + sum(key_dims)
            self.interaction_arch = LowRankCrossNet(top_in, num_layers=cross_layers, low_rank=cross_rank)
        else:
            top_in = arch[-1] + sum(key_dims)
            self.interaction_arch = None
        self.over_arch = OverArch(top_in, [*over_arch, 1])

    def pooled(self, sparse: KeyedJaggedTensor, looked_up: dict | None = None) -> list[torch.Tensor]:
        """K x (B, D_k): the pooled vector of each key (the hook OptEmbed masks); ``looked_up``: the EBC's output."""
        pooled = looked_up if looked_up is not None else self.ebc(sparse).to_dict()
        return [pooled[k] for k in self.keys]

    def interact(self, dense: torch.Tensor, emb: list[torch.Tensor]) -> torch.Tensor:
        """(B, H) dense-arch output and K x (B, D_k) pooled vectors -> the over-arch input."""
        if self.interaction == "dlrm":
            vectors = torch.stack([dense] + emb, dim=1)  # (B, K+1, D)
            return torch.cat([dense, pairwise_dots(vectors)], dim=1)  # (B, D + (K+1)K/2)
        if self.interaction == "deepfm":
            return torch.cat([dense] + emb, dim=1)  # (B, D + K*D)
        return self.interaction_arch(torch.cat([dense] + emb, dim=1))  # (B, H + sum D_k)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        looked_up = self.ebc(sparse).to_dict()
        d = self.dense_arch(dense)  # (B, H)
        emb = self.pooled(sparse, looked_up)
        logits = self.over_arch(self.interact(d, emb)).squeeze(-1)  # (B,)
        if self.interaction == "deepfm":
            logits = logits + fm_second_order(torch.stack([d] + emb, dim=1))
        for k in self.wide_keys:  # first-order terms: one learned weight per value (its columns' sum)
            logits = logits + looked_up[k].sum(-1)
        if self.training and self.embedding_l2:
            used = [looked_up[k] for k in self.keys + self.wide_keys if k not in self.frozen_keys]
            self.penalty_ = self.embedding_l2 * sum((e * e).sum(1).mean() for e in used)
        return logits


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
        self.frozen_keys = frozenset(graph_keys)

    def pooled(self, sparse: KeyedJaggedTensor, looked_up: dict | None = None) -> list[torch.Tensor]:
        """K x (B, D_k): the features' pooled vectors, graph keys' projected to D."""
        emb = super().pooled(sparse, looked_up)
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
                keys=list(layout.interaction_keys),
                wide_keys=list(layout.wide),
                embedding_l2=getattr(cfg, "embedding_l2", 0.0),
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
