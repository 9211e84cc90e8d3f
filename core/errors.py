"""One error hierarchy for every job: what a user can fix exits 2 with one ``error:`` line; bugs exit 1."""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_CONFLICT = 3


class PipelineError(Exception):
    """Base of the errors a job reports itself; ``exit_code`` is what the process returns."""

    exit_code = EXIT_BUG


class UserError(PipelineError, ValueError):
    """Something the user can fix (a key, a flag, a file, a column); the message names it."""

    exit_code = EXIT_USER_ERROR


class ConfigError(UserError):
    """A configuration file, key or flag is wrong; the message names it."""


class InputError(UserError):
    """Input data is missing, unreadable or malformed; the message names the table, path or column."""


class ConcurrentChange(PipelineError):
    """Another run changed what this run read (a table, the champion alias) before it committed; rerun."""

    exit_code = EXIT_CONFLICT


class StageFailed(PipelineError):
    """A stage of a multi-stage run exited non-zero; the run exits with the same code."""

    def __init__(self, stage: str, exit_code: int):
        super().__init__(f"stage {stage} exited with code {exit_code}")
        self.stage = stage
        self.exit_code = exit_code
