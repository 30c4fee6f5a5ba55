"""semattack-bench: semantic-aware multi-label adversarial attacks, benchmarked."""

# The one version string: the package metadata reads it (pyproject.toml, tool.setuptools.dynamic), and every
# run's configuration hash (results.schema.RunConfig.code_version) and model card hold it.
__version__ = "0.1.0"


def __getattr__(name: str):
    """``bench.benchmark``: the one call (``bench.api``), imported on first use so that
    ``import bench`` stays free of torch (``bench.numerics`` pins before torch loads)."""
    if name == "benchmark":
        from bench.api import benchmark

        return benchmark
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
