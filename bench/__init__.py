"""semattack-bench: semantic-aware multi-label adversarial attacks, benchmarked."""

from bench.version import __version__

__all__ = ["__version__", "benchmark"]


def __getattr__(name: str):
    """``bench.benchmark``: the one call (``bench.api``), imported on first use so that
    ``import bench`` stays free of torch (``bench.numerics`` pins before torch loads)."""
    if name == "benchmark":
        from bench.api import benchmark

        return benchmark
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
