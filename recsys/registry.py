"""Log the CTR model as an MLflow pyfunc, register it, and promote it by aliases (no deprecated stages).

The training run's own MLflow records (metrics, curves, plots, lineage) are ``recsys.reporting``'s.

Promotion rule: the new version always gets the ``challenger`` alias; it takes ``champion`` only if
its test AUC >= the champion's test AUC - ``tolerance``, both measured by their registered pyfuncs on
the SAME rows: the raw click-log rows of the new run's test split. The first version becomes
champion. The decision, both AUCs and the tolerance go to the active run (params, metrics, tags)
and onto the model version (tags), so the registry itself says why an alias moved.

No pyspark here: test rows are read with ``deltalake`` (or pyarrow for a Parquet/CSV click log).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import core
import recsys
from core.delta import read_any, read_delta
from core.errors import ConcurrentChange, InputError
from recsys.data.splits import in_test_split
from recsys.export import load_exported
from recsys.metrics import auc_logloss
from recsys.results import PromotionDecision, SplitRecord, TrainResult
from recsys.serving import CTRPyfuncModel, CTRScorer, model_signature, raw_frame

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
# Installed packages the pyfunc imports when it loads (pinned to this environment's versions).
_REQUIREMENTS = (
    "mlflow",
    "torch",
    "torchrec",
    "fbgemm-gpu-cpu",
    "numpy",
    "pandas",
    "pyarrow",
    "pydantic",
    "scikit-learn",
    "xxhash",
    "tensordict",
    "torchmetrics",
    "pyre-extensions",
)


def should_promote(challenger_auc: float, champion_auc: float | None, tolerance: float) -> tuple[bool, str]:
    """The promotion rule: ``challenger_auc >= champion_auc - tolerance`` (no champion: promote)."""
    if champion_auc is None:
        return True, "no champion yet"
    threshold = champion_auc - tolerance
    if challenger_auc >= threshold:
        return True, f"challenger AUC {challenger_auc:.6f} >= champion AUC {champion_auc:.6f} - {tolerance}"
    return False, f"challenger AUC {challenger_auc:.6f} < champion AUC {champion_auc:.6f} - {tolerance}"


# --------------------------------------------------------------------------- test rows


def read_test_rows(
    raw_path: str, raw_version: int | None, split: SplitRecord, id_col: str, columns: list[str], fmt: str = "delta"
) -> pa.Table:
    """Raw click-log rows of the trainer's test split (``columns`` + id, label read as given), in its format."""
    cols = list(dict.fromkeys([id_col, *columns] + ([split.time_col] if split.kind == "time" else [])))
    table = read_any(raw_path, fmt, raw_version, cols, what="raw click log")
    rows = table.filter(pa.array(in_test_split(table, split, id_col)))
    if rows.num_rows == 0:
        raise InputError(
            f"raw click log {raw_path!r} (version {raw_version}) has no rows in the test split "
            f"{split.model_dump(exclude_none=True)}"
        )
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
    vocab = read_delta(vocab_path, vocab_version, ["feature", "value", "id"], what="vocabulary")
    vocab = vocab.filter(pc.is_in(vocab.column("feature"), pa.array(features)))
    path = out / "vocab.parquet"
    pq.write_table(vocab, path)
    return str(path)


def log_ctr_model(
    export_path: str,
    vocab_parquet: str,
    input_example,
    *,
    registered_model_name: str | None,
    tags: dict[str, str] | None = None,
):
    """Log the raw-row pyfunc (exported model + vocabulary) to the active run and register it.

    Returns:
        mlflow ``ModelInfo`` (``registered_model_version`` set when registered).
    """
    spec = load_exported(export_path).spec
    # Ship recsys and core: the model loads with the code it was built with.
    code = [str(Path(recsys.__file__).resolve().parent), str(Path(core.__file__).resolve().parent)]
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=CTRPyfuncModel(),
        artifacts={"model": export_path, "vocab": vocab_parquet},
        code_paths=code,
        signature=model_signature(spec),
        input_example=input_example,
        pip_requirements=pip_requirements(),
        registered_model_name=registered_model_name,
        tags=tags,
    )


def score_auc(model_uri: str, rows: pa.Table, label_col: str) -> float:
    """AUC of the pyfunc at ``model_uri`` on raw ``rows`` (the model picks its signature's columns)."""
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
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


class LostPromotionRace(ConcurrentChange):
    """The champion alias moved between this promotion's read and its alias move (exit 3); nothing was moved."""

    def __init__(self, message: str, version: str):
        super().__init__(message)
        self.version = version


def _shown(version: str | None) -> str:
    return "none" if version is None else f"v{version}"


LOCK_SUFFIX = ".promotion-lock"


@contextmanager
def promotion_lock(client, name: str, wait_s: float = 120.0, stale_s: float = 600.0):
    """Hold a registry-wide mutex for model ``name`` while aliases move.

    MLflow has no conditional alias update, but creating a registered model is atomic on every
    backend (its name is unique), so the lock is a registered model ``<name>.promotion-lock``,
    deleted on exit. A lock older than ``stale_s`` (its holder was killed) is broken.
    """
    lock, holder = name + LOCK_SUFFIX, f"{socket.gethostname()}:{os.getpid()}:{time.time():.3f}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.create_registered_model(lock, tags={"holder": holder}, description="held while aliases move")
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held_since = float(client.get_registered_model(lock).tags.get("holder", "::0").rsplit(":", 1)[1])
        except MlflowException:  # released meanwhile
            continue
        if time.time() - held_since > stale_s:
            log.warning("breaking the promotion lock %s held since %s (stale)", lock, time.ctime(held_since))
            _delete_quietly(client, lock)
        elif time.monotonic() > deadline:
            raise ConcurrentChange(f"registered model {lock!r} is held by another promotion for over {wait_s:.0f} s")
        else:
            time.sleep(0.2)
    try:
        yield
    finally:
        _delete_quietly(client, lock)


def _delete_quietly(client, lock: str) -> None:
    try:
        client.delete_registered_model(lock)
    except MlflowException as exc:
        log.warning("could not delete the promotion lock %s: %s", lock, exc.message)


def move_champion(client, name: str, version: str, *, expected: str | None, alias: str = "champion") -> None:
    """Point ``alias`` at ``version`` only if it still points at ``expected`` (None: no champion), under the lock.

    Raises:
        LostPromotionRace: another promotion moved the alias since ``expected`` was read; nothing moved.
    """
    with promotion_lock(client, name):
        now = _champion(client, name, alias)
        now_version = None if now is None else str(now.version)
        if now_version != expected:
            raise LostPromotionRace(
                f"{name}@{alias} moved by another promotion ({_shown(expected)} -> {_shown(now_version)}) while "
                f"v{version} was compared with {_shown(expected)}; nothing moved: rerun promote to compare it "
                "with the new champion",
                version,
            )
        client.set_registered_model_alias(name, alias, version)


def promote(
    client,
    name: str,
    version: str,
    rows: pa.Table,
    label_col: str,
    *,
    tolerance: float,
    champion_alias: str = "champion",
    challenger_alias: str = "challenger",
) -> PromotionDecision:
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
        move_champion(client, name, version, expected=champion_version, alias=champion_alias)
    decision = PromotionDecision(
        model_name=name,
        version=version,
        promoted=promoted,
        reason=reason_prefix + reason,
        challenger_auc=challenger_auc,
        champion_version=champion_version,
        champion_auc=champion_auc,
        tolerance=tolerance,
        test_rows=rows.num_rows,
    )
    log.info("%s", decision.summary())
    return decision


def log_decision(client, decision: PromotionDecision) -> None:
    """Record the decision on the active run (params, metrics, tags) and on the model version (tags)."""
    d = decision
    tags = {
        "promotion.decision": "promoted" if d.promoted else "rejected",
        "promotion.reason": d.reason[:5000],
        "promotion.model": d.model_name,
        "promotion.version": d.version,
    }
    if mlflow.active_run() is not None:
        mlflow.log_params(
            {
                "promotion.tolerance": d.tolerance,
                "promotion.challenger_version": d.version,
                "promotion.champion_version_before": d.champion_version or "none",
            }
        )
        metrics = {
            "promotion.challenger_test_auc": d.challenger_auc,
            "promotion.promoted": float(d.promoted),
            "promotion.test_rows": d.test_rows,
        }
        if d.champion_auc is not None:
            metrics["promotion.champion_test_auc"] = d.champion_auc
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        mlflow.log_dict(d.model_dump(), "promotion/decision.json")
    for key, value in {
        **tags,
        "promotion.challenger_test_auc": str(d.challenger_auc),
        "promotion.champion_test_auc": str(d.champion_auc),
        "promotion.champion_version_before": str(d.champion_version),
        "promotion.tolerance": str(d.tolerance),
    }.items():
        client.set_model_version_tag(d.model_name, d.version, key, value)


def register_and_promote(
    export_path: str,
    result: TrainResult,
    *,
    raw_path: str,
    raw_version: int | None,
    raw_format: str = "delta",
    vocab_path: str,
    vocab_version: int | None,
    registered_model: str,
    tolerance: float,
    champion_alias: str = "champion",
    challenger_alias: str = "challenger",
    label_col: str = "label",
    id_col: str = "event_id",
) -> PromotionDecision:
    """The evaluate/promote stage inside an active MLflow run: log + register the model, then decide.

    Args:
        export_path: the trainer's exported model file.
        result: the trainer's result (its ``split`` record picks the test rows).
        raw_path, raw_version, raw_format: the raw click log (its Delta version; delta, parquet or csv) the
            encoded input came from.
        vocab_path, vocab_version: the vocabulary (and version) the input was encoded with.
    """
    spec = load_exported(export_path).spec
    columns = [*spec.dense, *spec.sparse]
    rows = read_test_rows(raw_path, raw_version, result.split, id_col, [*columns, label_col], raw_format)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_parquet = write_vocab_artifact(vocab_path, vocab_version, list(spec.sparse), Path(tmp))
        example = raw_frame(rows.slice(0, 5), columns)
        tags = {
            k: str(v)
            for k, v in {
                "train_run_id": result.mlflow_run_id,
                "trainer_test_auc": result.test_auc,
                "raw_version": raw_version,
                "raw_format": raw_format,
                "vocab_version": vocab_version,
                "input_version": result.input_version,
            }.items()
            if v is not None
        }
        info = log_ctr_model(export_path, vocab_parquet, example, registered_model_name=registered_model, tags=tags)
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, value)
    try:
        decision = promote(
            client,
            registered_model,
            version,
            rows,
            label_col,
            tolerance=tolerance,
            champion_alias=champion_alias,
            challenger_alias=challenger_alias,
        )
    except LostPromotionRace as lost:  # the version says why it is not champion, the job exits 3
        client.set_model_version_tag(registered_model, version, "promotion.decision", "lost_race")
        client.set_model_version_tag(registered_model, version, "promotion.reason", str(lost)[:5000])
        raise
    log_decision(client, decision)
    return decision


def scorer_from_uri(model_uri: str) -> CTRScorer:
    """The :class:`CTRScorer` inside a registered pyfunc (for in-process use without MLflow's schema layer)."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().scorer_
