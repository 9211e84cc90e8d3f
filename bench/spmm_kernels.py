"""Sparse x dense kernels for FastRP's propagation step P @ X (float32), measured on this machine, JSON.

    OMP_NUM_THREADS=2 python bench/spmm_kernels.py --sizes 1e6,1e7 --dim 128

Issue 16 asks to pick the per-block kernel of the Spark engine by measurement. On the power-law
graphs of ``bench/fastrp_speed.py`` (undirected, row-normalised P, float32 X of (N, d)), each kernel
computes the whole P @ X once per repeat (median of ``--repeats``): scipy's CSR product (one
thread), scipy on row bands in a thread pool (scipy's kernel releases the GIL), and torch's sparse
CSR ``mm`` at 1 and at ``--threads`` threads. Each result is compared with scipy in float64 (max
abs error), and timed as nnz x d multiply-adds per second beside the memory-traffic floor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastrp_speed import power_law_edges  # noqa: E402  (the same graphs as the FastRP speed bench)


def transition(num_edges: int, seed: int) -> sp.csr_matrix:
    """P = D^-1 (S + S^T) of a power-law graph of ``num_edges`` edges, float32 CSR."""
    edges = power_law_edges(num_edges, seed)
    ids, idx = np.unique(np.concatenate([edges["src"], edges["dst"]]), return_inverse=True)
    m = len(edges)
    s = sp.coo_matrix((np.ones(m), (idx[:m], idx[m:])), shape=(len(ids), len(ids))).tocsr()
    s = (s + s.T).tocsr()
    deg = np.asarray(s.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    return (sp.diags(inv) @ s).tocsr().astype(np.float32)


def banded(p: sp.csr_matrix, x: np.ndarray, pool: ThreadPoolExecutor, bands: int) -> np.ndarray:
    """P @ X with the rows of P cut into ``bands`` bands of about equal nnz, one per pool thread."""
    cuts = np.searchsorted(p.indptr, np.linspace(0, p.nnz, bands + 1)).clip(0, p.shape[0])
    cuts[0], cuts[-1] = 0, p.shape[0]
    out = np.empty((p.shape[0], x.shape[1]), dtype=np.float32)

    def one(k: int) -> None:
        a, b = cuts[k], cuts[k + 1]
        out[a:b] = p[a:b] @ x

    list(pool.map(one, range(bands)))
    return out


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    """(median seconds, last result) of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    seconds, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), out


def measure(num_edges: int, dim: int, threads: int, repeats: int, seed: int) -> list[dict]:
    import torch

    p = transition(num_edges, seed)
    x = np.random.default_rng(seed).standard_normal((p.shape[0], dim)).astype(np.float32)
    exact = p.astype(np.float64) @ x.astype(np.float64)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    pt = torch.sparse_csr_tensor(
        torch.from_numpy(p.indptr.astype(np.int64)),
        torch.from_numpy(p.indices.astype(np.int64)),
        torch.from_numpy(p.data),
        size=p.shape,
    )
    xt = torch.from_numpy(x)

    def torch_mm(n: int):
        def run() -> np.ndarray:
            torch.set_num_threads(n)
            return (pt @ xt).numpy()

        return run

    pool = ThreadPoolExecutor(threads)
    kernels = {
        "scipy": lambda: p @ x,
        f"scipy_bands_{threads}_threads": lambda: banded(p, x, pool, threads),
        "torch_csr_1_thread": torch_mm(1),
        f"torch_csr_{threads}_threads": torch_mm(threads),
    }
    # the floor: every stored entry reads its X row (d floats) once and writes it once, in float32
    traffic = p.nnz * dim * 4 * 2
    rows = []
    for name, fn in kernels.items():
        seconds, out = timed(fn, repeats)
        rows.append(
            {
                "edges": num_edges,
                "nodes": p.shape[0],
                "nnz": p.nnz,
                "dim": dim,
                "kernel": name,
                "seconds": seconds,
                "gmacs": p.nnz * dim / seconds / 1e9,
                "gbytes_per_s_floor": traffic / seconds / 1e9,
                "max_abs_err_vs_float64": float(np.abs(out - exact).max()),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    pool.shutdown()
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup_vs_scipy"] = base / r["seconds"]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1e6,1e7", help="edges per graph, comma separated")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/spmm_kernels.json")
    args = p.parse_args(argv)
    rows = [
        r
        for size in args.sizes.split(",")
        for r in measure(int(float(size)), args.dim, args.threads, args.repeats, args.seed)
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
