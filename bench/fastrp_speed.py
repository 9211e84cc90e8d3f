"""FastRP speed: Spark engine (local[2]) vs the scipy reference on random power-law graphs, JSON + PNG.

    python bench/fastrp_speed.py --sizes 1e5,1e6          # quick
    python bench/fastrp_speed.py --sizes 1e5,1e6,1e7      # the issue's range

Graph of M edges: N = M / 10 nodes, both endpoints drawn with P(node i) ~ (i + 1)^-0.8 (a
power-law degree tail), ids permuted longs, undirected, unweighted; written to Parquet first.
Each size runs both engines in the same run, each in a fresh child process (so a peak belongs to
one engine alone): seconds (Spark: validate, index, blocks, iterations, Delta write, not the
session start; local: the same formulas on arrays already in memory, plus the Parquet read timed
apart), edges per second, and peak memory sampled every 0.1 s: the Python driver's RSS, the
Spark JVM's RSS (driver and executor are one JVM under local[*]) and its Python workers' RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil


class PeakMemory:
    """Samples RSS of this process, the JVM child and the JVM's Python workers; peaks per phase."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peaks, self.phase = interval, {}, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict:
        me = psutil.Process()
        driver = me.memory_info().rss
        jvm = workers = 0
        for child in me.children(recursive=False):
            try:
                if "java" in child.name():
                    jvm += child.memory_info().rss
                    workers += sum(p.memory_info().rss for p in child.children(recursive=True))
            except psutil.Error:
                pass
        return {"python_driver_rss": driver, "jvm_rss": jvm, "python_workers_rss": workers}

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.phase is not None:
                sample = self._sample()
                peak = self.peaks.setdefault(self.phase, {k: 0 for k in sample})
                for key, value in sample.items():
                    peak[key] = max(peak[key], value)
            time.sleep(self.interval)

    def start(self, phase: str) -> None:
        self.phase = phase

    def stop(self) -> dict:
        time.sleep(2 * self.interval)
        phase, self.phase = self.phase, None
        return self.peaks.get(phase, {})

    def close(self) -> None:
        self._stop.set()


def power_law_edges(num_edges: int, seed: int, avg_degree: int = 10, exponent: float = 0.8) -> pd.DataFrame:
    """(src, dst) longs: N = M / avg_degree nodes, endpoints ~ (rank + 1)^-exponent, ids permuted."""
    rng = np.random.default_rng(seed)
    n = max(10, num_edges // avg_degree)
    p = (np.arange(n) + 1.0) ** -exponent
    cdf = np.cumsum(p / p.sum())
    ids = rng.permutation(n).astype(np.int64) * 7919 + 13  # non-contiguous long ids
    src = np.minimum(np.searchsorted(cdf, rng.random(num_edges)), n - 1)
    dst = np.minimum(np.searchsorted(cdf, rng.random(num_edges)), n - 1)
    return pd.DataFrame({"src": ids[src], "dst": ids[dst]})


def run_local(path: Path, cfg, memory: PeakMemory) -> dict:
    """The scipy reference on arrays already in memory (the Parquet read is timed apart)."""
    from embeddings import fastrp as fr

    memory.start("local")
    started = time.time()
    pdf = pd.read_parquet(path)
    row = {"local_read_seconds": time.time() - started}
    started = time.time()
    nodes, emb = fr.embed_edge_list(pdf["src"].to_numpy(), pdf["dst"].to_numpy(), None, cfg)
    row["local_seconds"] = time.time() - started
    row["nodes"] = int(len(nodes))
    del pdf, nodes, emb
    row["local_peak"] = memory.stop()
    return row


def run_spark(path: Path, cfg, memory: PeakMemory, args, work: Path) -> dict:
    """The Spark engine end to end, from the Parquet file to the Delta output (session start not timed)."""
    from core.config import SparkConfig
    from embeddings.fastrp_run import run_fastrp
    from embeddings.spark import build_spark

    spark = build_spark(
        SparkConfig(
            master=args.master,
            shuffle_partitions=4,
            driver_memory=args.driver_memory,
            checkpoint_dir=str(work / "ckpt"),
        )
    )
    try:
        memory.start("spark")
        started = time.time()
        result = run_fastrp(
            spark,
            spark.read.parquet(str(path)),
            cfg,
            str(work / "ckpt"),
            output=str(work / f"emb_{path.stem}"),
            input_path=str(path),
        )
        row = {"spark_seconds": time.time() - started, "spark_peak": memory.stop()}
        meta = json.loads(spark.sql(f"DESCRIBE HISTORY delta.`{result.path}`").head()["userMetadata"])
    finally:
        spark.stop()
    row["spark_seconds_by_phase"] = meta["seconds_by_phase"]
    row["num_blocks"], row["block_size"] = meta["num_blocks"], meta["block_size"]
    return row


def one_engine(args) -> int:
    """Child mode: one engine on one graph in this fresh process; prints its row as JSON on the last line."""
    from core.config import FastRPConfig

    work = Path(args.workdir)
    path = work / f"edges_{args.child_size}.parquet"
    cfg = FastRPConfig(
        weight_col=None,  # unweighted edge lists
        dim=args.dim,
        iteration_weights=[1.0] * args.iterations,
        normalization_strength=-0.5,
        block_size=args.block_size,
        checkpoint=args.checkpoint,
    )
    memory = PeakMemory()
    row = run_local(path, cfg, memory) if args.child_engine == "local" else run_spark(path, cfg, memory, args, work)
    memory.close()
    print(json.dumps(row), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="edge counts, comma separated")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument(
        "--block-size", type=int, default=None, help="nodes per block (default: the engine's, by N and D)"
    )
    parser.add_argument("--checkpoint", choices=["reliable", "local"], default="reliable")
    parser.add_argument("--engines", default="local,spark", help="which engines to run, comma separated")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--out", default="bench/results/fastrp_speed.json")
    parser.add_argument("--plot", default=None, help="PNG path (default: --out with .png)")
    parser.add_argument("--child-engine", choices=["local", "spark"], help=argparse.SUPPRESS)
    parser.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_engine:
        return one_engine(args)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    engines = args.engines.split(",")

    load_at_start = os.getloadavg()
    scratch = tempfile.TemporaryDirectory(prefix="fastrp_speed_", dir=args.workdir)
    work = Path(scratch.name)
    passthrough = [
        "--dim",
        str(args.dim),
        "--iterations",
        str(args.iterations),
        "--master",
        args.master,
        "--driver-memory",
        args.driver_memory,
        "--checkpoint",
        args.checkpoint,
        "--workdir",
        str(work),
    ]
    if args.block_size:
        passthrough += ["--block-size", str(args.block_size)]
    results = []
    for m in sizes:
        power_law_edges(m, seed=m).to_parquet(work / f"edges_{m}.parquet", index=False)
        row = {"edges": m}
        for engine in engines:  # each engine in its own process: peak memory is that engine's alone
            child = subprocess.run(
                [sys.executable, __file__, *passthrough, "--child-engine", engine, "--child-size", str(m)],
                check=True,
                capture_output=True,
                text=True,
            )
            row.update(json.loads(child.stdout.strip().splitlines()[-1]))
        if "spark_seconds" in row:
            row["spark_edges_per_second"] = m / row["spark_seconds"]
        if "local_seconds" in row:
            row["local_edges_per_second"] = m / row["local_seconds"]
        if "spark_seconds" in row and "local_seconds" in row:
            row["ratio_spark_over_local"] = row["spark_seconds"] / row["local_seconds"]
            row["ratio_spark_over_local_incl_read"] = row["spark_seconds"] / (
                row["local_seconds"] + row["local_read_seconds"]
            )
        results.append(row)
        print(json.dumps(row), flush=True)
    scratch.cleanup()
    report = {
        "dim": args.dim,
        "iterations": args.iterations,
        "master": args.master,
        "block_size": args.block_size,
        "checkpoint": args.checkpoint,
        "load_average_at_start": load_at_start,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    if "spark_seconds" in results[0] and "local_seconds" in results[0]:
        plot(results, Path(args.plot) if args.plot else out.with_suffix(".png"))
    return 0


def plot(results: list[dict], path: Path) -> None:
    """Seconds and peak memory against edges, both engines, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = [r["edges"] for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.loglog(m, [r["spark_seconds"] for r in results], "o-", label="Spark local[2]")
    ax1.loglog(m, [r["local_seconds"] for r in results], "s-", label="scipy reference")
    ax1.set_xlabel("edges"), ax1.set_ylabel("seconds"), ax1.legend(), ax1.grid(True, which="both", alpha=0.3)
    gib = 1 << 30
    ax2.semilogx(
        m, [r["spark_peak"].get("python_driver_rss", 0) / gib for r in results], "o-", label="Spark: Python driver"
    )
    ax2.semilogx(
        m, [r["spark_peak"].get("jvm_rss", 0) / gib for r in results], "^-", label="Spark: JVM (driver+executor)"
    )
    ax2.semilogx(
        m, [r["spark_peak"].get("python_workers_rss", 0) / gib for r in results], "v-", label="Spark: Python workers"
    )
    ax2.semilogx(
        m, [r["local_peak"].get("python_driver_rss", 0) / gib for r in results], "s-", label="scipy reference process"
    )
    ax2.set_xlabel("edges"), ax2.set_ylabel("peak RSS (GiB)"), ax2.legend(fontsize=8), ax2.grid(True, alpha=0.3)
    fig.suptitle("FastRP, d=128, 3 iterations")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
