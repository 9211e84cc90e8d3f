"""CTR quality over data shapes we did not tune on: our recipes beside the baselines a user would write.

    OMP_NUM_THREADS=1 python bench/ctr_shapes.py                                  # 1M rows, every shape
    OMP_NUM_THREADS=1 python bench/ctr_shapes.py --num-rows 200000 --shapes main,pairwise

Per shape (``bench/shapes_generator.py``, a second generator independent of ours, plus ``ours``,
the pipeline's own synthetic log) and in one run: the click log goes through the pipeline's jobs
(vocabulary on the first 80% of rows by time, ``vocab.end``; encoded table), then
``jobs/train_ctr.py`` trains each recipe of ``RECIPES`` on a time split 80/10/10, and on exactly
the trainer's train and test rows two baselines are fitted: logistic regression on hashed one-hot
features (sklearn, 2^20 buckets) and a plain PyTorch model (per-value embeddings + a 1-wide
per-value weight, the sum of all pairwise dot products, Adagrad lr 0.02, one epoch). Every AUC is on the same test rows, next
to the Bayes-optimal AUC of those rows (the generator's ``p_true``). JSON + plot in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import shapes_generator as gen  # noqa: E402
from ctr_quality import SPARK, sh, tables, train, write_rows  # noqa: E402

PY = sys.executable
SPLIT = ["--set", "train.split={kind: time, valid_fraction: 0.1, test_fraction: 0.1}"]
RECIPES = {  # conf/local.yaml's train section (DCN + wide, D=32, 1 epoch) without graph features, and variants
    "default": [],
    "default-wide": ["--set", "train.model.wide=false"],
    "deepfm": ["--set", "train.model.kind=deepfm"],
    "previous_default": [  # the default before the shapes bench (DCN, D=16, 2 epochs, the code's lrs)
        a
        for kv in (
            "train.model={kind: dcn, wide: false}",
            "train.embedding_dim=16",
            "train.epochs=2",
            "train.embedding_lr=0.05",
            "train.dense_lr=0.001",
            "train.embedding_l2=0.0",
            "train.eval_every=null",
        )
        for a in ("--set", kv)
    ],
    "tuned": None,  # jobs/tune.py's best layer for the shape (conf/local.yaml's space, --tune-trials trials)
}


def tuned_layer(shape: str, root: Path, flags: list[str], trials: int) -> list[str]:
    """Run (or continue) the shape's study with jobs/tune.py on the train/valid rows; the flags of its best layer.

    The study never sees the test rows: trials are ranked by valid AUC, and the test AUC of the
    layer is measured afterwards like every other recipe's.
    """
    best = root / "tune" / "best.yaml"
    study = ["--study-name", shape, "--storage", f"sqlite:///{root / 'optuna.db'}", "--output", str(best)]
    sh([PY, "jobs/tune.py", *SPARK, *flags, *study, "--n-trials", str(trials), "--set", "train.progress=false"])
    return ["--config", "conf/local.yaml", "--config", str(best)]


def ensure_shape(root: Path, shape: str, num_rows: int, seed: int) -> tuple[dict[str, str], list[str], list[str]]:
    """Click log, oracle, vocabulary and encoded table of ``shape`` under ``root`` (made once).

    Returns:
        (table paths, the schema flags of the jobs, the categorical columns).
    """
    paths = {k: str(root / k) for k in ("clicks", "oracle", "vocab", "encoded")}
    if shape == "ours":
        schema: list[str] = []
        from core.config import ClickSchema

        cats = ClickSchema().categorical
        synth = ["--set", f"synth.num_rows={num_rows}", "--set", f"synth.seed={seed}"]
        make = [[PY, "jobs/make_synthetic.py", *SPARK, *tables(paths), *synth, "--set", f"tables.root={root}"]]
    else:
        clicks, oracle = gen.make(shape, num_rows, seed)
        cats, dense = gen.categorical_columns(clicks), gen.dense_columns(clicks)
        schema = ["--set", f"schema.categorical=[{', '.join(cats)}]", "--set", f"schema.dense=[{', '.join(dense)}]"]
        make = []
        if not (root / "clicks" / "_delta_log").is_dir():
            from deltalake import write_deltalake

            write_deltalake(paths["clicks"], clicks)
            write_deltalake(paths["oracle"], oracle)
    if not (root / "encoded" / "_delta_log").is_dir():
        for cmd in make:
            sh(cmd)
        end = vocab_end(paths["clicks"])
        flags = [*SPARK, *tables(paths), *schema, "--set", f"tables.root={root}"]
        sh([PY, "jobs/build_vocab.py", *flags, "--set", f"vocab.end={end}"])
        sh([PY, "jobs/encode.py", *flags])
    return paths, schema, cats


def vocab_end(clicks: str) -> str:
    """The first time of the last 20% of rows: the vocabulary sees what training sees (train + nothing later)."""
    from deltalake import DeltaTable

    ts = DeltaTable(clicks).to_pyarrow_table(columns=["ts"]).column("ts").cast("int64").to_numpy()
    s = np.sort(ts)
    cut = int(s[int(len(s) * 0.8)])
    return np.datetime64(cut, "us").astype(str)


def raw_rows(paths: dict[str, str], split: dict):
    """(table, train mask, test mask) of the click log, with the trainer's split (same cutoffs)."""
    from deltalake import DeltaTable

    from recsys.data.splits import in_test_split
    from recsys.results import SplitRecord

    table = DeltaTable(paths["clicks"]).to_pyarrow_table()
    record = SplitRecord.model_validate(split)
    test = in_test_split(table, record, "event_id")
    ts = table.column("ts").cast("int64").to_numpy()
    valid_start = np.datetime64(record.valid_start).astype("datetime64[us]").astype(np.int64)
    return table, ts < valid_start, test


def dense_matrix(table, dense: list[str]) -> np.ndarray:
    """log(1 + max(x, 0)) and a missing indicator per dense column, as the trainer does."""
    out = []
    for c in dense:
        x = table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        miss = np.isnan(x)
        out += [np.log1p(np.maximum(np.nan_to_num(x, nan=0.0), 0.0)), miss.astype(np.float64)]
    return np.stack(out, axis=1)


def tokens(table, cats: list[str]) -> list[list[str]]:
    """Per row the strings ``field=value`` of every categorical value (bags: one per element; null: ``field=``)."""
    per_col = []
    for c in cats:
        col = table.column(c).to_pylist()
        per_col.append([[f"{c}={v}" for v in x] if isinstance(x, list) else [f"{c}={x}"] for x in col])
    return [sum(row, []) for row in zip(*per_col)]


def logistic_regression(table, train, test, cats, dense) -> dict:
    """sklearn LogisticRegression on hashed one-hot features + the dense columns."""
    import scipy.sparse as sp
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    started = time.perf_counter()
    hashed = FeatureHasher(n_features=2**20, input_type="string", alternate_sign=False).transform(tokens(table, cats))
    x = sp.hstack([hashed, sp.csr_matrix(dense_matrix(table, dense))]).tocsr()
    y = table.column("label").to_numpy()
    model = LogisticRegression(C=1.0, max_iter=100, solver="lbfgs").fit(x[train], y[train])
    auc = roc_auc_score(y[test], model.predict_proba(x[test])[:, 1])
    return {"test_auc": float(auc), "seconds": time.perf_counter() - started}


def plain_torch(table, train, test, cats, dense, dim: int = 16, batch: int = 1024, seed: int = 0) -> dict:
    """Per-value embeddings + 1-wide weights, the sum of the pairwise dots, a linear dense part; Adagrad lr 0.02, 1 epoch."""
    import torch
    from sklearn.metrics import roc_auc_score
    from torch import nn

    started = time.perf_counter()
    torch.manual_seed(seed)
    bags = []  # per field: (offsets (N+1,), ids (nnz,)), ids from the training rows' values (0: unseen/missing)
    for c in cats:
        col = table.column(c).to_pylist()
        rows = [x if isinstance(x, list) else [x] for x in col]
        vocab: dict = {}
        for r, keep in zip(rows, train):
            if keep:
                for v in r:
                    if v is not None and v not in vocab:
                        vocab[v] = len(vocab) + 1
        lens = np.array([len(r) for r in rows])
        ids = np.array([vocab.get(v, 0) for r in rows for v in r], dtype=np.int64)
        bags.append((np.concatenate([[0], np.cumsum(lens)]), ids, len(vocab) + 1))
    xd = torch.tensor(dense_matrix(table, dense), dtype=torch.float32)
    y = torch.tensor(table.column("label").to_numpy(), dtype=torch.float32)
    emb = nn.ModuleList([nn.EmbeddingBag(n, dim, mode="mean") for _, _, n in bags])
    wide = nn.ModuleList([nn.EmbeddingBag(n, 1, mode="mean") for _, _, n in bags])
    for w in wide:
        nn.init.zeros_(w.weight)
    for e in emb:
        nn.init.normal_(e.weight, std=0.01)
    lin = nn.Linear(xd.shape[1], 1)
    params = [*emb.parameters(), *wide.parameters(), *lin.parameters()]
    opt = torch.optim.Adagrad(params, lr=0.02)

    def forward(idx: np.ndarray) -> torch.Tensor:
        vecs, first = [], lin(xd[idx]).squeeze(-1)
        for (off, ids, _), e, w in zip(bags, emb, wide):
            if len(ids) == len(off) - 1:  # one value per row
                v, o = torch.tensor(ids[idx]), torch.arange(len(idx))
            else:
                starts, ends = off[idx], off[idx + 1]
                v = torch.tensor(np.concatenate([ids[a:b] for a, b in zip(starts, ends)]))
                o = torch.tensor(np.concatenate([[0], np.cumsum(ends - starts)[:-1]]))
            vecs.append(e(v, o))
            first = first + w(v, o).squeeze(-1)
        s = torch.stack(vecs, 1)
        total = s.sum(1)
        return first + 0.5 * (total * total - (s * s).sum(1)).sum(-1)

    order = np.random.default_rng(seed).permutation(np.flatnonzero(train))
    loss_fn = nn.BCEWithLogitsLoss()
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        loss = loss_fn(forward(idx), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        test_idx = np.flatnonzero(test)
        p = torch.cat([torch.sigmoid(forward(test_idx[i : i + 8192])) for i in range(0, len(test_idx), 8192)])
    auc = roc_auc_score(y[test_idx].numpy(), p.numpy())
    return {"test_auc": float(auc), "seconds": time.perf_counter() - started}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "bayes_optimal" and "layer_of" not in m]
    fig, ax = plt.subplots(figsize=(1.8 * len(shapes) + 3, 4))
    width = 0.8 / (len(methods) + 1)
    for j, m in enumerate([*methods, "bayes_optimal"]):
        vals = [next((r["test_auc"] for r in rows if r["shape"] == s and r["method"] == m), np.nan) for s in shapes]
        ax.bar(np.arange(len(shapes)) + j * width, vals, width, label=m)
    ax.set_xticks(np.arange(len(shapes)) + 0.4 - width / 2, shapes)
    lo = np.nanmin([r["test_auc"] for r in rows])
    ax.set_ylim(max(0.5, lo - 0.02), 1.0)
    ax.set_ylabel("test AUC (same rows)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def shape_root(shape: str, args) -> Path:
    """The shape's data folder (absolute: ``tables.root`` prefixes relative table paths)."""
    return Path(args.data_root).resolve() / f"{shape}_{args.num_rows}_{args.seed}"


def shape_flags(shape: str, args) -> tuple[Path, dict[str, str], list[str], list[str], list[str]]:
    """(root, table paths, categorical columns, flags of a training run, flags of a tuning run) of ``shape``."""
    root = shape_root(shape, args)
    paths, schema, cats = ensure_shape(root, shape, args.num_rows, args.seed)
    same = [*schema, *SPLIT, "--set", "train.graph_features={}", "--set", f"tables.root={root}"]
    data = ["--input", paths["encoded"], "--vocab", paths["vocab"], "--oracle", paths["oracle"]]
    tuning = [*tables({"encoded": paths["encoded"], "vocab": paths["vocab"]}), "--set", "tables.oracle=null", *same]
    extra = args.train_flags.split()
    return root, paths, cats, [*data, *same, *extra], [*tuning, *extra]


def averages(rows: list[dict], shapes: list[str]) -> dict[str, float]:
    """Mean test AUC per method over ``shapes`` (methods measured on every one of them only).

    A shape's own tuned layer counts as its ``layer_of_<shape>`` too, so each layer_of row is one
    fixed recipe over every shape, comparable with the default's.
    """
    rows = [*rows, *({**r, "method": f"layer_of_{r['shape']}"} for r in rows if r["method"] == "tuned")]
    out = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        vals = [r["test_auc"] for r in rows if r["method"] == m and r["shape"] in shapes and r["test_auc"] is not None]
        if len(vals) == len(shapes):
            out[m] = float(np.mean(vals))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-rows", type=int, default=1_000_000)
    p.add_argument("--shapes", default=",".join([*gen.SHAPES, "ours"]))
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default="bench/results/ctr_shapes_data")
    p.add_argument("--train-flags", default="", help="extra flags for every training run")
    p.add_argument("--tune-trials", type=int, default=20, help="trials of the 'tuned' recipe's study per shape")
    p.add_argument(
        "--transfer",
        action="store_true",
        help="also train every shape with every other shape's tuned layer (methods layer_of_<shape>): "
        "which single recipe is best on average",
    )
    p.add_argument("--out", default="bench/results/ctr_shapes.json")
    args = p.parse_args(argv)
    rows: list[dict] = []
    shapes = args.shapes.split(",")

    def measure(shape: str, method: str, root: Path, flags: list[str]) -> dict:
        started = time.perf_counter()
        result = train(f"{shape}_{method}", root, flags)
        row = {
            "shape": shape,
            "method": method,
            "test_auc": result["test_auc"],
            "valid_auc": result["valid_auc"],
            "test_rows": result["test_rows"],
            "seconds": time.perf_counter() - started,
            "embedding_params": result["embedding_params"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        return result

    for shape in shapes:
        root, paths, cats, common, tuning = shape_flags(shape, args)
        for recipe in args.recipes.split(","):
            flags = RECIPES[recipe]
            if flags is None:
                flags = tuned_layer(shape, root, tuning, args.tune_trials)
            result = measure(shape, recipe, root, [*flags, *common])
        table, train_rows, test_rows = raw_rows(paths, result["split"])
        dense = gen.dense_columns(table)
        for name, fit in (("logistic_regression", logistic_regression), ("plain_torch", plain_torch)):
            out = fit(table, train_rows, test_rows, cats, dense)
            rows.append({"shape": shape, "method": name, "test_rows": int(test_rows.sum()), **out})
            print(json.dumps(rows[-1]), flush=True)
        rows.append({"shape": shape, "method": "bayes_optimal", "test_auc": result["oracle_test_auc"]})
        write_rows(args.out, args, rows, plot)  # after every shape: a stopped run keeps what it measured
    if args.transfer:
        for shape in shapes:
            root, _, _, common, _ = shape_flags(shape, args)
            for source in shapes:
                best = shape_root(source, args) / "tune" / "best.yaml"
                if source != shape and best.exists():
                    measure(
                        shape,
                        f"layer_of_{source}",
                        root,
                        ["--config", "conf/local.yaml", "--config", str(best), *common],
                    )
            write_rows(args.out, args, rows, plot)
    print(json.dumps({"mean_test_auc_over_shapes": averages(rows, shapes)}, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
