"""Evaluate/promote stage: log the trained CTR model as an MLflow pyfunc, register it, move aliases.

    python jobs/promote.py                                   # conf/local.yaml: mlflow + train sections
    python jobs/promote.py --promotion-tolerance 0.001 --registered-model ctr_model

The new version gets the challenger alias; it takes champion only if its test AUC is at least the
champion's minus ``mlflow.promotion_tolerance``, both scored on the raw rows of this run's test split.
Reads ``train.export_path`` and ``train.metrics_out``; the raw click log and the vocabulary (and their
Delta versions) come from the encoded table's commit metadata.
"""

import json
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
        raise InputError(f"train.export_path ({t.export_path}) and train.metrics_out ({t.metrics_out}) must be "
                         "files written by jobs/train_ctr.py")
    from core.delta import commit_metadata
    from recsys.registry import register_and_promote

    metrics = json.loads(Path(t.metrics_out).read_text())
    with mlflow_run(m, "promote", params={"mlflow": m, "train.export_path": t.export_path}):
        encoded = commit_metadata(t.input, metrics.get("input_version"), what="train.input")
        decision = register_and_promote(
            t.export_path, metrics, raw_path=encoded.get("input") or cfg.encode.input,
            raw_version=encoded.get("input_version"), vocab_path=encoded.get("vocab") or t.vocab,
            vocab_version=encoded.get("vocab_version", metrics.get("vocab_version")),
            registered_model=m.registered_model, tolerance=m.promotion_tolerance,
            champion_alias=m.champion_alias, challenger_alias=m.challenger_alias,
            label_col=t.label_col, id_col=t.id_col)
    print(decision.summary())
    print(f"champion: models:/{m.registered_model}@{m.champion_alias}  "
          f"challenger: models:/{m.registered_model}@{m.challenger_alias}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
