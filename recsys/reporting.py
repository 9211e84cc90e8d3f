"""The training run's MLflow records: metrics, the loss curve (metric history and a plot), JSON, plan, lineage."""

from __future__ import annotations

import datetime as dt

import mlflow
import numpy as np
from mlflow.entities import Metric

from core.delta import commit_inputs, table_version
from core.tracking import log_delta_table
from core.train_config import TrainInputs
from recsys.results import TrainResult, TuneResult


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.6f}"


_RUN_METRICS = (
    "test_auc",
    "test_logloss",
    "test_rows",
    "valid_auc",
    "valid_logloss",
    "examples_per_second",
    "embedding_params",
    "train_seconds",
    "wall_seconds",
    "steps",
    "final_loss",
    "oracle_test_auc",
    "best_step",
    "stopped_early",
)


def training_curve_points(losses: list[float], max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(steps, mean loss) of at most ``max_points`` windows of consecutive steps (1-based last step of each)."""
    loss = np.asarray(losses, dtype=np.float64)
    if len(loss) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    width = max(1, int(np.ceil(len(loss) / max_points)))
    n = len(loss) // width * width
    means = loss[:n].reshape(-1, width).mean(axis=1)
    steps = np.arange(width, n + 1, width)
    if n < len(loss):
        means, steps = np.append(means, loss[n:].mean()), np.append(steps, len(loss))
    return steps, means


def plot_training_curves(result: TrainResult):
    """Matplotlib figure: training loss per step (and a moving average), test/oracle AUC in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(result.loss_history, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(losses):
        ax.plot(np.arange(1, len(losses) + 1), losses, lw=0.6, alpha=0.4, label="train loss (per step)")
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k, len(losses) + 1), smooth, lw=1.5, label=f"moving average ({k} steps)")
    if result.test_logloss is not None:
        ax.axhline(result.test_logloss, color="k", ls="--", lw=1, label="test logloss")
    if result.valid_curve:
        ax.plot(
            [p.step for p in result.valid_curve],
            [p.logloss for p in result.valid_curve],
            "o-",
            ms=3,
            label="valid logloss (eval_every)",
        )
    if result.best_step is not None:
        ax.axvline(result.best_step, color="g", ls=":", lw=1, label=f"kept: step {result.best_step}")
    ax.set_xlabel("step")
    ax.set_ylabel("binary cross-entropy")
    auc, oracle = result.test_auc, result.oracle_test_auc
    ax.set_title(
        f"CTR training ({result.model}, {result.layout} layout): test AUC "
        f"{_fmt(auc)}" + (f", oracle {_fmt(oracle)}" if oracle is not None else "")
    )
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def log_training_run(result: TrainResult, inputs: TrainInputs) -> None:
    """Log a finished training run to the active MLflow run: metrics, curves, plot, JSON, plan, lineage.

    Graph features add the metric ``graph.coverage.<feature>`` and the FastRP table's path and Delta
    version (params ``input.embeddings.*``, tag ``ctr.embeddings_version``, an MLflow dataset).
    """
    run = mlflow.active_run()
    if run is None:
        return
    values = {k: float(v) for k in _RUN_METRICS if isinstance(v := getattr(result, k), (int, float))}
    for k, v in result.embedding_bytes.items():
        values[f"embedding_bytes.{k}"] = float(v)
    for f, g in result.graph_features.items():
        values[f"graph.coverage.{f}"] = g.coverage  # share of f's vocabulary values with a FastRP node
    mlflow.log_metrics(values)
    steps, means = training_curve_points(result.loss_history)
    now = int(dt.datetime.now().timestamp() * 1000)
    points = [Metric("train_loss", float(m), now, int(s)) for s, m in zip(steps, means)]
    for p in result.valid_curve:  # train.eval_every's validations, as MLflow curves
        points += [Metric("valid_curve_auc", p.auc, now, p.step), Metric("valid_curve_logloss", p.logloss, now, p.step)]
    client = mlflow.MlflowClient()
    for i in range(0, len(points), 1000):  # log_batch takes at most 1000 metrics per call
        client.log_batch(run.info.run_id, metrics=points[i : i + 1000])
    fig = plot_training_curves(result)
    mlflow.log_figure(fig, "plots/training_curves.png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    mlflow.log_dict(result.model_dump(mode="json"), "ctr/metrics.json")
    mlflow.log_dict(result.sharding_plan, "ctr/sharding_plan.json")
    mlflow.set_tags({"ctr.layout": result.layout, "ctr.model": result.model})
    log_delta_table("encoded", inputs.encoded, result.input_version, role="input")
    log_delta_table("vocab", inputs.vocab, result.vocab_version, role="input")
    if result.graph_features:
        mlflow.set_tags(
            {
                "ctr.graph_features": ",".join(f"{f}:{g.mode}" for f, g in sorted(result.graph_features.items())),
                "ctr.embeddings_version": str(result.embeddings_version),
            }
        )
        log_delta_table("embeddings", result.embeddings, result.embeddings_version, role="input")
    clicks = commit_inputs(inputs.encoded, result.input_version, "encoded").get("clicks")
    if clicks:
        log_delta_table("clicks", clicks["path"], clicks.get("version"), role="input")
    if inputs.oracle:
        log_delta_table("oracle", inputs.oracle, table_version(inputs.oracle, "oracle"), role="input")


def plot_tuning_history(result: TuneResult):
    """Matplotlib figure: each trial's valid AUC (pruned ones at their last validation) and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for state, style in (("COMPLETE", "o"), ("PRUNED", "x")):
        pts = [(t.number, t.valid_auc) for t in result.trials if t.state == state and t.valid_auc is not None]
        if pts:
            ax.plot(*zip(*pts), style, ms=5, ls="none", label=f"{state.lower()} trials")
    done = [(t.number, t.valid_auc) for t in result.trials if t.state == "COMPLETE" and t.valid_auc is not None]
    if done:
        best = np.maximum.accumulate([v for _, v in done])
        ax.step([n for n, _ in done], best, where="post", lw=1.5, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("valid AUC")
    ax.set_title(f"study {result.study_name!r}: best trial {result.best_trial}, valid AUC {result.best_valid_auc:.5f}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def log_tuning_run(result: TuneResult) -> None:
    """Log a study to the active (parent) MLflow run: best metrics, the best layer, every trial, the plot."""
    import matplotlib.pyplot as plt

    if mlflow.active_run() is None:
        return
    states = [t.state for t in result.trials]
    mlflow.log_metrics(
        {
            "best_valid_auc": result.best_valid_auc,
            "best_trial": float(result.best_trial),
            "trials_complete": float(states.count("COMPLETE")),
            "trials_pruned": float(states.count("PRUNED")),
            "trials_failed": float(states.count("FAIL")),
        }
    )
    mlflow.log_artifact(result.output, "tune")
    mlflow.log_dict(result.model_dump(mode="json"), "tune/study.json")
    fig = plot_tuning_history(result)
    mlflow.log_figure(fig, "plots/tuning_history.png")
    plt.close(fig)
