"""Train a CTR model with TorchRec on the encoded Delta table (``--world-size N`` ranks; torchrun; Spark).

    python jobs/train_ctr.py --world-size 2 --metrics-out data/ctr_metrics.json
    torchrun --nproc-per-node 2 jobs/train_ctr.py
    python jobs/train_ctr.py --launcher spark --world-size 2   # Spark TorchDistributor
"""

import sys

from embeddings.cli import run
from embeddings.config import load_config
from embeddings.io import InputError
from recsys.errors import InputDataError


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="train", description=__doc__)
    try:
        if cfg.train.launcher == "spark":
            from embeddings.spark import spark_session
            from recsys.launch_spark import train_on_spark

            with spark_session(cfg.spark):
                metrics = train_on_spark(cfg.train)
        else:
            from recsys.train import run_training

            metrics = run_training(cfg.train)
    except InputDataError as exc:  # recsys stays pyspark-free; the CLI maps InputError to exit code 2
        raise InputError(str(exc)) from None
    if metrics is not None:
        print(f"test_auc={metrics['test_auc']} test_logloss={metrics['test_logloss']} "
              f"embedding_params={metrics['embedding_params']} examples/s={metrics['examples_per_second']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
