"""FastRP maths and the scipy reference engine (no Spark): formulas, projection, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import normalize, scale

from core.config import FastRPConfig
from embeddings import fastrp as fr


def _params(**kw) -> fr.FastRPParams:
    base = dict(
        dim=16,
        iteration_weights=(1.0, 1.0, 7.81, 45.28),
        normalization_strength=-0.628,
        self_influence=0.0,
        sparsity=3.0,
        variant="paper",
        standardize=True,
        seed=7,
        directed=False,
    )
    return fr.FastRPParams(**{**base, **kw})


def _ring_with_chords(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    src = np.arange(n)
    return np.concatenate([src, src[::3]]), np.concatenate([(src + 1) % n, (src[::3] + 7) % n])


def _authors_formula(s: sp.csr_matrix, r: np.ndarray, params: fr.FastRPParams) -> np.ndarray:
    """GTmac/FastRP's fastrp_projection + fastrp_merge(normalization=True) written with sklearn, for R given."""
    degree = np.asarray(s.sum(axis=1)).ravel()
    m = sp.diags(1.0 / degree) @ s
    u = m @ (sp.diags(degree**params.normalization_strength) @ r)
    expected = np.zeros_like(u)
    for weight in params.iteration_weights:
        expected += weight * normalize(u, norm="l2", axis=1)
        u = m @ u
    return scale(expected)


def test_random_projection_entries_have_density_one_over_s_and_values_plus_minus_sqrt_s_over_d():
    # given 20,000 node keys, D = 64, s = 10
    keys = fr.node_keys(np.arange(20_000))
    # when
    r = fr.random_projection(keys, 64, 10.0, seed=3)
    # then each entry is 0 or +-sqrt(s/D); +, - each w.p. 1/(2s) (binomial 5-sigma bounds)
    value = np.sqrt(10.0 / 64)
    assert set(np.unique(r)) == {-value, 0.0, value}
    total = r.size
    for share in ((r > 0).mean(), (r < 0).mean()):
        assert abs(share - 0.05) < 5 * np.sqrt(0.05 * 0.95 / total)
    # and E[R_ij^2] = 1/D, columns uncorrelated on average
    assert abs((r**2).mean() - 1 / 64) < 5e-4
    assert abs(np.corrcoef(r[:, 0], r[:, 1])[0, 1]) < 0.05


def test_projection_row_depends_only_on_seed_and_node_id():
    # given the same ids in another order and inside a larger batch
    ids = np.array(["a", "b", "c", "ü"], dtype=object)
    r1 = fr.random_projection(fr.node_keys(ids), 32, 2.0, seed=1)
    r2 = fr.random_projection(fr.node_keys(np.array(["x", "c", "ü", "b", "a"], dtype=object)), 32, 2.0, seed=1)
    # then each id keeps its row; another seed changes it
    np.testing.assert_array_equal(r1[[0, 1, 2, 3]], r2[[4, 3, 1, 2]])
    assert not np.array_equal(r1, fr.random_projection(fr.node_keys(ids), 32, 2.0, seed=2))


def test_integer_ids_hash_the_same_whatever_their_width():
    np.testing.assert_array_equal(
        fr.node_keys(np.array([1, 2, 3], np.int32)), fr.node_keys(np.array([1, 2, 3], np.int64))
    )
    assert len(set(fr.node_keys(np.arange(100_000)).tolist())) == 100_000


def test_local_engine_matches_the_authors_formula_written_with_sklearn():
    # given a small undirected graph and the paper's BlogCatalog setting
    src, dst = _ring_with_chords()
    params = _params()
    nodes, si, di = fr.index_nodes(src, dst)
    s = fr.adjacency(si, di, np.ones(len(si)), len(nodes), directed=False)
    # when
    got = fr.fastrp_local(s, fr.node_keys(nodes), params)
    # then it is GTmac/FastRP's fastrp_projection + fastrp_merge(normalization=True), with our R
    r = fr.random_projection(fr.node_keys(nodes), params.dim, params.sparsity, params.seed)
    np.testing.assert_allclose(got, _authors_formula(s, r, params), atol=1e-10)


def test_local_engine_uses_a_projection_drawn_elsewhere_in_place_of_the_hash():
    # given sklearn's SparseRandomProjection draw of R (how the authors' code draws it)
    from sklearn.random_projection import SparseRandomProjection

    src, dst = _ring_with_chords()
    params = _params()
    n = len(np.unique(np.concatenate([src, dst])))
    r = (
        SparseRandomProjection(n_components=params.dim, density=1 / 3, random_state=0)
        .fit(sp.csr_matrix((1, n)))
        .components_.T.toarray()
    )
    # when it is passed to the local engine
    _, got = fr.embed_edge_list(src, dst, None, params, projection=r)
    _, ours = fr.embed_edge_list(src, dst, None, params)
    # then the result is the authors' formula applied to that R, and differs from the hash-derived one
    nodes, si, di = fr.index_nodes(src, dst)
    s = fr.adjacency(si, di, np.ones(len(si)), len(nodes), directed=False)
    np.testing.assert_allclose(got, _authors_formula(s, r, params), atol=1e-10)
    assert np.abs(got - ours).max() > 0.1


def test_duplicate_edges_add_their_weights_and_an_undirected_self_loop_counts_once():
    # given a->b twice (weight 1 each) and a self loop on b
    nodes, si, di = fr.index_nodes(np.array([0, 0, 1]), np.array([1, 1, 1]))
    # when
    s = fr.adjacency(si, di, np.ones(3), len(nodes), directed=False).toarray()
    # then S[a,b] = S[b,a] = 2 and S[b,b] = 1
    np.testing.assert_array_equal(s, [[0, 2], [2, 1]])


def test_node_without_out_edges_gets_self_influence_times_its_normalized_random_vector():
    # given a directed graph where node 9 is only a target (a sink)
    params = _params(directed=True, standardize=False, self_influence=0.5, sparsity=1.0)
    nodes, e = fr.embed_edge_list(np.array([1, 2, 3]), np.array([9, 9, 1]), None, params)
    # then the sink's embedding is 0.5 * l2rows(R) of its id
    r = fr.random_projection(fr.node_keys(np.array([9])), params.dim, 1.0, params.seed)
    np.testing.assert_allclose(e[list(nodes).index(9)], 0.5 * fr.row_normalize(r)[0])


def test_without_self_influence_a_sink_embeds_to_zero():
    params = _params(directed=True, standardize=False)
    nodes, e = fr.embed_edge_list(np.array([1, 2]), np.array([9, 9]), None, params)
    assert not e[list(nodes).index(9)].any()


@pytest.mark.parametrize("variant", ["paper", "gds"])
def test_same_seed_gives_identical_output_and_another_seed_differs(variant):
    src, dst = _ring_with_chords()
    _, a = fr.embed_edge_list(src, dst, None, _params(variant=variant))
    _, b = fr.embed_edge_list(src, dst, None, _params(variant=variant))
    _, c = fr.embed_edge_list(src, dst, None, _params(variant=variant, seed=8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_gds_variant_normalizes_before_propagating():
    # given one iteration weight, both variants agree (normalise once either way) ...
    src, dst = _ring_with_chords()
    _, p1 = fr.embed_edge_list(src, dst, None, _params(iteration_weights=(1.0,), standardize=False))
    _, g1 = fr.embed_edge_list(src, dst, None, _params(iteration_weights=(1.0,), standardize=False, variant="gds"))
    np.testing.assert_allclose(p1, g1, atol=1e-12)
    # ... and with three they differ, while every gds term stays unit-norm
    _, p3 = fr.embed_edge_list(src, dst, None, _params(iteration_weights=(0.0, 0.0, 1.0), standardize=False))
    _, g3 = fr.embed_edge_list(
        src, dst, None, _params(iteration_weights=(0.0, 0.0, 1.0), standardize=False, variant="gds")
    )
    assert np.abs(p3 - g3).max() > 1e-6
    np.testing.assert_allclose(np.linalg.norm(g3, axis=1), 1.0)


def test_default_sparsity_is_sqrt_n_and_config_resolves_it():
    cfg = FastRPConfig(dim=8)
    assert fr.FastRPParams.from_config(cfg, 10_000).sparsity == 100.0
    assert fr.FastRPParams.from_config(FastRPConfig(sparsity=3), 10_000).sparsity == 3.0


def test_estimate_grows_linearly_with_edges_and_dim():
    small = fr.estimate_resources(10_000, 100_000, 128, 3, directed=False, block_size=131_072)
    big = fr.estimate_resources(10_000, 100_000, 256, 3, directed=False, block_size=131_072)
    assert small["stored_edges"] == 200_000 and small["num_blocks"] == 1
    assert big["shuffle_bytes_per_iteration"] > 1.9 * small["shuffle_bytes_per_iteration"] - 200_000 * 12
    assert "GiB" in small["summary"]


def test_block_moments_merged_in_order_give_the_whole_columns_mean_and_std():
    # given E cut into uneven blocks (one empty)
    e = np.random.default_rng(0).normal(3.0, 2.0, size=(101, 5))
    parts = [e[:7], e[7:7], e[7:60], e[60:]]
    # when each block's moments are merged
    count, mean, m2 = fr.merge_moments([fr.column_moments(p) for p in parts], 5)
    # then they are the columns' mean and population std, as sklearn's scale uses
    assert count == 101
    np.testing.assert_allclose(mean, e.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(fr.standardize_scale(m2, count), e.std(axis=0), rtol=1e-12)


def test_default_block_size_depends_on_nodes_and_dim_only_and_caps_block_memory():
    # a given block size wins; otherwise equal blocks of at most 256 MiB of float32 X
    assert fr.resolve_block_size(16, 1_000_000, 128) == 16
    assert fr.resolve_block_size(None, 100_000, 128) == 100_000  # one block
    assert fr.resolve_block_size(None, 1_000_000, 128) == 500_000  # two equal blocks
    assert fr.resolve_block_size(None, 1_000_000, 512) * 512 * 4 <= 256 << 20


def test_the_blockwise_e_update_equals_adding_weighted_normalised_rows():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(20, 5)).astype(np.float32)
    x = rng.normal(size=(20, 5)).astype(np.float32)
    x[4] = 0.0  # a zero row stays zero and adds nothing
    inv = fr.inverse_row_norms(x)
    assert inv[4] == 0.0
    np.testing.assert_allclose(x * inv[:, None], fr.row_normalize(x), rtol=1e-12)
    got = fr.add_scaled_rows(e, x, 2.5 * inv, rows_per_step=7)  # slices that do not divide 20
    want = (e.astype(np.float64) + 2.5 * fr.row_normalize(x)).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
