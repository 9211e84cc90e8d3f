"""The tuning job: a search space checked at load, trials sampled per model kind, pruning, a resumable study, a layer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from ctr_tables import SCHEMA_FLAGS, train_job_main, train_setup

from core.cli import load_config, run
from core.errors import ConfigError
from core.tune_config import TuneConfig, is_train_key, variant_has
from recsys.results import ValidPoint
from recsys.train import run_training
from recsys.tuning import InvalidTrial, TrialReporter, open_study, sample_layer, trial_config

REPO = Path(__file__).resolve().parents[2]


def _load(tmp_path, *sets):
    (tmp_path / "empty.yaml").write_text("{}\n")
    args = ["--config", str(tmp_path / "empty.yaml")]
    for s in sets:
        args += ["--set", s]
    return load_config(args, section="tune")


# ------------------------------------------------------------------ the space (config time)


def test_the_shipped_config_has_a_space_of_real_train_keys():
    cfg = load_config(["--config", str(REPO / "conf" / "local.yaml")], section="tune")
    assert {"model.kind", "embedding_lr", "batch_size", "model.wide"} <= set(cfg.tune.space)


@pytest.mark.parametrize(
    "setting, named",
    [
        ("tune.space.model.crosss_layers.choices=[1, 2]", "model.crosss_layers: no such train setting"),
        ("tune.space.embedding_lrr.low=0.1", "embedding_lrr"),
        ("tune.space.model.choices=[dcn]", "model: no such train setting"),  # a section, not a setting
        ("tune.space.embedding_lr={low: 0.1, high: 0.01}", "'tune.space.embedding_lr': Value error, empty range"),
        ("tune.space.epochs.choices=[]", "'tune.space.epochs': Value error, empty choices"),
        ("tune.space.dense_lr={low: 0, high: 0.1, log: true}", "'tune.space.dense_lr': Value error, log range"),
    ],
)
def test_a_space_with_unknown_keys_or_empty_ranges_is_refused_naming_the_key(tmp_path, setting, named):
    with pytest.raises(ConfigError, match="invalid configuration") as err:
        _load(tmp_path, setting)
    assert named in str(err.value)


def test_nested_and_dotted_space_keys_mean_the_same():
    nested = TuneConfig.model_validate({"space": {"model": {"kind": {"choices": ["dcn"]}}}})
    dotted = TuneConfig.model_validate({"space": {"model.kind": {"choices": ["dcn"]}}})
    assert nested.space_record() == dotted.space_record() and list(nested.space) == ["model.kind"]


def test_train_keys_are_known_in_any_variant_and_apply_only_to_the_picked_one():
    assert is_train_key("model.cross_layers") and is_train_key("early_stopping.patience")
    assert not is_train_key("model") and not is_train_key("model.nope")
    assert variant_has({"model": {"kind": "dcn"}}, "model.cross_layers")
    assert not variant_has({"model": {"kind": "deepfm"}}, "model.cross_layers")
    assert not variant_has({}, "model.cross_layers")  # the default model is a DLRM


# ------------------------------------------------------------------ one trial's config (pure)

SPACE = {
    "model": {"kind": {"choices": ["dlrm", "dcn"]}, "cross_layers": {"low": 1, "high": 3, "integer": True}},
    "embedding_lr": {"low": 0.01, "high": 0.1, "log": True},
    "batch_size": {"choices": [32, 64]},
}


def _space():
    return TuneConfig.model_validate({"space": SPACE, "eval_every_rows": 640}).space


def test_a_trial_samples_a_model_kind_s_keys_only_when_it_picked_that_kind():
    dlrm = optuna.trial.FixedTrial({"model.kind": "dlrm", "embedding_lr": 0.05, "batch_size": 32})
    dcn = optuna.trial.FixedTrial(
        {"model.kind": "dcn", "model.cross_layers": 3, "embedding_lr": 0.05, "batch_size": 64}
    )
    assert sample_layer(dlrm, _space(), {}) == {"model": {"kind": "dlrm"}, "embedding_lr": 0.05, "batch_size": 32}
    assert sample_layer(dcn, _space(), {})["model"] == {"kind": "dcn", "cross_layers": 3}


def test_a_trial_layers_its_keys_over_the_run_s_and_validates_at_the_same_rows_whatever_its_batch():
    tune = TuneConfig.model_validate({"space": SPACE, "eval_every_rows": 640})
    base = {"embedding_dim": 8, "epochs": 3, "export_path": "/x/model.pt", "metrics_out": "/x/m.json"}
    small = trial_config(base, {"batch_size": 32, "embedding_lr": 0.02}, tune)
    big = trial_config(base, {"batch_size": 64}, tune)
    assert small.embedding_dim == 8 and small.epochs == 3 and small.embedding_lr == 0.02
    assert small.eval_every * 32 == big.eval_every * 64 == 640
    assert small.export_path is None and small.metrics_out is None and small.checkpoint_dir is None


def test_a_sampled_combination_that_does_not_validate_fails_that_trial_only():
    tune = TuneConfig.model_validate({"space": SPACE})
    with pytest.raises(InvalidTrial, match="model"):
        trial_config({"model": {"kind": "dcn", "cross_layers": 2}}, {"model": {"kind": "dlrm"}}, tune)


# ------------------------------------------------------------------ the study (a real Optuna storage)


def _tune(tmp_path, **kw):
    return TuneConfig.model_validate(
        {"storage": f"sqlite:///{tmp_path / 'optuna.db'}", "space": SPACE, "pruner_startup_trials": 1, **kw}
    )


def test_the_reporter_hands_each_validation_to_the_pruner_which_stops_a_trial_below_the_median(tmp_path):
    tune = _tune(tmp_path, pruner_warmup_evals=0)
    study = open_study(tune)
    done = study.ask()
    for step, auc in [(1, 0.80), (2, 0.85)]:
        done.report(auc, step)
    study.tell(done, 0.85)
    good, bad = study.ask(), study.ask()
    assert TrialReporter(tune, good._trial_id)(1, ValidPoint(step=10, auc=0.82, logloss=0.5)) is False
    assert TrialReporter(tune, bad._trial_id)(1, ValidPoint(step=10, auc=0.60, logloss=0.7)) is True
    assert study.trials[2].intermediate_values == {1: 0.60}  # the report is in the storage


def test_a_study_that_exists_with_another_space_is_refused_naming_it(tmp_path):
    open_study(_tune(tmp_path)).ask()
    other = _tune(tmp_path, space={**SPACE, "batch_size": {"choices": [32, 128]}})
    with pytest.raises(
        ConfigError, match=r"study_name='ctr' exists .* another search space \(differs in: batch_size\)"
    ):
        open_study(other)
    open_study(_tune(tmp_path))  # the same space continues it


@pytest.mark.slow
def test_a_hook_that_says_prune_stops_training_at_that_validation(tiny_tables):
    cfg, inputs = train_setup(*tiny_tables, epochs=5, eval_every=2)
    result = run_training(cfg, inputs, on_valid=lambda number, point: number >= 2)
    assert result.pruned and result.stopped_early and [p.step for p in result.valid_curve] == [2, 4]
    assert result.steps == 4


@pytest.mark.slow
def test_rank_0_s_prune_decision_stops_every_rank(tiny_tables):
    from ctr_workers import prune_at_second_validation

    cfg, inputs = train_setup(*tiny_tables, epochs=5, eval_every=2, world_size=2)
    result = run_training(cfg, inputs, on_valid=prune_at_second_validation)
    assert result.pruned and result.world_size == 2 and result.steps == 4


# ------------------------------------------------------------------ the job end to end


def _job():
    spec = importlib.util.spec_from_file_location("tune_job", REPO / "jobs" / "tune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _base_args(tiny_tables, tmp_path):
    """Config layers and settings shared by the tuning job and the training job of these tests."""
    encoded, vocab = tiny_tables
    (tmp_path / "empty.yaml").write_text("{}\n")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"tune": {"space": SPACE}}))
    sets = [
        f"tables.encoded.path={encoded}",
        f"tables.vocab.path={vocab}",
        "tables.oracle=null",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"spark.checkpoint_dir={tmp_path / 'checkpoints'}",  # where a launcher=spark trial checkpoints RDDs
        "train.progress=false",
        "train.embedding_dim=8",
        "train.epochs=2",
    ]
    return (
        ["--config", str(tmp_path / "empty.yaml"), "--config", str(space)]
        + [a for s in sets for a in ("--set", s)]
        + SCHEMA_FLAGS
    )


def _job_args(tiny_tables, tmp_path, *extra):
    return [
        *_base_args(tiny_tables, tmp_path),
        "--storage",
        f"sqlite:///{tmp_path / 'optuna.db'}",
        "--output",
        str(tmp_path / "best.yaml"),
        "--eval-every-rows",
        "128",
        "--startup-trials",
        "2",
        *extra,
    ]


@pytest.mark.slow
def test_the_job_runs_a_study_as_mlflow_child_runs_and_writes_the_best_trial_as_a_config_layer(
    tiny_tables, tmp_path, capsys
):
    args = _job_args(tiny_tables, tmp_path, "--n-trials", "3")
    assert run(_job(), args) == 0
    # the study holds 3 finished trials, the best written as a layer
    study = optuna.load_study(study_name="ctr", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 3 and all(t.intermediate_values for t in finished)
    layer = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert layer == {"train": study.best_trial.user_attrs["layer"]}
    assert layer["train"]["model"]["kind"] == study.best_trial.params["model.kind"]
    # which the training job takes as a --config layer: the best trial's keys over the same base
    base = _base_args(tiny_tables, tmp_path)
    trained = load_config([*base[:4], "--config", str(tmp_path / "best.yaml"), *base[4:]], section="train").train
    assert trained.embedding_lr == study.best_trial.params["embedding_lr"] and trained.embedding_dim == 8
    # and training with it reproduces the best trial: same validations, same kept point, same valid AUC
    metrics = tmp_path / "retrained.json"
    retrain = [*base[:4], "--config", str(tmp_path / "best.yaml"), *base[4:], "--metrics-out", str(metrics)]
    assert run(train_job_main(), retrain) == 0
    assert json.loads(metrics.read_text())["valid_auc"] == pytest.approx(study.best_value, abs=1e-12)
    # each trial is a child run of the job's run, with its curve; the parent has the plot and the layer
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    parent = next(r for r in runs if r.info.run_name == "tune")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["optuna.trial"] for r in children) == ["0", "1", "2"]
    assert parent.data.metrics["best_valid_auc"] == pytest.approx(study.best_value)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "plots")}
    assert "plots/tuning_history.png" in artifacts
    child = mlflow.MlflowClient().get_metric_history(children[0].info.run_id, "valid_curve_auc")
    assert len(child) >= 2
    first = (tmp_path / "best.yaml").read_text()
    capsys.readouterr()

    # when the job runs again with the same study: nothing more to do, the same layer
    assert run(_job(), args) == 0
    assert "new=0" in capsys.readouterr().out and (tmp_path / "best.yaml").read_text() == first

    # and a larger n_trials continues the study rather than starting over
    assert run(_job(), [*args, "--n-trials", "4"]) == 0
    assert len(optuna.load_study(study_name="ctr", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials) == 4


@pytest.mark.slow
def test_the_job_refuses_a_changed_space_under_the_same_study_name(tiny_tables, tmp_path, capsys):
    args = _job_args(tiny_tables, tmp_path, "--n-trials", "1")
    assert run(_job(), args) == 0
    capsys.readouterr()
    code = run(_job(), [*args, "--set", "tune.space.batch_size.choices=[32, 128]"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: tune.study_name='ctr' exists") and "batch_size" in err


@pytest.mark.slow
def test_every_trial_can_train_on_two_spawned_ranks(tiny_tables, tmp_path):
    args = _job_args(tiny_tables, tmp_path, "--n-trials", "2", "--set", "train.world_size=2", "--pruner", "none")
    assert run(_job(), args) == 0
    study = optuna.load_study(study_name="ctr", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(t.intermediate_values for t in study.trials)  # rank 0's reports reached the storage
    runs = [t.user_attrs["mlflow_run_id"] for t in study.trials]
    assert len(set(runs)) == 2


def test_the_job_refuses_an_empty_space(tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("{}\n")
    code = run(_job(), ["--config", str(tmp_path / "empty.yaml"), "--set", "mlflow.enabled=false"])
    assert code == 2 and "error: tune.space is empty" in capsys.readouterr().err


@pytest.mark.slow
def test_trials_can_run_on_spark_s_torch_distributor(spark, tiny_tables, tmp_path):
    args = _job_args(
        tiny_tables, tmp_path, "--n-trials", "1", "--set", "train.launcher=spark", "--set", "train.world_size=2"
    )
    assert run(_job(), [*args, "--master", "local[2]"]) == 0
    (trial,) = optuna.load_study(study_name="ctr", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials
    assert trial.state.name == "COMPLETE" and trial.intermediate_values  # rank 0 under torchrun reported
