"""Great Expectations (1.x) gates: one suite per table the pipeline reads or publishes.

A job calls :func:`gate` after each read and before each publish; a failing suite raises
:class:`DataQualityError` (an :class:`~core.errors.InputError`, so ``core.cli.run`` exits with code 2)
naming the suite, the failed expectations and their columns, before anything is written. Every
validation leaves its evidence in ``<quality.output>/<suite>/``: ``result.json`` (the GX
validation result) and ``docs/index.html`` (Data Docs), ready for
``core.tracking.log_quality_results``.

Suites (builders take column names and bounds; :data:`SUITES` maps each name to its builder and
to the :class:`~core.config.QualityConfig` keys that fill it):

    clicks          raw click log: columns present, id/label/dense types, label in {0, 1},
                    non-null (and unique) event ids, dense values in [dense_min, dense_max] and
                    finite, row count in [min_rows, max_rows]
    vocabulary      (feature, value, id): non-null, (feature, id) and (feature, value) unique,
                    ids >= vocab_min_id (0 and 1 are reserved)
    vocabulary_ids  previous vs new vocabulary: every old (feature, value) keeps its id and no
                    id is given to another value (a Spark join computes an ``id_status``
                    per value; GX checks it is in {kept, new})
    edges           non-null endpoints, weights > 0 and finite
    embeddings      one row per node, every vector of length ``dim`` with finite entries and an
                    L2 norm in [min_norm, max_norm] (Spark computes per-row length,
                    non-finite count and norm; GX checks them)
    scores          probabilities non-null and in [0, 1]
    candidates      (query, rank, candidate, score): non-null ids, ranks in [1, k], finite
                    scores, at least min_rows rows

Spark DataFrames are validated in place through GX's Spark data source: metrics are Spark
aggregations, and only the summary (counts, up to ``quality.examples`` unexpected values)
reaches the driver.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.config import ClickSchema, QualityConfig
from core.errors import InputError
from embeddings.io import unreadable_file

log = logging.getLogger(__name__)

FLOAT_MAX = sys.float_info.max  # an upper bound that NaN and +inf fail (Spark orders NaN above +inf)

INTEGER_TYPES = [
    "LongType",
    "IntegerType",
    "ShortType",
    "ByteType",
    "int64",
    "int32",
    "int16",
    "int8",
    "Int64",
    "Int32",
    "Int16",
    "Int8",
]
NUMERIC_TYPES = INTEGER_TYPES + ["DoubleType", "FloatType", "DecimalType", "float64", "float32", "Float64", "Float32"]
STRING_TYPES = ["StringType", "object", "string", "str"]

ID_STATUS_OK = ("kept", "new")
_SITE = "local_site"  # the data docs site every ephemeral GX context starts with


class DataQualityError(InputError):
    """A Great Expectations suite failed; names the suite, the failed expectations and columns."""

    def __init__(self, report: "QualityReport"):
        self.report = report
        self.suite = report.suite
        self.failures = report.failures
        super().__init__(report.summary())


@dataclass(frozen=True)
class Failure:
    """One failed expectation: its type, the column(s) it checked and what was seen."""

    expectation: str
    column: str | None
    detail: str

    def __str__(self) -> str:
        where = f"{self.column}: " if self.column else ""
        return f"{where}{self.expectation}{self.detail}"


@dataclass(frozen=True)
class QualityReport:
    """Outcome of one validation: success, failures, and where the evidence was written."""

    suite: str
    success: bool
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    folder: Path | None = None
    result_path: Path | None = None
    docs_index: Path | None = None

    def summary(self) -> str:
        if self.success:
            return f"data quality suite '{self.suite}' passed ({self.evaluated} expectations)"
        lines = [f"data quality suite '{self.suite}' failed ({len(self.failures)} of {self.evaluated} expectations):"]
        lines += [f"  - {f}" for f in self.failures]
        if self.result_path:
            lines.append(f"  results: {self.result_path}")
        if self.docs_index:
            lines.append(f"  data docs: {self.docs_index}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- suites


def _suite(name: str, expectations: list) -> Any:
    return gx.ExpectationSuite(name=name, expectations=expectations)


def _finite_max(value: float | None) -> float:
    return FLOAT_MAX if value is None else value


def clicks_suite(
    *,
    id_col: str = "event_id",
    label_col: str = "label",
    time_col: str | None = "ts",
    dense_cols: list[str] = (),
    categorical_cols: list[str] = (),
    min_rows: int = 1,
    max_rows: int | None = None,
    dense_min: float | None = 0.0,
    dense_max: float | None = None,
    unique_ids: bool = True,
    name: str = "clicks",
):
    """Raw click log: schema, label in {0, 1}, non-null ids, finite dense values in range, row count."""
    columns = [id_col, label_col, *([time_col] if time_col else []), *dense_cols, *categorical_cols]
    ex: list = [gxe.ExpectColumnToExist(column=c) for c in columns]
    ex += [
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=max_rows),
        gxe.ExpectColumnValuesToBeInTypeList(column=id_col, type_list=INTEGER_TYPES),
        gxe.ExpectColumnValuesToNotBeNull(column=id_col),
        gxe.ExpectColumnValuesToBeInTypeList(column=label_col, type_list=INTEGER_TYPES),
        gxe.ExpectColumnValuesToNotBeNull(column=label_col),
        gxe.ExpectColumnValuesToBeInSet(column=label_col, value_set=[0, 1]),
    ]
    if unique_ids:
        ex.append(gxe.ExpectColumnValuesToBeUnique(column=id_col))
    for c in dense_cols:  # nulls are allowed (Criteo's blanks); NaN/inf fail the finite upper bound
        ex.append(gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=NUMERIC_TYPES))
        ex.append(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=dense_min, max_value=_finite_max(dense_max)))
    return _suite(name, ex)


def vocabulary_suite(
    *,
    feature_col: str = "feature",
    value_col: str = "value",
    id_col: str = "id",
    min_id: int = 2,
    name: str = "vocabulary",
):
    """Vocabulary table: unique (feature, id) and (feature, value), ids >= ``min_id``."""
    ex: list = [gxe.ExpectColumnToExist(column=c) for c in (feature_col, value_col, id_col)]
    ex += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (feature_col, value_col, id_col)]
    ex += [
        gxe.ExpectColumnValuesToBeInTypeList(column=id_col, type_list=INTEGER_TYPES),
        gxe.ExpectColumnValuesToBeBetween(column=id_col, min_value=min_id),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=[feature_col, id_col]),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=[feature_col, value_col]),
    ]
    return _suite(name, ex)


def vocabulary_ids_suite(*, allow_dropped: bool = False, name: str = "vocabulary_ids"):
    """Previous vs new vocabulary (the frame of :func:`id_stability_frame`): ids never move or get reused."""
    allowed = [*ID_STATUS_OK, *(["dropped"] if allow_dropped else [])]
    return _suite(
        name,
        [
            gxe.ExpectColumnToExist(column="id_status"),
            gxe.ExpectColumnValuesToBeInSet(column="id_status", value_set=allowed),
        ],
    )


def edges_suite(
    *,
    src_col: str = "src",
    dst_col: str = "dst",
    weight_col: str | None = "weight",
    min_rows: int = 1,
    name: str = "edges",
):
    """Edge table: non-null endpoints, positive finite weights, at least ``min_rows`` edges."""
    ex: list = [gxe.ExpectColumnToExist(column=c) for c in (src_col, dst_col)]
    ex += [
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=None),
        gxe.ExpectColumnValuesToNotBeNull(column=src_col),
        gxe.ExpectColumnValuesToNotBeNull(column=dst_col),
    ]
    if weight_col:
        ex += [
            gxe.ExpectColumnToExist(column=weight_col),
            gxe.ExpectColumnValuesToBeInTypeList(column=weight_col, type_list=NUMERIC_TYPES),
            gxe.ExpectColumnValuesToNotBeNull(column=weight_col),
            gxe.ExpectColumnValuesToBeBetween(column=weight_col, min_value=0.0, strict_min=True, max_value=FLOAT_MAX),
        ]
    return _suite(name, ex)


def embeddings_suite(
    *,
    dim: int,
    node_col: str = "node",
    embedding_col: str = "embedding",
    min_norm: float = 0.0,
    max_norm: float | None = None,
    min_rows: int = 1,
    name: str = "embeddings",
):
    """Node embeddings (the frame of :func:`embedding_stats_frame`): one row per node, (D,) finite vectors, norms in range."""
    dim_col, bad_col, norm_col = _stat_cols(embedding_col)
    ex: list = [gxe.ExpectColumnToExist(column=c) for c in (node_col, dim_col, bad_col, norm_col)]
    ex += [
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=None),
        gxe.ExpectColumnValuesToNotBeNull(column=node_col),
        gxe.ExpectColumnValuesToBeUnique(column=node_col),
        gxe.ExpectColumnValuesToNotBeNull(column=dim_col),  # null vector
        gxe.ExpectColumnValuesToBeBetween(column=dim_col, min_value=dim, max_value=dim),
        gxe.ExpectColumnValuesToBeBetween(column=bad_col, min_value=0, max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column=norm_col, min_value=min_norm, max_value=_finite_max(max_norm)),
    ]
    return _suite(name, ex)


def scores_suite(*, probability_col: str = "probability", min_rows: int = 1, name: str = "scores"):
    """Scoring output: one non-null probability in [0, 1] per row."""
    return _suite(
        name,
        [
            gxe.ExpectColumnToExist(column=probability_col),
            gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=None),
            gxe.ExpectColumnValuesToNotBeNull(column=probability_col),
            gxe.ExpectColumnValuesToBeBetween(column=probability_col, min_value=0.0, max_value=1.0),
        ],
    )


def candidates_suite(
    *,
    k: int,
    query_col: str = "query",
    rank_col: str = "rank",
    candidate_col: str = "candidate",
    score_col: str = "score",
    min_rows: int = 1,
    name: str = "candidates",
):
    """Retrieved candidates: non-null query and candidate ids, integer ranks in [1, k], finite scores."""
    ex: list = [gxe.ExpectColumnToExist(column=c) for c in (query_col, rank_col, candidate_col, score_col)]
    ex += [
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=None),
        gxe.ExpectColumnValuesToNotBeNull(column=query_col),
        gxe.ExpectColumnValuesToNotBeNull(column=candidate_col),
        gxe.ExpectColumnValuesToBeInTypeList(column=rank_col, type_list=INTEGER_TYPES),
        gxe.ExpectColumnValuesToNotBeNull(column=rank_col),
        gxe.ExpectColumnValuesToBeBetween(column=rank_col, min_value=1, max_value=k),
        gxe.ExpectColumnValuesToBeInTypeList(column=score_col, type_list=NUMERIC_TYPES),
        gxe.ExpectColumnValuesToNotBeNull(column=score_col),
        gxe.ExpectColumnValuesToBeBetween(column=score_col, min_value=-FLOAT_MAX, max_value=FLOAT_MAX),  # NaN, inf
    ]
    return _suite(name, ex)


# --------------------------------------------------------------------------- derived frames


def _stat_cols(embedding_col: str) -> tuple[str, str, str]:
    return f"{embedding_col}_dim", f"{embedding_col}_nonfinite", f"{embedding_col}_norm"


def l2_norm(vec):
    """The L2 norm of an array column, summed in double where the data lives (no UDF)."""
    return F.sqrt(F.aggregate(vec, F.lit(0.0).cast("double"), lambda acc, v: acc + v.cast("double") * v))


def embedding_stats_frame(df, *, node_col: str = "node", embedding_col: str = "embedding"):
    """Per node: vector length, count of non-finite entries and L2 norm, computed where the data lives.

    Args:
        df: Spark frame with ``node_col`` and ``embedding_col`` (array of numbers or a
            Spark ML vector; each row a (D,) vector).

    Returns:
        Spark frame with ``node_col``, ``<embedding_col>_dim`` (null for a null
        vector), ``<embedding_col>_nonfinite`` and ``<embedding_col>_norm``.

    Raises:
        InputError: ``node_col`` or ``embedding_col`` is missing.
    """
    dim_col, bad_col, norm_col = _stat_cols(embedding_col)
    missing = [c for c in (node_col, embedding_col) if c not in df.columns]
    if missing:
        raise InputError(f"embeddings: missing column(s) {missing}; available: {list(df.columns)}")
    vec = F.col(embedding_col)
    if not isinstance(df.schema[embedding_col].dataType, T.ArrayType):
        from pyspark.ml.functions import vector_to_array

        vec = vector_to_array(vec)
    nonfinite = F.filter(vec, lambda v: F.isnan(v) | (F.abs(v) == F.lit(float("inf"))))
    return df.select(
        node_col,
        F.when(vec.isNotNull(), F.size(vec)).alias(dim_col),
        F.size(nonfinite).alias(bad_col),
        l2_norm(vec).alias(norm_col),
    )


def id_stability_frame(previous, new, *, feature_col: str = "feature", value_col: str = "value", id_col: str = "id"):
    """Compare two vocabulary versions value by value; ``id_status`` says what happened to each.

    Statuses: ``kept`` (same id), ``new`` (value absent before, id unused before), ``changed``
    (old value, other id), ``dropped`` (old value missing), ``reused`` (new value given an id an
    old value had). Spark in, Spark out (two joins, nothing collected).

    Returns:
        Frame with ``feature_col, value_col, old_id, new_id, id_status``.
    """
    for what, df in (("previous vocabulary", previous), ("new vocabulary", new)):
        missing = [c for c in (feature_col, value_col, id_col) if c not in df.columns]
        if missing:
            raise InputError(f"{what}: missing column(s) {missing}; available: {list(df.columns)}")
    old = previous.select(feature_col, value_col, F.col(id_col).alias("old_id"))
    cur = new.select(feature_col, value_col, F.col(id_col).alias("new_id"))
    pairs = old.join(cur, [feature_col, value_col], "full_outer")
    taken = previous.select(F.col(feature_col).alias("_f"), F.col(id_col).alias("_id"), F.lit(True).alias("_taken"))
    pairs = pairs.join(
        taken,
        (F.col("_f") == F.col(feature_col)) & (F.col("_id") == F.col("new_id")) & F.col("old_id").isNull(),
        "left",
    )
    status = (
        F.when(F.col("new_id").isNull(), "dropped")
        .when(F.col("old_id").isNull() & F.col("_taken").isNotNull(), "reused")
        .when(F.col("old_id").isNull(), "new")
        .when(F.col("old_id") == F.col("new_id"), "kept")
        .otherwise("changed")
    )
    return pairs.select(feature_col, value_col, "old_id", "new_id", status.alias("id_status"))


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class SuiteSpec:
    """A named suite: its builder, an optional frame preparation, and its config defaults."""

    build: Callable[..., Any]
    defaults: Callable[[QualityConfig, ClickSchema], dict[str, Any]]
    prepare: Callable[..., Any] | None = None
    needs_previous: bool = False


SUITES: dict[str, SuiteSpec] = {
    "clicks": SuiteSpec(
        clicks_suite,
        lambda q, s: dict(
            id_col=s.id,
            label_col=s.label,
            time_col=s.time,
            dense_cols=list(s.dense),
            categorical_cols=list(s.categorical),
            min_rows=q.min_rows,
            max_rows=q.max_rows,
            dense_min=q.dense_min,
            dense_max=q.dense_max,
            unique_ids=q.unique_ids,
        ),
    ),
    "vocabulary": SuiteSpec(vocabulary_suite, lambda q, s: dict(min_id=q.vocab_min_id)),
    "vocabulary_ids": SuiteSpec(
        vocabulary_ids_suite,
        lambda q, s: dict(allow_dropped=q.vocab_allow_dropped),
        prepare=id_stability_frame,
        needs_previous=True,
    ),
    "edges": SuiteSpec(edges_suite, lambda q, s: {}),  # columns: the fastrp section's, passed by the stage
    "embeddings": SuiteSpec(
        embeddings_suite,
        lambda q, s: dict(node_col=q.node_col, embedding_col=q.embedding_col, min_norm=q.min_norm, max_norm=q.max_norm),
        prepare=embedding_stats_frame,
    ),
    "scores": SuiteSpec(scores_suite, lambda q, s: dict(probability_col=q.probability_col)),
    "candidates": SuiteSpec(candidates_suite, lambda q, s: {}),  # k: the retrieve section's, passed by the stage
}


def _accepted(fn: Callable, params: dict[str, Any]) -> dict[str, Any]:
    names = inspect.signature(fn).parameters
    return {k: v for k, v in params.items() if k in names}


def build_suite(name: str, cfg: QualityConfig | None = None, schema: ClickSchema | None = None, **params):
    """The named suite with bounds from ``cfg`` (``quality`` section) and columns from ``schema``, overridden by ``params``."""
    if name not in SUITES:
        raise ValueError(f"unknown data quality suite {name!r}; known: {sorted(SUITES)}")
    spec = SUITES[name]
    accepted = set(inspect.signature(spec.build).parameters) - {"name"}
    if spec.prepare is not None:
        accepted |= set(inspect.signature(spec.prepare).parameters) - {"df", "previous", "new"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"suite {name!r} takes no parameter(s) {unknown}; it takes {sorted(accepted)}")
    merged = {**spec.defaults(cfg or QualityConfig(), schema or ClickSchema()), **params}
    try:
        return spec.build(name=name, **_accepted(spec.build, merged))
    except TypeError as exc:
        raise ValueError(f"suite {name!r}: {exc}") from None


# --------------------------------------------------------------------------- running


def _context(docs_dir: Path | None):
    """A fresh in-memory GX context, progress bars and analytics off, Data Docs into ``docs_dir``."""
    sites = {}
    if docs_dir is not None:
        sites[_SITE] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _fmt(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:117] + "..."


def _failure(result, examples: int) -> Failure:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.pop("column", None)
    if column is None and "column_list" in kwargs:
        column = ", ".join(kwargs.pop("column_list"))
    kwargs.pop("batch_id", None)
    kwargs.pop("result_format", None)
    bounds = " ".join(f"{k}={_fmt(v)}" for k, v in kwargs.items() if v is not None and k not in ("mostly",))
    bounds = bounds.replace(_fmt(FLOAT_MAX), "finite")
    info = result.exception_info or {}
    raised = info.get("raised_exception") or any(
        isinstance(v, dict) and v.get("raised_exception") for v in info.values()
    )
    res = result.result or {}
    if raised:
        msgs = [info.get("exception_message")] + [
            v.get("exception_message") for v in info.values() if isinstance(v, dict)
        ]
        seen = "could not be evaluated: " + "; ".join(m.splitlines()[0] for m in msgs if m)
    elif res.get("unexpected_count") is not None:
        seen = f"{res['unexpected_count']} of {res.get('element_count')} rows unexpected"
        sample = [v for v in (res.get("partial_unexpected_list") or [])][:examples]
        if sample:
            seen += f", e.g. {_fmt(sample)}"
    elif "observed_value" in res:
        seen = f"observed {_fmt(res['observed_value'])}"
    else:
        seen = "failed"
    detail = f" ({bounds}): {seen}" if bounds else f": {seen}"
    return Failure(expectation=config.type, column=column, detail=detail)


def _strings(value) -> list[str]:
    """Every string inside a (nested) GX ``exception_info``."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _strings(v)]
    return []


def _data_as_names(frame) -> bool:
    """True if the column names look like a data row (Spark's ``_c0``... or numbers): a CSV without a header."""

    def number(name: str) -> bool:
        try:
            float(name)
            return True
        except ValueError:
            return False

    return all(c.startswith("_c") for c in frame.columns) or any(number(c) for c in frame.columns)


def _few(names: list[str], shown: int = 8) -> str:
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


def validate(
    data,
    suite: str | Any,
    cfg: QualityConfig | None = None,
    *,
    previous=None,
    output: str | Path | None = None,
    schema: ClickSchema | None = None,
    **params,
) -> QualityReport:
    """Validate a Spark frame against a suite and write its results; never raises on failure.

    A frame without the suite's columns is not validated: InputError names the missing ones.

    Args:
        data: the table to check (a Spark DataFrame, validated in place).
        suite: a name from :data:`SUITES` (bounds from ``cfg`` + ``params``) or a ready
            ``gx.ExpectationSuite``.
        cfg: the ``quality`` config section (defaults when None).
        schema: the click log's columns (the ``clicks`` suite; defaults when None).
        previous: the previous version of the table (required by ``vocabulary_ids``).
        output: folder for results and Data Docs (default ``cfg.output``); evidence lands in
            ``<output>/<suite>/`` and replaces that suite's previous evidence.
        params: suite parameters overriding the config (e.g. ``dim=64`` for ``embeddings``).

    Returns:
        A :class:`QualityReport`; see :func:`gate` for the raising variant.
    """
    cfg = cfg or QualityConfig()
    if isinstance(suite, str):
        name = suite
        spec = SUITES.get(name)
        expectation_suite = build_suite(name, cfg, schema, **params)
        if spec and spec.needs_previous:
            if previous is None:
                raise ValueError(f"suite {name!r} compares two versions: pass previous=<the previous table>")
            frame = spec.prepare(previous, data, **_accepted(spec.prepare, params))
        elif spec and spec.prepare is not None:
            merged = {**spec.defaults(cfg, schema or ClickSchema()), **params}
            frame = spec.prepare(data, **_accepted(spec.prepare, merged))
        else:
            frame = data
    else:
        name, expectation_suite, frame = suite.name, suite, data
    required = [e.column for e in expectation_suite.expectations if isinstance(e, gxe.ExpectColumnToExist)]
    if missing := [c for c in required if c not in frame.columns]:  # one line, not one failure per expectation
        header = " (a CSV without its header row?)" if len(missing) == len(required) and _data_as_names(frame) else ""
        raise InputError(
            f"suite {name!r}: missing column(s) {_few(missing)}; the table has {_few(list(frame.columns))}{header}"
        )

    folder = Path(output or cfg.output).resolve() / name  # GX Data Docs need an absolute path
    if (folder / "docs").exists():  # this suite's evidence is replaced, never mixed
        shutil.rmtree(folder / "docs")
    folder.mkdir(parents=True, exist_ok=True)
    docs_dir = folder / "docs" if cfg.data_docs else None

    context = _context(docs_dir)
    was_cached = frame.is_cached  # a cache the caller made is the caller's to drop
    source = context.data_sources.add_spark(name="spark", persist=cfg.persist)
    batch_definition = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("whole")
    expectation_suite = context.suites.add(expectation_suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=expectation_suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[_SITE])] if docs_dir else [],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": cfg.examples},
        )
    )
    try:
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
    finally:
        if cfg.persist and not was_cached:
            frame.unpersist()
    (result,) = outcome.run_results.values()
    for r in result.results:  # GX reports a file Spark could not read as failed expectations: it is an input error
        if not r.success and (bad := unreadable_file("\n".join(_strings(r.exception_info)))):
            raise InputError(f"cannot read file {bad[0]}: {bad[1]}")
    result_path = folder / "result.json"
    result_path.write_text(json.dumps(result.to_json_dict(), indent=2, default=str))
    failures = [_failure(r, cfg.examples) for r in result.results if not r.success]
    index = docs_dir / "index.html" if docs_dir is not None and (docs_dir / "index.html").exists() else None
    report = QualityReport(
        suite=name,
        success=bool(result.success),
        evaluated=len(result.results),
        failures=failures,
        folder=folder,
        result_path=result_path,
        docs_index=index,
    )
    (log.info if report.success else log.error)("%s", report.summary())
    return report


def gate(data, suite: str | Any, cfg: QualityConfig | None = None, **kwargs) -> QualityReport | None:
    """Like :func:`validate`, but a failed suite raises :class:`DataQualityError` (the job stops
    before it publishes). Returns None without checking when ``cfg.enabled`` is false."""
    cfg = cfg or QualityConfig()
    if not cfg.enabled:
        log.warning(
            "data quality gate %r skipped (quality.enabled is false)", suite if isinstance(suite, str) else suite.name
        )
        return None
    report = validate(data, suite, cfg, **kwargs)
    if not report.success:
        raise DataQualityError(report)
    return report


__all__ = [
    "DataQualityError",
    "Failure",
    "QualityReport",
    "SUITES",
    "build_suite",
    "candidates_suite",
    "clicks_suite",
    "edges_suite",
    "embedding_stats_frame",
    "embeddings_suite",
    "gate",
    "id_stability_frame",
    "l2_norm",
    "scores_suite",
    "validate",
    "vocabulary_ids_suite",
    "vocabulary_suite",
]
