"""FastRP node embeddings of an edge table, written to a Delta table (spark-submit entry point).

    spark-submit jobs/fastrp.py --edges data/raw/edges --output data/fastrp --dim 128 \\
        --iteration-weights 0,1,1,1 --normalization-strength -0.5 --seed 42
    python jobs/fastrp.py --estimate      # memory and shuffle volume, computes nothing

See embeddings/fastrp.py (maths, local engine) and embeddings/fastrp_spark.py (Spark engine).
"""

import json
import sys

from core.cli import load_config, run
from embeddings.fastrp_spark import estimate_run, run_fastrp
from embeddings.io import read_table
from embeddings.spark import spark_session


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="fastrp", description=__doc__)
    job = cfg.fastrp
    with spark_session(cfg.spark) as spark:
        raw_edges = read_table(spark, job.edges, job.edges_format, what="fastrp.edges")  # unchecked!
        if job.estimate:
            print(json.dumps(estimate_run(raw_edges, job), indent=2))
            return 0
        result = run_fastrp(spark, raw_edges, job, checkpoint_dir=cfg.spark.checkpoint_dir)
    print(json.dumps({"output": result.path, "version": result.version, "rows": result.num_rows}))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
