"""Running a job's ``main``: logging set up once, and bad input turned into a clear exit code.

Every job file ends with ``sys.exit(run(main))``. Errors the user can fix (a config key, a flag,
a missing column or path) print one ``error:`` line naming the thing and exit with code 2;
anything else is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from embeddings.config import ConfigError
from embeddings.io import InputError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, InputError)
EXIT_USER_ERROR = 2


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "py4j.clientserver", "urllib3", "alembic", "great_expectations", "mlflow.store.db.utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call ``main(argv)``; user errors become ``error: ...`` on stderr and exit code 2."""
    setup_logging()
    try:
        return main(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
