"""User-fixable errors of the trainer (no pyspark import, so ``recsys`` stays Spark-free)."""


class InputDataError(ValueError):
    """Training input is empty, malformed or does not match the vocabulary/config; names the column/table."""
