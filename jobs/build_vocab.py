"""Build or refresh the feature vocabularies of the click log (spark-submit entry point).

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.1.0 jobs/build_vocab.py \
        --input s3://bucket/clicks --output s3://bucket/vocab --min-count 5

Tables ``clicks`` -> ``vocab`` of the catalog (``--input``/``--output`` set their paths); the
columns are ``schema.categorical``.
"""

import sys

from core.cli import load_config, run
from embeddings.runner import run_stage
from embeddings.spark import spark_session
from embeddings.stages import VOCAB


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="vocab", description=__doc__)
    with spark_session(cfg.spark) as spark:
        result = run_stage(spark, cfg, VOCAB)
    v, s = result.written["vocab"], result.summary
    print(f"vocabulary: {v.path} (Delta v{v.version}, {v.num_rows} values, refresh {s.refresh})")
    print("num_embeddings per feature: " + ", ".join(f"{f}={n}" for f, n in s.num_embeddings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
