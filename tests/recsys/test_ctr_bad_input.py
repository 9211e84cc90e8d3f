"""Bad input fails before training, with an error naming the column, feature or table."""

from __future__ import annotations

import pytest
from ctr_tables import VOCAB, make_encoded, make_vocab, train_config, train_setup, write_delta

from core.errors import ConfigError, InputError
from recsys.train import prepare


@pytest.fixture
def vocab(tmp_path):
    return write_delta(tmp_path / "vocab", [make_vocab()])


def test_empty_table_is_refused(tmp_path, vocab):
    empty = make_encoded(8)[0].slice(0, 0)
    path = write_delta(tmp_path / "enc", [empty])
    with pytest.raises(InputError, match="has no rows"):
        prepare(*train_setup(path, vocab))


def test_missing_table_is_refused(tmp_path, vocab):
    with pytest.raises(InputError, match="no Delta table"):
        prepare(*train_setup(str(tmp_path / "nowhere"), vocab))


def test_labels_outside_0_1_are_refused(tmp_path, vocab):
    path = write_delta(tmp_path / "enc", make_encoded(20, label=[0, 1, 2, 1] * 5))
    with pytest.raises(InputError, match=r"column 'label' must be 0 or 1; found \[2\]"):
        prepare(*train_setup(path, vocab))


def test_ids_beyond_the_vocabulary_are_refused(tmp_path, vocab):
    path = write_delta(tmp_path / "enc", make_encoded(50, c1_offset=5))
    with pytest.raises(InputError, match="column 'C1' has id 4[0-4] but the vocabulary .* 40 rows"):
        prepare(*train_setup(path, vocab))


def test_a_vocabulary_without_the_feature_is_a_mismatch(tmp_path):
    sizes = {k: v for k, v in VOCAB.items() if k != "C2"}
    vocab = write_delta(tmp_path / "vocab", [make_vocab(sizes)])
    path = write_delta(tmp_path / "enc", make_encoded(50))
    with pytest.raises(InputError, match="column 'C2' .* table 'C2' at 2 rows"):
        prepare(*train_setup(path, vocab))


def test_hashed_layouts_need_the_hash_columns(tmp_path, vocab):
    path = write_delta(tmp_path / "enc", [t.drop_columns(["C2_hash"]) for t in make_encoded(50)])
    with pytest.raises(InputError, match="'C2_hash'"):
        prepare(*train_setup(path, vocab, layout={"kind": "unified", "total_rows": 64}))


def test_tables_over_the_memory_budget_are_refused(tiny_tables):
    with pytest.raises(ConfigError, match=r"max_embedding_bytes=1000.*'C1' \(40 x 8\)"):
        prepare(*train_setup(*tiny_tables, max_embedding_bytes=1000))


def test_sharding_types_the_cpu_lacks_are_refused(tiny_tables):
    with pytest.raises(ConfigError, match=r"sharding_types\['C1'\]: \['row_wise'\] not offered on CPU"):
        prepare(*train_setup(*tiny_tables, sharding_types={"C1": ["row_wise"]}))


def test_fused_adam_on_cpu_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not offered by FBGEMM on CPU"):
        train_config(embedding_optimizer="adam")


def test_the_job_exits_2_and_names_the_column(tmp_path, vocab, capsys):
    from ctr_tables import SCHEMA_FLAGS, train_job_main

    from core.cli import run

    main = train_job_main()

    path = write_delta(tmp_path / "enc", make_encoded(20, label=[0, 3] * 10))
    (tmp_path / "empty.yaml").write_text("{}\n")
    code = run(
        main,
        [
            "--config",
            str(tmp_path / "empty.yaml"),
            "--input",
            path,
            "--vocab",
            vocab,
            "--metrics-out",
            str(tmp_path / "m.json"),
            *SCHEMA_FLAGS,
            "--set",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        ],
    )
    assert code == 2
    assert "column 'label' must be 0 or 1" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_a_missing_oracle_table_fails_before_training(tiny_tables, tmp_path):
    with pytest.raises(InputError, match="oracle: no Delta table"):
        prepare(*train_setup(*tiny_tables, oracle=str(tmp_path / "no_oracle")))
