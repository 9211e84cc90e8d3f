"""Admission control: refuse a FastRP run whose estimate exceeds the machine or cluster before it starts.

The figures are :func:`embeddings.fastrp.estimate_resources`'s (what ``--estimate`` prints); the
limits are read from the Spark session (executor memory and cores) and the host (free memory,
free disk under ``spark.local.dir`` and the checkpoint folder). ``fastrp.force`` runs anyway.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from core.host import available_memory

log = logging.getLogger(__name__)
GIB = 1 << 30


class DoesNotFit(UserError):
    """A run's estimate exceeds a limit of the machine or cluster; the message has both and how to force it."""


@dataclass(frozen=True)
class Limits:
    """What one run may use: bytes per task, on the driver, on local disk (shuffle + state)."""

    task_memory: int
    driver_memory: int
    disk: int
    disk_at: str


def memory_bytes(spec: str | None) -> int | None:
    """Spark's memory strings ('4g', '512m', '1024k', bytes) as bytes."""
    if not spec:
        return None
    spec = spec.strip().lower().rstrip("b")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    return int(float(spec[:-1]) * units[spec[-1]]) if spec[-1] in units else int(spec)


def free_disk(path: str) -> int:
    """Free bytes on the file system that holds ``path`` (its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def process_shape(spark) -> tuple[int, int]:
    """(tasks at once in one process, its JVM heap in bytes): the host's cores and the driver's heap on a
    local master, an executor's cores and memory on a cluster (for the estimate's per-process figures)."""
    conf = spark.sparkContext.getConf()
    if spark.sparkContext.master.startswith("local"):
        return max(1, spark.sparkContext.defaultParallelism), memory_bytes(conf.get("spark.driver.memory", "1g"))
    return int(conf.get("spark.executor.cores", "1")), memory_bytes(conf.get("spark.executor.memory", "1g"))


def spark_limits(spark, checkpoint_dir: str) -> Limits:
    """The limits of this session: local mode shares the host's memory between its cores; on a cluster a
    task gets its executor's memory (JVM + Python) divided by the executor's cores."""
    conf = spark.sparkContext.getConf()
    host_memory = available_memory() or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cores = max(1, spark.sparkContext.defaultParallelism)
    if spark.sparkContext.master.startswith("local"):
        task = host_memory // cores
    else:
        executor = (memory_bytes(conf.get("spark.executor.memory", "1g")) or GIB) + (
            memory_bytes(conf.get("spark.executor.pyspark.memory", None)) or 0
        )
        task = executor // max(1, int(conf.get("spark.executor.cores", "1")))
    local_dir = conf.get("spark.local.dir", None) or os.environ.get("SPARK_LOCAL_DIRS") or "/tmp"
    local_dir = local_dir.split(",")[0]
    disks = {local_dir: free_disk(local_dir), checkpoint_dir: free_disk(checkpoint_dir)}
    at = min(disks, key=disks.get)
    return Limits(task_memory=task, driver_memory=host_memory, disk=disks[at], disk_at=at)


def overruns(estimate: dict, limits: Limits, engine: str) -> list[str]:
    """Each figure of ``estimate`` above its limit, as 'what needed > limit' (empty: the run fits)."""
    need = []
    if engine == "local":
        need.append(("local engine memory", estimate["local_engine_memory_bytes"], limits.driver_memory, "free"))
    else:
        need += [
            ("shuffle + state on disk", estimate["disk_bytes"], limits.disk, f"free disk at {limits.disk_at}"),
            ("task memory", estimate["task_memory_bytes"], limits.task_memory, "per task"),
            ("driver memory", estimate["driver_memory_bytes"], limits.driver_memory, "free"),
        ]
    return [f"{what} {n / GIB:,.1f} GiB > {cap / GIB:,.1f} GiB {where}" for what, n, cap, where in need if n > cap]


def admit(estimate: dict, limits: Limits, engine: str, force: bool) -> None:
    """Raise :class:`DoesNotFit` (exit 2) if the run exceeds ``limits``; with ``force``, only warn."""
    over = overruns(estimate, limits, engine)
    if not over:
        return
    message = f"fastrp run does not fit this machine: {'; '.join(over)} ({estimate['summary']})"
    if force:
        log.warning("%s; running anyway (fastrp.force)", message)
        return
    raise DoesNotFit(f"{message}; lower fastrp.dim or the graph, or rerun with --force")
