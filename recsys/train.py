"""CTR training job on ranks: checks in the calling process, then :func:`train_rank` on every rank.

``run_training(cfg)`` is what the job calls: it checks the inputs, the checkpoint a resume would
continue, and (when it spawns the ranks itself) this host's cores and memory in the calling
process, so bad input fails before any rank starts; then it runs :func:`train_rank` in this process
(under torchrun or TorchDistributor, or when ``world_size`` is 1) or in ``world_size`` spawned ranks.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import torch

from core.train_config import TrainConfig, TrainInputs
from recsys.data.checks import InputSummary, check_inputs, check_memory_budget
from recsys.distributed.launch import (
    admit,
    process_group,
    resolve_backend,
    single_rank_env,
    spawn,
    under_launcher,
)
from recsys.distributed.sharding import plan_summary, sharding_constraints
from recsys.metrics import auc_logloss
from recsys.optembed_train import optembed_rank
from recsys.results import OptEmbedResult, TrainResult, read_result, write_result
from recsys.trainer import CTRTrainer, ValidHook, check_resume, make_run_layout, oracle_auc

log = logging.getLogger(__name__)


def train_rank(
    cfg: TrainConfig, summary: InputSummary, on_valid: ValidHook | None = None
) -> TrainResult | OptEmbedResult | None:
    """The whole run on one rank (environment set by a launcher); rank 0 returns (and writes) the result.

    ``on_valid`` is called on rank 0 after each validation (``train.eval_every``); True stops the run (pruned).
    """
    backend = resolve_backend(cfg.backend, cfg.device)
    torch.set_num_threads(cfg.num_threads or int(os.environ.get("OMP_NUM_THREADS", 1)))
    if cfg.optembed.enabled:
        return optembed_rank(cfg, summary, backend)
    with process_group(backend, cfg.device) as (rank, world, device):
        trainer = CTRTrainer(cfg, summary, rank=rank, world_size=world, device=device, on_valid=on_valid).setup()
        resumed = cfg.resume and trainer.restore()
        started = time.perf_counter()
        trained = trainer.train()
        best = trainer.keep_best()  # eval_every: the best validation's weights are the model from here on
        valid = best or (trainer.evaluate("valid") if cfg.split.valid_fraction > 0 else None)
        test_out = trainer.predict_split("test")
        if cfg.checkpoint_dir:
            trainer.save()
        if cfg.export_path:
            trainer.export(cfg.export_path)
        if rank != 0:
            return None
        probs, labels, ids = test_out
        test = auc_logloss(labels, probs)
        layout = trainer.layout_
        result = TrainResult(
            test_auc=test["auc"],
            test_logloss=test["logloss"],
            test_rows=int(len(labels)),
            valid_auc=valid and valid.auc,
            valid_logloss=valid and valid.logloss,
            oracle_test_auc=oracle_auc(summary.inputs.oracle, ids, labels) if summary.inputs.oracle else None,
            embedding_params=layout.embedding_params(),
            embedding_bytes=layout.embedding_bytes(cfg.embedding_optimizer),
            examples_per_second=trained["examples_per_second"],
            train_seconds=trained["seconds"],
            wall_seconds=time.perf_counter() - started,
            steps=trainer.progress_["global_step"],
            final_loss=trainer.loss_history_[-1] if trainer.loss_history_ else None,
            loss_history=trainer.loss_history_,
            valid_curve=trainer.valid_curve_,
            best_step=best and best.step,
            stopped_early=trainer.stopped_early_,
            pruned=trainer.pruned_,
            layout=layout.kind,
            layout_config=cfg.layout.model_dump(),
            tables={t.name: [t.num_embeddings, t.embedding_dim] for t in layout.tables},
            feature_widths=layout.feature_widths,
            model=cfg.model.kind,
            world_size=world,
            backend=backend,
            device=cfg.device,
            sharding_plan=plan_summary(trainer.plan_),
            split=trainer.split_record_,
            input=summary.inputs.encoded,
            input_version=summary.input_version,
            vocab=summary.inputs.vocab,
            vocab_version=summary.vocab_version,
            embeddings=summary.graph and summary.graph.path,
            embeddings_version=summary.graph and summary.graph.version,
            graph_features=summary.graph.features if summary.graph else {},
            resumed=bool(resumed),
            seed=cfg.seed,
        )
        if cfg.metrics_out:
            write_result(cfg.metrics_out, result)
        return result


def _spawned_rank(cfg: TrainConfig, summary: InputSummary, result_path: str, on_valid: ValidHook | None) -> None:
    result = train_rank(cfg, summary, on_valid if int(os.environ.get("RANK", "0")) == 0 else None)
    if result is not None:
        write_result(result_path, result)


def prepare(cfg: TrainConfig, inputs: TrainInputs) -> InputSummary:
    """Every check that can fail before training: data, vocabulary, memory budget, sharding, resume fingerprint.

    Under a launcher every rank runs it and every rank raises alike (same inputs, same checkpoint).
    """
    summary = check_inputs(cfg, inputs)
    layout = make_run_layout(cfg, summary)
    check_memory_budget(layout, cfg.embedding_optimizer, cfg.max_embedding_bytes)
    sharding_constraints([t.name for t in layout.tables], cfg.sharding_types, cfg.device)
    check_resume(cfg, summary, int(os.environ["WORLD_SIZE"]) if under_launcher() else cfg.world_size)
    return summary


def run_training(
    cfg: TrainConfig, inputs: TrainInputs, on_valid: ValidHook | None = None
) -> TrainResult | OptEmbedResult | None:
    """Check inputs here, then train on ``cfg.world_size`` ranks; returns rank 0's result (None on other ranks).

    ``on_valid`` (picklable when ranks are spawned) sees rank 0's validations: see :func:`train_rank`.
    """
    summary = prepare(cfg, inputs)
    if under_launcher():
        return train_rank(cfg, summary, on_valid)
    need = make_run_layout(cfg, summary).embedding_bytes(cfg.embedding_optimizer)["total"]
    admit(cfg.world_size, cfg.device, need, cfg.force)
    if cfg.world_size == 1:
        with single_rank_env():
            return train_rank(cfg, summary, on_valid)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "result.json")
        spawn(_spawned_rank, (cfg, summary, path, on_valid), cfg.world_size)
        return read_result(path)
