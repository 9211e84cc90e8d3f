"""The raw-row MLflow pyfunc answers bad input in one short line naming the columns; +-inf dense values count as missing.

The model is untrained (weights drawn from a seed) and saved with ``mlflow.pyfunc.save_model``:
what is checked here is the input contract, not the scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SPEC_DENSE, SPEC_SPARSE = ("I1", "I2"), ("C1", "tags")


@pytest.fixture(scope="module")
def pyfunc(tmp_path_factory):
    """The raw-row pyfunc of a tiny untrained DLRM, saved and loaded back through MLflow."""
    import mlflow

    from core.train_config import TrainConfig, VocabLayoutConfig
    from recsys.data.features import FeatureSpec
    from recsys.export import save_exported
    from recsys.modules.ctr import build_model
    from recsys.modules.layouts import make_layout
    from recsys.serving import CTRPyfuncModel, model_signature

    root = tmp_path_factory.mktemp("pyfunc_inputs")
    spec = FeatureSpec(dense=SPEC_DENSE, sparse=SPEC_SPARSE, multi_valued=frozenset({"tags"}))
    cfg = TrainConfig(embedding_dim=4, model={"kind": "dlrm", "dense_arch": [4], "over_arch": [4]})
    layout = make_layout(VocabLayoutConfig(), list(spec.sparse), {"C1": 4, "tags": 4}, 4, cfg.seed)
    state = build_model(cfg, layout, spec.num_dense_inputs, seed=0).state_dict()
    save_exported(str(root / "model.pt"), cfg, layout, spec, state)
    vocab = pa.table({"feature": ["C1", "C1", "tags", "tags"], "value": ["a", "b", "x", "y"], "id": [2, 3, 2, 3]})
    pq.write_table(vocab, root / "vocab.parquet")
    mlflow.pyfunc.save_model(
        str(root / "pyfunc"),
        python_model=CTRPyfuncModel(),
        artifacts={"model": str(root / "model.pt"), "vocab": str(root / "vocab.parquet")},
        signature=model_signature(spec),
        pip_requirements=[],
    )
    return mlflow.pyfunc.load_model(str(root / "pyfunc"))


def rows(n: int = 4, **columns) -> pd.DataFrame:
    base = {"I1": [1.0, 2.0, None, 4.0][:n], "I2": [3.0] * n, "C1": ["a", "b", None, "z"][:n], "tags": [["x"]] * n}
    return pd.DataFrame({**base, **columns})


def _message(pyfunc, frame) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as info:
        pyfunc.predict(frame)
    return info.value.message


def test_missing_columns_are_named_in_one_short_line(pyfunc):
    msg = _message(pyfunc, rows().drop(columns=["I2", "C1"]))
    assert msg == "raw rows lack input column(s) 'I2', 'C1' (the model reads 4 columns)"


def test_a_non_numeric_dense_column_is_named_in_one_short_line(pyfunc):
    msg = _message(pyfunc, rows(I1=["1.0", "x", None, "4"]))
    assert msg == "dense input column(s) 'I1' must be numeric (double), with nulls for missing"


def test_an_infinite_dense_value_scores_like_a_missing_one(pyfunc):
    # given the same rows with I1 = +inf, -inf and null (NaN)
    out = {v: pyfunc.predict(rows(I1=[v] * 4))["probability"].to_numpy() for v in (np.inf, -np.inf, np.nan)}
    # then: not saturated to 1.0, and exactly the missing value's probability
    np.testing.assert_array_equal(out[np.inf], out[np.nan])
    np.testing.assert_array_equal(out[-np.inf], out[np.nan])
    assert (out[np.inf] < 1.0).all()


def test_integer_counts_score_like_the_same_doubles(pyfunc):
    ints = pyfunc.predict(rows(I1=[1, 2, 3, 4], I2=[3, 3, 3, 3]))["probability"].to_numpy()
    floats = pyfunc.predict(rows(I1=[1.0, 2.0, 3.0, 4.0]))["probability"].to_numpy()
    np.testing.assert_array_equal(ints, floats)
