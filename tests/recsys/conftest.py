"""Fixtures of the CTR tests: tiny Delta tables in a session tmp dir."""

from __future__ import annotations

import pytest
from ctr_tables import make_encoded, make_vocab, write_delta


@pytest.fixture(scope="session")
def tiny_tables(tmp_path_factory):
    """(encoded path, vocab path) of a 640-row table in 2 files and its vocabulary."""
    root = tmp_path_factory.mktemp("ctr")
    return write_delta(root / "encoded", make_encoded()), write_delta(root / "vocab", [make_vocab()])
