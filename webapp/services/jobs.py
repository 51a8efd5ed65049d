"""Jobs: submission, splitting into tasks, status roll-up, outputs, retention."""

from ..clock import utcnow
from ..extensions import db
from ..models import Job, JobStatus, Task, TaskStatus


def roll_up_status(job: Job) -> JobStatus:
    """A job's status follows its tasks: any running -> running; all done -> completed/failed/canceled."""
    counts = dict(db.session.execute(
        db.select(Task.status, db.func.count()).where(Task.job_id == job.id).group_by(Task.status)
    ).all())
    active = counts.get(TaskStatus.QUEUED, 0) + counts.get(TaskStatus.RUNNING, 0)
    if job.status == JobStatus.CANCELED:
        status = JobStatus.CANCELED
    elif active:
        started = counts.get(TaskStatus.RUNNING, 0) or any(
            counts.get(s, 0) for s in (TaskStatus.COMPLETED, TaskStatus.FAILED))
        status = JobStatus.RUNNING if started else JobStatus.QUEUED
    elif counts.get(TaskStatus.FAILED, 0):
        status = JobStatus.FAILED
    elif counts.get(TaskStatus.COMPLETED, 0):
        status = JobStatus.COMPLETED
    else:
        status = JobStatus.CANCELED
    if status != job.status:
        job.status = status
        job.finished_at = utcnow() if status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED) else None
    return status
