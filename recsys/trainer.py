"""One rank's CTR training state (:class:`CTRTrainer`): data share -> sharded model -> optimisers -> eval, save, export.

Variant trainers (``recsys.optembed_train``) subclass :class:`CTRTrainer` and override its hooks;
``recsys.train`` runs a whole job on its ranks.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from pydantic import BaseModel
from torch import nn
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from tqdm import tqdm

from core.encoding import hash_column
from core.errors import InputError
from core.train_config import TrainConfig
from recsys.data.batches import EncodedRows, batch_indices, encode_rows, make_batch
from recsys.data.checks import InputSummary
from recsys.data.features import ROW_INDEX, block_from_arrow, concat_blocks, select_rows, timestamps_us
from recsys.data.graph import init_rows, init_seed, load_graph_matrices
from recsys.data.reader import DeltaSource
from recsys.data.splits import SPLITS, random_split, time_cutoffs, time_split
from recsys.distributed.checkpoint import (
    CheckpointRun,
    check_resumable,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from recsys.distributed.sharding import (
    attach_embedding_optimizer,
    frozen_parameter,
    full_state_dict,
    load_full_state_dict,
    local_snapshot,
    restore_snapshot,
    shard_model,
    sharding_constraints,
)
from recsys.export import save_exported
from recsys.metrics import auc_logloss
from recsys.modules.ctr import build_model
from recsys.modules.layouts import EmbeddingLayout, make_layout, with_graph_features, with_wide
from recsys.results import EvalResult, SplitRecord, ValidPoint

log = logging.getLogger(__name__)

# Called on rank 0 after each validation with (its number from 1, the point); True stops the run as pruned.
ValidHook = Callable[[int, ValidPoint], bool]


def make_run_layout(cfg: TrainConfig, summary: InputSummary) -> EmbeddingLayout:
    """The run's layout: ``train.layout`` over the sparse features, the graph features the checks found, wide keys."""
    layout = make_layout(cfg.layout, list(summary.spec.sparse), summary.vocab_sizes, cfg.embedding_dim, cfg.seed)
    if summary.graph is not None:
        graph = {f: (r.mode, r.prefix) for f, r in summary.graph.features.items()}
        layout = with_graph_features(layout, graph, summary.graph.embedding_dim, summary.vocab_sizes)
    return with_wide(layout) if cfg.model.wide else layout


def lr_factor(step: int, total_steps: int, schedule) -> float:
    """The learning-rate factor of 0-based ``step`` of ``total_steps`` under ``schedule`` (an ``LRScheduleConfig``).

    Linear warm-up from ``1/warmup_steps`` to 1 over the first ``warmup_steps`` steps, then ``linear``
    or ``cosine`` decay from 1 to ``min_factor`` at the last step (``none``: 1).
    """
    warmup = schedule.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if schedule.decay == "none" or total_steps - warmup <= 1:
        return 1.0
    done = min(1.0, (step - warmup) / (total_steps - warmup - 1))
    shape = 1.0 - done if schedule.decay == "linear" else 0.5 * (1.0 + float(np.cos(np.pi * done)))
    return schedule.min_factor + (1.0 - schedule.min_factor) * shape


def graph_initial_state(
    cfg: TrainConfig, summary: InputSummary, layout: EmbeddingLayout, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` (a plain model's) with the graph features' rows: frozen tables = FastRP rows, init rows projected.

    ``init``: the rows of ids whose value has a node become :func:`~recsys.data.graph.init_rows`
    (a fixed projection seeded by ``train.seed`` and the feature, scaled to the RMS of TorchRec's
    default uniform(-sqrt(1/V), sqrt(1/V)) init, i.e. sqrt(1/V)/sqrt(3)); the other rows keep the default init.
    """
    if summary.graph is None:
        return state
    state = dict(state)
    matrices = load_graph_matrices(summary.graph, summary.inputs.vocab, summary.vocab_version, summary.vocab_sizes)
    configs = {c.name: c for c in layout.table_configs()}
    for g in layout.graph:
        matrix, found = matrices[g.feature]
        if g.key is not None:  # frozen: the graph table is the matrix itself
            state[f"ebc.embedding_bags.{g.key}.weight"] = torch.from_numpy(matrix)
            continue
        table = next(s.table for s in layout.sources if s.feature == g.feature)
        c = configs[table]
        lo, hi = c.get_weight_init_min(), c.get_weight_init_max()
        target = float(np.sqrt((lo * lo + lo * hi + hi * hi) / 3.0))  # RMS of uniform(lo, hi)
        key = f"ebc.embedding_bags.{table}.weight"
        weight = state[key].clone()
        rows = init_rows(matrix, found, layout.embedding_dim, init_seed(cfg.seed, g.feature), target)
        weight[torch.from_numpy(found)] = torch.from_numpy(rows)
        state[key] = weight
    return state


# TrainConfig fields (dotted below ``train``) that steer a run but do not shape the model it trains, so a
# resumed run may change them: how far to train, where and how ranks run, what gets written, guards.
RUN_CONTROL_FIELDS = frozenset(
    {
        "epochs",  # how far to train: resuming with more epochs or steps is how a run goes on
        "max_steps",
        "resume",
        "checkpoint_dir",
        "checkpoint_every",
        "export_path",
        "metrics_out",
        "progress",
        "force",
        "max_embedding_bytes",  # a guard, not a setting of the model
        "graph_min_coverage",  # a warning threshold
        "eval_every",  # when to look at the valid split and stop; a resumed run may look more often
        "early_stopping",
        "read_batch_rows",  # rows per read; the rows and their order are the same
        "eval_batch_size",
        "world_size",  # recorded as the number of ranks actually running (under torchrun: WORLD_SIZE)
        "num_threads",
        "device",
        "backend",
        "launcher",
        "spark_local_mode",
        "sharding_types",  # placement only: sharded == unsharded
        "optembed.work_dir",
        "optembed.stages",
        "optembed.baseline",
    }
)


def _config_fields(prefix: str, model: BaseModel, skip: frozenset[str], at: str = "") -> dict[str, Any]:
    """``{prefix.field: value}`` of a config, sub-configs flattened (``train.split.test_fraction``), as JSON data."""
    dumped = model.model_dump(mode="json")
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        rel = f"{at}{name}"
        if rel in skip:
            continue
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out.update(_config_fields(prefix, value, skip, f"{rel}."))
        else:
            out[f"{prefix}.{rel}"] = dumped[name]
    return out


def run_fingerprint(cfg: TrainConfig, summary: InputSummary, world_size: int) -> dict[str, Any]:
    """Field -> value of everything that shapes the trained model; a resumed run must match it field by field.

    That is the config less :data:`RUN_CONTROL_FIELDS` (seed and split included), the number of
    ranks (it decides each rank's data share), and the encoded and vocabulary tables: paths, the
    Delta versions read, and the columns used; with graph features also the FastRP table (path,
    version) and the node-id prefixes.
    """
    spec = summary.spec
    fields = _config_fields("train", cfg, RUN_CONTROL_FIELDS)
    if summary.graph is not None:  # only then, so fingerprints of runs without graph features keep their fields
        fields.update(
            {
                "tables.embeddings.path": summary.graph.path,
                "tables.embeddings.version": summary.graph.version,
                "graph.prefixes": {f: r.prefix for f, r in sorted(summary.graph.features.items())},
            }
        )
    fields.update(
        {
            "train.world_size": world_size,
            "tables.encoded.path": summary.inputs.encoded,
            "tables.encoded.version": summary.input_version,
            "tables.vocab.path": summary.inputs.vocab,
            "tables.vocab.version": summary.vocab_version,
            "schema.label": spec.label_col,
            "schema.id": spec.id_col,
            "schema.dense": list(spec.dense),
            "schema.categorical": list(spec.sparse),
        }
    )
    if cfg.split.kind == "time":
        fields["schema.time"] = summary.inputs.time_col
    return fields


def check_resume(cfg: TrainConfig, summary: InputSummary, world_size: int) -> str | None:
    """The checkpoint ``train.resume`` would continue (None: a fresh start); ConfigError if this run differs from it."""
    path = latest_checkpoint(cfg.checkpoint_dir) if cfg.resume and cfg.checkpoint_dir else None
    if path is not None:
        check_resumable(path, run_fingerprint(cfg, summary, world_size))
    return path


def load_rank_data(
    cfg: TrainConfig, summary: InputSummary, layout: EmbeddingLayout, rank: int, world_size: int
) -> tuple[dict[str, EncodedRows], SplitRecord]:
    """This rank's share of the encoded table, split into train/valid/test and mapped through ``layout``.

    Returns:
        ({split: rows}, the split record: kind, fractions, seed or time cutoffs).
    """
    spec = summary.spec
    src = DeltaSource(summary.inputs.encoded, what="input")
    cols = [spec.label_col, *spec.dense, *spec.sparse] + ([] if spec.id_col == ROW_INDEX else [spec.id_col])
    if layout.uses_hash:
        cols += [hash_column(f) for f in spec.sparse]
    time_col = summary.inputs.time_col if cfg.split.kind == "time" else None
    if time_col:
        cols.append(time_col)
    blocks = [
        block_from_arrow(t, spec, with_hash=layout.uses_hash, time_col=time_col)
        for t in src.iter_tables(
            cols, rank, world_size, cfg.read_batch_rows, row_index=ROW_INDEX if spec.id_col == ROW_INDEX else None
        )
    ]
    raw = concat_blocks(blocks, spec)
    split = cfg.split
    common = dict(
        kind=split.kind,
        valid_fraction=split.valid_fraction,
        test_fraction=split.test_fraction,
        input_version=src.version,
    )
    if split.kind == "random":
        code = random_split(raw.event_id, cfg.seed, split.valid_fraction, split.test_fraction)
        record = SplitRecord(**common, seed=cfg.seed)
    else:
        all_ts = timestamps_us(src.read_column(time_col))
        valid_start, test_start = time_cutoffs(all_ts, split.valid_fraction, split.test_fraction)
        code = time_split(raw.ts, valid_start, test_start)
        record = SplitRecord(**common, time_col=time_col, valid_start=_iso(valid_start), test_start=_iso(test_start))
    data = {name: encode_rows(select_rows(raw, np.flatnonzero(code == i)), layout) for i, name in enumerate(SPLITS)}
    return data, record


DENSE_OPTIMIZERS = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}


def keyed_optimizer(
    params: dict[str, torch.Tensor], name: str, lr: float, weight_decay: float = 0.0
) -> KeyedOptimizerWrapper:
    """A TorchRec ``KeyedOptimizerWrapper`` of ``torch.optim.<name>`` over ``params`` (checkpointable by key)."""
    cls = DENSE_OPTIMIZERS[name]
    return KeyedOptimizerWrapper(params, lambda ps: cls(ps, lr=lr, weight_decay=weight_decay))


def _iso(us: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)).isoformat()


def _allreduce(value: float, op) -> float:
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=op)
    return float(t.item())


class CTRTrainer:
    """One rank's training state: the sharded model, its optimisers and its data share.

    Build with :meth:`setup` (collective: every rank must call it), then :meth:`train`,
    :meth:`evaluate`, :meth:`save`/:meth:`restore`, :meth:`export`.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        summary: InputSummary,
        *,
        rank: int,
        world_size: int,
        device: torch.device,
        on_valid: ValidHook | None = None,
    ):
        self.cfg = cfg
        self.summary = summary
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.on_valid = on_valid

    def setup(
        self, data: dict[str, EncodedRows] | None = None, split_record: SplitRecord | None = None
    ) -> "CTRTrainer":
        cfg = self.cfg
        self.layout_ = self._make_layout()
        if data is None:
            data, split_record = load_rank_data(cfg, self.summary, self.layout_, self.rank, self.world_size)
        self.data_, self.split_record_ = data, split_record
        plain = self._build_model("cpu", seed=cfg.seed)
        meta = self._build_model("meta")
        frozen = tuple(self.layout_.graph_keys)
        attach_embedding_optimizer(meta, cfg.embedding_optimizer, cfg.embedding_lr, frozen)
        constraints = sharding_constraints([t.name for t in self.layout_.tables], cfg.sharding_types, cfg.device)
        self.model_, self.plan_ = shard_model(
            meta, world_size=self.world_size, device=self.device, constraints=constraints, batch_size=cfg.batch_size
        )
        load_full_state_dict(self.model_, self._initial_state(plain))
        del plain
        self.optimizer_ = self._optimizer()
        self.progress_ = {"epoch": 0, "step_in_epoch": 0, "global_step": 0}
        self.loss_history_: list[float] = []  # every step's loss of the run, restored ones included
        self.valid_curve_: list[ValidPoint] = []  # train.eval_every's validations (since the start or a resume)
        self.best_: tuple[ValidPoint, dict] | None = None  # the best validation and this rank's weights then
        self.stopped_early_ = False
        self.pruned_ = False  # the on_valid hook (a tuning study's pruner) stopped the run
        if self.rank == 0:
            log.info("sharding plan:\n%s", self.plan_)
        return self

    # Hooks a variant trainer (e.g. recsys.optembed_train) overrides: layout, model, initial weights, loss.
    def _make_layout(self) -> EmbeddingLayout:
        return make_run_layout(self.cfg, self.summary)

    def _build_model(self, device: str, seed: int | None = None) -> nn.Module:
        return build_model(self.cfg, self.layout_, self.summary.spec.num_dense_inputs, device, seed=seed)

    def _initial_state(self, plain: nn.Module) -> dict[str, torch.Tensor]:
        return graph_initial_state(self.cfg, self.summary, self.layout_, plain.state_dict())

    def _loss(self, logits: torch.Tensor, batch, loss_fn) -> torch.Tensor:
        loss = loss_fn(logits, batch.labels)
        penalty = getattr(self.model_.module, "penalty_", None)  # train.embedding_l2 of this forward
        return loss if penalty is None else loss + penalty

    def _dense_params(self) -> dict[str, torch.Tensor]:
        """The parameters the fused (in-backward) embedding optimizer does not update, less the frozen graph tables."""
        frozen = tuple(self.layout_.graph_keys)
        return {
            n: p
            for n, p in in_backward_optimizer_filter(self.model_.named_parameters())
            if not frozen_parameter(n, frozen)
        }

    def _optimizer(self):
        cfg = self.cfg
        self.dense_optimizer_ = keyed_optimizer(
            self._dense_params(), cfg.dense_optimizer, cfg.dense_lr, cfg.dense_weight_decay
        )
        combined = CombinedOptimizer([self.model_.fused_optimizer, self.dense_optimizer_])
        # what train.lr_schedule scales: the fused kernels' groups (read at zero_grad) and the dense optimizer's
        # (data_parallel tables run the dense kernel and are in the dense optimizer)
        self.lr_groups_ = [(g, g["lr"]) for g in combined.param_groups]
        return combined

    def _set_lr(self, step: int, total_steps: int) -> None:
        """Scale every optimizer's learning rate for ``step`` by :func:`lr_factor` of its starting rate."""
        schedule = self.cfg.lr_schedule
        if schedule.warmup_steps == 0 and schedule.decay == "none":
            return
        factor = lr_factor(step, total_steps, schedule)
        for group, base in self.lr_groups_:
            group["lr"] = base * factor

    def total_steps(self) -> int:
        """The run's last global step: ``epochs`` x steps per epoch, or ``max_steps`` if fewer (collective)."""
        total = self.cfg.epochs * self.steps_per_epoch()
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    # ------------------------------------------------------------------ validation while training
    def validate(self) -> Literal["early_stopping", "pruned"] | None:
        """Evaluate the valid split at this step, keep the weights if best; says why to stop, if it should.

        Collective: rank 0's AUC (and its ``on_valid`` hook's answer) is broadcast so every rank takes the
        same decision and snapshots its own shards (:func:`~recsys.distributed.sharding.local_snapshot`:
        no gather, one copy of the local weights).
        """
        ev = self.evaluate("valid")
        step = self.progress_["global_step"]
        prune = False
        if ev is not None and self.on_valid is not None:  # rank 0
            prune = bool(
                self.on_valid(len(self.valid_curve_) + 1, ValidPoint(step=step, auc=ev.auc, logloss=ev.logloss))
            )
        sent = [None if ev is None else (ev.auc, ev.logloss, prune)]
        dist.broadcast_object_list(sent, src=0)
        auc, logloss, prune = sent[0]
        point = ValidPoint(step=step, auc=auc, logloss=logloss)
        self.valid_curve_.append(point)
        es = self.cfg.early_stopping
        min_delta = es.min_delta if es else 0.0
        if self.best_ is None or auc > self.best_[0].auc + min_delta:
            self.best_ = (point, local_snapshot(self.model_))
        if self.rank == 0:
            log.info(
                "step %d: valid AUC %.5f logloss %.5f (best %.5f at step %d)",
                point.step,
                auc,
                logloss,
                self.best_[0].auc,
                self.best_[0].step,
            )
        if prune:
            return "pruned"
        if es is None:
            return None
        since_best = sum(1 for q in self.valid_curve_ if q.step > self.best_[0].step)
        return "early_stopping" if since_best >= es.patience else None

    def keep_best(self) -> ValidPoint | None:
        """After training with ``eval_every``: validate the last step if not yet, then load the best weights (collective)."""
        if not self.cfg.eval_every:
            return None
        if not self.valid_curve_ or self.valid_curve_[-1].step != self.progress_["global_step"]:
            self.validate()
        best, snapshot = self.best_
        if best.step != self.progress_["global_step"]:
            restore_snapshot(self.model_, snapshot)
        self.best_ = (best, {})  # the copy is no longer needed
        return best

    # ------------------------------------------------------------------ training
    def steps_per_epoch(self) -> int:
        local = len(self.data_["train"]) // self.cfg.batch_size
        steps = int(_allreduce(local, dist.ReduceOp.MIN))
        if steps == 0:
            raise InputError(
                f"a rank has fewer than batch_size={self.cfg.batch_size} training rows "
                f"({len(self.data_['train'])} on rank {self.rank}); lower train.batch_size"
            )
        return steps

    def train(self, max_steps: int | None = None) -> dict:
        """Train until ``cfg.epochs`` or ``max_steps`` global steps; returns this call's losses and examples/second.

        Every loss is also appended to ``loss_history_``, which a :meth:`restore` starts with the checkpoint's.
        """
        cfg = self.cfg
        max_steps = max_steps if max_steps is not None else cfg.max_steps
        steps = self.steps_per_epoch()
        loss_fn = nn.BCEWithLogitsLoss()
        self.model_.train()
        losses: list[float] = []
        examples, seconds = 0, 0.0
        p = self.progress_
        total = self.total_steps()
        stop = False
        while not stop and p["epoch"] < cfg.epochs and (max_steps is None or p["global_step"] < max_steps):
            batches = batch_indices(
                len(self.data_["train"]), cfg.batch_size, seed=cfg.seed, epoch=p["epoch"], rank=self.rank
            )[:steps]
            bar = tqdm(
                total=steps,
                initial=p["step_in_epoch"],
                desc=f"epoch {p['epoch']}",
                unit="batch",
                disable=not (cfg.progress and self.rank == 0),
                leave=False,
            )
            start = time.perf_counter()
            while p["step_in_epoch"] < steps and (max_steps is None or p["global_step"] < max_steps):
                batch = make_batch(self.data_["train"], batches[p["step_in_epoch"]]).to(self.device)
                self._set_lr(p["global_step"], total)
                self.optimizer_.zero_grad()  # before the forward: fused tables take their lr here, for this step
                logits = self.model_(batch.dense, batch.sparse)
                loss = self._loss(logits, batch, loss_fn)
                loss.backward()
                self.optimizer_.step()
                losses.append(float(loss.detach()))
                self.loss_history_.append(losses[-1])
                p["step_in_epoch"] += 1
                p["global_step"] += 1
                examples += cfg.batch_size * self.world_size
                if cfg.checkpoint_every and p["global_step"] % cfg.checkpoint_every == 0:
                    seconds += time.perf_counter() - start
                    self.save()
                    start = time.perf_counter()
                if cfg.eval_every and p["global_step"] % cfg.eval_every == 0:
                    seconds += time.perf_counter() - start
                    stop = self.validate()
                    start = time.perf_counter()
                    if stop:
                        self.stopped_early_ = True
                        self.pruned_ = stop == "pruned"
                        break
                bar.update(1)
                if bar.n % 20 == 0 or bar.n == steps:
                    el = seconds + time.perf_counter() - start
                    bar.set_postfix(loss=f"{losses[-1]:.4f}", ex_s=f"{examples / max(el, 1e-9):,.0f}")
            seconds += time.perf_counter() - start
            bar.close()
            if p["step_in_epoch"] >= steps:
                p["epoch"] += 1
                p["step_in_epoch"] = 0
            if stop == "pruned" and self.rank == 0:
                log.info("pruned at step %d (valid AUC %.5f)", p["global_step"], self.valid_curve_[-1].auc)
            elif stop and self.rank == 0:
                log.info(
                    "early stopping at step %d: no valid AUC gain for %d evaluations",
                    p["global_step"],
                    cfg.early_stopping.patience,
                )
        return {
            "losses": losses,
            "examples": examples,
            "seconds": seconds,
            "examples_per_second": examples / seconds if seconds > 0 else None,
        }

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict_split(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Click probabilities of every row of ``split`` on all ranks, gathered on rank 0 (None elsewhere).

        Every rank runs the same number of fixed-size batches (sharded lookups are collective); short
        batches are padded with repeated rows whose outputs are dropped.
        """
        rows = self.data_[split]
        bs = self.cfg.eval_batch_size
        filler = rows if len(rows) else self.data_["train"]
        chunks = [np.arange(i, min(i + bs, len(rows))) for i in range(0, len(rows), bs)]
        n_batches = int(_allreduce(len(chunks), dist.ReduceOp.MAX))
        self.model_.eval()
        probs = []
        for i in range(n_batches):
            idx = chunks[i] if i < len(chunks) else np.zeros(0, np.int64)
            padded = np.resize(idx, bs) if len(idx) else np.zeros(bs, np.int64)
            batch = make_batch(rows if len(idx) else filler, padded).to(self.device)
            out = torch.sigmoid(self.model_(batch.dense, batch.sparse)).float().cpu().numpy()
            probs.append(out[: len(idx)])
        self.model_.train()
        local = (np.concatenate(probs) if probs else np.zeros(0, np.float32), rows.label, rows.event_id)
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, local)
        if self.rank != 0:
            return None
        return tuple(np.concatenate([g[k] for g in gathered]) for k in range(3))

    def evaluate(self, split: str) -> EvalResult | None:
        """AUC and logloss of ``split`` on rank 0 (None on the other ranks; collective)."""
        out = self.predict_split(split)
        if out is None:
            return None
        probs, labels, ids = out
        return EvalResult(**auc_logloss(labels, probs), rows=int(len(labels)))

    # ------------------------------------------------------------------ persistence
    def fingerprint(self) -> dict[str, Any]:
        return run_fingerprint(self.cfg, self.summary, self.world_size)

    def save(self) -> str:
        """Checkpoint the model, optimisers and progress (collective), with rank 0's fingerprint and loss history."""
        run = CheckpointRun.of(self.fingerprint(), self.loss_history_) if self.rank == 0 else None
        return save_checkpoint(self.cfg.checkpoint_dir, self.model_, self.optimizer_, self.progress_, run)

    def restore(self, path: str | None = None) -> bool:
        """Continue from ``path`` (default: the latest checkpoint); False if there is none (collective).

        Raises:
            ConfigError: on every rank alike, when this run's fingerprint differs from the checkpoint's.
        """
        path = path or latest_checkpoint(self.cfg.checkpoint_dir)
        if path is None:
            return False
        run = check_resumable(path, self.fingerprint())
        # Adam's state is created lazily at its first step; make it exist so the checkpoint can fill it.
        self.dense_optimizer_.init_state()
        self.progress_ = load_checkpoint(path, self.model_, self.optimizer_)
        self.loss_history_ = list(run.loss_history) if self.rank == 0 else []
        return True

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        return full_state_dict(self.model_)

    def export(self, path: str) -> None:
        """Write the consolidated, non-distributed model (rank 0; collective gather)."""
        state = self.full_state_dict()
        if self.rank == 0:
            save_exported(path, self.cfg, self.layout_, self.summary.spec, state)


def oracle_auc(path: str, event_ids: np.ndarray, labels: np.ndarray) -> float | None:
    """AUC of the generator's true probabilities on exactly these rows (the best any model can do)."""
    import pyarrow as pa

    src = DeltaSource(path, what="oracle")
    table = pa.concat_tables(list(src.iter_tables(["event_id", "p_true"])))
    ids = table.column("event_id").to_numpy()
    p = table.column("p_true").to_numpy()
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], event_ids)
    pos = np.clip(pos, 0, len(ids) - 1)
    found = ids[order][pos] == event_ids
    if not found.all():
        log.warning("oracle lacks %d of %d test rows", int((~found).sum()), len(event_ids))
    return auc_logloss(labels[found], p[order][pos][found])["auc"]
