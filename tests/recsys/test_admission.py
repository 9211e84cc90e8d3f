"""Admission control: a run this host cannot hold is refused before any rank is spawned (exit 2), unless forced."""

from __future__ import annotations

import logging

import pytest
from ctr_tables import SCHEMA_FLAGS, train_job_main, train_setup

from core.cli import run
from core.errors import ConfigError
from recsys.distributed.launch import HostCapacity, admit

GIB = 2**30
HOST = HostCapacity(cpus=2, gpus=1, mem_available=4 * GIB)


def test_more_cpu_ranks_than_usable_cores_are_refused_naming_the_value_and_the_limit():
    with pytest.raises(ConfigError, match=r"train\.world_size=3 exceeds the 2 CPU core\(s\).*--force"):
        admit(3, "cpu", 0, force=False, host=HOST)


def test_more_cuda_ranks_than_devices_are_refused_naming_the_value_and_the_limit():
    with pytest.raises(ConfigError, match=r"train\.world_size=2 exceeds the 1 CUDA device\(s\)"):
        admit(2, "cuda", 0, force=False, host=HOST)


def test_embedding_tables_larger_than_available_memory_are_refused_with_the_estimate_and_the_limit():
    with pytest.raises(ConfigError, match=r"need about 5\.00 GiB .* has 4\.00 GiB available \(MemAvailable\)"):
        admit(1, "cpu", 5 * GIB, force=False, host=HOST)


def test_a_run_within_the_host_is_admitted():
    admit(2, "cpu", 4 * GIB, force=False, host=HOST)
    admit(1, "cuda", 100 * GIB, force=False, host=HOST)  # tables live on the GPU: host RAM is not their limit


def test_force_runs_anyway_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        admit(3, "cpu", 5 * GIB, force=True, host=HOST)
    assert "train.world_size=3 exceeds" in caplog.text and "need about 5.00 GiB" in caplog.text
    assert "running anyway (train.force)" in caplog.text


def test_the_probe_reads_this_hosts_cores_and_memory():
    host = HostCapacity.probe()
    assert host.cpus >= 1 and host.mem_available is not None and host.mem_available > 0


def test_the_train_job_refuses_too_many_ranks_with_exit_2_and_one_error_line(
    tiny_tables, tmp_path, capsys, monkeypatch
):
    # given a host with one usable core
    monkeypatch.setattr(HostCapacity, "probe", classmethod(lambda cls: HostCapacity(1, 0, 64 * GIB)))
    encoded, vocab = tiny_tables
    (tmp_path / "empty.yaml").write_text("{}\n")
    argv = ["--config", str(tmp_path / "empty.yaml"), "--input", encoded, "--vocab", vocab, *SCHEMA_FLAGS]
    argv += ["--set", "mlflow.enabled=false", "--world-size", "2", "--no-progress"]
    # when
    code = run(train_job_main(), argv)
    # then
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (
        "error: train.world_size=2 exceeds the 1 CPU core(s) this process may use; "
        "pass --force (train.force) to run anyway"
    )


def test_under_a_launcher_the_ranks_placement_is_not_checked(tiny_tables, monkeypatch):
    # given torchrun's environment for 4096 ranks, and a rank function that only says it ran
    import recsys.train

    monkeypatch.setattr(recsys.train, "train_rank", lambda cfg, summary, on_valid=None: "rank ran")
    for key, value in dict(RANK="0", WORLD_SIZE="4096", MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(key, value)
    # when / then: no admission error; the launcher placed the ranks
    assert recsys.train.run_training(*train_setup(*tiny_tables, world_size=4096)) == "rank ran"
