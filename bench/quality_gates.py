"""Cost of the Great Expectations gates on Spark (local[2]): seconds per suite vs rows, JSON out.

    python bench/quality_gates.py                       # 1e4,1e5,1e6 click rows
    python bench/quality_gates.py --sizes 1e5,1e6,4e6   # more

For each size: the synthetic click log (embeddings/synth.py) is generated, cached and counted
first (not timed), then ``validate(df, "clicks")`` is timed with Data Docs on; likewise FastRP-
shaped embeddings (N = rows / 10 nodes, D = --dim) for ``validate(df, "embeddings")``. The
first call (GX import, JVM warm-up) is timed apart as ``first_call_s``; the fixed cost per
validation (fresh in-memory GX context, Data Docs) shows as the time at the smallest size.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "quality_gates.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e4,1e5,1e6", help="click-log rows, comma list")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()

    from pyspark.sql import functions as F

    from core.config import QualityConfig, SparkConfig, SynthConfig
    from embeddings.quality import validate
    from embeddings.spark import build_spark
    from embeddings.synth import generate

    tmp = Path(tempfile.mkdtemp(prefix="bench_quality_"))
    spark = build_spark(
        SparkConfig(master=args.master, shuffle_partitions=4, driver_memory="4g", checkpoint_dir=str(tmp / "ck"))
    )
    quality = QualityConfig(output=str(tmp / "quality"), persist=False)
    t0 = time.perf_counter()  # first call: imports GX, warms the JVM; reported apart
    validate(spark.createDataFrame([(0.5,)], "probability double"), "scores", quality)
    first_call_s = time.perf_counter() - t0
    rows = []
    for size in [int(float(s)) for s in args.sizes.split(",")]:
        clicks = generate(spark, SynthConfig(num_rows=size)).drop("p_true").cache()
        clicks.count()
        t0 = time.perf_counter()
        report = validate(clicks, "clicks", quality)
        clicks_s = time.perf_counter() - t0
        clicks.unpersist()

        nodes = max(size // 10, 1)
        rand = [F.rand(seed=d).cast("float") for d in range(args.dim)]
        emb = (
            spark.range(nodes)
            .select(F.col("id").cast("string").alias("node"), F.array(*rand).alias("embedding"))
            .cache()
        )
        emb.count()
        t0 = time.perf_counter()
        emb_report = validate(emb, "embeddings", quality, dim=args.dim, max_norm=float(args.dim))
        emb_s = time.perf_counter() - t0
        emb.unpersist()
        row = {
            "rows": size,
            "clicks_s": round(clicks_s, 2),
            "clicks_ok": report.success,
            "clicks_expectations": report.evaluated,
            "nodes": nodes,
            "dim": args.dim,
            "embeddings_s": round(emb_s, 2),
            "embeddings_ok": emb_report.success,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    spark.stop()
    out = {
        "bench": "quality_gates",
        "master": args.master,
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "first_call_s": round(first_call_s, 2),
        "results": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
