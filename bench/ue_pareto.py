"""AUC vs embedding parameter budget: per-feature hashing vs Unified Embedding vs collisionless tables.

    python bench/ue_pareto.py --num-rows 400000 --fractions 0.5,0.2,0.1,0.05 --out bench/results/ue_pareto

Budgets are fractions of the collisionless (vocabulary-sized) parameter count P. At each budget
``R = fraction * P / D`` rows: ``hashed`` gives each feature its own table (rows split in
proportion to vocabulary size); ``unified`` shares one R-row table across all features (one
lookup each, distinct salts); ``unified_k2`` shares 2R rows of width D/2 with two lookups per
feature (same parameters, same feature width D; Coleman et al.'s multiplexing with k chunks).
Writes ``<out>.json`` and ``<out>.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ctr_quality import REPO, ensure_synthetic, synthetic_train_flags, train  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--num-rows", type=int, default=400_000)
    p.add_argument("--data-root", default="bench/results/ctr_data")
    p.add_argument("--fractions", default="0.5,0.2,0.1,0.05")
    p.add_argument("--embedding-dim", type=int, default=16)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-flags", default="")
    p.add_argument("--out", default="bench/results/ue_pareto")
    args = p.parse_args(argv)
    d = ensure_synthetic(REPO / args.data_root / f"synth_{args.num_rows}", args.num_rows)
    runs = REPO / args.data_root / "runs_pareto"
    runs.mkdir(parents=True, exist_ok=True)
    D = args.embedding_dim
    common = synthetic_train_flags(d, args.epochs, args.train_flags)
    points = []

    def run(method: str, fraction: float, flags: list[str]) -> None:
        m = train(f"{method}_{fraction}", runs, [*common, *flags])
        points.append(
            {
                "method": method,
                "fraction": fraction,
                "embedding_params": m["embedding_params"],
                "test_auc": m["test_auc"],
                "test_logloss": m["test_logloss"],
                "oracle_test_auc": m["oracle_test_auc"],
                "tables": m["tables"],
            }
        )
        print(points[-1], flush=True)

    run("collisionless", 1.0, ["--embedding-dim", str(D)])
    full = points[0]["embedding_params"]
    for fraction in [float(f) for f in args.fractions.split(",")]:
        rows = max(int(fraction * full / D), 8)
        run(
            "hashed",
            fraction,
            ["--embedding-dim", str(D), "--set", f"train.layout={{kind: hashed, total_rows: {rows}}}"],
        )
        run(
            "unified",
            fraction,
            ["--embedding-dim", str(D), "--set", f"train.layout={{kind: unified, total_rows: {rows}}}"],
        )
        run(
            "unified_k2",
            fraction,
            [
                "--embedding-dim",
                str(D // 2),
                "--set",
                f"train.layout={{kind: unified, total_rows: {2 * rows}, num_chunks: 2}}",
            ],
        )
    result = {"collisionless_params": full, "embedding_dim": D, "num_rows": args.num_rows, "points": points}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    _plot(result, out.with_suffix(".png"))
    print(json.dumps(result, indent=2))
    return 0


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    pts = result["points"]
    for method, style in (("hashed", "o-"), ("unified", "s-"), ("unified_k2", "^-")):
        sel = sorted((q for q in pts if q["method"] == method), key=lambda q: q["embedding_params"])
        ax.plot([q["embedding_params"] for q in sel], [q["test_auc"] for q in sel], style, label=method)
    full = [q for q in pts if q["method"] == "collisionless"][0]
    ax.axhline(full["test_auc"], color="gray", ls="--", label="collisionless")
    ax.axhline(full["oracle_test_auc"], color="k", ls=":", label="oracle (best possible)")
    ax.set_xscale("log")
    ax.set_xlabel("embedding parameters")
    ax.set_ylabel("test AUC")
    ax.set_title("Unified Embedding vs hashing (synthetic CTR)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
