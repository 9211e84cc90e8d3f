"""Log the CTR model as an MLflow pyfunc, register it, and promote it by aliases (no deprecated stages).

Promotion rule: the new version always gets the ``challenger`` alias; it takes ``champion`` only if
its test AUC >= the champion's test AUC - ``tolerance``, both measured by their registered pyfuncs on
the SAME rows: the raw click-log rows of the new run's test split. The first version becomes
champion. The decision, both AUCs and the tolerance go to the active run (params, metrics, tags)
and onto the model version (tags), so the registry itself says why an alias moved.

No pyspark here: test rows are read from Delta with ``deltalake``.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import core
import recsys
from core.delta import commit_metadata, read_delta
from core.errors import InputError
from core.tracking import log_delta_table
from recsys.data.splits import random_split
from recsys.metrics import auc_logloss
from recsys.serving import CTRPyfuncModel, CTRScorer, model_signature, raw_frame

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
# Installed packages the pyfunc imports when it loads (pinned to this environment's versions).
_REQUIREMENTS = ("mlflow", "torch", "torchrec", "fbgemm-gpu-cpu", "numpy", "pandas", "pyarrow", "pydantic",
                 "scikit-learn", "xxhash", "tensordict", "torchmetrics", "pyre-extensions")


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of one promotion: which version, both AUCs on the same rows, and whether champion moved."""

    model_name: str
    version: str
    promoted: bool
    reason: str
    challenger_auc: float
    champion_version: str | None
    champion_auc: float | None
    tolerance: float
    test_rows: int

    def summary(self) -> str:
        champ = ("none" if self.champion_version is None
                 else f"v{self.champion_version} AUC {_fmt(self.champion_auc)}")
        verdict = "PROMOTED to champion" if self.promoted else "NOT promoted (stays challenger)"
        return (f"{self.model_name} v{self.version}: {verdict}; challenger AUC {self.challenger_auc:.6f}, "
                f"previous champion {champ}, tolerance {self.tolerance}, {self.test_rows} test rows: {self.reason}")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6f}"


def should_promote(challenger_auc: float, champion_auc: float | None, tolerance: float) -> tuple[bool, str]:
    """The promotion rule: ``challenger_auc >= champion_auc - tolerance`` (no champion: promote)."""
    if champion_auc is None:
        return True, "no champion yet"
    threshold = champion_auc - tolerance
    if challenger_auc >= threshold:
        return True, f"challenger AUC {challenger_auc:.6f} >= champion AUC {champion_auc:.6f} - {tolerance}"
    return False, f"challenger AUC {challenger_auc:.6f} < champion AUC {champion_auc:.6f} - {tolerance}"


# --------------------------------------------------------------------------- test rows


def in_test_split(table: pa.Table, split: dict, id_col: str) -> np.ndarray:
    """(N,) bool: the rows of a raw table in the trainer's test split (its recorded ``split`` record)."""
    if split.get("kind") == "random":
        ids = table.column(id_col).to_numpy(zero_copy_only=False).astype(np.int64)
        return random_split(ids, int(split["seed"]), float(split["valid_fraction"]), float(split["test_fraction"])) == 2
    if split.get("kind") == "time":
        start = dt.datetime.fromisoformat(split["test_start"])
        us = int((start - dt.datetime(1970, 1, 1)).total_seconds() * 1_000_000)
        ts = table.column(split["time_col"]).cast(pa.timestamp("us")).cast(pa.int64()).fill_null(-1)
        return ts.to_numpy(zero_copy_only=False) >= us
    raise InputError(f"unknown split record {split!r} in the training metrics")


def read_test_rows(raw_path: str, raw_version: int | None, split: dict, id_col: str,
                   columns: list[str]) -> pa.Table:
    """Raw click-log rows of the trainer's test split (``columns`` + id, label read as given)."""
    cols = list(dict.fromkeys([id_col, *columns] + ([split["time_col"]] if split.get("kind") == "time" else [])))
    table = read_delta(raw_path, raw_version, cols, what="raw click log")
    rows = table.filter(pa.array(in_test_split(table, split, id_col)))
    if rows.num_rows == 0:
        raise InputError(f"raw click log {raw_path!r} (version {raw_version}) has no rows in the test split {split}")
    return rows


# --------------------------------------------------------------------------- logging + registering


def pip_requirements() -> list[str]:
    """``name==version`` of the packages the pyfunc needs (skipping any not installed)."""
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def write_vocab_artifact(vocab_path: str, vocab_version: int | None, features: list[str], out: Path) -> str:
    """Write the model's slice (``feature, value, id``) of the vocabulary table to a parquet file."""
    import pyarrow.parquet as pq

    vocab = read_delta(vocab_path, vocab_version, ["feature", "value", "id"], what="vocabulary")
    vocab = vocab.filter(pc.is_in(vocab.column("feature"), pa.array(features)))
    path = out / "vocab.parquet"
    pq.write_table(vocab, path)
    return str(path)


def log_ctr_model(export_path: str, vocab_parquet: str, input_example, *, registered_model_name: str | None,
                  tags: dict[str, str] | None = None):
    """Log the raw-row pyfunc (exported model + vocabulary) to the active run and register it.

    Returns:
        mlflow ``ModelInfo`` (``registered_model_version`` set when registered).
    """
    import mlflow

    from recsys.export import load_exported

    spec = load_exported(export_path).spec
    # Ship recsys and core: the model loads with the code it was built with.
    code = [str(Path(recsys.__file__).resolve().parent), str(Path(core.__file__).resolve().parent)]
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT, python_model=CTRPyfuncModel(), artifacts={"model": export_path, "vocab": vocab_parquet},
        code_paths=code, signature=model_signature(spec), input_example=input_example,
        pip_requirements=pip_requirements(), registered_model_name=registered_model_name, tags=tags)


def score_auc(model_uri: str, rows: pa.Table, label_col: str) -> float:
    """AUC of the pyfunc at ``model_uri`` on raw ``rows`` (the model picks its signature's columns)."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    names = model.metadata.get_input_schema().input_names()
    missing = [c for c in names if c not in rows.column_names]
    if missing:
        raise InputError(f"{model_uri} needs column(s) {missing} that the test rows lack")
    probs = model.predict(raw_frame(rows, names))["probability"].to_numpy()
    labels = rows.column(label_col).to_numpy(zero_copy_only=False)
    auc = auc_logloss(labels, probs)["auc"]
    if auc is None:
        raise InputError(f"test rows hold a single class in '{label_col}': AUC is undefined")
    return auc


def _champion(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def promote(client, name: str, version: str, rows: pa.Table, label_col: str, *, tolerance: float,
            champion_alias: str = "champion", challenger_alias: str = "challenger") -> PromotionDecision:
    """Give ``version`` the challenger alias, score it and the champion on ``rows``, move champion if it wins."""
    version = str(version)
    champion = _champion(client, name, champion_alias)
    client.set_registered_model_alias(name, challenger_alias, version)
    challenger_auc = score_auc(f"models:/{name}/{version}", rows, label_col)
    champion_auc = None
    champion_version = None if champion is None else str(champion.version)
    reason_prefix = ""
    if champion is not None and champion_version != version:
        try:
            champion_auc = score_auc(f"models:/{name}/{champion_version}", rows, label_col)
        except InputError as exc:  # e.g. the features changed: the old champion cannot score the new rows
            reason_prefix = f"champion v{champion_version} cannot score this run's test rows ({exc}); "
    promoted, reason = should_promote(challenger_auc, champion_auc, tolerance)
    if champion is not None and champion_version == version:
        promoted, reason = True, "already champion"
    if promoted:
        client.set_registered_model_alias(name, champion_alias, version)
    decision = PromotionDecision(name, version, promoted, reason_prefix + reason, challenger_auc, champion_version,
                                 champion_auc, tolerance, rows.num_rows)
    log.info("%s", decision.summary())
    return decision


def log_decision(client, decision: PromotionDecision) -> None:
    """Record the decision on the active run (params, metrics, tags) and on the model version (tags)."""
    import mlflow

    d = decision
    tags = {"promotion.decision": "promoted" if d.promoted else "rejected", "promotion.reason": d.reason[:5000],
            "promotion.model": d.model_name, "promotion.version": d.version}
    if mlflow.active_run() is not None:
        mlflow.log_params({"promotion.tolerance": d.tolerance, "promotion.challenger_version": d.version,
                           "promotion.champion_version_before": d.champion_version or "none"})
        metrics = {"promotion.challenger_test_auc": d.challenger_auc, "promotion.promoted": float(d.promoted),
                   "promotion.test_rows": d.test_rows}
        if d.champion_auc is not None:
            metrics["promotion.champion_test_auc"] = d.champion_auc
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        mlflow.log_dict(asdict(d), "promotion/decision.json")
    for key, value in {**tags, "promotion.challenger_test_auc": str(d.challenger_auc),
                       "promotion.champion_test_auc": str(d.champion_auc),
                       "promotion.champion_version_before": str(d.champion_version),
                       "promotion.tolerance": str(d.tolerance)}.items():
        client.set_model_version_tag(d.model_name, d.version, key, value)


def register_and_promote(export_path: str, metrics: dict, *, raw_path: str, raw_version: int | None,
                         vocab_path: str, vocab_version: int | None, registered_model: str, tolerance: float,
                         champion_alias: str = "champion", challenger_alias: str = "challenger",
                         label_col: str = "label", id_col: str = "event_id") -> PromotionDecision:
    """The evaluate/promote stage inside an active MLflow run: log + register the model, then decide.

    Args:
        export_path: the trainer's exported model file.
        metrics: the trainer's metrics JSON (its ``split`` record picks the test rows).
        raw_path, raw_version: the raw click log (and the Delta version) the encoded input came from.
        vocab_path, vocab_version: the vocabulary (and version) the input was encoded with.
    """
    from mlflow import MlflowClient

    from recsys.export import load_exported

    spec = load_exported(export_path).spec
    columns = [*spec.dense, *spec.sparse]
    rows = read_test_rows(raw_path, raw_version, metrics["split"], id_col, [*columns, label_col])
    with tempfile.TemporaryDirectory() as tmp:
        vocab_parquet = write_vocab_artifact(vocab_path, vocab_version, list(spec.sparse), Path(tmp))
        example = raw_frame(rows.slice(0, 5), columns)
        tags = {k: str(v) for k, v in {"train_run_id": metrics.get("mlflow_run_id"),
                                       "trainer_test_auc": metrics.get("test_auc"),
                                       "raw_version": raw_version, "vocab_version": vocab_version,
                                       "input_version": metrics.get("input_version")}.items() if v is not None}
        info = log_ctr_model(export_path, vocab_parquet, example, registered_model_name=registered_model, tags=tags)
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, value)
    decision = promote(client, registered_model, version, rows, label_col, tolerance=tolerance,
                       champion_alias=champion_alias, challenger_alias=challenger_alias)
    log_decision(client, decision)
    return decision


def scorer_from_uri(model_uri: str) -> CTRScorer:
    """The :class:`CTRScorer` inside a registered pyfunc (for in-process use without MLflow's schema layer)."""
    import mlflow

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().scorer_


# --------------------------------------------------------------------------- the training run's records

_RUN_METRICS = ("test_auc", "test_logloss", "test_rows", "valid_auc", "valid_logloss", "examples_per_second",
                "embedding_params", "train_seconds", "wall_seconds", "steps", "final_loss", "oracle_test_auc")


def training_curve_points(losses: list[float], max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(steps, mean loss) of at most ``max_points`` windows of consecutive steps (1-based last step of each)."""
    loss = np.asarray(losses, dtype=np.float64)
    if len(loss) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    width = max(1, int(np.ceil(len(loss) / max_points)))
    n = len(loss) // width * width
    means = loss[:n].reshape(-1, width).mean(axis=1)
    steps = np.arange(width, n + 1, width)
    if n < len(loss):
        means, steps = np.append(means, loss[n:].mean()), np.append(steps, len(loss))
    return steps, means


def plot_training_curves(metrics: dict):
    """Matplotlib figure: training loss per step (and a moving average), test/oracle AUC in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(metrics.get("loss_history") or [], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(losses):
        ax.plot(np.arange(1, len(losses) + 1), losses, lw=0.6, alpha=0.4, label="train loss (per step)")
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k, len(losses) + 1), smooth, lw=1.5, label=f"moving average ({k} steps)")
    if metrics.get("test_logloss") is not None:
        ax.axhline(metrics["test_logloss"], color="k", ls="--", lw=1, label="test logloss")
    ax.set_xlabel("step")
    ax.set_ylabel("binary cross-entropy")
    auc = metrics.get("test_auc")
    oracle = metrics.get("oracle_test_auc")
    ax.set_title(f"CTR training ({metrics.get('model')}, {metrics.get('layout')} layout): test AUC "
                 f"{_fmt(auc)}" + (f", oracle {_fmt(oracle)}" if oracle is not None else ""))
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def log_training_run(metrics: dict, train_cfg) -> None:
    """Log a finished training run to the active MLflow run: metrics, curves, plot, JSON, plan, lineage."""
    import mlflow
    from mlflow.entities import Metric

    run = mlflow.active_run()
    if run is None:
        return
    values = {k: float(metrics[k]) for k in _RUN_METRICS if isinstance(metrics.get(k), (int, float))}
    for k, v in (metrics.get("embedding_bytes") or {}).items():
        values[f"embedding_bytes.{k}"] = float(v)
    mlflow.log_metrics(values)
    steps, means = training_curve_points(metrics.get("loss_history") or [])
    now = int(dt.datetime.now().timestamp() * 1000)
    points = [Metric("train_loss", float(m), now, int(s)) for s, m in zip(steps, means)]
    client = mlflow.MlflowClient()
    for i in range(0, len(points), 1000):  # log_batch takes at most 1000 metrics per call
        client.log_batch(run.info.run_id, metrics=points[i:i + 1000])
    fig = plot_training_curves(metrics)
    mlflow.log_figure(fig, "plots/training_curves.png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    mlflow.log_dict(metrics, "ctr/metrics.json")
    mlflow.log_dict(metrics.get("sharding_plan") or {}, "ctr/sharding_plan.json")
    mlflow.set_tags({"ctr.layout": str(metrics.get("layout")), "ctr.model": str(metrics.get("model"))})
    log_delta_table("encoded", train_cfg.input, metrics.get("input_version"), role="input")
    log_delta_table("vocab", train_cfg.vocab, metrics.get("vocab_version"), role="input")
    meta = commit_metadata(train_cfg.input, metrics.get("input_version"))
    if meta.get("input"):
        log_delta_table("events", meta["input"], meta.get("input_version"), role="input")
    if train_cfg.oracle:
        from deltalake import DeltaTable

        log_delta_table("oracle", train_cfg.oracle, DeltaTable(train_cfg.oracle).version(), role="input")
