"""Set-up check run once by ``make``: the pinned stack imports, and Delta's jars are fetched now.

Starting one local Delta SparkSession makes Spark resolve ``io.delta:delta-spark`` from Maven
Central into the local ivy cache, so later runs and tests never download anything.
"""

from __future__ import annotations

import sys
import tempfile


def main() -> int:
    import pyspark

    from core.config import SparkConfig
    from embeddings.spark import build_spark

    with tempfile.TemporaryDirectory() as tmp:
        spark = build_spark(SparkConfig(master="local[1]", checkpoint_dir=f"{tmp}/ckpt"))
        spark.range(3).write.format("delta").save(f"{tmp}/t")
        n = spark.read.format("delta").load(f"{tmp}/t").count()
        spark.stop()
    print(f"warm-up: Spark {pyspark.__version__} with Delta ok ({n} rows round-tripped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
