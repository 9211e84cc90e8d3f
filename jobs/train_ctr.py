"""Train a CTR model with TorchRec on the encoded Delta table (``--world-size N`` ranks; torchrun; Spark).

    python jobs/train_ctr.py --world-size 2 --metrics-out data/ctr_metrics.json
    torchrun --nproc-per-node 2 jobs/train_ctr.py
    python jobs/train_ctr.py --launcher spark --world-size 2   # Spark TorchDistributor
    python jobs/train_ctr.py --device cuda --world-size 2      # nccl, one GPU per rank
    python jobs/train_ctr.py --resume                           # continue the same run from train.checkpoint_dir

A run this host cannot hold (more ranks than cores or GPUs, tables larger than available memory)
is refused before any rank starts unless ``--force``; ``--resume`` refuses a checkpoint written by a
run with another config, seed, split, input version or world size.

The run is tracked in MLflow (child of $PIPELINE_PARENT_RUN_ID if set): metrics, training curves,
the metrics JSON, the ShardingPlan and the Delta versions of the input and vocabulary. Its run id
is added to the result JSON (``mlflow_run_id``), where jobs/promote.py picks it up.
"""

import os
import sys

from core.cli import load_config, run
from core.tracking import mlflow_run


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="train", description=__doc__)
    tracked = cfg.mlflow.model_copy(update={"enabled": cfg.mlflow.enabled and os.environ.get("RANK", "0") == "0"})
    inputs = cfg.train_inputs()
    with mlflow_run(tracked, "train", params={"train": cfg.train, "inputs": inputs}) as mlrun:
        if cfg.train.launcher == "spark":
            from embeddings.spark import spark_session
            from recsys.launch_spark import distributor_conf, train_on_spark

            spark = cfg.spark.model_copy(update={"conf": {**distributor_conf(cfg.train), **cfg.spark.conf}})
            with spark_session(spark):
                result = train_on_spark(cfg.train, inputs)
        else:
            from recsys.train import run_training

            result = run_training(cfg.train, inputs)
        if result is not None and mlrun is not None:
            from recsys.reporting import log_training_run
            from recsys.results import write_result

            result = result.model_copy(update={"mlflow_run_id": mlrun.info.run_id})
            if cfg.train.metrics_out:
                write_result(cfg.train.metrics_out, result)
            log_training_run(result, inputs)
    if result is not None:
        print(
            f"test_auc={result.test_auc} test_logloss={result.test_logloss} "
            f"embedding_params={result.embedding_params} examples/s={result.examples_per_second or 0:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
