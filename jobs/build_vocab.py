"""Build or refresh feature vocabularies with stable ids (spark-submit entry point).

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.1.0 jobs/build_vocab.py \
        --input s3://bucket/clicks --features C1,C2,tags --min-count 5 --max-size 1000000
"""

import sys

from core.cli import load_config, run
from embeddings.spark import spark_session
from embeddings.stages import run_vocab


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="vocab", description=__doc__)
    with spark_session(cfg.spark) as spark:
        out = run_vocab(spark, cfg)
    v = out["vocab"]
    print(f"vocabulary: {v.path} (Delta v{v.version}, {v.num_rows} values, refresh {out['refresh']})")
    print("num_embeddings per feature: " + ", ".join(f"{f}={n}" for f, n in out["num_embeddings"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
