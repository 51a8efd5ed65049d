"""Schema management (Alembic migrations are the only way tables are created, in tests too) and the
SQLite connection rules: WAL, IMMEDIATE writes, and writers queued in arrival order."""

import logging
import os
import sqlite3
import threading
import time
import weakref

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from flask_migrate import upgrade

from . import turns


def upgrade_schema() -> None:
    """Bring the database to the newest migration; running it twice changes nothing."""
    # Alembic's logging config would otherwise silence the app's loggers.
    level = logging.getLogger().level
    upgrade()
    logging.getLogger().setLevel(level)


BUSY_TIMEOUT_S = 30


class WriterQueue:
    """SQLite's one writer at a time, queued here rather than in SQLite's busy handler.

    A writer that finds the database locked sleeps in SQLite for 1, 2, 5 ... up to 100 ms between
    tries, so under load (16 threads, 2 processes) a waiting writer oversleeps the lock by tens of
    milliseconds and throughput collapses. Here the threads of a process wait on a lock that wakes the
    next one when released, and the one waiting thread of each process polls a file lock next to the
    database every half millisecond. A transaction takes the queue at BEGIN IMMEDIATE and leaves it when
    its connection goes back to the pool, which the Session does right after COMMIT or ROLLBACK.
    Programs that don't take it (the sqlite3 shell) still meet SQLite's own lock and busy timeout.
    A worker call waiting for another process keeps its turn (turns.py) for KEEP_TURN_S, then lets the
    others run; one waiting behind a thread of its own process gives the turn at once (that thread may
    need it to go on).
    """

    POLL_S = 0.0005
    # A worker call keeps its turn (turns.py) through a short wait for another process's writer, so that
    # once it has the writer it needn't wait for a turn too; past this it lets its process's other calls run.
    KEEP_TURN_S = 0.02

    def __init__(self, database_path: str | None):
        _QUEUES.add(self)
        self.path = f"{database_path}-writers" if database_path else None
        self._lock = threading.Lock()  # not RLock: a connection may be checked in by another thread (GC)
        self._owner = None
        self._depth = 0
        self._file = None
        self._pid = None

    def acquire(self) -> None:
        me = threading.get_ident()
        if self._owner == me:  # a second connection of the same thread: SQLite's lock decides
            self._depth += 1
            return
        started = time.monotonic()
        if not self._lock.acquire(blocking=False):
            # Another thread of this process is ahead, and may need this call's turn to go on.
            with turns.waiting():
                if not self._lock.acquire(timeout=BUSY_TIMEOUT_S):
                    raise sqlite3.OperationalError("database is locked (no writer turn within the busy timeout)")
        try:
            self._lock_file(started)
        except BaseException:
            self._lock.release()
            raise
        self._owner, self._depth = me, 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        self._owner = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        self._lock.release()

    def _lock_file(self, started: float) -> None:
        if fcntl is None or self.path is None:  # Windows: one process (waitress), the thread lock is the queue
            return
        if self._pid != os.getpid():  # a forked process opens its own: flock is per open file
            self._file, self._pid = open(self.path, "a+b"), os.getpid()
        # A short wait keeps the call's turn; past KEEP_TURN_S the process's other calls run meanwhile.
        if self._poll_file(started, self.KEEP_TURN_S):
            return
        with turns.waiting():
            if self._poll_file(started, BUSY_TIMEOUT_S):
                return
        raise sqlite3.OperationalError("database is locked (another process held the writer turn past the "
                                       "busy timeout)")

    def _poll_file(self, started: float, until_s: float) -> bool:
        """Try the file lock every POLL_S until it is taken (True) or `until_s` after `started` (False)."""
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() - started > until_s:
                    return False
                time.sleep(self.POLL_S)


_QUEUES: "weakref.WeakSet[WriterQueue]" = weakref.WeakSet()


def holds_writer_turn() -> bool:
    """Whether this thread holds SQLite's writer turn (of any engine)."""
    me = threading.get_ident()
    return any(queue._owner == me for queue in list(_QUEUES))


WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class WriteOutsideWriteTransaction(RuntimeError):
    """A statement wrote in a transaction begun without SQLite's write lock (see begin_write_transaction)."""


def configure_sqlite(engine, guard_writes: bool = False) -> None:
    """SQLite tuned for a web app: WAL so readers don't block the writer, writers queued (WriterQueue)
    with a busy timeout instead of 'database is locked' errors, and foreign keys enforced like on
    PostgreSQL."""
    from sqlalchemy import event

    if engine.dialect.name != "sqlite":
        return
    database = engine.url.database
    writers = WriterQueue(os.path.abspath(database) if database and database != ":memory:" else None)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Under WAL a transaction that reads and later writes fails at once ("database is locked")
        # if another writer committed in between. IMMEDIATE takes the write lock at BEGIN so that
        # can't happen; plain reads (GET pages and API reads) stay concurrent with BEGIN DEFERRED.
        # begin_read_transaction says False: a POST that only reads (auth, an idle claim) stays concurrent,
        # and a request that declared writes_opt_in() begins reads unless begin_write_transaction says so.
        immediate = conn.get_execution_options().get("sqlite_immediate")
        if immediate is None:
            immediate = not _read_only_request()
        if immediate and not conn.info.get("pictor_writer_turn"):
            writers.acquire()
            conn.info["pictor_writer_turn"] = True
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        conn.info["pictor_write_lock"] = bool(immediate)

    def _leave_queue(_dbapi_connection, record, *_args):
        if record.info.pop("pictor_writer_turn", False):
            writers.release()

    # A connection goes back to the pool when its Session's transaction ends; the turn goes with it.
    event.listen(engine, "checkin", _leave_queue)
    event.listen(engine, "invalidate", _leave_queue)

    if guard_writes:  # tests: a write in a read transaction only fails under concurrency, so fail it always
        @event.listens_for(engine, "before_cursor_execute")
        def _guard(conn, _cursor, statement, *_args):
            if (conn.in_transaction() and not conn.info.get("pictor_write_lock")
                    and statement.lstrip().upper().startswith(WRITES)):
                raise WriteOutsideWriteTransaction(
                    f"{statement.split(None, 3)[:3]} in a transaction begun without the write lock: "
                    "call begin_write_transaction(db.session) before the transaction's first statement.")


def _read_only_request() -> bool:
    """Whether a transaction the request begins without saying is a read: in GETs, and in requests
    whose writes all take the write lock themselves (writes_opt_in), so their reads queue for nothing."""
    from flask import g, has_request_context, request
    return has_request_context() and (request.method in ("GET", "HEAD", "OPTIONS") or g.get("writes_opt_in", False))


def writes_opt_in() -> None:
    """Declare that this request's services begin each write transaction with begin_write_transaction,
    so every other transaction it begins (reading a row back after a commit, say) is a read. The worker
    API does: its calls are most of a large network's load, and a read that waited for the writer was
    most of what they waited for. Tests hold the rule (configure_sqlite(guard_writes=True))."""
    from flask import g
    g.writes_opt_in = True


def _session(session):
    from sqlalchemy.orm import scoped_session
    return session() if isinstance(session, scoped_session) else session  # db.session's proxy lacks in_transaction()


def commit(session, keep_loaded: bool = False) -> None:
    """Commit `session`. keep_loaded: without expiring what it loaded, for a caller that goes on to read
    only what it just wrote or what no later decision depends on (a claimed task's payload, the worker
    a read transaction loaded a moment ago), so none of it is loaded again. A decision under the write
    lock still reads its rows afresh (populate_existing), as it must on PostgreSQL within one transaction."""
    session = _session(session)
    if not keep_loaded:
        session.commit()
        return
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire


def begin_write_transaction(session, keep_loaded: bool = False) -> None:
    """Start `session`'s next transaction holding the write lock from its first statement, committing
    the one it is in (keep_loaded: see commit).

    On SQLite this is BEGIN IMMEDIATE (call it before any query in the transaction); PostgreSQL
    needs nothing here: its claims use row locks (FOR UPDATE SKIP LOCKED).
    """
    session = _session(session)
    if session.in_transaction():
        commit(session, keep_loaded)
    session.connection(execution_options={"sqlite_immediate": True})


def begin_read_transaction(session) -> None:
    """Start `session`'s next transaction without the write lock, even in a POST, or go on in the read
    transaction it is in: for statements that only read (a token lookup, an idle claim finding nothing),
    so they never queue behind SQLite's one writer. Writing in it is a mistake (it would fail under
    concurrency): commit and begin_write_transaction first."""
    session = _session(session)
    if session.in_transaction():
        if session.info.get("read_transaction") is session.get_transaction():
            return  # begun here, and not ended since
        session.commit()
    session.connection(execution_options={"sqlite_immediate": False})
    session.info["read_transaction"] = session.get_transaction()


def dialect_insert(dialect: str):
    """The INSERT construct of `dialect` (a Session's get_bind().dialect.name): both databases upsert
    with ON CONFLICT, a statement each dialect builds its own way."""
    from sqlalchemy.dialects import postgresql, sqlite
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


ANALYZE_AFTER_ROWS = 1000


def refresh_planner_statistics(table: str, rows_added: int) -> None:
    """After a bulk insert (a job of thousands of tasks) tell PostgreSQL's planner at once, rather than
    when autovacuum next comes by: with statistics from before, a claim read all 30,000 queued tasks and
    sorted them (126 ms) instead of the first in the queue's index order (0.1 ms). SQLite keeps no
    statistics unless asked, and plans the claim by its indexes alone."""
    from .extensions import db
    if rows_added < ANALYZE_AFTER_ROWS or db.engine.dialect.name != "postgresql":
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'ANALYZE "{table}"')


def holds_write_lock(session) -> bool:
    """Whether `session` is in a transaction that began with SQLite's write lock (never on PostgreSQL)."""
    session = _session(session)
    return session.in_transaction() and bool(session.connection().info.get("pictor_write_lock"))
