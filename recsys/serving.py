"""Score RAW click-log rows in one process: vocabularies + value hashes (as the encode job) -> exported model.

The encode job (``embeddings/encode.py``, Spark) turns a raw categorical value into an id with the
vocabulary table (null -> 0, value not in the vocabulary -> the OOV id 1) and into ``<f>_hash`` =
Spark's ``xxhash64(value as string)``. This module does the same without Spark, so the MLflow model
(:class:`CTRPyfuncModel`) takes the raw columns (dense ``I*`` doubles, categorical ``C*`` strings,
``array<string>`` tags) and returns click probabilities equal to the trainer's exported model on the
encoded rows. It must not import pyspark: it runs in Spark's Python workers and in plain Python.

Symbols: ``N`` rows, ``U`` distinct values of one feature in a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.encoding import HASH_SUFFIX, MISSING_ID, OOV_ID, spark_xxhash64
from core.errors import InputError
from recsys.data.features import FeatureSpec

PROBABILITY_COL = "probability"
SHOWN_COLUMNS = 5  # an error names at most this many columns, then says how many more


def _few(names: Sequence[str]) -> str:
    """``'a', 'b' and 3 more``: the first :data:`SHOWN_COLUMNS` names of a list, for a one-line error."""
    shown = ", ".join(repr(n) for n in names[:SHOWN_COLUMNS])
    return shown + (f" and {len(names) - SHOWN_COLUMNS} more" if len(names) > SHOWN_COLUMNS else "")


def _as_float_array(values) -> pa.Array | None:
    """A raw dense column as float64 (nulls kept), or None when it is not numeric (strings, bools, objects)."""
    try:
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_null(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return arr.cast(pa.float64())
    return None


def _as_string_array(values) -> pa.Array:
    """An Arrow string array of a raw scalar column (Arrow's int -> string cast equals Spark's: '123')."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type) or pa.types.is_dictionary(arr.type):
        return arr.cast(pa.string())
    return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())


def _as_list_array(values) -> pa.Array:
    """An Arrow list<string> array of a raw array column (lists, numpy arrays or None per row)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    else:
        rows = [None if v is None or (isinstance(v, float) and np.isnan(v)) else list(v) for v in values]
        arr = pa.array(rows, type=pa.list_(pa.string()))
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.list_(pa.string()))
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise ValueError(f"expected an array column, got {arr.type}")
    return arr if arr.type == pa.list_(pa.string()) else arr.cast(pa.list_(pa.string()))


@dataclass(frozen=True)
class FeatureVocabulary:
    """One feature's vocabulary: value -> id (ids >= 2; 0 missing and 1 OOV are reserved)."""

    index: pd.Index  # (V,) the values
    ids: np.ndarray  # (V,) int32 their ids

    def encode(self, values: pa.Array, with_hash: bool) -> tuple[pa.Array, pa.Array | None]:
        """Ids and raw-value hashes of a string array, as the encode job computes them.

        Args:
            values: (N,) strings, nulls allowed.
        Returns:
            ((N,) int32 ids: null -> 0, unknown -> 1; (N,) int64 hashes, null where the value is null, or None).
        """
        n = len(values)
        null = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        enc = pc.dictionary_encode(values)
        uniq = enc.dictionary.to_pylist()  # U distinct non-null values
        if not uniq:
            ids = np.zeros(n, np.int32)
            return pa.array(ids), (pa.nulls(n, pa.int64()) if with_hash else None)
        pos = self.index.get_indexer(uniq)  # (U,) -1 where not in the vocabulary
        uniq_ids = np.where(pos >= 0, self.ids[np.maximum(pos, 0)], OOV_ID).astype(np.int32)
        idx = enc.indices.fill_null(0).to_numpy(zero_copy_only=False)  # (N,)
        ids = np.where(null, MISSING_ID, uniq_ids[idx]).astype(np.int32)
        hashes = None
        if with_hash:
            hashes = pa.array(spark_xxhash64(uniq)[idx], pa.int64(), mask=null)
        return pa.array(ids), hashes


class RawFeatureEncoder:
    """Raw click-log rows -> the encoded columns the exported model reads (ids, hashes, dense as is).

    Build with :meth:`from_table` (the vocabulary table's ``feature, value, id`` columns) and the
    model's :class:`FeatureSpec`; :meth:`encode` maps a batch. Unseen values get the OOV id 1 and
    nulls 0, as the encode job's ``handle_invalid="keep"``.
    """

    def __init__(self, spec: FeatureSpec, vocabularies: dict[str, FeatureVocabulary], with_hash: bool):
        self.spec = spec
        self.vocabularies = vocabularies
        self.with_hash = with_hash

    @classmethod
    def from_table(cls, vocab: pa.Table | pd.DataFrame, spec: FeatureSpec, with_hash: bool) -> "RawFeatureEncoder":
        df = vocab.to_pandas() if isinstance(vocab, pa.Table) else vocab
        missing = {"feature", "value", "id"} - set(df.columns)
        if missing:
            raise ValueError(f"vocabulary table lacks column(s) {sorted(missing)}")
        vocabs = {}
        for f in spec.sparse:
            part = df[df["feature"] == f]
            vocabs[f] = FeatureVocabulary(
                pd.Index(part["value"].astype(str).to_numpy()), part["id"].to_numpy().astype(np.int32)
            )
        return cls(spec, vocabs, with_hash)

    @property
    def input_columns(self) -> list[str]:
        """The raw columns a batch must have: dense features, then sparse features (model order)."""
        return [*self.spec.dense, *self.spec.sparse]

    def encode(self, raw: pa.Table | pd.DataFrame) -> pa.Table:
        """Encode a batch of raw rows (N rows) into an Arrow table in the encode job's column layout.

        Dense values pass as float64; +-inf later counts as missing, like NaN (``dense_transform``).

        Raises:
            InputError: one line naming the (first few) input columns that are absent, or dense
                columns that are not numeric.
        """
        get = (lambda c: raw.column(c)) if isinstance(raw, pa.Table) else (lambda c: raw[c])
        names = raw.column_names if isinstance(raw, pa.Table) else list(raw.columns)
        absent = [c for c in self.input_columns if c not in names]
        if absent:
            raise InputError(
                f"raw rows lack input column(s) {_few(absent)} (the model reads {len(self.input_columns)} columns)"
            )
        cols: dict[str, pa.Array] = {}
        for c in self.spec.dense:
            cols[c] = _as_float_array(get(c))
        wrong = [c for c in self.spec.dense if cols[c] is None]
        if wrong:
            raise InputError(f"dense input column(s) {_few(wrong)} must be numeric (double), with nulls for missing")
        for f in self.spec.sparse:
            voc = self.vocabularies[f]
            if f in self.spec.multi_valued:
                try:
                    lists = _as_list_array(get(f))
                except (ValueError, TypeError, pa.ArrowException) as exc:
                    raise InputError(f"input column {f!r} must hold arrays of strings ({exc})") from None
                lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32)
                offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
                ids, hashes = voc.encode(pc.list_flatten(lists), self.with_hash)
                mask = lists.is_null()
                cols[f] = pa.ListArray.from_arrays(offsets, ids, mask=mask)
                if hashes is not None:
                    cols[f + HASH_SUFFIX] = pa.ListArray.from_arrays(offsets, hashes, mask=mask)
            else:
                ids, hashes = voc.encode(_as_string_array(get(f)), self.with_hash)
                cols[f] = ids
                if hashes is not None:
                    cols[f + HASH_SUFFIX] = hashes
        return pa.table(cols)


class CTRScorer:
    """The exported TorchRec model behind a :class:`RawFeatureEncoder`: raw rows -> click probabilities."""

    def __init__(self, model, encoder: RawFeatureEncoder):
        self.model = model
        self.encoder = encoder

    @classmethod
    def from_files(cls, model_path: str, vocab_path: str) -> "CTRScorer":
        """Load the exported model file and the vocabulary parquet (``feature, value, id``)."""
        import pyarrow.parquet as pq

        from recsys.export import load_exported

        model = load_exported(model_path)
        encoder = RawFeatureEncoder.from_table(pq.read_table(vocab_path), model.spec, model.layout.uses_hash)
        return cls(model, encoder)

    def predict(self, raw: pa.Table | pd.DataFrame, batch_size: int = 8192) -> np.ndarray:
        """(N,) float32 click probabilities of raw rows, in row order."""
        return self.model.predict(self.encoder.encode(raw), batch_size=batch_size)


def model_signature(spec: FeatureSpec):
    """MLflow signature of the raw-row model: dense numbers, categorical strings, array<string>; -> probability.

    Dense columns are typed ``Any`` and every column is marked optional so that the model's own check
    answers a missing or non-numeric column in one line naming it: MLflow's check would print the
    whole input frame (and refuse integer counts). The model still needs every column.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Schema

    inputs = [ColSpec(AnyType(), c, required=False) for c in spec.dense]
    # Array columns are array<any>, not array<string>: MLflow 3.17's check of array<string> rejects a null
    # array and turns a null element into a string fragment ('n'); the encoder casts elements to string.
    inputs += [
        ColSpec(Array(AnyType()), f, required=False)
        if f in spec.multi_valued
        else ColSpec(DataType.string, f, required=False)
        for f in spec.sparse
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec(DataType.double, PROBABILITY_COL)]))


def raw_frame(table: pa.Table, columns: Sequence[str]) -> pd.DataFrame:
    """Raw rows as the pandas frame the pyfunc takes: array cells as Python lists, nulls as None/NaN."""
    df = table.select(list(columns)).to_pandas()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = [v.tolist() if isinstance(v, np.ndarray) else v for v in df[c]]
    return df


try:  # the pyfunc wrapper needs mlflow; the encoder above does not
    import mlflow.pyfunc as _pyfunc

    class CTRPyfuncModel(_pyfunc.PythonModel):
        """MLflow pyfunc: artifacts ``model`` (exported .pt file) and ``vocab`` (parquet ``feature, value, id``).

        ``predict`` takes a pandas frame of raw rows (the signature's columns) and returns a frame
        with one ``probability`` column (float64, in row order). A missing input column or a
        non-numeric dense one is an ``MlflowException`` of one line naming the columns; +-inf dense
        values score like missing ones (NaN/null).
        """

        def load_context(self, context):
            self.scorer_ = CTRScorer.from_files(context.artifacts["model"], context.artifacts["vocab"])

        # No type hints on predict: MLflow 3 would derive a second, hint-based schema from them.
        def predict(self, context, model_input, params=None):
            from mlflow.exceptions import MlflowException

            try:
                probs = self.scorer_.predict(model_input)
            except InputError as exc:
                raise MlflowException.invalid_parameter_value(str(exc)) from None
            return pd.DataFrame({PROBABILITY_COL: probs.astype(np.float64)})
except ImportError:  # pragma: no cover - mlflow is part of the pinned environment
    CTRPyfuncModel = None  # type: ignore[assignment,misc]
