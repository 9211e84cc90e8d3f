"""Build the interaction graph (edge table) of the click log (spark-submit entry point).

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.1.0 jobs/build_graph.py \
        --input s3://bucket/clicks --output s3://bucket/graph/edges --set graph.weight=positives

Tables ``clicks`` -> ``edges`` of the catalog (``--input``/``--output`` set their paths); the
user and item columns, weight policy, window, decay and co-occurrence are the ``graph`` section.
"""

import json
import sys

from core.cli import load_config, run
from embeddings.runner import run_stage
from embeddings.spark import spark_session
from embeddings.stages import BUILD_GRAPH


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="graph", description=__doc__)
    with spark_session(cfg.spark) as spark:
        result = run_stage(spark, cfg, BUILD_GRAPH)
    e = result.written["edges"]
    print(json.dumps({"output": e.path, "version": e.version, "rows": e.num_rows, **result.summary.model_dump()}))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
