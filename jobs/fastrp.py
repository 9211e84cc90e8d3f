"""FastRP node embeddings of the edge table, written to a Delta table (spark-submit entry point).

    spark-submit jobs/fastrp.py --edges data/graph/edges --output data/fastrp --dim 128 \
        --iteration-weights 0,1,1,1 --normalization-strength -0.5 --seed 42
    python jobs/fastrp.py --estimate      # memory and shuffle volume, computes nothing

Tables ``edges`` -> ``embeddings`` of the catalog, gated (``edges``, ``embeddings`` suites) and
tracked like every stage. See embeddings/fastrp.py (maths) and embeddings/fastrp_engine.py (Spark).
"""

import json
import sys

from core.cli import load_config, run
from embeddings.fastrp_engine import files_state_store
from embeddings.fastrp_run import estimate_run
from embeddings.io import read_table
from embeddings.runner import run_stage
from embeddings.spark import spark_session
from embeddings.stages import FASTRP


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="fastrp", description=__doc__)
    with spark_session(cfg.spark) as spark:
        if cfg.fastrp.estimate:
            edges = cfg.tables.entry("edges")
            raw_edges = read_table(spark, edges.path, edges.format, what="tables.edges")  # validated by estimate_run
            files = files_state_store(spark, cfg.spark.checkpoint_dir, cfg.fastrp.state_store)
            print(json.dumps(estimate_run(raw_edges, cfg.fastrp, files), indent=2))
            return 0
        stage = run_stage(spark, cfg, FASTRP)
    result = stage.written["embeddings"]
    report = {"output": result.path, "version": result.version, "rows": result.num_rows}
    print(json.dumps({**report, "seconds_by_step": stage.seconds_by_step}))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
