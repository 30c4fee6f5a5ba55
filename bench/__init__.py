"""semattack-bench: semantic-aware multi-label adversarial attacks, benchmarked."""

# The one version string: the package metadata reads it (pyproject.toml, tool.setuptools.dynamic), and every
# run's configuration hash (results.schema.RunConfig.code_version) and model card hold it.
__version__ = "0.1.0"
