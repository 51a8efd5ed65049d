"""A worker's device slots as the provider sees them: each GPU (and the CPU) it reported in hello, what
runs on it now and what it has earned.

The slots themselves are the app's report (presence.parse_slots validates it; dispatch keeps one running
task per slot). Everything shown beside them is the portal's own record: the running task and the
rewards of completed tasks are the tasks' rows, grouped by the slot each claim was made for."""

from __future__ import annotations

from ..extensions import db
from ..models import Job, Task, TaskStatus, Worker
from ..money import fmt
from .dispatch import DEFAULT_SLOT


def reported(worker: Worker) -> list[dict]:
    """The slots from the worker's last hello, in its order; empty when it reported none (an old app)."""
    return list((worker.capabilities or {}).get("slots") or [])


def summaries(workers: list[Worker], micros: bool = False) -> dict[int, list[dict]]:
    """worker id -> its slots, each {"id", "kind", "name", "memory_mb", "state" (busy | idle), "task"
    (None or {"id", "job_id", "job_name", "progress"}), "earnings", "tasks_completed"}; two grouped
    queries for all the workers together (`micros`: earnings as integer micro-USD, for pages). A worker that reported no slots shows its one implicit slot
    only when a task ran on it."""
    ids = [w.id for w in workers]
    if not ids:
        return {}
    running = db.session.execute(
        db.select(Task.worker_id, Task.slot, Task.id, Task.job_id, Job.name, Task.progress)
        .join(Job, Job.id == Task.job_id)
        .where(Task.worker_id.in_(ids), Task.status == TaskStatus.RUNNING)).all()
    earned = db.session.execute(
        db.select(Task.worker_id, Task.slot, db.func.coalesce(db.func.sum(Task.reward_micros), 0), db.func.count())
        .where(Task.worker_id.in_(ids), Task.status == TaskStatus.COMPLETED, Task.slot.is_not(None))
        .group_by(Task.worker_id, Task.slot)).all()
    now_on = {(w, s): {"id": t, "job_id": j, "job_name": name, "progress": round(float(p or 0.0), 4)}
              for w, s, t, j, name, p in running}
    totals = {(w, s): (int(amount), int(count)) for w, s, amount, count in earned}
    result = {}
    for worker in workers:
        slots = reported(worker)
        if not slots and any(w == worker.id for w, _ in {**now_on, **totals}):
            slots = [{"id": DEFAULT_SLOT, "kind": None, "name": "", "memory_mb": None}]
        rows = []
        for slot in slots:
            key = (worker.id, slot["id"])
            task = now_on.get(key)
            amount, count = totals.get(key, (0, 0))
            rows.append({"id": slot["id"], "kind": slot.get("kind"), "name": slot.get("name") or "",
                         "memory_mb": slot.get("memory_mb"), "state": "busy" if task else "idle",
                         "task": task, "earnings": amount if micros else fmt(amount), "tasks_completed": count})
        result[worker.id] = rows
    return result


def summary(worker: Worker, micros: bool = False) -> list[dict]:
    return summaries([worker], micros)[worker.id]
