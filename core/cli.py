"""Job entry points: config layers + flags -> a validated :class:`~core.config.PipelineConfig`, and exit codes.

A job calls :func:`load_config` with its argv and the name of its own section; every key in every
layer is validated, so a typo anywhere is an error that names the key. Precedence (lowest first):
defaults in code, each ``--config`` file (default ``conf/local.yaml`` or ``$PIPELINE_CONFIG``),
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
from core.errors import ConfigError, UserError

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
    parser.add_argument("--config", action="append", default=None, metavar="YAML",
                        help=f"config file (repeat to layer; default {DEFAULT_CONFIG} or $PIPELINE_CONFIG)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override any key, e.g. --set spark.shuffle_partitions=4")
    parser.add_argument("--master", default=None, help="Spark master (overrides spark.master and $SPARK_MASTER)")
    parser.add_argument("--schema", action="store_true", help="print the config JSON schema and exit")
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
        else:
            lines.append(f"config key '{loc}': {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


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
    files = args.config or [os.environ.get("PIPELINE_CONFIG", DEFAULT_CONFIG)]
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
    master = args.master or os.environ.get("SPARK_MASTER")
    if master:
        _set(doc, "spark.master", master, "--master")
    try:
        plain = OmegaConf.to_container(doc, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config interpolation failed: {exc}".splitlines()[0]) from None
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
    """Call ``main(argv)``; a user error becomes ``error: ...`` on stderr and its exit code (2)."""
    setup_logging()
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
