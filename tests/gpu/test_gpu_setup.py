"""The GPU install and launch settings, checked on any machine: the GPU lock, `make GPU=1`, Spark's GPU discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.train_config import TrainConfig
from recsys.launch_spark import GPU_DISCOVERY_SCRIPT, distributor_conf

REPO = Path(__file__).resolve().parents[2]


def pins(name: str) -> set[str]:
    return {line.strip() for line in (REPO / "requirements" / name).read_text().splitlines() if "==" in line}


def test_the_gpu_lock_is_the_cpu_lock_with_fbgemms_cuda_build_at_the_same_version():
    cpu, gpu = pins("lock.txt"), pins("lock-gpu.txt")
    (only_cpu,), (only_gpu,) = cpu - gpu, gpu - cpu
    assert only_cpu.split("==")[0] == "fbgemm_gpu-cpu" and only_gpu.split("==")[0] == "fbgemm_gpu"
    assert only_cpu.split("==")[1] == only_gpu.split("==")[1]


@pytest.mark.parametrize(
    "flags, lock, removed",
    [([], "requirements/lock.txt", "fbgemm-gpu"), (["GPU=1"], "requirements/lock-gpu.txt", "fbgemm-gpu-cpu")],
)
def test_make_setup_installs_one_fbgemm_build_after_removing_the_other(flags, lock, removed):
    # -n prints the recipe without running it; -B as if the venv were out of date
    recipe = subprocess.run(
        ["make", "-n", "-B", "setup", *flags], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    lines = recipe.splitlines()
    uninstall = next(i for i, line in enumerate(lines) if "pip uninstall" in line)
    install = next(i for i, line in enumerate(lines) if f"-r {lock}" in line)
    assert removed in lines[uninstall].split() and uninstall < install


def test_on_the_cpu_torch_distributor_gets_no_gpu_settings():
    assert distributor_conf(TrainConfig(device="cpu", world_size=2)) == {}


def test_on_a_cluster_each_barrier_task_asks_for_one_gpu():
    conf = distributor_conf(TrainConfig(device="cuda", world_size=4, spark_local_mode=False))
    assert conf["spark.task.resource.gpu.amount"] == "1" and conf["spark.executor.resource.gpu.amount"] == "1"


def test_the_discovery_script_fails_where_there_is_no_nvidia_smi(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # bash is called by path; nvidia-smi is nowhere
    done = subprocess.run(["/bin/bash", GPU_DISCOVERY_SCRIPT], env=env, capture_output=True, text=True)
    assert done.returncode != 0


SESSION = textwrap.dedent(
    """
    import json, sys
    from pyspark.ml.torch.distributor import TorchDistributor
    from core.config import SparkConfig
    from core.train_config import TrainConfig
    from embeddings.spark import build_spark
    from recsys.launch_spark import distributor_conf

    cfg = TrainConfig(device="cuda", world_size=2, launcher="spark")
    spark = build_spark(SparkConfig(master="local[1]", shuffle_partitions=1, driver_memory="1g",
                                    checkpoint_dir=sys.argv[1], conf=distributor_conf(cfg)))
    gpus = list(spark.sparkContext.resources["gpu"].addresses)
    print(json.dumps({"gpus": gpus, "ranks": TorchDistributor(num_processes=2, local_mode=True).num_processes}))
    spark.stop()
    """
)


@pytest.mark.slow
def test_local_mode_spark_finds_the_drivers_gpus_and_torch_distributor_takes_them(tmp_path):
    # given a host whose nvidia-smi lists two GPUs (a stand-in for the driver tool, not for Spark)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    # when the job's session is built with the distributor's settings
    done = subprocess.run(
        [sys.executable, "-c", SESSION, str(tmp_path / "ckpt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # then Spark discovered both and TorchDistributor starts one rank per GPU
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"gpus": ["0", "1"], "ranks": 2}
