"""The Spark stages of the pipeline, each a :class:`~embeddings.runner.Stage` over catalog tables.

    synth        -> clicks, oracle          (embedded default only)
    vocab        clicks -> vocab            (stable ids; see vocabulary.py)
    encode       clicks + vocab -> encoded
    build_graph  clicks -> edges            (the interaction graph; see graph.py)
    fastrp       edges [+ node_properties] -> embeddings  (see fastrp_run.py)
    score   score_rows -> scores       (a registered MLflow model)
    retrieve     embeddings + edges -> candidates  (top-K per query node; see retrieval.py)

Each ``compute`` turns gated input frames into output frames and a typed summary; reading, the
gates, the atomic writes and MLflow are :func:`~embeddings.runner.run_stage`'s.
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import BaseModel, ConfigDict
from pyspark.sql import functions as F

from core.config import PipelineConfig
from core.errors import ConfigError, InputError
from embeddings import synth
from embeddings.encode import encode
from embeddings.fastrp_run import embed, write_run_record
from embeddings.graph import ITEM_ITEM, USER_ITEM, build_edges
from embeddings.io import is_delta_table, require_columns
from embeddings.quality import l2_norm
from embeddings.retrieval import top_k
from embeddings.runner import Gate, Output, Stage, StageContext, StageOutput
from embeddings.vocabulary import VocabularyBuilder


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True)


class SynthSummary(Summary):
    best_auc: float
    num_rows: int
    noise_fields: list[str]


class VocabSummary(Summary):
    refresh: int
    num_embeddings: dict[str, int]
    coverage: dict[str, float]


class EncodeSummary(Summary):
    features: list[str]
    handle_invalid: str


class GraphSummary(Summary):
    num_edges: int
    num_users: int
    num_items: int
    num_item_item_edges: int


class FastRPSummary(Summary):
    num_nodes: int
    num_edges: int
    seconds_by_phase: dict[str, float]


class ScoreSummary(Summary):
    model_uri: str
    model: str
    model_version: str | None


def edges_gate(cfg: PipelineConfig) -> Gate:
    f = cfg.fastrp
    return Gate("edges", dict(src_col=f.src_col, dst_col=f.dst_col, weight_col=f.weight_col))


def clicks_gate(cfg: PipelineConfig) -> Gate:
    return Gate("clicks")


def graph_clicks_gate(cfg: PipelineConfig) -> Gate:
    """The click-log suite on what the graph reads: ids, label, time and the two node columns (not every feature)."""
    return Gate("clicks", dict(dense_cols=[], categorical_cols=[cfg.graph.user, cfg.graph.item]))


# --------------------------------------------------------------------------- synth


def compute_synth(ctx: StageContext) -> StageOutput:
    """The synthetic click log and its oracle (see embeddings.synth); build_graph makes its edges."""
    s, tables = ctx.cfg.synth, ctx.cfg.tables
    tables.path("oracle")  # the oracle needs a catalog entry: fail before generating anything
    for name in SYNTH.outputs:  # never overwrite a user's own table with synthetic rows
        entry = tables.entry(name)
        if entry.format != "delta":
            raise ConfigError(
                f"synth writes tables.{name} as Delta, but tables.{name}.format is {entry.format!r}: "
                "a user's own table; skip the synth stage (--skip synth)"
            )
        if is_delta_table(ctx.spark, entry.path) and (made_by := ctx.last_job(name)) != "synth":
            raise InputError(
                f"tables.{name} ({entry.path}) holds a table synth did not write (last commit by "
                f"{made_by or 'another writer'}): synth refuses to overwrite it; skip it (--skip synth)"
            )
    rows = synth.generate(ctx.spark, s).cache()
    ctx.defer(rows.unpersist)
    auc = synth.best_auc(ctx.spark, rows.select("label", "p_true"))
    noise = [f"C{s.num_categorical - i}" for i in range(s.num_noise_fields)][::-1]
    meta = {"seed": s.seed, "num_rows": s.num_rows, "best_auc": auc, "noise_fields": noise}
    outputs = {
        "clicks": Output(rows.drop("p_true"), [Gate("clicks")], meta),
        "oracle": Output(rows.select("event_id", "label", "p_true"), [], meta),
    }
    return StageOutput(
        outputs,
        SynthSummary(best_auc=auc, num_rows=s.num_rows, noise_fields=noise),
        metrics={"best_auc": auc},
    )


SYNTH = Stage(
    "synth",
    inputs=(),
    outputs=("clicks", "oracle"),
    compute=compute_synth,
    params=lambda cfg: {"synth": cfg.synth},
)


# --------------------------------------------------------------------------- vocab


def compute_vocab(ctx: StageContext) -> StageOutput:
    """Build or refresh the vocabulary of every ``schema.categorical`` column (stable ids)."""
    cfg, schema = ctx.cfg, ctx.cfg.click_schema
    previous = ctx.previous("vocab")
    # numbered from the committed history: one more than the version read (a refresh adding nothing counts too)
    refresh = None if previous is None else ctx.read_metadata("vocab").get("refresh")
    builder = VocabularyBuilder(schema.categorical, cfg.vocab, time_col=schema.time)
    model = builder.fit(ctx.frames["clicks"], previous, None if refresh is None else int(refresh) + 1)
    if model.occurrences is not None:
        ctx.defer(model.occurrences.unpersist)
    table = model.table.cache()
    ctx.defer(table.unpersist)
    gates = [Gate("vocabulary")] + ([Gate("vocabulary_ids", previous=previous)] if previous is not None else [])
    sizes, coverage = model.sizes(), model.coverage()
    v = cfg.vocab
    meta = {"refresh": model.refresh, "min_count": v.min_count, "max_size": v.max_size, "start": v.start, "end": v.end}
    metrics = {
        **{f"num_embeddings.{f}": n for f, n in sizes.items()},
        **{f"coverage.{f}": c for f, c in coverage.items()},
        "refresh": model.refresh,
    }
    return StageOutput(
        {"vocab": Output(table, gates, meta)},
        VocabSummary(refresh=model.refresh, num_embeddings=sizes, coverage=coverage),
        metrics,
    )


VOCAB = Stage(
    "build_vocab",
    inputs=("clicks",),
    outputs=("vocab",),
    compute=compute_vocab,
    input_gates={"clicks": clicks_gate},
    params=lambda cfg: {"vocab": cfg.vocab, "schema": cfg.click_schema},
)


# --------------------------------------------------------------------------- encode


def compute_encode(ctx: StageContext) -> StageOutput:
    """The click log with ids from the vocabulary table (and raw-value hashes) for every categorical column."""
    cfg = ctx.cfg
    features = list(cfg.click_schema.categorical)
    encoded = encode(ctx.frames["clicks"], ctx.frames["vocab"], features, cfg.encode)
    meta = {"handle_invalid": cfg.encode.handle_invalid}
    return StageOutput(
        {"encoded": Output(encoded, [], meta)},
        EncodeSummary(features=features, handle_invalid=cfg.encode.handle_invalid),
    )


ENCODE = Stage(
    "encode",
    inputs=("clicks", "vocab"),
    outputs=("encoded",),
    compute=compute_encode,
    params=lambda cfg: {"encode": cfg.encode, "schema": cfg.click_schema},
)


# --------------------------------------------------------------------------- build_graph


def compute_graph(ctx: StageContext) -> StageOutput:
    """The interaction graph of the click log: user-item (and co-occurrence item-item) edges (see graph.py)."""
    cfg, g, schema = ctx.cfg, ctx.cfg.graph, ctx.cfg.click_schema
    entry = cfg.tables.entry("edges")
    if entry.format != "delta":
        raise ConfigError(
            f"build_graph writes tables.edges as Delta, but tables.edges.format is {entry.format!r}: "
            "a user's own edge table; skip the build_graph stage (--skip graph)"
        )
    if is_delta_table(ctx.spark, entry.path) and (made_by := ctx.last_job("edges")) != BUILD_GRAPH.name:
        raise InputError(
            f"tables.edges ({entry.path}) holds a table build_graph did not write (last commit by "
            f"{made_by or 'another writer'}): build_graph refuses to overwrite it; skip it (--skip graph)"
        )
    edges = build_edges(ctx.frames["clicks"], g, time_col=schema.time, label_col=schema.label).cache()
    ctx.defer(edges.unpersist)
    user_item = F.col("kind") == USER_ITEM
    counts = edges.agg(
        F.count("*").alias("edges"),
        F.count_distinct(F.when(user_item, F.col("src"))).alias("users"),
        F.count_distinct(F.when(user_item, F.col("dst"))).alias("items"),  # item-item edges join these items
        F.sum((F.col("kind") == ITEM_ITEM).cast("long")).alias("item_item"),
    ).head()  # one row of counts
    if counts["edges"] == 0:
        window = f" in the window [{g.start}, {g.end}) of {schema.time!r}" if g.start or g.end else ""
        raise InputError(
            f"tables.clicks: no edges{window} under graph.weight={g.weight!r} and graph.min_weight={g.min_weight}"
        )
    summary = GraphSummary(
        num_edges=counts["edges"],
        num_users=counts["users"],
        num_items=counts["items"],
        num_item_item_edges=counts["item_item"] or 0,
    )
    meta = {**g.model_dump(mode="json"), "time_col": schema.time, "label_col": schema.label}
    gate = Gate("edges", dict(src_col="src", dst_col="dst", weight_col="weight"))
    return StageOutput(
        {"edges": Output(edges, [gate], meta)},
        summary,
        {f"graph.{k}": float(v) for k, v in summary.model_dump().items()},
    )


BUILD_GRAPH = Stage(
    "build_graph",
    inputs=("clicks",),
    outputs=("edges",),
    compute=compute_graph,
    input_gates={"clicks": graph_clicks_gate},  # gated here too: in the DAG it runs beside build_vocab
    params=lambda cfg: {"graph": cfg.graph, "schema": cfg.click_schema},
)


# --------------------------------------------------------------------------- fastrp


def check_dim_unchanged(previous: dict, f, path: str) -> None:
    """Refuse to replace the published vectors with ones of another width, unless ``fastrp.allow_dim_change``.

    Whatever reads ``tables.embeddings`` between refreshes (an ANN index, a feature store, a model
    trained on them) was built for the previous width; Delta's ``array<float>`` does not record it.
    """
    before = (previous.get("params") or {}).get("dim")
    if before is not None and before != f.dim and not f.allow_dim_change:
        raise ConfigError(
            f"fastrp.dim={f.dim} differs from the previous refresh's {before} (tables.embeddings, {path}): "
            "its readers expect the old width; set fastrp.allow_dim_change=true to replace it"
        )


def compute_fastrp(ctx: StageContext) -> StageOutput:
    """FastRP embeddings of the edge table (the Spark engine, or the scipy reference for small graphs)."""
    cfg, f = ctx.cfg, ctx.cfg.fastrp
    check_dim_unchanged(ctx.read_metadata("embeddings"), f, cfg.tables.path("embeddings"))
    started = time.time()
    emb = embed(
        ctx.spark,
        ctx.frames["edges"],
        f,
        checkpoint_dir=cfg.spark.checkpoint_dir,
        raw_properties=ctx.frames.get("node_properties"),
    )
    max_norm = None if f.standardize else f.self_influence + sum(abs(w) for w in f.iteration_weights) + 1e-3
    output = Output(emb.frame, [Gate("embeddings", dict(dim=f.dim, max_norm=max_norm))], emb.metadata)

    def after_write(written) -> None:
        edges = cfg.tables.entry("edges")
        write_run_record(
            ctx.spark, emb, written["embeddings"], edges.path, ctx.versions["edges"], f.engine, time.time() - started
        )
        log_embedding_summary(ctx.spark, written["embeddings"].path, f.dim, written["embeddings"].num_rows)

    summary = FastRPSummary(
        num_nodes=emb.num_nodes, num_edges=emb.num_edges, seconds_by_phase=emb.metadata["seconds_by_phase"]
    )
    return StageOutput(
        {"embeddings": output},
        summary,
        {"fastrp.num_nodes": emb.num_nodes},
        after_write=after_write,
        release=[emb.release],
    )


FASTRP = Stage(
    "fastrp",
    inputs=("edges",),
    outputs=("embeddings",),
    compute=compute_fastrp,
    input_gates={"edges": edges_gate},
    params=lambda cfg: {"fastrp": cfg.fastrp},
    optional_inputs={"node_properties": lambda cfg: cfg.fastrp.node_properties is not None},
)


def node_kinds(nodes: list, max_kinds: int = 8) -> np.ndarray:
    """The plot's colour of each node: its role prefix (``user:``, ``item:``), else one ``node`` group.

    Ids without a prefix (numbers, plain strings) are one group, and past ``max_kinds`` prefixes the
    rarest share ``other``: a legend of one entry per node made the plot take 30 s at 2000 nodes.
    """
    kinds = np.array([n.split(":", 1)[0] if isinstance(n, str) and ":" in n else "node" for n in nodes], dtype=object)
    values, counts = np.unique(kinds, return_counts=True)
    if len(values) > max_kinds:
        keep = set(values[np.argsort(-counts, kind="stable")[: max_kinds - 1]].tolist())
        kinds = np.array([k if k in keep else "other" for k in kinds], dtype=object)
    return kinds


def log_embedding_summary(spark, path: str, dim: int, num_rows: int, sample: int = 2000) -> None:
    """Log norm statistics and a 2-D PCA plot of a sample of node embeddings to the active run.

    One pass over the written table gives both (the sample is collected by the same aggregate): with a
    second pass for the sample the two took 4.2 s for 1e6 vectors of 128 here, one pass 3.2 s.
    """
    import mlflow

    if mlflow.active_run() is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    emb = spark.read.format("delta").load(path)
    num_rows = num_rows if num_rows >= 0 else emb.count()  # -1: the commit did not report its row count
    norm = l2_norm(F.col("embedding"))
    picked = F.rand(seed=0) < F.lit(min(1.0, sample / max(num_rows, 1)))  # each row with probability sample / N
    stats = (
        emb.select(norm.alias("n"), F.when(picked, F.struct("node", "embedding")).alias("s"))
        .agg(
            F.count("*").alias("count"),
            F.mean("n").alias("mean"),
            F.min("n").alias("min"),
            F.max("n").alias("max"),
            F.sum((F.col("n") == 0).cast("int")).alias("zero"),
            F.slice(F.collect_list("s"), 1, sample).alias("sample"),  # collect_list skips the unpicked nulls
        )
        .head()
    )
    mlflow.log_metrics(
        {
            "embeddings.num_nodes": stats["count"],
            "embeddings.norm_mean": stats["mean"] or 0.0,
            "embeddings.norm_min": stats["min"] or 0.0,
            "embeddings.norm_max": stats["max"] or 0.0,
            "embeddings.zero_vectors": stats["zero"] or 0,
        }
    )
    rows = stats["sample"]
    if len(rows) < 3:
        return
    x = np.asarray([r["embedding"] for r in rows], dtype=np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    kinds = node_kinds([r["node"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 5))
    for kind in sorted(set(kinds)):
        sel = kinds == kind
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, label=f"{kind} nodes ({sel.sum()})")
    ax.set_title(f"FastRP embeddings (dim {dim}): PCA of {len(rows)} sampled nodes")
    ax.legend(loc="best", fontsize=8)
    mlflow.log_figure(fig, "plots/fastrp_pca.png")
    plt.close(fig)


# --------------------------------------------------------------------------- score


def resolve_model(uri: str) -> tuple[str, str | None]:
    """``models:/NAME@ALIAS`` -> (``models:/NAME/VERSION``, VERSION); other URIs as they are.

    Resolving first makes the whole job score with one model even if the alias moves meanwhile.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if not uri.startswith("models:/") or "@" not in uri:
        return uri, None
    name, alias = uri[len("models:/") :].split("@", 1)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
    except MlflowException as exc:
        raise InputError(f"--model {uri}: no version of '{name}' has alias '{alias}' ({exc.message})") from None
    return f"models:/{name}/{version}", str(version)


def model_uri(cfg: PipelineConfig) -> str:
    return cfg.score.model or f"models:/{cfg.mlflow.registered_model}@{cfg.mlflow.champion_alias}"


def compute_score(ctx: StageContext) -> StageOutput:
    """Click probabilities of raw rows by ``mlflow.pyfunc.spark_udf`` over the model signature's columns."""
    import mlflow

    cfg = ctx.cfg
    if cfg.mlflow.enabled:
        mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    wanted = model_uri(cfg)
    uri, version = resolve_model(wanted)
    columns = mlflow.models.get_model_info(uri).signature.inputs.input_names()
    id_col = cfg.click_schema.id
    raw_rows = ctx.frames["score_rows"]
    require_columns(raw_rows, [id_col, *columns], "tables.score_rows")
    udf = mlflow.pyfunc.spark_udf(ctx.spark, uri, result_type="double", env_manager="local")
    scores = raw_rows.select(id_col, udf(*[F.col(c) for c in columns]).alias(cfg.quality.probability_col))
    scores = scores.checkpoint(eager=True)  # score once: the gate's passes and the write reuse the result
    meta = {"model": uri, "model_uri": wanted, "model_version": version}

    def after_write(written) -> None:
        if mlflow.active_run() is not None:
            mlflow.set_tags({"score.model": uri, "score.model_version": str(version)})

    return StageOutput(
        {"scores": Output(scores, [Gate("scores")], meta)},
        ScoreSummary(model_uri=wanted, model=uri, model_version=version),
        after_write=after_write,
    )


SCORE = Stage(
    "score",
    inputs=("score_rows",),
    outputs=("scores",),
    compute=compute_score,
    params=lambda cfg: {"model": model_uri(cfg)},
)


# --------------------------------------------------------------------------- retrieve


class RetrieveSummary(Summary):
    num_queries: int
    k: int
    metric: str
    mean_top1_score: float | None


def compute_retrieve(ctx: StageContext) -> StageOutput:
    """Each query node's top-K candidates by FastRP vector score (blockwise on the executors; see retrieval.py)."""
    cfg, r = ctx.cfg, ctx.cfg.retrieve
    candidates = top_k(
        ctx.frames["embeddings"],
        r,
        edges=ctx.frames["edges"] if r.exclude_seen else None,
        node_col=cfg.quality.node_col,
        embedding_col=cfg.quality.embedding_col,
        src_col=cfg.fastrp.src_col,
        dst_col=cfg.fastrp.dst_col,
    ).cache()  # scored once: the summary, the gate and the write reuse it
    ctx.defer(candidates.unpersist)
    first = F.col("rank") == 1
    stats = candidates.agg(
        F.sum(first.cast("long")).alias("num_queries"), F.avg(F.when(first, F.col("score"))).alias("top1")
    ).head()
    summary = RetrieveSummary(
        num_queries=stats["num_queries"] or 0, k=r.k, metric=r.metric, mean_top1_score=stats["top1"]
    )
    meta = {"k": r.k, "metric": r.metric, "queries": list(r.queries), "exclude_seen": r.exclude_seen}
    meta["same_type"] = r.same_type
    metrics = {"retrieve.num_queries": float(summary.num_queries)}
    if summary.mean_top1_score is not None:
        metrics["retrieve.mean_top1_score"] = summary.mean_top1_score
    return StageOutput({"candidates": Output(candidates, [Gate("candidates", dict(k=r.k))], meta)}, summary, metrics)


RETRIEVE = Stage(
    "retrieve",
    inputs=("embeddings", "edges"),  # not gated here: embeddings were gated when written; edges serve exclude_seen
    outputs=("candidates",),
    compute=compute_retrieve,
    params=lambda cfg: {"retrieve": cfg.retrieve},
)
