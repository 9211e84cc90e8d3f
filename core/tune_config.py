"""Typed configuration of the tuning job (``tune:`` section) and the walk over ``TrainConfig``'s keys it needs.

The search space names ``train`` keys by their dotted path (``embedding_lr``, ``model.kind``); a
key that no variant of ``TrainConfig`` has is refused when the config is loaded. Pure pydantic.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

from core.train_config import TrainConfig

Choice = bool | int | float | str  # what Optuna's suggest_categorical stores


class ParamSpace(BaseModel):
    """One tuned key: ``choices`` (categorical), or a ``low``..``high`` range (``log``: log-uniform; ``integer``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    choices: list[Choice] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _not_empty(self) -> "ParamSpace":
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("empty choices")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError(f"repeated choices {self.choices}")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices, or both low and high")
        if not self.low < self.high:
            raise ValueError(f"empty range: low={self.low} is not below high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log range needs low > 0 (got {self.low})")
        if self.integer and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"integer range needs whole bounds (got {self.low}..{self.high})")
        return self


def _variants(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (unwrapping Annotated, unions and Optional)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _variants(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _variants(a)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def is_train_key(dotted: str) -> bool:
    """True when some variant of ``TrainConfig`` has the leaf setting ``dotted`` (e.g. ``model.cross_layers``)."""
    models: list[type[BaseModel]] = [TrainConfig]
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if not fields:
            return False
        models = [v for f in fields for v in _variants(f.annotation)]
        if i == len(parts) - 1:  # a setting, not a whole section (``model``, ``split``)
            return any(not _variants(f.annotation) for f in fields)
        if not models:
            return False
    return False


def variant_has(doc: dict[str, Any], dotted: str) -> bool:
    """True when ``dotted`` is a setting of the variants ``doc`` (a ``train`` mapping) picks by its ``kind`` keys.

    A missing ``kind`` means the field's default variant: ``model.cross_layers`` applies when the
    document's model is a DCN, not when it is a DLRM, so a trial samples it only then.
    """
    models: list[type[BaseModel]] = [TrainConfig]
    node: Any = doc
    for part in dotted.split(".")[:-1]:
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if not fields:
            return False
        node = node.get(part) if isinstance(node, dict) else None
        options = [v for f in fields for v in _variants(f.annotation)]
        default = fields[0].get_default(call_default_factory=True)
        kind = (node or {}).get("kind") if isinstance(node, dict) else None
        kind = kind or getattr(default, "kind", None)
        picked = [v for v in options if "kind" not in v.model_fields or v.model_fields["kind"].default == kind]
        models = picked or options
    return any(dotted.split(".")[-1] in m.model_fields for m in models)


PARAM_KEYS = frozenset(ParamSpace.model_fields)


def flatten_space(value: Any, prefix: str = "") -> Any:
    """``{model: {kind: {choices: [..]}}}`` -> ``{"model.kind": {choices: [..]}}``: a mapping with a
    ``choices``/``low``/``high`` key is one tuned key, any other mapping nests keys (so ``--set
    tune.space.model.kind.choices=[dcn]`` and a YAML ``model.kind:`` key mean the same)."""
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in value.items():
        dotted = f"{prefix}{key}"
        if isinstance(sub, dict) and sub and not (PARAM_KEYS & set(sub)):
            nested = flatten_space(sub, f"{dotted}.")
        else:
            nested = {dotted: sub}
        for k, v in nested.items():
            if k in out:
                raise ValueError(f"tune.space names {k} twice (once nested, once dotted)")
            out[k] = v
    return out


class TuneConfig(BaseModel):
    """Hyperparameter search over ``train`` keys (jobs/tune.py): an Optuna study, each trial one training run.

    The study lives in ``storage`` (its own sqlite file by default: Optuna and MLflow both keep an
    ``alembic_version`` table, so one database cannot hold both); a rerun with the same
    ``study_name`` continues it until ``n_trials`` trials have finished. Trials validate after
    every ``eval_every_rows`` training rows, so trials with other batch sizes are compared (and
    pruned) at the same amount of data. The best trial's keys are written to ``output`` as a
    config layer for ``jobs/train_ctr.py --config``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    study_name: str = Field(default="ctr", min_length=1)
    storage: str = Field(default="sqlite:///data/optuna.db", description="Optuna RDB storage URL (sqlite, postgresql)")
    n_trials: PositiveInt = Field(
        default=20, description="trials the study should have finished (a rerun adds the rest)"
    )
    timeout_s: PositiveInt | None = Field(default=None, description="stop starting trials after this many seconds")
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    startup_trials: NonNegativeInt = Field(default=5, description="random trials before TPE models the space")
    pruner: Literal["median", "none"] = "median"
    pruner_startup_trials: NonNegativeInt = Field(default=3, description="trials that finish before any is pruned")
    pruner_warmup_evals: NonNegativeInt = Field(default=1, description="validations of a trial before it may be pruned")
    eval_every_rows: PositiveInt = Field(default=50_000, description="validate each trial after this many train rows")
    output: str = Field(default="data/tune/best.yaml", description="the best trial's keys, as a config layer")
    space: Annotated[dict[str, ParamSpace], BeforeValidator(flatten_space)] = Field(
        default_factory=dict, description="train key (dotted, e.g. model.kind) -> choices or low/high"
    )

    @field_validator("space")
    @classmethod
    def _known_keys(cls, space: dict[str, ParamSpace]) -> dict[str, ParamSpace]:
        unknown = [k for k in space if not is_train_key(k)]
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: no such train setting (space keys are relative to train, e.g. model.kind)"
            )
        return space

    def space_record(self) -> dict[str, Any]:
        """The space as plain data (what a study keeps to refuse being continued with another space)."""
        return {k: v.model_dump() for k, v in sorted(self.space.items())}
