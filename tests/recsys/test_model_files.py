"""Files the trainer writes: model files load weights-only (a tampered one is refused, not run), modes follow the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from core.errors import InputError
from core.train_config import TrainConfig, VocabLayoutConfig
from recsys.data.features import FeatureSpec
from recsys.export import FORMAT, load_exported, save_exported
from recsys.modules.ctr import build_model
from recsys.modules.layouts import make_layout
from recsys.modules.optembed import PrunedLayout, build_optembed_model
from recsys.optembed_train import load_supernet, save_supernet
from recsys.results import EvalResult, SupernetResult, write_result

SPEC = FeatureSpec(dense=("I1",), sparse=("C1", "tags"), multi_valued=frozenset({"tags"}))


def tiny_model():
    """(cfg, layout, state_dict) of an untrained 2-feature DLRM, built by hand (no training)."""
    cfg = TrainConfig(embedding_dim=4, model={"kind": "dlrm", "dense_arch": [4], "over_arch": [4]})
    layout = make_layout(VocabLayoutConfig(), list(SPEC.sparse), {"C1": 6, "tags": 5}, 4, cfg.seed)
    return cfg, layout, build_model(cfg, layout, SPEC.num_dense_inputs, seed=0).state_dict()


def encoded_rows() -> pa.Table:
    return pa.table(
        {
            "I1": pa.array([1.0, None, 7.0]),
            "C1": pa.array([2, 5, 0], pa.int32()),
            "tags": pa.array([[2, 3], [], None], pa.list_(pa.int32())),
        }
    )


class WritesAFile:
    """A pickled object that, when unpickled, writes ``path`` (what a tampered model file could do)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "code ran"))


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after it)."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def test_an_exported_model_reloads_and_scores_like_the_weights_it_was_saved_from(tmp_path):
    # given
    cfg, layout, state = tiny_model()
    save_exported(str(tmp_path / "model.pt"), cfg, layout, SPEC, state)
    # when
    model = load_exported(str(tmp_path / "model.pt"))
    # then: the file is tensors + plain data (weights-only loadable), and the weights are the same
    torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(model.model.state_dict()[k], v) for k, v in state.items())
    assert model.predict(encoded_rows()).shape == (3,)


def test_an_optembed_model_keeps_its_id_remap_through_a_weights_only_load(tmp_path):
    # given a pruned layout: C1 keeps rows 0, 1, 3 (row 2 pruned -> the OOV row)
    cfg, base, _ = tiny_model()
    keep = [np.array([True, True, False, True, False, False]), np.ones(5, bool)]
    pruned = PrunedLayout.from_masks(base, keep, [4, 4])
    state = build_optembed_model(cfg, pruned, SPEC.num_dense_inputs, "cpu", 0, supernet=False).state_dict()
    save_exported(str(tmp_path / "model.pt"), cfg, pruned, SPEC, state)
    # when
    model = load_exported(str(tmp_path / "model.pt"))
    # then
    assert [r.tolist() for r in model.layout.remaps] == [r.tolist() for r in pruned.remaps]
    assert model.layout.oov_rows == pruned.oov_rows


def test_a_model_file_that_pickles_code_is_refused_without_running_it(tmp_path):
    # given a model file whose config unpickles into a call that writes a file
    marker = tmp_path / "pwned"
    torch.save({"format": FORMAT, "config": WritesAFile(marker), "state_dict": {}}, tmp_path / "model.pt")
    # when / then
    with pytest.raises(
        InputError, match=r"model file .*model\.pt: refused to load: it pickles getattr, not only tensors"
    ):
        load_exported(str(tmp_path / "model.pt"))
    assert not marker.exists()


def test_an_optembed_stage_file_that_pickles_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"keeps": [], "initial_state": WritesAFile(marker)}, tmp_path / "supernet.pt")
    with pytest.raises(InputError, match=r"optembed supernet file .*supernet\.pt: refused to load"):
        load_supernet(tmp_path / "supernet.pt")
    assert not marker.exists()


def test_the_optembed_stage_file_round_trips_masks_states_and_metrics(tmp_path):
    # given
    keeps = [np.array([True, False, True]), np.ones(2, bool)]
    state = {"w": torch.arange(6.0).reshape(3, 2)}
    metrics = SupernetResult(thresholds_before=[0.0], thresholds=[0.5], rows_kept={"C1": 2}, test_auc=0.75)
    # when
    save_supernet(tmp_path / "supernet.pt", keeps, state, state, [0.5], metrics)
    saved = load_supernet(tmp_path / "supernet.pt")
    # then
    assert [k.dtype for k in saved["keeps"]] == [np.bool_, np.bool_]
    assert [k.tolist() for k in saved["keeps"]] == [k.tolist() for k in keeps]
    assert torch.equal(saved["trained_state"]["w"], state["w"])
    assert SupernetResult(**saved["metrics"]) == metrics


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=["022", "027", "002"])
def test_model_and_metrics_files_get_the_mode_open_would_give(tmp_path, umask, mask, mode):
    # given
    umask(mask)
    cfg, layout, state = tiny_model()
    # when
    save_exported(str(tmp_path / "model.pt"), cfg, layout, SPEC, state)
    write_result(tmp_path / "metrics.json", EvalResult(auc=0.5, logloss=0.7, rows=3))
    save_supernet(
        tmp_path / "supernet.pt",
        [np.ones(2, bool)],
        {},
        {},
        [0.0],
        SupernetResult(thresholds_before=[0.0], thresholds=[0.0]),
    )
    # then
    for name in ("model.pt", "metrics.json", "supernet.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "model.pt", "supernet.pt"]  # no temp left
