"""What graph features add to CTR training: test AUC without them, ``frozen`` and ``init``, overall and on cold rows.

    OMP_NUM_THREADS=1 python bench/graph_features.py                           # 200k and 800k rows
    OMP_NUM_THREADS=1 python bench/graph_features.py --num-rows 200000 --epochs 1

Per size, the pipeline's own jobs make the synthetic click log (many users and items seen only a
few times: ``--num-users``/``--num-items`` well above the defaults, so the tail is cold), its
vocabulary, the encoded table, the interaction graph (``jobs/build_graph.py``, event counts: no
label reaches the graph) and its FastRP table; then ``jobs/train_ctr.py`` trains the same model
three times: no graph features, ``train.graph_features`` ``frozen`` and ``init`` on the user (C1)
and item (C2). Each exported model scores the trainer's test rows; cold rows are those whose user
or item has at most ``--cold`` training events. The oracle (the generator's true probabilities)
is the ceiling on exactly the same rows. JSON + plot in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ctr_quality import SPARK, sh, tables, train, write_rows  # noqa: E402

PY = sys.executable
VARIANTS = {
    "none": ["--set", "train.graph_features={}"],  # conf/local.yaml turns them on: off explicitly
    "frozen": ["--set", "train.graph_features={C1: frozen, C2: frozen}"],
    "init": ["--set", "train.graph_features={C1: init, C2: init}"],
}


def ensure_data(root: Path, args, num_rows: int) -> dict[str, str]:
    """Click log + oracle, vocabulary, encoded table, edges and FastRP table under ``root`` (made once)."""
    paths = {k: str(root / k) for k in ("clicks", "oracle", "vocab", "encoded", "edges", "embeddings")}
    if (root / "embeddings" / "_delta_log").is_dir():
        return paths
    synth = [f"synth.num_rows={num_rows}", f"synth.num_users={args.num_users}", f"synth.num_items={args.num_items}"]
    flags = [*SPARK, *tables(paths), "--set", f"tables.root={root}"]  # quality evidence, checkpoints under root
    sh([PY, "jobs/make_synthetic.py", *flags, *[a for s in synth for a in ("--set", s)]])
    for job in ("build_vocab", "encode", "build_graph", "fastrp"):
        sh([PY, f"jobs/{job}.py", *flags])
    return paths


def read_delta(path: str, columns: list[str]):
    from deltalake import DeltaTable

    return DeltaTable(path).to_pyarrow_table(columns=columns)


def scored_rows(d: dict[str, str], model_path: Path, result: dict, cold: int) -> dict:
    """AUC of the exported model, and of the oracle, on all test rows and on the cold ones."""
    import pyarrow as pa

    from recsys.data.splits import random_split
    from recsys.export import load_exported
    from recsys.metrics import auc_logloss
    from recsys.results import SplitRecord

    model = load_exported(str(model_path))
    encoded = read_delta(d["encoded"], None)
    split = SplitRecord.model_validate(result["split"])
    if split.kind != "random":  # the cold rows are counted on the training rows of the trainer's random split
        raise SystemExit(f"bench/graph_features.py scores random splits only; the run used {split.kind!r}")
    ids = encoded.column("event_id").to_numpy()
    code = random_split(ids, split.seed, split.valid_fraction, split.test_fraction)
    counts = {}
    for col in ("C1", "C2"):
        values = encoded.column(col).to_numpy(zero_copy_only=False)
        counts[col] = np.bincount(values[code == 0], minlength=int(values.max()) + 1)[values]
    is_cold = (counts["C1"] <= cold) | (counts["C2"] <= cold)
    test = code == 2
    probs = model.predict(encoded.filter(pa.array(test)))
    labels = encoded.column("label").to_numpy()[test]
    oracle = read_delta(d["oracle"], ["event_id", "p_true"])
    p_true = dict(zip(oracle.column("event_id").to_numpy(), oracle.column("p_true").to_numpy()))
    truth = np.array([p_true[i] for i in ids[test]])
    cold_test = is_cold[test]
    return {
        "test_rows": int(test.sum()),
        "cold_rows": int(cold_test.sum()),
        "auc": auc_logloss(labels, probs)["auc"],
        "cold_auc": auc_logloss(labels[cold_test], probs[cold_test])["auc"],
        "oracle_auc": auc_logloss(labels, truth)["auc"],
        "oracle_cold_auc": auc_logloss(labels[cold_test], truth[cold_test])["auc"],
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "auc", "all test rows"), (axes[1], "cold_auc", "cold test rows")):
        sizes = sorted({r["num_rows"] for r in rows})
        for variant in VARIANTS:
            ax.plot(
                sizes,
                [next(r[key] for r in rows if r["num_rows"] == n and r["variant"] == variant) for n in sizes],
                "o-",
                label=variant,
            )
        ax.plot(
            sizes, [next(r[f"oracle_{key}"] for r in rows if r["num_rows"] == n) for n in sizes], "k--", label="oracle"
        )
        ax.set_xscale("log")
        ax.set_xlabel("rows generated")
        ax.set_ylabel("test AUC")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-rows", default="200000,800000", help="synthetic sizes, comma separated")
    p.add_argument("--num-users", type=int, default=40_000)
    p.add_argument("--num-items", type=int, default=10_000)
    p.add_argument("--cold", type=int, default=5, help="a row is cold when its user or item has <= this many")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--data-root", default="bench/results/graph_features_data")
    p.add_argument("--train-flags", default="", help="extra flags for every training run")
    p.add_argument("--out", default="bench/results/graph_features.json")
    args = p.parse_args(argv)
    rows = []
    for num_rows in [int(n) for n in args.num_rows.split(",")]:
        root = Path(args.data_root) / f"rows_{num_rows}"
        d = ensure_data(root, args, num_rows)
        for variant, flags in VARIANTS.items():
            model_path = root / f"model_{variant}.pt"
            data = [
                "--input",
                d["encoded"],
                "--vocab",
                d["vocab"],
                "--set",
                f"tables.embeddings.path={d['embeddings']}",
                "--set",
                f"tables.root={root}",  # its MLflow runs go to root/mlflow.db, not the user's data/
            ]
            result = train(
                variant,
                root,
                [
                    *data,
                    "--epochs",
                    str(args.epochs),
                    *flags,
                    *args.train_flags.split(),
                    "--set",
                    f"train.export_path={model_path}",
                ],
            )
            row = {"num_rows": num_rows, "variant": variant, **scored_rows(d, model_path, result, args.cold)}
            row.update(
                embedding_params=result["embedding_params"],
                examples_per_second=result["examples_per_second"],
                trainer_test_auc=result["test_auc"],
            )
            print(json.dumps(row), flush=True)
            rows.append(row)
    write_rows(args.out, args, rows, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
