"""Training that stops at the best point: validation every N steps, early stopping, best weights kept, LR schedule, L2."""

from __future__ import annotations

import math

import pytest
from ctr_tables import train_setup

from core.train_config import LRScheduleConfig
from recsys.distributed.launch import process_group, single_rank_env
from recsys.train import prepare, run_training
from recsys.trainer import CTRTrainer, lr_factor

# ------------------------------------------------------------------ the schedule (pure)


def test_warm_up_climbs_linearly_to_the_full_rate():
    s = LRScheduleConfig(warmup_steps=4)
    assert [lr_factor(i, 10, s) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_linear_decay_runs_from_one_after_warm_up_to_min_factor_at_the_last_step():
    s = LRScheduleConfig(warmup_steps=2, decay="linear", min_factor=0.1)
    factors = [lr_factor(i, 12, s) for i in range(12)]
    assert factors[:3] == [0.5, 1.0, 1.0] and math.isclose(factors[-1], 0.1)
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))


def test_cosine_decay_is_halfway_at_the_middle_step():
    s = LRScheduleConfig(decay="cosine")
    assert lr_factor(0, 11, s) == 1.0 and math.isclose(lr_factor(5, 11, s), 0.5) and lr_factor(10, 11, s) < 1e-12


# ------------------------------------------------------------------ runs on the tiny tables (1 rank, in process)


def _train(tiny_tables, tmp_path, **overrides):
    cfg, inputs = train_setup(*tiny_tables, **overrides)
    return run_training(cfg, inputs)


@pytest.mark.slow
def test_early_stopping_stops_after_patience_evaluations_without_gain_and_keeps_the_best(tiny_tables, tmp_path):
    # given a gain nothing can reach (min_delta 1): the first validation stays the best
    r = _train(tiny_tables, tmp_path, epochs=20, eval_every=2, early_stopping={"patience": 2, "min_delta": 1.0})
    # then the run stops after 2 more validations, at step 6 of 20 epochs' worth
    assert r.stopped_early and r.steps == 6 and [p.step for p in r.valid_curve] == [2, 4, 6]
    # and the model it reports (and exports) is step 2's
    assert r.best_step == 2 and r.valid_auc == pytest.approx(r.valid_curve[0].auc, abs=1e-12)


@pytest.mark.slow
def test_without_early_stopping_the_best_validation_s_weights_are_kept(tiny_tables, tmp_path):
    r = _train(tiny_tables, tmp_path, epochs=4, eval_every=3, embedding_lr=0.5, dense_lr=0.05)
    best = max(r.valid_curve, key=lambda p: p.auc)
    assert not r.stopped_early and r.valid_curve[-1].step == r.steps  # the last step is validated too
    assert r.best_step == best.step and r.valid_auc == pytest.approx(best.auc, abs=1e-12)


def _movement(tiny_tables, **overrides) -> dict[str, float]:
    """How far 5 steps move C1's table (fused optimizer) and the dense layers (dense optimizer) from the start."""
    cfg, inputs = train_setup(*tiny_tables, max_steps=5, **overrides)
    summary = prepare(cfg, inputs)
    with single_rank_env(), process_group("gloo", "cpu") as (rank, world, device):
        t = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device).setup()
        before = t.full_state_dict()
        t.train()
        after = t.full_state_dict()
    table = "ebc.embedding_bags.C1.weight"
    dense = [k for k in before if "over_arch" in k]
    return {
        "table": float((after[table] - before[table]).norm()),
        "dense": sum(float((after[k] - before[k]).norm()) for k in dense),
    }


@pytest.mark.slow
def test_the_schedule_scales_both_the_fused_table_and_the_dense_learning_rates(tiny_tables):
    plain = _movement(tiny_tables)
    warm = _movement(tiny_tables, lr_schedule={"warmup_steps": 10_000})  # factors <= 5e-4 over 5 steps
    assert warm["table"] < 0.01 * plain["table"] and warm["dense"] < 0.01 * plain["dense"]


@pytest.mark.slow
def test_l2_on_the_looked_up_vectors_shrinks_the_tables(tiny_tables):
    cfg, inputs = train_setup(*tiny_tables, max_steps=10)
    norms = {}
    for decay in (0.0, 1.0):
        c = cfg.model_copy(update={"embedding_l2": decay})
        summary = prepare(c, inputs)
        with single_rank_env(), process_group("gloo", "cpu") as (rank, world, device):
            t = CTRTrainer(c, summary, rank=rank, world_size=world, device=device).setup()
            t.train()
            norms[decay] = float(t.full_state_dict()["ebc.embedding_bags.C1.weight"].norm())
    assert norms[1.0] < 0.9 * norms[0.0]
