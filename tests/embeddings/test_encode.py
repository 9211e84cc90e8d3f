"""Encoding: ids from the vocabulary, reserved ids for missing/unknown values, arrays keep order."""

import pytest
from pyspark.sql import functions as F

from core.config import EncodeConfig
from core.errors import InputError
from embeddings.encode import encode
from embeddings.vocabulary import MISSING_ID, OOV_ID, VocabularyModel


@pytest.fixture
def vocab(spark):
    return VocabularyModel.from_labels(spark, {"color": ["red", "blue"], "tags": ["x", "y"]}).table


@pytest.fixture
def raw(spark):
    rows = [(1, "red", ["y", "x", "y"]), (2, "blue", ["zzz", "x"]), (3, None, None), (4, "mauve", [])]
    return spark.createDataFrame(rows, "event_id long, color string, tags array<string>")


def by_id(df):
    return {r["event_id"]: r for r in df.collect()}


def test_values_become_ids_with_reserved_missing_and_oov(raw, vocab):
    # when
    out = by_id(encode(raw, vocab, ["color", "tags"]))
    # then
    assert [out[i]["color"] for i in (1, 2, 3, 4)] == [2, 3, MISSING_ID, OOV_ID]
    assert out[1]["tags"] == [3, 2, 3]  # order and repeats kept
    assert out[2]["tags"] == [OOV_ID, 2]
    assert out[3]["tags"] is None and out[4]["tags"] == []


def test_hash_columns_are_stable_and_null_for_missing(raw, vocab, spark):
    out = by_id(encode(raw, vocab, ["color", "tags"]))
    expected = spark.range(1).select(F.xxhash64(F.lit("mauve")).alias("h")).head()["h"]
    assert out[4]["color_hash"] == expected  # unseen values still get a distinct hash
    assert out[3]["color_hash"] is None
    assert len(out[1]["tags_hash"]) == 3 and out[1]["tags_hash"][0] == out[1]["tags_hash"][2]


def test_other_columns_pass_through_and_column_order_is_kept(raw, vocab):
    out = encode(raw, vocab, ["color", "tags"])
    assert out.columns == ["event_id", "color", "tags", "color_hash", "tags_hash"]
    assert out.count() == 4


def test_round_trip_decodes_to_the_original_values(raw, vocab):
    encoded = encode(raw, vocab, ["color"])
    names = vocab.where("feature = 'color'").select(F.col("id").alias("color"), F.col("value").alias("decoded"))
    back = {r["event_id"]: r["decoded"] for r in encoded.join(names, "color", "left").collect()}
    assert back == {1: "red", 2: "blue", 3: None, 4: None}  # 3 was missing, 4 out of vocabulary


def test_skip_drops_rows_with_unknown_scalars_and_unknown_array_elements(raw, vocab):
    out = by_id(encode(raw, vocab, ["color", "tags"], EncodeConfig(handle_invalid="skip")))
    assert set(out) == {1, 2, 3}
    assert out[2]["tags"] == [2]


def test_error_policy_names_the_feature_and_count(raw, vocab):
    with pytest.raises(InputError, match=r"\{'color': 1, 'tags': 1\}"):
        encode(raw, vocab, ["color", "tags"], EncodeConfig(handle_invalid="error"))


def test_feature_without_vocabulary_rows_is_an_error(raw, vocab):
    with pytest.raises(InputError, match=r"no rows for feature\(s\) \['event_id'\]"):
        encode(raw, vocab, ["color", "event_id"])


def test_broadcast_threshold_does_not_change_the_result(raw, vocab):
    small = encode(raw, vocab, ["color", "tags"], EncodeConfig(broadcast_max_rows=1_000))
    large = encode(raw, vocab, ["color", "tags"], EncodeConfig(broadcast_max_rows=1))
    assert sorted(small.collect()) == sorted(large.collect())
