"""Hashing, splits and embedding layouts: salts, ranges, widths, parameter counts, unseen values."""

from __future__ import annotations

import numpy as np
import pytest

from core.encoding import splitmix64
from core.train_config import HashedLayoutConfig, UnifiedLayoutConfig, VocabLayoutConfig
from recsys.data.hashing import feature_salt, hash_to_rows
from recsys.data.splits import random_split, time_cutoffs, time_split
from recsys.modules.layouts import make_layout, split_rows

SIZES = {"C1": 1000, "C2": 100, "tags": 50}


def test_salts_differ_per_feature_chunk_and_seed():
    # given / when
    salts = {feature_salt(f, j, s) for f in ("C1", "C2") for j in range(3) for s in (0, 1)}
    # then
    assert len(salts) == 12
    assert feature_salt("C1", 0, 0) == feature_salt("C1", 0, 0)


def test_salted_splitmix64_is_a_bijection_on_a_sample_and_rows_are_in_range():
    x = np.arange(100_000, dtype=np.int64)
    assert len(np.unique(splitmix64(x, 7))) == len(x)
    rows = hash_to_rows(x, feature_salt("C1", 0, 0), 97)
    assert rows.min() >= 0 and rows.max() < 97
    counts = np.bincount(rows, minlength=97)
    assert counts.min() > 0.8 * len(x) / 97 and counts.max() < 1.2 * len(x) / 97  # near-uniform buckets


def test_same_values_land_on_independent_rows_for_different_salts():
    x = np.arange(10_000, dtype=np.int64)
    a = hash_to_rows(x, feature_salt("C1", 0, 0), 1000)
    b = hash_to_rows(x, feature_salt("C2", 0, 0), 1000)
    assert np.mean(a == b) < 0.01  # ~1/1000 by chance


def test_random_split_is_seeded_and_independent_of_row_order():
    ids = np.arange(20_000, dtype=np.int64)
    code = random_split(ids, seed=3, valid_fraction=0.1, test_fraction=0.2)
    perm = np.random.default_rng(0).permutation(len(ids))
    assert np.array_equal(random_split(ids[perm], 3, 0.1, 0.2), code[perm])
    assert not np.array_equal(random_split(ids, 4, 0.1, 0.2), code)
    assert abs(np.mean(code == 2) - 0.2) < 0.02 and abs(np.mean(code == 1) - 0.1) < 0.02


def test_time_split_puts_the_latest_rows_in_test():
    ts = np.arange(100, dtype=np.int64)
    valid_start, test_start = time_cutoffs(ts, 0.1, 0.2)
    code = time_split(ts, valid_start, test_start)
    assert (code[80:] == 2).all() and (code[70:80] == 1).all() and (code[:70] == 0).all()


def test_vocab_layout_has_one_vocab_sized_table_per_feature():
    layout = make_layout(VocabLayoutConfig(), list(SIZES), SIZES, 8, seed=0)
    assert [(t.name, t.num_embeddings, t.embedding_dim) for t in layout.tables] == [
        ("C1", 1000, 8),
        ("C2", 100, 8),
        ("tags", 50, 8),
    ]
    assert layout.embedding_params() == 1150 * 8
    assert layout.embedding_bytes("rowwise_adagrad") == {
        "weights": 1150 * 32,
        "optimizer_state": 1150 * 4,
        "total": 1150 * 36,
    }
    ids = np.array([0, 1, 5])
    assert np.array_equal(layout.rows(0, ids, None), ids)  # vocab ids are the rows


def test_hashed_layout_splits_the_budget_in_proportion_to_vocab_sizes():
    assert split_rows(115, SIZES, min_rows=2) == {"C1": 100, "C2": 10, "tags": 5}
    layout = make_layout(HashedLayoutConfig(total_rows=115), list(SIZES), SIZES, 4, seed=0)
    assert [t.num_embeddings for t in layout.tables] == [100, 10, 5]
    rows = layout.rows(0, np.zeros(1000, np.int64), np.arange(1000, dtype=np.int64))
    assert rows.min() >= 0 and rows.max() < 100


def test_unified_layout_shares_one_table_and_concatenates_chunks():
    # given C1 with 3 chunks, the others 1
    cfg = UnifiedLayoutConfig(total_rows=64, num_chunks=1, chunks={"C1": 3})
    # when
    layout = make_layout(cfg, list(SIZES), SIZES, 4, seed=0)
    # then
    assert len(layout.tables) == 1 and layout.tables[0].num_embeddings == 64
    assert layout.keys == ("C1@0", "C1@1", "C1@2", "C2@0", "tags@0")
    assert layout.tables[0].feature_names == layout.keys
    assert layout.feature_widths == {"C1": 12, "C2": 4, "tags": 4}
    assert layout.embedding_params() == 64 * 4
    assert len({s.salt for s in layout.sources}) == 5  # a distinct salt per (feature, chunk)


def test_unified_layout_gives_unseen_values_their_own_rows():
    # given two values the vocabulary does not know (both id 1 = OOV) but with different raw hashes
    layout = make_layout(UnifiedLayoutConfig(total_rows=10_000, chunks={"C1": 2}), list(SIZES), SIZES, 4, seed=0)
    ids, hashes = np.array([1, 1]), np.array([123456789, 987654321])
    # when
    chunk0, chunk1 = layout.rows(0, ids, hashes), layout.rows(1, ids, hashes)
    # then: the vocab layout would give both row 1; UE gives them different vectors
    assert chunk0[0] != chunk0[1] or chunk1[0] != chunk1[1]
    assert not np.array_equal(chunk0, chunk1)


def test_unified_layout_rejects_chunks_for_unknown_features():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="C9"):
        make_layout(UnifiedLayoutConfig(chunks={"C9": 2}), list(SIZES), SIZES, 4, seed=0)


def test_layout_round_trips_through_a_dict():
    from recsys.modules.layouts import EmbeddingLayout

    layout = make_layout(UnifiedLayoutConfig(total_rows=64, chunks={"C1": 2}), list(SIZES), SIZES, 4, seed=1)
    assert EmbeddingLayout.from_dict(layout.to_dict()) == layout
