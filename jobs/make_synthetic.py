"""Generate the synthetic click log, oracle and user-item edges (spark-submit entry point)."""

import sys

from core.cli import load_config, run
from embeddings.spark import spark_session
from embeddings.stages import run_synth


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="synth", description=__doc__)
    with spark_session(cfg.spark) as spark:
        out = run_synth(spark, cfg)
    c, e = out["clicks"], out["edges"]
    print(f"click log: {c.path} ({c.num_rows} rows, Delta v{c.version}); best possible AUC {out['best_auc']:.4f}")
    print(f"edges: {e.path} ({e.num_rows} edges, Delta v{e.version}); oracle: {out['oracle'].path}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
