"""Configuration: YAML layers, --set and job flags merge in order, and every mistake names its key."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.cli import load_config
from core.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_embedded_default_config_is_valid():
    cfg = load_config([], section="vocab")
    assert cfg.spark.master == "local[*]"
    assert "C1" in cfg.vocab.features


@pytest.mark.parametrize("path", sorted((CONF / "valid").glob("*.yaml")), ids=lambda p: p.name)
def test_valid_config_files_load(path):
    cfg = load_config(["--config", "conf/local.yaml", "--config", str(path)], section="vocab")
    assert cfg.vocab.min_count == 3


@pytest.mark.parametrize("path", sorted((CONF / "invalid").glob("*.yaml")), ids=lambda p: p.name)
def test_invalid_config_files_fail_naming_the_problem(path):
    with pytest.raises(ConfigError) as err:
        load_config(["--config", str(path)], section="vocab")
    assert any(word in str(err.value) for word in ("min_cnt", "min_count", "vocabulary", "vocab.start", "mapping"))


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'vocab.min_cnt'"):
        load_config(["--config", str(CONF / "invalid/unknown_key.yaml")], section="vocab")


def test_wrong_type_is_named_with_value():
    with pytest.raises(ConfigError, match="vocab.min_count.*many"):
        load_config(["--config", str(CONF / "invalid/wrong_type.yaml")], section="vocab")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(["--config", str(tmp_path / "nope.yaml")], section="vocab")


def test_set_overrides_file_and_flags_override_set():
    # given a file value, a --set override and a job flag for the same key
    argv = ["--set", "vocab.min_count=4", "--min-count", "9", "--set", "spark.shuffle_partitions=3"]
    # when
    cfg = load_config(argv, section="vocab")
    # then the job flag wins, and --set reached another section
    assert cfg.vocab.min_count == 9
    assert cfg.spark.shuffle_partitions == 3


def test_list_flags_take_comma_lists_and_bools_take_no_prefix():
    cfg = load_config(["--iteration-weights", "1,1,7.81,45.28", "--directed", "--no-standardize"], section="fastrp")
    assert cfg.fastrp.iteration_weights == [1.0, 1.0, 7.81, 45.28]
    assert cfg.fastrp.directed is True and cfg.fastrp.standardize is False


def test_master_flag_beats_environment(monkeypatch):
    monkeypatch.setenv("SPARK_MASTER", "spark://env:7077")
    assert load_config([], section="vocab").spark.master == "spark://env:7077"
    assert load_config(["--master", "local[3]"], section="vocab").spark.master == "local[3]"


def test_bad_flag_value_names_the_key():
    with pytest.raises(ConfigError, match="vocab.min_count"):
        load_config(["--min-count", "0"], section="vocab")


def test_malformed_set_pair_is_rejected():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(["--set", "vocab.min_count"], section="vocab")


def test_config_is_frozen():
    cfg = load_config([], section="vocab")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.vocab.min_count = 5
