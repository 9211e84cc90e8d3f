"""Synthetic Criteo-shaped click log with a known best AUC.

Labels come from a hidden logistic model, so the AUC of the true click probability is the best
any model can reach; it is written next to the data (Delta commit metadata and an ``oracle``
table of ``(event_id, p_true)``), and later stages measure themselves against it.

Columns of the click log (``F`` categorical fields, ``n`` dense fields)::

    event_id long | ts timestamp | label int | I1..In double (nullable) | C1..CF string (nullable) | tags array<string>

``C1`` is the user, ``C2`` the item (users mostly click items of their own community, so the
interaction graph that build_graph makes of them has structure FastRP can find); ``C3..`` are
Zipf-distributed categorical values; the last ``num_noise_fields`` of them carry no signal at all
(a known right answer for pruning). Run it through ``jobs/make_synthetic.py`` (the stage is
``embeddings.stages.SYNTH``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import SynthConfig

log = logging.getLogger(__name__)

LATENT_DIM = 8


@dataclass(frozen=True)
class HiddenModel:
    """The generator's true logistic model; every array is drawn once from the seed.

    Attributes:
        bias: intercept of the logit.
        field_weights: (F-2, C) per-value weight of each plain categorical field C3..CF.
        dense_weights: (n,) weight of each standardised log1p dense value.
        user_factors: (U, LATENT_DIM) user latent vectors (community-aligned).
        item_factors: (I, LATENT_DIM) item latent vectors (community-aligned).
        tag_weights: (T,) weight of each tag (averaged over a row's tags).
    """

    bias: float
    field_weights: np.ndarray
    dense_weights: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    tag_weights: np.ndarray


def make_hidden_model(cfg: SynthConfig) -> HiddenModel:
    """Draw the hidden model from ``cfg.seed``; noise fields get all-zero weights."""
    rng = np.random.default_rng([cfg.seed, 0])
    num_plain = cfg.num_categorical - 2
    if num_plain < 0:
        raise ValueError(f"synth.num_categorical must be >= 2 (user and item), got {cfg.num_categorical}")
    if cfg.num_noise_fields > num_plain:
        raise ValueError(
            f"synth.num_noise_fields ({cfg.num_noise_fields}) exceeds the plain categorical "
            f"fields C3..C{cfg.num_categorical} ({num_plain})"
        )
    scales = np.linspace(0.9, 0.3, max(num_plain, 1))[:num_plain]
    scales[num_plain - cfg.num_noise_fields :] = 0.0
    field_weights = rng.normal(size=(num_plain, cfg.cardinality)) * scales[:, None]
    centers = rng.normal(size=(cfg.num_communities, LATENT_DIM))
    user_comm = np.arange(cfg.num_users) % cfg.num_communities
    item_comm = np.arange(cfg.num_items) % cfg.num_communities
    user_factors = centers[user_comm] + 0.3 * rng.normal(size=(cfg.num_users, LATENT_DIM))
    item_factors = centers[item_comm] + 0.3 * rng.normal(size=(cfg.num_items, LATENT_DIM))
    return HiddenModel(
        bias=-1.6,
        field_weights=field_weights,
        dense_weights=rng.normal(scale=0.4, size=cfg.num_dense),
        user_factors=user_factors / np.sqrt(LATENT_DIM),
        item_factors=item_factors / np.sqrt(LATENT_DIM),
        tag_weights=rng.normal(scale=0.8, size=cfg.num_tags),
    )


def zipf_ranks(rng: np.random.Generator, exponent: float, size: int, n: int) -> np.ndarray:
    """Draw ``size`` ranks in [0, n) with P(rank = k) proportional to (k+1)^-exponent."""
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.choice(n, size=size, p=p / p.sum())


def generate_rows(cfg: SynthConfig, model: HiddenModel, event_ids: np.ndarray) -> pd.DataFrame:
    """Generate the rows for ``event_ids`` (deterministic in cfg.seed and the first id).

    Returns the click-log columns plus ``p_true``, the hidden model's click probability.
    """
    n = len(event_ids)
    first = int(event_ids[0]) if n else 0
    rng = np.random.default_rng([cfg.seed, 1, first])
    out: dict[str, object] = {"event_id": event_ids.astype(np.int64)}
    start = pd.Timestamp(cfg.start_date)
    frac = (event_ids + rng.random(n)) / cfg.num_rows
    out["ts"] = (start + pd.to_timedelta(frac * cfg.num_days * 86400.0, unit="s")).floor("ms")

    logit = np.full(n, model.bias)
    for d in range(cfg.num_dense):
        counts = np.floor(rng.lognormal(mean=1.0 + 0.3 * d, sigma=1.0, size=n))
        missing = rng.random(n) < 0.1 + 0.05 * d  # missing values, like Criteo's blanks
        z = (np.log1p(counts) - (1.0 + 0.3 * d)) / 1.0
        # The label may depend only on what the log shows, so p_true stays the best possible
        # prediction: a missing value contributes nothing.
        logit += np.where(missing, 0.0, model.dense_weights[d] * z)
        values = counts.astype(float)
        values[missing] = np.nan
        out[f"I{d + 1}"] = values

    users = zipf_ranks(rng, 0.8, n, cfg.num_users)
    own = rng.random(n) < 0.7
    k = cfg.num_communities
    per_comm = max(cfg.num_items // k, 1)
    own_items = (rng.integers(0, per_comm, n) * k + users % k) % cfg.num_items
    items = np.where(own, own_items, rng.integers(0, cfg.num_items, n))
    logit += 1.5 * np.einsum("ij,ij->i", model.user_factors[users], model.item_factors[items])
    out["C1"] = np.char.add("u", users.astype(str))
    out["C2"] = np.char.add("i", items.astype(str))

    for f in range(cfg.num_categorical - 2):
        ranks = zipf_ranks(rng, cfg.zipf_exponent, n, cfg.cardinality)
        missing = rng.random(n) < 0.03
        logit += np.where(missing, 0.0, model.field_weights[f, ranks])
        values = np.char.add(f"c{f + 3}_", np.char.mod("%x", ranks * 2654435761 % 2**32)).astype(object)
        values[missing] = None
        out[f"C{f + 3}"] = values

    lengths = rng.integers(1, 5, n)
    tag_ids = zipf_ranks(rng, 1.0, int(lengths.sum()), cfg.num_tags)
    splits = np.cumsum(lengths)[:-1]
    tag_lists = np.split(tag_ids, splits)
    logit += np.array([model.tag_weights[t].mean() for t in tag_lists])
    out["tags"] = [[f"t{t}" for t in ts] for ts in tag_lists]

    p = 1.0 / (1.0 + np.exp(-logit))
    out["label"] = (rng.random(n) < p).astype(np.int32)
    out["p_true"] = p
    return pd.DataFrame(out)


def click_schema(cfg: SynthConfig) -> str:
    """Spark DDL schema of the generated rows (click log + ``p_true``)."""
    dense = ", ".join(f"I{d + 1} double" for d in range(cfg.num_dense))
    cats = ", ".join(f"C{f + 1} string" for f in range(cfg.num_categorical))
    return f"event_id long, ts timestamp, {dense}, {cats}, tags array<string>, label int, p_true double"


def generate(spark, cfg: SynthConfig):
    """The synthetic rows as a Spark DataFrame, generated on the executors (nothing collected).

    Returns:
        A DataFrame with the click-log columns and ``p_true``.
    """
    model = make_hidden_model(cfg)
    schema = click_schema(cfg)
    columns = [c.split(" ")[0] for c in schema.split(", ")]

    def gen(batches):
        for batch in batches:
            yield generate_rows(cfg, model, batch["id"].to_numpy())[columns]

    # Fixed partitioning: each slice of ids is generated from (seed, first id), so the data does
    # not depend on the cluster. mapInPandas batches within a partition are cut by Arrow's
    # maxRecordsPerBatch, also fixed, so the output is deterministic.
    ids = spark.range(0, cfg.num_rows, numPartitions=cfg.num_partitions)
    return ids.mapInPandas(gen, schema=schema)


def best_auc(spark, oracle) -> float:
    """AUC of the true click probability: the best any model can reach on these rows."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    scored = oracle.selectExpr("cast(label as double) as label", "p_true as rawPrediction")
    return float(BinaryClassificationEvaluator(metricName="areaUnderROC").evaluate(scored))
