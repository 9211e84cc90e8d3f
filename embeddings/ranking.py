"""Ranking metrics of retrieved candidates against held-out relevant items (binary relevance).

For a query with ranked candidates ``r_1, r_2, ...`` and relevant set ``R`` (``rel_i = 1`` if
``r_i`` is in ``R``, else 0; an item counts once, at its first place):

    recall@k = |{r_1..r_k} & R| / |R|
        (Manning, Raghavan & Schuetze, *Introduction to Information Retrieval*, 2008, sec. 8.3)
    DCG@k    = sum_{i=1..k} rel_i / log2(i + 1)
    NDCG@k   = DCG@k / IDCG@k,  IDCG@k = sum_{i=1..min(|R|, k)} 1 / log2(i + 1)
        (Jarvelin & Kekalainen, "Cumulated gain-based evaluation of IR techniques", ACM TOIS 20(4), 2002;
        the log2(i + 1) discount as in Burges et al., "Learning to rank using gradient descent", ICML 2005)

so both lie in [0, 1]. NDCG@k is 1 for a ranking that puts as many relevant items first as fit in
k; recall@k's best is min(1, k / |R|) (the standard definition: with more relevant items than k,
no ranking finds them all).
Each function returns the mean over queries; queries with no relevant item are skipped (their
metric is undefined), and the mean of no query is NaN. ``ranked`` and ``relevant`` are aligned
by position: ``ranked[i]`` is query i's candidate list, best first, ``relevant[i]`` its set.
Written here rather than taken from torchmetrics (``RetrievalRecall``, ``RetrievalNormalizedDCG``):
the Spark side never imports torch, and these take ranked id lists, not score tensors.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence

import numpy as np


def _check(ranked: Sequence, relevant: Sequence, k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    if len(ranked) != len(relevant):
        raise ValueError(f"ranked has {len(ranked)} queries but relevant has {len(relevant)}")


def _hits(candidates: Sequence[Hashable], relevant: Collection, k: int) -> np.ndarray:
    """(k',) 0/1 relevance of the first k distinct candidates (k' <= k: the list may be shorter)."""
    seen: set = set()
    rel = []
    for c in candidates:
        if len(rel) == k:
            break
        if c in seen:
            continue
        seen.add(c)
        rel.append(1.0 if c in relevant else 0.0)
    return np.asarray(rel, dtype=np.float64)


def _discounts(n: int) -> np.ndarray:
    """(n,) 1 / log2(i + 1) for ranks i = 1..n."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def recall_at_k(ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Collection], k: int) -> float:
    """Mean over queries of the fraction of the relevant items found in the top k."""
    _check(ranked, relevant, k)
    values = [_hits(r, rel, k).sum() / len(rel) for r, rel in zip(ranked, relevant) if len(rel)]
    return float(np.mean(values)) if values else math.nan


def ndcg_at_k(ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Collection], k: int) -> float:
    """Mean over queries of DCG@k / IDCG@k (binary gains, log2 discount)."""
    _check(ranked, relevant, k)
    values = []
    for r, rel in zip(ranked, relevant):
        if not len(rel):
            continue
        hits = _hits(r, rel, k)
        ideal = _discounts(min(len(rel), k)).sum()
        values.append(float(hits @ _discounts(len(hits))) / ideal)
    return float(np.mean(values)) if values else math.nan


def mean_metrics(
    ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Collection], ks: Sequence[int] = (10, 50, 100)
) -> dict[str, float]:
    """``recall@k`` and ``ndcg@k`` for each k of ``ks`` (keys like ``"recall@10"``, ``"ndcg@10"``)."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranked, relevant, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, relevant, k)
    return out


__all__ = ["mean_metrics", "ndcg_at_k", "recall_at_k"]
