"""Mined periods waiting for the portal, written to SQLite first (as the task outbox does) and sent
to POST /worker/mining/report oldest first.

The portal ends a reported period when the report arrives and never lets two overlap
(webapp/services/mining.py). So a period is sent as soon as it ends, and a period that could not be
sent (the portal was down) is merged with the next one of the same coin and pool instead of queued
behind it: one report then covers both, as long as the time since the last accepted report, which is
what the portal will count. A report the portal took is deleted at once and never sent again; one it
refused (4xx: mining off, overlapping, unknown coin) is dropped with the reason kept for the Mining tab;
one it could not take now (unreachable, 5xx) stays."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api import PortalClient, PortalError, PortalUnreachable, retry_later
from ..untrusted import printable

log = logging.getLogger(__name__)

MAX_PERIOD_SECONDS = 24 * 3600  # the portal's ceiling for one report

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mining_periods (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    coin TEXT NOT NULL,
    pool TEXT NOT NULL,
    hashrate REAL NOT NULL CHECK (hashrate >= 0),
    period_seconds INTEGER NOT NULL CHECK (period_seconds >= 1),
    shares_accepted INTEGER,
    shares_rejected INTEGER,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
"""


@dataclass(frozen=True)
class Period:
    """A stretch the miner actually ran: its measured mean hashrate (H/s) and the shares it found."""

    coin: str
    pool: str
    hashrate: float
    seconds: int
    accepted: int | None = None
    rejected: int | None = None

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"coin": self.coin, "pool": self.pool, "hashrate": round(self.hashrate, 3),
                                "period_seconds": int(self.seconds)}
        if self.accepted is not None:
            body["shares_accepted"] = int(self.accepted)
        if self.rejected is not None:
            body["shares_rejected"] = int(self.rejected)
        return body


@dataclass
class Delivery:
    """What one flush did."""

    accepted: list[dict[str, Any]]  # the portal's answers (its estimate in "earnings")
    refused: list[str]  # the portal's messages
    blocked: Exception | None = None


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


class ReportQueue:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # the database; never held across an HTTP call
        self._flush_lock = threading.Lock()
        self._sending: set[int] = set()  # rows on their way: a new period is never merged into one
        try:
            self._db = self._open()
        except sqlite3.DatabaseError:
            # Not ours or damaged: keep it beside (never delete), start empty; at worst a few minutes
            # of mining go unreported.
            self.path.replace(self.path.with_name(self.path.name + f".unreadable-{int(time.time())}"))
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute("SELECT id, coin, pool, hashrate, period_seconds, shares_accepted, shares_rejected "
                       "FROM mining_periods LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM mining_periods").fetchone()[0])

    def put(self, period: Period) -> None:
        """Queue a period that just ended, merged into an unsent one of the same coin and pool."""
        if period.seconds < 1:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT id, hashrate, period_seconds, shares_accepted, shares_rejected "
                                       "FROM mining_periods WHERE coin = ? AND pool = ? ORDER BY id DESC LIMIT 1",
                                       (period.coin, period.pool)).fetchone()
                if row is not None and row[0] not in self._sending and row[2] + period.seconds <= MAX_PERIOD_SECONDS:
                    seconds = row[2] + period.seconds
                    hashrate = (row[1] * row[2] + period.hashrate * period.seconds) / seconds  # time-weighted
                    self._db.execute("UPDATE mining_periods SET hashrate = ?, period_seconds = ?, "
                                     "shares_accepted = ?, shares_rejected = ? WHERE id = ?",
                                     (hashrate, seconds, _add(row[3], period.accepted),
                                      _add(row[4], period.rejected), row[0]))
                else:
                    self._db.execute("INSERT INTO mining_periods (coin, pool, hashrate, period_seconds, "
                                     "shares_accepted, shares_rejected, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     (period.coin, period.pool, float(period.hashrate),
                                      min(int(period.seconds), MAX_PERIOD_SECONDS), period.accepted,
                                      period.rejected, time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending(self) -> list[tuple[int, Period]]:
        with self._lock:
            rows = self._db.execute("SELECT id, coin, pool, hashrate, period_seconds, shares_accepted, "
                                    "shares_rejected FROM mining_periods ORDER BY id").fetchall()
        return [(r[0], Period(r[1], r[2], r[3], r[4], r[5], r[6])) for r in rows]

    def _execute(self, sql: str, args: tuple) -> None:
        with self._lock:
            self._db.execute(sql, args)

    def flush(self, client: PortalClient) -> Delivery:
        """Send what waits, oldest first. The database lock is not held while the portal answers, so a
        period ending meanwhile (a compute task stopping the miner) is queued at once."""
        delivery = Delivery([], [])
        with self._flush_lock:
            for row_id, period in self.pending():
                with self._lock:
                    self._sending.add(row_id)
                try:
                    answer = client.mining_report(period.payload())
                except (PortalUnreachable, PortalError) as exc:
                    if retry_later(exc) or (isinstance(exc, PortalError) and exc.status in (401, 403)):
                        self._execute("UPDATE mining_periods SET attempts = attempts + 1, last_error = ? "
                                      "WHERE id = ?", (str(exc)[:300], row_id))
                        delivery.blocked = exc
                        break
                    # Refused for good (e.g. it overlaps a period already counted): sending it again
                    # could never succeed, and must never count twice.
                    self._execute("DELETE FROM mining_periods WHERE id = ?", (row_id,))
                    message = printable(exc.message if isinstance(exc, PortalError) else str(exc), 300)
                    log.warning("mining report of %s s refused: %s", period.seconds, message)
                    delivery.refused.append(message)
                    continue
                finally:
                    with self._lock:
                        self._sending.discard(row_id)
                self._execute("DELETE FROM mining_periods WHERE id = ?", (row_id,))
                delivery.accepted.append(answer if isinstance(answer, dict) else {})
        return delivery
