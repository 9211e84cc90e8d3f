"""CTR quality: test AUC vs the synthetic generator's best possible AUC, plus a Criteo-format run.

    OMP_NUM_THREADS=1 python bench/ctr_quality.py                     # 400k, 2M and 5M rows (learning curve)
    OMP_NUM_THREADS=1 python bench/ctr_quality.py --num-rows 400000   # one size, quick
    python bench/ctr_quality.py --skip-synthetic                      # only the Criteo-format check

Synthetic: the lead's jobs make the click log (with its oracle), the vocabulary and the encoded
table; then jobs/train_ctr.py trains each variant and reports ``test_auc`` next to
``oracle_test_auc`` (the AUC of the true click probabilities on exactly the same test rows).
Goal: within 0.005 (the generator's labels depend only on what the log shows, so the oracle is
the true ceiling). The gap left is estimation error (tail values seen a few dozen times), so it
shrinks with data: each size in ``--num-rows`` is one point of the learning curve (JSON + PNG),
and the variants' headline numbers come from the largest size. Criteo: ../shared/data/criteo_sample.txt (CSV, 200 rows) goes through the
same vocabulary -> encode -> train path as a format check (its AUC means nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SPARK = ["--master", "local[2]", "--set", "mlflow.enabled=false", "--set", "spark.shuffle_partitions=4"]


def sh(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, cwd=REPO, check=True)


CRITEO_SCHEMA = [
    "--set",
    f"schema.categorical=[{', '.join(f'C{i}' for i in range(1, 27))}]",
    "--set",
    f"schema.dense=[{', '.join(f'I{i}' for i in range(1, 14))}]",
    "--set",
    "schema.time=null",
]


def write_rows(out: str, args, rows: list[dict], plot) -> None:
    """The bench's JSON (its arguments and rows) at ``out`` and ``plot(rows, <out>.png)``; rewritten as rows come."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    plot(rows, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}", flush=True)


def tables(paths: dict[str, str]) -> list[str]:
    """``--set tables.<name>.path=...`` for each table of ``paths``."""
    return [arg for name, path in paths.items() for arg in ("--set", f"tables.{name}.path={path}")]


def ensure_synthetic(root: Path, num_rows: int, seed: int = 7) -> dict[str, str]:
    """Click log + oracle + vocabulary + encoded table under ``root`` (made once, then reused)."""
    paths = {k: str(root / k) for k in ("clicks", "edges", "oracle", "vocab", "encoded")}
    if not (root / "encoded" / "_delta_log").is_dir():
        sh(
            [
                PY,
                str(REPO / "jobs" / "make_synthetic.py"),
                *SPARK,
                "--set",
                f"synth.num_rows={num_rows}",
                "--set",
                f"synth.seed={seed}",
                *tables(paths),
            ]
        )
        sh([PY, "jobs/build_vocab.py", *SPARK, *tables(paths)])
        sh([PY, "jobs/encode.py", *SPARK, *tables(paths)])
    return paths


def ensure_criteo(root: Path, csv: Path) -> dict[str, str]:
    """Vocabulary + encoded table of the Criteo sample (CSV with a header: label, I1..I13, C1..C26)."""
    paths = {"vocab": str(root / "vocab"), "encoded": str(root / "encoded")}
    if not (root / "encoded" / "_delta_log").is_dir():
        # the click-log quality suite expects the synthetic schema (event_id, tags, counts >= 0): off for Criteo
        criteo = [
            "--set",
            "quality.enabled=false",
            *CRITEO_SCHEMA,
            "--set",
            f"tables.clicks={{path: {csv}, format: csv}}",
            *tables(paths),
        ]
        sh([PY, "jobs/build_vocab.py", *SPARK, *criteo, "--set", "vocab.min_count=1"])
        sh([PY, "jobs/encode.py", *SPARK, *criteo])
    return paths


def synthetic_train_flags(d: dict[str, str], epochs: int, extra: str, *variant: str) -> list[str]:
    """train_ctr flags over one synthetic data set of :func:`ensure_synthetic` (its oracle included).

    ``extra`` (the user's ``--train-flags``) comes last, so it overrides the variant's flags.
    """
    tables = ["--input", d["encoded"], "--vocab", d["vocab"], "--oracle", d["oracle"]]
    return [*tables, "--epochs", str(epochs), *variant, *extra.split()]


def train(name: str, out_dir: Path, flags: list[str]) -> dict:
    metrics = out_dir / f"{name}.{os.getpid()}.json"  # parallel bench runs must not read each other's metrics
    # no checkpoints/export from conf/local.yaml in benchmarks: each run starts fresh and writes only metrics
    sh(
        [
            PY,
            "jobs/train_ctr.py",
            "--metrics-out",
            str(metrics),
            "--no-progress",
            "--set",
            "train.checkpoint_dir=null",
            "--set",
            "train.export_path=null",
            "--set",
            "tables.oracle=null",
            *flags,
        ]
    )
    return json.loads(metrics.read_text())


VARIANTS = {
    "dlrm_vocab": ["--set", "train.model.kind=dlrm"],
    "dcn_vocab": ["--set", "train.model={kind: dcn, cross_layers: 2, cross_rank: 16}"],
}


def plot_curve(curve: list[dict], path: Path) -> None:
    """Test AUC and the oracle's against training-set size, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["variant"] for r in curve):
        rows = [r for r in curve if r["variant"] == name]
        ax.semilogx([r["num_rows"] for r in rows], [r["test_auc"] for r in rows], "o-", label=f"{name} test AUC")
    ax.semilogx(
        [r["num_rows"] for r in curve], [r["oracle_test_auc"] for r in curve], "k--", label="oracle (best possible)"
    )
    (
        ax.set_xlabel("rows generated (70% train, 10% valid, 20% test)"),
        ax.set_ylabel("AUC"),
        ax.grid(True, alpha=0.3),
        ax.legend(),
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--num-rows", default="400000,2000000,5000000", help="synthetic sizes, comma separated")
    p.add_argument("--data-root", default="bench/results/ctr_data_v2")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--train-flags", default="", help="extra flags for every synthetic training run")
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--criteo", default=str(REPO.parent / "shared" / "data" / "criteo_sample.txt"))
    p.add_argument("--out", default="bench/results/ctr_quality.json")
    args = p.parse_args(argv)
    root = REPO / args.data_root
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    result: dict = {"goal": "test_auc within 0.005 of oracle_test_auc", "synthetic": {}, "criteo_format_check": None}
    if Path(args.out).is_file():  # keep earlier results of the parts skipped this time
        result.update({k: v for k, v in json.loads(Path(args.out).read_text()).items() if k != "ceiling"})
    if not args.skip_synthetic:
        result["synthetic"], result["learning_curve"] = {}, []
        for num_rows in sorted(int(float(n)) for n in args.num_rows.split(",")):
            d = ensure_synthetic(root / f"synth_{num_rows}", num_rows)
            for name in args.variants.split(","):
                m = train(
                    name,
                    runs,
                    synthetic_train_flags(d, args.epochs, args.train_flags, *VARIANTS[name]),
                )
                gap = m["oracle_test_auc"] - m["test_auc"]
                row = {
                    k: m[k]
                    for k in (
                        "test_auc",
                        "oracle_test_auc",
                        "test_logloss",
                        "valid_auc",
                        "embedding_params",
                        "examples_per_second",
                        "steps",
                        "test_rows",
                        "layout",
                        "model",
                    )
                }
                row.update(
                    gap=gap, goal_met=gap <= 0.005, num_rows=num_rows, epochs=args.epochs, train_flags=args.train_flags
                )
                result["synthetic"][name] = row  # the largest size wins (sizes run in increasing order)
                result["learning_curve"].append({"variant": name, **row})
                print(name, row, flush=True)
        result["num_rows"] = args.num_rows
        plot_curve(result["learning_curve"], Path(args.out).with_suffix(".png"))
    if args.criteo and Path(args.criteo).is_file():
        d = ensure_criteo(root / "criteo_sample", Path(args.criteo))
        for world in (1, 2):
            m = train(
                f"criteo_ws{world}",
                runs,
                [
                    "--input",
                    d["encoded"],
                    "--vocab",
                    d["vocab"],
                    "--batch-size",
                    "16",
                    "--eval-batch-size",
                    "64",
                    "--epochs",
                    "2",
                    "--world-size",
                    str(world),
                    *CRITEO_SCHEMA,
                ],
            )
            result[f"criteo_format_check_ws{world}"] = {
                k: m[k] for k in ("test_auc", "test_logloss", "test_rows", "embedding_params", "steps", "tables")
            }
        result["criteo_format_check"] = "ok"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
