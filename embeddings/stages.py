"""Stage functions: read inputs, check them, compute, write Delta outputs, return a summary.

Each job file (``jobs/*.py``) wraps one of these for spark-submit, and ``jobs/refresh.py`` runs
them in order in one SparkSession. Every check runs before the first write, and each write is
one atomic Delta commit, so a failing stage leaves the previous versions of its outputs intact.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import SparkSession

from embeddings.config import PipelineConfig
from embeddings.encode import encode
from embeddings.io import delta_version, is_delta_table, read_table, write_delta
from embeddings.vocabulary import VocabularyBuilder

log = logging.getLogger(__name__)


def run_synth(spark: SparkSession, cfg: PipelineConfig) -> dict[str, Any]:
    """Generate the synthetic click log, oracle and edge tables (see embeddings.synth)."""
    from embeddings import synth

    s = cfg.synth
    rows = synth.generate(spark, s).cache()
    try:
        auc = synth.best_auc(spark, rows.select("label", "p_true"))
        meta = {"job": "synth", "seed": s.seed, "num_rows": s.num_rows, "best_auc": auc,
                "noise_fields": [f"C{s.num_categorical - i}" for i in range(s.num_noise_fields)][::-1]}
        clicks = write_delta(rows.drop("p_true"), s.output, metadata=meta)
        oracle = write_delta(rows.select("event_id", "label", "p_true"), s.oracle_output, metadata=meta)
    finally:
        rows.unpersist()
    edges = write_delta(synth.edges_from_clicks(read_table(spark, s.output)), s.edges_output,
                        metadata={**meta, "clicks_version": clicks.version})
    return {"clicks": clicks, "oracle": oracle, "edges": edges, "best_auc": auc}


def run_vocab(spark: SparkSession, cfg: PipelineConfig) -> dict[str, Any]:
    """Build or refresh the vocabulary table from ``vocab.input`` (stable ids; see vocabulary.py)."""
    v = cfg.vocab
    raw_events = read_table(spark, v.input, v.input_format, what="vocab.input")
    previous = read_table(spark, v.output, "delta", what="vocab.output") if is_delta_table(spark, v.output) else None
    model = VocabularyBuilder(v).fit(raw_events, previous)
    table = model.table.cache()
    sizes = model.__class__(table, model.features, model.refresh).sizes()
    meta = {"job": "build_vocab", "refresh": model.refresh, "input": v.input,
            "input_version": delta_version(spark, v.input) if v.input_format == "delta" else None,
            "min_count": v.min_count, "max_size": v.max_size, "start": v.start, "end": v.end}
    written = write_delta(table, v.output, metadata=meta)
    table.unpersist()
    return {"vocab": written, "refresh": model.refresh, "num_embeddings": sizes}


def run_encode(spark: SparkSession, cfg: PipelineConfig) -> dict[str, Any]:
    """Write ``encode.input`` with integer ids from the vocabulary table to ``encode.output``."""
    e = cfg.encode
    features = e.features or cfg.vocab.features
    e = e.model_copy(update={"features": features})
    raw = read_table(spark, e.input, e.input_format, what="encode.input")
    vocab = read_table(spark, e.vocab, "delta", what="encode.vocab")
    encoded = encode(raw, vocab, e)
    meta = {"job": "encode", "input": e.input, "vocab": e.vocab, "vocab_version": delta_version(spark, e.vocab),
            "input_version": delta_version(spark, e.input) if e.input_format == "delta" else None,
            "handle_invalid": e.handle_invalid}
    return {"encoded": write_delta(encoded, e.output, metadata=meta)}
