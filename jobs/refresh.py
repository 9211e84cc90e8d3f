"""The whole batch refresh in one process (what ``make run`` runs; the Airflow DAG runs the same
stages as separate tasks): synthetic data (embedded default only), vocabularies, encoding, the
interaction graph, its FastRP embeddings and the retrieval candidates in one SparkSession; then
CTR training, evaluation/promotion in the MLflow registry, and batch scoring with the champion,
all as child runs of one MLflow parent run.

    python jobs/refresh.py                        # embedded default: conf/local.yaml
    python jobs/refresh.py --skip synth --config conf/my_cluster.yaml
"""

import argparse
import sys

import promote
import score
import train_ctr

from core.cli import load_config, run
from core.errors import StageFailed
from core.tracking import mlflow_run, redact
from embeddings.runner import StageResult, run_stage
from embeddings.spark import spark_session
from embeddings.stages import BUILD_GRAPH, ENCODE, FASTRP, RETRIEVE, SYNTH, VOCAB

SPARK_STAGES = {
    "synth": SYNTH,
    "vocab": VOCAB,
    "encode": ENCODE,
    "graph": BUILD_GRAPH,
    "fastrp": FASTRP,
    "retrieve": RETRIEVE,
}
JOBS = {"train": train_ctr.main, "promote": promote.main, "score": score.main}  # each exits non-zero on failure


def _describe(result: StageResult) -> list[str]:
    lines = [
        f"{result.stage}.{name}: {w.path} (Delta v{w.version}, {w.num_rows} rows)" for name, w in result.written.items()
    ]
    for key, value in result.summary.model_dump().items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        lines.append(
            f"{result.stage}.{key}: {value:.4f}" if isinstance(value, float) else f"{result.stage}.{key}: {value}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--skip", action="append", default=[], choices=[*SPARK_STAGES, *JOBS])
    known, rest = parser.parse_known_args(argv)
    cfg = load_config(rest, description=__doc__)
    if "train" not in known.skip:
        cfg.train_inputs()  # training's table and feature settings refused now, before any stage writes
    results: list[StageResult] = []
    # One parent MLflow run per refresh; every stage is a child run of it.
    with mlflow_run(cfg.mlflow, "refresh", params=cfg, export_parent=True) as parent:
        with spark_session(cfg.spark) as spark:
            for name, stage in SPARK_STAGES.items():
                if name in known.skip:
                    continue
                print(f"== stage {name}", flush=True)
                results.append(run_stage(spark, cfg, stage))
        for name, job in JOBS.items():
            if name in known.skip:
                continue
            print(f"== stage {name}", flush=True)
            code = job(rest)
            if code != 0:
                raise StageFailed(name, code)
    print("\n== refresh finished; outputs:")
    for result in results:
        for line in _describe(result):
            print(f"  {line}")
    if parent is not None:
        print(
            f"\nMLflow run {parent.info.run_id}: open the UI with\n"
            f"  .venv/bin/mlflow ui --backend-store-uri {redact(cfg.mlflow.tracking_uri)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
