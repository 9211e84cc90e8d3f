"""OptEmbed's three stages on ranks (Lyu et al., CIKM 2022): supernet -> evolutionary width search -> retrain.

``optembed_rank(cfg, summary, backend)`` is what ``recsys.train.train_rank`` calls when
``train.optembed.enabled``; every rank runs it (sharded lookups and evaluations are collective):

0. (``optembed.baseline``) the plain full model, for the "before" metrics.
1. **supernet**: :class:`SupernetTrainer` trains the CTR model with per-field thresholds (own
   optimizer), row masks, the ``alpha * sum exp(-t)`` penalty and random prefix dimension masks.
   The final row mask is computed on rank 0 from the gathered table weights
   (``mean|row| > t_f``; ids 0/1 always kept; multi-valued fields are never row-pruned).
2. **search**: :func:`recsys.optembed.evolutionary_search` over per-field widths; the fitness of
   a candidate is the validation AUC of the supernet evaluated with that width prefix (rank 0
   computes it, then broadcasts it so every rank breeds the same population).
3. **retrain**: :class:`RetrainTrainer` builds brand-new, smaller ``EmbeddingBagConfig``s
   (kept rows x rounded width per field) as a :class:`~recsys.modules.optembed.PrunedLayout`,
   remaps ids (pruned -> the OOV row), starts from the supernet's *initial* weights (kept rows,
   first ``w_f`` columns) and trains; the exported model carries the remap.

Stage results are kept in ``optembed.work_dir`` (``supernet.pt``, ``search.json``) so one stage
can run alone.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from core.train_config import TrainConfig
from recsys.data.batches import EncodedRows
from recsys.data.checks import InputSummary
from recsys.distributed.launch import process_group
from recsys.modules.optembed import PrunedLayout, build_optembed_model
from recsys.optembed import evolutionary_search, round_width, row_norms
from recsys.trainer import CTRTrainer, write_json

log = logging.getLogger(__name__)


def _unwrapped(dmp):
    from torchrec.distributed.model_parallel import get_unwrapped_module

    return get_unwrapped_module(dmp)


def _broadcast(obj, rank: int):
    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def table_key(name: str) -> str:
    return f"ebc.embedding_bags.{name}.weight"


class SupernetTrainer(CTRTrainer):
    """Stage 1: the CTR trainer with OptEmbed masks, the threshold penalty and a threshold optimizer."""

    def prune_keys(self) -> list[bool]:
        multi = self.summary.spec.multi_valued
        return [src.feature not in multi for src in self.layout_.sources]

    def _build_model(self, device, seed=None):
        return build_optembed_model(self.cfg, self.layout_, self.summary.spec.num_dense_inputs, device, seed,
                                    supernet=True, prune_keys=self.prune_keys())

    def _initial_state(self, plain):
        self.initial_state_ = {k: v.clone() for k, v in plain.state_dict().items()}
        return plain.state_dict()

    def setup(self, data=None, split_record=None):
        super().setup(data, split_record)
        self.module_ = _unwrapped(self.model_)
        self.module_.generator = torch.Generator().manual_seed(self.cfg.seed * 7919 + self.rank)
        return self

    def _loss(self, logits, batch, loss_fn):
        return loss_fn(logits, batch.labels) + self.module_.penalty(self.cfg.optembed.alpha)

    def _optimizer(self):
        from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
        from torchrec.optim.optimizers import in_backward_optimizer_filter

        oe = self.cfg.optembed
        params = dict(in_backward_optimizer_filter(self.model_.named_parameters()))
        thresholds = {k: p for k, p in params.items() if k.endswith("thresholds")}
        dense = {k: p for k, p in params.items() if k not in thresholds}
        cls = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}[self.cfg.dense_optimizer]
        lr = self.cfg.dense_lr
        self.dense_optimizer_ = KeyedOptimizerWrapper(dense, lambda ps: cls(ps, lr=lr))
        opts = [self.model_.fused_optimizer, self.dense_optimizer_]
        if oe.row_pruning and thresholds:
            tcls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[oe.threshold_optimizer]
            self.threshold_optimizer_ = KeyedOptimizerWrapper(thresholds, lambda ps: tcls(ps, lr=oe.threshold_lr))
            opts.append(self.threshold_optimizer_)
        return CombinedOptimizer(opts)

    def thresholds(self) -> list[float]:
        return [float(x) for x in self.module_.thresholds.detach().cpu()]

    def row_keeps(self, full: dict[str, torch.Tensor]) -> list[np.ndarray]:
        """Rank 0: the final row mask per table from the gathered weights: mean|row| > t_f, ids 0/1 kept."""
        t = self.thresholds()
        keeps = []
        for i, table in enumerate(self.layout_.tables):
            w = full[table_key(table.name)]
            keep = (row_norms(w) > t[i]).numpy() if (self.cfg.optembed.row_pruning and self.prune_keys()[i]) \
                else np.ones(w.shape[0], bool)
            keep[:2] = True
            keeps.append(keep)
        return keeps


class RetrainTrainer(CTRTrainer):
    """Stage 3: the pruned layout (smaller tables, remapped ids), initialised from the supernet's initial weights."""

    def __init__(self, cfg, summary, *, pruned: PrunedLayout, keeps: list[np.ndarray],
                 supernet_init: dict[str, torch.Tensor], **kw):
        super().__init__(cfg, summary, **kw)
        self.pruned, self.keeps, self.supernet_init = pruned, keeps, supernet_init

    def _make_layout(self):
        return self.pruned

    def _build_model(self, device, seed=None):
        return build_optembed_model(self.cfg, self.layout_, self.summary.spec.num_dense_inputs, device, seed,
                                    supernet=False)

    def _initial_state(self, plain):
        state = plain.state_dict()
        for key in state:
            if key in self.supernet_init and state[key].shape == self.supernet_init[key].shape:
                state[key] = self.supernet_init[key].clone()
        for table, keep in zip(self.layout_.tables, self.keeps):
            old = self.supernet_init[table_key(table.name)]
            state[table_key(table.name)] = old[torch.from_numpy(keep)][:, :table.embedding_dim].contiguous()
        return state


def remap_rows(data: EncodedRows, pruned: PrunedLayout) -> EncodedRows:
    """The same rows with every key's table rows sent through ``pruned.remaps`` (pruned -> OOV row)."""
    return EncodedRows(data.event_id, data.label, data.dense, data.keys, data.offsets,
                       [r[rows] for r, rows in zip(pruned.remaps, data.rows)])


def head_rows(data: EncodedRows, n: int) -> EncodedRows:
    """The first ``n`` rows (CSR trimmed)."""
    n = min(n, len(data))
    return EncodedRows(data.event_id[:n], data.label[:n], data.dense[:n], data.keys, [o[:n + 1] for o in data.offsets],
                       [r[:o[n]] for o, r in zip(data.offsets, data.rows)])


def _eval(trainer: CTRTrainer, splits=("valid", "test")) -> dict:
    out = {}
    for s in splits:
        if len(trainer.data_.get(s, [])) or s == "test":
            m = trainer.evaluate(s)
            if m is not None:
                out[f"{s}_auc"], out[f"{s}_logloss"] = m["auc"], m["logloss"]
    return out


def _sizes(layout, optimizer: str) -> dict:
    return {"tables": {t.name: [t.num_embeddings, t.embedding_dim] for t in layout.tables},
            "embedding_params": layout.embedding_params(), "embedding_bytes": layout.embedding_bytes(optimizer)}


def optembed_rank(cfg: TrainConfig, summary: InputSummary, backend: str) -> dict | None:
    """All requested OptEmbed stages on this rank; rank 0 returns (and writes) the metrics."""
    oe = cfg.optembed
    work = Path(oe.work_dir) if oe.work_dir else None
    sup_epochs = cfg.model_copy(update={"epochs": oe.supernet_epochs or cfg.epochs})
    re_epochs = cfg.model_copy(update={"epochs": oe.retrain_epochs or cfg.epochs})
    metrics: dict = {"optembed": oe.model_dump(), "stages": {}}
    started = time.perf_counter()
    with process_group(backend, cfg.device) as (rank, world, device):
        kw = dict(rank=rank, world_size=world, device=device)
        data, split = None, None
        last_train: dict = {}
        if oe.baseline:
            base = CTRTrainer(cfg, summary, **kw).setup()
            res = base.train()
            metrics["stages"]["baseline"] = {**_eval(base), **_sizes(base.layout_, cfg.embedding_optimizer),
                                             "examples_per_second": res["examples_per_second"]}
            data, split = base.data_, base.split_record_
            del base

        sup = None
        if "supernet" in oe.stages:
            sup = SupernetTrainer(sup_epochs, summary, **kw).setup(data, split)
            data, split = sup.data_, sup.split_record_
            before = sup.thresholds()
            last_train = sup.train()
            full = sup.full_state_dict()
            stage = {**_eval(sup), "thresholds_before": before, "thresholds": sup.thresholds(),
                     "examples_per_second": last_train["examples_per_second"],
                     "final_loss": last_train["losses"][-1] if last_train["losses"] else None}
            keeps = sup.row_keeps(full) if rank == 0 else None
            if rank == 0:
                stage["rows_kept"] = {t.name: int(k.sum()) for t, k in zip(sup.layout_.tables, keeps)}
                metrics["stages"]["supernet"] = stage
                if work:
                    work.mkdir(parents=True, exist_ok=True)
                    torch.save({"keeps": keeps, "initial_state": sup.initial_state_, "trained_state": full,
                                "thresholds": sup.thresholds(), "metrics": stage}, work / "supernet.pt")
            keeps = _broadcast(keeps, rank)
            init_state = sup.initial_state_
        else:
            saved = torch.load(work / "supernet.pt", weights_only=False)
            keeps, init_state = saved["keeps"], saved["initial_state"]
            if rank == 0:
                metrics["stages"]["supernet"] = {**saved["metrics"], "loaded_from": str(work / "supernet.pt")}

        full_dim = cfg.embedding_dim
        kept_rows = [int(k.sum()) for k in keeps]

        def num_params(w) -> int:
            return sum(n * round_width(int(x), oe.width_multiple, full_dim) for n, x in zip(kept_rows, w))

        full_params = sum(k.size * full_dim for k in keeps)
        budget = oe.max_params or (int(oe.max_params_fraction * full_params) if oe.max_params_fraction else None)
        if "search" in oe.stages:
            if sup is None:  # search alone: the supernet's trained weights from work_dir
                sup = SupernetTrainer(sup_epochs, summary, **kw).setup(data, split)
                data, split = sup.data_, sup.split_record_
                from recsys.distributed.sharding import load_full_state_dict

                load_full_state_dict(sup.model_, torch.load(work / "supernet.pt", weights_only=False)["trained_state"])
            widths, search = _search(sup, oe, full_dim, num_params, budget, rank)
            if rank == 0:
                metrics["stages"]["search"] = search
                if work:
                    work.mkdir(parents=True, exist_ok=True)
                    (work / "search.json").write_text(json.dumps(search, indent=1))
        elif "retrain" in oe.stages:
            widths = json.loads((work / "search.json").read_text())["widths"]
        else:
            widths = [full_dim] * len(keeps)
        del sup

        if "retrain" in oe.stages:
            base_layout = CTRTrainer(cfg, summary, **kw)._make_layout()
            pruned = PrunedLayout.from_masks(base_layout, keeps, widths)
            if data is not None:
                data = {s: remap_rows(rows, pruned) for s, rows in data.items()}
            re = RetrainTrainer(re_epochs, summary, pruned=pruned, keeps=keeps, supernet_init=init_state, **kw)
            re.setup(data, split)
            split = re.split_record_
            last_train = re.train()
            stage = {**_eval(re), "examples_per_second": last_train["examples_per_second"],
                     "final_loss": last_train["losses"][-1] if last_train["losses"] else None}
            if cfg.export_path:
                re.export(cfg.export_path)
            if rank == 0:
                stage["sharding_plan"] = __import__("recsys.distributed.sharding", fromlist=["x"]).plan_summary(re.plan_)
                metrics["stages"]["retrain"] = stage
                before = _sizes(base_layout, cfg.embedding_optimizer)
                after = _sizes(pruned, cfg.embedding_optimizer)
                base_stage = metrics["stages"].get("baseline", {})
                metrics.update({
                    "rows_kept": {t.name: t.num_embeddings for t in pruned.tables},
                    "rows_total": {t.name: t.num_embeddings for t in base_layout.tables},
                    "widths": {t.name: t.embedding_dim for t in pruned.tables},
                    "params_before": before["embedding_params"], "params_after": after["embedding_params"],
                    "bytes_before": before["embedding_bytes"], "bytes_after": after["embedding_bytes"],
                    "tables_before": before["tables"], "tables_after": after["tables"],
                    "auc_before": base_stage.get("test_auc"), "logloss_before": base_stage.get("test_logloss"),
                    "auc_after": stage["test_auc"], "logloss_after": stage["test_logloss"],
                    "test_auc": stage["test_auc"], "test_logloss": stage["test_logloss"],
                    "valid_auc": stage.get("valid_auc"), "valid_logloss": stage.get("valid_logloss"),
                    "embedding_params": after["embedding_params"], "embedding_bytes": after["embedding_bytes"],
                    "tables": after["tables"]})
            del re
        if rank != 0:
            return None
        last = metrics["stages"].get("retrain") or metrics["stages"].get("search") or metrics["stages"]["supernet"]
        metrics.setdefault("test_auc", last.get("test_auc"))
        metrics.setdefault("test_logloss", last.get("test_logloss"))
        metrics.setdefault("embedding_params", num_params(widths) if "search" in metrics["stages"] else full_params)
        metrics.update({"examples_per_second": last_train.get("examples_per_second") or 0.0,
                        "wall_seconds": time.perf_counter() - started, "layout": cfg.layout.kind,
                        "model": cfg.model.kind, "world_size": world, "backend": backend, "seed": cfg.seed,
                        "input": cfg.input, "input_version": summary.input_version,
                        "vocab": cfg.vocab, "vocab_version": summary.vocab_version,
                        # keys the job's MLflow logging reads (same meaning as the plain trainer's)
                        "split": split or {}, "loss_history": last_train.get("losses", []),
                        "sharding_plan": metrics["stages"].get("retrain", {}).get("sharding_plan", {})})
        if cfg.metrics_out:
            write_json(cfg.metrics_out, metrics)
        return metrics


def _search(sup: SupernetTrainer, oe, full_dim: int, num_params, budget: int | None, rank: int):
    """Stage 2 on every rank (collective evaluations): the best widths and a record of every candidate."""
    valid = sup.data_["valid"] if len(sup.data_["valid"]) else sup.data_["train"]
    if oe.search_valid_rows:
        valid = head_rows(valid, max(1, oe.search_valid_rows // sup.world_size))
    sup.data_["search"] = valid
    candidates: list[dict] = []
    cache: dict[tuple, float] = {}

    def fitness(w) -> float:
        rounded = tuple(round_width(int(x), oe.width_multiple, full_dim) for x in w)
        if rounded not in cache:
            sup.module_.eval_widths = torch.tensor(rounded)
            m = sup.evaluate("search")
            cache[rounded] = float(_broadcast(m["auc"] if m else None, rank))
            candidates.append({"widths": list(rounded), "params": num_params(rounded), "valid_auc": cache[rounded]})
        return cache[rounded]

    if oe.dim_search:
        res = evolutionary_search(fitness, len(sup.layout_.keys), full_dim, num_params, population=oe.population,
                                  num_mutations=oe.num_mutations, num_crossovers=oe.num_crossovers,
                                  mutation_prob=oe.mutation_prob, generations=oe.generations, max_params=budget,
                                  seed=sup.cfg.seed)
        widths = [round_width(int(x), oe.width_multiple, full_dim) for x in res.widths]
        history = res.history
    else:
        widths, history = [full_dim] * len(sup.layout_.keys), []
        fitness(widths)
    sup.module_.eval_widths = torch.tensor(widths)
    test = sup.evaluate("test")
    sup.module_.eval_widths = None
    del sup.data_["search"]
    record = {"widths": widths, "params": num_params(widths), "valid_auc": cache[tuple(widths)],
              "supernet_test_auc_with_widths": test and test["auc"], "max_params": budget,
              "history": history, "candidates": candidates,
              "widths_by_table": {t.name: w for t, w in zip(sup.layout_.tables, widths)}}
    return widths, record
