"""Plain CTR modules on one CPU: exact interaction values, output shapes, determinism for a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ctr_tables import train_config
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from core.train_config import UnifiedLayoutConfig
from recsys.modules.ctr import CTRModel, PlainEmbeddingBags, build_model, fm_second_order, pairwise_dots
from recsys.modules.layouts import make_layout, with_wide

SIZES = {"C1": 20, "C2": 10, "tags": 5}


def test_pairwise_dots_is_the_upper_triangle_of_the_gram_matrix():
    v = torch.tensor([[[1.0, 0.0], [2.0, 3.0], [0.0, 1.0]]])  # (B=1, S=3, D=2)
    assert pairwise_dots(v).tolist() == [[2.0, 0.0, 3.0]]  # (0,1), (0,2), (1,2)


def test_fm_second_order_is_the_sum_of_the_dot_products_of_all_pairs():
    v = torch.tensor([[[1.0, 0.0], [2.0, 3.0], [0.0, 1.0]]])  # dots: (0,1)=2, (0,2)=0, (1,2)=3
    assert fm_second_order(v).tolist() == [5.0]
    x = torch.randn(4, 5, 3)
    torch.testing.assert_close(fm_second_order(x), pairwise_dots(x).sum(1))


def test_deepfm_adds_the_fm_term_of_the_dense_and_pooled_vectors_to_the_deep_logit():
    model = tiny_model("deepfm")
    dense, kjt = torch.ones(2, 2), _kjt(["a", "b"])
    d = model.dense_arch(dense)
    emb = model.pooled(kjt)
    deep = model.over_arch(torch.cat([d, *emb], dim=1)).squeeze(-1)
    want = deep + fm_second_order(torch.stack([d, *emb], dim=1))
    torch.testing.assert_close(model(dense, kjt), want)


def test_the_wide_term_adds_one_learned_weight_per_value_to_the_logit():
    # given a model with the wide term and a batch whose C1 values are 1 (row 0) and 2, 3 (row 1)
    cfg = train_config(model={"kind": "dlrm", "dense_arch": [8], "over_arch": [8], "wide": True})
    layout = with_wide(make_layout(cfg.layout, list(SIZES), SIZES, cfg.embedding_dim, seed=0))
    model = build_model(cfg, layout, 4, seed=0)
    dense, kjt = torch.ones(2, 4), _kjt(layout.keys)
    before = model(dense, kjt).detach()
    # when C1's wide weights of values 1 and 3 grow by 0.5 and 2
    with torch.no_grad():
        model.ebc.embedding_bags["wide__C1"].weight[1, 0] += 0.5
        model.ebc.embedding_bags["wide__C1"].weight[3, 2] += 2.0
    # then the logits grow by exactly those weights (row 1 sums its bag: sum pooling)
    torch.testing.assert_close(model(dense, kjt).detach() - before, torch.tensor([0.5, 2.0]))


def test_the_wide_layout_gives_each_table_a_narrow_twin_looked_up_by_the_same_rows():
    base = make_layout(UnifiedLayoutConfig(total_rows=16, chunks={"C1": 2}), list(SIZES), SIZES, 4, seed=0)
    layout = with_wide(base)
    assert [(t.name, t.num_embeddings, t.embedding_dim) for t in layout.tables] == [
        ("unified", 16, 4),
        ("wide__unified", 16, 4),
    ]
    assert layout.interaction_keys == base.keys and layout.wide == tuple(f"wide__{k}" for k in base.keys)
    ids, hashes = np.arange(5), np.arange(5) * 7919
    for i, k in enumerate(base.keys):
        j = layout.keys.index(f"wide__{k}")
        assert np.array_equal(layout.rows(j, ids, hashes), base.rows(i, ids, hashes))
    assert layout.feature_widths == base.feature_widths and layout.key_dims == base.key_dims


def tiny_model(kind: str) -> CTRModel:
    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    tables = [EmbeddingBagConfig(name=k, feature_names=[k], num_embeddings=4, embedding_dim=2) for k in ("a", "b")]
    return CTRModel(
        ebc=EmbeddingBagCollection(tables=tables),
        keys=["a", "b"],
        embedding_dim=2,
        num_dense_inputs=2,
        interaction=kind,
        dense_arch=[2],
        over_arch=[4],
        cross_rank=2,
    )


def test_dlrm_interaction_is_the_dense_vector_then_the_upper_triangle_of_the_gram_matrix():
    # given the dense vector (1, 0) and pooled vectors (2, 3), (0, 1)
    d, emb = torch.tensor([[1.0, 0.0]]), [torch.tensor([[2.0, 3.0]]), torch.tensor([[0.0, 1.0]])]
    # then the over arch sees d, then the dots (d,a), (d,b), (a,b)
    assert tiny_model("dlrm").interact(d, emb).tolist() == [[1.0, 0.0, 2.0, 0.0, 3.0]]


def test_dcn_crosses_the_concatenation_of_the_dense_and_pooled_vectors():
    model = tiny_model("dcn")
    d, emb = torch.tensor([[1.0, 0.0]]), [torch.tensor([[2.0, 3.0]]), torch.tensor([[0.0, 1.0]])]
    x = torch.tensor([[1.0, 0.0, 2.0, 3.0, 0.0, 1.0]])
    assert torch.equal(model.interact(d, emb), model.interaction_arch(x))
    assert model.interact(d, emb).shape == (1, 6)


def _kjt(keys, batch_size=2):
    # every key: row 0 has one value, row 1 has two
    lengths = torch.tensor([1, 2] * len(keys), dtype=torch.int32)
    values = torch.tensor([1, 2, 3] * len(keys))
    return KeyedJaggedTensor.from_lengths_sync(keys=list(keys), values=values, lengths=lengths)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("kind", ["dlrm", "dcn", "deepfm"])
@pytest.mark.parametrize("layout_cfg", [None, UnifiedLayoutConfig(total_rows=16, chunks={"C1": 3})])
def test_models_map_a_batch_to_one_logit_per_row(kind, layout_cfg, wide):
    model_cfg = {"kind": kind, "dense_arch": [8], "over_arch": [8], "wide": wide}
    cfg = train_config(model=model_cfg, **({"layout": layout_cfg} if layout_cfg else {}))
    layout = make_layout(cfg.layout, list(SIZES), SIZES, cfg.embedding_dim, seed=0)
    layout = with_wide(layout) if wide else layout
    model = build_model(cfg, layout, num_dense_inputs=4, seed=0)
    out = model(torch.ones(2, 4), _kjt(layout.keys))
    assert out.shape == (2,) and torch.isfinite(out).all()


def test_same_seed_same_weights_other_seed_other_weights():
    cfg = train_config()
    layout = make_layout(cfg.layout, list(SIZES), SIZES, cfg.embedding_dim, seed=0)
    a, b, c = (build_model(cfg, layout, 4, seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["ebc.embedding_bags.C1.weight"], c["ebc.embedding_bags.C1.weight"])


def test_plain_embedding_bags_match_the_collection_for_the_same_weights():
    cfg = train_config()
    layout = make_layout(cfg.layout, list(SIZES), SIZES, cfg.embedding_dim, seed=0)
    model = build_model(cfg, layout, 4, seed=0)
    plain = PlainEmbeddingBags(layout)
    for name, bag in plain.bags.items():
        bag.weight.data.copy_(model.ebc.embedding_bags[name].weight.data)
    kjt = _kjt(layout.keys)
    want = model.ebc(kjt).to_dict()
    got = plain(kjt).to_dict()
    for k in layout.keys:
        np.testing.assert_allclose(got[k].detach().numpy(), want[k].detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_a_bag_of_values_pools_as_configured_and_one_value_is_its_row(pooling):
    cfg = train_config(pooling=pooling)
    layout = make_layout(cfg.layout, list(SIZES), SIZES, cfg.embedding_dim, seed=0)
    model = build_model(cfg, layout, 4, seed=0)
    pooled = model.ebc(_kjt(layout.keys)).to_dict()["tags"]  # row 0: [1]; row 1: [2, 3]
    table = model.ebc.embedding_bags["tags"].weight.detach()
    bag = table[2] + table[3]
    torch.testing.assert_close(pooled[0].detach(), table[1])
    torch.testing.assert_close(pooled[1].detach(), bag / 2 if pooling == "mean" else bag)
    plain = PlainEmbeddingBags(layout, mode=pooling)
    plain.bags["tags"].weight.data.copy_(table)
    torch.testing.assert_close(plain(_kjt(layout.keys)).to_dict()["tags"][1].detach(), pooled[1].detach())
