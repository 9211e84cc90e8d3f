"""The FastRP a user would write without us, one process each: plain scipy, or the Rust ``fastrp`` package.

    python bench/fastrp_baselines.py --engine scipy --edges edges.parquet --dim 128 --iterations 3
    /path/to/venv/bin/python bench/fastrp_baselines.py --engine rust --edges edges.parquet ...

Standalone on purpose (numpy, scipy, pyarrow; ``fastrp`` for rust): bench/fastrp_speed.py runs it
as a child process, the rust one under the interpreter of its own environment (``--rust-python``),
and times the whole process from outside. Prints one JSON line: seconds per phase (read: Parquet
and id factorisation; embed: graph and iterations) and the embedding's shape.

scipy: ids factorised with ``np.unique``, A + A^T as CSR (duplicates summed), P = D^-1 A, the very
sparse random R (density 1/sqrt(N), entries +-sqrt(s)) scaled by degree^-0.5, then per iteration
X = l2rows(P X), E += X, all float32, one thread (what ``P @ X`` gives). rust: ``fastrp.fit_csr``
on the same directed CSR with ``undirected=True`` (it forms M + M^T itself) and weights 1, 1, 1.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def read_edges(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src index, dst index, unique ids) from the Parquet edge list."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["src", "dst"])
    src, dst = table.column("src").to_numpy(), table.column("dst").to_numpy()
    ids, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    return inverse[: len(src)], inverse[len(src) :], ids


def scipy_fastrp(src: np.ndarray, dst: np.ndarray, n: int, dim: int, iterations: int, seed: int) -> np.ndarray:
    """Plain scipy FastRP (paper variant, beta -0.5, weights 1), float32, one thread."""
    import scipy.sparse as sp

    ones = np.ones(len(src), dtype=np.float32)
    a = sp.csr_matrix((ones, (src, dst)), shape=(n, n))
    a = (a + a.T).tocsr()
    degree = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0).astype(np.float32)
    p = (sp.diags(inv) @ a).tocsr().astype(np.float32)
    rng = np.random.default_rng(seed)
    s = np.sqrt(n)
    r = rng.random((n, dim), dtype=np.float32)
    x = np.where(r < 1 / (2 * s), np.sqrt(s), np.where(r > 1 - 1 / (2 * s), -np.sqrt(s), 0.0)).astype(np.float32)
    del r
    scale = np.power(np.maximum(degree, 1.0), -0.5).astype(np.float32)
    x *= scale[:, None]
    e = np.zeros((n, dim), dtype=np.float32)
    for _ in range(iterations):
        x = p @ x
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
        e += x
    return e


def rust_fastrp(src: np.ndarray, dst: np.ndarray, n: int, dim: int, iterations: int, seed: int) -> np.ndarray:
    """The Rust package on the directed CSR (it symmetrises with ``undirected=True``)."""
    import fastrp
    import scipy.sparse as sp

    m = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    return fastrp.fit_csr(
        m.indptr.astype(np.int64),
        m.indices.astype(np.int64),
        m.data.astype(np.float64),
        n,
        dim,
        weights=[1.0] * iterations,
        seed=seed,
        undirected=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["scipy", "rust"], required=True)
    parser.add_argument("--edges", required=True)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    seconds, started = {}, time.time()
    src, dst, ids = read_edges(args.edges)
    seconds["read"], started = time.time() - started, time.time()
    embed = scipy_fastrp if args.engine == "scipy" else rust_fastrp
    emb = embed(src, dst, len(ids), args.dim, args.iterations, args.seed)
    seconds["embed"] = time.time() - started
    print(json.dumps({"seconds_by_phase": seconds, "shape": list(emb.shape), "finite": bool(np.isfinite(emb).all())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
