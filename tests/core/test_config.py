"""Configuration: YAML layers, --set and job flags merge in order, and every mistake names its key."""

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.cli import load_config
from core.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_embedded_default_config_is_valid():
    cfg = load_config([], section="vocab")
    assert cfg.spark.master == "local[*]"
    assert "C1" in cfg.click_schema.categorical
    assert cfg.tables.path("clicks") == "data/raw/clicks"


@pytest.mark.parametrize("path", sorted((CONF / "valid").glob("*.yaml")), ids=lambda p: p.name)
def test_valid_config_files_load(path):
    cfg = load_config(["--config", "conf/local.yaml", "--config", str(path)], section="vocab")
    assert cfg.vocab.min_count == 3


INVALID = {
    "bad_window.yaml": r"vocab.start \(2026-02-01 00:00:00\) must be before vocab.end",
    "moved_key.yaml": r"config key 'vocab.input' moved: set 'tables.clicks.path' instead",
    "not_a_mapping.yaml": r"not_a_mapping.yaml must hold a mapping of sections",
    "parquet_output.yaml": r"tables.vocab.format must be delta",
    "unknown_key.yaml": r"unknown config key 'vocab.min_cnt'",
    "unknown_section.yaml": r"unknown config key 'vocabulary'",
    "wrong_type.yaml": r"config key 'vocab.min_count': .* \(got 'many'\)",
}


def test_every_invalid_config_file_has_its_expected_message():
    assert sorted(p.name for p in (CONF / "invalid").glob("*.yaml")) == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_files_fail_naming_the_problem(name):
    with pytest.raises(ConfigError, match=INVALID[name]):
        load_config(["--config", str(CONF / "invalid" / name)], section="vocab")


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


def test_relative_table_paths_resolve_under_the_root_and_uris_stay_as_given():
    # given
    argv = [
        "--set",
        "tables.root=/lake",
        "--set",
        "tables.edges.path=s3://bucket/edges",
        "--set",
        "tables.vocab.path=/abs/vocab",
    ]
    # when
    tables = load_config(argv).tables
    # then
    assert tables.path("clicks") == "/lake/raw/clicks"
    assert tables.path("edges") == "s3://bucket/edges"
    assert tables.path("vocab") == "/abs/vocab"
    assert tables.entry("score_rows") == tables.entry("clicks")  # scoring reads the click log by default


def test_moving_the_root_moves_every_working_path_of_the_embedded_default():
    cfg = load_config(["--set", "tables.root=/tmp/elsewhere"])
    assert cfg.quality.output == "/tmp/elsewhere/quality"
    assert cfg.mlflow.tracking_uri == "sqlite:////tmp/elsewhere/mlflow.db"
    assert cfg.spark.checkpoint_dir == "/tmp/elsewhere/checkpoints"
    assert cfg.train.export_path == "/tmp/elsewhere/ctr/model.pt"
    assert cfg.train_inputs().encoded == "/tmp/elsewhere/encoded"


def test_job_table_flags_set_catalog_entries_and_schema_columns():
    cfg = load_config(
        ["--input", "in/clicks", "--output", "out/enc", "--features", "a,b", "--input-format", "parquet"],
        section="encode",
    )
    # (a path flag is relative to the working directory, as a shell user means it; --set paths are under the root)
    assert cfg.tables.path("clicks") == os.path.abspath("in/clicks") and cfg.tables.clicks.format == "parquet"
    assert cfg.tables.path("encoded") == os.path.abspath("out/enc")
    assert cfg.click_schema.categorical == ["a", "b"]


def test_moved_keys_are_refused_from_set_too():
    with pytest.raises(ConfigError, match="'train.input' moved: set 'tables.encoded.path'"):
        load_config(["--set", "train.input=data/encoded"])


def test_a_missing_optional_table_is_named():
    cfg = load_config(["--set", "tables.oracle=null"])
    with pytest.raises(ConfigError, match="tables.oracle is not set"):
        cfg.tables.path("oracle")
    assert cfg.train_inputs().oracle is None


def test_schema_must_name_each_column_once():
    with pytest.raises(ConfigError, match=r"schema names column\(s\) \['C1'\] more than once"):
        load_config(["--set", "schema.dense=[C1]"])


def test_a_window_needs_the_schema_time_column():
    with pytest.raises(ConfigError, match="vocab.start/vocab.end need schema.time"):
        load_config(["--set", "schema.time=null", "--set", "vocab.start=2026-01-01T00:00:00"])


def test_a_null_flag_unsets_an_optional_table_and_refuses_a_required_one():
    assert load_config(["--oracle", "null"], section="train").tables.oracle is None
    with pytest.raises(ConfigError, match="--input: tables.encoded is required"):
        load_config(["--input", "null"], section="train")


def test_the_scoring_input_format_alone_keeps_the_click_log_path():
    # (with the embedded default's clicks entry under tables.root)
    tables = load_config(["--input-format", "parquet"], section="score").tables
    assert tables.entry("score_rows").format == "parquet"
    assert tables.path("score_rows") == tables.path("clicks")


def test_a_graph_feature_without_a_vocabulary_is_refused_when_training_not_when_loading():
    # given a layer that drops C1 from the schema while the default still makes it a graph feature
    cfg = load_config(["--set", "schema.categorical=[C2, tags]"])
    # then jobs that do not train load it, and the trainer's inputs name the key
    with pytest.raises(ConfigError, match=r"train.graph_features.C1: 'C1' has no vocabulary"):
        cfg.train_inputs()


def test_a_graph_feature_that_is_no_node_column_needs_its_prefix():
    cfg = load_config(["--set", "train.graph_features={C3: frozen}"])
    with pytest.raises(ConfigError, match=r"train.graph_features.C3: 'C3' is neither graph.user \(C1\)"):
        cfg.train_inputs()
    with_prefix = load_config(["--set", "train.graph_features={C3: {prefix: 'shop:'}}"])
    assert with_prefix.train_inputs().graph_prefixes == {"C3": "shop:"}


PROPS = "fastrp.node_properties={columns: [age, kind]}"
PROPERTY_REFUSALS = {
    "a ratio without properties": (["fastrp.property_ratio=0.25"], "fastrp.node_properties is not set"),
    "properties without a ratio": ([PROPS, "tables.node_properties={path: props}"], "fastrp.property_ratio is 0"),
    "a ratio that leaves 0 dims": (
        [PROPS, "fastrp.property_ratio=0.01", "tables.node_properties={path: props}"],
        r"leaves 0 property dimensions \(int\(dim \* ratio\)\)",
    ),
    "a ratio above 1": (["fastrp.property_ratio=1.5"], "fastrp.property_ratio"),
    "no columns": (["fastrp.node_properties={columns: []}", "fastrp.property_ratio=0.5"], "node_properties.columns"),
    "a repeated column": (
        ["fastrp.node_properties={columns: [age, age]}", "fastrp.property_ratio=0.5"],
        "columns has duplicates",
    ),
    "properties without their table": ([PROPS, "fastrp.property_ratio=0.5"], "tables.node_properties .* is not"),
}


@pytest.mark.parametrize("case", PROPERTY_REFUSALS, ids=list(PROPERTY_REFUSALS))
def test_node_property_settings_that_cannot_work_are_refused_at_load(case):
    sets, message = PROPERTY_REFUSALS[case]
    with pytest.raises(ConfigError, match=message):
        load_config([arg for s in sets for arg in ("--set", s)], section="fastrp")


def test_node_properties_with_their_table_and_a_ratio_load_and_the_whole_dim_may_be_theirs():
    sets = [PROPS, "fastrp.property_ratio=1.0", "tables.node_properties={path: graph/props, format: parquet}"]
    cfg = load_config([arg for s in sets for arg in ("--set", s)], section="fastrp")
    assert cfg.fastrp.node_properties.columns == ["age", "kind"] and cfg.fastrp.node_properties.id_col == "node"
    assert cfg.tables.entry("node_properties").path == "data/graph/props"
