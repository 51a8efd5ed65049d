"""Ownership, answered once: "is this yours?" for every object a user or a worker token may reach.

A user sees their own workers, jobs and the outputs of their jobs; a worker token sees the tasks its
worker holds or once held. Anything else — someone else's object, a deleted worker, a missing row, an
id no database can hold — is the same NotFound, so a 404 never tells an attacker that an id exists.
Pages, the JSON API and the services all load objects through these functions.
"""

from ..extensions import db
from ..models import Job, Task, TaskEvent, TaskEventKind, TaskOutput, Worker
from . import NotFound, outputs

# Every primary key is an INTEGER: PostgreSQL raises on a larger number (and SQLite past 2**63), so
# an id beyond it cannot exist and is never sent to the database.
MAX_ID = 2**31 - 1


def valid_id(value, what: str) -> int:
    """`value` as a row id, or NotFound for anything that cannot be one (text, 0, 2**70, a bool)."""
    if isinstance(value, bool):
        raise NotFound(what)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise NotFound(what) from None
    if not 0 < value <= MAX_ID:
        raise NotFound(what)
    return value


def owned_worker(owner_id: int, worker_id) -> Worker:
    """The owner's worker; someone else's, a deleted one or a missing one are all NotFound."""
    worker = db.session.get(Worker, valid_id(worker_id, "worker"))
    if worker is None or worker.owner_id != owner_id or worker.deleted_at is not None:
        raise NotFound("worker")
    return worker


def owned_job(owner_id: int, job_id) -> Job:
    """The owner's job; someone else's is NotFound, exactly like a missing one."""
    job = db.session.get(Job, valid_id(job_id, "job"))
    if job is None or job.owner_id != owner_id:
        raise NotFound("job")
    return job


def worker_task_of_owner(owner_id: int, worker_id, task_id) -> tuple[Worker, Task]:
    """A task that ran on one of the owner's workers (its log, on the worker's page)."""
    worker = owned_worker(owner_id, worker_id)
    task = db.session.get(Task, valid_id(task_id, "task"))
    if task is None or task.worker_id != worker.id:
        raise NotFound("task")
    return worker, task


def job_output(owner_id: int, job_id, task_id, name: str) -> tuple[Job, TaskOutput]:
    """One output of a completed task of the owner's job (outputs.get_output says whether it is still stored)."""
    job = owned_job(owner_id, job_id)
    return job, outputs.get_output(job, valid_id(task_id, "output"), name)


def _ever_claimed(worker_id: int, task_id: int) -> bool:
    return db.session.execute(
        db.select(TaskEvent.id).where(TaskEvent.task_id == task_id, TaskEvent.kind == TaskEventKind.CLAIMED,
                                      TaskEvent.worker_id == worker_id).limit(1)
    ).first() is not None


def task_of_worker(worker_id: int, task_id, lock: bool = False) -> Task:
    """The task if this worker holds it or ever held it (a worker token's view); anyone else's is NotFound."""
    task_id = valid_id(task_id, "task")
    stmt = db.select(Task).where(Task.id == task_id).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update(of=Task)
    task = db.session.execute(stmt).scalar_one_or_none()
    if task is None or (task.worker_id != worker_id and not _ever_claimed(worker_id, task_id)):
        raise NotFound("task")
    return task
