"""Generate the synthetic click log and its oracle (spark-submit entry point).

Tables ``clicks`` and ``oracle`` of the catalog; jobs/build_graph.py makes the edges of the click log.
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
    c, o = (result.written[t] for t in ("clicks", "oracle"))
    print(
        f"click log: {c.path} ({c.num_rows} rows, Delta v{c.version}); best possible AUC {result.summary.best_auc:.4f}"
    )
    print(f"oracle: {o.path} (Delta v{o.version})")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
