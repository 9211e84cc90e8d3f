"""The vocabulary and encode jobs end to end: exit codes, outputs, bad input, and real spark-submit."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import run, scratch_flags
from core.config import PipelineConfig, SynthConfig
from embeddings.io import delta_version
from embeddings.runner import run_stage
from embeddings.spark import DELTA_PACKAGE
from embeddings.stages import SYNTH

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "jobs"))
import build_vocab  # noqa: E402
import encode as encode_job  # noqa: E402
import make_synthetic  # noqa: E402

pytestmark = pytest.mark.slow  # jobs end to end, spark-submit

FEATURES = "C1,C2,C3,tags"


@pytest.fixture(scope="module")
def clicks(spark, tmp_path_factory):
    """A 3,000-row synthetic click log written once for this module."""
    root = tmp_path_factory.mktemp("synth")
    cfg = PipelineConfig.model_validate(
        {
            "tables": {
                "root": str(root),
                "clicks": {"path": "clicks"},
                "oracle": {"path": "oracle"},
            },
            "mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"},
            "quality": {"output": str(root / "quality")},
            "synth": {"num_rows": 3000, "num_partitions": 2},
        }
    )
    run_stage(spark, cfg, SYNTH)
    return str(root / "clicks")


def vocab_args(job_args, clicks, out, *extra):
    return [*job_args, "--input", clicks, "--features", FEATURES, "--min-count", "2", "--output", str(out), *extra]


def test_synthetic_job_writes_click_log_and_oracle_and_no_edges(spark, job_args, tmp_path, capsys):
    argv = [
        *job_args,
        "--num-rows",
        "500",
        "--num-partitions",
        "1",
        "--output",
        str(tmp_path / "c"),
        "--oracle-output",
        str(tmp_path / "o"),
    ]
    assert run(make_synthetic.main, argv) == 0
    assert "best possible AUC" in capsys.readouterr().out
    assert spark.read.format("delta").load(str(tmp_path / "c")).count() == 500
    assert spark.read.format("delta").load(str(tmp_path / "o")).columns == ["event_id", "label", "p_true"]
    assert SYNTH.outputs == ("clicks", "oracle")  # the edges are build_graph's


def test_synthetic_data_is_deterministic_for_a_seed(spark, tmp_path):
    from embeddings.synth import generate

    a = generate(spark, SynthConfig(num_rows=300, num_partitions=2, seed=3)).collect()
    b = generate(spark, SynthConfig(num_rows=300, num_partitions=2, seed=3)).collect()
    c = generate(spark, SynthConfig(num_rows=300, num_partitions=2, seed=4)).collect()
    assert a == b and a != c


def test_vocab_then_encode_jobs_write_delta_tables(spark, job_args, clicks, tmp_path, capsys):
    # when
    assert run(build_vocab.main, vocab_args(job_args, clicks, tmp_path / "vocab")) == 0
    code = run(
        encode_job.main,
        [
            *job_args,
            "--input",
            clicks,
            "--vocab",
            str(tmp_path / "vocab"),
            "--features",
            FEATURES,
            "--output",
            str(tmp_path / "enc"),
        ],
    )
    # then
    assert code == 0
    printed = capsys.readouterr().out
    assert "vocabulary:" in printed and "num_embeddings per feature: C1=" in printed
    encoded = spark.read.format("delta").load(str(tmp_path / "enc"))
    assert encoded.count() == 3000
    assert dict(encoded.dtypes)["C1"] == "int" and dict(encoded.dtypes)["tags"] == "array<int>"


def test_rerun_on_the_same_input_is_idempotent(spark, job_args, clicks, tmp_path):
    args = vocab_args(job_args, clicks, tmp_path / "vocab")
    assert run(build_vocab.main, args) == 0
    first = sorted(spark.read.format("delta").load(str(tmp_path / "vocab")).drop("added_in").collect())
    assert run(build_vocab.main, args) == 0
    again = sorted(spark.read.format("delta").load(str(tmp_path / "vocab")).drop("added_in").collect())
    assert first == again


@pytest.fixture(scope="module")
def built_vocab(spark, clicks, tmp_path_factory):
    """A vocabulary built once (Delta version 0) that the bad runs below must leave untouched."""
    root = tmp_path_factory.mktemp("built")
    args = scratch_flags(root)
    out = root / "vocab"
    assert run(build_vocab.main, vocab_args(args, clicks, out)) == 0
    return out, sorted(spark.read.format("delta").load(str(out)).collect())


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--features", "C1,nope"], "suite 'clicks': missing column(s) nope"),  # missing column (the clicks gate)
        (["--features", "I1", "--set", "schema.dense=[I2]"], "'I1' has type double"),  # wrong type
        (["--start", "2030-01-01T00:00:00"], "no rows in the window"),  # empty input
        (["--input", "/nonexistent/clicks"], "/nonexistent/clicks"),  # unreadable path
        (["--min-count", "0"], "vocab.min_count"),  # malformed config
        (["--set", "vocab.min_cnt=2"], "vocab.min_cnt"),  # unknown key
    ],
)
def test_bad_input_fails_clearly_and_keeps_the_previous_version(
    spark, job_args, clicks, built_vocab, capsys, extra, expected
):
    # given a successful build (version 0)
    out, before = built_vocab
    capsys.readouterr()
    # when a later run gets bad input
    code = run(build_vocab.main, vocab_args(job_args, clicks, out, *extra))
    # then it exits non-zero naming the problem, and the output is still the previous version
    assert code == 2
    assert expected in capsys.readouterr().err
    assert delta_version(spark, str(out)) == 0
    assert sorted(spark.read.format("delta").load(str(out)).collect()) == before


def test_all_null_feature_is_named_by_the_job(spark, job_args, tmp_path, capsys):
    path = str(tmp_path / "raw")
    spark.createDataFrame([("a", None), ("b", None)], "C1 string, C9 string").write.format("delta").save(path)
    code = run(
        build_vocab.main,
        [
            *job_args,
            "--input",
            path,
            "--features",
            "C1,C9",
            "--time-col",
            "null",
            "--set",
            "quality.enabled=false",
            "--output",
            str(tmp_path / "v"),
        ],
    )
    assert code == 2
    assert "['C9'] have only null values" in capsys.readouterr().err


def test_csv_input_with_header_is_accepted(spark, job_args, tmp_path):
    criteo = REPO.parent / "shared" / "data" / "criteo_sample.txt"
    if not criteo.exists():
        pytest.skip("../shared/data/criteo_sample.txt is not present")
    out = tmp_path / "vocab"
    code = run(
        build_vocab.main,
        [
            *job_args,
            "--input",
            str(criteo),
            "--input-format",
            "csv",
            "--features",
            "C1,C2,C14",
            "--time-col",
            "null",
            "--set",
            "quality.enabled=false",
            "--output",
            str(out),
        ],
    )
    assert code == 0
    assert spark.read.format("delta").load(str(out)).where("feature = 'C1'").count() > 0


@pytest.mark.slow
def test_build_vocab_runs_under_real_spark_submit(clicks, tmp_path):
    # given the job file and a fresh output path
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("EMBEDDINGS_KEEP_SPARK", None)
    cmd = [
        str(spark_submit),
        "--master",
        "local[2]",
        "--packages",
        DELTA_PACKAGE,
        "--conf",
        "spark.ui.enabled=false",
        str(REPO / "jobs" / "build_vocab.py"),
        "--input",
        clicks,
        "--features",
        "C1,tags",
        "--output",
        str(tmp_path / "vocab"),
        "--set",
        f"spark.checkpoint_dir={tmp_path / 'ckpt'}",
        "--set",
        f"spark.warehouse_dir={tmp_path / 'warehouse'}",
        "--set",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "--set",
        f"quality.output={tmp_path / 'q'}",
    ]
    # when
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    # then
    assert done.returncode == 0, done.stderr[-3000:]
    assert "vocabulary:" in done.stdout
    assert (tmp_path / "vocab" / "_delta_log").is_dir()
