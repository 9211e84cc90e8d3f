"""Two gloo ranks under DistributedModelParallel: sharded == unsharded, identical resume, export round trip.

One spawned 2-rank run (``ctr_workers.two_rank_checks``) does all the work; each test reads one result.
C1 is column-wise, C2 table-wise and tags data-parallel, so three CPU sharding types are exercised;
bags pool by their mean (the multi-valued tags bag is where sum and mean differ).
"""

from __future__ import annotations

import json

import pytest

from recsys.distributed.launch import spawn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ranks(tiny_tables, tmp_path_factory):
    from ctr_workers import two_rank_checks

    out = tmp_path_factory.mktemp("two_ranks")
    spawn(two_rank_checks, (*tiny_tables, str(out)), world_size=2)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_the_plan_honours_the_per_table_sharding_types(ranks):
    assert ranks[0]["plan"] == {"C1": "column_wise", "C2": "table_wise", "tags": "data_parallel"}


def test_sharded_forward_equals_the_unsharded_model_with_the_same_weights(ranks):
    # same fp32 rows; the fused kernel and the plain module round a bag's mean differently (~1 ulp)
    assert max(r["forward_max_diff"] for r in ranks) < 1e-6


def test_every_table_is_updated_by_its_fused_optimizer(ranks):
    assert all(ranks[0]["tables_changed"].values())


def test_resuming_from_a_sharded_checkpoint_continues_identically(ranks):
    for r in ranks:
        assert r["restored"] and r["progress_after_restore"]["global_step"] == 3
        assert r["losses_first"] + r["losses_resumed"] == r["losses_straight"]
    assert ranks[0]["resume_max_diff"] == 0.0
    assert ranks[0]["history_resumed"] == ranks[0]["losses_straight"]  # rank 0's losses before the save survive


def test_the_exported_model_scores_like_the_trainer_in_one_process(ranks):
    assert ranks[0]["test_rows"] > 0
    assert ranks[0]["export_max_diff"] < 1e-6  # same weights; plain nn modules vs fused kernels
