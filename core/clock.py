"""Wall-clock seconds of named steps, lap by lap: the phase splits a run records (pure Python, no Spark)."""

from __future__ import annotations

import time


class Clock:
    """``lap(name)`` adds the seconds since the previous lap (or since creation) to ``seconds[name]``."""

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds = {} if seconds is None else seconds
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._last, 3)
        self._last = now
