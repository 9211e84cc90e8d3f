"""Fault suite: kill -9 mid-stage, two runs on one output at once, unreadable input, runs that cannot fit.

Every Spark stage job is killed (SIGKILL to its process group: Python and its JVM) at three points
while it rewrites an existing output: while it writes its data files, and at two random times;
each time the output must still be the version before, readable and unchanged, and a rerun after a
kill must equal a clean run. Killed runs skip the GX gates and MLflow (see ``LEAN``): they write no
table, and the runs take a minute each on 2 cores; the races run whole jobs. The counts of this module are the
README's reliability figures.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "jobs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from job_processes import JobProcess  # noqa: E402

pytestmark = pytest.mark.slow  # subprocess Spark jobs killed and raced

# stage job -> (the table it writes, the columns that define its content)
STAGE_JOBS = {
    "build_vocab": ("vocab", ["feature", "value", "id"]),
    "encode": ("encoded", None),
    "fastrp": ("embeddings", ["node", "embedding"]),
    "score": ("scores", None),
}
KILL_POINTS = 3


def flags(root: Path) -> list[str]:
    return [
        "--config",
        str(REPO / "conf" / "local.yaml"),
        "--master",
        "local[2]",
        "--set",
        f"tables.root={root}",
        "--set",
        "spark.shuffle_partitions=2",
        "--set",
        "quality.data_docs=false",
        "--set",
        "synth.num_rows=4000",
        "--set",
        "fastrp.dim=16",
        "--set",
        "train.epochs=1",
    ]


_runs = iter(range(10**6))


# What a killed run skips to save time (each of these jobs takes about a minute on 2 cores): the GX
# gates and MLflow, which write no table (score keeps MLflow: it loads the champion from the registry).
LEAN = {
    job: ["--set", "quality.enabled=false"] + (["--set", "mlflow.enabled=false"] if job != "score" else [])
    for job in ("build_vocab", "encode", "fastrp", "score")
}


def start(job: str, root: Path, *extra: str) -> JobProcess:
    """``jobs/<job>.py`` in a process of its own (and process group, so a kill reaches its JVM), cwd outside the repo."""
    return JobProcess(job, [*flags(root), *extra], cwd=root, log=root / f"{job}-{next(_runs)}.log")


def start_lean(job: str, root: Path) -> JobProcess:
    return start(job, root, *LEAN[job])


@pytest.fixture(scope="module")
def pipeline(spark, tmp_path_factory):
    """A data root where the whole refresh ran once (every output at v0, a champion registered)."""
    from refresh import main as refresh

    from core.cli import run

    root = tmp_path_factory.mktemp("faults")
    assert run(refresh, flags(root)) == 0
    return root


def table(spark, root: Path, name: str, version: int | None = None):
    from core.config import PipelineConfig

    path = PipelineConfig.model_validate({"tables": {"root": str(root)}}).tables.path(name)
    reader = spark.read.format("delta")
    return (reader if version is None else reader.option("versionAsOf", version)).load(path), path


def content(df, columns):
    cols = columns or sorted(df.columns)
    return sorted(tuple(r) for r in df.select(*cols).collect())


def new_data_files(path: str, before: set[str]) -> bool:
    return any(p.suffix == ".parquet" and str(p) not in before for p in Path(path).glob("*.parquet"))


def kill_when(job: str, root: Path, ready, tries: int = 3) -> tuple[str, int]:
    """Start ``job`` and SIGKILL its process group once ``ready(elapsed, attempt)`` holds; retried if the run
    finished first. Returns when the kill landed (for messages) and how many runs finished (each committed)."""
    for attempt in range(tries):
        proc, started = start_lean(job, root), time.monotonic()
        while proc.poll() is None and not ready(time.monotonic() - started, attempt):
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            return f"killed at {time.monotonic() - started:.1f} s (try {attempt + 1})", attempt
        assert proc.returncode == 0, proc.output()[-2000:]
    raise AssertionError(f"{job} finished before every one of {tries} kills")


@pytest.mark.parametrize("job", list(STAGE_JOBS))
def test_a_stage_killed_at_any_point_leaves_its_last_version_and_a_rerun_equals_a_clean_run(job, pipeline, spark):
    from embeddings.io import delta_version

    name, columns = STAGE_JOBS[job]
    before, path = table(spark, pipeline, name)
    version, clean = delta_version(spark, path), content(before, columns)

    def intact(killed: tuple[str, int] | str) -> None:
        nonlocal version
        when, finished = (killed, 0) if isinstance(killed, str) else killed
        version += finished  # a run that finished before its kill committed, equal to the clean run
        assert delta_version(spark, path) == version, f"{job} {when} committed a version"
        assert content(table(spark, pipeline, name)[0], columns) == clean, f"{job} {when} changed the table"

    # killed while it writes its output's data files (the commit not yet made)
    baseline: dict[int, set[str]] = {}  # the table's files when each attempt started

    def writing(elapsed: float, attempt: int) -> bool:
        return new_data_files(path, baseline.setdefault(attempt, {str(p) for p in Path(path).glob("*.parquet")}))

    started = time.monotonic()
    when, finished = kill_when(job, pipeline, writing)
    intact((when + " mid-write", finished))
    duration = time.monotonic() - started  # about a whole run: the write is its last step
    # killed at two random points before that
    rng = random.Random(f"{job}-kills")
    for point in sorted(rng.uniform(0.1, 0.6) * duration for _ in range(KILL_POINTS - 1)):
        intact(kill_when(job, pipeline, lambda elapsed, attempt, p=point: elapsed >= p / 2**attempt))
    # a rerun after the kills: one new version, equal to the clean run's (deterministic)
    proc = start_lean(job, pipeline)
    assert proc.wait(timeout=600) == 0, proc.output()[-2000:]
    intact(("rerun", 1))


def test_two_vocabulary_runs_on_one_output_never_both_commit_on_the_same_version(pipeline, spark):
    """Started together (min-count 2 and 5): one commits, the other exits 3 saying so, or, had they not
    overlapped, the second refreshes the first's version; the ids of kept values never change."""
    from core.delta import commit_metadata
    from embeddings.io import delta_version

    vocab, path = table(spark, pipeline, "vocab")
    v0 = delta_version(spark, path)
    runs = [start("build_vocab", pipeline, "--min-count", str(n)) for n in (2, 5)]
    outcomes = [(p.wait(timeout=600), p.output()) for p in runs]
    codes = sorted(code for code, _ in outcomes)
    committed = delta_version(spark, path) - v0
    assert codes in ([0, 3], [0, 0]), outcomes
    assert committed == codes.count(0)
    if codes == [0, 3]:
        (loser,) = [err for code, err in outcomes if code == 3]
        assert "error: tables.vocab" in loser and "changed by another run" in loser and "rerun" in loser
    # every committed version refreshed the one before it: its refresh number is one more
    refreshes = [commit_metadata(path, v)["refresh"] for v in range(v0, v0 + committed + 1)]
    assert refreshes == list(range(refreshes[0], refreshes[0] + committed + 1))
    ids = {
        v: dict(((r.feature, r.value), r.id) for r in table(spark, pipeline, "vocab", v)[0].collect()) for v in (v0,)
    }
    latest = {(r.feature, r.value): r.id for r in table(spark, pipeline, "vocab")[0].collect()}
    assert all(latest[k] == i for k, i in ids[v0].items() if k in latest)
    assert set(ids[v0]) <= set(latest)  # nothing dropped


def test_two_promotions_at_once_move_the_champion_once_per_version_they_compared_with(pipeline):
    """Both register a version; one moves the champion, the other exits 3 (lost the race), or, had they
    not overlapped, the second compared itself with the first's version. The alias holder is tagged promoted."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{pipeline / 'mlflow.db'}")
    before = client.get_model_version_by_alias("ctr_model", "champion").version
    runs = [start("promote", pipeline) for _ in range(2)]
    outcomes = [(p.wait(timeout=600), p.output(), p.output()) for p in runs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes in ([0, 3], [0, 0]), outcomes
    champion = client.get_model_version_by_alias("ctr_model", "champion")
    versions = [v for v in client.search_model_versions("name = 'ctr_model'") if int(v.version) > int(before)]
    assert len(versions) == 2
    decisions = {v.version: v.tags.get("promotion.decision") for v in versions}
    assert champion.tags["promotion.decision"] == "promoted"
    if codes == [0, 3]:
        assert sorted(decisions.values()) == ["lost_race", "promoted"]
        assert champion.tags["promotion.champion_version_before"] == str(before)
        (loser,) = [err for code, _, err in outcomes if code == 3]
        assert "moved by another promotion" in loser
    else:  # serial: the second compared itself with the first winner
        later = max(versions, key=lambda v: int(v.version))
        earlier = min(versions, key=lambda v: int(v.version))
        assert later.tags["promotion.champion_version_before"] in (str(before), str(earlier.version))
    assert not client.search_registered_models("name = 'ctr_model.promotion-lock'")  # the lock was released


# --------------------------------------------------------------------------- hostile input


def run_job(job: str, argv: list[str], capsys) -> tuple[int, str]:
    import importlib

    from core.cli import run

    code = run(importlib.import_module(job).main, argv)
    return code, capsys.readouterr().err


def test_a_truncated_parquet_file_of_the_input_is_named_in_one_error_line(pipeline, spark, tmp_path, capsys):
    clicks, _ = table(spark, pipeline, "clicks")
    clicks.repartition(3).write.parquet(str(tmp_path / "clicks"))
    victim = sorted((tmp_path / "clicks").glob("part-*.parquet"))[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    argv = [*flags(pipeline), "--input", str(tmp_path / "clicks"), "--input-format", "parquet"]
    argv += ["--output", str(tmp_path / "vocab")]
    code, err = run_job("build_vocab", argv, capsys)
    assert code == 2
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert victim.name in line and "cannot read file" in line and "suite" not in line
    assert not (tmp_path / "vocab").exists()


def test_a_file_deleted_after_listing_is_named_in_one_error_line(pipeline, spark, tmp_path):
    from core.config import PipelineConfig
    from core.errors import InputError
    from embeddings.io import read_table, reading
    from embeddings.runner import Gate, check

    clicks, _ = table(spark, pipeline, "clicks")
    clicks.repartition(3).write.parquet(str(tmp_path / "clicks"))
    frame = read_table(spark, str(tmp_path / "clicks"), "parquet")  # listed; then a file goes away
    victim = sorted((tmp_path / "clicks").glob("part-*.parquet"))[0]
    victim.unlink()
    cfg = PipelineConfig.model_validate({"quality": {"output": str(tmp_path / "q"), "data_docs": False}})
    with pytest.raises(InputError, match=rf"cannot read file .*{victim.name}.*(FileNotFound|not exist)"):
        with reading("tables.clicks"):
            check(frame, Gate("clicks"), cfg)


def test_a_csv_without_its_header_row_gets_one_missing_columns_line(pipeline, spark, tmp_path, capsys):
    clicks, _ = table(spark, pipeline, "clicks")
    clicks.drop("tags").limit(200).write.option("header", False).csv(str(tmp_path / "clicks"))
    argv = [*flags(pipeline), "--input", str(tmp_path / "clicks"), "--input-format", "csv"]
    argv += ["--output", str(tmp_path / "vocab"), "--set", "schema.categorical=[C1,C2]"]
    code, err = run_job("build_vocab", argv, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1
    assert "missing column(s) event_id, label, ts" in lines[0] and "without its header row" in lines[0]
    assert str(tmp_path / "clicks") in lines[0]


def test_a_fastrp_run_that_cannot_fit_is_refused_with_its_estimate_and_the_limit(pipeline, spark, capsys):
    from embeddings.io import delta_version

    path = table(spark, pipeline, "embeddings")[1]
    before = delta_version(spark, path)
    # --allow-dim-change: the size is what is refused here, not the width change from the published table
    code, err = run_job("fastrp", [*flags(pipeline), "--dim", "1000000000", "--allow-dim-change"], capsys)
    assert code == 2
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "does not fit this machine" in line and "GiB >" in line and "--force" in line
    assert delta_version(spark, path) == before
