"""OptEmbed maths (Lyu et al., CIKM 2022, arXiv 2208.04482): pure torch/numpy, no TorchRec.

Three pieces, each usable alone:

* **Row pruning (OptEmbed-E).** Field ``f`` has a learnable threshold ``t_f`` (initialised at 0).
  Row ``i`` of its table is kept while ``||e_i||_1 / D > t_f`` (we divide the L1 norm by the width
  so one threshold scale fits tables of any width; the reference code uses the plain L1 norm).
  The step has a straight-through-style gradient (:class:`BinaryStep`) and the loss adds
  ``alpha * sum_f exp(-t_f)`` (:func:`threshold_penalty`) so thresholds keep rising until the
  task loss pushes back.
* **Dimension search (OptEmbed-D).** In the supernet every (example, field) keeps a random
  prefix of the embedding dimensions, its width uniform over 1..D (:func:`sample_dim_masks`),
  so every candidate width is trained at once; :func:`evolutionary_search` then picks one width
  per field by validation fitness, optionally under a parameter budget.
* **Retraining.** :func:`prune_remap` turns a row mask into an id remap that sends pruned ids to
  one shared OOV row, so the rebuilt table is physically smaller (not masked), and
  :func:`round_width` rounds searched widths for FBGEMM.

Symbols: ``B`` batch, ``F`` fields, ``N`` rows of a table, ``D`` full embedding width.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

log = logging.getLogger(__name__)


class BinaryStep(torch.autograd.Function):
    """Heaviside step ``x > 0`` whose backward pass is the reference's surrogate gradient.

    d/dx ~ 2 - 4|x| for |x| <= 0.4, 0.4 for 0.4 < |x| <= 1, and 0 beyond: a smooth bump around
    the threshold, so rows near it (and the threshold itself) receive gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        ax = x.abs()
        surrogate = torch.where(
            ax <= 0.4, 2 - 4 * ax, torch.where(ax <= 1.0, torch.full_like(x, 0.4), torch.zeros_like(x))
        )
        return grad_output * surrogate


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    """Per-row L1 norm divided by the width: (N, D) -> (N,)."""
    return weight.abs().mean(dim=1)


def row_mask(weight: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Differentiable keep-mask of a table's rows: (N, D), scalar -> (N,) of 0./1.

    Gradient flows to both ``weight`` and ``threshold`` through :class:`BinaryStep`.
    """
    return BinaryStep.apply(row_norms(weight) - threshold)


def threshold_penalty(thresholds: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * sum_f exp(-t_f)``: added to the loss so the thresholds rise (prune more)."""
    return alpha * torch.exp(-thresholds).sum()


def prefix_masks(widths: torch.Tensor, dim: int) -> torch.Tensor:
    """0/1 masks keeping the first ``widths[...]`` of ``dim`` columns: (...,) -> (..., D)."""
    return (torch.arange(dim, device=widths.device) < widths.unsqueeze(-1)).float()


def sample_dim_masks(batch_size: int, num_fields: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Random prefix masks for the supernet: width ~ Uniform{1..D} per (example, field) -> (B, F, D)."""
    widths = torch.randint(1, dim + 1, (batch_size, num_fields), generator=generator)
    return prefix_masks(widths, dim)


def prune_remap(keep: np.ndarray, always_keep: Sequence[int] = (0, 1), oov_id: int = 1) -> np.ndarray:
    """Map old row ids to rows of the compacted table; pruned ids go to the (kept) OOV row.

    Args:
        keep: (N,) bool, True where the row survives pruning.
        always_keep: ids that survive whatever the mask says (missing and OOV rows).
        oov_id: the old id whose new row receives every pruned id.

    Returns:
        (N,) int64 ``remap`` with ``new_table[remap[i]]`` serving old id ``i``; surviving rows keep
        their relative order, so ``new_table = old_table[keep]`` row for row.

    Example (N=6, rows 3 and 5 pruned)::

        keep   = [T, T, T, F, T, F]
        remap  = [0, 1, 2, 1, 3, 1]
    """
    keep = np.asarray(keep, dtype=bool).copy()
    keep[list(always_keep)] = True
    new_ids = np.cumsum(keep) - 1
    return np.where(keep, new_ids, new_ids[oov_id]).astype(np.int64)


def round_width(width: int, multiple: int = 4, max_width: int | None = None) -> int:
    """Round a searched width up to a multiple (FBGEMM's GPU kernels want multiples of 4)."""
    rounded = max(multiple, int(np.ceil(width / multiple)) * multiple)
    return min(rounded, max_width) if max_width else rounded


@dataclass(frozen=True)
class SearchResult:
    """Best per-field widths found, its fitness and size, and each generation's best fitness."""

    widths: tuple[int, ...]
    fitness: float
    num_params: int
    history: list[float] = field(default_factory=list)


def evolutionary_search(
    fitness: Callable[[np.ndarray], float],
    num_fields: int,
    dim: int,
    num_params: Callable[[np.ndarray], int],
    *,
    population: int = 20,
    num_mutations: int = 10,
    num_crossovers: int = 10,
    mutation_prob: float = 0.1,
    generations: int = 30,
    max_params: int | None = None,
    seed: int = 0,
) -> SearchResult:
    """Search one embedding width per field (OptEmbed-D stage 2), reference settings by default.

    Each generation keeps the ``population`` fittest candidates seen, then breeds
    ``num_mutations`` children (each width resampled with prob ``mutation_prob``) and
    ``num_crossovers`` children (each field's width taken from one of two parents). Candidates
    over ``max_params`` are never admitted (the reference ignores size; we let the user cap it).

    Args:
        fitness: widths (F,) int -> score to maximise (e.g. validation AUC with supernet weights).
        num_params: widths (F,) int -> embedding parameters of that choice.
        max_params: the parameter budget, or None.

    Returns:
        The best admissible candidate.
    """
    rng = np.random.default_rng(seed)
    scored: dict[tuple[int, ...], float] = {}

    def admissible(w: np.ndarray) -> bool:
        return max_params is None or num_params(w) <= max_params

    def random_candidate() -> np.ndarray:
        for _ in range(1000):
            w = rng.integers(1, dim + 1, num_fields)
            if admissible(w):
                return w
        w = np.ones(num_fields, dtype=np.int64)
        if not admissible(w):
            raise ValueError(
                f"parameter budget {max_params} is below the smallest candidate "
                f"({num_params(w)} parameters with width 1 everywhere)"
            )
        return w

    def evaluate(cands: list[np.ndarray]) -> None:
        for w in cands:
            key = tuple(int(x) for x in w)
            if key not in scored and admissible(w):
                scored[key] = float(fitness(w))

    evaluate([random_candidate() for _ in range(population)])
    history = []
    for gen in range(generations):
        ranked = sorted(scored, key=lambda k: (-scored[k], k))[:population]
        history.append(scored[ranked[0]])
        parents = [np.array(k) for k in ranked]
        children = []
        for _ in range(num_mutations):
            child = parents[rng.integers(len(parents))].copy()
            flip = rng.random(num_fields) < mutation_prob
            child[flip] = rng.integers(1, dim + 1, int(flip.sum()))
            children.append(child)
        for _ in range(num_crossovers):
            a, b = parents[rng.integers(len(parents))], parents[rng.integers(len(parents))]
            children.append(np.where(rng.random(num_fields) < 0.5, a, b))
        evaluate(children)
        log.info(
            "evolution generation %d/%d: best fitness %.5f over %d candidates",
            gen + 1,
            generations,
            history[-1],
            len(scored),
        )
    best = min(scored, key=lambda k: (-scored[k], k))
    return SearchResult(widths=best, fitness=scored[best], num_params=int(num_params(np.array(best))), history=history)
