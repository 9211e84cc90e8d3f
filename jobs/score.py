"""Batch scoring with the registered CTR model (spark-submit entry point): raw rows -> Delta probabilities.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.1.0 jobs/score.py \\
        --model models:/ctr_model@champion --input data/raw/clicks --output data/scores

The alias is resolved to one version first, so the whole job scores with one model even if the
alias moves meanwhile. Rows are scored by ``mlflow.pyfunc.spark_udf`` (raw columns of the model's
signature), checked by the GX ``scores`` suite, and written as one atomic Delta commit with the
input's id column and ``probability``; on any error the previous output stays intact.
"""

import sys

from core.cli import load_config, run
from core.errors import InputError
from core.tracking import mlflow_run
from embeddings.io import read_table, require_columns, write_delta
from embeddings.spark import spark_session
from embeddings.stages import checked, log_input, log_output


def _resolve(uri: str) -> tuple[str, str | None]:
    """``models:/NAME@ALIAS`` -> (``models:/NAME/VERSION``, VERSION); other URIs as they are."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not uri.startswith("models:/") or "@" not in uri:
        return uri, None
    name, alias = uri[len("models:/"):].split("@", 1)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
    except MlflowException as exc:
        raise InputError(f"--model {uri}: no version of '{name}' has alias '{alias}' ({exc.message})") from None
    return f"models:/{name}/{version}", str(version)


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="score", description=__doc__)
    import mlflow
    from pyspark.sql import functions as F

    sc = cfg.score
    model_uri = sc.model or f"models:/{cfg.mlflow.registered_model}@{cfg.mlflow.champion_alias}"
    source, id_col = sc.input or cfg.encode.input, sc.id_col or cfg.train.id_col
    if cfg.mlflow.enabled:
        mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    with spark_session(cfg.spark) as spark, mlflow_run(cfg.mlflow, "score", params={"model": model_uri}) as mlrun:
        uri, version = _resolve(model_uri)
        signature = mlflow.models.get_model_info(uri).signature
        columns = signature.inputs.input_names()
        raw_rows = read_table(spark, source, sc.input_format, what="score.input")
        require_columns(raw_rows, [id_col, *columns], "score.input")
        log_input(spark, "events", source, sc.input_format)
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
        scores = raw_rows.select(id_col, udf(*[F.col(c) for c in columns]).alias(cfg.quality.probability_col))
        scores = scores.checkpoint(eager=True)  # score once: the gate's passes and the write reuse the result
        meta = {"job": "score", "model": uri, "model_uri": model_uri, "model_version": version, "input": source}
        result = log_output("scores", write_delta(checked(scores, "scores", cfg), sc.output, metadata=meta))
        if mlrun is not None:
            mlflow.set_tags({"score.model": uri, "score.model_version": str(version)})
    print(f"scored {result.num_rows} rows of {source} with {uri} -> {result.path} (Delta v{result.version})")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
