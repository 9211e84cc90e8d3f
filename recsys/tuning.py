"""Hyperparameter search over CTR training: an Optuna study whose trials are whole training runs.

:func:`tune` samples each trial's ``train`` keys from ``tune.space`` (TPE, define-by-run: a key
of one model kind is sampled only when the trial picked that kind), layers them over the run's
``train`` section exactly as a ``--config`` file would, trains, and reports every validation to
the study so its pruner can stop a poor trial. The study's storage makes it resumable: a rerun
continues until ``tune.n_trials`` trials have finished. Each trial is an MLflow child run.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import OmegaConf
from pydantic import ValidationError

from core.config import MlflowConfig
from core.errors import ConfigError, UserError
from core.tracking import mlflow_run, sqlite_path
from core.train_config import TrainConfig, TrainInputs
from core.tune_config import ParamSpace, TuneConfig, variant_has
from recsys.files import atomic_file
from recsys.results import TrainResult, TrialRecord, TuneResult, ValidPoint

log = logging.getLogger(__name__)

TrainFn = Callable[..., Any]  # (TrainConfig, TrainInputs, on_valid) -> TrainResult: run_training or train_on_spark
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class InvalidTrial(UserError):
    """The sampled keys give a training config that does not validate (the trial fails, the study goes on)."""


# --------------------------------------------------------------------------- the study


def make_pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    if tune.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        # reports are numbered from 1 and Optuna prunes from step n_warmup_steps on
        n_startup_trials=tune.pruner_startup_trials,
        n_warmup_steps=tune.pruner_warmup_evals + 1,
    )


def _sampler(tune: TuneConfig) -> optuna.samplers.BaseSampler:
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=tune.seed)
    return optuna.samplers.TPESampler(seed=tune.seed, n_startup_trials=tune.startup_trials)


def _storage(tune: TuneConfig) -> optuna.storages.RDBStorage:
    db = sqlite_path(tune.storage)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    try:
        # the heartbeat lets a rerun fail (and not wait on) the trials a killed run left RUNNING
        with warnings.catch_warnings():  # the heartbeat is marked experimental since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(tune.storage, heartbeat_interval=60, grace_period=180)
    except Exception as exc:  # noqa: BLE001  (sqlalchemy: bad URL, missing driver, unreachable server)
        raise ConfigError(f"tune.storage={tune.storage!r} cannot be opened: {exc}".splitlines()[0]) from None


def open_study(tune: TuneConfig) -> optuna.Study:
    """Create the study or load it; ConfigError if it exists with another search space."""
    study = optuna.create_study(
        storage=_storage(tune),
        study_name=tune.study_name,
        sampler=_sampler(tune),
        pruner=make_pruner(tune),
        direction="maximize",
        load_if_exists=True,
    )
    space = tune.space_record()
    kept = study.user_attrs.get("space")
    if kept is None and not study.trials:
        study.set_user_attr("space", space)
        study.set_user_attr("metric", "valid_auc")
    elif kept != space:
        changed = sorted(k for k in set(space) | set(kept or {}) if space.get(k) != (kept or {}).get(k))
        raise ConfigError(
            f"tune.study_name={tune.study_name!r} exists in {tune.storage} with another search space "
            f"(differs in: {', '.join(changed)}); use a new study name, or the space it was started with"
        )
    return study


@dataclass(frozen=True)
class TrialReporter:
    """The trainer's ``on_valid`` hook for one trial: report valid AUC at each validation, ask the pruner.

    Picklable (spawned ranks and TorchDistributor run it in rank 0's process): it reopens the study
    from its storage, which is where Optuna keeps the reports the pruner compares.
    """

    tune: TuneConfig
    trial_id: int

    def __call__(self, number: int, point: ValidPoint) -> bool:
        study = optuna.load_study(
            study_name=self.tune.study_name, storage=self.tune.storage, pruner=make_pruner(self.tune)
        )
        trial = optuna.trial.Trial(study, self.trial_id)
        trial.report(point.auc, number)
        return bool(trial.should_prune())


# --------------------------------------------------------------------------- one trial's config


def _set_nested(doc: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[leaf] = value


def _suggest(trial: optuna.Trial, key: str, p: ParamSpace) -> Any:
    if p.choices is not None:
        return trial.suggest_categorical(key, p.choices)
    if p.integer:
        return trial.suggest_int(key, int(p.low), int(p.high), log=p.log)
    return trial.suggest_float(key, p.low, p.high, log=p.log)


def merge_layer(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``base`` (a ``train`` mapping) with ``layer`` on top, merged as config layers merge (OmegaConf)."""
    return OmegaConf.to_container(OmegaConf.merge(base, layer))


def sample_layer(trial: optuna.Trial, space: dict[str, ParamSpace], base: dict[str, Any]) -> dict[str, Any]:
    """The trial's ``train`` layer: ``kind`` keys first, then each key the picked variants have."""
    layer: dict[str, Any] = {}
    order = sorted(space, key=lambda k: (not k.endswith(".kind") and k != "kind", k.count("."), k))
    for key in order:
        if variant_has(merge_layer(base, layer), key):
            _set_nested(layer, key, _suggest(trial, key, space[key]))
    return layer


def trial_config(base: dict[str, Any], layer: dict[str, Any], tune: TuneConfig) -> TrainConfig:
    """The training config of a trial: ``layer`` over ``base``, validating every ``tune.eval_every_rows`` rows.

    A trial writes no checkpoint, export or metrics file of the pipeline's (its run holds its results).
    Raises InvalidTrial when the layered config does not validate.
    """
    try:
        cfg = TrainConfig.model_validate(merge_layer(base, layer))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidTrial(f"train{'.' + where if where else ''}: {first['msg']}") from None
    eval_every = max(1, round(tune.eval_every_rows / (cfg.batch_size * cfg.world_size)))
    return cfg.model_copy(
        update=dict(
            eval_every=eval_every,
            checkpoint_dir=None,
            checkpoint_every=0,
            resume=False,
            export_path=None,
            metrics_out=None,
        )
    )


def check_tunable(tune: TuneConfig, train: TrainConfig) -> None:
    """ConfigError for a study that cannot run: no space, no validation split, OptEmbed runs."""
    if not tune.space:
        raise ConfigError("tune.space is empty: name at least one train key to tune (e.g. tune.space.embedding_lr)")
    if train.split.valid_fraction == 0:
        raise ConfigError("tune needs a validation split to rank trials (train.split.valid_fraction > 0)")
    if train.optembed.enabled:
        raise ConfigError("tune does not tune OptEmbed runs (train.optembed.enabled): tune the plain model first")


# --------------------------------------------------------------------------- the job's work


def _record(t: optuna.trial.FrozenTrial) -> TrialRecord:
    return TrialRecord(
        number=t.number,
        state=t.state.name,
        params=dict(t.params),
        valid_auc=t.value if t.state == optuna.trial.TrialState.COMPLETE else t.user_attrs.get("valid_auc"),
        test_auc=t.user_attrs.get("test_auc"),
        evaluations=len(t.intermediate_values),
        error=t.user_attrs.get("error"),
        mlflow_run_id=t.user_attrs.get("mlflow_run_id"),
    )


def write_layer(path: str, layer: dict[str, Any], header: str) -> None:
    """Write ``{train: layer}`` as YAML (atomically), the header as comments."""
    text = "".join(f"# {line}\n" for line in header.splitlines()) + yaml.safe_dump({"train": layer}, sort_keys=True)
    with atomic_file(path, "w") as f:
        f.write(text)


def tune(
    tune_cfg: TuneConfig,
    train: TrainConfig,
    inputs: TrainInputs,
    mlflow_cfg: MlflowConfig,
    train_fn: TrainFn,
    parent_run_id: str | None = None,
) -> TuneResult:
    """Run the study until it has ``n_trials`` finished trials (or ``timeout_s``), then write the best layer.

    ``train`` is the run's ``train`` section (config files and flags); a trial's keys are layered over
    the keys it set. ``train_fn`` trains one config (``recsys.train.run_training`` or the Spark launcher).
    """
    check_tunable(tune_cfg, train)
    base = train.model_dump(exclude_unset=True, mode="json")
    study = open_study(tune_cfg)
    done = sum(t.state in FINISHED for t in study.trials)
    started = len(study.trials)
    if done:
        log.info("study %r: %d of %d trials finished before; continuing", tune_cfg.study_name, done, tune_cfg.n_trials)

    def objective(trial: optuna.Trial) -> float:
        layer = sample_layer(trial, tune_cfg.space, base)
        try:
            cfg = trial_config(base, layer, tune_cfg)
        except InvalidTrial as exc:
            trial.set_user_attr("error", str(exc))
            raise
        # the layer keeps the trial's validation interval: training with it keeps the same best point
        layer = {**layer, "eval_every": cfg.eval_every}
        trial.set_user_attr("layer", layer)
        tags = {"optuna.study": tune_cfg.study_name, "optuna.trial": str(trial.number)}
        with mlflow_run(mlflow_cfg, f"trial-{trial.number}", params=cfg, parent=parent_run_id, tags=tags) as run:
            if run is not None:
                trial.set_user_attr("mlflow_run_id", run.info.run_id)
            started_at = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:  # TorchDistributor's local mode hands the result back by file
                cfg = cfg.model_copy(update={"metrics_out": str(Path(tmp) / "metrics.json")})
                result: TrainResult = train_fn(cfg, inputs, TrialReporter(tune_cfg, trial._trial_id))
            trial.set_user_attr("valid_auc", result.valid_auc)
            trial.set_user_attr("test_auc", result.test_auc)
            trial.set_user_attr("seconds", time.perf_counter() - started_at)
            if run is not None:
                import mlflow

                from recsys.reporting import log_training_run

                log_training_run(result, inputs)
                mlflow.log_dict({"train": layer}, "tune/trial_layer.json")
                mlflow.set_tag("optuna.state", "PRUNED" if result.pruned else "COMPLETE")
        log.info(
            "trial %d: valid AUC %.5f%s %s",
            trial.number,
            result.valid_auc,
            " (pruned)" if result.pruned else "",
            trial.params,
        )
        if result.pruned:
            raise optuna.TrialPruned()
        return result.valid_auc

    callbacks = [optuna.study.MaxTrialsCallback(tune_cfg.n_trials, states=FINISHED)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial says what Optuna's would
    if done < tune_cfg.n_trials:
        study.optimize(
            objective,
            n_trials=tune_cfg.n_trials - done,
            timeout=tune_cfg.timeout_s,
            callbacks=callbacks,
            catch=(InvalidTrial,),
        )
    trials = [_record(t) for t in study.trials]
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        reasons = "; ".join(f"trial {t.number}: {t.error or t.state}" for t in trials[-3:])
        raise UserError(f"no trial of study {tune_cfg.study_name!r} completed ({reasons})")
    best = study.best_trial
    layer = best.user_attrs["layer"]
    header = (
        f"Best trial {best.number} of study {tune_cfg.study_name!r} ({tune_cfg.storage}): valid AUC {best.value:.6f}\n"
        f"of {len(completed)} completed trials. Layer it over the config it was tuned on:\n"
        f"  python jobs/train_ctr.py --config conf/local.yaml --config {tune_cfg.output}"
    )
    write_layer(tune_cfg.output, copy.deepcopy(layer), header)
    log.info("best trial %d (valid AUC %.5f) written to %s", best.number, best.value, Path(tune_cfg.output))
    return TuneResult(
        study_name=tune_cfg.study_name,
        trials=trials,
        best_trial=best.number,
        best_valid_auc=float(best.value),
        best_layer=layer,
        output=tune_cfg.output,
        trials_this_run=len(study.trials) - started,
    )
