"""Candidate retrieval quality of FastRP vectors beside the baselines a user would write, JSON + plot.

    python bench/retrieval_quality.py                       # synthetic log + BlogCatalog, K = 10, 50, 100
    python bench/retrieval_quality.py --skip-blogcatalog --num-rows 400000

Two data sets, each scored in one run beside (a) most-popular and (b) co-occurrence counts (ItemKNN):

* **synthetic click log** (``embeddings.synth``), leave-last-out by time: each user's last
  ``--holdout`` events are held out, the graph is built from the events before them by the
  pipeline's own ``embeddings.graph.build_edges`` (Spark) and embedded by FastRP (the local engine,
  equal to the Spark engine to 1e-5). user->item: a user's top-K items by cosine of the vectors,
  items of the user's training edges left out (as ``jobs/retrieve.py`` does with ``exclude_seen``);
  item->item: the top-K items most similar to the user's last training item. Relevant: the held-out
  items the user had not seen before.
* **BlogCatalog** (``../shared/data/blogcatalog.mat``), link prediction: 10% of the edges are held
  out, the rest is embedded; every node with a held-out edge ranks all other nodes, its training
  neighbours left out. Baselines: degree (most-popular) and common neighbours (ItemKNN on the graph).

Recall@K and NDCG@K (``embeddings.ranking``) for every method; JSON and a PNG in ``bench/results/``,
logged to MLflow with ``--tracking-uri``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.config import FastRPConfig, GraphConfig, SparkConfig, SynthConfig  # noqa: E402
from embeddings import fastrp as fr  # noqa: E402
from embeddings.ranking import mean_metrics  # noqa: E402

KS = (10, 50, 100)


@dataclass(frozen=True)
class Split:
    """A ranking task: who queries, what they saw in training, what is relevant (held out)."""

    train: sp.csr_matrix  # (Q, C) training interactions, 1 where seen (left out of every ranking)
    relevant: list[set[int]]  # per query: held-out candidate indices not seen in training
    last: np.ndarray | None  # (Q,) each query's last training candidate (item->item), or None


def top_k(scores: np.ndarray, seen: sp.csr_matrix, k: int) -> list[list[int]]:
    """Per row of ``scores`` (q, C): the k best columns, seen ones left out, ties by column index.

    A full sort per row (score descending, then column), so integer-valued baselines (popularity,
    co-occurrence counts) rank their ties the same way every run; the FastRP ranking is the same
    as ``jobs/retrieve.py``'s (``embeddings.retrieval``, tested against brute force).
    """
    s = np.array(scores, dtype=np.float64)
    rows, cols = seen.nonzero()
    s[rows, cols] = -np.inf
    columns = np.broadcast_to(np.arange(s.shape[1]), s.shape)
    order = np.lexsort((columns, -s), axis=1)[:, :k]  # last key first: score descending, then column
    return [[int(c) for c in row if np.isfinite(s[i, c])] for i, row in enumerate(order)]


def cosine_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def evaluate(score_fn, split: Split, k: int, block: int = 1024) -> dict[str, float]:
    """Recall/NDCG@KS of ``score_fn(rows) -> (len(rows), C) scores`` over the queries with relevant items."""
    queries = np.flatnonzero([len(r) > 0 for r in split.relevant])
    ranked, relevant = [], []
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        ranked += top_k(score_fn(rows), split.train[rows], k)
        relevant += [split.relevant[q] for q in rows]
    return {**mean_metrics(ranked, relevant, KS), "queries": len(relevant)}


# --------------------------------------------------------------------------- synthetic click log


def synthetic_split(cfg: SynthConfig, holdout: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The generator's rows, split per user: the last ``holdout`` events by time are held out."""
    from embeddings import synth

    model = synth.make_hidden_model(cfg)
    rows = synth.generate_rows(cfg, model, np.arange(cfg.num_rows))
    rows = rows.sort_values(["C1", "ts", "event_id"], kind="stable")
    rank_from_end = rows.groupby("C1").cumcount(ascending=False)
    return rows[rank_from_end >= holdout], rows[rank_from_end < holdout]


def pipeline_edges(train_rows: pd.DataFrame, graph: GraphConfig, workdir: Path) -> pd.DataFrame:
    """The training events' interaction graph, built by the pipeline's Spark function (as jobs/build_graph.py)."""
    from embeddings.graph import build_edges
    from embeddings.spark import build_spark

    spark = build_spark(
        SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="4g", checkpoint_dir=str(workdir))
    )
    try:
        clicks = spark.createDataFrame(train_rows[["event_id", "ts", "label", "C1", "C2"]])
        return build_edges(clicks, graph, time_col="ts", label_col="label").toPandas()  # bench only: small
    finally:
        spark.stop()


def bench_synthetic(args, workdir: Path) -> dict:
    cfg = SynthConfig(num_rows=args.num_rows, seed=args.seed)
    started = time.time()
    train_rows, held = synthetic_split(cfg, args.holdout)
    edges = pipeline_edges(train_rows, GraphConfig(), workdir)
    graph_seconds = time.time() - started
    fcfg = FastRPConfig(
        dim=args.dim,
        iteration_weights=args.weights,
        normalization_strength=args.beta,
        weight_col="weight",
        seed=args.seed,
    )
    started = time.time()
    nodes, emb = fr.embed_edge_list(edges["src"].to_numpy(), edges["dst"].to_numpy(), edges["weight"].to_numpy(), fcfg)
    fastrp_seconds = time.time() - started
    vec = dict(zip(nodes, cosine_rows(emb)))

    users = sorted({f"user:{u}" for u in train_rows["C1"]})
    items = sorted(n for n in nodes if n.startswith("item:"))
    u_ix, i_ix = {u: j for j, u in enumerate(users)}, {i: j for j, i in enumerate(items)}
    ui = edges[edges["kind"] == "user-item"]
    x = sp.csr_matrix(
        (np.ones(len(ui)), (ui["src"].map(u_ix).to_numpy(), ui["dst"].map(i_ix).to_numpy())),
        shape=(len(users), len(items)),
    )
    relevant: list[set[int]] = [set() for _ in users]
    for u, i in zip(held["C1"], held["C2"]):
        uq, iq = u_ix.get(f"user:{u}"), i_ix.get(f"item:{i}")
        if uq is not None and iq is not None and x[uq, iq] == 0:
            relevant[uq].add(iq)
    last_items = train_rows.groupby("C1").tail(1)
    last = np.full(len(users), -1)
    for u, i in zip(last_items["C1"], last_items["C2"]):
        last[u_ix[f"user:{u}"]] = i_ix.get(f"item:{i}", -1)
    split = Split(train=x, relevant=relevant, last=last)

    uv = np.stack([vec[u] for u in users])
    iv = np.stack([vec[i] for i in items])
    popularity = np.asarray(x.sum(axis=0)).ravel()
    co = (x.T @ x).tocsr().astype(np.float64)
    co.setdiag(0)
    co.eliminate_zeros()
    k = max(KS)
    methods = {
        "user->item": {
            "fastrp": lambda r: uv[r] @ iv.T,
            "most_popular": lambda r: np.tile(popularity, (len(r), 1)),
            "itemknn": lambda r: (x[r] @ co).toarray(),
        },
        "item->item (last item)": {
            "fastrp": lambda r: iv[last[r]] @ iv.T,
            "most_popular": lambda r: np.tile(popularity, (len(r), 1)),
            "itemknn": lambda r: co[last[r]].toarray(),
        },
    }
    results = {task: {name: evaluate(fn, split, k) for name, fn in fns.items()} for task, fns in methods.items()}
    return {
        "data": {
            "generator": "embeddings.synth",
            "num_rows": cfg.num_rows,
            "holdout_per_user": args.holdout,
            "users": len(users),
            "items": len(items),
            "edges": int(len(edges)),
        },
        "fastrp": {"dim": args.dim, "iteration_weights": args.weights, "normalization_strength": args.beta},
        "seconds": {"graph": graph_seconds, "fastrp": fastrp_seconds},
        "results": results,
    }


# --------------------------------------------------------------------------- BlogCatalog link prediction


def bench_blogcatalog(args) -> dict:
    import scipy.io

    network = sp.csr_matrix(scipy.io.loadmat(args.mat)["network"])
    upper = sp.triu(network, k=1).tocoo()
    rng = np.random.default_rng(args.seed)
    held = rng.random(len(upper.row)) < args.holdout_fraction
    n = network.shape[0]
    train_upper = sp.csr_matrix((np.ones((~held).sum()), (upper.row[~held], upper.col[~held])), shape=(n, n))
    train = ((train_upper + train_upper.T) > 0).astype(np.float64).tocsr()
    relevant: list[set[int]] = [set() for _ in range(n)]
    for a, b in zip(upper.row[held], upper.col[held]):
        relevant[a].add(int(b))
        relevant[b].add(int(a))
    seen = (train + sp.identity(n, format="csr")).tocsr()  # a node never retrieves itself
    split = Split(train=seen, relevant=relevant, last=None)

    tr = sp.triu(train, k=1).tocoo()
    fcfg = FastRPConfig(dim=args.dim, iteration_weights=args.weights, normalization_strength=args.beta, seed=args.seed)
    started = time.time()
    nodes, emb = fr.embed_edge_list(tr.row.astype(np.int64), tr.col.astype(np.int64), None, fcfg)
    fastrp_seconds = time.time() - started
    vectors = np.zeros((n, emb.shape[1]))
    vectors[nodes] = cosine_rows(emb)
    degree = np.asarray(train.sum(axis=0)).ravel()
    k = max(KS)
    methods = {
        "fastrp": lambda r: vectors[r] @ vectors.T,
        "most_popular": lambda r: np.tile(degree, (len(r), 1)),
        "common_neighbours": lambda r: (train[r] @ train).toarray(),
    }
    return {
        "data": {
            "graph": str(args.mat),
            "nodes": n,
            "edges": int(len(upper.row)),
            "held_out_edges": int(held.sum()),
        },
        "fastrp": {"dim": args.dim, "iteration_weights": args.weights, "normalization_strength": args.beta},
        "seconds": {"fastrp": fastrp_seconds},
        "results": {"link prediction": {name: evaluate(fn, split, k) for name, fn in methods.items()}},
    }


# --------------------------------------------------------------------------- report


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(data, task, res) for data, body in report["runs"].items() for task, res in body["results"].items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (data, task, res) in zip(axes[0], panels):
        for name, metrics in res.items():
            ax.plot(KS, [metrics[f"recall@{k}"] for k in KS], marker="o", label=name)
        ax.set_title(f"{data}: {task}", fontsize=9)
        ax.set_xlabel("K")
        ax.set_ylabel("Recall@K")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-rows", type=int, default=200_000)
    p.add_argument("--holdout", type=int, default=1, help="held-out events per user (leave-last-out)")
    p.add_argument("--mat", default=str(REPO.parent / "shared" / "data" / "blogcatalog.mat"))
    p.add_argument("--holdout-fraction", type=float, default=0.1, help="BlogCatalog edges held out")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--weights", type=lambda s: [float(w) for w in s.split(",")], default=[0.0, 1.0, 1.0, 1.0])
    p.add_argument("--beta", type=float, default=0.0, help="fastrp.normalization_strength")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--skip-blogcatalog", action="store_true")
    p.add_argument("--out", default="bench/results/retrieval_quality.json")
    p.add_argument("--tracking-uri", default=None, help="log the JSON and plot to this MLflow store")
    args = p.parse_args(argv)

    import tempfile

    report: dict = {"ks": list(KS), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_synthetic:
            report["runs"]["synthetic"] = bench_synthetic(args, Path(tmp))
        if not args.skip_blogcatalog:
            report["runs"]["blogcatalog"] = bench_blogcatalog(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    png = out.with_suffix(".png")
    plot(report, png)
    for data, body in report["runs"].items():
        for task, res in body["results"].items():
            for name, m in res.items():
                cells = "  ".join(f"R@{k} {m[f'recall@{k}']:.4f} N@{k} {m[f'ndcg@{k}']:.4f}" for k in KS)
                print(f"{data:12s} {task:24s} {name:18s} {cells}  ({m['queries']} queries)")
    if args.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(args.tracking_uri)
        with mlflow.start_run(run_name="retrieval_quality"):
            mlflow.log_dict(report, "retrieval_quality.json")
            mlflow.log_artifact(str(png), "plots")
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
