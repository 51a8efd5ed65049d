"""Rows a portal process writes together, a batch every few seconds, instead of a writer turn each: what
a large network sends most often (heartbeats, progress reports) and nothing has to read back at once.

One batch per process and kind, kept per key (a worker, a task), the newer item merged over the older;
a thread of the process writes it every `seconds` in one write transaction. When a batch fails, each
item is tried on its own, so one bad row can't hold up the others; a database that is down keeps them
all pending. 0 seconds writes each item at once, in the caller's session (as tests read it back).
"""

import atexit
import contextlib
import logging
import os
import threading
import time

from flask import current_app, has_app_context
from sqlalchemy.exc import IntegrityError

from ..database import begin_write_transaction
from ..extensions import db

log = logging.getLogger(__name__)


class WriteBehind:
    SETTING = ""  # the config key of how many seconds a batch gathers
    WHAT = "rows"  # for the log

    def __init__(self, app):
        self.app = app
        self.seconds = float(app.config[self.SETTING])
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: dict = {}
        self._thread: threading.Thread | None = None

    @classmethod
    def of(cls, app):
        """This process's batch (a forked server process starts with none pending)."""
        key = f"pictor_{cls.SETTING.lower()}"
        batch = app.extensions.get(key)
        if batch is None or batch.pid != os.getpid():
            batch = app.extensions[key] = cls(app)
        return batch

    def merge(self, before, item):
        """What is pending for a key once `item` joins `before`: the newer, unless a kind says more."""
        return item

    def write(self, items: dict) -> None:
        """The kind's statements for `items`, in the transaction begin_write_transaction began."""
        raise NotImplementedError

    def add(self, key, item) -> None:
        with self._lock:
            self._merge(key, item)
            if self.seconds > 0 and self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"{self.WHAT}-batch", daemon=True)
                self._thread.start()
                atexit.register(self.flush)
        if self.seconds <= 0:
            self.flush()

    def _merge(self, key, item) -> None:
        before = self._pending.get(key)
        self._pending[key] = item if before is None else self.merge(before, item)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def write_now(self, key, item) -> None:
        """Write this key's item now, with what was pending for it."""
        with self._lock:
            self._merge(key, item)
            taken = {key: self._pending.pop(key)}
        self._flush(taken)

    def flush(self) -> int:
        """Write what is pending, in a transaction of its own; returns how many keys' items it wrote."""
        with self._lock:
            taken, self._pending = self._pending, {}
        return self._flush(taken)

    def _flush(self, taken: dict) -> int:
        if not taken:
            return 0
        # In the caller's session when called in this app (as a transaction of the caller's would be:
        # begin_write_transaction commits what it had); the batch thread brings a context of its own.
        in_app = has_app_context() and current_app._get_current_object() is self.app
        with contextlib.nullcontext() if in_app else self.app.app_context():
            try:
                self._write(taken)
                return len(taken)
            except Exception:
                db.session.rollback()
                log.warning("Writing %d %s together failed; writing them one by one.", len(taken), self.WHAT,
                            exc_info=True)
            written = 0
            for position, (key, item) in enumerate(taken.items()):
                try:
                    self._write({key: item})
                    written += 1
                except IntegrityError:
                    db.session.rollback()
                    log.warning("Dropped the %s of %s: its row refuses it.", self.WHAT, key, exc_info=True)
                except Exception:
                    db.session.rollback()
                    with self._lock:
                        for later_key, later in list(taken.items())[position:]:
                            self._merge(later_key, later)
                    raise
            return written

    def _write(self, items: dict) -> None:
        begin_write_transaction(db.session)
        self.write(items)
        db.session.commit()

    def _run(self) -> None:
        while True:
            time.sleep(self.seconds)
            try:
                self.flush()
            except Exception:
                log.exception("Writing %d %s failed; they stay pending for the next batch.", self.pending(), self.WHAT)
