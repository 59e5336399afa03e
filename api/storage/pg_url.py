"""PostgreSQL store locations: ``postgresql://`` URLs and the settings they give
eventsourcing. psycopg (the ``postgres`` extra) is imported only when a URL is used."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")
EVENTS_TABLE = "dataengine_events"  # eventsourcing names it after the application


def is_postgres(location: object) -> bool:
    return isinstance(location, str) and location.startswith(SCHEMES)


def split_url(url: str) -> tuple[str, str]:
    """(a libpq URL, the schema): ``?schema=NAME`` is ours, libpq would refuse it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), "") or "public"
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def create_tables(conn: Any, schema: str, *statements: str) -> None:
    """The schema and ``statements`` (CREATE ... IF NOT EXISTS) on an autocommit ``conn``,
    under a transaction-level advisory lock per schema: PostgreSQL's IF NOT EXISTS is no
    guard against a concurrent creator (two server processes starting at once on a fresh
    schema: a unique violation on pg_class), the lock makes the second one wait and find
    the tables there."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"dataengine:{schema}:ddl",)
        )
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for statement in statements:
            conn.execute(statement)


def postgres_env(url: str) -> dict[str, str]:
    """eventsourcing's settings for a ``postgresql://user:pass@host:port/db?schema=s`` URL.

    ``host`` may also be given as ``?host=/socket/folder``. Pool sizes and timeouts keep
    eventsourcing's names (POSTGRES_POOL_SIZE, POSTGRES_MAX_OVERFLOW, ...): set them in
    the environment to override the defaults here.
    """
    libpq, schema = split_url(url)
    from psycopg.conninfo import conninfo_to_dict  # the postgres extra

    info = conninfo_to_dict(libpq)
    if not info.get("dbname"):
        raise ValueError(f"the store URL names no database: {url!r}")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": "api.storage.postgres:GroupCommitPostgresRecorder",
        "ORIGINATOR_ID_TYPE": "text",
        "POSTGRES_DBNAME": str(info["dbname"]),
        "POSTGRES_HOST": str(info.get("host") or "localhost"),
        "POSTGRES_PORT": str(info.get("port") or 5432),
        "POSTGRES_USER": str(info.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(info.get("password") or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "16",
        "POSTGRES_PRE_PING": "y",  # a restarted server leaves dead connections in the pool
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
    }


def thread_connection(local: Any, libpq: str) -> Any:
    """This thread's autocommit connection kept in ``local`` (a ``threading.local``),
    opened again when closed or broken (a restarted server): the shared tables beside the
    log (claims, rate log, blobs) each keep one per thread."""
    import psycopg  # the postgres extra

    conn = getattr(local, "conn", None)
    if conn is None or conn.closed or conn.broken:
        conn = local.conn = psycopg.connect(libpq, autocommit=True, connect_timeout=5)
    return conn
