"""FastRP admission control: a run whose estimate exceeds the session's limits is refused before it starts."""

import logging

import pytest

from embeddings.admission import GIB, DoesNotFit, Limits, admit, overruns
from embeddings.fastrp import estimate_resources

LIMITS = Limits(task_memory=4 * GIB, driver_memory=8 * GIB, disk=50 * GIB, disk_at="/tmp")


def estimate(dim: int, nodes: int = 3_000, edges: int = 20_000) -> dict:
    return estimate_resources(nodes, edges, dim, 3, False, block_size=min(nodes, 100_000))


def test_a_graph_that_fits_is_admitted():
    assert overruns(estimate(64), LIMITS, "spark") == []
    admit(estimate(64), LIMITS, "spark", force=False)


def test_an_absurd_dimension_is_refused_naming_each_figure_and_its_limit():
    with pytest.raises(DoesNotFit) as refused:
        admit(estimate(1_000_000_000), LIMITS, "spark", force=False)
    message = str(refused.value)
    assert refused.value.exit_code == 2
    assert "shuffle + state on disk" in message and "> 50.0 GiB free disk at /tmp" in message
    assert "task memory" in message and "> 4.0 GiB per task" in message
    assert "--force" in message and "dim 1000000000" in message  # the estimate's own summary


def test_the_local_engine_is_held_to_the_driver_memory_only():
    big = estimate(100_000, nodes=20_000)
    assert [o.split(" ")[0] for o in overruns(big, LIMITS, "local")] == ["local"]


def test_force_runs_anyway_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        admit(estimate(1_000_000_000), LIMITS, "spark", force=True)
    assert "does not fit" in caplog.text and "running anyway" in caplog.text
