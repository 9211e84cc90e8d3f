"""Hand CTR training to Spark's ``TorchDistributor`` (the only module in ``recsys`` that imports pyspark).

``local_mode=True`` runs the ranks as torchrun processes on the driver; ``False`` runs them on the
executors in a barrier stage (each executor must see the encoded and vocabulary tables at the same path).
"""

from __future__ import annotations

from pathlib import Path

from core.train_config import TrainConfig, TrainInputs

GPU_DISCOVERY_SCRIPT = str(Path(__file__).with_name("gpu_discovery.sh"))


def distributor_conf(cfg: TrainConfig) -> dict[str, str]:
    """The Spark settings TorchDistributor needs to hand ``cfg.world_size`` ranks a GPU each (empty on CPU).

    Local mode takes the GPUs from the driver (``spark.driver.resource.gpu.*``, found by
    :data:`GPU_DISCOVERY_SCRIPT`); on a cluster each barrier task asks for one GPU
    (``spark.task.resource.gpu.amount``) of executors that have them. The caller's own
    ``spark.conf`` wins over these, and spark-submit's over both.
    """
    if cfg.device != "cuda":
        return {}
    if cfg.spark_local_mode:
        return {
            "spark.driver.resource.gpu.amount": str(cfg.world_size),
            "spark.driver.resource.gpu.discoveryScript": GPU_DISCOVERY_SCRIPT,
        }
    return {
        "spark.task.resource.gpu.amount": "1",
        "spark.executor.resource.gpu.amount": "1",
        "spark.executor.resource.gpu.discoveryScript": GPU_DISCOVERY_SCRIPT,
    }


def _distributed_entry(cfg_json: str, inputs_json: str, on_valid=None):
    """Runs in each rank that TorchDistributor starts (RANK/WORLD_SIZE/MASTER_* already set)."""
    import os

    from recsys.train import prepare, train_rank

    cfg = TrainConfig.model_validate_json(cfg_json)
    hook = on_valid if os.environ.get("RANK", "0") == "0" else None
    return train_rank(cfg, prepare(cfg, TrainInputs.model_validate_json(inputs_json)), hook)


def train_on_spark(cfg: TrainConfig, inputs: TrainInputs, on_valid=None):
    """Run ``train_rank`` on ``cfg.world_size`` ranks through TorchDistributor; returns rank 0's result.

    Needs an active SparkSession (the job opens one with ``embeddings.spark.spark_session``).
    ``on_valid``: see :func:`recsys.train.train_rank` (pickled to the ranks with the function).
    """
    from pyspark.ml.torch.distributor import TorchDistributor

    from recsys.train import prepare

    prepare(cfg, inputs)  # bad input fails here, on the driver, before any rank starts
    distributor = TorchDistributor(
        num_processes=cfg.world_size, local_mode=cfg.spark_local_mode, use_gpu=cfg.device == "cuda"
    )
    result = distributor.run(_distributed_entry, cfg.model_dump_json(), inputs.model_dump_json(), on_valid)
    if result is None and cfg.metrics_out:  # local mode may not hand rank 0's return value back
        from recsys.results import read_result

        result = read_result(cfg.metrics_out)
    return result
