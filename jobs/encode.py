"""Encode the click log's categorical columns as vocabulary ids (spark-submit entry point).

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.1.0 jobs/encode.py \
        --input s3://bucket/clicks --vocab s3://bucket/vocab --output s3://bucket/encoded

Tables ``clicks`` + ``vocab`` -> ``encoded`` of the catalog.
"""

import sys

from core.cli import load_config, run
from embeddings.runner import run_stage
from embeddings.spark import spark_session
from embeddings.stages import ENCODE


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="encode", description=__doc__)
    with spark_session(cfg.spark) as spark:
        e = run_stage(spark, cfg, ENCODE).written["encoded"]
    print(f"encoded: {e.path} (Delta v{e.version}, {e.num_rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
