"""Great Expectations gates: each suite passes on good data and stops, naming the problem, on bad data."""

from __future__ import annotations

import json
import math

import pytest

from core.config import ClickSchema, QualityConfig
from core.errors import InputError
from embeddings.quality import DataQualityError, build_suite, gate, id_stability_frame, validate

pytestmark = pytest.mark.slow  # one Great Expectations validation per test (seconds each)

NAN, INF = math.nan, math.inf
CLICKS_DDL = "event_id long, ts timestamp, I1 double, I2 double, C1 string, C2 string, tags array<string>, label int"


SCHEMA = ClickSchema(dense=["I1", "I2"], categorical=["C1", "C2", "tags"])  # the tiny test click log's columns


@pytest.fixture
def quality(tmp_path) -> QualityConfig:
    """Gates with their evidence in tmp."""
    return QualityConfig(output=str(tmp_path / "quality"))


VOCAB_DDL = "feature string, value string, id int"


def probabilities(spark, *values: float):
    """A scores frame: one ``probability`` per value."""
    return spark.createDataFrame([(v,) for v in values], "probability double")


def failed_columns(err: pytest.ExceptionInfo) -> dict[str, set[str]]:
    """{column: {expectation types that failed on it}} from a DataQualityError."""
    out: dict[str, set[str]] = {}
    for f in err.value.failures:
        out.setdefault(f.column, set()).add(f.expectation)
    return out


def clicks(spark, rows):
    import datetime as dt

    ts = dt.datetime(2026, 1, 1)
    return spark.createDataFrame([(r[0], ts, *r[1:]) for r in rows], CLICKS_DDL)


# --------------------------------------------------------------------------- clicks


def test_clicks_suite_passes_on_a_good_click_log(spark, quality):
    # given a well-formed click log (dense blanks are allowed)
    df = clicks(spark, [(1, 0.0, 3.0, "u1", "i1", ["t1"], 0), (2, None, 7.0, "u2", None, [], 1)])
    # when gated
    report = gate(df, "clicks", quality, schema=SCHEMA)
    # then it passes and leaves its evidence
    assert report.success and report.failures == []
    assert json.loads(report.result_path.read_text())["success"] is True
    assert report.docs_index is not None and report.docs_index.name == "index.html"


def test_a_table_without_the_suites_columns_is_one_missing_columns_error_not_a_failure_per_expectation(spark, quality):
    df = clicks(spark, [(1, 1.0, 3.0, "u1", "i1", ["t1"], 1)]).drop("C2", "label")
    with pytest.raises(InputError) as err:
        gate(df, "clicks", quality, schema=SCHEMA)
    assert not isinstance(err.value, DataQualityError)
    assert str(err.value).startswith("suite 'clicks': missing column(s) label, C2; the table has event_id")
    # a CSV read without its header row: its first data row became the column names
    headless = df.toDF(*[str(i) for i in range(len(df.columns))])
    with pytest.raises(InputError, match=r"missing column\(s\) event_id, .* \(a CSV without its header row\?\)"):
        gate(headless, "clicks", quality, schema=SCHEMA)


def test_clicks_suite_stops_on_bad_labels_ids_dense_values_schema_and_row_count(spark, quality):
    # given a click log with a label 2, a null id, a negative, a NaN and an infinite dense
    # value, and fewer rows than the configured minimum
    df = clicks(spark, [(1, -1.0, 3.0, "u1", "i1", ["t1"], 2), (None, NAN, INF, "u2", "i2", [], 0)])
    cfg = quality.model_copy(update={"min_rows": 3})
    # when gated
    with pytest.raises(DataQualityError) as err:
        gate(df, "clicks", cfg, schema=SCHEMA)
    # then the error names the suite and every broken column with its expectation
    cols = failed_columns(err)
    assert "expect_column_values_to_be_in_set" in cols["label"]
    assert "expect_column_values_to_not_be_null" in cols["event_id"]
    assert "expect_column_values_to_be_between" in cols["I1"]
    assert "expect_column_values_to_be_between" in cols["I2"]
    assert "expect_table_row_count_to_be_between" in cols[None]
    message = str(err.value)
    assert message.startswith("data quality suite 'clicks' failed")
    assert "label: expect_column_values_to_be_in_set (value_set=[0, 1]): 1 of 2 rows unexpected, e.g. [2]" in message
    assert isinstance(err.value, ValueError) and isinstance(err.value, InputError)
    assert err.value.suite == "clicks"


# --------------------------------------------------------------------------- vocabulary


VOCAB_DDL = "feature string, value string, id int"


def test_vocabulary_suite_passes_on_unique_ids_from_2(spark, quality):
    vocab = spark.createDataFrame([("C1", "u1", 2), ("C1", "u2", 3), ("C2", "u1", 2)], VOCAB_DDL)
    assert gate(vocab, "vocabulary", quality).success


def test_vocabulary_suite_stops_on_duplicate_ids_values_and_reserved_ids(spark, quality):
    # given a vocabulary where one id has two values, one value two ids, and a reserved id is used
    vocab = spark.createDataFrame(
        [("C1", "u1", 2), ("C1", "u2", 2), ("C2", "x", 3), ("C2", "x", 4), ("C2", "y", 1)], VOCAB_DDL
    )
    # when gated, then all three problems are named
    with pytest.raises(DataQualityError) as err:
        gate(vocab, "vocabulary", quality)
    cols = failed_columns(err)
    assert "expect_compound_columns_to_be_unique" in cols["feature, id"]
    assert "expect_compound_columns_to_be_unique" in cols["feature, value"]
    assert "expect_column_values_to_be_between" in cols["id"]


def test_vocabulary_ids_pass_when_old_values_keep_their_ids_and_new_ones_are_appended(spark, quality):
    old = spark.createDataFrame([("C1", "a", 2), ("C1", "b", 3)], VOCAB_DDL)
    new = spark.createDataFrame([("C1", "a", 2), ("C1", "b", 3), ("C1", "c", 4), ("C2", "a", 2)], VOCAB_DDL)
    assert gate(new, "vocabulary_ids", quality, previous=old).success


def test_vocabulary_ids_stop_on_a_moved_id_a_reused_id_and_a_dropped_value(spark, quality):
    # given a refresh that moved 'b' to id 4, gave 'b's old id 3 to the new 'c', and lost 'd'
    old = spark.createDataFrame([("C1", "a", 2), ("C1", "b", 3), ("C1", "d", 5)], VOCAB_DDL)
    new = spark.createDataFrame([("C1", "a", 2), ("C1", "b", 4), ("C1", "c", 3)], VOCAB_DDL)
    # when gated, then each kind of breakage is quoted
    with pytest.raises(DataQualityError, match="id_status") as err:
        gate(new, "vocabulary_ids", quality, previous=old)
    message = str(err.value)
    assert "3 of 4 rows unexpected" in message
    assert all(s in message for s in ('"changed"', '"reused"', '"dropped"'))


def test_id_stability_frame_names_what_happened_to_each_value(spark):
    old = spark.createDataFrame([("C1", "a", 2), ("C1", "b", 3), ("C1", "d", 5)], VOCAB_DDL)
    new = spark.createDataFrame([("C1", "a", 2), ("C1", "b", 4), ("C1", "c", 3), ("C1", "e", 6)], VOCAB_DDL)
    statuses = {r["value"]: r["id_status"] for r in id_stability_frame(old, new).collect()}
    assert statuses == {"a": "kept", "b": "changed", "c": "reused", "d": "dropped", "e": "new"}


# --------------------------------------------------------------------------- edges


EDGES_DDL = "src string, dst string, weight double"


def test_edges_suite_passes_on_positive_finite_weights(spark, quality):
    edges = spark.createDataFrame([("u1", "i1", 1.0), ("u2", "i1", 0.5)], EDGES_DDL)
    assert gate(edges, "edges", quality).success


def test_edges_suite_stops_on_null_endpoints_and_bad_weights(spark, quality):
    # given a null endpoint and zero, negative, NaN and infinite weights
    edges = spark.createDataFrame(
        [("u1", None, 1.0), ("u1", "i1", 0.0), ("u2", "i1", -2.0), ("u3", "i3", NAN), ("u4", "i4", INF)], EDGES_DDL
    )
    with pytest.raises(DataQualityError) as err:
        gate(edges, "edges", quality)
    cols = failed_columns(err)
    assert cols["dst"] == {"expect_column_values_to_not_be_null"}
    assert cols["weight"] == {"expect_column_values_to_be_between"}
    assert "4 of 5 rows unexpected" in str(err.value)


# --------------------------------------------------------------------------- embeddings


EMB_DDL = "node string, embedding array<float>"


def test_embeddings_suite_passes_on_one_finite_vector_per_node(spark, quality):
    emb = spark.createDataFrame([("u1", [0.6, 0.8]), ("i1", [1.0, 0.0])], EMB_DDL)
    assert gate(emb, "embeddings", quality, dim=2, min_norm=0.5, max_norm=1.5).success


def test_embeddings_suite_stops_on_duplicates_wrong_dim_nonfinite_values_and_norms(spark, quality):
    # given a node twice, a 3-d vector, a NaN entry, a null vector and a zero vector
    emb = spark.createDataFrame(
        [
            ("u1", [0.6, 0.8]),
            ("u1", [0.6, 0.8]),
            ("i1", [1.0, 0.0, 0.0]),
            ("i2", [NAN, 1.0]),
            ("i3", None),
            ("i4", [0.0, 0.0]),
        ],
        EMB_DDL,
    )
    # when gated for 2-d vectors with norms in [0.5, 1.5]
    with pytest.raises(DataQualityError) as err:
        gate(emb, "embeddings", quality, dim=2, min_norm=0.5, max_norm=1.5)
    # then each problem is named on its derived column
    cols = failed_columns(err)
    assert cols["node"] == {"expect_column_values_to_be_unique"}
    assert cols["embedding_dim"] == {"expect_column_values_to_not_be_null", "expect_column_values_to_be_between"}
    assert cols["embedding_nonfinite"] == {"expect_column_values_to_be_between"}
    assert cols["embedding_norm"] == {"expect_column_values_to_be_between"}
    assert "embedding_dim: expect_column_values_to_be_between (min_value=2.0 max_value=2.0): 1 of 6" in str(err.value)


def test_embeddings_suite_accepts_arrays_and_spark_ml_vectors(spark, quality):
    from pyspark.ml.linalg import Vectors

    # given the same embeddings as arrays and as Spark ML dense vectors
    as_arrays = spark.createDataFrame([("a", [3.0, 4.0]), ("b", [0.0, 1.0])], "node string, embedding array<double>")
    as_vectors = spark.createDataFrame(
        [("a", Vectors.dense([3.0, 4.0])), ("b", Vectors.dense([0.0, 1.0]))], ["node", "embedding"]
    )
    # then both pass with norms in [1, 5] and both fail with norms in [1, 4]
    for frame in (as_arrays, as_vectors):
        assert gate(frame, "embeddings", quality, dim=2, min_norm=1.0, max_norm=5.0).success
        assert not validate(frame, "embeddings", quality, dim=2, min_norm=1.0, max_norm=4.0).success


# --------------------------------------------------------------------------- scores


def test_scores_suite_passes_on_probabilities(spark, quality):
    scores = spark.createDataFrame([(1, 0.0), (2, 0.5), (3, 1.0)], "event_id long, probability double")
    assert gate(scores, "scores", quality).success


def test_scores_suite_stops_on_values_outside_0_1_and_nulls(spark, quality):
    scores = spark.createDataFrame([(1, 1.5), (2, None), (3, -0.1), (4, NAN)], "event_id long, probability double")
    with pytest.raises(DataQualityError) as err:
        gate(scores, "scores", quality)
    assert failed_columns(err)["probability"] == {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
    }
    assert "3 of 4 rows unexpected" in str(err.value)


# --------------------------------------------------------------------------- API


def test_a_failed_gate_keeps_its_evidence_for_mlflow(spark, quality):
    # given bad scores
    with pytest.raises(DataQualityError) as err:
        gate(probabilities(spark, 2.0), "scores", quality)
    # then the GX result and the Data Docs are in <output>/scores/, and the message points there
    report = err.value.report
    assert report.folder.name == "scores" and report.folder.parent.name == "quality"
    assert json.loads(report.result_path.read_text())["success"] is False
    assert (report.folder / "docs" / "index.html").exists()
    assert str(report.result_path) in str(err.value)


def test_disabled_gates_check_nothing(spark, quality):
    off = quality.model_copy(update={"enabled": False})
    assert gate(probabilities(spark, 2.0), "scores", off) is None


def test_validate_reports_without_raising(spark, quality):
    report = validate(probabilities(spark, 2.0), "scores", quality)
    assert not report.success and report.failures[0].column == "probability"


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("nope", {}, "unknown data quality suite 'nope'"),
        ("scores", {"dim": 3}, "suite 'scores' takes no parameter(s) ['dim']"),
        ("embeddings", {}, "dim"),
    ],
)
def test_bad_suite_requests_are_errors_naming_the_problem(name, params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        build_suite(name, **params)


def test_vocabulary_ids_need_the_previous_version(spark, quality):
    new = spark.createDataFrame([("C1", "a", 2)], VOCAB_DDL)
    with pytest.raises(ValueError, match="previous="):
        validate(new, "vocabulary_ids", quality)


def test_embeddings_without_their_vector_column_are_an_input_error(spark, quality):
    with pytest.raises(InputError, match=r"embeddings: missing column\(s\) \['embedding'\]"):
        gate(spark.createDataFrame([("a",)], "node string"), "embeddings", quality, dim=2)


def test_a_ready_suite_can_be_validated_again(spark, quality):
    # given one suite object, built once (e.g. by a job that gates several batches)
    suite = build_suite("scores", quality)
    # when it validates two frames, then each gets its own verdict
    assert validate(probabilities(spark, 0.2), suite, quality).success
    assert not validate(probabilities(spark, 1.2), suite, quality).success
