"""Test-wide settings: the CPU numerics of the `bench` command (``bench.numerics.pin``), a
private data directory, few torch threads, a hypothesis profile, and
the rule for the Neo4j tests: they run against the server ``NEO4J_URI`` names (``./setup.sh
test`` starts one, ``neo4j/server``); without one they skip, except under ``CI=true``, where a
missing server fails the run so that a skip can never hide the store."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from bench import numerics

numerics.pin("native")  # as the `bench` command does, before torch's first kernel: MKL in strict mode

import torch  # noqa: E402

NO_NEO4J = 'NEO4J_URI is not set: no Neo4j server to test against (neo4j/server start, then eval "$(neo4j/server env)")'

settings.register_profile("bench", deadline=None, print_blob=True)
settings.load_profile("bench")
# BENCH_TEST_THREADS: setup.sh runs the bitwise reruns two at a time, one thread each
torch.set_num_threads(int(os.environ.get("BENCH_TEST_THREADS") or max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(scope="session", autouse=True)
def bench_data_dir(tmp_path_factory):
    """Every test session works in its own data directory (graphs store, caches, results)."""
    path = tmp_path_factory.mktemp("bench-data")
    old = os.environ.get("BENCH_DATA")
    os.environ["BENCH_DATA"] = str(path)
    yield path
    if old is None:
        os.environ.pop("BENCH_DATA", None)
    else:
        os.environ["BENCH_DATA"] = old


def pytest_collection_modifyitems(config, items):
    neo4j = [item for item in items if item.get_closest_marker("neo4j")]
    if not neo4j or os.environ.get("NEO4J_URI"):
        return
    if os.environ.get("CI") == "true":
        raise pytest.UsageError(f"CI=true: {len(neo4j)} Neo4j tests may not skip, and {NO_NEO4J}")
    for item in neo4j:
        item.add_marker(pytest.mark.skip(reason=NO_NEO4J))
