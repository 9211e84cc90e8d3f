"""The ``train:`` section through the real config layers: partial overrides of a variant keep its kind."""

from __future__ import annotations

import re

import pytest

from core.cli import load_config
from core.errors import ConfigError
from core.train_config import DlrmConfig, HashedLayoutConfig, RandomSplitConfig, TimeSplitConfig


@pytest.fixture
def layers(tmp_path):
    """``--config`` args of an empty layer (defaults in code only), plus optional YAML layers written here."""

    def make(*yamls: str) -> list[str]:
        args = []
        for i, text in enumerate(("{}\n", *yamls)):
            path = tmp_path / f"layer{i}.yaml"
            path.write_text(text)
            args += ["--config", str(path)]
        return args

    return make


def test_a_split_fraction_set_alone_keeps_the_default_split_kind(layers):
    # when
    cfg = load_config([*layers(), "--set", "train.split.test_fraction=0.3"], section="train")
    # then
    assert cfg.train.split == RandomSplitConfig(test_fraction=0.3)


def test_a_split_fraction_set_alone_keeps_the_lower_layers_split_kind(layers):
    # given a layer below that picks the time split
    args = layers("schema: {time: ts}\ntrain:\n  split: {kind: time}\n")
    # when
    cfg = load_config([*args, "--set", "train.split.test_fraction=0.3"], section="train")
    # then
    assert cfg.train.split == TimeSplitConfig(test_fraction=0.3)


def test_a_model_key_set_alone_keeps_the_default_model_kind(layers):
    cfg = load_config([*layers(), "--set", "train.model.over_arch=[8]"], section="train")
    assert cfg.train.model == DlrmConfig(over_arch=[8])


def test_a_layout_key_set_alone_keeps_the_lower_layers_layout_kind(layers):
    args = layers("train:\n  layout: {kind: hashed}\n")
    cfg = load_config([*args, "--set", "train.layout.total_rows=10"], section="train")
    assert cfg.train.layout == HashedLayoutConfig(total_rows=10)


def test_an_unknown_kind_is_named_with_the_kinds_offered(layers):
    with pytest.raises(ConfigError, match=r"train\.split.*split kind must be 'random' or 'time'.*weekly"):
        load_config([*layers(), "--set", "train.split.kind=weekly"], section="train")


def test_a_key_of_another_variant_is_refused_naming_it(layers):
    # the default layout (vocab) has no total_rows: the key is not silently dropped
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.layout\.vocab\.total_rows'"):
        load_config([*layers(), "--set", "train.layout.total_rows=10"], section="train")


def test_force_is_a_flag_of_the_train_job(layers):
    assert load_config([*layers(), "--force"], section="train").train.force is True
    assert load_config(layers(), section="train").train.force is False


@pytest.mark.parametrize(
    "flags, needle",
    [
        (
            [
                "--set",
                "train.early_stopping={patience: 2}",
                "--eval-every",
                "5",
                "--set",
                "train.split.valid_fraction=0",
            ],
            "train.early_stopping needs a validation split",
        ),
        (["--set", "train.early_stopping={patience: 2}"], "train.early_stopping needs train.eval_every"),
        (["--eval-every", "5", "--set", "train.split.valid_fraction=0"], "train.eval_every needs a validation split"),
    ],
    ids=[
        "early stopping without a valid split",
        "early stopping without eval_every",
        "eval_every without a valid split",
    ],
)
def test_training_controls_that_cannot_work_are_refused_at_config_time(layers, flags, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config([*layers(), *flags], section="train")


def test_the_deepfm_model_has_its_first_order_term_unless_told_otherwise(layers):
    cfg = load_config([*layers(), "--set", "train.model.kind=deepfm"], section="train")
    assert cfg.train.model.kind == "deepfm" and cfg.train.model.wide
    cfg = load_config([*layers(), "--set", "train.model={kind: deepfm, wide: false}"], section="train")
    assert not cfg.train.model.wide
