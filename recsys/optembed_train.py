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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torchrec.optim.keyed import CombinedOptimizer

from core.errors import InputError
from core.train_config import TrainConfig
from recsys.data.batches import EncodedRows
from recsys.data.checks import InputSummary
from recsys.distributed.launch import process_group
from recsys.distributed.sharding import load_full_state_dict, plan_summary
from recsys.export import load_tensor_file
from recsys.files import atomic_file
from recsys.modules.optembed import PrunedLayout, build_optembed_model
from recsys.optembed import evolutionary_search, round_width, row_norms
from recsys.results import (
    BaselineResult,
    OptEmbedResult,
    OptEmbedStages,
    RetrainResult,
    SearchResult,
    SplitRecord,
    SupernetResult,
    write_result,
)
from recsys.trainer import CTRTrainer, keyed_optimizer

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
        return build_optembed_model(
            self.cfg,
            self.layout_,
            self.summary.spec.num_dense_inputs,
            device,
            seed,
            supernet=True,
            prune_keys=self.prune_keys(),
        )

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
        """Fused embedding optimizer + the dense one + the thresholds' own (OptEmbed-E: its lr bounds their run)."""
        oe = self.cfg.optembed
        params = self._dense_params()
        thresholds = {k: p for k, p in params.items() if k.endswith("thresholds")}
        dense = {k: p for k, p in params.items() if k not in thresholds}
        self.dense_optimizer_ = keyed_optimizer(dense, self.cfg.dense_optimizer, self.cfg.dense_lr)
        opts = [self.model_.fused_optimizer, self.dense_optimizer_]
        if oe.row_pruning and thresholds:
            self.threshold_optimizer_ = keyed_optimizer(thresholds, oe.threshold_optimizer, oe.threshold_lr)
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
            keep = (
                (row_norms(w) > t[i]).numpy()
                if (self.cfg.optembed.row_pruning and self.prune_keys()[i])
                else np.ones(w.shape[0], bool)
            )
            keep[:2] = True
            keeps.append(keep)
        return keeps


class RetrainTrainer(CTRTrainer):
    """Stage 3: the pruned layout (smaller tables, remapped ids), initialised from the supernet's initial weights."""

    def __init__(
        self,
        cfg,
        summary,
        *,
        pruned: PrunedLayout,
        keeps: list[np.ndarray],
        supernet_init: dict[str, torch.Tensor],
        **kw,
    ):
        super().__init__(cfg, summary, **kw)
        self.pruned, self.keeps, self.supernet_init = pruned, keeps, supernet_init

    def _make_layout(self):
        return self.pruned

    def _build_model(self, device, seed=None):
        return build_optembed_model(
            self.cfg, self.layout_, self.summary.spec.num_dense_inputs, device, seed, supernet=False
        )

    def _initial_state(self, plain):
        state = plain.state_dict()
        for key in state:
            if key in self.supernet_init and state[key].shape == self.supernet_init[key].shape:
                state[key] = self.supernet_init[key].clone()
        for table, keep in zip(self.layout_.tables, self.keeps):
            old = self.supernet_init[table_key(table.name)]
            state[table_key(table.name)] = old[torch.from_numpy(keep)][:, : table.embedding_dim].contiguous()
        return state


def remap_rows(data: EncodedRows, pruned: PrunedLayout) -> EncodedRows:
    """The same rows with every key's table rows sent through ``pruned.remaps`` (pruned -> OOV row)."""
    return EncodedRows(
        data.event_id,
        data.label,
        data.dense,
        data.keys,
        data.offsets,
        [r[rows] for r, rows in zip(pruned.remaps, data.rows)],
    )


def head_rows(data: EncodedRows, n: int) -> EncodedRows:
    """The first ``n`` rows (CSR trimmed)."""
    n = min(n, len(data))
    return EncodedRows(
        data.event_id[:n],
        data.label[:n],
        data.dense[:n],
        data.keys,
        [o[: n + 1] for o in data.offsets],
        [r[: o[n]] for o, r in zip(data.offsets, data.rows)],
    )


def _eval(trainer: CTRTrainer, splits=("valid", "test")) -> dict:
    """``{valid_auc, valid_logloss, test_auc, test_logloss}`` on rank 0 (collective)."""
    out = {}
    for s in splits:
        if len(trainer.data_.get(s, [])) or s == "test":
            m = trainer.evaluate(s)
            if m is not None:
                out[f"{s}_auc"], out[f"{s}_logloss"] = m.auc, m.logloss
    return out


def _sizes(layout, optimizer: str) -> dict:
    return {
        "tables": {t.name: [t.num_embeddings, t.embedding_dim] for t in layout.tables},
        "embedding_params": layout.embedding_params(),
        "embedding_bytes": layout.embedding_bytes(optimizer),
    }


@dataclass
class RankState:
    """What OptEmbed's stages hand each other on one rank: the data share, its split, the supernet's outputs."""

    cfg: TrainConfig
    summary: InputSummary
    kw: dict
    rank: int
    work: Path | None
    data: dict[str, EncodedRows] | None = None
    split: SplitRecord | None = None
    keeps: list[np.ndarray] | None = None
    init_state: dict[str, torch.Tensor] | None = None
    supernet: "SupernetTrainer | None" = None
    last_train: dict = field(default_factory=dict)

    def epochs(self, n: int | None) -> TrainConfig:
        return self.cfg.model_copy(update={"epochs": n or self.cfg.epochs})


def _stage_file(work: Path | None, name: str, stage: str) -> Path:
    """A result an earlier run of ``stage`` left in ``work_dir``; InputError naming it if it is not there."""
    path = (work or Path(".")) / name
    if work is None or not path.is_file():
        raise InputError(
            f"optembed.stages leaves out {stage!r}, but {path} (written by the {stage} stage in "
            "optembed.work_dir) is missing"
        )
    return path


def save_supernet(
    path: Path,
    keeps: list[np.ndarray],
    initial_state: dict[str, torch.Tensor],
    trained_state: dict[str, torch.Tensor],
    thresholds: list[float],
    metrics: SupernetResult,
) -> None:
    """Write stage 1's result to ``work_dir`` (atomically): row masks as bool tensors, states, metrics as JSON data."""
    with atomic_file(path) as f:
        torch.save(
            {
                "keeps": [torch.from_numpy(np.asarray(k, bool)) for k in keeps],
                "initial_state": initial_state,
                "trained_state": trained_state,
                "thresholds": [float(t) for t in thresholds],
                "metrics": metrics.model_dump(mode="json", exclude={"loaded_from"}),
            },
            f,
        )


def load_supernet(path: Path) -> dict:
    """Read :func:`save_supernet`'s file with weights-only unpickling (``keeps`` back as numpy bool arrays).

    Raises:
        InputError: naming the file when it holds anything but tensors and plain data.
    """
    saved = load_tensor_file(path, "optembed supernet file")
    return {**saved, "keeps": [np.asarray(k, bool) for k in saved["keeps"]]}


def run_baseline(st: RankState) -> BaselineResult | None:
    """Stage 0: the plain full model (the 'before' metrics); its data share is reused by the stages after it."""
    base = CTRTrainer(st.cfg, st.summary, **st.kw).setup()
    trained = base.train()
    st.data, st.split = base.data_, base.split_record_
    result = {
        **_eval(base),
        **_sizes(base.layout_, st.cfg.embedding_optimizer),
        "examples_per_second": trained["examples_per_second"],
    }
    return BaselineResult(**result) if st.rank == 0 else None


def run_supernet(st: RankState) -> SupernetResult | None:
    """Stage 1: train the supernet and compute the row masks (rank 0), or load both from ``work_dir``."""
    oe, work = st.cfg.optembed, st.work
    if "supernet" not in oe.stages:
        saved = load_supernet(_stage_file(work, "supernet.pt", "supernet"))
        st.keeps, st.init_state = saved["keeps"], saved["initial_state"]
        return SupernetResult(**{**saved["metrics"], "loaded_from": str(work / "supernet.pt")})
    sup = SupernetTrainer(st.epochs(oe.supernet_epochs), st.summary, **st.kw).setup(st.data, st.split)
    st.data, st.split, st.supernet = sup.data_, sup.split_record_, sup
    before = sup.thresholds()
    st.last_train = sup.train()
    full = sup.full_state_dict()
    stage = {
        **_eval(sup),
        "thresholds_before": before,
        "thresholds": sup.thresholds(),
        "examples_per_second": st.last_train["examples_per_second"],
        "final_loss": st.last_train["losses"][-1] if st.last_train["losses"] else None,
    }
    keeps = sup.row_keeps(full) if st.rank == 0 else None
    result = None
    if st.rank == 0:
        stage["rows_kept"] = {t.name: int(k.sum()) for t, k in zip(sup.layout_.tables, keeps)}
        result = SupernetResult(**stage)
        if work:
            save_supernet(work / "supernet.pt", keeps, sup.initial_state_, full, sup.thresholds(), result)
    st.keeps, st.init_state = _broadcast(keeps, st.rank), sup.initial_state_
    return result


def run_search(st: RankState, num_params, budget: int | None) -> tuple[list[int], SearchResult | None]:
    """Stage 2: the widths (searched, loaded from ``work_dir``, or the full width when search is off)."""
    oe, work, full_dim = st.cfg.optembed, st.work, st.cfg.embedding_dim
    if "search" not in oe.stages:
        if "retrain" not in oe.stages:
            return [full_dim] * len(st.keeps), None
        return json.loads(_stage_file(work, "search.json", "search").read_text())["widths"], None
    sup = st.supernet
    if sup is None:  # search alone: the supernet's trained weights from work_dir
        sup = SupernetTrainer(st.epochs(oe.supernet_epochs), st.summary, **st.kw).setup(st.data, st.split)
        st.data, st.split = sup.data_, sup.split_record_
        saved = load_supernet(_stage_file(work, "supernet.pt", "supernet"))
        load_full_state_dict(sup.model_, saved["trained_state"])
    widths, search = _search(sup, oe, full_dim, num_params, budget, st.rank)
    st.supernet = None
    if st.rank != 0:
        return widths, None
    if work:
        work.mkdir(parents=True, exist_ok=True)
        (work / "search.json").write_text(json.dumps(search, indent=1))
    return widths, SearchResult(**search)


def run_retrain(st: RankState, widths: list[int]) -> tuple[RetrainResult | None, PrunedLayout, object]:
    """Stage 3: the pruned, searched layout trained from the supernet's initial weights (and exported)."""
    cfg = st.cfg
    base_layout = CTRTrainer(cfg, st.summary, **st.kw)._make_layout()
    pruned = PrunedLayout.from_masks(base_layout, st.keeps, widths)
    data = {s: remap_rows(rows, pruned) for s, rows in st.data.items()} if st.data is not None else None
    re = RetrainTrainer(
        st.epochs(cfg.optembed.retrain_epochs),
        st.summary,
        pruned=pruned,
        keeps=st.keeps,
        supernet_init=st.init_state,
        **st.kw,
    )
    re.setup(data, st.split)
    st.split = re.split_record_
    st.last_train = re.train()
    stage = {
        **_eval(re),
        "examples_per_second": st.last_train["examples_per_second"],
        "final_loss": st.last_train["losses"][-1] if st.last_train["losses"] else None,
    }
    if cfg.export_path:
        re.export(cfg.export_path)
    result = RetrainResult(**stage, sharding_plan=plan_summary(re.plan_)) if st.rank == 0 else None
    return result, pruned, base_layout


def optembed_rank(cfg: TrainConfig, summary: InputSummary, backend: str) -> OptEmbedResult | None:
    """All requested OptEmbed stages on this rank; rank 0 returns (and writes) the result."""
    oe = cfg.optembed
    started = time.perf_counter()
    with process_group(backend, cfg.device) as (rank, world, device):
        st = RankState(
            cfg,
            summary,
            dict(rank=rank, world_size=world, device=device),
            rank,
            Path(oe.work_dir) if oe.work_dir else None,
        )
        baseline = run_baseline(st) if oe.baseline else None
        supernet = run_supernet(st)
        full_dim = cfg.embedding_dim
        kept_rows = [int(k.sum()) for k in st.keeps]

        def num_params(w) -> int:
            return sum(n * round_width(int(x), oe.width_multiple, full_dim) for n, x in zip(kept_rows, w))

        full_params = sum(k.size * full_dim for k in st.keeps)
        budget = oe.max_params or (int(oe.max_params_fraction * full_params) if oe.max_params_fraction else None)
        widths, search = run_search(st, num_params, budget)
        st.supernet = None  # free the supernet (sharded tables, optimizer state) before the retrain builds its own
        retrain, pruned, base_layout = run_retrain(st, widths) if "retrain" in oe.stages else (None, None, None)
        if rank != 0:
            return None
        stages = OptEmbedStages(baseline=baseline, supernet=supernet, search=search, retrain=retrain)
        last = retrain or search or supernet
        test_auc = getattr(last, "test_auc", None)
        fields: dict = {}
        if retrain is not None:
            before = _sizes(base_layout, cfg.embedding_optimizer)
            after = _sizes(pruned, cfg.embedding_optimizer)
            fields = dict(
                rows_kept={t.name: t.num_embeddings for t in pruned.tables},
                rows_total={t.name: t.num_embeddings for t in base_layout.tables},
                widths={t.name: t.embedding_dim for t in pruned.tables},
                params_before=before["embedding_params"],
                params_after=after["embedding_params"],
                bytes_before=before["embedding_bytes"],
                bytes_after=after["embedding_bytes"],
                tables_before=before["tables"],
                tables_after=after["tables"],
                auc_before=baseline and baseline.test_auc,
                logloss_before=baseline and baseline.test_logloss,
                auc_after=retrain.test_auc,
                logloss_after=retrain.test_logloss,
                valid_auc=retrain.valid_auc,
                valid_logloss=retrain.valid_logloss,
                embedding_bytes=after["embedding_bytes"],
                tables=after["tables"],
            )
            params = after["embedding_params"]
        else:
            params = num_params(widths) if search is not None else full_params
        result = OptEmbedResult(
            optembed=oe.model_dump(),
            stages=stages,
            test_auc=test_auc,
            test_logloss=getattr(last, "test_logloss", None),
            embedding_params=params,
            examples_per_second=st.last_train.get("examples_per_second") or 0.0,
            wall_seconds=time.perf_counter() - started,
            layout=cfg.layout.kind,
            model=cfg.model.kind,
            world_size=world,
            backend=backend,
            device=cfg.device,
            seed=cfg.seed,
            input=summary.inputs.encoded,
            input_version=summary.input_version,
            vocab=summary.inputs.vocab,
            vocab_version=summary.vocab_version,
            split=st.split,
            loss_history=st.last_train.get("losses", []),
            sharding_plan=retrain.sharding_plan if retrain is not None else {},
            **fields,
        )
        if cfg.metrics_out:
            write_result(cfg.metrics_out, result)
        return result


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
            cache[rounded] = float(_broadcast(m.auc if m else None, rank))
            candidates.append({"widths": list(rounded), "params": num_params(rounded), "valid_auc": cache[rounded]})
        return cache[rounded]

    if oe.dim_search:
        res = evolutionary_search(
            fitness,
            len(sup.layout_.keys),
            full_dim,
            num_params,
            population=oe.population,
            num_mutations=oe.num_mutations,
            num_crossovers=oe.num_crossovers,
            mutation_prob=oe.mutation_prob,
            generations=oe.generations,
            max_params=budget,
            seed=sup.cfg.seed,
        )
        widths = [round_width(int(x), oe.width_multiple, full_dim) for x in res.widths]
        history = res.history
    else:
        widths, history = [full_dim] * len(sup.layout_.keys), []
        fitness(widths)
    sup.module_.eval_widths = torch.tensor(widths)
    test = sup.evaluate("test")
    sup.module_.eval_widths = None
    del sup.data_["search"]
    record = {
        "widths": widths,
        "params": num_params(widths),
        "valid_auc": cache[tuple(widths)],
        "supernet_test_auc_with_widths": test and test.auc,
        "max_params": budget,
        "history": history,
        "candidates": candidates,
        "widths_by_table": {t.name: w for t, w in zip(sup.layout_.tables, widths)},
    }
    return widths, record
