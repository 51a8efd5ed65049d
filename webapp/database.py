"""Schema management: Alembic migrations are the only way tables are created, in tests too."""

import logging

from flask_migrate import upgrade


def upgrade_schema() -> None:
    """Bring the database to the newest migration; running it twice changes nothing."""
    # Alembic's logging config would otherwise silence the app's loggers.
    level = logging.getLogger().level
    upgrade()
    logging.getLogger().setLevel(level)


def configure_sqlite(engine) -> None:
    """SQLite tuned for a web app: WAL so readers don't block the writer, a busy timeout instead of
    'database is locked' errors, and foreign keys enforced like on PostgreSQL."""
    from sqlalchemy import event

    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Under WAL a transaction that reads and later writes fails at once ("database is locked")
        # if another writer committed in between. IMMEDIATE takes the write lock at BEGIN so that
        # can't happen; plain reads (GET pages and API reads) stay concurrent with BEGIN DEFERRED.
        # begin_read_transaction says False: a POST that only reads (auth, an idle claim) stays concurrent.
        immediate = conn.get_execution_options().get("sqlite_immediate")
        if immediate is None:
            immediate = not _read_only_request()
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        conn.info["pictor_write_lock"] = bool(immediate)


def _read_only_request() -> bool:
    from flask import has_request_context, request
    return has_request_context() and request.method in ("GET", "HEAD", "OPTIONS")


def begin_write_transaction(session) -> None:
    """Start `session`'s next transaction holding the write lock from its first statement.

    On SQLite this is BEGIN IMMEDIATE (call it before any query in the transaction); PostgreSQL
    needs nothing here: its claims use row locks (FOR UPDATE SKIP LOCKED).
    """
    from sqlalchemy.orm import scoped_session
    if isinstance(session, scoped_session):  # db.session: its proxy lacks in_transaction()
        session = session()
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={"sqlite_immediate": True})


def begin_read_transaction(session) -> None:
    """Start `session`'s next transaction without the write lock, even in a POST: for statements that only
    read (a token lookup, an idle claim finding nothing), so they never queue behind SQLite's one writer.
    Writing in it is a mistake (it would fail under concurrency): commit and begin_write_transaction first."""
    from sqlalchemy.orm import scoped_session
    if isinstance(session, scoped_session):
        session = session()
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={"sqlite_immediate": False})


def holds_write_lock(session) -> bool:
    """Whether `session` is in a transaction that began with SQLite's write lock (never on PostgreSQL)."""
    from sqlalchemy.orm import scoped_session
    if isinstance(session, scoped_session):
        session = session()
    return session.in_transaction() and bool(session.connection().info.get("pictor_write_lock"))
