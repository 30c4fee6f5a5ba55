"""The one version string: the package metadata reads it (pyproject.toml, tool.setuptools.dynamic),
and every run's configuration hash (``results.schema.RunConfig.code_version``) and model card
hold it. A module of its own, so that reading it imports nothing else."""

__version__ = "0.1.0"
