"""Stage functions: read inputs, check them, compute, write Delta outputs, return a summary.

Each job file (``jobs/*.py``) wraps one of these for spark-submit, and ``jobs/refresh.py`` runs
them in order in one SparkSession. Every check runs before the first write, and each write is
one atomic Delta commit, so a failing stage leaves the previous versions of its outputs intact.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from core.config import PipelineConfig
from core.tracking import log_delta_table, log_quality_results, mlflow_run
from embeddings.encode import encode
from embeddings.io import WriteResult, delta_version, is_delta_table, read_table, write_delta
from embeddings.quality import gate
from embeddings.vocabulary import VocabularyBuilder

log = logging.getLogger(__name__)


def checked(df: DataFrame, suite: str, cfg: PipelineConfig, **params) -> DataFrame:
    """Run a Great Expectations gate on ``df`` (raises DataQualityError) and log its evidence."""
    report = gate(df, suite, cfg.quality, **params)
    if report is not None:
        log_quality_results(report.folder)
    return df


def log_output(name: str, result: WriteResult) -> WriteResult:
    log_delta_table(name, result.path, result.version, role="output", num_rows=result.num_rows)
    return result


def log_input(spark: SparkSession, name: str, path: str, fmt: str = "delta") -> None:
    log_delta_table(name, path, delta_version(spark, path) if fmt == "delta" else None, role="input")


def run_synth(spark: SparkSession, cfg: PipelineConfig) -> dict[str, Any]:
    """Generate the synthetic click log, oracle and edge tables (see embeddings.synth)."""
    from embeddings import synth

    s = cfg.synth
    with mlflow_run(cfg.mlflow, "synth", params=s) as run:
        rows = synth.generate(spark, s).cache()
        try:
            auc = synth.best_auc(spark, rows.select("label", "p_true"))
            meta = {"job": "synth", "seed": s.seed, "num_rows": s.num_rows, "best_auc": auc,
                    "noise_fields": [f"C{s.num_categorical - i}" for i in range(s.num_noise_fields)][::-1]}
            clicks = log_output("clicks", write_delta(checked(rows.drop("p_true"), "clicks", cfg), s.output,
                                                      metadata=meta))
            oracle = log_output("oracle", write_delta(rows.select("event_id", "label", "p_true"),
                                                      s.oracle_output, metadata=meta))
        finally:
            rows.unpersist()
        edges = synth.edges_from_clicks(read_table(spark, s.output))
        edges = log_output("edges", write_delta(checked(edges, "edges", cfg, weight_col="weight"), s.edges_output,
                                                metadata={**meta, "clicks_version": clicks.version}))
        if run is not None:
            import mlflow

            mlflow.log_metric("best_auc", auc)
    return {"clicks": clicks, "oracle": oracle, "edges": edges, "best_auc": auc}


def run_vocab(spark: SparkSession, cfg: PipelineConfig) -> dict[str, Any]:
    """Build or refresh the vocabulary table from ``vocab.input`` (stable ids; see vocabulary.py)."""
    v = cfg.vocab
    with mlflow_run(cfg.mlflow, "build_vocab", params=v) as run:
        raw_events = read_table(spark, v.input, v.input_format, what="vocab.input")
        log_input(spark, "events", v.input, v.input_format)
        events = checked(raw_events, "clicks", cfg)
        previous = read_table(spark, v.output, "delta", what="vocab.output") if is_delta_table(spark, v.output) else None
        model = VocabularyBuilder(v).fit(events, previous)
        table = model.table.cache()
        try:
            model = dataclasses.replace(model, table=table)
            checked(table, "vocabulary", cfg)
            if previous is not None:
                checked(table, "vocabulary_ids", cfg, previous=previous)
            sizes = model.sizes()
            coverage = model.coverage()
            meta = {"job": "build_vocab", "refresh": model.refresh, "input": v.input,
                    "input_version": delta_version(spark, v.input) if v.input_format == "delta" else None,
                    "min_count": v.min_count, "max_size": v.max_size, "start": v.start, "end": v.end}
            written = log_output("vocab", write_delta(table, v.output, metadata=meta))
        finally:
            table.unpersist()
        if run is not None:
            import mlflow

            mlflow.log_metrics({**{f"num_embeddings.{f}": n for f, n in sizes.items()},
                                **{f"coverage.{f}": c for f, c in coverage.items()}, "refresh": model.refresh})
    return {"vocab": written, "refresh": model.refresh, "num_embeddings": sizes, "coverage": coverage}


def run_encode(spark: SparkSession, cfg: PipelineConfig) -> dict[str, Any]:
    """Write ``encode.input`` with integer ids from the vocabulary table to ``encode.output``."""
    e = cfg.encode
    features = e.features or cfg.vocab.features
    e = e.model_copy(update={"features": features})
    with mlflow_run(cfg.mlflow, "encode", params=e):
        raw = read_table(spark, e.input, e.input_format, what="encode.input")
        vocab = read_table(spark, e.vocab, "delta", what="encode.vocab")
        log_input(spark, "events", e.input, e.input_format)
        log_input(spark, "vocab", e.vocab)
        encoded = encode(raw, vocab, e)
        meta = {"job": "encode", "input": e.input, "vocab": e.vocab, "vocab_version": delta_version(spark, e.vocab),
                "input_version": delta_version(spark, e.input) if e.input_format == "delta" else None,
                "handle_invalid": e.handle_invalid}
        written = log_output("encoded", write_delta(encoded, e.output, metadata=meta))
    return {"encoded": written}


def run_fastrp_stage(spark: SparkSession, cfg: PipelineConfig) -> dict[str, Any]:
    """FastRP embeddings of ``fastrp.edges`` (see embeddings/fastrp_spark.py), gated and tracked."""
    from embeddings.fastrp_spark import run_fastrp

    f = cfg.fastrp
    with mlflow_run(cfg.mlflow, "fastrp", params=f) as run:
        raw_edges = read_table(spark, f.edges, f.edges_format, what="fastrp.edges")
        log_input(spark, "edges", f.edges, f.edges_format)
        edges = checked(raw_edges, "edges", cfg, src_col=f.src_col, dst_col=f.dst_col, weight_col=f.weight_col)

        def check_embeddings(out: DataFrame) -> None:
            max_norm = None if f.standardize else f.self_influence + sum(abs(w) for w in f.iteration_weights) + 1e-3
            checked(out, "embeddings", cfg, dim=f.dim, max_norm=max_norm)

        result = log_output("embeddings", run_fastrp(spark, edges, f, checkpoint_dir=cfg.spark.checkpoint_dir,
                                                     before_write=check_embeddings))
        if run is not None:
            log_embedding_summary(spark, result.path, f.dim)
    return {"embeddings": result}


def log_embedding_summary(spark: SparkSession, path: str, dim: int, sample: int = 2000) -> None:
    """Log norm statistics and a 2-D PCA plot of a sample of node embeddings to the active run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import numpy as np
    from pyspark.sql import functions as F

    emb = read_table(spark, path, "delta", what="fastrp.output")
    norms = emb.select(F.sqrt(F.aggregate("embedding", F.lit(0.0), lambda acc, x: acc + x * x)).alias("n"))
    stats = norms.agg(F.count("*").alias("count"), F.mean("n").alias("mean"), F.min("n").alias("min"),
                      F.max("n").alias("max"), F.sum((F.col("n") == 0).cast("int")).alias("zero")).head()
    mlflow.log_metrics({"embeddings.num_nodes": stats["count"], "embeddings.norm_mean": stats["mean"] or 0.0,
                        "embeddings.norm_min": stats["min"] or 0.0, "embeddings.norm_max": stats["max"] or 0.0,
                        "embeddings.zero_vectors": stats["zero"] or 0})
    fraction = min(1.0, sample / max(stats["count"], 1))
    rows = emb.sample(fraction=fraction, seed=0).limit(sample).select("node", "embedding").collect()  # a bounded sample
    if len(rows) < 3:
        return
    x = np.asarray([r["embedding"] for r in rows], dtype=np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    kinds = np.array([str(r["node"])[:1] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 5))
    for kind in sorted(set(kinds)):
        sel = kinds == kind
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, label=f"'{kind}…' nodes ({sel.sum()})")
    ax.set_title(f"FastRP embeddings (dim {dim}): PCA of {len(rows)} sampled nodes")
    ax.legend(loc="best", fontsize=8)
    mlflow.log_figure(fig, "plots/fastrp_pca.png")
    plt.close(fig)
