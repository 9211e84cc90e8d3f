"""Top-K candidates of each user and item node by FastRP vector score, written to a Delta table (spark-submit entry point).

    spark-submit jobs/retrieve.py --embeddings data/fastrp --edges data/graph/edges \
        --output data/candidates --k 100 --metric cosine --queries user,item --exclude-seen

Tables ``embeddings`` (+ ``edges`` for ``--exclude-seen``) -> ``candidates`` of the catalog:
``(query, rank, candidate, score)``, gated (``candidates`` suite) and tracked like every stage.
See embeddings/retrieval.py.
"""

import json
import sys

from core.cli import load_config, run
from embeddings.runner import run_stage
from embeddings.spark import spark_session
from embeddings.stages import RETRIEVE


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv, section="retrieve", description=__doc__)
    with spark_session(cfg.spark) as spark:
        result = run_stage(spark, cfg, RETRIEVE)
    written = result.written["candidates"]
    out = {"output": written.path, "version": written.version, "rows": written.num_rows}
    print(json.dumps({**out, **result.summary.model_dump(mode="json")}))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
