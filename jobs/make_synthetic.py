"""Generate the synthetic click log, oracle and user-item edges (spark-submit entry point).

Tables ``clicks``, ``oracle`` and ``edges`` of the catalog.
"""

import sys

from core.cli import load_config, run
from embeddings.runner import run_stage
from embeddings.spark import spark_session
from embeddings.stages import SYNTH


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="synth", description=__doc__)
    with spark_session(cfg.spark) as spark:
        result = run_stage(spark, cfg, SYNTH)
    c, e, o = (result.written[t] for t in ("clicks", "edges", "oracle"))
    print(
        f"click log: {c.path} ({c.num_rows} rows, Delta v{c.version}); best possible AUC {result.summary.best_auc:.4f}"
    )
    print(f"edges: {e.path} ({e.num_rows} edges, Delta v{e.version}); oracle: {o.path}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
