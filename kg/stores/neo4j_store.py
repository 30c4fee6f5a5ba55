"""Neo4j through the official driver: label graphs on a server, browsable in Neo4j Browser.

Connection settings come from the environment: ``NEO4J_URI`` (default
``bolt://localhost:7687``), ``NEO4J_USER`` (default ``neo4j``), ``NEO4J_PASSWORD`` (required),
``NEO4J_DATABASE`` (default: the server's default database). ``docker compose up`` starts a
local server (see ``docker-compose.yml``). The password never appears in messages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError
from kg.stores import register_store
from kg.stores.base import GraphStore, Row, Step, WriteConflict, check_user_query

if TYPE_CHECKING:
    import neo4j

DEFAULT_URI = "bolt://localhost:7687"
SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
# What a schema rule's ``IF NOT EXISTS`` says when another session created the same rule at the
# same moment: the check only sees committed rules, so stores opened at once race on a fresh database.
SCHEMA_RACE_CODES = frozenset(
    f"Neo.ClientError.Schema.{kind}AlreadyExists" for kind in ("EquivalentSchemaRule", "Index", "Constraint")
)

# While the server is away (stopped, restarting) the driver retries a managed transaction for
# up to 30 s and logs each retry as a multi-line warning, which Python would print on stderr
# when the application has no logging handler: the command's outcome stays one line (done,
# once the server is back, or the error after the last retry). A handler of the user's still
# gets them.
logging.getLogger("neo4j").addHandler(logging.NullHandler())


@register_store("neo4j")
class Neo4jStore(GraphStore):
    """Label graphs in a Neo4j 5 server.

    Args:
        uri: server address (default ``$NEO4J_URI``, else ``bolt://localhost:7687``).
        database: database name (default ``$NEO4J_DATABASE``, else the server's default).
    """

    dialect = "neo4j"

    def __init__(self, uri: str | None = None, *, database: str | None = None) -> None:
        import neo4j

        self._neo4j = neo4j
        self.uri = _without_userinfo(uri or os.environ.get("NEO4J_URI") or DEFAULT_URI)
        self.database = database or os.environ.get("NEO4J_DATABASE") or None
        if self.uri.split("://", 1)[0] not in SCHEMES or "://" not in self.uri:
            raise BenchError(
                f"cannot reach Neo4j at {self.uri}: the URI must start with one of "
                f"{', '.join(s + '://' for s in SCHEMES)}"
            )
        user = os.environ.get("NEO4J_USER") or "neo4j"
        password = os.environ.get("NEO4J_PASSWORD")
        if not password:
            raise BenchError(f"set NEO4J_PASSWORD (and NEO4J_URI, NEO4J_USER) to use the Neo4j store at {self.uri}")
        self._driver: neo4j.Driver | None = None
        try:
            with self._errors():
                # notifications off: the server's hints (e.g. "property key does not exist" on an
                # empty database) would print as multi-line warnings
                self._driver = neo4j.GraphDatabase.driver(
                    self.uri, auth=(user, password), notifications_min_severity="OFF"
                )
                self._driver.verify_connectivity()
            self._create_schema()
        except BenchError:
            self.close()
            raise

    @property
    def location(self) -> str:
        return f"Neo4j at {self.uri}"

    @property
    def _open(self) -> neo4j.Driver:
        """The driver of a store not yet closed."""
        if self._driver is None:
            raise BenchError(f"the Neo4j store at {self.uri} is closed")
        return self._driver

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Driver and server errors → one ``BenchError`` line (the password is never in them)."""
        exc_types = self._neo4j.exceptions
        try:
            yield
        except exc_types.ConstraintError as exc:
            raise WriteConflict(f"another writer stored the same graph first (Neo4j): {_message(exc)}") from None
        except exc_types.AuthError as exc:
            raise BenchError(f"cannot reach Neo4j at {self.uri}: authentication failed ({_message(exc)})") from None
        except exc_types.Neo4jError as exc:
            raise BenchError(f"Cypher error (Neo4j): {_message(exc)}") from None
        except exc_types.IncompleteCommit as exc:  # the server went away between COMMIT and its answer
            raise BenchError(
                f"cannot reach Neo4j at {self.uri}: the connection broke while a write was committing, so it may or "
                f"may not be stored ({_message(exc)}); run the command again (loading is idempotent)"
            ) from None
        except (exc_types.DriverError, ValueError, OSError) as exc:
            raise BenchError(f"cannot reach Neo4j at {self.uri}: {_message(exc)}") from None

    def _read(self, text: str, params: Mapping[str, Any]) -> list[Row]:
        with self._errors():
            records, _, _ = self._open.execute_query(
                text, dict(params), routing_=self._neo4j.RoutingControl.READ, database_=self.database
            )
        return [r.data() for r in records]

    def _write(self, steps: Sequence[Step]) -> None:
        with self._errors(), self._open.session(database=self.database) as session:
            session.execute_write(_run_steps, steps)

    def _create_schema(self) -> None:
        """As every store, but a rule that another process created at the same moment counts as
        created (Ray workers or parallel sweeps opening a fresh database)."""
        with self._errors(), self._open.session(database=self.database) as session:
            for name in self.schema:
                try:
                    session.execute_write(_run_steps, [(self.cypher(name), {})])
                except self._neo4j.exceptions.ClientError as exc:
                    if exc.code not in SCHEMA_RACE_CODES:
                        raise

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run a user's Cypher in a read transaction (the server refuses writes in it)."""
        check_user_query(text)

        def work(tx: Any) -> list[Row]:
            return [r.data() for r in tx.run(text, dict(params or {}))]

        access = self._neo4j.READ_ACCESS
        with self._errors(), self._open.session(database=self.database, default_access_mode=access) as session:
            return session.execute_read(work)

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None


def _run_steps(tx: Any, steps: Sequence[Step]) -> None:
    """Run Cypher statements in one transaction."""
    for text, params in steps:
        tx.run(text, dict(params)).consume()


def _without_userinfo(uri: str) -> str:
    """Drop ``user:password@`` from a URI: credentials come from the environment only."""
    scheme, sep, rest = uri.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}"


def _message(exc: BaseException) -> str:
    """The driver's message on one line (its messages may span several)."""
    code = getattr(exc, "code", None)
    text = " ".join((getattr(exc, "message", None) or str(exc)).split()) or type(exc).__name__
    return f"{code}: {text}" if code else text
