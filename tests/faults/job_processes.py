"""Job processes for the fault suite, forked from a warm interpreter instead of started cold.

A job process is a real one: its own session (so ``killpg`` reaches its JVM too), its own JVM,
MLflow client and GX context; only the Python imports (about 20 s of pyspark, GX, MLflow, torch on
2 cores) are done once, in a fork server that has never started a JVM.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRELOAD = ["pyspark.sql", "delta", "great_expectations", "mlflow", "embeddings.runner", "embeddings.stages", "core.cli"]


def _run_job(job: str, argv: list[str], cwd: str, log: str) -> None:
    os.setsid()  # its own process group: the JVM it starts is in it
    os.environ.pop("EMBEDDINGS_KEEP_SPARK", None)  # a job of its own stops its session, as from the shell
    os.chdir(cwd)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.path.insert(0, str(REPO / "jobs"))
    spec = importlib.util.spec_from_file_location(f"{job}_job", REPO / "jobs" / f"{job}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from core.cli import run

    sys.stdout.flush()
    code = run(module.main, argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class JobProcess:
    """``jobs/<job>.py argv`` running in a forked process; its output goes to ``log``."""

    _context = None

    def __init__(self, job: str, argv: list[str], cwd: Path, log: Path):
        if JobProcess._context is None:
            JobProcess._context = multiprocessing.get_context("forkserver")
            JobProcess._context.set_forkserver_preload(PRELOAD)
        self.log = log
        self.process = JobProcess._context.Process(target=_run_job, args=(job, argv, str(cwd), str(log)))
        self.process.start()
        self.pid = self.process.pid

    def poll(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
