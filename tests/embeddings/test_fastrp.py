"""FastRP maths and the scipy reference engine (no Spark): formulas, projection, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import normalize, scale

from core.config import FastRPConfig, NodePropertiesConfig
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
    small = fr.estimate_resources(1_000_000, 100_000, 128, 3, directed=False, block_size=250_000)
    wide = fr.estimate_resources(1_000_000, 100_000, 256, 3, directed=False, block_size=250_000)
    more = fr.estimate_resources(1_000_000, 200_000, 128, 3, directed=False, block_size=250_000)
    assert small["stored_edges"] == 200_000 and small["num_blocks"] == 4
    # 4 hashed blocks of a sparse graph: 3/4 of the 200k stored edges' rows cross blocks, D float32 each
    assert small["shuffle_bytes_per_iteration"] == 150_000 * 128 * 4
    assert wide["shuffle_bytes_per_iteration"] == 2 * small["shuffle_bytes_per_iteration"]
    assert more["shuffle_bytes_per_iteration"] == 2 * small["shuffle_bytes_per_iteration"]
    assert "GiB" in small["summary"]


def test_estimate_of_one_block_shuffles_no_partials():
    # the diagonal product P_aa X_a stays in its task: one block sends nothing between iterations
    one = fr.estimate_resources(10_000, 100_000, 128, 3, directed=False, block_size=131_072)
    assert one["num_blocks"] == 1 and one["shuffle_bytes_per_iteration"] == 0
    assert one["shuffle_bytes_total"] == 200_000 * 40  # the edge list's one pass


def test_disk_with_the_state_in_files_counts_one_iterations_partials_not_all_of_them():
    cache = fr.estimate_resources(1_000_000, 100_000, 128, 3, directed=False, block_size=250_000)
    files = fr.estimate_resources(1_000_000, 100_000, 128, 3, directed=False, block_size=250_000, state_files=True)
    state = 2 * 1_000_000 * 128 * 4 * 2  # X and E of two iterations (the old one until the new one is written)
    # Spark keeps every shuffle's files until its cleaner runs; the engine deletes each iteration's partial files
    assert cache["disk_bytes"] == 200_000 * 40 + 3 * cache["shuffle_bytes_per_iteration"] + state
    assert files["disk_bytes"] == 200_000 * 40 + files["shuffle_bytes_per_iteration"] + state


def test_per_process_estimate_counts_the_cores_the_blocks_at_once_and_the_jvm_heap():
    args = dict(directed=False, block_size=250_000, state_files=True, jvm_heap_bytes=8 << 30)
    one = fr.estimate_resources(1_000_000, 100_000, 128, 3, concurrent_tasks=1, **args)
    two = fr.estimate_resources(1_000_000, 100_000, 128, 3, concurrent_tasks=2, **args)
    eight = fr.estimate_resources(1_000_000, 100_000, 128, 3, concurrent_tasks=8, **args)
    # a worker per core, and a task's memory for each block product running at once (4 blocks here)
    assert one["python_workers_memory_bytes"] == fr.PYTHON_WORKER_BYTES + one["task_memory_bytes"]
    assert two["python_workers_memory_bytes"] == 2 * one["python_workers_memory_bytes"]
    assert eight["python_workers_memory_bytes"] == 8 * fr.PYTHON_WORKER_BYTES + 4 * one["task_memory_bytes"]
    # the JVM grows with the stored edges (200k here) from its floor...
    assert one["jvm_memory_bytes"] == fr.JVM_BASE_BYTES + 200_000 * fr.JVM_BYTES_PER_STORED_EDGE
    # ...up to its heap plus what it holds outside it; with the state in Spark's cache it holds that too
    huge = fr.estimate_resources(10**7, 10**8, 64, 3, concurrent_tasks=2, **args)
    assert huge["jvm_memory_bytes"] == (8 << 30) + fr.JVM_NON_HEAP_BYTES
    cached = fr.estimate_resources(1_000_000, 100_000, 128, 3, **{**args, "state_files": False})
    assert cached["jvm_memory_bytes"] == one["jvm_memory_bytes"] + 2 * one["checkpoint_bytes_per_iteration"]
    assert "JVM 1.69 GiB" in one["summary"]
    assert "jvm_memory_bytes" not in fr.estimate_resources(
        1_000_000, 100_000, 128, 3, directed=False, block_size=250_000
    )


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


# --------------------------------------------------------------------------- node properties


def _props_params(**kw) -> fr.FastRPParams:
    base = dict(dim=8, property_dim=4, iteration_weights=(1.0,), normalization_strength=0.0, sparsity=1.0)
    return _params(**{**base, **kw})


def _path_properties() -> fr.NodeProperties:
    """Path 1-2-3 plus node 9 (no edges): age 2 / null / - / 1 and kind a / b / - / a; node 3 has no row."""
    values = pd.DataFrame({"age": [2.0, np.nan, 1.0], "kind": ["a", "b", "a"]})
    return fr.NodeProperties(np.array([1, 2, 9]), values, frozenset({"kind"}))


def test_initial_vectors_and_embeddings_with_properties_are_the_hand_computed_ones():
    # given the path 1-2-3 (undirected), node 9 with properties but no edges, d_p = 4 of D = 8
    params = _props_params(self_influence=0.5, standardize=False)
    seed = params.seed
    # the rows of the projection: Q_age, Q_kind=a, Q_kind=b (sparsity 3, 4 dims) and each node's own 4 dims
    q_age = fr.random_projection(fr.property_keys("age"), 4, 3.0, seed)[0]
    q_a, q_b = fr.random_projection(fr.property_keys("kind", ["a", "b"]), 4, 3.0, seed)
    base = fr.random_projection(fr.node_keys(np.array([1, 2, 3])), 4, 1.0, seed)
    assert q_age.any() and q_a.any() and q_b.any() and not np.array_equal(q_a, q_b)  # the seed draws non-zero rows
    r = np.stack(
        [
            np.concatenate([2.0 * q_age + q_a, base[0]]),  # node 1: age 2, kind a
            np.concatenate([q_b, base[1]]),  # node 2: age null (0), kind b
            np.concatenate([np.zeros(4), base[2]]),  # node 3: no property row
        ]
    )
    graph_values = pd.DataFrame({"age": [2.0, np.nan, np.nan], "kind": ["a", "b", None]})
    np.testing.assert_array_equal(
        fr.initial_projection(fr.node_keys(np.array([1, 2, 3])), params, graph_values, frozenset({"kind"})), r
    )
    # P of the path: 1 -> 2, 2 -> (1 + 3) / 2, 3 -> 2; one iteration of weight 1; self influence 0.5
    x1 = np.stack([r[1], (r[0] + r[2]) / 2, r[1]])
    expected = 0.5 * normalize(r) + normalize(x1)
    # node 9 (edgeless): (0.5 + 1) * l2([1 * Q_age + Q_a | 0])
    p9 = q_age + q_a
    expected_9 = np.concatenate([1.5 * p9 / np.linalg.norm(p9), np.zeros(4)])
    # when
    nodes, e = fr.embed_edge_list(np.array([1, 2]), np.array([2, 3]), None, params, properties=_path_properties())
    # then the graph's nodes come first (sorted), then the edgeless one
    assert nodes.tolist() == [1, 2, 3, 9]
    np.testing.assert_allclose(e[:3], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(e[3], expected_9, rtol=0, atol=1e-12)


def test_without_node_properties_the_output_is_todays_bit_for_bit():
    # given a graph embedded by a config without properties (property_ratio 0), with and without a property table
    src, dst = _ring_with_chords()
    cfg = FastRPConfig(dim=16, iteration_weights=[1.0, 2.0], self_influence=0.3, seed=5)
    props = fr.NodeProperties(np.arange(30), pd.DataFrame({"age": np.arange(30.0)}))
    nodes, plain = fr.embed_edge_list(src, dst, None, cfg)
    _, ignored = fr.embed_edge_list(src, dst, None, cfg, properties=props)
    # then both equal the run with today's projection R (random_projection of the node keys, all D columns)
    params = fr.FastRPParams.from_config(cfg, len(nodes))
    assert params.property_dim == 0
    todays_r = fr.random_projection(fr.node_keys(nodes), 16, params.sparsity, 5)
    _, today = fr.embed_edge_list(src, dst, None, cfg, projection=todays_r)
    np.testing.assert_array_equal(plain, today)
    np.testing.assert_array_equal(ignored, today)
    np.testing.assert_array_equal(fr.initial_projection(fr.node_keys(nodes), params), todays_r)


def test_an_edgeless_node_gets_only_its_property_part_and_one_with_every_property_missing_gets_zero():
    # given no self influence and nodes 9 and 10 in the property table only
    params = _props_params(standardize=False, iteration_weights=(1.0, 2.0))
    props = fr.NodeProperties(np.array([9, 10]), pd.DataFrame({"age": [3.0, np.nan]}))
    nodes, e = fr.embed_edge_list(np.array([1]), np.array([2]), None, params, properties=props)
    # then node 9 (edgeless, age 3) gets (0 + 1 + 2) * l2(3 Q_age) in the property dims and 0 elsewhere
    q_age = fr.random_projection(fr.property_keys("age"), 4, 3.0, params.seed)[0]
    assert nodes.tolist() == [1, 2, 9, 10]
    np.testing.assert_allclose(e[2], np.concatenate([3.0 * q_age / np.linalg.norm(q_age), np.zeros(4)]))
    # and node 10 (edgeless, every property missing) is there with a zero vector
    assert not e[3].any()


def test_property_rows_depend_on_the_column_and_value_not_on_the_node_and_a_seed_fixes_the_output():
    # given two nodes with the same properties
    params = _props_params(standardize=True)
    values = pd.DataFrame({"age": [1.5, 1.5, -2.0], "kind": ["x", "x", "y"]})
    keys = fr.node_keys(np.array([4, 7, 8]))
    r = fr.initial_projection(keys, params, values, frozenset({"kind"}))
    # then their property parts are equal and their own parts differ
    np.testing.assert_array_equal(r[0, :4], r[1, :4])
    assert not np.array_equal(r[0, 4:], r[1, 4:])
    # and a run is a function of the seed: the same seed gives the same bits, another seed other vectors
    src, dst = _ring_with_chords()
    props = fr.NodeProperties(np.arange(0, 40, 2), pd.DataFrame({"age": np.arange(20.0), "kind": list("abcd") * 5}))
    props = fr.NodeProperties(props.ids, props.values, frozenset({"kind"}))
    _, a = fr.embed_edge_list(src, dst, None, params, properties=props)
    _, b = fr.embed_edge_list(src, dst, None, params, properties=props)
    _, c = fr.embed_edge_list(src, dst, None, dataclasses.replace(params, seed=8), properties=props)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_the_whole_dim_may_come_from_properties_as_gds_allows():
    # given property_ratio 1 (d_p = D): R is the property part alone
    cfg = FastRPConfig(
        dim=4, iteration_weights=[1.0], property_ratio=1.0, node_properties=NodePropertiesConfig(columns=["age"])
    )
    params = fr.FastRPParams.from_config(cfg, 3)
    r = fr.initial_projection(fr.node_keys(np.array([1, 2])), params, pd.DataFrame({"age": [1.0, -1.0]}))
    q_age = fr.random_projection(fr.property_keys("age"), 4, 3.0, cfg.seed)[0]
    np.testing.assert_array_equal(r, np.stack([q_age, -q_age]))
