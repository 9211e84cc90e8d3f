"""``$PIPELINE_CONFIG``: the comma-separated config layers the Airflow DAG documents."""

from __future__ import annotations

import pytest

from core.cli import load_config
from core.errors import ConfigError


@pytest.fixture
def two_layers(tmp_path) -> tuple[str, str]:
    """A base layer and an override layer that changes one of its keys and adds another."""
    base = tmp_path / "base.yaml"
    base.write_text("vocab:\n  min_count: 3\nfastrp:\n  dim: 32\n")
    override = tmp_path / "override.yaml"
    override.write_text("vocab:\n  min_count: 7\nspark:\n  shuffle_partitions: 5\n")
    return str(base), str(override)


def test_comma_separated_files_are_layered_in_order(monkeypatch, two_layers):
    # given two files in $PIPELINE_CONFIG, the later one overriding a key of the first
    base, override = two_layers
    monkeypatch.setenv("PIPELINE_CONFIG", f"{base},{override}")
    # when a job loads its config without --config
    cfg = load_config([], section="vocab")
    # then both files apply, the later one winning where they overlap
    assert cfg.vocab.min_count == 7
    assert cfg.fastrp.dim == 32
    assert cfg.spark.shuffle_partitions == 5


def test_the_order_of_the_files_is_the_order_of_the_layers(monkeypatch, two_layers):
    base, override = two_layers
    monkeypatch.setenv("PIPELINE_CONFIG", f"{override}, {base}")  # spaces around a comma are ignored
    assert load_config([], section="vocab").vocab.min_count == 3


def test_config_flags_replace_the_environment(monkeypatch, two_layers, tmp_path):
    # given $PIPELINE_CONFIG naming a file that does not exist
    base, _ = two_layers
    monkeypatch.setenv("PIPELINE_CONFIG", str(tmp_path / "nope.yaml"))
    # when --config is given, then only the flags' files are read
    assert load_config(["--config", base], section="vocab").vocab.min_count == 3


def test_a_missing_file_in_the_list_is_named(monkeypatch, two_layers, tmp_path):
    base, _ = two_layers
    missing = str(tmp_path / "missing.yaml")
    monkeypatch.setenv("PIPELINE_CONFIG", f"{base},{missing}")
    with pytest.raises(ConfigError, match=f"config file not found: {missing}"):
        load_config([], section="vocab")


@pytest.mark.parametrize("value", ["{base},", "{base},,{override}", ",{base}", ""])
def test_an_empty_element_is_refused(monkeypatch, two_layers, value):
    base, override = two_layers
    monkeypatch.setenv("PIPELINE_CONFIG", value.format(base=base, override=override))
    with pytest.raises(ConfigError, match=r"\$PIPELINE_CONFIG=.* has an empty element"):
        load_config([], section="vocab")
