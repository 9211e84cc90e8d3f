"""The raw-row MLflow model: Spark-equal hashing, encode-equal ids, and scores equal to the trainer's model."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import train

from core.encoding import spark_xxhash64
from recsys.data.features import FeatureSpec
from recsys.serving import RawFeatureEncoder

pytestmark = pytest.mark.slow  # trains models and scores them through MLflow


def _register(tmp_path, export_path: str, metrics: dict, tables: dict, name: str):
    import mlflow

    from core.config import MlflowConfig
    from core.tracking import mlflow_run
    from recsys.registry import register_and_promote

    cfg = MlflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="serving-tests")
    with mlflow_run(cfg, "promote"):
        decision = register_and_promote(
            export_path,
            metrics,
            raw_path=tables["raw"],
            raw_version=None,
            vocab_path=tables["vocab"],
            vocab_version=None,
            registered_model=name,
            tolerance=0.002,
        )
    return mlflow.get_tracking_uri(), decision


def _read(path: str) -> pa.Table:
    from deltalake import DeltaTable

    return DeltaTable(path).to_pyarrow_table().sort_by("event_id")


def test_value_hash_equals_spark_xxhash64_including_non_ascii(spark):
    # given
    values = ["", "a", "u123", "123", "ü-é", "日本語", "🙂 emoji", "x" * 100]
    df = spark.createDataFrame([(v,) for v in values], "v string")
    # when
    expected = [r[0] for r in df.selectExpr("xxhash64(v)").collect()]
    # then
    assert spark_xxhash64(values).tolist() == expected


def test_unseen_value_maps_to_oov_and_null_to_missing():
    # given: a vocabulary with C1 {'a': 2, 'b': 3} and tags {'x': 2}
    vocab = pa.table({"feature": ["C1", "C1", "tags"], "value": ["a", "b", "x"], "id": pa.array([2, 3, 2], pa.int32())})
    spec = FeatureSpec(dense=("I1",), sparse=("C1", "tags"), multi_valued=frozenset({"tags"}))
    raw = pa.table(
        {
            "I1": [1.0, None, 3.0],
            "C1": ["b", "zzz", None],
            "tags": pa.array([["x", "new", None], None, []], pa.list_(pa.string())),
        }
    )
    # when
    out = RawFeatureEncoder.from_table(vocab, spec, with_hash=True).encode(raw)
    # then
    assert out.column("C1").to_pylist() == [3, 1, 0]
    assert out.column("tags").to_pylist() == [[2, 1, 0], None, []]
    assert out.column("C1_hash").to_pylist() == [spark_xxhash64(["b"])[0], spark_xxhash64(["zzz"])[0], None]
    assert out.column("tags_hash").to_pylist()[0][2] is None


def test_encoder_matches_the_spark_encode_job_on_every_row(pipeline_tables, trained_vocab):
    # given: the raw log and what the Spark encode job made of it
    from recsys.export import load_exported

    raw, encoded = _read(pipeline_tables["raw"]), _read(pipeline_tables["encoded"])
    model = load_exported(trained_vocab[1])
    vocab = _read_vocab(pipeline_tables["vocab"])
    # when
    mine = RawFeatureEncoder.from_table(vocab, model.spec, with_hash=True).encode(raw)
    # then: same ids, same hashes (OOV, nulls, null array elements, non-ASCII values included)
    for col in ["C1", "C2", "tags", "C1_hash", "C2_hash", "tags_hash"]:
        assert mine.column(col).to_pylist() == encoded.column(col).to_pylist(), col
    assert 1 in encoded.column("C1").to_pylist() and 0 in encoded.column("C1").to_pylist()


def _read_vocab(path: str) -> pa.Table:
    from deltalake import DeltaTable

    return DeltaTable(path).to_pyarrow_table(columns=["feature", "value", "id"])


@pytest.mark.parametrize("layout", ["vocab", "hashed"])
def test_champion_pyfunc_scores_raw_rows_like_the_trainers_model(
    layout, pipeline_tables, trained_vocab, tmp_path, tmp_path_factory
):
    # given: a trained model, registered (so it is champion), and the raw + encoded rows
    import mlflow

    from recsys.export import load_exported
    from recsys.serving import raw_frame

    if layout == "vocab":
        metrics, export = trained_vocab
    else:
        out = tmp_path_factory.mktemp("ctr_hashed")
        metrics, export = (
            train(pipeline_tables, out, {"kind": "hashed", "total_rows": 40}, epochs=1),
            str(out / "model.pt"),
        )
    _, decision = _register(tmp_path, export, metrics, pipeline_tables, name=f"ctr_{layout}")
    raw, encoded = _read(pipeline_tables["raw"]), _read(pipeline_tables["encoded"])
    # when
    model = mlflow.pyfunc.load_model(f"models:/ctr_{layout}@champion")
    names = model.metadata.get_input_schema().input_names()
    got = model.predict(raw_frame(raw, names))["probability"].to_numpy()
    expected = load_exported(export).predict(encoded)
    # then
    assert names == ["I1", "I2", "C1", "C2", "tags"]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    # the registry's test AUC (raw test rows through the pyfunc) is the trainer's own test AUC
    assert decision.promoted and decision.challenger_auc == pytest.approx(metrics.test_auc, abs=1e-6)
    assert decision.test_rows == metrics.test_rows
    info = mlflow.models.get_model_info(f"models:/ctr_{layout}@champion")
    assert info.saved_input_example_info is not None
