"""Results: the DuckDB store a sweep writes to, the SQL views, and the paper's tables and plots.

Data flows result rows → ``ResultStore`` → views (``views.sql``) → ``tables`` / ``plots``.
"""

from results.merge import MergeReport
from results.schema import SCHEMA_VERSION, Combination, ResultKey, ResultRow, RunConfig
from results.store import ResultStore, default_db_path

__all__ = [
    "SCHEMA_VERSION",
    "Combination",
    "MergeReport",
    "ResultKey",
    "ResultRow",
    "ResultStore",
    "RunConfig",
    "default_db_path",
]
