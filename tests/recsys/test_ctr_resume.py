"""Resuming from a checkpoint: only the same run may continue (fingerprint), and its whole loss history survives.

One 1-rank run (seed 7, 3 steps) writes a checkpoint into a module tmp dir; each test resumes from
it with one thing changed. A refused resume fails in the calling process, before any rank starts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ctr_tables import make_encoded, make_vocab, train_setup, write_delta

from core.errors import ConfigError
from recsys.distributed.checkpoint import RUN_FILE, latest_checkpoint
from recsys.train import run_training


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """(tables root, first run's result, its checkpoint folder): 3 steps with seed 7."""
    root = tmp_path_factory.mktemp("resume")
    encoded, vocab = write_delta(root / "encoded", make_encoded()), write_delta(root / "vocab", [make_vocab()])
    result = run_training(*setup(encoded, vocab, root / "ckpt", max_steps=3))
    return (encoded, vocab), result, latest_checkpoint(str(root / "ckpt"))


def setup(encoded, vocab, ckpt, **overrides):
    return train_setup(encoded, vocab, **{"seed": 7, "checkpoint_dir": str(ckpt), **overrides})


def resume(first, tmp_path, **overrides):
    """Resume a copy of the first run's checkpoint with ``overrides``; returns the result."""
    (encoded, vocab), _, path = first
    ckpt = tmp_path / "ckpt"
    shutil.copytree(Path(path).parent, ckpt)
    return run_training(*setup(encoded, vocab, ckpt, resume=True, **overrides))


def test_the_checkpoint_records_the_fingerprint_field_by_field(first):
    _, result, path = first
    run = json.loads((Path(path) / RUN_FILE).read_text())
    fp = run["fingerprint"]
    assert fp["train.seed"] == 7 and fp["train.split.kind"] == "random" and fp["train.split.test_fraction"] == 0.2
    assert fp["train.world_size"] == 1
    assert fp["tables.encoded.version"] == result.input_version and fp["tables.vocab.version"] == result.vocab_version
    assert "train.checkpoint_dir" not in fp and "train.max_steps" not in fp  # run control, not the model
    assert run["loss_history"] == result.loss_history and len(result.loss_history) == 3


def test_resuming_with_another_seed_is_refused_naming_the_seed_and_both_values(first, tmp_path):
    with pytest.raises(
        ConfigError, match=r"cannot resume from .*step_3: train\.seed is 8 but the checkpoint was written with 7$"
    ):
        resume(first, tmp_path, seed=8, max_steps=6)


def test_resuming_with_another_split_is_refused_naming_the_split_field(first, tmp_path):
    # a different test share would move test rows into training
    with pytest.raises(
        ConfigError, match=r"train\.split\.test_fraction is 0\.3 but the checkpoint was written with 0\.2"
    ):
        resume(first, tmp_path, split={"test_fraction": 0.3}, max_steps=6)


def test_resuming_on_another_number_of_ranks_is_refused_before_any_rank_starts(first, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.world_size is 2 but the checkpoint was written with 1"):
        resume(first, tmp_path, world_size=2, max_steps=6)


def test_resuming_after_the_input_table_changed_is_refused_naming_its_version(tmp_path):
    # given a checkpoint of a run over version 1 of the encoded table; when the table gets a new version
    encoded, vocab = write_delta(tmp_path / "encoded", make_encoded()), write_delta(tmp_path / "vocab", [make_vocab()])
    run_training(*setup(encoded, vocab, tmp_path / "ckpt", max_steps=2))
    write_delta(tmp_path / "encoded", make_encoded(seed=1, num_files=1))
    # then
    with pytest.raises(ConfigError, match=r"tables\.encoded\.version is 2 but the checkpoint was written with 1"):
        run_training(*setup(encoded, vocab, tmp_path / "ckpt", resume=True, max_steps=4))


def test_a_checkpoint_without_a_fingerprint_is_refused(first, tmp_path):
    (encoded, vocab), _, path = first
    ckpt = tmp_path / "ckpt"
    shutil.copytree(Path(path).parent, ckpt)
    (ckpt / "step_3" / RUN_FILE).unlink()
    with pytest.raises(ConfigError, match=r"cannot resume from .*step_3: it has no run\.json"):
        run_training(*setup(encoded, vocab, ckpt, resume=True, max_steps=6))


def test_a_resumed_run_reports_the_loss_of_every_step_since_the_start(first, tmp_path):
    # given the first run's 3 steps; when the same run resumes to step 6 (more steps is run control)
    (encoded, vocab), before, _ = first
    resumed = resume(first, tmp_path, max_steps=6, eval_batch_size=32)
    straight = run_training(*setup(encoded, vocab, tmp_path / "straight", max_steps=6))
    # then
    assert resumed.resumed and resumed.steps == 6
    assert resumed.loss_history[:3] == before.loss_history
    assert resumed.loss_history == straight.loss_history and resumed.final_loss == straight.final_loss
