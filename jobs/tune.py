"""Tune CTR training with an Optuna study: each trial trains on the encoded table, the best is a config layer.

    python jobs/tune.py --n-trials 20                       # study tune.study_name in tune.storage
    python jobs/tune.py --set tune.space.embedding_lr.low=0.01 --study-name lr2
    python jobs/tune.py --set train.world_size=2            # every trial on 2 ranks
    python jobs/train_ctr.py --config conf/local.yaml --config data/tune/best.yaml

The space is ``tune.space`` (train keys -> choices or low/high; conf/local.yaml has one). Trials
are ranked by valid AUC after every ``tune.eval_every_rows`` training rows and the median pruner
stops poor ones. Rerunning with the same study name continues the study until ``tune.n_trials``
trials have finished; the same name with another space is refused. The job's MLflow run is the
parent of one child run per trial, and logs the best layer and a plot of the trials.
"""

import sys

from core.cli import load_config, run
from core.tracking import mlflow_run


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="tune", description=__doc__)
    from recsys.tuning import check_tunable, tune

    check_tunable(cfg.tune, cfg.train)
    inputs = cfg.train_inputs()
    with mlflow_run(cfg.mlflow, "tune", params={"tune": cfg.tune, "train": cfg.train}) as parent:
        if cfg.train.launcher == "spark":
            from embeddings.spark import spark_session
            from recsys.launch_spark import distributor_conf, train_on_spark

            spark = cfg.spark.model_copy(update={"conf": {**distributor_conf(cfg.train), **cfg.spark.conf}})
            with spark_session(spark):
                result = tune(cfg.tune, cfg.train, inputs, cfg.mlflow, train_on_spark, parent and parent.info.run_id)
        else:
            from recsys.train import prepare, run_training

            prepare(cfg.train, inputs)  # bad input fails once, here, before the study starts
            result = tune(cfg.tune, cfg.train, inputs, cfg.mlflow, run_training, parent and parent.info.run_id)
        if parent is not None:
            from recsys.reporting import log_tuning_run

            log_tuning_run(result)
    print(
        f"best_trial={result.best_trial} valid_auc={result.best_valid_auc:.6f} "
        f"trials={len(result.trials)} new={result.trials_this_run} layer={result.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
