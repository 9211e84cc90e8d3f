"""Fixtures of the serving tests: a tiny RAW click log -> vocabulary -> encoded table (the real Spark
stages), and small CTR models trained on it (the real TorchRec trainer), all in a session tmp dir."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

NUM_ROWS = 800
# Values that stress the encoder: non-ASCII, a value that looks like a number, the empty string.
C1_VALUES = [f"u{i}" for i in range(24)] + ["ü-é", "日本語", "🙂", "123", ""]


def raw_rows(num_rows: int = NUM_ROWS, seed: int = 0) -> list[dict]:
    """Raw click-log rows: I1/I2 doubles (nulls), C1/C2 strings (nulls, singletons -> OOV), tags array<string>."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(C1_VALUES) + 1)
    rows = []
    for i in range(num_rows):
        c1 = None if rng.random() < 0.05 else str(rng.choice(C1_VALUES, p=p / p.sum()))
        if rng.random() < 0.02:
            c1 = f"rare-{i}"  # seen once: below vocab.min_count=2, so OOV (id 1)
        c2 = None if rng.random() < 0.1 else f"i{int(rng.integers(0, 10))}"
        k = int(rng.integers(0, 4))
        tags = (
            None
            if rng.random() < 0.1
            else [None if rng.random() < 0.05 else f"t{int(rng.integers(0, 12))}" for _ in range(k)]
        )
        i1 = None if rng.random() < 0.2 else float(rng.poisson(3.0))
        i2 = float(rng.poisson(10.0))
        good = c1 is not None and c1 in C1_VALUES and C1_VALUES.index(c1) % 2 == 0
        logit = (1.5 if good else -1.5) + 0.3 * (i1 or 0.0) - 1.0
        label = int(rng.random() < 1.0 / (1.0 + np.exp(-logit)))
        rows.append(
            {
                "event_id": i,
                "ts": dt.datetime(2026, 1, 1) + dt.timedelta(minutes=i),
                "I1": i1,
                "I2": i2,
                "C1": c1,
                "C2": c2,
                "tags": tags,
                "label": label,
            }
        )
    return rows


SCHEMA = {"dense": ["I1", "I2"], "categorical": ["C1", "C2", "tags"]}  # the catalog's schema block for these rows
RAW_SCHEMA = "event_id long, ts timestamp, I1 double, I2 double, C1 string, C2 string, tags array<string>, label int"


@pytest.fixture(scope="session")
def pipeline_tables(spark, tmp_path_factory):
    """Paths of the raw click log, its vocabulary and the encoded table, written by the real stages (+ the schema)."""
    from core.config import PipelineConfig
    from embeddings.io import write_delta
    from embeddings.runner import run_stage
    from embeddings.stages import ENCODE, VOCAB

    root = tmp_path_factory.mktemp("serving")
    paths = {"raw": str(root / "raw"), "vocab": str(root / "vocab"), "encoded": str(root / "encoded")}
    write_delta(spark.createDataFrame(raw_rows(), RAW_SCHEMA).repartition(2), paths["raw"])
    cfg = PipelineConfig.model_validate(
        {
            "mlflow": {"enabled": False},
            "quality": {"enabled": False},
            "schema": SCHEMA,
            "vocab": {"min_count": 2},
            "tables": {
                "clicks": {"path": paths["raw"]},
                "vocab": {"path": paths["vocab"]},
                "encoded": {"path": paths["encoded"]},
            },
        }
    )
    run_stage(spark, cfg, VOCAB)
    run_stage(spark, cfg, ENCODE)
    return {**paths, "schema": SCHEMA}


def train(paths: dict, out, layout: dict | None = None, **overrides) -> dict:
    """Train a small DLRM on the encoded table; returns its metrics (export + metrics JSON under ``out``)."""
    from core.train_config import TrainConfig, TrainInputs
    from recsys.train import run_training

    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig.model_validate(
        {
            "batch_size": 32,
            "eval_batch_size": 64,
            "embedding_dim": 8,
            "epochs": 3,
            "progress": False,
            "layout": layout or {"kind": "vocab"},
            "model": {"kind": "dlrm", "dense_arch": [16], "over_arch": [16]},
            "export_path": str(out / "model.pt"),
            "metrics_out": str(out / "metrics.json"),
            **overrides,
        }
    )
    return run_training(cfg, TrainInputs(encoded=paths["encoded"], vocab=paths["vocab"]))


@pytest.fixture(scope="session")
def trained_vocab(pipeline_tables, tmp_path_factory):
    """(metrics, export path) of a vocab-layout model."""
    out = tmp_path_factory.mktemp("ctr_vocab")
    return train(pipeline_tables, out), str(out / "model.pt")


def negated_copy(export_path: str, out_path: str) -> str:
    """The same exported model with its output logit negated: AUC becomes exactly 1 - AUC (a worse model)."""
    import torch

    payload = torch.load(export_path, map_location="cpu", weights_only=True)
    state = payload["state_dict"]
    head = "over_arch.model.1"  # OverArch's last Linear: the logit
    state[f"{head}.weight"] = -state[f"{head}.weight"]
    state[f"{head}.bias"] = -state[f"{head}.bias"]
    torch.save(payload, out_path)
    return out_path
