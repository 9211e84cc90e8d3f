"""FastRP speed: the Spark job as a process beside plain scipy and the Rust ``fastrp`` package, JSON + PNG.

    python bench/fastrp_speed.py --sizes 1e5,1e6 --rust-python /tmp/rustfrp/bin/python      # quick
    python bench/fastrp_speed.py --sizes 1e5,1e6,1e7 --rust-python /tmp/rustfrp/bin/python  # the issue's range
    python bench/fastrp_speed.py --sizes none --mat ../shared/data/blogcatalog.mat --rust-python ...  # real graph

(the Rust package lives in its own environment: bench/rust-requirements.txt says how.) Graph of M
edges: N = M / 10 nodes, both endpoints drawn with P(node i) ~ (i + 1)^-0.8 (a power-law degree
tail), ids permuted longs, undirected, unweighted; written to Parquet first. ``--mat`` adds a real
graph (BlogCatalog's ``network``: its edges i <= j, unweighted) as one more row. Per graph, each engine
in its own fresh process, one after the other (so a peak belongs to one engine alone):

- job: ``jobs/fastrp.py --master local[2]`` from the Parquet file to its Delta table, gated and
  tracked, timed as a whole process (JVM start included): what a user waits for; job_local: the
  same job with ``--engine local`` (the graph collected to the driver; for small graphs);
- spark: the engine in-process, session start not timed, with its phase split (validate, index,
  blocks, each iteration, write) and the iterations alone;
- local: our scipy reference (float64) on arrays already in memory, the Parquet read timed apart;
- scipy, rust: bench/fastrp_baselines.py, what a user would write with plain scipy (float32, one
  thread) or the Rust package, each timed as a whole process.

Peak memory is sampled every 0.1 s over each process tree: the Python driver, the Spark JVM
(driver and executor are one JVM under local[*]) and its Python workers, and their sum; for the
job, ``job_memory`` holds the ``--estimate`` figures its commit records (its own counts, layout,
cores and heap) and each process's measured peak over its figure (issue 16: within 30%).
``ratio_job_over_scipy`` / ``ratio_job_over_rust`` are the issue's targets (<= 1.5 / <= 4 at 1e7).
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

REPO = Path(__file__).resolve().parents[1]


class PeakMemory:
    """Samples RSS of a process (default: this one), its JVM child and the JVM's Python workers; peaks per phase."""

    def __init__(self, interval: float = 0.1, root: psutil.Process | None = None):
        self.interval, self.peaks, self.phase = interval, {}, None
        self.root = root or psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict:
        try:
            driver = self.root.memory_info().rss
            children = self.root.children(recursive=False)
        except psutil.Error:  # the process is gone
            return {"python_driver_rss": 0, "jvm_rss": 0, "python_workers_rss": 0, "total_rss": 0}
        jvm = workers = 0
        for child in children:
            try:
                if "java" in child.name():
                    jvm += child.memory_info().rss
                    workers += sum(p.memory_info().rss for p in child.children(recursive=True))
            except psutil.Error:
                pass
        return {
            "python_driver_rss": driver,
            "jvm_rss": jvm,
            "python_workers_rss": workers,
            "total_rss": driver + jvm + workers,
        }

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


def mat_edges(path: str) -> pd.DataFrame:
    """(src, dst) longs of a .mat file's symmetric ``network``: its entries i <= j (the engines add each reversed)."""
    import scipy.io
    import scipy.sparse as sp

    upper = sp.triu(sp.csr_matrix(scipy.io.loadmat(path)["network"]), k=0).tocoo()
    return pd.DataFrame({"src": upper.row.astype(np.int64), "dst": upper.col.astype(np.int64)})


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
            conf=dict(kv.split("=", 1) for kv in args.conf),
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


def run_process(name: str, command: list[str]) -> dict:
    """One whole process as a user waits for it: wall seconds, peak RSS of its tree, its last JSON line."""
    started = time.time()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = PeakMemory(root=psutil.Process(child.pid))
    memory.start(name)
    out, err = child.communicate()
    seconds = time.time() - started
    peak = memory.stop()
    memory.close()
    if child.returncode != 0:
        kept = Path(tempfile.gettempdir()) / f"fastrp_speed_{name}_{child.pid}.stderr.log"
        kept.write_text(err)  # the whole log: a Python worker's traceback sits far above the JVM's stack
        raise RuntimeError(f"{name} exited {child.returncode} (stderr kept in {kept}): {err[-2000:]}")
    return {
        f"{name}_process_seconds": seconds,
        f"{name}_peak": peak,
        f"{name}_report": json.loads(out.strip().splitlines()[-1]),
    }


def committed_metadata(table: Path) -> dict:
    """The userMetadata of the job's Delta commit (its last log entry): phases, node count, block layout."""
    log = sorted((table / "_delta_log").glob("*.json"))[-1]
    for line in log.read_text().splitlines():
        info = json.loads(line).get("commitInfo")
        if info and info.get("userMetadata"):
            return json.loads(info["userMetadata"])
    return {}


def measured_over_estimate(estimate: dict, peak: dict) -> dict:
    """The job's own ``--estimate`` figures (from its commit) and each process's measured peak over its figure."""
    out = {"estimate": estimate}
    for process, key in (("python_workers", "python_workers_rss"), ("jvm", "jvm_rss")):
        out[f"{process}_measured_over_estimate"] = peak[key] / estimate[f"{process}_memory_bytes"]
    return out


def job_command(args, path: Path, work: Path, name: str = "job") -> list[str]:
    """``jobs/fastrp.py`` on the edge file, everything it writes (Delta, MLflow, GX, checkpoints) under ``work``."""
    from core.cli import scratch_flags

    root = work / f"{name}_{path.stem}"
    return [
        sys.executable,
        str(REPO / "jobs" / "fastrp.py"),
        "--edges",
        str(path),
        "--edges-format",
        "parquet",
        "--output",
        str(root / "fastrp"),
        "--dim",
        str(args.dim),
        "--iteration-weights",
        ",".join(["1"] * args.iterations),
        "--normalization-strength",
        "-0.5",
        "--checkpoint",
        args.checkpoint,
        *(["--block-size", str(args.block_size)] if args.block_size else []),
        "--set",
        "fastrp.weight_col=null",
        "--set",
        f"tables.root={root}",
        "--set",
        f"spark.driver_memory={args.driver_memory}",
        *scratch_flags(root, args.master, shuffle_partitions=4),
    ]


def baseline_command(python: str, engine: str, args, path: Path) -> list[str]:
    """bench/fastrp_baselines.py under ``python`` (the project's for scipy, the bench's own env for rust)."""
    script = str(REPO / "bench" / "fastrp_baselines.py")
    return [
        python,
        script,
        "--engine",
        engine,
        "--edges",
        str(path),
        "--dim",
        str(args.dim),
        "--iterations",
        str(args.iterations),
    ]


def one_engine(args) -> int:
    """Child mode: one engine on one graph in this fresh process; prints its row as JSON on the last line."""
    from core.config import FastRPConfig

    work = Path(args.workdir)
    path = work / f"edges_{args.child_graph}.parquet"
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
    parser.add_argument(
        "--sizes", default="1e5,1e6,1e7", help="edge counts of power-law graphs, comma separated, or none"
    )
    parser.add_argument(
        "--mat", default=None, help="also a real graph: a .mat file with a 'network' matrix (BlogCatalog)"
    )
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument(
        "--block-size", type=int, default=None, help="nodes per block (default: the engine's, by N and D)"
    )
    parser.add_argument("--checkpoint", choices=["reliable", "local", "none"], default="reliable")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        help="extra Spark setting key=value for the in-process spark engine (repeatable)",
    )
    parser.add_argument(
        "--engines",
        default="job,spark,local,scipy,rust",
        help="comma separated: job (jobs/fastrp.py as a process), job_local (the same with --engine local), spark (the engine in-process, phases), local "
        "(the reference), scipy (plain scipy), rust (the fastrp package, needs --rust-python)",
    )
    parser.add_argument(
        "--rust-python", default=None, help="python of an environment with bench/rust-requirements.txt installed"
    )
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--out", default="bench/results/fastrp_speed.json")
    parser.add_argument("--plot", default=None, help="PNG path (default: --out with .png)")
    parser.add_argument("--child-engine", choices=["local", "spark"], help=argparse.SUPPRESS)
    parser.add_argument("--child-graph", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_engine:
        return one_engine(args)
    sizes = [] if args.sizes == "none" else [int(float(s)) for s in args.sizes.split(",")]
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
    for kv in args.conf:
        passthrough += ["--conf", kv]
    results = []
    graphs = [(str(m), lambda m=m: power_law_edges(m, seed=m)) for m in sizes]
    if args.mat:
        graphs.append((Path(args.mat).stem, lambda: mat_edges(args.mat)))
    for name, make in graphs:
        edges = work / f"edges_{name}.parquet"
        frame = make()
        frame.to_parquet(edges, index=False)
        m = len(frame)
        del frame
        row = {"graph": "power_law" if name.isdigit() else name, "edges": m}
        for engine in engines:  # each engine in its own process: peak memory is that engine's alone
            if engine in ("job", "job_local"):
                extra = ["--engine", "local"] if engine == "job_local" else []
                row.update(run_process(engine, job_command(args, edges, work, engine) + extra))
                meta = committed_metadata(Path(row[f"{engine}_report"]["output"]))
                row[f"{engine}_seconds_by_phase"] = meta.get("seconds_by_phase", {})
                if engine == "job":
                    row["job_memory"] = measured_over_estimate(meta["estimate"], row["job_peak"])
                continue
            if engine in ("scipy", "rust"):
                python = sys.executable if engine == "scipy" else args.rust_python
                if python is None:
                    print("rust: skipped (no --rust-python; see bench/rust-requirements.txt)", file=sys.stderr)
                    continue
                row.update(run_process(engine, baseline_command(python, engine, args, edges)))
                continue
            child = subprocess.run(
                [sys.executable, __file__, *passthrough, "--child-engine", engine, "--child-graph", name],
                check=True,
                capture_output=True,
                text=True,
            )
            row.update(json.loads(child.stdout.strip().splitlines()[-1]))
        if "spark_seconds_by_phase" in row:
            phases = row["spark_seconds_by_phase"]
            row["spark_iteration_seconds"] = sum(v for k, v in phases.items() if k.startswith("iteration_"))
        if "spark_seconds" in row:
            row["spark_edges_per_second"] = m / row["spark_seconds"]
        if "local_seconds" in row:
            row["local_edges_per_second"] = m / row["local_seconds"]
        for job in ("job", "job_local"):
            for peer in ("scipy", "rust"):
                if f"{job}_process_seconds" in row and f"{peer}_process_seconds" in row:
                    row[f"ratio_{job}_over_{peer}"] = row[f"{job}_process_seconds"] / row[f"{peer}_process_seconds"]
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
    if results:
        plot(results, Path(args.plot) if args.plot else out.with_suffix(".png"))
    return 0


SERIES = {  # row key of seconds, row key of the peak, label
    "job": ("job_process_seconds", "job_peak", "jobs/fastrp.py local[2] (process)"),
    "job_local": ("job_local_process_seconds", "job_local_peak", "jobs/fastrp.py --engine local (process)"),
    "spark": ("spark_seconds", "spark_peak", "Spark engine, session started"),
    "iterations": ("spark_iteration_seconds", None, "Spark iterations only"),
    "local": ("local_seconds", "local_peak", "our local engine (scipy, float64)"),
    "scipy": ("scipy_process_seconds", "scipy_peak", "plain scipy float32 (process)"),
    "rust": ("rust_process_seconds", "rust_peak", "Rust fastrp 0.1.1 (process)"),
}


def plot(results: list[dict], path: Path) -> None:
    """Seconds and peak RSS (whole process tree) against edges, every engine that ran, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    gib = 1 << 30
    for colour, (seconds_key, peak_key, label) in enumerate(SERIES.values()):
        for real, style in ((False, "o-"), (True, "*")):  # power-law sizes as lines, a real graph as a star
            rows = [r for r in results if seconds_key in r and (r.get("graph", "power_law") != "power_law") == real]
            if not rows:
                continue
            m = [r["edges"] for r in rows]
            name = label if not real else f"{label}: {', '.join(r['graph'] for r in rows)}"
            ax1.loglog(
                m, [r[seconds_key] for r in rows], style, color=f"C{colour}", label=name, markersize=10 if real else 6
            )
            if peak_key:
                peaks = [r[peak_key].get("total_rss", 0) / gib for r in rows]
                ax2.semilogx(m, peaks, style, color=f"C{colour}", label=name, markersize=10 if real else 6)
    ax1.set_xlabel("edges"), ax1.set_ylabel("seconds"), ax1.legend(fontsize=7), ax1.grid(True, which="both", alpha=0.3)
    ax2.set_xlabel("edges"), ax2.set_ylabel("peak RSS, all processes (GiB)"), ax2.legend(fontsize=7)
    ax2.grid(True, alpha=0.3)
    fig.suptitle("FastRP on power-law graphs (lines) and real graphs (stars), 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
