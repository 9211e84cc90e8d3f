"""Evaluate/promote stage: log the trained CTR model as an MLflow pyfunc, register it, move aliases.

    python jobs/promote.py                                   # conf/local.yaml: mlflow + train sections
    python jobs/promote.py --promotion-tolerance 0.001 --registered-model ctr_model

The new version gets the challenger alias; it takes champion only if its test AUC is at least the
champion's minus ``mlflow.promotion_tolerance``, both scored on the raw rows of this run's test split.
Reads ``train.export_path`` and ``train.metrics_out``; the raw click log and the vocabulary (and their
Delta versions) are the ones the stage runner recorded in the encoded table's commit.
"""

import sys
from pathlib import Path

from core.cli import load_config, run
from core.errors import ConfigError, InputError
from core.tracking import mlflow_run


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="mlflow", description=__doc__)
    m, t = cfg.mlflow, cfg.train
    if not m.enabled:
        raise ConfigError("mlflow.enabled is false: promotion needs the MLflow tracking server and registry")
    if not (t.export_path and t.metrics_out and Path(t.export_path).is_file() and Path(t.metrics_out).is_file()):
        raise InputError(
            f"train.export_path ({t.export_path}) and train.metrics_out ({t.metrics_out}) must be "
            "files written by jobs/train_ctr.py"
        )
    from core.delta import commit_inputs
    from recsys.registry import register_and_promote
    from recsys.results import read_result

    result = read_result(t.metrics_out)
    tables, schema = cfg.tables, cfg.click_schema
    with mlflow_run(m, "promote", params={"mlflow": m, "train.export_path": t.export_path}):
        # the tables the model was trained on, at the versions the encode stage read
        lineage = commit_inputs(result.input, result.input_version, what="the trained model's encoded table")
        clicks = lineage.get("clicks") or {"path": tables.path("clicks"), "version": None}
        raw_format = clicks.get("format") or tables.entry("clicks").format  # commits before formats were recorded
        vocab = lineage.get("vocab") or {"path": result.vocab, "version": result.vocab_version}
        decision = register_and_promote(
            t.export_path,
            result,
            raw_path=clicks["path"],
            raw_version=clicks.get("version"),
            raw_format=raw_format,
            vocab_path=vocab["path"],
            vocab_version=vocab.get("version"),
            registered_model=m.registered_model,
            tolerance=m.promotion_tolerance,
            champion_alias=m.champion_alias,
            challenger_alias=m.challenger_alias,
            label_col=schema.label,
            id_col=schema.id,
        )
    print(decision.summary())
    print(
        f"champion: models:/{m.registered_model}@{m.champion_alias}  "
        f"challenger: models:/{m.registered_model}@{m.challenger_alias}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
