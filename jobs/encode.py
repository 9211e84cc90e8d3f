"""Encode a table's categorical columns as vocabulary ids (spark-submit entry point).

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.1.0 jobs/encode.py \
        --input s3://bucket/clicks --vocab s3://bucket/vocab --output s3://bucket/encoded
"""

import sys

from core.cli import load_config, run
from embeddings.spark import spark_session
from embeddings.stages import run_encode


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="encode", description=__doc__)
    with spark_session(cfg.spark) as spark:
        out = run_encode(spark, cfg)
    e = out["encoded"]
    print(f"encoded: {e.path} (Delta v{e.version}, {e.num_rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
