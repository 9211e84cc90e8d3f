"""Grid search of FastRP settings on *tuning* shuffles, kept apart from the quality bench's evaluation.

    python bench/fastrp_tune.py --mat ../shared/data/blogcatalog.mat \
        --grid "sparsity=3,auto;normalization_strength=-0.628,-0.8;iteration_weights=1:1:7.81:45.28"

Each setting is embedded with the scipy reference engine (equal to the Spark engine to ~1e-5) for
each projection seed in --seeds and scored with the DeepWalk protocol of bench/fastrp_quality.py,
but on shuffles drawn from --shuffle-seed (default 7; the quality bench reports seed 42's shuffles)
and projection seeds other than the quality bench's 42, so the chosen setting is not picked on the
numbers it is then reported on. All settings share the same shuffles and seeds (paired comparison).
Writes every setting's scores, ranked by mean Macro-F1 over the ratios, to JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from fastrp_quality import PAPER_SETTING, embed_with_local, load_mat, score, summarize

DEFAULTS = {
    k: v for k, v in PAPER_SETTING.items() if k != "standardize"
}  # tunable; standardisation stays on, as in the paper


def parse_value(key: str, text: str):
    """One grid value: weights as colon-separated floats, variant as text, sparsity 'auto' = sqrt(N)."""
    if key == "iteration_weights":
        return [float(x) for x in text.split(":")]
    if key == "variant":
        return text
    if key == "sparsity" and text == "auto":
        return None
    if key == "dim":
        return int(text)
    return float(text)


def parse_grid(spec: str) -> list[dict]:
    """'a=1,2;b=x' -> the cartesian product as a list of setting dicts over DEFAULTS."""
    axes = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        key, _, values = part.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"--grid: unknown setting {key!r}; known: {sorted(DEFAULTS)}")
        axes[key] = [parse_value(key, v) for v in values.split(",")]
    keys = list(axes)
    return [{**DEFAULTS, **dict(zip(keys, combo))} for combo in itertools.product(*(axes[k] for k in keys))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mat", required=True)
    parser.add_argument("--grid", default="", help="'key=v1,v2;key2=...' over " + ", ".join(DEFAULTS))
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--shuffle-seed", type=int, default=7)
    parser.add_argument("--shuffles", type=int, default=2)
    parser.add_argument("--ratios", type=lambda s: [float(x) for x in s.split(",")], default=[0.1, 0.5, 0.9])
    parser.add_argument("--C", type=float, default=0.1, dest="c")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--out", default="bench/results/fastrp_tune.json")
    args = parser.parse_args(argv)
    if args.shuffle_seed == 42:
        raise SystemExit("--shuffle-seed 42 is the quality bench's evaluation split; tune on another")
    network, labels = load_mat(args.mat)
    results = []
    for i, setting in enumerate(parse_grid(args.grid)):
        started = time.time()
        per_seed = {
            str(seed): score(
                embed_with_local(network, {**PAPER_SETTING, **setting, "seed": seed}),
                labels,
                args.ratios,
                args.shuffles,
                args.c,
                args.shuffle_seed,
                args.n_jobs,
            )
            for seed in args.seeds
        }
        scores = summarize(per_seed)
        macro = {r: s["macro_f1"] for r, s in scores.items()}
        results.append(
            {
                "setting": setting,
                "scores": scores,
                "mean_macro_f1": sum(macro.values()) / len(macro),
                "seconds": time.time() - started,
            }
        )
        print(f"[{i + 1}] {setting} -> macro {macro} mean {results[-1]['mean_macro_f1']:.4f}", flush=True)
        results.sort(key=lambda r: -r["mean_macro_f1"])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {
                    "protocol": {k: v for k, v in vars(args).items() if k != "grid"},
                    "grid": args.grid,
                    "ranked": results,
                },
                indent=2,
            )
        )
    print(json.dumps(results[:5], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
