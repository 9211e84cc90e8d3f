"""Promotion by aliases: first version becomes champion, a worse challenger does not, an equal one does;
the decision and both AUCs are logged. Runs against the sqlite default and a real `mlflow server`."""

from __future__ import annotations

import pytest
from conftest import negated_copy

from recsys.registry import should_promote

pytestmark = pytest.mark.slow  # trains models and registers them (sqlite and a real mlflow server)


def test_rule_promotes_within_tolerance_and_rejects_below_it():
    assert should_promote(0.70, None, 0.002) == (True, "no champion yet")
    assert should_promote(0.7990, 0.8000, 0.002)[0] is True  # worse, but within the tolerance
    assert should_promote(0.8000, 0.8000, 0.0)[0] is True  # equal is enough
    assert should_promote(0.7970, 0.8000, 0.002)[0] is False  # below champion - tolerance


@pytest.fixture(params=["sqlite", "server"])
def tracking(request, tmp_path):
    """An MlflowConfig pointing at a sqlite file in tmp, or at the session's real mlflow server."""
    from core.config import MlflowConfig

    uri = (
        f"sqlite:///{tmp_path / 'mlflow.db'}" if request.param == "sqlite" else request.getfixturevalue("mlflow_server")
    )
    return MlflowConfig(
        tracking_uri=uri, experiment=f"promotion-{request.param}", registered_model=f"ctr_{request.param}"
    )


def _promote(cfg, export: str, metrics: dict, tables: dict):
    from core.tracking import mlflow_run
    from recsys.registry import register_and_promote

    with mlflow_run(cfg, "promote") as run:
        decision = register_and_promote(
            export,
            metrics,
            raw_path=tables["raw"],
            raw_version=0,
            vocab_path=tables["vocab"],
            vocab_version=0,
            registered_model=cfg.registered_model,
            tolerance=cfg.promotion_tolerance,
        )
    return decision, run.info.run_id


def test_first_version_is_champion_worse_is_not_equal_is(tracking, pipeline_tables, trained_vocab, tmp_path):
    # given: a trained model, and the same model with its logit negated (AUC exactly 1 - AUC: worse)
    from mlflow import MlflowClient

    metrics, good = trained_vocab
    worse = negated_copy(good, str(tmp_path / "worse.pt"))
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    name = tracking.registered_model

    # when: the first version is registered
    first, run1 = _promote(tracking, good, metrics, pipeline_tables)
    # then: it is champion and challenger
    assert first.promoted and first.champion_version is None and first.version == "1"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"

    # when: a worse model comes
    second, run2 = _promote(tracking, worse, metrics, pipeline_tables)
    # then: it is only challenger; both AUCs were measured on the same rows
    assert not second.promoted and second.version == "2" and second.champion_version == "1"
    assert second.champion_auc == pytest.approx(first.challenger_auc, abs=1e-9)
    assert second.challenger_auc == pytest.approx(1 - first.challenger_auc, abs=1e-6)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"

    # when: a model as good as the champion comes
    third, _ = _promote(tracking, good, metrics, pipeline_tables)
    # then: within the tolerance, it takes champion
    assert third.promoted and third.champion_version == "1"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "3"

    # and the rejected decision is on its run and its model version
    run = client.get_run(run2)
    assert run.data.tags["promotion.decision"] == "rejected"
    assert run.data.params["promotion.tolerance"] == "0.002"
    assert run.data.params["promotion.champion_version_before"] == "1"
    assert run.data.metrics["promotion.challenger_test_auc"] == pytest.approx(second.challenger_auc)
    assert run.data.metrics["promotion.champion_test_auc"] == pytest.approx(second.champion_auc)
    tags = client.get_model_version(name, "2").tags
    assert (
        tags["promotion.decision"] == "rejected" and float(tags["promotion.champion_test_auc"]) == second.champion_auc
    )
    assert (
        not client.get_model_version(name, "3").current_stage
        or client.get_model_version(name, "3").current_stage == "None"
    )


def test_a_time_split_run_is_judged_on_the_raw_rows_after_its_test_start(pipeline_tables, tmp_path):
    # given a model trained with a time split (the last 20% of rows by ts are test rows)
    import datetime as dt

    from conftest import train
    from deltalake import DeltaTable

    from core.config import MlflowConfig

    metrics = train(pipeline_tables, tmp_path / "ctr", split={"kind": "time"}, epochs=1)
    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", registered_model="ctr_time")
    # when it is promoted
    decision, _ = _promote(cfg, str(tmp_path / "ctr" / "model.pt"), metrics, pipeline_tables)
    # then the test rows are exactly the raw rows at or after the recorded test start
    start = dt.datetime.fromisoformat(metrics.split.test_start).replace(tzinfo=dt.UTC)  # Delta: UTC
    raw = DeltaTable(pipeline_tables["raw"]).to_pandas()
    assert decision.test_rows == int((raw["ts"] >= start).sum()) == metrics.test_rows
    assert decision.promoted and decision.champion_version is None


def test_a_champion_that_cannot_score_the_new_rows_gives_way_saying_why(pipeline_tables, trained_vocab, tmp_path):
    # given a champion that reads I1 and I2
    from mlflow import MlflowClient

    from core.config import MlflowConfig
    from core.train_config import TrainConfig, TrainInputs
    from recsys.train import run_training

    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", registered_model="ctr_schema")
    metrics, export = trained_vocab
    assert _promote(cfg, export, metrics, pipeline_tables)[0].promoted
    # and a new model trained without I2, so its test rows have no I2 column
    out = tmp_path / "no_i2"
    new_cfg = TrainConfig(
        batch_size=32, eval_batch_size=64, embedding_dim=8, epochs=1, progress=False, export_path=str(out / "model.pt")
    )
    new = run_training(
        new_cfg,
        TrainInputs(
            encoded=pipeline_tables["encoded"],
            vocab=pipeline_tables["vocab"],
            dense=["I1"],
            sparse=["C1", "C2", "tags"],
        ),
    )
    # when it is promoted
    decision, _ = _promote(cfg, str(out / "model.pt"), new, pipeline_tables)
    # then the old champion could not be scored, the new one takes champion, and the reason says so
    assert decision.promoted and decision.champion_version == "1" and decision.champion_auc is None
    assert decision.reason.startswith("champion v1 cannot score this run's test rows")
    assert "I2" in decision.reason
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    assert str(client.get_model_version_by_alias("ctr_schema", "champion").version) == "2"


# --------------------------------------------------------------------------- races between promotions


@pytest.fixture
def registry(tmp_path):
    """A real sqlite registry with model 'race' holding versions 1-3 (no pyfunc needed to move aliases)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", registry_uri=None)
    client.create_registered_model("race")
    for _ in range(3):
        client.create_model_version("race", source=str(tmp_path))
    return client


def champion_of(client, name: str = "race") -> str:
    return str(client.get_model_version_by_alias(name, "champion").version)


def test_the_champion_moves_only_from_the_version_the_promotion_compared_with(registry):
    from core.errors import EXIT_CONFLICT
    from recsys.registry import LostPromotionRace, move_champion

    move_champion(registry, "race", "1", expected=None)  # first champion
    move_champion(registry, "race", "2", expected="1")
    assert champion_of(registry) == "2"
    # a promotion that compared v3 with v1 lost the race to v2: nothing moves, exit 3
    with pytest.raises(LostPromotionRace, match=r"race@champion moved by another promotion \(v1 -> v2\)") as lost:
        move_champion(registry, "race", "3", expected="1")
    assert lost.value.exit_code == EXIT_CONFLICT
    assert champion_of(registry) == "2"
    # so does one that saw no champion at all
    with pytest.raises(LostPromotionRace, match=r"\(none -> v2\)"):
        move_champion(registry, "race", "3", expected=None)


def test_aliases_move_under_one_lock_per_model_and_a_stale_lock_is_broken(registry):
    import time

    from core.errors import ConcurrentChange
    from recsys.registry import LOCK_SUFFIX, promotion_lock

    with promotion_lock(registry, "race"):
        # a second holder waits, then gives up saying who holds it
        with pytest.raises(ConcurrentChange, match=r"race\.promotion-lock' is held by another promotion"):
            with promotion_lock(registry, "race", wait_s=0.5):
                pass
    # released: the lock model is gone
    assert not registry.search_registered_models(f"name = 'race{LOCK_SUFFIX}'")
    # a lock left by a killed promotion (held since long ago) is broken, not waited on forever
    registry.create_registered_model(f"race{LOCK_SUFFIX}", tags={"holder": f"gone:1:{time.time() - 3600}"})
    with promotion_lock(registry, "race", wait_s=0.5, stale_s=60):
        pass
