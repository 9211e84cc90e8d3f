"""OptEmbed's three stages end to end on a tiny table with planted answers (1 rank, then 2 gloo ranks).

The table: labels depend on C1's parity (and I1); C1 ids 30..39 never occur (C1 = id % 30) and C2
and tags are pure noise. One run of supernet -> search (under a parameter budget) -> retrain ->
export is shared by the tests of this module.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from ctr_tables import make_encoded, make_vocab, train_config, train_inputs, train_setup, write_delta
from pydantic import ValidationError

OPTEMBED = {
    "enabled": True,
    "alpha": 0.005,
    "threshold_lr": 0.01,
    "population": 6,
    "num_mutations": 3,
    "num_crossovers": 3,
    "generations": 3,
    "max_params_fraction": 0.45,
}


def planted_table(num_rows: int = 2000) -> list[pa.Table]:
    """make_encoded's rows with C1 folded to ids < 30 (parity, hence the label signal, is kept)."""
    return [
        t.set_column(t.schema.get_field_index("C1"), "C1", pa.array((t.column("C1").to_numpy() % 30).astype(np.int32)))
        for t in make_encoded(num_rows)
    ]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("optembed")
    return write_delta(root / "encoded", planted_table()), write_delta(root / "vocab", [make_vocab()]), root


@pytest.fixture(scope="module")
def run(planted):
    from recsys.train import run_training

    encoded, vocab, root = planted
    cfg, inputs = train_setup(
        encoded,
        vocab,
        epochs=3,
        export_path=str(root / "model.pt"),
        optembed={**OPTEMBED, "work_dir": str(root / "work")},
    )
    return run_training(cfg, inputs), cfg


def test_thresholds_move_under_training_and_the_noise_field_rises_most(run):
    sup = run[0].stages.supernet
    assert sup.thresholds_before == [0.0, 0.0, 0.0]
    c1, c2, tags = sup.thresholds
    assert c1 != 0.0 and c2 > c1
    assert tags == 0.0  # multi-valued: never row-pruned, its threshold is frozen


def test_the_noise_field_is_pruned_to_its_missing_and_oov_rows(run):
    # given C2 is pure noise and C1 carries the label; when the supernet is trained; then
    keeps = torch.load(f"{run[1].optembed.work_dir}/supernet.pt", weights_only=True)["keeps"]
    assert keeps[0][:30].all()  # the useful field keeps every row it saw
    assert keeps[1].sum() == 2  # C2: only the missing and OOV rows stay
    assert keeps[2].all()  # tags (multi-valued) untouched


def test_the_search_respects_the_parameter_budget(run):
    metrics, _ = run
    search = metrics.stages.search
    kept = metrics.rows_kept
    full_width_params = sum(kept.values()) * 8
    assert search.max_params == int(0.45 * metrics.params_before) < full_width_params  # the budget binds
    assert search.candidates and all(c["params"] <= search.max_params for c in search.candidates)
    assert search.params == metrics.params_after <= search.max_params
    assert all(w % 4 == 0 for w in search.widths)


def test_the_retrained_table_has_exactly_the_reported_shape(run):
    metrics, cfg = run
    state = torch.load(cfg.export_path, weights_only=True)["state_dict"]
    keeps = torch.load(f"{cfg.optembed.work_dir}/supernet.pt", weights_only=True)["keeps"]
    for name, keep in zip(["C1", "C2", "tags"], keeps):
        assert list(state[f"ebc.embedding_bags.{name}.weight"].shape) == metrics.tables_after[name]
        assert metrics.tables_after[name] == [int(keep.sum()), metrics.widths[name]]
    assert metrics.params_after == sum(r * w for r, w in metrics.tables_after.values()) < metrics.params_before
    assert metrics.bytes_after["total"] < metrics.bytes_before["total"]
    assert all(
        isinstance(v, float)
        for v in (metrics.auc_before, metrics.auc_after, metrics.logloss_before, metrics.logloss_after)
    )


def test_the_exported_model_scores_raw_vocabulary_ids_like_the_trainer(run, planted):
    from deltalake import DeltaTable

    from recsys.data.splits import random_split
    from recsys.export import load_exported
    from recsys.metrics import auc_logloss

    metrics, cfg = run
    table = DeltaTable(planted[0]).to_pyarrow_table()
    code = random_split(
        table.column("event_id").to_numpy(), cfg.seed, cfg.split.valid_fraction, cfg.split.test_fraction
    )
    test = table.filter(pa.array(code == 2))
    model = load_exported(cfg.export_path)
    probs = model.predict(test)  # raw vocabulary ids in; the remap inside the model file
    got = auc_logloss(test.column("label").to_numpy(), probs)
    assert got["auc"] == pytest.approx(metrics.test_auc, abs=1e-9)
    assert got["logloss"] == pytest.approx(metrics.test_logloss, abs=1e-5)  # plain modules vs fused kernels
    # an id the training vocabulary never had (a later vocabulary's) scores like the OOV id
    unseen = test.set_column(test.schema.get_field_index("C1"), "C1", pa.array(np.full(test.num_rows, 500, np.int32)))
    oov = test.set_column(test.schema.get_field_index("C1"), "C1", pa.array(np.full(test.num_rows, 1, np.int32)))
    np.testing.assert_array_equal(model.predict(unseen), model.predict(oov))


def test_retraining_with_nothing_pruned_reproduces_the_plain_model_exactly(planted):
    from recsys.train import run_training

    encoded, vocab, _ = planted
    cfg, inputs = train_setup(
        encoded, vocab, epochs=1, optembed={"enabled": True, "row_pruning": False, "dim_search": False}
    )
    m = run_training(cfg, inputs)
    # same seed -> same initial weights; no masks -> the retrain is the plain model's training
    assert m.auc_after == m.auc_before and m.logloss_after == m.logloss_before
    assert m.params_after == m.params_before


def test_a_single_stage_runs_from_the_work_dir(run, planted, tmp_path):
    from recsys.train import run_training

    metrics, cfg = run
    again = cfg.model_copy(
        update={
            "optembed": cfg.optembed.model_copy(update={"stages": ["retrain"], "baseline": False}),
            "export_path": None,
        }
    )
    m = run_training(again, train_inputs(*planted[:2]))
    assert m.tables_after == metrics.tables_after and m.test_auc == metrics.test_auc


def test_the_unified_layout_is_refused_with_a_clear_error(planted):
    with pytest.raises(ValidationError, match="optembed needs per-feature tables"):
        train_config(layout={"kind": "unified"}, optembed={"enabled": True})


def test_stages_alone_need_a_work_dir(planted):
    with pytest.raises(ValidationError, match="set optembed.work_dir"):
        train_config(optembed={"enabled": True, "stages": ["search"]})


@pytest.mark.slow
def test_two_gloo_ranks_run_all_stages_with_column_table_and_data_parallel_tables(planted, tmp_path):
    from recsys.export import load_exported
    from recsys.train import run_training

    encoded, vocab, _ = planted
    cfg, inputs = train_setup(
        encoded,
        vocab,
        epochs=2,
        world_size=2,
        export_path=str(tmp_path / "m.pt"),
        sharding_types={"C1": ["column_wise"], "C2": ["table_wise"], "tags": ["data_parallel"]},
        optembed={**OPTEMBED, "baseline": False},
    )
    m = run_training(cfg, inputs)
    assert m.world_size == 2
    assert {k: v["sharding_type"] for k, v in m.stages.retrain.sharding_plan.items()} == {
        "C1": "column_wise",
        "C2": "table_wise",
        "tags": "data_parallel",
    }
    assert m.rows_kept["C2"] < 12 and m.params_after < m.params_before
    state = load_exported(cfg.export_path).model.state_dict()
    assert {n: list(state[f"ebc.embedding_bags.{n}.weight"].shape) for n in ("C1", "C2", "tags")} == m.tables_after
