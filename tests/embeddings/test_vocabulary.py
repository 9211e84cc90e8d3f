"""Vocabulary semantics: thresholds, caps, tie-breaking, arrays, reserved ids, stable ids over refreshes."""

import datetime as dt

import pytest

from core.config import VocabConfig
from core.errors import InputError
from embeddings.vocabulary import FIRST_ID, VocabularyBuilder, VocabularyModel

T0 = dt.datetime(2026, 1, 1)


def day(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def events(spark, rows):
    """rows: (color, tags, ts) tuples."""
    return spark.createDataFrame(rows, "color string, tags array<string>, ts timestamp")


def ids(model: VocabularyModel, feature: str) -> dict[str, int]:
    return {r["value"]: r["id"] for r in model.table.where(f"feature = '{feature}'").collect()}


def fit(spark, rows, previous=None, **cfg):
    features, time_col = cfg.pop("features", ["color"]), cfg.pop("time_col", "ts")
    return VocabularyBuilder(features, VocabConfig(**cfg), time_col=time_col).fit(events(spark, rows), previous)


@pytest.mark.slow  # several Spark refreshes
def test_ids_follow_descending_count_then_ascending_value(spark):
    # given red x3, blue x2, green x2, and a null
    rows = [("red", [], day(0))] * 3 + [("blue", [], day(0))] * 2 + [("green", [], day(0))] * 2 + [(None, [], day(0))]
    # when
    model = fit(spark, rows)
    # then ties (blue, green) break alphabetically; ids start after the reserved 0 (missing) and 1 (OOV)
    assert ids(model, "color") == {"red": FIRST_ID, "blue": FIRST_ID + 1, "green": FIRST_ID + 2}
    assert model.sizes() == {"color": FIRST_ID + 3}


def test_min_count_drops_rare_values(spark):
    rows = [("red", [], day(0))] * 3 + [("blue", [], day(0))]
    assert set(ids(fit(spark, rows, min_count=2), "color")) == {"red"}


def test_max_size_keeps_the_most_frequent(spark):
    rows = [("a", [], day(0))] * 3 + [("b", [], day(0))] * 2 + [("c", [], day(0))]
    assert ids(fit(spark, rows, max_size=2), "color") == {"a": 2, "b": 3}


def test_per_feature_cap_overrides_global_cap(spark):
    rows = [("a", ["x", "y", "z"], day(0)), ("b", ["x"], day(0))]
    model = fit(spark, rows, features=["color", "tags"], max_size=1, max_size_per_feature={"tags": 3})
    assert len(ids(model, "color")) == 1
    assert ids(model, "tags") == {"x": 2, "y": 3, "z": 4}


def test_array_values_are_counted_per_element(spark):
    rows = [("a", ["x", "x", "y"], day(0)), ("a", None, day(0))]
    model = fit(spark, rows, features=["tags"])
    counts = {r["value"]: r["count"] for r in model.table.collect()}
    assert counts == {"x": 2, "y": 1}


def test_time_window_selects_rows_and_records_first_and_last_seen(spark):
    rows = [("old", [], day(0)), ("red", [], day(2)), ("red", [], day(4)), ("late", [], day(9))]
    model = fit(spark, rows, start=day(1), end=day(5))
    table = {r["value"]: r for r in model.table.collect()}
    assert set(table) == {"red"}
    assert (table["red"]["first_seen"], table["red"]["last_seen"]) == (day(2), day(4))


@pytest.mark.slow  # several Spark refreshes
def test_refresh_keeps_ids_appends_new_values_and_never_reuses_ids(spark):
    # given a first build
    first = fit(spark, [("red", [], day(0))] * 2 + [("blue", [], day(0))])
    first_table = first.table.cache()
    # when the second refresh no longer sees blue, sees red less often, and sees two new values
    second = fit(
        spark, [("green", [], day(1))] * 5 + [("red", [], day(1)), ("amber", [], day(1))], previous=first_table
    )
    second_table = second.table.cache()
    # and a third sees blue again plus one more new value
    third = fit(spark, [("blue", [], day(2)), ("cyan", [], day(2))], previous=second_table)
    # then every existing value kept its id, new ones got the next ids, none was reused
    assert ids(first, "color") == {"red": 2, "blue": 3}
    assert ids(second, "color") == {"red": 2, "blue": 3, "green": 4, "amber": 5}
    assert ids(third, "color") == {"red": 2, "blue": 3, "green": 4, "amber": 5, "cyan": 6}
    # and counts are this refresh's counts; added_in records the refresh that admitted each value
    rows = {r["value"]: r for r in third.table.collect()}
    assert (rows["blue"]["count"], rows["red"]["count"], rows["cyan"]["count"]) == (1, 0, 1)
    assert (rows["red"]["added_in"], rows["green"]["added_in"], rows["cyan"]["added_in"]) == (1, 2, 3)
    assert rows["blue"]["first_seen"] == day(0) and rows["blue"]["last_seen"] == day(2)


def test_refresh_on_the_same_input_changes_nothing(spark):
    rows = [("red", [], day(0))] * 3 + [("blue", [], day(0)), ("rare", [], day(0))]
    first = fit(spark, rows, min_count=2, max_size=5).table.cache()
    again = fit(spark, rows, min_count=2, max_size=5, previous=first).table
    columns = ["feature", "value", "id", "count", "first_seen", "last_seen", "added_in"]
    assert sorted(again.select(columns).collect()) == sorted(first.select(columns).collect())


def test_full_feature_sends_new_values_to_oov_without_evicting(spark):
    first = fit(spark, [("red", [], day(0))], max_size=1).table.cache()
    second = fit(spark, [("blue", [], day(1))] * 9, max_size=1, previous=first)
    assert ids(second, "color") == {"red": 2}


def test_integer_feature_values_are_indexed_as_strings(spark):
    df = spark.createDataFrame([(7,), (7,), (3,)], "item long")
    model = VocabularyBuilder(["item"]).fit(df)
    assert ids(model, "item") == {"7": 2, "3": 3}


def test_from_labels_builds_a_model_by_hand(spark):
    model = VocabularyModel.from_labels(spark, {"color": ["red", "blue"]})
    assert ids(model, "color") == {"red": 2, "blue": 3}


@pytest.mark.parametrize(
    "features, message",
    [
        (["colour"], r"missing column\(s\) \['colour'\]"),
        ([], "--features"),
    ],
)
def test_bad_feature_lists_name_the_column_or_flag(spark, features, message):
    with pytest.raises(InputError, match=message):
        VocabularyBuilder(features).fit(events(spark, [("a", [], day(0))]))


def test_wrong_column_type_is_named(spark):
    df = spark.createDataFrame([(1.5,)], "price double")
    with pytest.raises(InputError, match="'price' has type double"):
        VocabularyBuilder(["price"]).fit(df)


def test_empty_window_is_an_error(spark):
    with pytest.raises(InputError, match="no rows in the window"):
        fit(spark, [("a", [], day(0))], start=day(5))


def test_all_null_feature_is_named(spark):
    with pytest.raises(InputError, match=r"\['color'\] have only null values"):
        fit(spark, [(None, ["x"], day(0))], features=["color", "tags"])


def test_time_column_of_wrong_type_is_named(spark):
    df = spark.createDataFrame([("a", "yesterday")], "color string, ts string")
    with pytest.raises(InputError, match="time column 'ts' has type string"):
        VocabularyBuilder(["color"], time_col="ts").fit(df)
