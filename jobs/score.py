"""Batch scoring with the registered CTR model (spark-submit entry point): raw rows -> Delta probabilities.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.1.0 jobs/score.py \
        --model models:/ctr_model@champion --input data/raw/clicks --output data/scores

Tables ``score_rows`` (default: ``clicks``) -> ``scores``. The alias is resolved to one version
first, so the whole job scores with one model even if the alias moves meanwhile. Rows are scored by
``mlflow.pyfunc.spark_udf`` (raw columns of the model's signature), checked by the GX ``scores``
suite, and written as one atomic Delta commit with ``schema.id`` and ``probability``; on any error
the previous output stays intact.
"""

import sys

from core.cli import load_config, run
from embeddings.runner import run_stage
from embeddings.spark import spark_session
from embeddings.stages import SCORE


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="score", description=__doc__)
    with spark_session(cfg.spark) as spark:
        result = run_stage(spark, cfg, SCORE)
    out = result.written["scores"]
    print(
        f"scored {out.num_rows} rows of {cfg.tables.path('score_rows')} with {result.summary.model} -> "
        f"{out.path} (Delta v{out.version})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
