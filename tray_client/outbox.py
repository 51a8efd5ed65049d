"""Task updates (progress, complete, fail) written to SQLite first and delivered in order, so a portal
outage or an app restart loses none of them: only the latest progress of a task is kept, and a
complete or fail stays until the portal has taken it."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import PortalClient, PortalError, PortalUnreachable, retry_later, sha256_file
from .config import set_aside

log = logging.getLogger(__name__)

PROGRESS, COMPLETE, FAIL, HAND_BACK = "progress", "complete", "fail", "hand_back"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('progress', 'complete', 'fail', 'hand_back')),
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS ix_updates_task ON updates (task_id, kind);
"""


@dataclass
class Entry:
    id: int
    task_id: int
    kind: str
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0
    last_error: str | None = None


@dataclass
class FlushReport:
    """What one flush did: delivered (entry, answer), rejected (entry, PortalError), and why it stopped."""

    delivered: list[tuple[Entry, Any]] = field(default_factory=list)
    rejected: list[tuple[Entry, PortalError]] = field(default_factory=list)
    blocked: Exception | None = None  # the portal could not take the next entry; it stays queued
    pending: int = 0

    def answer_for(self, task_id: int, kind: str) -> Any:
        for entry, answer in self.delivered:
            if entry.task_id == task_id and entry.kind == kind:
                return answer
        return None

    def rejection_for(self, task_id: int, kind: str) -> PortalError | None:
        for entry, exc in self.rejected:
            if entry.task_id == task_id and entry.kind == kind:
                return exc
        return None


def _blocks(exc: Exception) -> bool:
    # 401/403: the token may come back (re-pairing keeps the worker): keep the updates meanwhile.
    return retry_later(exc) or (isinstance(exc, PortalError) and exc.status in (401, 403))


_COLUMNS = "id, task_id, kind, payload, created_at, attempts, last_error"


def _row_problem(row: tuple) -> str | None:
    """Why a stored update cannot be sent as it is (a damaged file, an older app's bug), or None."""
    _id, task_id, kind, payload, *_ = row
    if type(task_id) is not int or not 1 <= task_id <= 2**63 - 1:
        return "task id out of range"
    try:
        p = json.loads(payload)
    except (TypeError, ValueError, RecursionError):
        return "payload is not JSON"
    if not isinstance(p, dict):
        return "payload is not an object"
    if kind == PROGRESS:
        ok = type(p.get("progress")) in (int, float)
    elif kind in (FAIL, HAND_BACK):
        ok = isinstance(p.get("reason"), str)
    elif kind == COMPLETE:
        ok = isinstance(p.get("outputs"), list) and all(
            isinstance(o, dict) and all(isinstance(o.get(k), str) for k in ("name", "sha256", "path"))
            and type(o.get("size")) is int for o in p["outputs"])
    else:
        ok = False
    return None if ok else f"{kind} update is missing fields"


class Outbox:
    """One SQLite file of pending updates; safe to use from the engine's threads."""

    def __init__(self, path: Path, files_dir: Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.files_dir = Path(files_dir) if files_dir else self.path.parent / "outbox-files"
        self.set_aside_path = self.path.with_name(self.path.name + ".set-aside.jsonl")
        self.notices: list[str] = []  # one line per update set aside since opening
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an update we said is queued survives power loss
            self._db.executescript(_SCHEMA)
            self._db.execute(f"SELECT {_COLUMNS} FROM updates LIMIT 1").fetchall()  # our columns
        except sqlite3.DatabaseError:
            self._db.close()
            raise
        self._closed = False

    @classmethod
    def open(cls, path: Path, files_dir: Path | None = None) -> tuple["Outbox", list[str]]:
        """The outbox at path; one that is not a readable SQLite outbox is set aside (kept, with the
        updates it may hold) and a fresh one opened. Returns (outbox, what was set aside)."""
        try:
            return cls(path, files_dir), []
        except sqlite3.DatabaseError as exc:
            path = Path(path)
            line = set_aside(path, f"{exc}") + ("; the updates it held were not sent (the portal "
                                                "requeues those tasks when their leases run out)")
            for suffix in ("-wal", "-shm"):  # SQLite's side files belong to the old file, not the new
                side = path.with_name(path.name + suffix)
                if side.exists():
                    set_aside(side, "belongs to the unreadable outbox")
            return cls(path, files_dir), [line]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()

    # --- queueing ------------------------------------------------------------------------------

    def _insert(self, task_id: int, kind: str, payload: dict[str, Any]) -> int:
        cur = self._db.execute("INSERT INTO updates (task_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                               (int(task_id), kind, json.dumps(payload), time.time()))
        return int(cur.lastrowid)

    def put_progress(self, task_id: int, fraction: float, eta_s: float | None, message: str = "") -> None:
        """Queue progress, replacing any earlier progress of the task still waiting (only the latest counts)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                final = self._db.execute("SELECT 1 FROM updates WHERE task_id = ? AND kind != 'progress'",
                                         (int(task_id),)).fetchone()
                if not final:  # after complete/fail, progress means nothing
                    self._db.execute("DELETE FROM updates WHERE task_id = ? AND kind = 'progress'",
                                     (int(task_id),))
                    self._insert(task_id, PROGRESS, {"progress": fraction, "eta_s": eta_s, "message": message})
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _put_final(self, task_id: int, kind: str, payload: dict[str, Any]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM updates WHERE task_id = ? AND kind = 'progress'", (int(task_id),))
                entry_id = self._insert(task_id, kind, payload)
                self._db.execute("COMMIT")
                return entry_id
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def stage_outputs(self, task_id: int, paths: list[Path]) -> list[dict[str, Any]]:
        """Move output files next to the outbox, where they wait for upload however long it takes."""
        folder = self.files_dir / f"task-{int(task_id)}"
        folder.mkdir(parents=True, exist_ok=True)
        outputs = []
        for path in paths:
            path = Path(path)
            dest = folder / path.name
            if path.resolve() != dest.resolve():
                shutil.move(str(path), dest)
            outputs.append({"name": dest.name, "sha256": sha256_file(dest), "size": dest.stat().st_size,
                            "path": str(dest), "uploaded": False})
        return outputs

    def put_complete(self, task_id: int, outputs: list[dict[str, Any]], compute_seconds: float) -> int:
        """Queue the outputs' upload and the complete call, as one update that is never dropped."""
        return self._put_final(task_id, COMPLETE, {"outputs": outputs, "compute_seconds": compute_seconds})

    def put_fail(self, task_id: int, reason: str, log_tail: str = "", retryable: bool = True,
                 kind: str | None = None) -> int:
        return self._put_final(task_id, FAIL, {"reason": reason, "log_tail": log_tail,
                                               "retryable": retryable, "kind": kind})

    def put_hand_back(self, task_id: int, reason: str) -> int:
        """Queue giving the task back unfinished (shutdown): not a failure on the portal's books."""
        return self._put_final(task_id, HAND_BACK, {"reason": reason})

    # --- reading ------------------------------------------------------------------------------

    def pending(self) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM updates ORDER BY id").fetchall()
        entries = []
        for r in rows:
            if problem := _row_problem(r):
                self._set_aside_row(r, problem)
            else:
                entries.append(Entry(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]))
        return entries

    def _set_aside_row(self, row: tuple, why: str) -> None:
        """An update that can never be sent leaves the queue (it would block it for ever) but is kept,
        as a JSON line, in set_aside_path."""
        with self._lock:
            with open(self.set_aside_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"row": [str(v) if isinstance(v, bytes) else v for v in row],
                                    "why": why, "at": time.time()}, default=str) + "\n")
            self._db.execute("DELETE FROM updates WHERE id = ?", (row[0],))
        line = (f"a queued {str(row[2])[:20]} update of task {str(row[1])[:20]} was unreadable ({why}); "
                f"set aside in {self.set_aside_path}")
        log.warning("%s", line)
        self.notices.append(line)

    def __len__(self) -> int:
        with self._lock:
            if self._closed:
                return 0
            return int(self._db.execute("SELECT COUNT(*) FROM updates").fetchone()[0])

    def has_final(self, task_id: int) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM updates WHERE task_id = ? AND kind != 'progress'",
                                    (int(task_id),)).fetchone() is not None

    def _delete(self, entry: Entry) -> None:
        with self._lock:
            self._db.execute("DELETE FROM updates WHERE id = ?", (entry.id,))
        if entry.kind != PROGRESS:
            shutil.rmtree(self.files_dir / f"task-{entry.task_id}", ignore_errors=True)

    def _save_payload(self, entry: Entry) -> None:
        with self._lock:
            self._db.execute("UPDATE updates SET payload = ? WHERE id = ?", (json.dumps(entry.payload), entry.id))

    def _note_failure(self, entry: Entry, exc: Exception) -> None:
        with self._lock:
            self._db.execute("UPDATE updates SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                             (str(exc)[:500], entry.id))

    # --- delivery -----------------------------------------------------------------------------

    def flush(self, client: PortalClient) -> FlushReport:
        """Deliver queued updates oldest first; stop at the first one the portal cannot take now.

        An update the portal refuses for good (a 4xx such as "task not yours any more") is dropped
        and listed in the report: sending it again could never succeed."""
        report = FlushReport()
        held: set[int] = set()  # tasks whose earlier update is still waiting: keep their order
        with self._flush_lock:
            for entry in self.pending():
                if entry.task_id in held:
                    continue
                try:
                    answer = self._send(client, entry)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a payload we cannot use
                    self._set_aside_row((entry.id, entry.task_id, entry.kind, json.dumps(entry.payload),
                                         entry.created_at), f"cannot be sent: {exc!r}"[:200])
                    continue
                except (PortalUnreachable, PortalError) as exc:
                    if _blocks(exc):
                        self._note_failure(entry, exc)
                        report.blocked = exc
                        if isinstance(exc, PortalError) and exc.status == 500:
                            # The portal is up but fails on this one update: the other tasks'
                            # updates (the running task's progress, which keeps its lease) go on.
                            held.add(entry.task_id)
                            continue
                        break
                    log.warning("portal refused %s of task %s: %s", entry.kind, entry.task_id, exc)
                    report.rejected.append((entry, exc))
                    self._delete(entry)
                    continue
                report.delivered.append((entry, answer))
                self._delete(entry)
        report.pending = len(self)
        return report

    def _send(self, client: PortalClient, entry: Entry) -> Any:
        p = entry.payload
        if entry.kind == PROGRESS:
            return client.progress(entry.task_id, p["progress"], p.get("eta_s"), p.get("message") or "")
        if entry.kind == HAND_BACK:
            try:
                return client.hand_back(entry.task_id, p["reason"])
            except PortalError as exc:
                if exc.status not in (404, 405):
                    raise
                # A portal without hand-back (or that no longer knows the task): say it failed, retryable.
                return client.fail(entry.task_id, p["reason"], "", True, "canceled")
        if entry.kind == FAIL:
            return client.fail(entry.task_id, p["reason"], p.get("log_tail") or "", p.get("retryable", True),
                               p.get("kind"))
        for output in p["outputs"]:
            if output.get("uploaded"):
                continue
            path = Path(output["path"])
            if not path.is_file():
                # Without the file the complete can never be true: the task failed after all.
                return self._turn_into_fail(client, entry, f"output {output['name']} was lost before upload")
            client.upload_output(entry.task_id, output["name"], path, output["sha256"])
            output["uploaded"] = True
            self._save_payload(entry)  # a restart does not upload it again
        outputs = [{"name": o["name"], "sha256": o["sha256"], "size": o["size"]} for o in p["outputs"]]
        return client.complete(entry.task_id, outputs, float(p.get("compute_seconds") or 0.0))

    def _turn_into_fail(self, client: PortalClient, entry: Entry, reason: str) -> Any:
        entry.kind, entry.payload = FAIL, {"reason": reason, "log_tail": "", "retryable": True,
                                           "kind": "output_missing"}
        with self._lock:
            self._db.execute("UPDATE updates SET kind = ?, payload = ? WHERE id = ?",
                             (FAIL, json.dumps(entry.payload), entry.id))
        return self._send(client, entry)
