"""The whole batch refresh in one process (what ``make run`` runs; the Airflow DAG runs the same
stages as separate tasks): synthetic data (embedded default only), vocabularies, encoding,
FastRP embeddings in one SparkSession; then CTR training, evaluation/promotion in the MLflow
registry, and batch scoring with the champion, all as child runs of one MLflow parent run.

    python jobs/refresh.py                        # embedded default: conf/local.yaml
    python jobs/refresh.py --skip synth --config conf/my_cluster.yaml
"""

import argparse
import sys

import promote
import score
import train_ctr

from core.cli import load_config, run
from core.tracking import mlflow_run
from embeddings.io import WriteResult
from embeddings.spark import spark_session
from embeddings.stages import run_encode, run_fastrp_stage, run_synth, run_vocab

SPARK_STAGES = {"synth": run_synth, "vocab": run_vocab, "encode": run_encode, "fastrp": run_fastrp_stage}
JOBS = {"train": train_ctr.main, "promote": promote.main, "score": score.main}  # each exits non-zero on failure


def _describe(value) -> str:
    if isinstance(value, WriteResult):
        return f"{value.path} (Delta v{value.version}, {value.num_rows} rows)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--skip", action="append", default=[], choices=[*SPARK_STAGES, *JOBS])
    known, rest = parser.parse_known_args(argv)
    cfg = load_config(rest, description=__doc__)
    summary: dict[str, dict] = {}
    # One parent MLflow run per refresh; every stage is a child run of it.
    with mlflow_run(cfg.mlflow, "refresh", params=cfg, export_parent=True) as parent:
        with spark_session(cfg.spark) as spark:
            for name, stage in SPARK_STAGES.items():
                if name in known.skip:
                    continue
                print(f"== stage {name}", flush=True)
                summary[name] = stage(spark, cfg)
        for name, job in JOBS.items():
            if name in known.skip:
                continue
            print(f"== stage {name}", flush=True)
            code = job(rest)
            if code != 0:
                raise RuntimeError(f"stage {name} exited with code {code}")
    print("\n== refresh finished; outputs:")
    for name, out in summary.items():
        for key, value in out.items():
            print(f"  {name}.{key}: {_describe(value)}")
    if parent is not None:
        print(f"\nMLflow run {parent.info.run_id}: open the UI with\n"
              f"  .venv/bin/mlflow ui --backend-store-uri {cfg.mlflow.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
