"""Commands of this area are added here (see bench/cli/apps.py)."""

from bench.cli.apps import app, kg_app, perf_app  # noqa: F401
