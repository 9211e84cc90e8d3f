"""Fixtures of the GPU tests: the CPU suite's tiny tables and rank functions (tests/recsys), reused as they are."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recsys"))  # ctr_tables, ctr_workers

from ctr_tables import make_encoded, make_vocab, write_delta  # noqa: E402


@pytest.fixture(scope="session")
def gpu_tables(tmp_path_factory):
    """(encoded path, vocab path) of the CPU suite's 640-row table and its vocabulary."""
    root = tmp_path_factory.mktemp("gpu_ctr")
    return write_delta(root / "encoded", make_encoded()), write_delta(root / "vocab", [make_vocab()])
