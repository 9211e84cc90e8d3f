"""Promotion by aliases: first version becomes champion, a worse challenger does not, an equal one does;
the decision and both AUCs are logged. Runs against the sqlite default and a real `mlflow server`."""

from __future__ import annotations

import pytest
from conftest import negated_copy

from recsys.registry import should_promote


def test_rule_promotes_within_tolerance_and_rejects_below_it():
    assert should_promote(0.70, None, 0.002) == (True, "no champion yet")
    assert should_promote(0.7990, 0.8000, 0.002)[0] is True     # worse, but within the tolerance
    assert should_promote(0.8000, 0.8000, 0.0)[0] is True       # equal is enough
    assert should_promote(0.7970, 0.8000, 0.002)[0] is False    # below champion - tolerance


@pytest.fixture(params=["sqlite", "server"])
def tracking(request, tmp_path):
    """An MlflowConfig pointing at a sqlite file in tmp, or at the session's real mlflow server."""
    from core.config import MlflowConfig

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if request.param == "sqlite" else request.getfixturevalue("mlflow_server")
    return MlflowConfig(tracking_uri=uri, experiment=f"promotion-{request.param}", registered_model=f"ctr_{request.param}")


def _promote(cfg, export: str, metrics: dict, tables: dict):
    from core.tracking import mlflow_run
    from recsys.registry import register_and_promote

    with mlflow_run(cfg, "promote") as run:
        decision = register_and_promote(export, metrics, raw_path=tables["raw"], raw_version=0,
                                        vocab_path=tables["vocab"], vocab_version=0,
                                        registered_model=cfg.registered_model, tolerance=cfg.promotion_tolerance)
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
    assert tags["promotion.decision"] == "rejected" and float(tags["promotion.champion_test_auc"]) == second.champion_auc
    assert not client.get_model_version(name, "3").current_stage or client.get_model_version(name, "3").current_stage == "None"
