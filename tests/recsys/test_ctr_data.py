"""Reading the encoded Delta table: rank shares, jagged arrays, missing values, dense transform, batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from core.train_config import VocabLayoutConfig
from recsys.data.batches import encode_rows, make_batch
from recsys.data.features import block_from_arrow, dense_transform, resolve_feature_spec, take_jagged
from recsys.data.reader import DeltaSource, rank_slices
from recsys.modules.layouts import make_layout


@pytest.mark.parametrize("sizes,world", [([10], 2), ([3, 0, 7, 5], 3), ([1, 1], 4), ([100, 1], 2)])
def test_rank_shares_cover_every_row_exactly_once(sizes, world):
    # given row groups of these sizes; when each rank takes its slices
    covered = []
    for rank in range(world):
        for g, start, stop in rank_slices(sizes, rank, world):
            base = sum(sizes[:g])
            covered += list(range(base + start, base + stop))
    # then
    assert sorted(covered) == list(range(sum(sizes)))
    assert len(covered) == len(set(covered))


def test_ranks_read_disjoint_shares_of_the_delta_table(tiny_tables):
    encoded, _ = tiny_tables
    src = DeltaSource(encoded)
    assert len(src.files) == 2 and src.num_rows == 640
    ids = [
        np.concatenate([t.column("event_id").to_numpy() for t in src.iter_tables(["event_id"], r, 3, 50)])
        for r in range(3)
    ]
    assert sorted(np.concatenate(ids).tolist()) == list(range(640))
    assert [len(i) for i in ids] == [213, 213, 214]


def test_dense_transform_is_log1p_with_missing_indicator():
    raw = np.array([[0.0, np.nan], [np.e - 1, -1.0]])
    out = dense_transform(raw)
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]], atol=1e-6)
    assert out.dtype == np.float32


def test_dense_transform_treats_infinite_values_as_missing():
    # given +inf and -inf where a count would be; then each reads like NaN: value 0, missing 1
    out = dense_transform(np.array([[np.inf], [-np.inf], [np.nan]]))
    np.testing.assert_array_equal(out, [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])


def test_arrays_become_jagged_bags_and_null_hashes_become_zero():
    # given three rows: tags [5, 9], null, [1]; C1 null-hash (missing value, id 0)
    table = pa.table(
        {
            "event_id": pa.array([0, 1, 2], pa.int64()),
            "label": pa.array([0, 1, 0], pa.int32()),
            "I1": pa.array([1.0, None, 3.0]),
            "C1": pa.array([0, 4, 1], pa.int32()),
            "C1_hash": pa.array([None, 44, 11], pa.int64()),
            "tags": pa.array([[5, 9], None, [1]], pa.list_(pa.int32())),
            "tags_hash": pa.array([[55, 99], None, [11]], pa.list_(pa.int64())),
        }
    )
    spec = resolve_feature_spec(table.schema, dense=None, sparse=None, label_col="label", id_col="event_id")
    assert spec.dense == ("I1",) and spec.sparse == ("C1", "tags") and spec.multi_valued == {"tags"}
    # when
    block = block_from_arrow(table, spec, with_hash=True)
    # then
    tags = block.sparse["tags"]
    assert tags.offsets.tolist() == [0, 2, 2, 3] and tags.ids.tolist() == [5, 9, 1]
    assert tags.hashes.tolist() == [55, 99, 11]
    assert block.sparse["C1"].hashes.tolist() == [0, 44, 11]
    assert block.dense[:, 1].tolist() == [0.0, 1.0, 0.0]  # I1 missing indicator


def test_take_jagged_gathers_rows_in_order():
    offsets, values = np.array([0, 2, 2, 3]), np.array([5, 9, 1])
    lengths, got = take_jagged(offsets, values, np.array([2, 0, 1]))
    assert lengths.tolist() == [1, 2, 0] and got.tolist() == [1, 5, 9]


def test_batches_are_key_major_kjts(tiny_tables):
    encoded, _ = tiny_tables
    src = DeltaSource(encoded)
    spec = resolve_feature_spec(src.schema, dense=None, sparse=None, label_col="label", id_col="event_id")
    block = block_from_arrow(next(src.iter_tables(src.schema.names)), spec, with_hash=False)
    layout = make_layout(VocabLayoutConfig(), list(spec.sparse), {"C1": 40, "C2": 12, "tags": 9}, 4, seed=0)
    batch = make_batch(encode_rows(block, layout), np.array([0, 1, 2]))
    assert batch.sparse.keys() == ["C1", "C2", "tags"] and batch.sparse.stride() == 3
    assert batch.sparse["C1"].values().tolist() == block.sparse["C1"].ids[:3].tolist()
    assert batch.dense.shape == (3, 4) and batch.labels.shape == (3,)


def test_a_table_without_ids_gets_global_row_positions(tiny_tables):
    # given the tiny table read in 3 shares with a row-index column (as for Criteo files without event_id)
    src = DeltaSource(tiny_tables[0])
    got = [t for r in range(3) for t in src.iter_tables(["event_id"], r, 3, 50, row_index="__row_index")]
    # then the positions are 0..N-1 and follow the file order of the shares
    pos = np.concatenate([t.column("__row_index").to_numpy() for t in got])
    assert pos.tolist() == list(range(640))
    ids = np.concatenate([t.column("event_id").to_numpy() for t in got])
    assert sorted(ids.tolist()) == list(range(640))
