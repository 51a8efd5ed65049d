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
        # IMMEDIATE takes the write lock at BEGIN: a transaction that reads then writes (a claim)
        # can never be overtaken between its read and its write. Reads stay concurrent under WAL.
        immediate = conn.get_execution_options().get("sqlite_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def begin_write_transaction(session) -> None:
    """Start `session`'s next transaction holding the write lock from its first statement.

    On SQLite this is BEGIN IMMEDIATE (call it before any query in the transaction); PostgreSQL
    needs nothing here: its claims use row locks (FOR UPDATE SKIP LOCKED).
    """
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={"sqlite_immediate": True})
