"""Test-wide settings: a private data directory, few torch threads, a hypothesis profile."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("bench", deadline=None, print_blob=True)
settings.load_profile("bench")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
