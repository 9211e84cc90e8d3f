"""Job entry points: config layers + flags -> a validated :class:`~core.config.PipelineConfig`, and exit codes.

A job calls :func:`load_config` with its argv and the name of its own section; every key in every
layer is validated, so a typo anywhere is an error that names the key. Precedence (lowest first):
defaults in code, each ``--config`` file (default ``conf/local.yaml``, or each comma-separated file
of ``$PIPELINE_CONFIG`` in order),
``--set a.b=c`` pairs, then the job's own flags (``--min-count 5`` sets ``<section>.min_count``),
then ``--master`` (or ``$SPARK_MASTER``). Layers merge with OmegaConf (mappings merge, lists and
scalars replace); pydantic validates the result once.

Every job file ends with ``sys.exit(run(main))``: a :class:`~core.errors.UserError` prints one
``error: ...`` line and exits with its code (2); anything else is a bug and keeps its traceback (1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from core.config import DEFAULT_CONFIG, PipelineConfig
from core.errors import ConcurrentChange, ConfigError, StageFailed, UserError
from core.tracking import redact

# A job's table and column flags (kept from before the catalog): flag field -> the key it sets.
TABLE_FLAGS: dict[str, dict[str, str]] = {
    "synth": {
        "output": "tables.clicks.path",
        "oracle_output": "tables.oracle.path",
    },
    "vocab": {
        "input": "tables.clicks.path",
        "input_format": "tables.clicks.format",
        "output": "tables.vocab.path",
        "features": "schema.categorical",
        "time_col": "schema.time",
    },
    "encode": {
        "input": "tables.clicks.path",
        "input_format": "tables.clicks.format",
        "vocab": "tables.vocab.path",
        "output": "tables.encoded.path",
        "features": "schema.categorical",
    },
    "graph": {
        "input": "tables.clicks.path",
        "input_format": "tables.clicks.format",
        "output": "tables.edges.path",
        "time_col": "schema.time",
        "label_col": "schema.label",
    },
    "fastrp": {"edges": "tables.edges.path", "edges_format": "tables.edges.format", "output": "tables.embeddings.path"},
    "retrieve": {
        "embeddings": "tables.embeddings.path",
        "edges": "tables.edges.path",
        "edges_format": "tables.edges.format",
        "output": "tables.candidates.path",
    },
    "train": {
        "input": "tables.encoded.path",
        "vocab": "tables.vocab.path",
        "oracle": "tables.oracle.path",
        "label_col": "schema.label",
        "id_col": "schema.id",
        "dense_features": "schema.dense",
        "sparse_features": "schema.categorical",
    },
    "score": {
        "input": "tables.score_rows.path",
        "input_format": "tables.score_rows.format",
        "output": "tables.scores.path",
        "id_col": "schema.id",
    },
}
LIST_TARGETS = {"schema.categorical", "schema.dense"}
# Keys that moved into the catalog or the schema: named in the error, never silently dropped.
MOVED_KEYS: dict[str, str] = {
    **{f"{section}.{name}": target for section, flags in TABLE_FLAGS.items() for name, target in flags.items()},
    "quality.id_col": "schema.id",
    "quality.label_col": "schema.label",
    "quality.time_col": "schema.time",
    "quality.dense_cols": "schema.dense",
    "quality.categorical_cols": "schema.categorical",
    "quality.src_col": "fastrp.src_col",
    "quality.dst_col": "fastrp.dst_col",
    "quality.weight_col": "fastrp.weight_col",
    "train.split.time_col": "schema.time",
}

CONFIG_ENV = "PIPELINE_CONFIG"
NOISY_LOGGERS = ("py4j", "py4j.clientserver", "urllib3", "alembic", "great_expectations", "mlflow.store.db.utils")


# --------------------------------------------------------------------------- layers


def _read_layer(path: str) -> DictConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        layer = OmegaConf.load(p)
    except (yaml.YAMLError, OmegaConfBaseException) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(layer, DictConfig):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got a {type(layer).__name__}")
    return layer


def scratch_flags(root: Path, master: str = "local[2]", shuffle_partitions: int = 2) -> list[str]:
    """Flags that point a job's Spark master, checkpoints, warehouse, MLflow store and GX evidence at folder ``root``.

    For job runs that must leave the user's stores alone: the tests and the benchmarks that run jobs.
    """
    pairs = {
        "spark.shuffle_partitions": shuffle_partitions,
        "spark.checkpoint_dir": root / "checkpoints",
        "spark.warehouse_dir": root / "spark-warehouse",
        "mlflow.tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "quality.output": root / "quality",
    }
    return ["--master", master, *(arg for key, value in pairs.items() for arg in ("--set", f"{key}={value}"))]


def env_config_files() -> list[str]:
    """The layers of ``$PIPELINE_CONFIG`` (comma-separated, as the DAG documents it), else the default file."""
    value = os.environ.get(CONFIG_ENV)
    if value is None:
        return [DEFAULT_CONFIG]
    files = [part.strip() for part in value.split(",")]
    if not all(files):
        raise ConfigError(f"${CONFIG_ENV}={value!r} has an empty element; give config files separated by commas")
    return files


def _parse_scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # OmegaConf holds only primitives: dates stay text, pydantic parses them.
    return text if isinstance(value, (dt.date, dt.datetime)) else value


def _set(doc: DictConfig, dotted: str, value: Any, what: str) -> None:
    try:
        OmegaConf.update(doc, dotted, value, merge=False, force_add=True)
    except (OmegaConfBaseException, ValueError, TypeError) as exc:
        raise ConfigError(f"{what} {dotted}: {exc}".splitlines()[0]) from None


# --------------------------------------------------------------------------- flags


def _is_list(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(a) for a in get_args(annotation) if a is not type(None))
    return origin is list


def _parse_flag_value(text: str, annotation: Any) -> Any:
    if _is_list(annotation):
        parsed = _parse_scalar(text)
        if isinstance(parsed, list):
            return parsed
        return [_parse_scalar(t.strip()) for t in text.split(",") if t.strip()]
    parsed = _parse_scalar(text)
    # Keep strings as strings for str fields (a path like 'null' or '0123' must stay text).
    return text if annotation is str else parsed


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(section: str | None, description: str | None = None) -> argparse.ArgumentParser:
    """Argument parser: common flags plus one flag per field of the job's config section."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        metavar="YAML",
        help=f"config file (repeat to layer; default {DEFAULT_CONFIG} or $PIPELINE_CONFIG, comma-separated)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override any key, e.g. --set spark.shuffle_partitions=4",
    )
    parser.add_argument("--master", default=None, help="Spark master (overrides spark.master and $SPARK_MASTER)")
    parser.add_argument("--schema", action="store_true", help="print the config JSON schema and exit")
    if section in TABLE_FLAGS:
        tables = parser.add_argument_group(f"{section} tables and columns (each sets a tables/schema key)")
        for name, target in TABLE_FLAGS[section].items():
            tables.add_argument(
                _flag(name), dest=f"table__{name}", default=None, metavar=name.upper(), help=f"sets {target}"
            )
    if section is not None:
        model = PipelineConfig.model_fields[section].annotation
        group = parser.add_argument_group(f"{section} settings (each overrides {section}.<name>)")
        for name, field in model.model_fields.items():
            kwargs: dict[str, Any] = {"dest": f"{section}__{name}", "default": None, "help": field.description}
            if field.annotation is bool:
                group.add_argument(_flag(name), action=argparse.BooleanOptionalAction, **kwargs)
            else:
                group.add_argument(_flag(name), metavar=name.upper(), **kwargs)
    return parser


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{loc}'")
        elif not err["loc"]:  # a check across sections: its message names the keys (the input is the whole document)
            lines.append(err["msg"].removeprefix("Value error, "))
        else:
            got = repr(err.get("input"))
            got = got if len(got) <= 160 else got[:150] + " ..."  # a whole section's mapping says little
            lines.append(f"config key '{loc}': {err['msg']} (got {got})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


NULLS = ("", "null", "none", "~")
OPTIONAL_TABLES = ("oracle", "score_rows")


def _set_table_flag(doc: DictConfig, target: str, value: str, flag: str) -> None:
    """Apply one table/column flag: lists parsed, paths made absolute, ``null`` unsets an optional table."""
    table = target.split(".")[1] if target.startswith("tables.") else None
    if value.strip().lower() in NULLS:
        if table in OPTIONAL_TABLES:
            _set(doc, f"tables.{table}", None, flag)  # e.g. --oracle null: no oracle
            return
        if table is not None:
            raise ConfigError(f"{flag}: tables.{table} is required; give a path")
        _set(doc, target, None, flag)
        return
    if table == "score_rows" and OmegaConf.select(doc, "tables.score_rows") is None:
        # scoring starts from the click log's entry, so --input-format alone changes only the format
        clicks = OmegaConf.select(doc, "tables.clicks")
        _set(doc, "tables.score_rows", OmegaConf.to_container(clicks) if clicks is not None else {}, flag)
    parsed: Any = _parse_flag_value(value, list[str]) if target in LIST_TARGETS else value
    if target.endswith(".path") and "://" not in parsed:
        parsed = os.path.abspath(parsed)  # a path on the command line is the shell's: relative to the cwd
    _set(doc, target, parsed, flag)


def refuse_moved_keys(doc: dict[str, Any]) -> None:
    """ConfigError naming the new key of every key that moved into ``tables`` or ``schema``."""
    moved = []
    for old, new in MOVED_KEYS.items():
        node: Any = doc
        for part in old.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT:
            moved.append(f"config key '{old}' moved: set '{new}' instead")
    if moved:
        raise ConfigError("; ".join(moved))


_ABSENT = object()


def load_config(argv: list[str] | None, section: str | None = None, description: str | None = None) -> PipelineConfig:
    """Merge config layers and flags for one job, validate everything, and return it frozen.

    Raises:
        ConfigError: a file is missing or unreadable, a key is unknown, or a value has the wrong type.
        SystemExit: on ``--help``/``--schema`` (exit code 0) or an unparsable flag (2).
    """
    parser = build_parser(section, description)
    args = parser.parse_args(argv)
    if args.schema:
        print(json.dumps(PipelineConfig.model_json_schema(), indent=2))
        raise SystemExit(0)
    files = args.config or env_config_files()
    doc = OmegaConf.create({})
    for path in files:
        doc = OmegaConf.merge(doc, _read_layer(path))
    for pair in args.overrides:
        if "=" not in pair:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        _set(doc, key.strip(), _parse_scalar(value), "--set")
    if section is not None:
        model = PipelineConfig.model_fields[section].annotation
        for name, field in model.model_fields.items():
            value = getattr(args, f"{section}__{name}")
            if value is None:
                continue
            if not isinstance(value, bool):
                value = _parse_flag_value(value, field.annotation)
            _set(doc, f"{section}.{name}", value, _flag(name))
    for name, target in TABLE_FLAGS.get(section, {}).items():
        value = getattr(args, f"table__{name}")
        if value is not None:
            _set_table_flag(doc, target, value, _flag(name))
    master = args.master or os.environ.get("SPARK_MASTER")
    if master:
        _set(doc, "spark.master", master, "--master")
    try:
        plain = OmegaConf.to_container(doc, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config interpolation failed: {exc}".splitlines()[0]) from None
    refuse_moved_keys(plain)
    try:
        return PipelineConfig.model_validate(plain)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


# --------------------------------------------------------------------------- running


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call ``main(argv)``; a user error (or a failed stage) becomes ``error: ...`` on stderr and its exit code."""
    setup_logging()
    try:
        return main(argv)
    except (UserError, ConcurrentChange, StageFailed) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)  # a URI in the message keeps no password
        return exc.exit_code
