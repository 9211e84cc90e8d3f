"""FastRP maths (Chen et al., CIKM 2019): hash-derived projection, propagation, scipy reference engine.

Pure numpy/scipy: no Spark here. The Spark engine (``embeddings/fastrp_engine.py``) calls the same
functions inside its pandas UDFs, so both engines build a bit-identical projection R and apply the
same per-row formulas; only the order of the sparse sums differs (tests: equal to 1e-5).

Symbols: N nodes, M stored (directed) edges, D = ``dim``, K = ``len(iteration_weights)``,
s = ``sparsity``, beta = ``normalization_strength``, sigma = ``self_influence``.

The algorithm, as the authors' code (GTmac/FastRP ``fastrp.py``) runs it, ``variant="paper"``::

    S   adjacency (N, N), S[i, j] = summed weight of edges i -> j (undirected: S + S^T)
    P   = D^-1 S, D = diag(row sums of S)                  (rows of zero degree stay 0)
    X_0 = diag(deg^beta) R                                 (deg = 0 keeps weight 1)
    X_k = P X_{k-1},   k = 1..K                            (node i averages its out-neighbours)
    E   = sigma * l2rows(R) + sum_k alpha_k * l2rows(X_k)  (alpha_k = iteration_weights[k-1])
    E   = standardize_columns(E)                           (optional; mean 0, std 1 per column)

``iteration_weights[0]`` weighs P·R (one hop), as ``fastrp_merge(zip(U_list, weights))`` does in
the reference code; the paper's BlogCatalog setting ``1,1,7.81,45.28`` therefore weighs hops 1..4.
The reference code always L2-normalises rows when ``normalization=True`` (the paper's best runs)
and always applies sklearn's ``scale``; here standardisation is a flag (default off, because a
per-column shift makes embeddings depend on the whole graph), and the quality bench turns it on.

``variant="gds"`` is Neo4j GDS's order, normalise-then-propagate: ``X_k = l2rows(P X_{k-1})`` and
``E = sigma * l2rows(R) + sum_k alpha_k X_k``. The default stays ``"paper"``: it is the variant
whose quality the paper reports and whose reference code the exactness tests mirror.

Self influence (GDS's ``nodeSelfInfluence``) adds the node's own random vector, so a node with no
out-edges (isolated, or a sink of a directed graph) gets a non-zero embedding when sigma > 0.

Node properties (GDS's ``featureProperties`` + ``propertyRatio``): with d_p = int(D * ratio) > 0,
a node's initial row is ``R_i = [sum_f v_if * Q_f | its own random row of D - d_p]``, the property
part first. Each input dimension f (a numeric column; a (column, value) pair of a string column,
one-hot with value 1, so no vocabulary is needed) has a random row Q_f of d_p entries, hashed from
the column name (and value) with GDS's sparsity 3; nulls (and NaN) give 0. Propagation is unchanged.
A node in the property table but not in the edge table (edgeless) gets
``(sigma + sum_k alpha_k) * l2rows([sum_f v_if Q_f | 0])``: what a node whose only edge is a self loop
gets, less its random part (noise to every neighbour); standardisation uses the graph's moments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.encoding import splitmix64

# --------------------------------------------------------------------------- hashing

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # the counter step of the projection's hash stream
_U64 = (1 << 64) - 1


def node_keys(ids: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    """A 64-bit key per node id: integers are mixed by SplitMix64, strings hashed by SipHash.

    The key is a function of the id alone, so every executor and the local engine agree on it.
    Strings use pandas' ``hash_array`` (SipHash-2-4, fixed key ``0123456789123456``) on the UTF-8
    text. Integer ids of any width hash as their int64 value.

    Args:
        ids: (N,) integer or string ids, no nulls.
    Returns:
        (N,) uint64 keys.
    """
    values = ids.to_numpy() if isinstance(ids, pd.Series) else np.asarray(ids)
    if values.dtype.kind in "iu":
        return splitmix64(values.astype(np.int64).view(np.uint64))
    values = np.asarray(values, dtype=object)
    return splitmix64(pd.util.hash_array(values, categorize=False))


def default_sparsity(num_nodes: int) -> float:
    """s = sqrt(N), the paper's (and sklearn's ``density='auto'``) choice for very sparse RP."""
    return max(1.0, math.sqrt(num_nodes))


def random_projection(keys: np.ndarray, dim: int, sparsity: float, seed: int) -> np.ndarray:
    """Rows of the very sparse random projection R (Li, Hastie & Church, KDD 2006), one per key.

    Entry (i, j) is +sqrt(s/D) with probability 1/(2s), -sqrt(s/D) with probability 1/(2s) and 0
    otherwise. It is decided by a 32-bit uniform u_ij: word j of the counter-based stream
    splitmix64(splitmix64(key_i + splitmix64(seed)) + t * golden), t = 0..ceil(D/2)-1, each 64-bit
    value giving two 32-bit words (low word first). u < 2^32/(2s) gives +, u < 2^32/s gives -.
    A row depends only on (seed, node id), never on which machine or partition computes it, and
    ``E[R_ij^2] = 1/D`` as for sklearn's ``SparseRandomProjection``.

    Args:
        keys: (N,) uint64 node keys from :func:`node_keys`.
        dim: D >= 1.
        sparsity: s >= 1 (density 1/s).
        seed: any int (taken modulo 2^64).
    Returns:
        (N, D) float64.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    seed_key = splitmix64(np.asarray([seed & _U64], dtype=np.uint64))[0]
    words = (dim + 1) // 2
    with np.errstate(over="ignore"):
        base = splitmix64(keys + seed_key)  # (N,)
        counters = np.arange(words, dtype=np.uint64) * _GOLDEN  # (ceil(D/2),)
        bits = splitmix64(base[:, None] + counters[None, :])  # (N, ceil(D/2)) uint64
    u = np.ascontiguousarray(bits).view(np.uint32)[:, :dim]  # (N, D): low word, high word, ...
    plus = min(round(2.0**32 / (2.0 * sparsity)), 2**32)
    nonzero = min(round(2.0**32 / sparsity), 2**32)
    value = math.sqrt(sparsity / dim)
    out = np.zeros(u.shape, dtype=np.float64)
    is_nonzero = np.ones(u.shape, dtype=bool) if nonzero >= 2**32 else u < np.uint32(nonzero)
    out[is_nonzero] = -value
    if plus >= 2**32:
        out[:] = value
    else:
        out[u < np.uint32(plus)] = value
    return out


# --------------------------------------------------------------------------- per-row formulas


def degree_weights(degree: np.ndarray, beta: float) -> np.ndarray:
    """deg^beta per node, the paper's normalisation strength; 0^beta is undefined, so deg 0 -> 1.

    Args:
        degree: (N,) non-negative weighted out-degrees.
    Returns:
        (N,) float64.
    """
    degree = np.asarray(degree, dtype=np.float64)
    out = np.ones_like(degree)
    positive = degree > 0
    out[positive] = np.power(degree[positive], beta)
    return out


def inverse_degree(degree: np.ndarray) -> np.ndarray:
    """1/deg per node, 0 where deg = 0 (such rows of P = D^-1 S are all zero)."""
    degree = np.asarray(degree, dtype=np.float64)
    out = np.zeros_like(degree)
    positive = degree > 0
    out[positive] = 1.0 / degree[positive]
    return out


def row_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (as sklearn's ``normalize``).

    Args:
        x: (N, D).
    Returns:
        (N, D) float64.
    """
    x = np.asarray(x, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    scale = np.zeros_like(norms)
    nonzero = norms > 0
    scale[nonzero] = 1.0 / norms[nonzero]
    return x * scale[:, None]


def inverse_row_norms(x: np.ndarray) -> np.ndarray:
    """1 / ||x_i|| per row in float64 (0 for all-zero rows), without a float64 copy of ``x``.

    Args:
        x: (N, D), any float dtype.
    Returns:
        (N,) float64; ``x * inverse_row_norms(x)[:, None]`` is :func:`row_normalize` (to rounding).
    """
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    scale = np.zeros_like(norms)
    nonzero = norms > 0
    scale[nonzero] = 1.0 / norms[nonzero]
    return scale


def add_scaled_rows(e: np.ndarray, x: np.ndarray, row_weights: np.ndarray, rows_per_step: int = 8192) -> np.ndarray:
    """float32 of ``e + row_weights[:, None] * x`` computed in float64, a slice of rows at a time.

    The Spark engine's E update (E_k = E_{k-1} + alpha_k l2rows(X_k)) on float32 blocks: slices keep
    the float64 temporaries small instead of three block-sized copies.

    Args:
        e, x: (N, D) float32. row_weights: (N,) float64.
    Returns:
        (N, D) float32.
    """
    out = np.empty(e.shape, dtype=np.float32)
    for lo in range(0, len(e), rows_per_step):
        hi = lo + rows_per_step
        out[lo:hi] = e[lo:hi].astype(np.float64) + row_weights[lo:hi, None] * x[lo:hi]
    return out


def initial_state(
    r: np.ndarray, degree: np.ndarray, beta: float, self_influence: float
) -> tuple[np.ndarray, np.ndarray]:
    """X_0 = diag(deg^beta) R and E_0 = sigma * l2rows(R) for a block of rows.

    Args:
        r: (N, D) projection rows.
        degree: (N,) weighted out-degrees of the same nodes.
    Returns:
        (X_0, E_0), each (N, D) float64.
    """
    x0 = r * degree_weights(degree, beta)[:, None]
    e0 = self_influence * row_normalize(r) if self_influence else np.zeros_like(r)
    return x0, e0


def propagation_update(
    propagated: np.ndarray, embedding: np.ndarray, weight: float, variant: str
) -> tuple[np.ndarray, np.ndarray]:
    """One iteration's per-row update, given the propagated rows P·X_{k-1}.

    paper: X_k = P X_{k-1}, E += alpha_k l2rows(X_k). gds: X_k = l2rows(P X_{k-1}), E += alpha_k X_k.

    Args:
        propagated: (N, D) rows of P·X_{k-1}.
        embedding: (N, D) running E.
        weight: alpha_k.
        variant: "paper" or "gds".
    Returns:
        (X_k, E_k), each (N, D) float64.
    """
    normalized = row_normalize(propagated)
    next_x = normalized if variant == "gds" else np.asarray(propagated, dtype=np.float64)
    return next_x, embedding + weight * normalized


def column_moments_sum(e: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Per-column sum of E (mean None) or of (E - mean)^2: one pass of two-pass standardisation.

    Args:
        e: (N, D); mean: (D,) or None.
    Returns:
        (D,) float64.
    """
    e = np.asarray(e, dtype=np.float64)
    if mean is None:
        return e.sum(axis=0)
    return ((e - mean) ** 2).sum(axis=0)


def column_moments(e: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, column mean, column sum of squared deviations) of one block of E, two-pass.

    Args:
        e: (n, D).
    Returns:
        (n, (D,), (D,)) float64.
    """
    e = np.asarray(e, dtype=np.float64)
    mean = column_moments_sum(e) / max(1, e.shape[0])
    return e.shape[0], mean, column_moments_sum(e, mean)


def merge_moments(
    moments: Sequence[tuple[int, np.ndarray, np.ndarray]], dim: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """Blocks' moments merged in the given order (Chan et al. 1979), so a fixed order gives fixed bits.

    Returns:
        (count, (D,) mean, (D,) sum of squared deviations) of all rows.
    """
    count, mean, m2 = 0, np.zeros(dim), np.zeros(dim)
    for n, block_mean, block_m2 in moments:
        if n == 0:
            continue
        total = count + n
        delta = block_mean - mean
        mean = mean + delta * (n / total)
        m2 = m2 + block_m2 + delta**2 * (count * n / total)
        count = total
    return count, mean, m2


def standardize_scale(sum_sq: np.ndarray, count: int) -> np.ndarray:
    """Population std per column; 0 -> 1, as sklearn's ``scale`` leaves constant columns."""
    std = np.sqrt(np.asarray(sum_sq, dtype=np.float64) / count)
    std[std == 0] = 1.0
    return std


def standardize_columns(e: np.ndarray) -> np.ndarray:
    """Columns to mean 0 and (population) std 1, as ``sklearn.preprocessing.scale``.

    Args:
        e: (N, D).
    Returns:
        (N, D) float64.
    """
    mean, std = column_standardization(e)
    return (np.asarray(e, dtype=np.float64) - mean) / std


def column_standardization(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(column mean, population std with 0 -> 1) of E, two-pass: what :func:`standardize_columns` applies."""
    e = np.asarray(e, dtype=np.float64)
    mean = column_moments_sum(e) / e.shape[0]
    return mean, standardize_scale(column_moments_sum(e, mean), e.shape[0])


# --------------------------------------------------------------------------- graph + local engine


def symmetrize(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, directed: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored edge list of S: directed as given; undirected adds each non-loop edge reversed.

    A self loop is stored once (S[i, i] = w, not 2w). Duplicates are kept here and summed when S
    is assembled, so parallel edges add their weights (an unweighted duplicate counts twice).

    Args:
        src, dst: (M,) int64 dense node indices; weight: (M,) float64.
    Returns:
        (rows, cols, weights), each (M',) with M' = M (directed) or 2M - #loops.
    """
    if directed:
        return src, dst, weight
    off = src != dst
    return (np.concatenate([src, dst[off]]), np.concatenate([dst, src[off]]), np.concatenate([weight, weight[off]]))


def adjacency(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, num_nodes: int, directed: bool) -> sp.csr_matrix:
    """S as CSR (N, N), duplicates summed; see :func:`symmetrize`."""
    rows, cols, vals = symmetrize(
        np.asarray(src, np.int64), np.asarray(dst, np.int64), np.asarray(weight, np.float64), directed
    )
    s = sp.coo_matrix((vals, (rows, cols)), shape=(num_nodes, num_nodes)).tocsr()
    s.sum_duplicates()
    return s


def projection_rows(keys: np.ndarray, dim: int, sparsity: float, seed: int, chunk_rows: int = 65_536) -> np.ndarray:
    """:func:`random_projection` in row chunks, so the uint64 scratch stays small. (N, D) float64."""
    out = np.empty((len(keys), dim), dtype=np.float64)
    for start in range(0, len(keys), chunk_rows):
        out[start : start + chunk_rows] = random_projection(keys[start : start + chunk_rows], dim, sparsity, seed)
    return out


# --------------------------------------------------------------------------- node properties

PROPERTY_SPARSITY = 3.0  # GDS's sparsity for property rows: few input dimensions, so not sqrt(N)-sparse


def property_dimension(dim: int, ratio: float) -> int:
    """d_p = int(D * ratio), as GDS truncates; D - d_p stay for the node's own random row."""
    return int(dim * ratio)


def property_keys(column: str, values: Sequence | None = None) -> np.ndarray:
    """Keys of the input dimensions of a column: the column itself (numeric), or one per (column, value) pair."""
    names = (
        [f"fastrp.property\x00{column}"] if values is None else [f"fastrp.property\x00{column}\x00{v}" for v in values]
    )
    return node_keys(np.asarray(names, dtype=object))


def property_part(
    values: pd.DataFrame, categorical: frozenset[str] | set[str], property_dim: int, seed: int
) -> np.ndarray:
    """sum_f v_if * Q_f for each row: numeric columns weigh their row Q by the value, string columns add their value's.

    A pure per-row function of the values (and seed), so any batch of nodes gets the same bits.

    Args:
        values: (n, C) property columns in config order; numeric ones float (NaN = missing), others strings/None.
        categorical: the columns one-hot encoded.
        property_dim: d_p >= 1.
    Returns:
        (n, d_p) float64.
    """
    out = np.zeros((len(values), property_dim), dtype=np.float64)
    for column in values.columns:
        if column in categorical:
            codes, uniques = pd.factorize(values[column].to_numpy(dtype=object))  # null -> -1
            if len(uniques) == 0:
                continue
            rows = random_projection(property_keys(column, uniques), property_dim, PROPERTY_SPARSITY, seed)
            present = codes >= 0
            out[present] += rows[codes[present]]
        else:
            v = np.nan_to_num(values[column].to_numpy(dtype=np.float64), nan=0.0)
            row = random_projection(property_keys(column), property_dim, PROPERTY_SPARSITY, seed)[0]
            out += v[:, None] * row[None, :]
    return out


def initial_projection(
    keys: np.ndarray,
    params: "FastRPParams",
    values: pd.DataFrame | None = None,
    categorical: frozenset[str] = frozenset(),
) -> np.ndarray:
    """R_i = [property part | random row of D - d_p]; without properties (d_p = 0) exactly :func:`random_projection`.

    Args:
        keys: (n,) node keys. values: (n, C) their property values (None: all missing).
    Returns:
        (n, D) float64.
    """
    pdim = params.property_dim
    if pdim == 0:
        return random_projection(keys, params.dim, params.sparsity, params.seed)
    part = np.zeros((len(keys), pdim)) if values is None else property_part(values, categorical, pdim, params.seed)
    if pdim == params.dim:
        return part
    return np.concatenate([part, random_projection(keys, params.dim - pdim, params.sparsity, params.seed)], axis=1)


def edgeless_embedding(values: pd.DataFrame, categorical: frozenset[str], params: "FastRPParams") -> np.ndarray:
    """E of nodes absent from the edges: (sigma + sum_k alpha_k) * l2rows([property part | 0]). (n, D) float64."""
    out = np.zeros((len(values), params.dim), dtype=np.float64)
    weight = params.self_influence + sum(params.iteration_weights)
    out[:, : params.property_dim] = weight * row_normalize(
        property_part(values, categorical, params.property_dim, params.seed)
    )
    return out


@dataclass(frozen=True)
class NodeProperties:
    """Property values of nodes: ``ids`` (P,) unique, ``values`` (P, C) in config column order, the string columns."""

    ids: np.ndarray
    values: pd.DataFrame
    categorical: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FastRPParams:
    """The algorithm's parameters once data-dependent defaults are resolved (sparsity from N)."""

    dim: int
    iteration_weights: tuple[float, ...]
    normalization_strength: float
    self_influence: float
    sparsity: float
    variant: str
    standardize: bool
    seed: int
    directed: bool
    property_dim: int = 0  # d_p: leading columns of R from node properties (0: none)

    @classmethod
    def from_config(cls, cfg, num_nodes: int) -> "FastRPParams":
        """Resolve ``cfg`` (a FastRPConfig) for a graph of ``num_nodes`` nodes."""
        sparsity = float(cfg.sparsity) if cfg.sparsity is not None else default_sparsity(num_nodes)
        return cls(
            dim=cfg.dim,
            iteration_weights=tuple(float(w) for w in cfg.iteration_weights),
            normalization_strength=cfg.normalization_strength,
            self_influence=cfg.self_influence,
            sparsity=sparsity,
            variant=cfg.variant,
            standardize=cfg.standardize,
            seed=cfg.seed,
            directed=cfg.directed,
            property_dim=property_dimension(cfg.dim, cfg.property_ratio) if cfg.node_properties else 0,
        )


def fastrp_local(
    s: sp.csr_matrix,
    keys: np.ndarray,
    params: FastRPParams,
    projection: np.ndarray | None = None,
    values: pd.DataFrame | None = None,
    categorical: frozenset[str] = frozenset(),
) -> np.ndarray:
    """The single-machine reference: FastRP of the graph S with the hash-derived R, in float64.

    Args:
        s: (N, N) CSR adjacency from :func:`adjacency`.
        keys: (N,) uint64 node keys, row i of S belongs to keys[i].
        projection: (N, D) R to use instead of the hash-derived one (benchmarks compare other draws,
            e.g. sklearn's, with ours); the job never passes it.
        values, categorical: the nodes' property values, row i for keys[i] (see :func:`initial_projection`).
    Returns:
        (N, D) float64 embeddings E.
    """
    degree = np.asarray(s.sum(axis=1)).ravel()
    p = sp.diags(inverse_degree(degree)) @ s  # (N, N) row-stochastic where deg > 0
    p = p.tocsr()
    if projection is not None:
        r = projection
    elif params.property_dim:
        r = initial_projection(keys, params, values, categorical)
    else:
        r = projection_rows(keys, params.dim, params.sparsity, params.seed)
    x, e = initial_state(r, degree, params.normalization_strength, params.self_influence)
    del r
    for weight in params.iteration_weights:
        x, e = propagation_update(p @ x, e, weight, params.variant)
    return standardize_columns(e) if params.standardize else e


def index_nodes(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense indices 0..N-1 by sorted node id. Returns (node_ids (N,), src_idx (M,), dst_idx (M,))."""
    nodes, inverse = np.unique(np.concatenate([np.asarray(src), np.asarray(dst)]), return_inverse=True)
    m = len(src)
    return nodes, inverse[:m].astype(np.int64), inverse[m:].astype(np.int64)


def embed_edge_list(
    src,
    dst,
    weight,
    params_or_cfg,
    directed: bool | None = None,
    projection: np.ndarray | None = None,
    properties: NodeProperties | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Local engine from raw edge columns: returns (node_ids (N,), embeddings (N, D) float64).

    ``params_or_cfg`` is a :class:`FastRPParams` or a FastRPConfig (sparsity resolved from N, the
    nodes of the edges). ``projection``, if given, is the (N, D) R for the nodes in sorted id order
    (see :func:`fastrp_local`). With ``properties`` (and ``property_dim`` > 0), the nodes of the edges
    come first (sorted), then the edgeless property nodes (sorted) with :func:`edgeless_embedding`.
    """
    nodes, si, di = index_nodes(src, dst)
    if isinstance(params_or_cfg, FastRPParams):
        params = params_or_cfg
    else:
        params = FastRPParams.from_config(params_or_cfg, len(nodes))
    w = np.ones(len(si)) if weight is None else np.asarray(weight, dtype=np.float64)
    s = adjacency(si, di, w, len(nodes), params.directed if directed is None else directed)
    if properties is None or params.property_dim == 0:
        return nodes, fastrp_local(s, node_keys(nodes), params, projection)
    table = properties.values.reset_index(drop=True)
    table.index = pd.Index(properties.ids)
    graph_values = table.reindex(pd.Index(nodes)).reset_index(drop=True)  # nodes without a row: all missing
    raw = dataclasses.replace(params, standardize=False)
    e = fastrp_local(s, node_keys(nodes), raw, projection, graph_values, properties.categorical)
    edgeless = np.sort(np.setdiff1d(np.asarray(properties.ids), nodes))
    e_edgeless = edgeless_embedding(table.loc[edgeless].reset_index(drop=True), properties.categorical, params)
    if params.standardize:  # the graph's moments, applied to the edgeless nodes too
        mean, std = column_standardization(e)
        e, e_edgeless = (e - mean) / std, (e_edgeless - mean) / std
    return np.concatenate([nodes, edgeless]), np.concatenate([e, e_edgeless])


# --------------------------------------------------------------------------- estimate


def resolve_block_size(block_size: int | None, num_nodes: int, dim: int, target_bytes: int = 256 << 20) -> int:
    """Nodes per block: ``block_size`` if given, else equal blocks of at most ``target_bytes`` of float32 X.

    It depends on N and D only (never on the cluster), so the block layout, and with it every
    summation order, is the same on any cluster: outputs stay bit-identical. 256 MiB at D = 128
    is 524,288 nodes, so graphs up to about 0.5M nodes run as one block and 1M nodes as two.
    """
    if block_size:
        return int(block_size)
    max_rows = max(1, target_bytes // (4 * dim))
    blocks = max(1, math.ceil(num_nodes / max_rows))
    return max(1, math.ceil(num_nodes / blocks))


def chunk_rows_for(dim: int, target_bytes: int = 4 << 20) -> int:
    """Rows per stored embedding chunk: about 4 MiB of float32 per chunk, at least 64 rows."""
    return max(64, target_bytes // (4 * dim))


# The per-process figures' constants, fitted on bench/fastrp_speed.py's job runs on local[2] with an
# 8 GiB heap and the state in files (1e5 to 1e8 edges; README, FastRP, Cost): a Python worker's
# memory beyond its task's arrays (numpy, pandas, pyarrow, scipy, Arrow batches), and the JVM's
# floor, its growth per stored edge (the edge list's shuffles and the block tables pass through
# it) and what it holds outside its heap once the heap is full (metaspace, code, Arrow and Netty).
PYTHON_WORKER_BYTES = 600 << 20
JVM_BASE_BYTES = 1700 << 20
JVM_BYTES_PER_STORED_EDGE = 170
JVM_NON_HEAP_BYTES = 2 << 30


def estimate_resources(
    num_nodes: int,
    num_edges: int,
    dim: int,
    iterations: int,
    directed: bool,
    block_size: int,
    self_loops: int = 0,
    state_files: bool = False,
    concurrent_tasks: int = 1,
    jvm_heap_bytes: int | None = None,
) -> dict:
    """Memory and shuffle volume of one run, from counts alone (like GDS's ``.estimate``).

    Spark engine, per iteration: every column block b sends, for every other row block a it has
    edges to, the non-empty row chunks of P_ab X_b (P_bb X_b stays in its task): about
    min(M' (B - 1) / B, (B - 1) N) rows of D float32, B = ceil(N / block_size) (ids are hashed to
    blocks, so a share (B - 1) / B of the edges crosses blocks; one block shuffles nothing). P and
    the state never move: they stay partitioned by block. X_k and E_k are checkpointed (N x D
    float32 each). The graph is shuffled once, as binary payloads (about 40 bytes per stored edge).
    One reduce task holds, per block row and dimension, 40 bytes: the old X and E (float32), the
    float64 accumulator, the diagonal product and the partials (float32), the new X and E and their
    pickled copy on the way to the cache; plus its share of P (M' / B x 8 bytes, twice while it is
    read). At 1e7 edges, d=128, 2 blocks: this figure 2.4 GiB, the Python workers of the 2 tasks 4.9 GiB.
    The driver holds counts, which row chunks each P_ab touches, and B moment vectors.
    Disk: Spark keeps every shuffle's files until its cleaner frees them, so with the state in
    Spark's cache all of them count, plus two iterations' checkpoints; with the state in files
    (``state_files``) an iteration's partials are deleted once it is summed, so the graph's pass,
    one iteration's partials and two iterations' state files.
    The local engine holds S (M' x 12 bytes x 2 for P), R/X/E/P·X (4 x N x D x 8 bytes).
    Per process (``concurrent_tasks`` cores of a host or executor, a JVM heap of
    ``jvm_heap_bytes``): the Python workers, a worker per core plus a task's memory for each block
    product running at once; the JVM, a floor plus a figure per stored edge (plus the cached state
    when it is not in files: that term is the state's size, not fitted), at most its heap plus what
    it holds outside it (G1 fills the heap before collecting the old generation).

    Returns:
        dict of counts and byte figures (ints) plus a human-readable summary under "summary".
    """
    stored = num_edges if directed else 2 * num_edges - self_loops
    blocks = max(1, math.ceil(num_nodes / block_size))
    block_rows = min(block_size, num_nodes)
    shuffle_iter = min(stored * (blocks - 1) // blocks, (blocks - 1) * num_nodes) * dim * 4
    out = {
        "num_nodes": num_nodes,
        "num_edges": num_edges,
        "stored_edges": stored,
        "dim": dim,
        "iterations": iterations,
        "num_blocks": blocks,
        "block_size": block_rows,
        "shuffle_bytes_per_iteration": shuffle_iter,
        "shuffle_bytes_total": shuffle_iter * iterations + stored * 40,
        "checkpoint_bytes_per_iteration": num_nodes * dim * 4 * 2,
        "task_memory_bytes": 40 * block_rows * dim + 2 * (stored // blocks) * 8,
        "driver_memory_bytes": (3 * blocks + 2) * dim * 8,
        "local_engine_memory_bytes": stored * 12 * 2 + 4 * num_nodes * dim * 8,
    }
    cores = max(1, concurrent_tasks)
    out["python_workers_memory_bytes"] = cores * PYTHON_WORKER_BYTES + min(cores, blocks) * out["task_memory_bytes"]
    if jvm_heap_bytes:
        cached = 0 if state_files else 2 * out["checkpoint_bytes_per_iteration"]
        out["jvm_memory_bytes"] = min(
            jvm_heap_bytes + JVM_NON_HEAP_BYTES, JVM_BASE_BYTES + JVM_BYTES_PER_STORED_EDGE * stored + cached
        )
    state_bytes = 2 * out["checkpoint_bytes_per_iteration"]
    out["disk_bytes"] = (stored * 40 + shuffle_iter if state_files else out["shuffle_bytes_total"]) + state_bytes
    gib = 1 << 30
    out["summary"] = (
        f"{num_nodes} nodes, {stored} stored edges, dim {dim}, {iterations} iterations, {blocks} blocks of "
        f"{block_rows} nodes: shuffle {out['shuffle_bytes_total'] / gib:.2f} GiB total "
        f"({shuffle_iter / gib:.2f} GiB per iteration), checkpoints {out['checkpoint_bytes_per_iteration'] / gib:.2f} GiB "
        f"per iteration, task memory {out['task_memory_bytes'] / gib:.2f} GiB, driver "
        f"{out['driver_memory_bytes'] / (1 << 20):.2f} MiB, Python workers {out['python_workers_memory_bytes'] / gib:.2f} GiB"
        + (f", JVM {out['jvm_memory_bytes'] / gib:.2f} GiB" if "jvm_memory_bytes" in out else "")
        + f"; local engine {out['local_engine_memory_bytes'] / gib:.2f} GiB"
    )
    return out
